"""Positional encodings: fixed sinusoidal and learned (chapter 01; extrapolation in chapter 04).

Attention is permutation-invariant: without positions, "dog bites man" and "man bites dog" look
the same to it. These modules add a position signal to token embeddings.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ._checks import check_positive_int, check_tensor


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
