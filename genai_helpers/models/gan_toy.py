"""A GAN on a 2-D mixture of Gaussians: the place where mode collapse can be seen (chapter 11, §11.8).

Eight (or ``n_modes``) Gaussians on a ring of radius 2 with standard deviation 0.02 are the classic
test bed of the unrolled-GAN paper (Metz et al., 2017): every sample can be assigned to a mode,
so "how many modes does the generator cover" and "what share of its samples are good" are counts,
not impressions.

- :func:`ring_of_gaussians`  centres and samples of the mixture
- :func:`mode_coverage`      modes covered and share of high-quality samples (within 3 sigma of a centre)
- :class:`ToyGenerator`, :class:`ToyCritic`  small MLPs (z -> R^2, R^2 -> score)
- :func:`train_toy_gan`      the non-saturating GAN or WGAN-GP (Gulrajani et al., 2017) with its published
  settings as defaults for ``loss="wgan"`` (n_critic = 5, Adam lr 1e-4, betas (0.5, 0.9), lambda = 10)
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .gan import gradient_penalty

__all__ = ["ring_of_gaussians", "mode_coverage", "ToyGenerator", "ToyCritic", "train_toy_gan"]


def ring_of_gaussians(n: int, n_modes: int = 8, radius: float = 2.0, std: float = 0.02, *,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples ``[n, 2]`` of ``n_modes`` equal Gaussians on a ring, and the centres ``[n_modes, 2]``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n_modes < 1:
        raise ValueError(f"n_modes must be >= 1, got {n_modes}")
    if std <= 0 or radius <= 0:
        raise ValueError(f"std and radius must be > 0, got std={std}, radius={radius}")
    angles = torch.arange(n_modes) * (2 * math.pi / n_modes)
    centres = radius * torch.stack([angles.cos(), angles.sin()], 1)
    which = torch.randint(0, n_modes, (n,), generator=generator)
    return centres[which] + std * torch.randn(n, 2, generator=generator), centres


def mode_coverage(samples: torch.Tensor, centres: torch.Tensor, std: float = 0.02, *,
                  min_share: float = 0.25) -> dict[str, float]:
    """Score 2-D samples against the mixture's centres.

    A sample is *high quality* when it lies within 3 ``std`` of its nearest centre; a mode is
    *covered* when it holds at least ``min_share`` of its fair share (1 / n_modes) of the
    high-quality samples' count out of all samples. Returns ``modes`` (count), ``high_quality`` (fraction).
    """
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"samples must be [n, 2], got {tuple(samples.shape)}")
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    d = torch.cdist(samples.float(), centres.float())                  # [n, n_modes]
    dist, nearest = d.min(1)
    good = dist <= 3 * std
    counts = torch.bincount(nearest[good], minlength=len(centres)).float()
    fair = len(samples) / len(centres)
    return {"modes": int((counts >= min_share * fair).sum()), "high_quality": float(good.float().mean())}


class ToyGenerator(nn.Module):
    """z ``[B, z_dim]`` -> point ``[B, 2]``: an MLP with ``depth`` hidden ReLU layers of ``width``."""

    def __init__(self, z_dim: int = 2, width: int = 128, depth: int = 3):
        super().__init__()
        if z_dim < 1 or width < 1 or depth < 1:
            raise ValueError(f"z_dim, width and depth must be >= 1, got {z_dim}, {width}, {depth}")
        self.z_dim = z_dim
        layers, d = [], z_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.net = nn.Sequential(*layers, nn.Linear(d, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ToyCritic(nn.Module):
    """Point ``[B, 2]`` -> score ``[B]`` (a logit for the GAN, an unbounded score for WGAN-GP)."""

    def __init__(self, width: int = 128, depth: int = 3):
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got {width}, {depth}")
        layers, d = [], 2
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.net = nn.Sequential(*layers, nn.Linear(d, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def train_toy_gan(steps: int, *, loss: str = "non_saturating", n_critic: int | None = None,
                  lr: float | None = None, betas: tuple[float, float] | None = None, gp_weight: float = 10.0,
                  batch_size: int = 256, width: int = 128, z_dim: int = 2, n_modes: int = 8, seed: int = 0,
                  snapshot_every: int = 0) -> tuple[ToyGenerator, list[tuple[int, torch.Tensor]]]:
    """Train a toy GAN for ``steps`` generator steps on :func:`ring_of_gaussians`.

    ``loss="non_saturating"``: the cross-entropy GAN, one D step per G step, Adam lr 1e-3 betas (0.5, 0.999)
    unless given. ``loss="wgan"``: WGAN-GP as published — ``n_critic`` = 5 critic steps per generator
    step, Adam lr 1e-4, betas (0.5, 0.9), penalty weight 10. Returns the generator and, every
    ``snapshot_every`` steps, ``(step, 512 samples [512, 2])`` drawn from a fixed z.
    """
    if loss not in ("non_saturating", "wgan"):
        raise ValueError(f"loss must be 'non_saturating' or 'wgan', got {loss!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    wgan = loss == "wgan"
    n_critic = (5 if wgan else 1) if n_critic is None else n_critic
    if n_critic < 1:
        raise ValueError(f"n_critic must be >= 1, got {n_critic}")
    lr = (1e-4 if wgan else 1e-3) if lr is None else lr
    betas = ((0.5, 0.9) if wgan else (0.5, 0.999)) if betas is None else betas
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    G, D = ToyGenerator(z_dim, width), ToyCritic(width)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
    z_fixed = torch.randn(512, z_dim, generator=g)
    snapshots = []
    for step in range(steps + 1):
        if snapshot_every and step % snapshot_every == 0:
            with torch.no_grad():
                snapshots.append((step, G(z_fixed)))
        if step == steps:
            break
        for _ in range(n_critic):
            real = ring_of_gaussians(batch_size, n_modes, generator=g)[0]
            with torch.no_grad():
                fake = G(torch.randn(batch_size, z_dim, generator=g))
            r, f = D(real), D(fake)
            if wgan:
                d_loss = f.mean() - r.mean() + gp_weight * gradient_penalty(D, real, fake, generator=g)
            else:
                d_loss = (F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
                          + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)))
            opt_d.zero_grad(); d_loss.backward(); opt_d.step()
        out = D(G(torch.randn(batch_size, z_dim, generator=g)))
        g_loss = -out.mean() if wgan else F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        opt_g.zero_grad(); g_loss.backward(); opt_g.step()
    G.eval()
    return G, snapshots
