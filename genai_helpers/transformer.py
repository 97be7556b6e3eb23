"""Transformer building blocks: feed-forward, the pre-norm block, a mixture-of-experts layer, and
the GPT-2 weight initialisation.

Chapter 01 builds each inline and checks it equal to these. Shapes are ``(B, T, d_model)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_positive_int, check_probability, check_tensor
from .attention import MultiHeadAttention

__all__ = ["gpt2_init", "FeedForward", "TransformerBlock", "MixtureOfExperts"]


def gpt2_init(model: nn.Module, *, n_layer: int | None = None, residual_suffix: str = "c_proj.weight") -> nn.Module:
    """GPT-2's initialisation, in place; returns ``model``. The one init of the book's language models.

    Every ``nn.Linear`` and ``nn.Embedding`` weight ~ N(0, 0.02²), every Linear bias 0 (LayerNorms
    keep PyTorch's ones and zeros). With ``n_layer``, the weights whose name ends in
    ``residual_suffix`` (the projections that write into the residual stream) are then redrawn with
    std ``0.02 / sqrt(2 · n_layer)``, so the residual stream's variance does not grow with depth
    (Radford et al. 2019, sec. 2.3). :class:`genai_helpers.models.gpt.GPT` uses both steps;
    chapter 01's :class:`genai_helpers.models.transformer_lm.TransformerLM` only the first.
    Parameters are drawn in module order, so a seed gives the same weights every time.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")

    def init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    model.apply(init)
    if n_layer is not None:
        check_positive_int("n_layer", n_layer)
        for name, p in model.named_parameters():
            if name.endswith(residual_suffix):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))
    return model


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(d, d_ff) -> GELU -> Linear(d_ff, d) -> dropout. ``d_ff`` defaults to 4d."""

    def __init__(self, d_model: int, d_ff: int | None = None, dropout: float = 0.0):
        super().__init__()
        check_positive_int("d_model", d_model)
        d_ff = 4 * d_model if d_ff is None else check_positive_int("d_ff", d_ff)
        check_probability("dropout", dropout)
        self.fc_in = nn.Linear(d_model, d_ff)
        self.fc_out = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc_out(F.gelu(self.fc_in(x))))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block (the GPT-2 arrangement)::

        x = x + SelfAttention(LN(x))            # causal for a decoder, full for an encoder
        x = x + CrossAttention(LN(x), context)  # only when cross_attention=True (encoder-decoder)
        x = x + FFN(LN(x))                      # or a MixtureOfExperts when n_experts > 0

    ``forward`` returns ``x``, followed by the self-attention weights ``(B, n_heads, T, T)`` when
    ``need_weights=True`` and the cross-attention weights ``(B, n_heads, T, S)`` when
    ``need_cross_weights=True`` (so ``(x, w)`` with one of them, ``(x, w_self, w_cross)`` with both).
    Asking for weights runs that attention on the explicit path, the same arithmetic as PyTorch's
    fused kernel to float rounding. The captioner (chapter 10) and the translator (chapter 05)
    read their cross-attention maps this way.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, dropout: float = 0.0, *,
                 cross_attention: bool = False, d_context: int | None = None,
                 n_experts: int = 0, top_k: int = 2):
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.ln_cross = nn.LayerNorm(d_model) if cross_attention else None
        self.cross = MultiHeadAttention(d_model, n_heads, d_context=d_context, dropout=dropout) if cross_attention else None
        self.ln_ffn = nn.LayerNorm(d_model)
        if n_experts:
            self.ffn = MixtureOfExperts(d_model, n_experts, top_k=top_k, d_ff=d_ff)
        else:
            self.ffn = FeedForward(d_model, d_ff, dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, *, is_causal: bool = False,
                key_padding_mask: torch.Tensor | None = None, context_padding_mask: torch.Tensor | None = None,
                need_weights: bool = False, need_cross_weights: bool = False):
        if need_cross_weights and self.cross is None:
            raise ValueError("need_cross_weights=True needs a block built with cross_attention=True")
        h = self.attn(self.ln_attn(x), is_causal=is_causal, key_padding_mask=key_padding_mask,
                      need_weights=need_weights)
        h, weights = h if need_weights else (h, None)
        x = x + self.drop(h)
        cross_weights = None
        if self.cross is not None:
            if context is None:
                raise ValueError("context must be given to a block built with cross_attention=True")
            h = self.cross(self.ln_cross(x), context, key_padding_mask=context_padding_mask,
                           need_weights=need_cross_weights)
            h, cross_weights = h if need_cross_weights else (h, None)
            x = x + self.drop(h)
        x = x + self.ffn(self.ln_ffn(x))
        if not (need_weights or need_cross_weights):
            return x
        return (x,) + ((weights,) if need_weights else ()) + ((cross_weights,) if need_cross_weights else ())


class MixtureOfExperts(nn.Module):
    """Sparse mixture of feed-forward experts with top-k routing (Switch/Mixtral style).

    A linear router scores every expert for each token; the token goes to its ``top_k`` experts
    and their outputs are mixed with the softmax of the selected scores. Total parameters grow
    with ``n_experts``; the parameters *used per token* grow only with ``top_k``.

    After a forward pass, ``last_router_probs`` ``(N, n_experts)``, ``last_expert_index``
    ``(N, top_k)`` and ``aux_loss`` (the Switch-Transformer load-balancing loss, 1.0 when the load
    is perfectly even) describe the routing.
    """

    def __init__(self, d_model: int, n_experts: int, top_k: int = 2, d_ff: int | None = None):
        super().__init__()
        check_positive_int("n_experts", n_experts)
        check_positive_int("top_k", top_k)
        if top_k > n_experts:
            raise ValueError(f"top_k must be <= n_experts ({n_experts}), got {top_k}")
        self.n_experts, self.top_k = n_experts, top_k
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(d_model, d_ff) for _ in range(n_experts))
        self.last_router_probs = self.last_expert_index = self.aux_loss = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x)
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])                                   # (N, d)
        logits = self.router(tokens)                                        # (N, E)
        top_val, top_idx = logits.topk(self.top_k, dim=-1)                  # (N, k)
        gates = torch.softmax(top_val, dim=-1)                              # mix weights of chosen experts
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            token_ids, slot = (top_idx == e).nonzero(as_tuple=True)         # tokens routed to expert e
            if token_ids.numel():
                out.index_add_(0, token_ids, gates[token_ids, slot, None] * expert(tokens[token_ids]))
        probs = torch.softmax(logits, dim=-1)
        load = torch.zeros(self.n_experts, device=x.device).index_add_(
            0, top_idx.reshape(-1), torch.ones(top_idx.numel(), device=x.device)) / top_idx.numel()
        self.aux_loss = self.n_experts * (load * probs.mean(0)).sum()
        self.last_router_probs, self.last_expert_index = probs.detach(), top_idx.detach()
        return out.reshape(shape)

    def parameter_counts(self) -> dict[str, int]:
        """Total parameters vs the parameters one token actually uses (router + top_k experts)."""
        per_expert = sum(p.numel() for p in self.experts[0].parameters())
        router = sum(p.numel() for p in self.router.parameters())
        return {"total": router + self.n_experts * per_expert, "active": router + self.top_k * per_expert}
