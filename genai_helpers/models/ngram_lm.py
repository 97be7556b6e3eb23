"""An n-gram language model with interpolated absolute discounting: the baseline of chapter 04.

    from genai_helpers.models.ngram_lm import NGramLM

    lm = NGramLM(order=3).fit(train_ids)          # a 1-D sequence of token ids
    lm.perplexity(test_ids)                       # exp(mean negative log-likelihood per token)

For a context ``h`` (the previous ``order - 1`` tokens) and next token ``w``::

    p(w | h) = max(c(h, w) - d, 0) / c(h)  +  d * N(h) / c(h) * p(w | h')

where ``c`` counts occurrences in the training ids, ``N(h)`` is the number of distinct tokens seen
after ``h``, ``h'`` is ``h`` without its oldest token, and ``d`` in (0, 1) is the discount. The
recursion ends at an add-one unigram, so every token has non-zero probability. A context never seen
in training falls straight back to the shorter one. This is the standard, honest baseline that a
transformer has to beat: it knows exactly which phrases were frequent, but nothing beyond the last
``order - 1`` tokens.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Sequence

import numpy as np
import torch

__all__ = ["NGramLM"]


def _as_list(ids, name: str) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(ids.shape)}")
        return ids.tolist()
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of int token ids, got {type(ids).__name__}")
    return [int(i) for i in ids]


class NGramLM:
    """Interpolated absolute-discounting n-gram model over integer token ids."""

    def __init__(self, order: int = 3, discount: float = 0.75, vocab_size: int | None = None):
        if not isinstance(order, int) or isinstance(order, bool) or order < 1:
            raise ValueError(f"order must be an int >= 1, got {order!r}")
        if not isinstance(discount, (int, float)) or not 0 < discount < 1:
            raise ValueError(f"discount must be in (0, 1), got {discount!r}")
        self.order, self.discount, self.vocab_size = order, float(discount), vocab_size
        self.followers: list[dict[tuple, Counter]] = []
        self.unigram: np.ndarray | None = None

    def fit(self, ids: Sequence[int] | torch.Tensor) -> "NGramLM":
        """Count every n-gram of ``ids`` (orders 1..order). Returns ``self``."""
        seq = _as_list(ids, "ids")
        if len(seq) < 2:
            raise ValueError("ids must hold at least two tokens")
        V = self.vocab_size or (max(seq) + 1)
        if max(seq) >= V or min(seq) < 0:
            raise ValueError(f"ids must lie in [0, vocab_size={V})")
        self.vocab_size = V
        counts = np.bincount(seq, minlength=V).astype(np.float64)
        self.unigram = (counts + 1) / (counts.sum() + V)
        self.followers = [{}]                                   # index k: contexts of length k
        for k in range(1, self.order):
            table: dict[tuple, Counter] = defaultdict(Counter)
            for i in range(k, len(seq)):
                table[tuple(seq[i - k:i])][seq[i]] += 1
            self.followers.append(dict(table))
        self._totals = [{} ] + [{h: (sum(c.values()), len(c)) for h, c in t.items()} for t in self.followers[1:]]
        return self

    def _check_fitted(self):
        if self.unigram is None:
            raise RuntimeError("call fit(ids) first")

    def prob(self, history: Sequence[int], token: int) -> float:
        """``p(token | last order-1 tokens of history)``."""
        self._check_fitted()
        p = float(self.unigram[token])
        d = self.discount
        for k in range(1, min(self.order - 1, len(history)) + 1):
            h = tuple(history[len(history) - k:])
            tot = self._totals[k].get(h)
            if tot is None:
                break                         # a longer context containing an unseen one is unseen too
            total, types = tot
            p = (max(self.followers[k][h].get(token, 0) - d, 0) + d * types * p) / total
        return p

    def distribution(self, history: Sequence[int]) -> np.ndarray:
        """The whole next-token distribution ``(vocab_size,)`` after ``history``; sums to 1."""
        self._check_fitted()
        p = self.unigram.copy()
        d = self.discount
        for k in range(1, min(self.order - 1, len(history)) + 1):
            h = tuple(history[len(history) - k:])
            tot = self._totals[k].get(h)
            if tot is None:
                break
            total, types = tot
            p *= d * types / total
            for w, c in self.followers[k][h].items():
                p[w] += (c - d) / total
        return p

    def log_probs(self, ids: Sequence[int] | torch.Tensor) -> np.ndarray:
        """Natural-log probability of every token of ``ids`` after the first, given what precedes it."""
        seq = _as_list(ids, "ids")
        self._check_fitted()
        if len(seq) < 2:
            raise ValueError("ids must hold at least two tokens")
        n = self.order - 1
        return np.array([math.log(self.prob(seq[max(0, i - n):i], seq[i])) for i in range(1, len(seq))])

    def perplexity(self, ids: Sequence[int] | torch.Tensor) -> float:
        """``exp`` of the mean negative log-likelihood per predicted token (the first is context only)."""
        return float(math.exp(-self.log_probs(ids).mean()))

    def greedy(self, history: Sequence[int], max_new_tokens: int, stop_ids: Sequence[int] = ()) -> list[int]:
        """Append the most probable next token ``max_new_tokens`` times (stopping after a stop id)."""
        out, hist, stop = [], list(history), set(stop_ids)
        for _ in range(max_new_tokens):
            w = int(np.argmax(self.distribution(hist)))
            out.append(w)
            hist.append(w)
            if w in stop:
                break
        return out
