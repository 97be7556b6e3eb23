"""VQGAN-lite (genai_helpers.models.vqgan): patch discriminator, hinge losses, adaptive weight, warm-up."""
import math

import pytest
import torch
import torch.nn.functional as F

from genai_helpers.metrics.feature_net import FeatureNet, perceptual_distance
from genai_helpers.models.vqgan import (PatchDiscriminator, VQGANLossConfig, adaptive_weight, disc_factor,
                                        hinge_d_loss, hinge_g_loss, last_decoder_layer, vqgan_discriminator_loss,
                                        vqgan_generator_loss)
from genai_helpers.models.vqvae import VQVAE, VQVAEConfig


def small_vqvae(seed=0, **kw):
    torch.manual_seed(seed)
    return VQVAE(VQVAEConfig(in_channels=1, hidden=8, embed_dim=4, codebook_size=16, n_down=2, **kw))


def small_feature_net(seed=0):
    torch.manual_seed(seed)
    return FeatureNet(1, (10,), width=4).eval().requires_grad_(False)


# ---- the patch discriminator ---------------------------------------------------------------------

@pytest.mark.parametrize("n_layers,size", [(1, 28), (2, 28), (2, 32), (3, 32)])
def test_patch_discriminator_returns_one_logit_per_patch(n_layers, size):
    d = PatchDiscriminator(in_channels=1, width=8, n_layers=n_layers)
    out = d(torch.randn(3, 1, size, size))
    assert out.shape == (3, 1, size // 2 ** n_layers, size // 2 ** n_layers)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_receptive_field_is_the_patch_one_logit_depends_on(n_layers):
    torch.manual_seed(0)
    d = PatchDiscriminator(in_channels=1, width=4, n_layers=n_layers, norm="none").eval()
    x = torch.randn(1, 1, 64, 64, requires_grad=True)
    out = d(x)
    c = out.shape[-1] // 2
    out[0, 0, c, c].backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero().flatten()
    cols = (x.grad[0, 0].abs().sum(0) > 0).nonzero().flatten()
    assert int(rows.max() - rows.min() + 1) == d.receptive_field
    assert int(cols.max() - cols.min() + 1) == d.receptive_field
    assert d.receptive_field < 64                      # a patch, not the whole image


def test_patch_discriminator_refuses_bad_input_naming_the_parameter():
    d = PatchDiscriminator(in_channels=1, width=8, n_layers=2)
    with pytest.raises(ValueError, match="x must have 1 channels"):
        d(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="x height and width must be divisible by 4"):
        d(torch.randn(2, 1, 30, 28))
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        d(torch.randn(1, 28, 28))
    with pytest.raises(ValueError, match="width"):
        PatchDiscriminator(width=0)
    with pytest.raises(ValueError, match="n_layers"):
        PatchDiscriminator(n_layers=0)
    with pytest.raises(ValueError, match="norm"):
        PatchDiscriminator(norm="spectral")


def test_patch_discriminator_learns_to_tell_sharp_from_blurred_images():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    sharp = (torch.rand(64, 1, 16, 16, generator=g) > 0.5).float() * 2 - 1
    blurred = F.avg_pool2d(F.pad(sharp, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    d = PatchDiscriminator(in_channels=1, width=8, n_layers=2)
    opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.5, 0.9))
    first = None
    for _ in range(40):
        loss = hinge_d_loss(d(sharp), d(blurred))
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    d.eval()
    assert loss.item() < 0.5 * first
    assert d(sharp).mean() > 0 > d(blurred).mean()


# ---- losses, adaptive weight, warm-up ------------------------------------------------------------

def test_hinge_losses_match_their_definitions():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-3.0, 0.0, 1.0])
    expected = 0.5 * ((0 + 0.5 + 2.0) / 3 + (0 + 1.0 + 2.0) / 3)
    assert hinge_d_loss(real, fake).item() == pytest.approx(expected)
    assert hinge_d_loss(torch.full((4,), 1.5), torch.full((4,), -1.5)).item() == 0.0   # beyond the margins
    assert hinge_g_loss(fake).item() == pytest.approx(2.0 / 3)
    with pytest.raises(TypeError, match="real_logits"):
        hinge_d_loss([1.0], fake)
    with pytest.raises(TypeError, match="fake_logits"):
        hinge_g_loss(None)


def test_adaptive_weight_is_the_ratio_of_gradient_norms_at_the_last_layer():
    w = torch.randn(3, 4, requires_grad=True)
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    rec, adv = (w * a).sum(), (w * b).sum()            # gradients a and b
    lam = adaptive_weight(rec, adv, w)
    assert lam.item() == pytest.approx(a.norm().item() / (b.norm().item() + 1e-4), rel=1e-5)
    assert not lam.requires_grad
    (rec + lam * adv).backward()                       # the graph was kept for the real backward pass
    assert torch.allclose(w.grad, a + lam * b)
    w2 = torch.randn(2, requires_grad=True)
    assert adaptive_weight((w2 * 1e6).sum(), (w2 * 1e-9).sum(), w2, max_weight=10.0).item() == 10.0


def test_adaptive_weight_refuses_bad_input_naming_the_parameter():
    w = torch.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match="rec_loss"):
        adaptive_weight(w * 2, w.sum(), w)
    with pytest.raises(ValueError, match="last_layer"):
        adaptive_weight(w.sum(), w.sum(), torch.randn(3))
    with pytest.raises(ValueError, match="max_weight"):
        adaptive_weight(w.sum(), w.sum(), w, max_weight=-1.0)
    with pytest.raises(ValueError, match="eps"):
        adaptive_weight(w.sum(), w.sum(), w, eps=0.0)


