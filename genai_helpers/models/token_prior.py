"""An autoregressive prior over a grid of image tokens (chapter 12, "Image tokens").

    from genai_helpers.models.token_prior import grid_to_sequence, sample_token_grid, generation_flops

A VQ-VAE (``genai_helpers.models.vqvae``) turns an image into a ``(h, w)`` grid of token ids.
Read in raster order (row by row) with a beginning-of-image token ``bos`` in front, the grid is a
sequence that any decoder-only language model learns with next-token cross-entropy, e.g.
``genai_helpers.models.transformer_lm.TransformerLM`` with ``vocab_size = K + 1`` and
``block_size = h * w + 1``, or ``genai_helpers.models.gpt.GPT`` (which has a KV cache).
:func:`sample_token_grid` draws new grids with temperature / top-k /
top-p (``genai_helpers.sampling``); the VQ-VAE decoder turns them into pixels.

:func:`generation_flops` counts the matrix-multiply FLOPs of generating one sequence token by
token, so that pixel-level (``28 * 28 = 784`` steps) and token-level (``7 * 7 = 49`` steps)
generation can be compared on paper as well as by the clock.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .._checks import check_positive_int, check_tensor
from ..sampling import generate

__all__ = ["grid_to_sequence", "sequence_to_grid", "sample_token_grid", "batched_eval", "generation_flops"]


def grid_to_sequence(codes: torch.Tensor, bos: int) -> torch.Tensor:
    """Token grids ``(B, h, w)`` -> sequences ``(B, 1 + h*w)``: ``bos`` then the grid in raster order."""
    check_tensor("codes", codes, ndim=3)
    check_positive_int("bos", bos, minimum=0)
    if codes.numel() and int(codes.max()) >= bos:
        raise ValueError(f"bos ({bos}) must be larger than every code id (max {int(codes.max())})")
    B = codes.shape[0]
    start = torch.full((B, 1), bos, dtype=torch.long, device=codes.device)
    return torch.cat([start, codes.reshape(B, -1).long()], dim=1)


def sequence_to_grid(seq: torch.Tensor, grid_size: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`grid_to_sequence`: ``(B, 1 + h*w)`` -> ``(B, h, w)`` (drops the first token)."""
    check_tensor("seq", seq, ndim=2)
    h, w = _check_grid(grid_size)
    if seq.shape[1] != 1 + h * w:
        raise ValueError(f"seq must have 1 + h*w = {1 + h * w} tokens, got {seq.shape[1]}")
    return seq[:, 1:].reshape(-1, h, w)


def _check_grid(grid_size) -> tuple[int, int]:
    if not isinstance(grid_size, (tuple, list)) or len(grid_size) != 2:
        raise TypeError(f"grid_size must be a (height, width) pair, got {grid_size!r}")
    return check_positive_int("grid_size[0]", grid_size[0]), check_positive_int("grid_size[1]", grid_size[1])


@torch.no_grad()
def sample_token_grid(model: torch.nn.Module, n: int, grid_size: Sequence[int], *, codebook_size: int,
                      bos: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, generator: torch.Generator | None = None,
                      batch_size: int = 256, use_cache: bool = True) -> torch.Tensor:
    """Draw ``n`` token grids ``(n, h, w)`` (ids in ``[0, codebook_size)``) from a decoder-only ``model``.

    ``model(ids)`` maps ``(B, T)`` ids to ``(B, T, vocab)`` logits (or a tuple whose first item is
    them, as ``genai_helpers.models.gpt.GPT`` returns), ``vocab >= codebook_size``. Logits of ids
    ``>= codebook_size`` (the ``bos`` token, default ``codebook_size``) are dropped so only image
    tokens are produced. The loop is the book's one decode loop,
    :func:`genai_helpers.sampling.generate`. With ``use_cache`` and a model that has ``step_fn``
    (``GPT``), each step feeds one token through the KV cache; otherwise each step recomputes the
    whole prefix. ``temperature`` / ``top_k`` / ``top_p`` as in
    :func:`genai_helpers.sampling.sample_next_token`; ``generator`` makes the draws reproducible.
    """
    check_positive_int("n", n)
    h, w = _check_grid(grid_size)
    check_positive_int("codebook_size", codebook_size)
    check_positive_int("batch_size", batch_size)
    bos = codebook_size if bos is None else check_positive_int("bos", bos, minimum=0)

    def draw(b: int, device: torch.device) -> torch.Tensor:
        step = _image_token_step(model, b, codebook_size, use_cache, device)
        prompt = torch.full((b, 1), bos, dtype=torch.long)
        ids = generate(step, prompt, h * w, generator=generator,
                       temperature=temperature, top_k=top_k, top_p=top_p)
        return ids[:, 1:].reshape(b, h, w)
    return batched_eval(model, n, batch_size, draw)


