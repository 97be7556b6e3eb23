"""Attention: scaled dot-product attention that returns its weights, masks, multi-head attention.

Chapter 01 builds each of these inline, then checks it equal to this module and to PyTorch's
``F.scaled_dot_product_attention`` / ``nn.MultiheadAttention``.

Mask convention (the same as ``F.scaled_dot_product_attention``): a boolean mask is ``True``
where a query *may* attend to a key; a float mask is *added* to the scores.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_positive_int, check_probability, check_tensor

__all__ = ["causal_mask", "padding_mask", "scaled_dot_product_attention", "MultiHeadAttention"]


def causal_mask(n_queries: int, n_keys: int | None = None, device=None) -> torch.Tensor:
    """Boolean ``(n_queries, n_keys)`` mask, ``True`` on and below the diagonal.

    When ``n_keys > n_queries`` (queries are the *last* positions, as with a KV cache) the
    diagonal is shifted so query ``i`` sees keys ``0 .. n_keys - n_queries + i``.
    """
    check_positive_int("n_queries", n_queries)
    n_keys = n_queries if n_keys is None else check_positive_int("n_keys", n_keys)
    if n_keys < n_queries:
        raise ValueError(f"n_keys must be >= n_queries ({n_queries}), got {n_keys}")
    return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril(diagonal=n_keys - n_queries)


def padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``(B, max_len)`` boolean mask, ``True`` at real tokens and ``False`` at padding.

    ``lengths`` holds each sequence's true length, shape ``(B,)``.
    """
    check_tensor("lengths", lengths, ndim=1)
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError(f"lengths must be >= 0, got min {int(lengths.min())}")
    max_len = int(lengths.max()) if max_len is None else check_positive_int("max_len", max_len)
    if lengths.numel() and int(lengths.max()) > max_len:
        raise ValueError(f"max_len must be >= the longest length ({int(lengths.max())}), got {max_len}")
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 attn_mask: torch.Tensor | None = None, *, is_causal: bool = False,
                                 scale: float | None = None, dropout_p: float = 0.0,
                                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ · scale + mask) v, returning ``(output, weights)``.

    Shapes: ``q`` is ``(..., L, d_k)``, ``k`` is ``(..., S, d_k)``, ``v`` is ``(..., S, d_v)``;
    the output is ``(..., L, d_v)`` and the weights ``(..., L, S)`` (each row sums to 1, except a
    row whose keys are all masked, which is all zeros rather than NaN). ``scale`` defaults to
    ``1/sqrt(d_k)`` — chapter 01 shows why. Same semantics as
    ``torch.nn.functional.scaled_dot_product_attention``, which does not return the weights.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t)
        if t.ndim < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., seq, dim), got shape {tuple(t.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share the last dimension d_k, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same sequence length, got {k.shape[-2]} and {v.shape[-2]}")
    check_probability("dropout_p", dropout_p)
    if scale is not None and not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"scale must be a positive number or None, got {scale!r}")
    L, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    scores = (q @ k.transpose(-2, -1)) * scale                      # (..., L, S)
    allowed = None
    if is_causal:
        allowed = causal_mask(L, S, device=q.device)
    if attn_mask is not None:
        check_tensor("attn_mask", attn_mask)
        if attn_mask.dtype == torch.bool:
            allowed = attn_mask if allowed is None else allowed & attn_mask
        else:
            scores = scores + attn_mask
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    weights = torch.nan_to_num(weights, nan=0.0)                    # fully masked rows -> zeros
    if dropout_p > 0:
        keep = torch.rand(weights.shape, generator=generator, device=weights.device) >= dropout_p
        weights = weights * keep / (1 - dropout_p)
    return weights @ v, weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention: project to ``n_heads`` heads, attend in each, concat, then ``W_O``.

    Self-attention when ``context`` is None; cross-attention (queries from ``x``, keys and values
    from ``context``) otherwise. Parameters are named ``q_proj, k_proj, v_proj, out_proj`` so a
    chapter can copy them into ``nn.MultiheadAttention`` and compare.

    Shapes: ``x`` ``(B, L, d_model)``, ``context`` ``(B, S, d_context)`` with the same ``B`` (a
    batch-1 context is refused rather than silently broadcast: expand it explicitly); output
    ``(B, L, d_model)``.
    ``key_padding_mask`` is ``(B, S)``, ``True`` at real tokens. With ``need_weights=True`` the
    per-head weights ``(B, n_heads, L, S)`` are returned too (computed by the explicit path;
    otherwise the fused ``F.scaled_dot_product_attention`` kernel is used).
    """

    def __init__(self, d_model: int, n_heads: int, *, d_context: int | None = None,
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        check_positive_int("d_model", d_model)
        check_positive_int("n_heads", n_heads)
        if d_model % n_heads:
            raise ValueError(f"n_heads must divide d_model ({d_model}), got {n_heads}")
        check_probability("dropout", dropout)
        d_context = d_model if d_context is None else check_positive_int("d_context", d_context)
        self.d_model, self.n_heads, self.d_head, self.dropout = d_model, n_heads, d_model // n_heads, dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_context, d_model, bias=bias)
        self.v_proj = nn.Linear(d_context, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _split(self, t: torch.Tensor) -> torch.Tensor:          # (B, T, d) -> (B, h, T, d_head)
        B, T, _ = t.shape
        return t.view(B, T, self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, *,
                attn_mask: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None,
                is_causal: bool = False, need_weights: bool = False):
        check_tensor("x", x, ndim=3)
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x must have last dimension d_model={self.d_model}, got {x.shape[-1]}")
        src = x if context is None else check_tensor("context", context, ndim=3)
        if context is not None:
            if context.shape[0] != x.shape[0]:
                raise ValueError(f"context must have the batch size of x ({x.shape[0]}), got {context.shape[0]} "
                                 f"(shape {tuple(context.shape)}); expand a shared context explicitly")
            if context.shape[-1] != self.k_proj.in_features:
                raise ValueError(f"context must have last dimension d_context={self.k_proj.in_features}, "
                                 f"got {context.shape[-1]}")
        q, k, v = self._split(self.q_proj(x)), self._split(self.k_proj(src)), self._split(self.v_proj(src))
        L, S = q.shape[-2], k.shape[-2]
        mask = None
        if is_causal:
            mask = causal_mask(L, S, device=x.device)
        if attn_mask is not None:
            if attn_mask.dtype != torch.bool:
                raise TypeError("attn_mask must be a boolean tensor (True = may attend)")
            mask = attn_mask if mask is None else mask & attn_mask
        if key_padding_mask is not None:
            check_tensor("key_padding_mask", key_padding_mask, ndim=2)
            if tuple(key_padding_mask.shape) != (x.shape[0], S):
                raise ValueError(f"key_padding_mask must have shape (B, S)=({x.shape[0]}, {S}), got {tuple(key_padding_mask.shape)}")
            kpm = key_padding_mask[:, None, None, :]                    # (B, 1, 1, S)
            mask = kpm if mask is None else mask & kpm
        p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p=p)
        elif is_causal and attn_mask is None and key_padding_mask is None and L == S:
            # PyTorch's fused kernels skip the masked half when told the mask is causal.
            out, weights = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p), None
        else:
            out, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p), None
        out = out.transpose(1, 2).reshape(x.shape[0], L, self.d_model)  # concat heads
        out = self.out_proj(out)
        return (out, weights) if need_weights else out
