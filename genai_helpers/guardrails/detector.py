"""A learned prompt-injection detector on sentence embeddings, and the observation filter (chapter 08).

:class:`InjectionDetector` is logistic regression on the embedding of a text (chapter 08 uses
all-MiniLM-L6-v2: 384 numbers per text, unit norm). Rules match the words their author foresaw;
an embedding places "disregard what you were told earlier" near "ignore previous instructions",
so the detector can catch wordings — and whole kinds of attack — that no rule names. It is
trained full-batch with plain gradient descent for a fixed number of steps (deterministic), and
its ``threshold`` is tuned on a *development* split with :meth:`InjectionDetector.tune_threshold`,
never on the rows it is reported on.

The same detector object serves every place that looks for injections:
:func:`genai_helpers.guardrails.check_input` (``detector=``) for user messages,
:func:`genai_helpers.guardrails.injection.screen_document` (``detector=``) for retrieved documents,
and :func:`make_observation_filter` for tool results before the agent's policy reads them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["InjectionDetector", "wilson_interval", "make_observation_filter"]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n`` (95 % for ``z=1.96``)."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes!r}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class InjectionDetector:
    """``InjectionDetector(embed)``: ``embed(list[str]) -> (N, D)`` array (e.g. MiniLM).

    ``fit(texts, is_attack)`` then ``scores(texts)`` (attack probabilities), ``flags(texts)``
    (scores >= ``threshold``). ``predict_proba`` and ``labels`` make it usable wherever a
    ``(benign, attack)`` classifier is expected.
    """

    labels = ("benign", "attack")

    def __init__(self, embed: Callable, *, threshold: float = 0.5):
        if not callable(embed):
            raise TypeError("embed must be callable: embed(list[str]) -> (N, D) array")
        self.embed = embed
        self.threshold = self._check_threshold(threshold)
        self.weights: np.ndarray | None = None
        self.bias = 0.0

    @staticmethod
    def _check_threshold(threshold) -> float:
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        return float(threshold)

    def _features(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a sequence of str")
        x = np.asarray(self.embed(list(texts)), dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != len(texts):
            raise ValueError(f"embed must return an (N, D) array for N={len(texts)} texts, got shape {x.shape}")
        return x

    def fit(self, texts: Sequence[str], is_attack: Sequence[bool], *, steps: int = 500, lr: float = 2.0,
            l2: float = 1e-3, balanced: bool = True) -> "InjectionDetector":
        """Logistic regression by full-batch gradient descent (``steps`` in [1, 100000]).

        ``balanced`` weighs the two classes equally, so a set with more attacks than benign rows
        does not push the detector towards flagging everything.
        """
        if not isinstance(steps, int) or not 1 <= steps <= 100_000:
            raise ValueError(f"steps must be an int in [1, 100000], got {steps!r}")
        if not lr > 0 or l2 < 0:
            raise ValueError(f"lr must be > 0 and l2 >= 0, got lr={lr}, l2={l2}")
        y = np.asarray(is_attack, dtype=np.float64)
        if y.shape != (len(texts),) or not set(np.unique(y)) <= {0.0, 1.0}:
            raise ValueError("is_attack must hold one bool per text")
        if y.min() == y.max():
            raise ValueError("is_attack must contain both attacks and benign rows")
        x = self._features(texts)
        sample_w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean())) if balanced else np.ones_like(y)
        sample_w = sample_w / sample_w.sum()
        w, b = np.zeros(x.shape[1]), 0.0
        for _ in range(steps):
            p = 1 / (1 + np.exp(-(x @ w + b)))
            g = sample_w * (p - y)
            w -= lr * (x.T @ g + l2 * w)
            b -= lr * g.sum()
        self.weights, self.bias = w, float(b)
        return self

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Attack probability of each text, shape (N,), in [0, 1]."""
        if self.weights is None:
            raise RuntimeError("the detector is not trained: call fit() or load() first")
        x = self._features(texts)
        return 1 / (1 + np.exp(-(x @ self.weights + self.bias)))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 2) probabilities in the order of :attr:`labels`."""
        s = self.scores(texts)
        return np.stack([1 - s, s], axis=1)

    def flags(self, texts: Sequence[str]) -> np.ndarray:
        """Boolean (N,): score >= ``threshold``."""
        return self.scores(texts) >= self.threshold

    def tune_threshold(self, texts: Sequence[str], is_attack: Sequence[bool], *, max_benign_rate: float = 0.05) -> float:
        """Set ``threshold`` to the lowest value whose benign flag rate on these (development!) rows
        is at most ``max_benign_rate`` (in [0, 1]); returns it. Catching more attacks always costs
        benign flags, so the budget for the cost is what one chooses."""
        if not 0.0 <= max_benign_rate <= 1.0:
            raise ValueError(f"max_benign_rate must be in [0, 1], got {max_benign_rate}")
        y = np.asarray(is_attack, dtype=bool)
        s = self.scores(texts)
        benign = np.sort(s[~y])
        if benign.size == 0:
            raise ValueError("is_attack must contain benign rows to tune a threshold")
        allowed = int(math.floor(max_benign_rate * benign.size))      # benign rows we may flag
        if allowed >= benign.size:
            self.threshold = 0.0
            return self.threshold
        # flag scores >= t: with t just above the (allowed+1)-th highest benign score, `allowed` are flagged
        cut = benign[benign.size - allowed - 1]
        self.threshold = float(min(1.0, np.nextafter(cut, np.inf)))
        return self.threshold

    def to_dict(self) -> dict:
        if self.weights is None:
            raise RuntimeError("the detector is not trained")
        return {"weights": [float(v) for v in self.weights], "bias": self.bias, "threshold": self.threshold}

    def save(self, path) -> Path:
        """Write the coefficients as JSON (a few KB for 384-d embeddings)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path, embed: Callable) -> "InjectionDetector":
        """A detector from :meth:`save`'s JSON; ``embed`` must be the embedder it was trained with."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        det = cls(embed, threshold=data["threshold"])
        det.weights, det.bias = np.asarray(data["weights"], dtype=np.float64), float(data["bias"])
        return det


def make_observation_filter(*, detector: InjectionDetector | None = None, use_rules: bool = True) -> Callable:
    """``filter(tool, text) -> text`` for :class:`~genai_helpers.agents.react.ReActAgent`'s
    ``observation_filter``: a tool result in which the rules (document rules, see
    :func:`~genai_helpers.guardrails.injection.screen_document`) or the ``detector`` find an
    injection is replaced by a short notice, so the policy never reads the planted instructions."""
    from .injection import screen_document

    def observation_filter(tool: str, text: str) -> str:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        flagged, _ = screen_document(text, detector=detector) if use_rules else ((), ())
        if not use_rules and detector is not None and bool(detector.flags([text])[0]):
            flagged = ("detector",)
        if flagged:
            return f"[{tool} result withheld: it contains instructions addressed to the assistant]"
        return text

    return observation_filter
