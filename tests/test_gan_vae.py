"""DCGAN, GAN losses (minimax / non-saturating / WGAN-GP), truncated noise and the VAE."""
import math

import pytest
import torch
from torch import nn

from genai_helpers.models.gan import (NORMS, DCGANDiscriminator, DCGANGenerator, discriminator_loss, generator_loss,
                                      gradient_penalty, make_norm, truncated_noise, wgan_critic_loss,
                                      wgan_generator_loss)
from genai_helpers.models.vae import ConvVAE, elbo_loss, kl_divergence, reparameterize


def _logit(p):
    return math.log(p / (1 - p))


def test_discriminator_loss_hand_computed():
    # D(x) = 0.9 on the real image, D(G(z)) = 0.2 on the fake: -log 0.9 - log 0.8
    loss = discriminator_loss(torch.tensor([_logit(0.9)]), torch.tensor([_logit(0.2)]))
    assert loss.item() == pytest.approx(-math.log(0.9) - math.log(0.8), rel=1e-6)
    # an undecided discriminator (logits 0) pays 2 log 2
    assert discriminator_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(2 * math.log(2), rel=1e-6)


@pytest.mark.parametrize("d_fake", [0.01, 0.5, 0.99])
def test_minimax_and_non_saturating_values_and_gradients(d_fake):
    logit = torch.tensor([_logit(d_fake)], requires_grad=True)
    minimax = generator_loss(logit, "minimax")
    assert minimax.item() == pytest.approx(math.log(1 - d_fake), rel=1e-5)
    (g_mm,) = torch.autograd.grad(minimax, logit)
    ns = generator_loss(logit, "non_saturating")
    assert ns.item() == pytest.approx(-math.log(d_fake), rel=1e-5)
    (g_ns,) = torch.autograd.grad(ns, logit)
    # d/dl log(1 - sigmoid(l)) = -sigmoid(l) = -D ;  d/dl -log sigmoid(l) = -(1 - D)
    assert g_mm.item() == pytest.approx(-d_fake, rel=1e-5)
    assert g_ns.item() == pytest.approx(-(1 - d_fake), rel=1e-5)


def test_minimax_saturates_when_the_discriminator_wins():
    logits = torch.full((8,), _logit(0.001), requires_grad=True)
    (g_mm,) = torch.autograd.grad(generator_loss(logits, "minimax"), logits)
    (g_ns,) = torch.autograd.grad(generator_loss(logits, "non_saturating"), logits)
    assert g_ns.abs().sum() / g_mm.abs().sum() == pytest.approx(999, rel=1e-3)


def test_wgan_losses_hand_computed():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])
    assert wgan_critic_loss(real, fake).item() == pytest.approx(-1 - 2)
    assert wgan_generator_loss(fake).item() == pytest.approx(1.0)


def _linear_critic(weight):
    critic = nn.Sequential(nn.Flatten(), nn.Linear(weight.numel(), 1))
    with torch.no_grad():
        critic[1].weight.copy_(weight.flatten()[None])
    return critic


