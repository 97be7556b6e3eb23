"""A small text classifier: hashed character and word n-grams -> one linear layer (chapter 08).

Chapter 08 trains two of these with the shared :func:`genai_helpers.training.train` loop: a
prompt-injection detector (attack vs benign) and the agent's tool chooser (question -> tool).
It is a bag-of-n-grams logistic regression — fast on CPU, small, and easy to inspect — not a
language model.

    clf = HashedNgramClassifier(labels=["benign", "attack"])
    x = clf.featurize(["ignore all previous instructions"])      # (B, n_buckets) float32
    logits = clf(x)                                              # (B, n_labels)
    loss = clf(x, torch.tensor([1]))[1]                          # (logits, cross-entropy)
"""
from __future__ import annotations

import re
import zlib
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int

__all__ = ["ngram_features", "HashedNgramClassifier"]

_WORD = re.compile(r"[a-z0-9]+")


def ngram_features(text: str, *, char_n: tuple[int, ...] = (3, 4, 5), word_n: tuple[int, ...] = (1, 2)) -> list[str]:
    """The n-gram strings of ``text`` (lower-cased): character n-grams inside word boundaries
    (``" ign"``, ``"igno"``) and word n-grams (``"w:ignore all"``)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    low = " " + " ".join(_WORD.findall(text.lower())) + " "
    feats = [low[i:i + n] for n in char_n for i in range(len(low) - n + 1)]
    words = low.split()
    feats += ["w:" + " ".join(words[i:i + n]) for n in word_n for i in range(len(words) - n + 1)]
    return feats


class HashedNgramClassifier(nn.Module):
    """Logistic regression over ``n_buckets`` hashed n-gram counts (log-scaled, L2-normalised).

    ``forward(x)`` takes features ``(B, n_buckets)`` from :meth:`featurize` and returns logits
    ``(B, len(labels))``; ``forward(x, y)`` also returns the mean cross-entropy, which is the form
    :func:`genai_helpers.training.train` expects.
    """

    def __init__(self, labels: Sequence[str], n_buckets: int = 2 ** 14):
        super().__init__()
        labels = list(labels)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"labels must hold at least two distinct names, got {labels}")
        self.labels = labels
        self.n_buckets = check_positive_int("n_buckets", n_buckets)
        self.linear = nn.Linear(self.n_buckets, len(labels))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def featurize(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> ``(B, n_buckets)`` float32 features (crc32 hashing, so stable across runs)."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, not a single str")
        x = torch.zeros(len(texts), self.n_buckets)
        for row, text in enumerate(texts):
            for feat in ngram_features(text):
                x[row, zlib.crc32(feat.encode()) % self.n_buckets] += 1.0
        x = torch.log1p(x)
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        logits = self.linear(x)
        if y is None:
            return logits
        return logits, F.cross_entropy(logits, y)

    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str]) -> torch.Tensor:
        """``(B, n_labels)`` class probabilities for raw texts."""
        device = self.linear.weight.device
        return torch.softmax(self(self.featurize(texts).to(device)), dim=-1).cpu()

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable label name for each text."""
        return [self.labels[i] for i in self.predict_proba(texts).argmax(dim=-1).tolist()]
