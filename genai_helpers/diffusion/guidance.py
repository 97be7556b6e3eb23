"""Classifier-free guidance (Ho & Salimans 2022), chapter 13.

Train one model that sees the prompt most of the time and an *empty* prompt otherwise (prompt
dropout). At sampling time ask it twice — with the prompt and with the empty one — and move
further along the difference:

    eps = eps_uncond + scale * (eps_cond - eps_uncond)

``scale = 0`` is the unconditional model, ``1`` the plain conditional one, ``> 1`` trades variety
for prompt fidelity. Large scales also inflate the prediction's spread, so images over-saturate;
``rescale = phi`` (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed")
rescales the guided prediction to the conditional one's standard deviation and mixes
``phi * rescaled + (1 - phi) * guided`` (diffusers' ``guidance_rescale``).
"""
from __future__ import annotations

from typing import Callable

import torch

from .._checks import check_tensor

__all__ = ["classifier_free_guidance", "guided_eps_fn"]


def classifier_free_guidance(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float,
                             rescale: float = 0.0) -> torch.Tensor:
    """``eps_uncond + scale * (eps_cond - eps_uncond)``; both predictions of the same shape.
    ``rescale`` in [0, 1]: guidance rescale (see the module docstring; 0 = plain guidance)."""
    check_tensor("eps_uncond", eps_uncond)
    check_tensor("eps_cond", eps_cond)
    if eps_uncond.shape != eps_cond.shape:
        raise ValueError(f"eps_cond must have the shape of eps_uncond {tuple(eps_uncond.shape)}, got {tuple(eps_cond.shape)}")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or scale < 0:
        raise ValueError(f"scale must be a number >= 0, got {scale!r}")
    _check_rescale(rescale)
    guided = eps_uncond + scale * (eps_cond - eps_uncond)
    if rescale == 0:
        return guided
    dims = list(range(1, guided.ndim))
    rescaled = guided * (eps_cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return rescale * rescaled + (1 - rescale) * guided


def _check_rescale(rescale) -> None:
    if not isinstance(rescale, (int, float)) or isinstance(rescale, bool) or not 0 <= rescale <= 1:
        raise ValueError(f"rescale must be a number in [0, 1], got {rescale!r}")


def guided_eps_fn(model: Callable, cond: dict, null_cond: dict, scale: float, rescale: float = 0.0) -> Callable:
    """An ``eps_fn(x_t, t)`` for :func:`~genai_helpers.diffusion.samplers.sample` with guidance.

    ``model(x_t, t, **cond)`` predicts noise. ``cond`` and ``null_cond`` are dicts of batched
    tensors (the prompts and the empty prompt, same batch size). One forward pass on the doubled
    batch computes both predictions; ``scale == 1`` skips the unconditional half and ``scale == 0``
    the conditional half. ``rescale``: guidance rescale (see :func:`classifier_free_guidance`).
    """
    if not isinstance(cond, dict) or not isinstance(null_cond, dict) or cond.keys() != null_cond.keys():
        raise TypeError("cond and null_cond must be dicts with the same keys")
    if not isinstance(scale, (int, float)) or scale < 0:
        raise ValueError(f"scale must be a number >= 0, got {scale!r}")
    _check_rescale(rescale)

    def eps_fn(x, t):
        if scale == 1:
            return model(x, t, **cond)
        if scale == 0:
            return model(x, t, **null_cond)
        both = {k: torch.cat([null_cond[k], cond[k]]) for k in cond}
        e_u, e_c = model(torch.cat([x, x]), torch.cat([t, t]), **both).chunk(2)
        return classifier_free_guidance(e_u, e_c, float(scale), rescale)

    return eps_fn
