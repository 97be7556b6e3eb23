"""A convolutional variational autoencoder (chapter 11).

The encoder maps an image ``x`` ``[B, C, S, S]`` in [-1, 1] to the mean ``mu`` and log-variance
``logvar`` ``[B, z_dim]`` of a diagonal Gaussian ``q(z|x)``; a sample ``z = mu + sigma * eps``
(the reparameterisation trick: the randomness sits in ``eps ~ N(0, I)``, so gradients flow into
``mu`` and ``sigma``) is decoded back to an image. Training minimises the negative ELBO

    ``-ELBO = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I))``

with a Gaussian decoder of fixed standard deviation ``sigma_x``: the reconstruction term is
``||x - x_hat||^2 / (2 sigma_x^2)`` summed over pixels (plus a constant that is dropped), and
the KL has the closed form ``0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)``. A smaller
``sigma_x`` weighs reconstruction more (sharper, less regular latents).
"""
from __future__ import annotations

import torch
from torch import nn

from .._checks import check_positive_int, check_tensor
from .gan import _check_size, truncated_noise

__all__ = ["reparameterize", "kl_divergence", "elbo_loss", "ConvVAE"]


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``; same shape as ``mu``."""
    check_tensor("mu", mu)
    check_tensor("logvar", logvar)
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    eps = torch.randn(mu.shape, generator=generator).to(mu)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form ``KL(N(mu, diag exp(logvar)) || N(0, I))`` per row: ``[B, d]`` -> ``[B]`` (nats)."""
    check_tensor("mu", mu, ndim=2)
    check_tensor("logvar", logvar, ndim=2)
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def elbo_loss(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
              sigma_x: float = 0.1) -> dict[str, torch.Tensor]:
    """Negative ELBO per image, averaged over the batch: ``{"loss", "reconstruction", "kl"}`` (nats)."""
    check_tensor("x", x, ndim=4)
    check_tensor("x_hat", x_hat, ndim=4)
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    if not isinstance(sigma_x, (int, float)) or not sigma_x > 0:
        raise ValueError(f"sigma_x must be a positive float, got {sigma_x!r}")
    rec = ((x - x_hat) ** 2).flatten(1).sum(1) / (2 * sigma_x ** 2)
    kl = kl_divergence(mu, logvar)
    return {"loss": (rec + kl).mean(), "reconstruction": rec.mean(), "kl": kl.mean()}


class ConvVAE(nn.Module):
    """Convolutional VAE for ``[B, channels, image_size, image_size]`` images in [-1, 1].

    Encoder: strided 4x4 convolutions (conv -> BatchNorm -> LeakyReLU) from ``image_size`` down to
    4x4, then two linear maps to ``mu`` and ``logvar``. Decoder: the mirror image with transposed
    convolutions, ending in ``tanh``.
    """

    def __init__(self, channels: int = 3, image_size: int = 32, z_dim: int = 32, base: int = 32,
                 sigma_x: float = 0.1):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("z_dim", z_dim)
        check_positive_int("base", base)
        if not isinstance(sigma_x, (int, float)) or not sigma_x > 0:
            raise ValueError(f"sigma_x must be a positive float, got {sigma_x!r}")
        steps = _check_size(image_size)
        self.channels, self.image_size, self.z_dim, self.sigma_x = channels, image_size, z_dim, float(sigma_x)
        enc, width = [], channels
        for i in range(steps):                                                  # S -> S/2 -> ... -> 4
            out = base * 2 ** i
            enc += [nn.Conv2d(width, out, 4, 2, 1), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            width = out
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self.to_mu, self.to_logvar = nn.Linear(width * 16, z_dim), nn.Linear(width * 16, z_dim)
        self.from_z = nn.Linear(z_dim, width * 16)
        self._top = width
        dec = []
        for _ in range(steps - 1):                                              # 4 -> ... -> S/2
            dec += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1), nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        self.decoder = nn.Sequential(*dec, nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh())

    def _check_x(self, x: torch.Tensor) -> None:
        check_tensor("x", x, ndim=4)
        if x.shape[1:] != (self.channels, self.image_size, self.image_size):
            raise ValueError(f"x must have shape [B, {self.channels}, {self.image_size}, {self.image_size}], "
                             f"got {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``[B, z_dim]``."""
        self._check_x(x)
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h).clamp(-12, 8)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, z_dim]`` -> images ``[B, C, S, S]`` in [-1, 1]."""
        check_tensor("z", z, ndim=2)
        if z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [B, {self.z_dim}], got {tuple(z.shape)}")
        return self.decoder(self.from_z(z).view(-1, self._top, 4, 4))

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None):
        """``(x_hat, mu, logvar)`` for a batch ``x``; ``z`` is sampled by reparameterisation."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, generator=generator)), mu, logvar

    def loss(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Negative ELBO (see :func:`elbo_loss`) of a batch."""
        x_hat, mu, logvar = self(x, generator=generator)
        return elbo_loss(x, x_hat, mu, logvar, sigma_x=self.sigma_x)

    @torch.no_grad()
    def sample(self, n: int, *, truncation: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` new images from the prior ``z ~ N(0, I)`` (optionally truncated), in [-1, 1]."""
        z = truncated_noise(n, self.z_dim, truncation, generator=generator)
        return self.decode(z.to(next(self.parameters()).device))