def test_disc_factor_switches_on_at_disc_start():
    assert [disc_factor(s, 3) for s in range(6)] == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert disc_factor(10, 0, factor=0.5) == 0.5
    with pytest.raises(ValueError, match="step"):
        disc_factor(-1, 3)
    with pytest.raises(ValueError, match="disc_start"):
        disc_factor(1, -3)
    with pytest.raises(ValueError, match="factor"):
        disc_factor(1, 0, factor=-1.0)


@pytest.mark.parametrize("field,value", [("perceptual_weight", -1.0), ("disc_weight", float("nan")),
                                         ("disc_start", -1), ("max_adaptive", -2.0)])
def test_loss_config_refuses_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        VQGANLossConfig(**{field: value})


def test_last_decoder_layer_is_the_decoder_output_convolution():
    model = small_vqvae()
    w = last_decoder_layer(model)
    assert w is model.decoder.net[-1].weight
    assert w.shape[1] == model.config.in_channels       # ConvTranspose2d weight: (in, out, k, k)
    with pytest.raises(TypeError, match="model"):
        last_decoder_layer(torch.nn.Linear(2, 2))


# ---- the two objectives --------------------------------------------------------------------------

def test_generator_loss_without_the_new_terms_is_the_plain_vqvae_loss():
    for ema in (None, 0.99):
        model = small_vqvae(ema_decay=ema)
        x = torch.rand(4, 1, 16, 16) * 2 - 1
        out = model(x)
        terms = vqgan_generator_loss(model, out, x, 100, VQGANLossConfig(perceptual_weight=0.0, disc_weight=0.0))
        assert torch.allclose(terms["loss"], out.loss)
        assert terms["perceptual"] == 0.0 and terms["adv"] == 0.0 and terms["weight"] == 0.0


def test_generator_loss_adds_perceptual_term_and_switches_the_gan_term_on_after_warmup():
    model, net = small_vqvae(), small_feature_net()
    torch.manual_seed(1)
    disc = PatchDiscriminator(in_channels=1, width=4, n_layers=2)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    cfg = VQGANLossConfig(perceptual_weight=0.7, disc_weight=0.5, disc_start=10)
    out = model(x)
    base = out.loss + 0.7 * perceptual_distance(net, out.recon, x).mean()
    before = vqgan_generator_loss(model, out, x, 9, cfg, percept_net=net, disc=disc)
    assert torch.allclose(before["loss"], base)
    assert before["adv"] == 0.0 and before["weight"] == 0.0
    after = vqgan_generator_loss(model, out, x, 10, cfg, percept_net=net, disc=disc)
    adv = hinge_g_loss(disc(out.recon))
    rec = out.recon_loss + 0.7 * perceptual_distance(net, out.recon, x).mean()
    lam = adaptive_weight(rec, adv, last_decoder_layer(model))
    assert after["weight"] == pytest.approx(0.5 * lam.item(), rel=1e-5)
    assert torch.allclose(after["loss"], base + after["weight"] * adv, atol=1e-6)
    after["loss"].backward()                              # one graph: everything still differentiable
    assert model.encoder.net[0].weight.grad is not None


def test_generator_loss_fixed_weight_when_not_adaptive():
    model, disc = small_vqvae(), PatchDiscriminator(in_channels=1, width=4, n_layers=2)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    out = model(x)
    terms = vqgan_generator_loss(model, out, x, 5, VQGANLossConfig(perceptual_weight=0.0, disc_weight=0.1,
                                                                   adaptive=False), disc=disc)
    assert terms["weight"] == pytest.approx(0.1)
    assert torch.allclose(terms["loss"], out.loss + 0.1 * hinge_g_loss(disc(out.recon)))


def test_generator_loss_refuses_missing_networks_and_bad_input():
    model = small_vqvae()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    out = model(x)
    with pytest.raises(ValueError, match="percept_net"):
        vqgan_generator_loss(model, out, x, 0, VQGANLossConfig(perceptual_weight=1.0, disc_weight=0.0))
    with pytest.raises(ValueError, match="disc"):
        vqgan_generator_loss(model, out, x, 0, VQGANLossConfig(perceptual_weight=0.0, disc_weight=0.5))
    with pytest.raises(ValueError, match="x must have the shape"):
        vqgan_generator_loss(model, out, x[:1], 0, VQGANLossConfig(perceptual_weight=0.0, disc_weight=0.0))
    with pytest.raises(TypeError, match="config"):
        vqgan_generator_loss(model, out, x, 0, {"disc_weight": 0.0})
    with pytest.raises(TypeError, match="out"):
        vqgan_generator_loss(model, out.recon, x, 0, VQGANLossConfig(disc_weight=0.0, perceptual_weight=0.0))


def test_discriminator_loss_waits_for_warmup_and_never_reaches_the_autoencoder():
    model, disc = small_vqvae(), PatchDiscriminator(in_channels=1, width=4, n_layers=2)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    out = model(x)
    cfg = VQGANLossConfig(disc_weight=0.5, disc_start=3)
    assert vqgan_discriminator_loss(disc, x, out.recon, 2, cfg) is None
    loss = vqgan_discriminator_loss(disc, x, out.recon, 3, cfg)
    assert torch.allclose(loss, hinge_d_loss(disc(x), disc(out.recon.detach())))
    loss.backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None for p in disc.parameters())
    with pytest.raises(ValueError, match="x and recon must have the same shape"):
        vqgan_discriminator_loss(disc, x, out.recon[:2], 3, cfg)
    assert math.isfinite(loss.item())
