"""VQGAN-lite: the VQ-VAE trained with a perceptual loss and a patch discriminator (chapter 12, §12.10).

    from genai_helpers.models.vqgan import (PatchDiscriminator, VQGANLossConfig, hinge_d_loss, hinge_g_loss,
                                            adaptive_weight, disc_factor, vqgan_generator_loss,
                                            vqgan_discriminator_loss)

A pixel loss such as ``||x - x_hat||^2`` is smallest for the *average* of the images a token grid
could stand for, so a VQ-VAE trained on it alone paints blur where the detail is uncertain. Esser,
Rombach and Ommer (2021, "Taming transformers", the VQGAN) keep the VQ-VAE (:mod:`.vqvae`) and add
two terms to the autoencoder's loss::

    L_rec = ||x - x_hat||^2 + perceptual_weight * d(x, x_hat)            what the image should look like
    L_G   = L_rec + codebook + beta * commitment
            + disc_factor(step) * lambda * disc_weight * L_adv(x_hat)      what a real image looks like

* ``d``: a perceptual distance, LPIPS in the paper; here
  :func:`genai_helpers.metrics.feature_net.perceptual_distance` on a frozen
  :class:`~genai_helpers.metrics.feature_net.FeatureNet` trained in the book.
* :class:`PatchDiscriminator` (PatchGAN, Isola et al. 2017): a fully convolutional classifier that
  returns a *grid* of logits, one per overlapping patch of :attr:`~PatchDiscriminator.receptive_field`
  pixels, so it judges local texture rather than the whole image.
* Hinge losses (:func:`hinge_d_loss`, :func:`hinge_g_loss`): the discriminator minimises
  ``(mean relu(1 - D(x)) + mean relu(1 + D(x_hat))) / 2``, the autoencoder ``L_adv = -mean D(x_hat)``.
* :func:`adaptive_weight` ``lambda = ||grad_W L_rec|| / (||grad_W L_adv|| + 1e-4)``, ``W`` the
  decoder's last layer, clamped to ``[0, 1e4]`` and detached: the adversarial gradient reaching the
  decoder is scaled to the size of the reconstruction gradient, whatever the two losses' scales.
* :func:`disc_factor`: 0 before ``disc_start`` steps, 1 from then on. The paper switches the
  discriminator on only after the autoencoder reconstructs reasonably (a discriminator that meets
  untrained reconstructions wins at once and its gradient is useless); until then neither the
  discriminator trains nor ``L_adv`` reaches the autoencoder.

:func:`vqgan_generator_loss` and :func:`vqgan_discriminator_loss` assemble the two objectives from
a :class:`~genai_helpers.models.vqvae.VQVAEOutput`; the training loop (two optimisers, one step
each per batch) stays in the chapter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_tensor
from ..metrics.feature_net import FeatureNet, perceptual_distance
from .gan import make_norm
from .vqvae import VQVAE, VQVAEOutput

__all__ = ["PatchDiscriminator", "hinge_d_loss", "hinge_g_loss", "adaptive_weight", "disc_factor",
           "VQGANLossConfig", "last_decoder_layer", "vqgan_generator_loss", "vqgan_discriminator_loss"]


def _check_nonneg_float(name: str, value) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a float >= 0, got {type(value).__name__}")
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite float >= 0, got {value}")
    return float(value)


class PatchDiscriminator(nn.Module):
    """Images ``(B, C, H, W)`` -> a grid of logits ``(B, 1, H / 2**n_layers, W / 2**n_layers)`` (real > 0).

    ``n_layers`` stride-2 4x4 convolutions (``width``, ``2 width``, ... channels; LeakyReLU 0.2; a
    norm on all but the first, as in pix2pix and taming-transformers' ``NLayerDiscriminator``),
    then a 3x3 convolution to one channel. Every logit sees one square patch of
    :attr:`receptive_field` pixels; neighbouring patches overlap. ``norm`` is one of
    :data:`genai_helpers.models.gan.NORMS` (``"batch"`` as in the paper's code).
    """

    def __init__(self, in_channels: int = 1, width: int = 32, n_layers: int = 2, norm: str = "batch"):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("width", width)
        check_positive_int("n_layers", n_layers)
        make_norm(norm, 8)                                        # ValueError naming norm if unknown
        self.in_channels, self.n_layers, self.norm = in_channels, n_layers, norm
        layers, ch = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)], width
        for _ in range(n_layers - 1):
            layers += [nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1, bias=norm == "none"),
                       make_norm(norm, 2 * ch, min(8, 2 * ch)), nn.LeakyReLU(0.2)]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        for m in self.modules():                                  # DCGAN / pix2pix initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    @property
    def receptive_field(self) -> int:
        """Side in pixels of the input square that one output logit depends on."""
        rf, jump = 1, 1
        for m in self.net:
            if isinstance(m, nn.Conv2d):
                rf += (m.kernel_size[0] - 1) * jump
                jump *= m.stride[0]
        return rf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=4)
        f = 2 ** self.n_layers
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have {self.in_channels} channels, got {x.shape[1]}")
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"x height and width must be divisible by {f}, got {tuple(x.shape[2:])}")
        return self.net(x)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss ``(mean relu(1 - real) + mean relu(1 + fake)) / 2`` (any shapes)."""
    check_tensor("real_logits", real_logits)
    check_tensor("fake_logits", fake_logits)
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The autoencoder's adversarial loss ``-mean D(x_hat)`` (push the fakes' logits up)."""
    check_tensor("fake_logits", fake_logits)
    return -fake_logits.mean()


def adaptive_weight(rec_loss: torch.Tensor, adv_loss: torch.Tensor, last_layer: torch.Tensor, *,
                    max_weight: float = 1e4, eps: float = 1e-4) -> torch.Tensor:
    """``||grad_W rec_loss|| / (||grad_W adv_loss|| + eps)`` clamped to ``[0, max_weight]``, detached.

    ``last_layer``: the weight ``W`` both losses depend on (the decoder's last layer, see
    :func:`last_decoder_layer`). Both gradients are taken with ``retain_graph=True``, so the losses
    can still be back-propagated afterwards. Returns a 0-d tensor.
    """
    check_tensor("rec_loss", rec_loss, ndim=0)
    check_tensor("adv_loss", adv_loss, ndim=0)
    check_tensor("last_layer", last_layer)
    if not last_layer.requires_grad:
        raise ValueError("last_layer must require grad (it is the weight both losses are differentiated by)")
    max_weight, eps = _check_nonneg_float("max_weight", max_weight), _check_nonneg_float("eps", eps)
    if eps == 0:
        raise ValueError("eps must be > 0")
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adv_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_adv.norm() + eps)).clamp(0.0, max_weight).detach()


def disc_factor(step: int, disc_start: int, factor: float = 1.0) -> float:
    """``factor`` once ``step >= disc_start``, 0 before: the discriminator's warm-up switch."""
    check_positive_int("step", step, minimum=0)
    check_positive_int("disc_start", disc_start, minimum=0)
    return _check_nonneg_float("factor", factor) if step >= disc_start else 0.0


@dataclass
class VQGANLossConfig:
    perceptual_weight: float = 1.0   # weight of the perceptual distance inside L_rec (0: pixel loss only)
    disc_weight: float = 0.5         # weight of the adversarial term (times the adaptive weight); 0: no GAN
    disc_start: int = 0              # steps before the discriminator trains and L_adv reaches the autoencoder
    adaptive: bool = True            # scale L_adv by adaptive_weight (else by disc_weight alone)
    max_adaptive: float = 1e4        # clamp of the adaptive weight

    def __post_init__(self):
        for name in ("perceptual_weight", "disc_weight", "max_adaptive"):
            _check_nonneg_float(name, getattr(self, name))
        check_positive_int("disc_start", self.disc_start, minimum=0)
        if not isinstance(self.adaptive, bool):
            raise TypeError(f"adaptive must be a bool, got {type(self.adaptive).__name__}")

    @property
    def uses_gan(self) -> bool:
        return self.disc_weight > 0


def last_decoder_layer(model: VQVAE) -> torch.Tensor:
    """The weight of the VQ-VAE decoder's last convolution (what :func:`adaptive_weight` differentiates by)."""
    if not isinstance(model, VQVAE):
        raise TypeError(f"model must be a VQVAE, got {type(model).__name__}")
    convs = [m for m in model.decoder.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    return convs[-1].weight


def vqgan_generator_loss(model: VQVAE, out: VQVAEOutput, x: torch.Tensor, step: int, config: VQGANLossConfig, *,
                         percept_net: FeatureNet | None = None,
                         disc: PatchDiscriminator | None = None) -> dict:
    """The autoencoder's objective ``L_G`` (module docstring) for one batch ``x`` and its ``out = model(x)``.

    Returns ``{"loss", "rec", "perceptual", "adv", "weight"}``: ``loss`` is the tensor to
    back-propagate; the others are floats for logging (``perceptual`` and ``adv`` are 0 when their
    term is off, ``weight`` is ``disc_factor * lambda * disc_weight``). ``percept_net`` is required
    when ``config.perceptual_weight > 0``, ``disc`` when ``config.disc_weight > 0``.
    """
    if not isinstance(config, VQGANLossConfig):
        raise TypeError(f"config must be a VQGANLossConfig, got {type(config).__name__}")
    if not isinstance(out, VQVAEOutput):
        raise TypeError(f"out must be the VQVAEOutput of model(x), got {type(out).__name__}")
    check_tensor("x", x, ndim=4)
    if out.recon.shape != x.shape:
        raise ValueError(f"x must have the shape of out.recon {tuple(out.recon.shape)}, got {tuple(x.shape)}")
    if config.perceptual_weight > 0 and percept_net is None:
        raise ValueError("percept_net is required when config.perceptual_weight > 0")
    if config.uses_gan and disc is None:
        raise ValueError("disc is required when config.disc_weight > 0")
    rec = out.recon_loss
    perceptual = torch.zeros((), device=x.device)
    if config.perceptual_weight > 0:
        perceptual = perceptual_distance(percept_net, out.recon, x).mean()
        rec = rec + config.perceptual_weight * perceptual
    codebook_term = 0.0 if model.quantizer.uses_ema else out.codebook_loss
    loss = rec + codebook_term + model.config.beta * out.commitment_loss
    adv, weight = torch.zeros((), device=x.device), 0.0
    factor = disc_factor(step, config.disc_start) if config.uses_gan else 0.0
    if factor > 0:
        adv = hinge_g_loss(disc(out.recon))
        lam = adaptive_weight(rec, adv, last_decoder_layer(model), max_weight=config.max_adaptive) \
            if config.adaptive and model.training else torch.tensor(1.0)
        weight = factor * float(lam) * config.disc_weight
        loss = loss + weight * adv
    return {"loss": loss, "rec": out.recon_loss.item(), "perceptual": perceptual.item(), "adv": adv.item(),
            "weight": weight}


def vqgan_discriminator_loss(disc: PatchDiscriminator, x: torch.Tensor, recon: torch.Tensor, step: int,
                             config: VQGANLossConfig) -> torch.Tensor | None:
    """``disc_factor * hinge_d_loss(D(x), D(sg[recon]))``, or ``None`` before ``disc_start`` (nothing to train)."""
    if not isinstance(config, VQGANLossConfig):
        raise TypeError(f"config must be a VQGANLossConfig, got {type(config).__name__}")
    check_tensor("x", x, ndim=4)
    check_tensor("recon", recon, ndim=4)
    if x.shape != recon.shape:
        raise ValueError(f"x and recon must have the same shape, got {tuple(x.shape)} and {tuple(recon.shape)}")
    factor = disc_factor(step, config.disc_start) if config.uses_gan else 0.0
    if factor == 0:
        return None
    return factor * hinge_d_loss(disc(x), disc(recon.detach()))
