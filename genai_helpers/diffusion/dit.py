"""A small Diffusion Transformer, DiT (Peebles & Xie 2023), chapter 13.

    x_t (B, C, H, W) ──patchify──► (B, N, p*p*C) ──linear + positions──► N tokens of width d
        ──► DiT blocks: self-attention + MLP, each LayerNorm *modulated* by the condition ──►
        ──► final modulated LayerNorm + linear ──► (B, N, p*p*C) ──unpatchify──► noise (B, C, H, W)

The condition ``c = time embedding + projected pooled prompt`` enters through adaLN-Zero: a
linear layer maps ``c`` to a shift, a scale and a gate per sub-layer, initialised at zero so every
block starts as the identity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_tensor
from ..attention import MultiHeadAttention
from ..patches import patchify as _patchify, unpatchify as _unpatchify
from ..positional import timestep_embedding
from ..transformer import FeedForward

__all__ = ["patchify", "unpatchify", "modulate", "DiTBlock", "DiTConfig", "DiT"]


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, (H/p)*(W/p), p*p*C)``: patches in raster order, each ordered
    (row, column, channel) as in the reference DiT code. :func:`genai_helpers.patches.patchify`
    with ``channels_last=True`` (the module docstring there compares the two layouts)."""
    return _patchify(x, patch, channels_last=True)


def unpatchify(tokens: torch.Tensor, patch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, N, p*p*C)`` -> ``(B, C, H, W)``."""
    check_positive_int("patch", patch)
    if height % patch or width % patch:
        raise ValueError(f"patch must divide the height and width {height}x{width}, got {patch}")
    return _unpatchify(tokens, patch, (height // patch, width // patch), channels, channels_last=True)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift`` with per-sample ``(B, d)`` shift/scale broadcast over tokens."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """Pre-norm transformer block whose LayerNorms are modulated by the condition (adaLN-Zero)."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(d_model, mlp_ratio * d_model)
        self.ada = nn.Linear(d_model, 6 * d_model)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(c)).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(modulate(self.ln1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.ln2(x), shift2, scale2))


@dataclass
class DiTConfig:
    image_size: int = 16
    in_channels: int = 3
    patch: int = 2
    d_model: int = 128
    depth: int = 4
    n_heads: int = 4
    d_text: int = 64

    def __post_init__(self):
        for name in ("image_size", "in_channels", "patch", "d_model", "depth", "n_heads", "d_text"):
            check_positive_int(name, getattr(self, name))
        if self.image_size % self.patch:
            raise ValueError(f"patch must divide image_size {self.image_size}, got {self.patch}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads must divide d_model {self.d_model}, got {self.n_heads}")


class DiT(nn.Module):
    """``eps_theta(x_t, t, pooled prompt)``; same call signature as :class:`~.unet.UNet` (``context`` unused)."""

    def __init__(self, config: DiTConfig | None = None):
        super().__init__()
        self.config = c = config or DiTConfig()
        n_tokens = (c.image_size // c.patch) ** 2
        self.embed = nn.Linear(c.patch * c.patch * c.in_channels, c.d_model)
        self.pos = nn.Parameter(torch.randn(1, n_tokens, c.d_model) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(c.d_model, c.d_model), nn.SiLU(), nn.Linear(c.d_model, c.d_model))
        self.text_proj = nn.Linear(c.d_text, c.d_model)
        self.blocks = nn.ModuleList(DiTBlock(c.d_model, c.n_heads) for _ in range(c.depth))
        self.ln_out = nn.LayerNorm(c.d_model, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(c.d_model, 2 * c.d_model)
        self.head = nn.Linear(c.d_model, c.patch * c.patch * c.in_channels)
        for layer in (self.ada_out, self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, pooled: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        check_tensor("x", x, ndim=4)
        if tuple(x.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"x must have shape (B, {c.in_channels}, {c.image_size}, {c.image_size}), got {tuple(x.shape)}")
        if pooled is None:
            raise ValueError("pooled (the pooled prompt embedding) must be given")
        cond = self.time_mlp(timestep_embedding(t, c.d_model)) + self.text_proj(pooled)     # (B, d)
        h = self.embed(patchify(x, c.patch)) + self.pos                                     # (B, N, d)
        for block in self.blocks:
            h = block(h, cond)
        shift, scale = self.ada_out(F.silu(cond)).chunk(2, dim=-1)
        h = self.head(modulate(self.ln_out(h), shift, scale))                              # (B, N, p*p*C)
        return unpatchify(h, c.patch, c.in_channels, c.image_size, c.image_size)