def batched_eval(model: torch.nn.Module, n: int, batch_size: int, draw) -> torch.Tensor:
    """``n`` rows drawn batch by batch with ``model`` in eval mode: ``draw(b, device)`` returns a tensor
    of ``b`` rows (``b <= batch_size``; the batches sum to ``n``), ``device`` is the model's. The
    results are concatenated along dim 0 and ``model``'s train/eval mode is restored afterwards (also
    when ``draw`` raises). The batching loop of :func:`sample_token_grid` and
    :func:`genai_helpers.models.maskgit.maskgit_decode`."""
    check_positive_int("n", n)
    check_positive_int("batch_size", batch_size)
    if not callable(draw):
        raise TypeError(f"draw must be callable, got {type(draw).__name__}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        return torch.cat([draw(min(batch_size, n - start), device) for start in range(0, n, batch_size)])
    finally:
        model.train(was_training)


def _image_token_step(model: torch.nn.Module, batch_size: int, codebook_size: int, use_cache: bool,
                      device: torch.device):
    """The step function :func:`genai_helpers.sampling.generate` runs for :func:`sample_token_grid`:
    ids ``(B, T)`` on the CPU -> float32 logits ``(B, codebook_size)`` on the CPU (ids past the
    codebook, such as ``bos``, are never drawn). A :class:`~genai_helpers.models.gpt.GPT` with
    ``use_cache`` feeds one token a step through its KV cache (:meth:`GPT.step_fn`); any other model
    ``model(ids) -> (B, T, V)`` logits (or a tuple starting with them) recomputes the prefix."""
    if use_cache and hasattr(model, "step_fn"):
        inner = model.step_fn(batch_size, use_cache=True)
    else:
        def inner(ids):
            out = model(ids)
            return (out[0] if isinstance(out, tuple) else out)[:, -1]

    @torch.no_grad()
    def step(ids: torch.Tensor) -> torch.Tensor:
        return inner(ids.to(device))[:, :codebook_size].float().cpu()
    return step


def generation_flops(seq_len: int, n_layer: int, d_model: int, vocab_size: int, *, kv_cache: bool = True) -> dict:
    """Matrix-multiply FLOPs to generate one sequence of ``seq_len`` tokens with a GPT-style model.

    Per layer and per processed token: ``24 d^2`` for the dense weights (QKV, output projection,
    a 4x feed-forward; 2 FLOPs per multiply-add) and ``4 d * context`` for attention
    (``q.k`` scores and the weighted sum of ``v``); plus ``2 d V`` for the output head (applied to
    every processed position, as ``TransformerLM`` does).
    With a KV cache step ``t`` processes one token against ``t`` keys; without one (as
    :func:`sample_token_grid` does) step ``t`` recomputes all ``t`` tokens against each other.
    Returns ``{"dense", "attention", "head", "total"}`` in FLOPs.
    """
    for name, v in (("seq_len", seq_len), ("n_layer", n_layer), ("d_model", d_model), ("vocab_size", vocab_size)):
        check_positive_int(name, v)
    T, L, d = seq_len, n_layer, d_model
    if kv_cache:
        tokens = T                                  # one new token per step
        attn_pairs = T * (T + 1) // 2               # sum_t t keys
    else:
        tokens = T * (T + 1) // 2                   # step t recomputes t tokens
        attn_pairs = sum(t * t for t in range(1, T + 1))  # each of them attends to t keys (full matrix)
    dense = 24 * d * d * L * tokens
    attention = 4 * d * L * attn_pairs
    head = 2 * d * vocab_size * tokens             # the head runs on every processed position
    return {"dense": float(dense), "attention": float(attention), "head": float(head),
            "total": float(dense + attention + head)}
