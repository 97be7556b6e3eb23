"""DCGAN generator and discriminator, GAN losses and truncated sampling (chapter 11).

- :class:`DCGANGenerator`: noise ``z`` ``[B, z_dim]`` -> images ``[B, C, S, S]`` in [-1, 1]. A
  transposed convolution lifts ``z`` to a 4x4 map, then each block doubles the resolution
  (ConvTranspose2d 4x4 stride 2 -> norm -> ReLU); a last transposed convolution and ``tanh``
  give the image. ``S`` is a power of two >= 8.
- :class:`DCGANDiscriminator`: images -> one *logit* per image ``[B]``. Strided 4x4 convolutions
  halve the resolution (conv -> norm -> LeakyReLU 0.2, no norm on the first, as in DCGAN) down to
  4x4, then a 4x4 convolution gives the score. The sigmoid of the paper's head is folded into
  the losses (``BCE-with-logits`` is the numerically stable form); :meth:`~DCGANDiscriminator.prob`
  applies it. ``minibatch_std=True`` appends the batch's mean feature standard deviation as an
  extra channel before the head (ProGAN's minibatch standard deviation, a cheap form of
  minibatch discrimination): a generator that emits near-identical images is then easy to spot.
- Norms (``norm=``): ``"batch"`` (BatchNorm2d), ``"layer"`` (GroupNorm with one group: mean and
  variance over C, H, W of each image), ``"instance"`` (InstanceNorm2d with affine weights: per
  image and channel), ``"group"`` (GroupNorm with ``groups`` groups), ``"none"``.
- Losses on logits: :func:`discriminator_loss` (both players' BCE), :func:`generator_loss`
  (``"minimax"``: minimise ``E log(1 - D(G(z)))``, which saturates when D wins;
  ``"non_saturating"``: minimise ``-E log D(G(z))``), and WGAN-GP's :func:`wgan_critic_loss`,
  :func:`wgan_generator_loss` and :func:`gradient_penalty`.
- :func:`truncated_noise`: the truncation trick — ``z`` drawn from a standard normal restricted
  to ``[-t, t]`` in every coordinate (exactly, by the inverse CDF, not by rejection).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_positive_int, check_tensor

__all__ = ["NORMS", "GENERATOR_LOSSES", "make_norm", "init_dcgan_weights", "DCGANGenerator", "MinibatchStd",
           "DCGANDiscriminator", "discriminator_loss", "generator_loss", "wgan_critic_loss", "wgan_generator_loss",
           "gradient_penalty", "truncated_noise"]

#: The normalisation layers :func:`make_norm` builds (``"none"``: identity).
NORMS = ("batch", "layer", "instance", "group", "none")
GENERATOR_LOSSES = ("minimax", "non_saturating")


def make_norm(kind: str, channels: int, groups: int = 8) -> nn.Module:
    """A 2-D normalisation layer over ``[B, channels, H, W]``; ``kind`` is one of :data:`NORMS`."""
    if kind not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
    check_positive_int("channels", channels)
    check_positive_int("groups", groups)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        g = math.gcd(groups, channels)
        return nn.GroupNorm(g, channels)
    return nn.Identity()


def _check_size(image_size: int) -> int:
    check_positive_int("image_size", image_size, minimum=8)
    if image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
    return int(math.log2(image_size)) - 2          # number of x2 steps between 4x4 and the image


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """``z [B, z_dim]`` -> images ``[B, channels, image_size, image_size]`` in [-1, 1].

    Widths: ``base * 2**(steps-1)`` channels at 4x4, halving at each doubling of resolution, down
    to ``base`` before the output layer (``steps = log2(image_size) - 2``).
    """

    def __init__(self, z_dim: int = 64, channels: int = 3, base: int = 32, image_size: int = 32,
                 norm: str = "batch", groups: int = 8):
        super().__init__()
        check_positive_int("z_dim", z_dim)
        check_positive_int("channels", channels)
        check_positive_int("base", base)
        steps = _check_size(image_size)
        make_norm(norm, 1)                                   # validates the name
        self.z_dim, self.image_size, self.norm = z_dim, image_size, norm
        width = base * 2 ** (steps - 1)
        layers = [nn.ConvTranspose2d(z_dim, width, 4, 1, 0, bias=False),      # [B, width, 4, 4]
                  make_norm(norm, width, groups), nn.ReLU(True)]
        for _ in range(steps - 1):                                             # 4 -> 8 -> ... -> S/2
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                       make_norm(norm, width // 2, groups), nn.ReLU(True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]     # S/2 -> S
        self.net = nn.Sequential(*layers)
        self.apply(init_dcgan_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_tensor("z", z, ndim=2)
        if z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [B, {self.z_dim}], got {tuple(z.shape)}")
        return self.net(z[:, :, None, None])


class MinibatchStd(nn.Module):
    """Append one channel holding the batch's mean per-feature standard deviation (ProGAN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = x.std(0, unbiased=False).mean() if len(x) > 1 else x.new_zeros(())
        return torch.cat([x, std.expand(x.shape[0], 1, *x.shape[2:])], 1)


