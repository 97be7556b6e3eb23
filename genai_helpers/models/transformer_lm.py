"""A small transformer language model, the one chapter 01 trains and looks inside.

Token embedding + positional encoding -> ``n_layer`` pre-norm blocks -> LayerNorm -> tied output
head. ``causal=True`` makes it a decoder-only (GPT-style, next-token) model; ``causal=False`` an
encoder-only (BERT-style, masked-token) model. Chapter 04 adds the full GPT with a KV cache.

Weights start with GPT-2's N(0, 0.02²) (:func:`genai_helpers.transformer.gpt2_init`, without the
residual-projection scaling that the chapter 04 GPT adds). With ``positions="sinusoidal"`` the
token vectors are multiplied by sqrt(n_embd) before the fixed table is added (Vaswani et al.
2017, sec. 3.4), as in the GPT: otherwise the [-1, 1] table drowns std-0.02 embeddings.
:meth:`TransformerLM.generate` is :func:`genai_helpers.sampling.generate` over
:func:`genai_helpers.sampling.lm_step_fn`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .._checks import check_positive_int, check_probability, check_tensor
from .. import sampling
from ..positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from ..transformer import TransformerBlock, gpt2_init

__all__ = ["TransformerLMConfig", "TransformerLM"]


@dataclass
class TransformerLMConfig:
    vocab_size: int
    block_size: int = 64          # longest context the model is trained on
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    causal: bool = True           # decoder-only (True) or encoder-only (False)
    positions: str = "learned"    # "learned" or "sinusoidal"
    n_experts: int = 0            # > 0 replaces every FFN with a mixture of experts
    top_k: int = 2

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check_positive_int(name, getattr(self, name))
        check_probability("dropout", self.dropout)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head must divide n_embd ({self.n_embd}), got {self.n_head}")
        if self.positions not in ("learned", "sinusoidal"):
            raise ValueError(f"positions must be 'learned' or 'sinusoidal', got {self.positions!r}")


class TransformerLM(nn.Module):
    def __init__(self, config: TransformerLMConfig):
        super().__init__()
        if not isinstance(config, TransformerLMConfig):
            raise TypeError(f"config must be a TransformerLMConfig, got {type(config).__name__}")
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.n_embd)
        if c.positions == "learned":
            self.pos = LearnedPositionalEmbedding(c.n_embd, c.block_size)
        else:
            self.pos = SinusoidalPositionalEncoding(c.n_embd, max_len=max(4096, c.block_size))
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.n_embd, c.n_head, dropout=c.dropout, n_experts=c.n_experts, top_k=c.top_k)
            for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight                       # weight tying
        self.gradient_checkpointing = False
        gpt2_init(self)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them."""
        self.gradient_checkpointing = bool(enabled)

    def num_parameters(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.numel()
            if isinstance(self.pos, LearnedPositionalEmbedding):
                n -= self.pos.embedding.weight.numel()
        return n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False):
        """``idx`` ``(B, T)`` token ids -> logits ``(B, T, vocab)``.

        With ``targets`` (``(B, T)``, ``-100`` = ignore) returns ``(logits, loss)``; with
        ``need_weights=True`` also a list of per-layer attention weights ``(B, n_head, T, T)``.
        """
        check_tensor("idx", idx, ndim=2)
        T = idx.shape[1]
        if T > self.config.block_size and self.config.positions == "learned":
            raise ValueError(f"sequence length must be <= block_size={self.config.block_size}, got {T}")
        tokens = self.tok_emb(idx)
        if self.config.positions == "sinusoidal":          # keep the token signal above the [-1, 1] table
            tokens = tokens * math.sqrt(self.config.n_embd)
        x = self.drop(self.pos(tokens))
        maps = []
        for block in self.blocks:
            kwargs = dict(is_causal=self.config.causal, key_padding_mask=key_padding_mask, need_weights=need_weights)
            if self.gradient_checkpointing and self.training and not need_weights:
                x = checkpoint(lambda h, b=block: b(h, **kwargs), x, use_reentrant=False)
            else:
                x = block(x, **kwargs)
            if need_weights:
                x, w = x
                maps.append(w)
        logits = self.head(self.ln_f(x))
        out = [logits]
        if targets is not None:
            out.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100))
        if need_weights:
            out.append(maps)
        return out[0] if len(out) == 1 else tuple(out)

    def aux_loss(self) -> torch.Tensor:
        """Sum of the mixture-of-experts load-balancing losses of the last forward (0 without MoE)."""
        losses = [b.ffn.aux_loss for b in self.blocks if getattr(b.ffn, "aux_loss", None) is not None]
        return torch.stack(losses).sum() if losses else torch.zeros(())

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None, suppress_tokens=()) -> torch.Tensor:
        """Append ``max_new_tokens`` tokens to ``idx`` ``(B, T)``; ``temperature=0`` is greedy.

        ``suppress_tokens`` lists ids that are never produced (e.g. ``<unk>``). The loop is
        :func:`genai_helpers.sampling.generate` over :func:`genai_helpers.sampling.lm_step_fn`
        (context cropped to ``block_size``).

        No KV cache here (each step recomputes the whole context); chapter 09 measures the cache.
        """
        if not self.config.causal:
            raise ValueError("generate needs a causal (decoder-only) model; this one has causal=False")
        check_positive_int("max_new_tokens", max_new_tokens, minimum=0)
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        step = sampling.lm_step_fn(self, suppress_tokens=suppress_tokens)
        return sampling.generate(step, idx, max_new_tokens, generator=generator, temperature=temperature)

    def config_dict(self) -> dict:
        return asdict(self.config)
