"""A small convolutional VAE for the latent-diffusion idea (chapter 13).

Latent diffusion (Rombach et al. 2022) runs the denoiser on a compressed *latent* instead of on
pixels: a VAE maps ``(B, 3, H, W)`` to ``(B, latent_channels, H/4, W/4)`` here (two stride-2
stages), the diffusion model learns that latent space, and the decoder turns the final latent
back into pixels. Each denoising step then costs a fraction of a pixel-space one.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_tensor

__all__ = ["VAE", "vae_loss"]


def _block(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.GroupNorm(8, b), nn.SiLU())


class VAE(nn.Module):
    """Encoder ``x -> (mean, logvar)`` of the latent; decoder ``z -> x``. Images in ``[-1, 1]``."""

    def __init__(self, in_channels: int = 3, latent_channels: int = 4, width: int = 32):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("latent_channels", latent_channels)
        check_positive_int("width", width, minimum=8)
        w = width
        self.encoder = nn.Sequential(_block(in_channels, w), nn.Conv2d(w, w, 3, stride=2, padding=1), _block(w, 2 * w),
                                     nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), _block(2 * w, 2 * w),
                                     nn.Conv2d(2 * w, 2 * latent_channels, 1))
        self.decoder = nn.Sequential(nn.Conv2d(latent_channels, 2 * w, 3, padding=1), _block(2 * w, 2 * w),
                                     nn.Upsample(scale_factor=2, mode="nearest"), _block(2 * w, w),
                                     nn.Upsample(scale_factor=2, mode="nearest"), _block(w, w),
                                     nn.Conv2d(w, in_channels, 3, padding=1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, H, W)`` -> ``mean, logvar`` each ``(B, latent_channels, H/4, W/4)``."""
        check_tensor("x", x, ndim=4)
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"x height and width must be divisible by 4, got {tuple(x.shape[-2:])}")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Reconstruct through a sampled latent: returns ``(recon, mean, logvar)``."""
        mean, logvar = self.encode(x)
        z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=generator).to(mean.device)
        return self.decode(z), mean, logvar


def vae_loss(recon: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, beta: float = 1e-3):
    """``MSE(recon, x) + beta * KL(q(z|x) || N(0, I))``; the KL is summed over the latent and divided by
    the number of pixel values, so both terms are "per pixel". Returns ``(loss, {"recon", "kl"})``."""
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    recon_term = F.mse_loss(recon, x)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean() / x[0].numel()
    return recon_term + beta * kl, {"recon": recon_term.detach(), "kl": kl.detach()}