class DCGANDiscriminator(nn.Module):
    """Images ``[B, channels, S, S]`` in [-1, 1] -> logits ``[B]`` (real > 0 > fake).

    For a WGAN critic use ``norm="layer"``, ``"instance"``, ``"group"`` or ``"none"``: the gradient
    penalty is per image, which batch norm (mixing images) breaks.
    """

    def __init__(self, channels: int = 3, base: int = 32, image_size: int = 32, norm: str = "batch",
                 groups: int = 8, minibatch_std: bool = False):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("base", base)
        steps = _check_size(image_size)
        make_norm(norm, 1)
        self.image_size, self.norm, self.channels = image_size, norm, channels
        layers = [nn.Conv2d(channels, base, 4, 2, 1), nn.LeakyReLU(0.2, True)]        # S -> S/2, no norm
        width = base
        for _ in range(steps - 1):                                                    # S/2 -> ... -> 4
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), make_norm(norm, width * 2, groups),
                       nn.LeakyReLU(0.2, True)]
            width *= 2
        self.body = nn.Sequential(*layers)
        self.mbstd = MinibatchStd() if minibatch_std else None
        self.head = nn.Conv2d(width + int(minibatch_std), 1, 4, 1, 0)                # 4x4 -> 1x1
        self.apply(init_dcgan_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=4)
        if x.shape[1:] != (self.channels, self.image_size, self.image_size):
            raise ValueError(f"x must have shape [B, {self.channels}, {self.image_size}, {self.image_size}], "
                             f"got {tuple(x.shape)}")
        h = self.body(x)
        if self.mbstd is not None:
            h = self.mbstd(h)
        return self.head(h).flatten()

    def prob(self, x: torch.Tensor) -> torch.Tensor:
        """``D(x)``: the probability ``[B]`` that each image is real (the sigmoid of the logit)."""
        return torch.sigmoid(self(x))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``-E log D(x) - E log(1 - D(G(z)))`` from logits (the same for minimax and non-saturating)."""
    check_tensor("real_logits", real_logits)
    check_tensor("fake_logits", fake_logits)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """The generator's loss from the discriminator's logits on fakes.

    ``"minimax"``: ``E log(1 - D(G(z))) = -E softplus(l)``; its gradient in the logit is
    ``-D(G(z))``, which vanishes when the discriminator confidently rejects the fakes.
    ``"non_saturating"``: ``-E log D(G(z)) = E softplus(-l)``; gradient ``-(1 - D(G(z)))``, largest
    exactly then.
    """
    check_tensor("fake_logits", fake_logits)
    if kind not in GENERATOR_LOSSES:
        raise ValueError(f"kind must be one of {GENERATOR_LOSSES}, got {kind!r}")
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    return F.softplus(-fake_logits).mean()


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss ``E f(G(z)) - E f(x)`` (minimised: real scores up, fake scores down)."""
    check_tensor("real_scores", real_scores)
    check_tensor("fake_scores", fake_scores)
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN generator loss ``-E f(G(z))``."""
    check_tensor("fake_scores", fake_scores)
    return -fake_scores.mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty ``E (||grad_x f(x_hat)||_2 - 1)^2`` at ``x_hat = a real + (1 - a) fake``.

    ``a ~ U(0, 1)`` per image (drawn with ``generator`` if given). The result is differentiable
    with respect to the critic's parameters (``create_graph=True``); multiply by lambda (10 in the
    paper) and add it to :func:`wgan_critic_loss`.
    """
    check_tensor("real", real)
    check_tensor("fake", fake)
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    a = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), generator=generator).to(real)
    x_hat = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def truncated_noise(n: int, z_dim: int, truncation: float | None = None, *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Latents ``[n, z_dim]``: standard normal, or with ``truncation=t`` normal restricted to ``[-t, t]``.

    Sampled exactly through the inverse CDF (``u ~ U(Phi(-t), Phi(t))``, ``z = Phi^-1(u)``).
    Small ``t`` trades diversity for fidelity (samples near the generator's "average" face);
    ``t`` of 3 or more is indistinguishable from no truncation.
    """
    check_positive_int("n", n)
    check_positive_int("z_dim", z_dim)
    if truncation is None:
        return torch.randn(n, z_dim, generator=generator)
    if not isinstance(truncation, (int, float)) or isinstance(truncation, bool) or not truncation > 0:
        raise ValueError(f"truncation must be a positive float (a threshold in standard deviations) or None, got {truncation!r}")
    lo = 0.5 * (1 + math.erf(-truncation / math.sqrt(2)))
    u = lo + (1 - 2 * lo) * torch.rand(n, z_dim, generator=generator, dtype=torch.float64)
    return torch.special.ndtri(u).clamp(-truncation, truncation).float()
