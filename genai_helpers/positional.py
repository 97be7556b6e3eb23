"""Positional encodings (chapter 01; extrapolation in chapter 04; rotary in 04 and 06; timesteps in 13).

Attention is permutation-invariant: without positions, "dog bites man" and "man bites dog" look
the same to it. Four ways to give it a position signal live here:

- :func:`sinusoidal_positions` / :class:`SinusoidalPositionalEncoding`: the fixed sine/cosine
  table added to token embeddings (the original transformer).
- :class:`LearnedPositionalEmbedding`: one trained vector per position (GPT-2).
- :func:`rope_cos_sin` / :func:`apply_rope`: rotary embedding, which rotates queries and keys
  instead of adding anything (GPT-NeoX, Llama); used by :class:`genai_helpers.models.gpt.GPT`.
- :func:`timestep_embedding`: the sinusoidal code of a diffusion step ``t`` (chapters 13-15), and
  of frame indices in the video model.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ._checks import check_positive_int, check_tensor

__all__ = ["sinusoidal_positions", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding", "rope_cos_sin",
           "apply_rope", "timestep_embedding"]


def sinusoidal_positions(n_positions: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The ``(n_positions, d_model)`` table PE[pos, 2i] = sin(pos / base^(2i/d)), PE[pos, 2i+1] = cos(...).

    Every entry lies in [-1, 1]; the dot product PE[p]·PE[p+k] depends only on the offset k.
    ``d_model`` must be even.
    """
    check_positive_int("n_positions", n_positions)
    check_positive_int("d_model", d_model)
    if d_model % 2:
        raise ValueError(f"d_model must be even for sinusoidal positions, got {d_model}")
    if not base > 1:
        raise ValueError(f"base must be > 1, got {base}")
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]              # (P, 1)
    inv_freq = torch.exp(-math.log(base) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angles = pos * inv_freq[None, :]                                          # (P, d/2)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to ``x`` of shape ``(B, T, d_model)``; no parameters.

    Works for any length up to ``max_len`` (the table is a buffer, not a weight, so a longer
    ``max_len`` can be chosen at load time without retraining).
    """

    def __init__(self, d_model: int, max_len: int = 4096, base: float = 10000.0):
        super().__init__()
        self.register_buffer("table", sinusoidal_positions(max_len, d_model, base), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        check_tensor("x", x, ndim=3)
        T = x.shape[1]
        if offset < 0 or offset + T > self.table.shape[0]:
            raise ValueError(f"positions offset..offset+T must lie in [0, {self.table.shape[0]}], got {offset}..{offset + T}")
        return x + self.table[offset:offset + T].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned vector per position to ``x`` of shape ``(B, T, d_model)``.

    Cannot represent positions beyond ``max_len`` (chapter 04 measures what that costs).
    """

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        check_positive_int("d_model", d_model)
        self.max_len = check_positive_int("max_len", max_len)
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        check_tensor("x", x, ndim=3)
        T = x.shape[1]
        if offset < 0 or offset + T > self.max_len:
            raise ValueError(f"positions offset..offset+T must lie in [0, max_len={self.max_len}], got {offset}..{offset + T}")
        return x + self.embedding(torch.arange(offset, offset + T, device=x.device))


# --------------------------------------------------------------------------------------------
# Rotary position embedding (RoPE)
# --------------------------------------------------------------------------------------------
def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float = 10000.0,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines for rotary embedding at integer ``positions`` ``(T,)``.

    Returns two ``(T, head_dim)`` tensors. Dimension pair ``(i, i + head_dim/2)`` turns at
    frequency ``base ** (-2i / head_dim)`` (the "rotate-half" layout of GPT-NeoX and Llama).
    Chapter 04 builds it by hand and checks it equal to this.
    """
    check_tensor("positions", positions, ndim=1)
    check_positive_int("head_dim", head_dim)
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]        # (T, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)                              # (T, head_dim)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(..., T, head_dim)`` by the angles behind ``cos``/``sin`` ``(T, head_dim)``.

    Each pair ``(x_i, x_{i+d/2})`` is turned by its angle; lengths are unchanged, and for a query
    at position m and a key at n, ``apply_rope(q, m) · apply_rope(k, n)`` depends only on m - n.
    """
    if cos.shape != sin.shape or cos.shape[-1] != x.shape[-1] or cos.shape[-2] != x.shape[-2]:
        raise ValueError(f"cos/sin must be (T, head_dim) = {tuple(x.shape[-2:])}, got {tuple(cos.shape)}")
    return x * cos.to(x.dtype) + _rotate_half(x) * sin.to(x.dtype)


# --------------------------------------------------------------------------------------------
# Diffusion timesteps
# --------------------------------------------------------------------------------------------
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer steps: ``(B,)`` -> ``(B, dim)``, ``[cos | sin]`` halves.

    Frequencies ``max_period ** (-i / (dim/2))``, as in the transformer's positions (chapter 01);
    the halves are concatenated rather than interleaved (the DDPM/diffusers layout). Chapter 13
    builds it by hand; chapter 15 also uses it for frame positions.
    """
    check_tensor("t", t, ndim=1)
    check_positive_int("dim", dim, minimum=2)
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
