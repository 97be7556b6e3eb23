"""The 2-D mixture-of-Gaussians GAN of chapter 11 (§11.8): data, scoring, players, a short training run."""
import math

import pytest
import torch

from genai_helpers.models.gan import gradient_penalty
from genai_helpers.models.gan_toy import ToyCritic, ToyGenerator, mode_coverage, ring_of_gaussians, train_toy_gan


def test_ring_samples_lie_near_their_centres():
    x, centres = ring_of_gaussians(4000, n_modes=8, radius=2.0, std=0.02, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2) and centres.shape == (8, 2)
    assert torch.allclose(centres.norm(dim=1), torch.full((8,), 2.0), atol=1e-6)
    score = mode_coverage(x, centres, std=0.02)
    assert score["modes"] == 8 and score["high_quality"] > 0.97        # 3 sigma in 2-D holds ~98.9%


def test_mode_coverage_counts_a_collapsed_sampler():
    _, centres = ring_of_gaussians(1)
    collapsed = centres[[0]].repeat(500, 1) + 0.01 * torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    assert mode_coverage(collapsed, centres) == {"modes": 1, "high_quality": 1.0}
    far = torch.zeros(100, 2)                                          # the ring's centre: no mode
    assert mode_coverage(far, centres) == {"modes": 0, "high_quality": 0.0}


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="n must"):
        ring_of_gaussians(0)
    with pytest.raises(ValueError, match="std and radius"):
        ring_of_gaussians(5, std=0.0)
    with pytest.raises(ValueError, match="samples must"):
        mode_coverage(torch.zeros(5, 3), torch.zeros(8, 2))
    with pytest.raises(ValueError, match="loss must"):
        train_toy_gan(1, loss="hinge")
    with pytest.raises(ValueError, match="n_critic"):
        train_toy_gan(1, loss="wgan", n_critic=0)
    with pytest.raises(ValueError, match="width"):
        ToyCritic(width=0)


def test_players_shapes():
    G, D = ToyGenerator(z_dim=3, width=16), ToyCritic(width=16)
    assert G(torch.randn(7, 3)).shape == (7, 2)
    assert D(torch.randn(7, 2)).shape == (7,)


def test_gradient_penalty_on_a_2d_linear_critic_matches_hand_computation():
    critic = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 4.0]]))                  # |grad f| = 5 everywhere
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    assert math.isclose(gradient_penalty(critic, real, fake).item(), (5 - 1) ** 2, rel_tol=1e-6)


@pytest.mark.parametrize("loss", ["non_saturating", "wgan"])
def test_short_training_is_repeatable_and_moves_the_generator(loss):
    G1, snaps = train_toy_gan(6, loss=loss, width=16, batch_size=32, seed=3, snapshot_every=3)
    G2, _ = train_toy_gan(6, loss=loss, width=16, batch_size=32, seed=3)
    assert [s for s, _ in snaps] == [0, 3, 6] and snaps[0][1].shape == (512, 2)
    assert not torch.allclose(snaps[0][1], snaps[-1][1])
    z = torch.randn(4, 2)
    assert torch.allclose(G1(z), G2(z))