def test_gradient_penalty_zero_for_unit_norm_linear_critic_and_exact_otherwise():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, 4, generator=g)
    real, fake = torch.randn(5, 3, 4, 4, generator=g), torch.randn(5, 3, 4, 4, generator=g)
    unit = _linear_critic(w / w.norm())                     # gradient norm exactly 1 everywhere
    assert gradient_penalty(unit, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    double = _linear_critic(2 * w / w.norm())                # gradient norm 2 -> (2 - 1)^2 = 1
    assert gradient_penalty(double, real, fake).item() == pytest.approx(1.0, rel=1e-5)
    # differentiable with respect to the critic's parameters
    gp = gradient_penalty(double, real, fake)
    gp.backward()
    assert double[1].weight.grad.abs().sum() > 0


def test_gradient_penalty_matches_a_hand_computed_quadratic_critic():
    # f(x) = 0.5 * sum(x^2): grad = x_hat, penalty = (|x_hat| - 1)^2 with x_hat = a real + (1 - a) fake
    class Quadratic(nn.Module):
        def forward(self, x):
            return 0.5 * x.pow(2).flatten(1).sum(1)
    real, fake = torch.full((2, 1, 2, 2), 1.0), torch.full((2, 1, 2, 2), 3.0)
    gen = torch.Generator().manual_seed(5)
    a = torch.rand(2, 1, 1, 1, generator=torch.Generator().manual_seed(5))
    x_hat = a * real + (1 - a) * fake
    expected = ((x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert gradient_penalty(Quadratic(), real, fake, generator=gen).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_dcgan_shapes_range_and_norms(norm):
    torch.manual_seed(0)
    gen = DCGANGenerator(z_dim=16, base=8, image_size=32, norm=norm)
    disc = DCGANDiscriminator(base=8, image_size=32, norm=norm, minibatch_std=True)
    x = gen(torch.randn(4, 16))
    assert x.shape == (4, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    logits = disc(x)
    assert logits.shape == (4,)
    assert torch.allclose(disc.prob(x), torch.sigmoid(logits))


def test_layer_and_instance_norm_normalise_what_they_say():
    x = torch.randn(3, 8, 5, 5) * 4 + 2
    layer, inst, group = make_norm("layer", 8), make_norm("instance", 8), make_norm("group", 8, groups=4)
    assert torch.allclose(layer(x), nn.functional.layer_norm(x, x.shape[1:]), atol=1e-5)
    y = inst(x)
    assert torch.allclose(y.mean((2, 3)), torch.zeros(3, 8), atol=1e-5)
    assert group.num_groups == 4


def test_generator_sizes_and_validation():
    assert DCGANGenerator(z_dim=8, base=4, image_size=16)(torch.randn(2, 8)).shape == (2, 3, 16, 16)
    assert DCGANGenerator(z_dim=8, base=4, image_size=64, channels=1)(torch.randn(2, 8)).shape == (2, 1, 64, 64)
    with pytest.raises(ValueError, match="power of two"):
        DCGANGenerator(image_size=24)
    with pytest.raises(ValueError, match="norm"):
        DCGANDiscriminator(norm="weird")
    with pytest.raises(ValueError, match="z must have shape"):
        DCGANGenerator(z_dim=8)(torch.randn(2, 9))
    with pytest.raises(ValueError, match="x must have shape"):
        DCGANDiscriminator(image_size=32)(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="kind"):
        generator_loss(torch.zeros(2), "hinge")
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(nn.Identity(), torch.zeros(2, 3), torch.zeros(3, 3))


def test_truncated_noise_stays_inside_and_approaches_normal():
    g = torch.Generator().manual_seed(0)
    z = truncated_noise(4000, 8, 0.5, generator=g)
    assert z.abs().max() <= 0.5 and z.shape == (4000, 8)
    # variance of N(0,1) truncated to [-t, t]: 1 - 2 t phi(t) / (2 Phi(t) - 1)
    t = 0.5
    phi, Phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(t / math.sqrt(2)))
    assert z.var().item() == pytest.approx(1 - 2 * t * phi / (2 * Phi - 1), rel=0.03)
    wide = truncated_noise(4000, 8, 6.0, generator=g)
    assert wide.std().item() == pytest.approx(1.0, rel=0.03)
    with pytest.raises(ValueError, match="truncation"):
        truncated_noise(2, 2, 0.0)


def test_kl_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g) * 0.5
    closed = kl_divergence(mu, logvar)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(200_000, 3, 4, generator=g)      # samples from q
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(0.0, 1.0)
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    assert torch.allclose(closed, mc, rtol=0.02, atol=0.01)
    ref = torch.distributions.kl_divergence(q, p).sum(-1)
    assert torch.allclose(closed, ref, atol=1e-5)
    assert torch.allclose(kl_divergence(torch.zeros(2, 5), torch.zeros(2, 5)), torch.zeros(2))


def test_reparameterisation_moments_and_gradients():
    mu = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)
    z = reparameterize(mu.expand(50_000, 2), logvar.expand(50_000, 2), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.03)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 2.0]), atol=0.03)
    z.sum().backward()
    assert mu.grad is not None and torch.allclose(mu.grad, torch.full((1, 2), 50_000.0))


def test_elbo_terms_and_vae_shapes():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.full((2, 1, 2, 2), 0.1)
    out = elbo_loss(x, x_hat, torch.zeros(2, 3), torch.zeros(2, 3), sigma_x=0.1)
    assert out["reconstruction"].item() == pytest.approx(4 * 0.01 / (2 * 0.01))
    assert out["kl"].item() == pytest.approx(0.0) and out["loss"].item() == pytest.approx(2.0)
    torch.manual_seed(0)
    vae = ConvVAE(image_size=32, z_dim=8, base=8)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    x_hat, mu, logvar = vae(x)
    assert x_hat.shape == x.shape and mu.shape == (4, 8) and logvar.shape == (4, 8)
    losses = vae.loss(x)
    losses["loss"].backward()
    assert all(p.grad is not None for p in vae.encoder.parameters())
    vae.eval()
    assert vae.sample(3, truncation=1.0).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="x must have shape"):
        vae(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="sigma_x"):
        ConvVAE(sigma_x=0)


def test_hair_colour_shows_on_bald_and_old_faces():
    """make_faces draws the hair colour in the eyebrows and half-greys old hair, so the colour is never invisible."""
    from genai_helpers.data.procedural import make_faces
    for fixed in ({"hair": 0}, {"hair": 2, "age": 1}):
        black, _ = make_faces(1, 32, seed=4, hair_colour=0, **fixed)
        blond, _ = make_faces(1, 32, seed=4, hair_colour=2, **fixed)
        assert (black - blond).abs().amax() > 0.15, fixed        # eyebrows are about one pixel tall at 32 px
