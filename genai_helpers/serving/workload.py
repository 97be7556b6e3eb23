"""A simulated request stream for serving experiments (chapter 09).

Requests arrive as a Poisson process (exponential gaps with mean ``1 / rate`` seconds); each has
a prompt and a number of tokens to generate. Real traffic has many short answers and a few long
ones, so output lengths default to a clipped exponential (geometric) distribution; prompts are
windows of real text when a token stream is given, so the model sees what it was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .._checks import check_positive_int

__all__ = ["LENGTH_KINDS", "Request", "sample_lengths", "poisson_requests"]

LENGTH_KINDS = ("uniform", "exponential", "fixed")


@dataclass
class Request:
    """One request: ``prompt`` token ids (1-D LongTensor), ``max_new_tokens`` to generate and
    its ``arrival`` time in seconds from the start of the stream."""

    id: int
    arrival: float
    prompt: torch.Tensor
    max_new_tokens: int
    output: list[int] = field(default_factory=list)

    @property
    def prompt_len(self) -> int:
        return int(self.prompt.numel())


def sample_lengths(n: int, low: int, high: int, *, kind: str = "exponential", mean: float | None = None,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """``n`` integer lengths in ``[low, high]``.

    ``kind="uniform"``: uniform integers; ``"exponential"``: ``low`` plus an exponential with
    mean ``mean - low`` (default: a quarter of the range), clipped at ``high`` — many short, few long;
    ``"fixed"``: all equal to ``high``.
    """
    check_positive_int("n", n)
    check_positive_int("low", low)
    check_positive_int("high", high, minimum=low)
    if kind not in LENGTH_KINDS:
        raise ValueError(f"kind must be one of {LENGTH_KINDS}, got {kind!r}")
    rng = rng if rng is not None else np.random.default_rng(0)
    if kind == "fixed":
        return np.full(n, high, dtype=np.int64)
    if kind == "uniform":
        return rng.integers(low, high + 1, size=n)
    mean = low + (high - low) / 4 if mean is None else float(mean)
    if not low < mean <= high:
        raise ValueError(f"mean must be in ({low}, {high}], got {mean}")
    return np.minimum(low + np.floor(rng.exponential(mean - low, size=n)).astype(np.int64), high)


def poisson_requests(n: int, rate: float, *, prompt_len=(8, 32), output_len=(4, 64), output_kind: str = "exponential",
                     output_mean: float | None = None, vocab_size: int | None = None,
                     token_stream: torch.Tensor | None = None, seed: int = 0) -> list[Request]:
    """``n`` requests arriving at ``rate`` per second (Poisson process; ``rate=float('inf')``
    puts every arrival at time 0, a burst).

    Prompt lengths are uniform in ``prompt_len=(low, high)``; output lengths follow
    ``output_kind`` in ``output_len=(low, high)`` (see :func:`sample_lengths`). Prompt tokens are
    random windows of ``token_stream`` (1-D ids) if given, else uniform ids below ``vocab_size``.
    """
    check_positive_int("n", n)
    if not (isinstance(rate, (int, float)) and rate > 0):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
    if token_stream is None and vocab_size is None:
        raise ValueError("give token_stream (1-D ids) or vocab_size")
    rng = np.random.default_rng(seed)
    gaps = np.zeros(n) if np.isinf(rate) else rng.exponential(1.0 / rate, size=n)
    arrivals = np.cumsum(gaps) - (gaps[0] if n else 0.0)
    plens = sample_lengths(n, prompt_len[0], prompt_len[1], kind="uniform", rng=rng)
    olens = sample_lengths(n, output_len[0], output_len[1], kind=output_kind, mean=output_mean, rng=rng)
    out = []
    for i in range(n):
        L = int(plens[i])
        if token_stream is not None:
            if token_stream.ndim != 1 or token_stream.numel() <= L:
                raise ValueError(f"token_stream must be 1-D and longer than the longest prompt ({L})")
            s = int(rng.integers(0, token_stream.numel() - L))
            prompt = token_stream[s:s + L].clone().long()
        else:
            prompt = torch.from_numpy(rng.integers(0, vocab_size, size=L)).long()
        out.append(Request(id=i, arrival=float(arrivals[i]), prompt=prompt, max_new_tokens=int(olens[i])))
    return out
