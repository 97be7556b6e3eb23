"""MaskGIT: a bidirectional transformer over image tokens, decoded in parallel (chapter 12, §12.11).

    from genai_helpers.models.maskgit import (cosine_schedule, mask_tokens, masked_token_loss,
                                              maskgit_decode, parallel_decoding_flops)

Chang et al. (2022, "MaskGIT: masked generative image transformer") model the same token grid as
an autoregressive prior (:mod:`.token_prior`), but with a *bidirectional* transformer — e.g.
:class:`~genai_helpers.models.transformer_lm.TransformerLM` with ``causal=False``, vocabulary
``K + 1`` (the extra id is ``mask_id = K``) and ``block_size = h * w`` — trained like BERT:

* **training** (:func:`mask_tokens`, :func:`masked_token_loss`): for each grid draw ``r ~ U(0, 1)``,
  hide ``ceil(gamma(r) * N)`` of its ``N`` tokens (at least one) behind ``mask_id``, and train
  cross-entropy on the hidden positions only. ``gamma`` is the **cosine schedule**
  :func:`cosine_schedule`, ``gamma(r) = cos(pi r / 2)``: it falls from 1 (everything hidden) to 0,
  so training sees mostly-hidden grids more often than a uniform mask ratio would;
* **decoding** (:func:`maskgit_decode`) in ``T`` steps instead of ``N``: start from a fully masked
  grid; at step ``t`` one forward pass predicts every position, a token is sampled at every hidden
  one, and of these the ``floor(N * gamma((t + 1) / T))`` least confident (log-probability of the
  sampled token plus Gumbel noise of scale ``choice_temperature * (1 - (t + 1) / T)``) are hidden
  again; tokens kept are never revisited. After the last step nothing is hidden. ``T`` model calls
  per image instead of ``N``, each on the whole grid.

:func:`parallel_decoding_flops` counts those calls' matrix-multiply FLOPs in the convention of
:func:`genai_helpers.models.token_prior.generation_flops`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import check_positive_int, check_tensor
from ..sampling import sample_next_token
from .token_prior import batched_eval

__all__ = ["cosine_schedule", "mask_tokens", "masked_token_loss", "maskgit_decode", "parallel_decoding_flops"]


def cosine_schedule(r):
    """Mask ratio ``gamma(r) = cos(pi r / 2)`` for ``r`` in [0, 1] (a float or a tensor): 1 at 0, 0 at 1."""
    if isinstance(r, torch.Tensor):
        if r.numel() and (r.min() < 0 or r.max() > 1):
            raise ValueError(f"r must be in [0, 1], got range [{float(r.min())}, {float(r.max())}]")
        return torch.cos(math.pi / 2 * r)
    if not isinstance(r, (int, float)) or isinstance(r, bool):
        raise TypeError(f"r must be a float or a tensor, got {type(r).__name__}")
    if not 0 <= r <= 1:
        raise ValueError(f"r must be in [0, 1], got {r}")
    return math.cos(math.pi / 2 * r)


def _check_codes(codes, mask_id: int) -> torch.Tensor:
    check_tensor("codes", codes, ndim=2)
    check_positive_int("mask_id", mask_id)
    if codes.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"codes must hold integer ids, got {codes.dtype}")
    if codes.numel() == 0:
        raise ValueError(f"codes must not be empty, got shape {tuple(codes.shape)}")
    if codes.min() < 0 or codes.max() >= mask_id:
        raise ValueError(f"codes must be in [0, mask_id={mask_id}), got range [{int(codes.min())}, {int(codes.max())}]")
    return codes


def mask_tokens(codes: torch.Tensor, mask_id: int, *, generator: torch.Generator | None = None):
    """Hide ``ceil(gamma(r) * N)`` random tokens of each row (``r ~ U(0, 1)`` per row, at least one).

    ``codes`` ``(B, N)`` ids in ``[0, mask_id)``. Returns ``(inputs, mask)``: ``inputs`` ``(B, N)``
    int64, ``mask_id`` at the hidden positions and ``codes`` elsewhere; ``mask`` ``(B, N)`` bool,
    True where hidden. Draws (on the CPU, from ``generator``): ``B`` ratios, then ``B * N`` uniform
    scores; the hidden positions of a row are its ``n`` lowest scores.
    """
    _check_codes(codes, mask_id)
    B, N = codes.shape
    r = torch.rand(B, generator=generator)
    n_mask = torch.ceil(cosine_schedule(r) * N).clamp(1, N).long()                # (B,)
    scores = torch.rand(B, N, generator=generator)
    ranks = scores.argsort(dim=1).argsort(dim=1)                                   # rank of each position's score
    mask = (ranks < n_mask[:, None]).to(codes.device)
    inputs = torch.where(mask, torch.full_like(codes, mask_id), codes).long()
    return inputs, mask


def masked_token_loss(model: torch.nn.Module, codes: torch.Tensor, mask_id: int, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """MaskGIT's training loss: cross-entropy of ``model(mask_tokens(codes))`` on the hidden positions only.

    ``model(ids)`` maps ``(B, N)`` ids to ``(B, N, V)`` logits (``V > mask_id``), or a tuple whose
    first item is them. Mean over hidden positions, in nats.
    """
    inputs, mask = mask_tokens(codes, mask_id, generator=generator)
    device = next(model.parameters()).device
    out = model(inputs.to(device))
    logits = out[0] if isinstance(out, tuple) else out
    targets = torch.where(mask, codes.long(), torch.full_like(codes.long(), -100)).to(device)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def _remask_count(step: int, steps: int, n_tokens: int, n_hidden: int) -> int:
    """How many tokens stay hidden after ``step`` (0-based) of ``steps``: ``floor(N gamma((step+1)/steps))``,
    at least 1 and at most ``n_hidden - 1`` so every step reveals a token; 0 after the last step."""
    if step == steps - 1:
        return 0
    return max(1, min(n_hidden - 1, math.floor(n_tokens * cosine_schedule((step + 1) / steps))))


@torch.no_grad()
def maskgit_decode(model: torch.nn.Module, n: int, seq_len: int, mask_id: int, *, steps: int = 8,
                   temperature: float = 1.0, choice_temperature: float = 4.5,
                   generator: torch.Generator | None = None, batch_size: int = 256) -> torch.Tensor:
    """Draw ``n`` token sequences ``(n, seq_len)`` (ids in ``[0, mask_id)``) in ``steps`` parallel steps.

    ``model(ids)`` maps ``(B, seq_len)`` ids to ``(B, seq_len, V)`` logits, ``V > mask_id``; logits of
    ids ``>= mask_id`` are dropped. At each step every hidden position gets a token from
    :func:`genai_helpers.sampling.sample_next_token` at ``temperature``; its confidence is the log-
    probability of that token (at that temperature) plus ``choice_temperature * (1 - (t + 1) / steps)``
    times standard Gumbel noise (0 turns the noise off: pure confidence order); the least confident
    are hidden again (module docstring). ``steps`` model calls per batch, ``1 <= steps <= seq_len``.
    Draws (on the CPU, from ``generator``), per batch and step: the tokens, then the Gumbel noise.
    """
    check_positive_int("n", n)
    check_positive_int("seq_len", seq_len)
    check_positive_int("mask_id", mask_id)
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    if steps > seq_len:
        raise ValueError(f"steps must be <= seq_len ({seq_len}): each step reveals at least one token, got {steps}")
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
        raise ValueError(f"temperature must be a float > 0, got {temperature!r}")
    if not isinstance(choice_temperature, (int, float)) or isinstance(choice_temperature, bool) \
            or not (choice_temperature >= 0 and math.isfinite(choice_temperature)):
        raise ValueError(f"choice_temperature must be a finite float >= 0, got {choice_temperature!r}")

    def draw(B: int, device: torch.device) -> torch.Tensor:
        ids = torch.full((B, seq_len), mask_id, dtype=torch.long)
        for t in range(steps):
            res = model(ids.to(device))
            logits = (res[0] if isinstance(res, tuple) else res)[..., :mask_id].float().cpu()     # (B, N, K)
            hidden = ids == mask_id
            drawn = sample_next_token(logits.reshape(-1, mask_id), temperature=temperature,
                                      generator=generator).view(B, seq_len)
            drawn = torch.where(hidden, drawn, ids)
            n_keep_hidden = _remask_count(t, steps, seq_len, int(hidden[0].sum()))
            if n_keep_hidden == 0:
                ids = drawn
                break
            logp = torch.log_softmax(logits / temperature, dim=-1).gather(-1, drawn[..., None])[..., 0]
            u = torch.rand(B, seq_len, generator=generator).clamp_(1e-20, 1 - 1e-7)
            gumbel = -torch.log(-torch.log(u))                                        # standard Gumbel noise
            noise = choice_temperature * (1 - (t + 1) / steps) * gumbel
            confidence = torch.where(hidden, logp + noise, torch.full_like(logp, math.inf))
            remask = confidence.argsort(dim=1)[:, :n_keep_hidden]                   # least confident hidden ones
            ids = drawn.scatter(1, remask, mask_id)
        return ids
    return batched_eval(model, n, batch_size, draw)


def parallel_decoding_flops(seq_len: int, steps: int, n_layer: int, d_model: int, vocab_size: int) -> dict:
    """Matrix-multiply FLOPs of :func:`maskgit_decode` for one sequence: ``steps`` full forward passes.

    Each pass processes all ``seq_len`` tokens: ``24 d^2 L`` per token for the dense weights,
    ``4 d L seq_len`` per token for attention over the whole (bidirectional) grid, ``2 d V`` per
    token for the output head — the convention of
    :func:`genai_helpers.models.token_prior.generation_flops`. Returns ``{"dense", "attention",
    "head", "total"}`` in FLOPs.
    """
    for name, v in (("seq_len", seq_len), ("steps", steps), ("n_layer", n_layer), ("d_model", d_model),
                    ("vocab_size", vocab_size)):
        check_positive_int(name, v)
    T, L, d = seq_len, n_layer, d_model
    dense = 24 * d * d * L * T * steps
    attention = 4 * d * L * T * T * steps
    head = 2 * d * vocab_size * T * steps
    return {"dense": float(dense), "attention": float(attention), "head": float(head),
            "total": float(dense + attention + head)}
