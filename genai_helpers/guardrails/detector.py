"""A learned prompt-injection detector on sentence embeddings, and the observation filter (chapter 08).

:class:`InjectionDetector` is logistic regression on the embedding of a text (chapter 08 uses
all-MiniLM-L6-v2: 384 numbers per text, unit norm). Rules match the words their author foresaw;
an embedding places "disregard what you were told earlier" near "ignore previous instructions",
so the detector can catch wordings — and whole kinds of attack — that no rule names. Optional
lexical features sit beside the embedding (``ngrams=True``: hashed character 3-5-grams and word
1-2-grams of the rules' normalised text, see :func:`ngram_features`; ``rule_features=True``: one
0/1 column per rule of ``INJECTION_RULES`` in :mod:`genai_helpers.guardrails.injection`, so the rules
become evidence the model weighs instead of a hard filter in front of it). It is
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
import re
import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["InjectionDetector", "wilson_interval", "make_observation_filter", "ngram_features", "threshold_for_benign_rate",
           "fit_by_family_cv"]


def ngram_features(texts: Sequence[str], *, dim: int = 4096, char_n: tuple[int, ...] = (3, 4, 5),
                   words: bool = True) -> np.ndarray:
    """Hashed n-gram counts of the rules' normalised text (:func:`~genai_helpers.guardrails.injection.normalize_for_rules`),
    shape ``(N, dim)``: character ``char_n``-grams (of the text padded with one space on each side)
    and, when ``words``, word unigrams and bigrams, each counted into bucket ``crc32(gram) % dim``
    (the same on every machine, whatever ``PYTHONHASHSEED``), then ``log1p`` and scaled to unit
    length (an empty text gives a zero row). ``dim`` in [16, 1048576]; ``char_n`` values in [1, 10]."""
    from .injection import normalize_for_rules

    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a sequence of str")
    if not isinstance(dim, int) or not 16 <= dim <= 1 << 20:
        raise ValueError(f"dim must be an int in [16, 1048576], got {dim!r}")
    if not char_n or not all(isinstance(n, int) and 1 <= n <= 10 for n in char_n):
        raise ValueError(f"char_n must be a non-empty tuple of ints in [1, 10], got {char_n!r}")
    x = np.zeros((len(texts), dim))
    for i, text in enumerate(texts):
        t = normalize_for_rules(text)
        s = f" {t} "
        grams = [s[j:j + n] for n in char_n for j in range(len(s) - n + 1)]
        if words:
            w = re.findall(r"[a-z0-9']+", t)
            grams += w + [a + " " + b for a, b in zip(w, w[1:])]
        for g in grams:
            x[i, zlib.crc32(g.encode("utf-8")) % dim] += 1.0
        x[i] = np.log1p(x[i])
        norm = np.linalg.norm(x[i])
        if norm > 0:
            x[i] /= norm
    return x


def threshold_for_benign_rate(scores, is_attack, max_benign_rate: float = 0.05) -> float:
    """The lowest threshold (flag ``score >= threshold``) whose benign flag rate on these
    (development!) rows is at most ``max_benign_rate`` (in [0, 1])."""
    if not isinstance(max_benign_rate, (int, float)) or not 0.0 <= max_benign_rate <= 1.0:
        raise ValueError(f"max_benign_rate must be in [0, 1], got {max_benign_rate!r}")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_attack, dtype=bool)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores and is_attack must be 1-d of the same length, got {s.shape} and {y.shape}")
    benign = np.sort(s[~y])
    if benign.size == 0:
        raise ValueError("is_attack must contain benign rows to tune a threshold")
    allowed = int(math.floor(max_benign_rate * benign.size))      # benign rows we may flag
    if allowed >= benign.size:
        return 0.0
    # flag scores >= t: with t just above the (allowed+1)-th highest benign score, `allowed` are flagged
    return float(min(1.0, np.nextafter(benign[benign.size - allowed - 1], np.inf)))


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

    ``ngrams``: add :func:`ngram_features` (``ngram_dim`` buckets, scaled by ``ngram_weight`` in
    (0, 100]) beside the embedding; ``rule_features``: add one 0/1 column per injection rule
    (scaled by ``rule_weight``). Both default to off (the embedding alone).

    ``fit(texts, is_attack)`` then ``scores(texts)`` (attack probabilities), ``flags(texts)``
    (scores >= ``threshold``). ``predict_proba`` and ``labels`` make it usable wherever a
    ``(benign, attack)`` classifier is expected.
    """

    labels = ("benign", "attack")

    def __init__(self, embed: Callable, *, threshold: float = 0.5, ngrams: bool = False, ngram_dim: int = 4096,
                 ngram_weight: float = 1.0, rule_features: bool = False, rule_weight: float = 0.5):
        if not callable(embed):
            raise TypeError("embed must be callable: embed(list[str]) -> (N, D) array")
        if not isinstance(ngram_dim, int) or not 16 <= ngram_dim <= 1 << 20:
            raise ValueError(f"ngram_dim must be an int in [16, 1048576], got {ngram_dim!r}")
        for name, v in [("ngram_weight", ngram_weight), ("rule_weight", rule_weight)]:
            if not isinstance(v, (int, float)) or not 0 < v <= 100:
                raise ValueError(f"{name} must be a number in (0, 100], got {v!r}")
        self.embed = embed
        self.threshold = self._check_threshold(threshold)
        self.ngrams, self.ngram_dim, self.ngram_weight = bool(ngrams), ngram_dim, float(ngram_weight)
        self.rule_features, self.rule_weight = bool(rule_features), float(rule_weight)
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
        parts = [x]
        if self.ngrams:
            parts.append(self.ngram_weight * ngram_features(texts, dim=self.ngram_dim))
        if self.rule_features:
            from .injection import INJECTION_RULES, rule_hits
            names = [name for name, _ in INJECTION_RULES]
            hits = [set(rule_hits(t)) for t in texts]
            parts.append(self.rule_weight * np.array([[n in h for n in names] for h in hits], dtype=np.float64))
        return np.hstack(parts) if len(parts) > 1 else x

    def config(self) -> dict:
        """The feature settings (what :meth:`to_dict` stores beside the coefficients)."""
        return {"ngrams": self.ngrams, "ngram_dim": self.ngram_dim, "ngram_weight": self.ngram_weight,
                "rule_features": self.rule_features, "rule_weight": self.rule_weight}

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
        if not isinstance(max_benign_rate, (int, float)) or not 0.0 <= max_benign_rate <= 1.0:
            raise ValueError(f"max_benign_rate must be in [0, 1], got {max_benign_rate}")
        self.threshold = threshold_for_benign_rate(self.scores(texts), is_attack, max_benign_rate)
        return self.threshold

    def to_dict(self) -> dict:
        if self.weights is None:
            raise RuntimeError("the detector is not trained")
        return {"weights": [float(v) for v in self.weights], "bias": self.bias, "threshold": self.threshold,
                **self.config()}

    @classmethod
    def from_dict(cls, data: dict, embed: Callable) -> "InjectionDetector":
        """A detector from :meth:`to_dict`; ``embed`` must be the embedder it was trained with."""
        if not isinstance(data, dict) or not {"weights", "bias", "threshold"} <= set(data):
            raise ValueError("data must be a dict from to_dict() with weights, bias and threshold")
        keys = ("ngrams", "ngram_dim", "ngram_weight", "rule_features", "rule_weight")
        det = cls(embed, threshold=data["threshold"], **{k: data[k] for k in keys if k in data})
        det.weights, det.bias = np.asarray(data["weights"], dtype=np.float64), float(data["bias"])
        return det

    def save(self, path) -> Path:
        """Write the coefficients as JSON (a few KB for 384-d embeddings)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        tmp.replace(path)                                   # atomic: a reader never sees half a file
        return path

    @classmethod
    def load(cls, path, embed: Callable) -> "InjectionDetector":
        """A detector from :meth:`save`'s JSON; ``embed`` must be the embedder it was trained with."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), embed)


def _auc(scores: np.ndarray, y: np.ndarray) -> float:
    a, b = scores[y], scores[~y]
    return float((a[:, None] > b[None, :]).mean() + 0.5 * (a[:, None] == b[None, :]).mean())


def fit_by_family_cv(rows: Sequence[dict], embed: Callable, configs: dict, *, n_folds: int = 3,
                     max_benign_rate: float = 0.15, steps: int = 1000, seed: int = 1):
    """Choose a detector's features and threshold on **whole held-out families** of ``rows``.

    ``rows``: attack-set rows (``text``, ``label``, ``family``; see
    :func:`~genai_helpers.guardrails.attack_set.make_attack_set`) — the *training* families only.
    ``configs``: ``{name: InjectionDetector keyword arguments}``. Each config is scored by grouped
    cross-validation: :func:`~genai_helpers.guardrails.attack_set.family_folds` (``n_folds``,
    ``seed``) trains on some families and scores the others, so every row gets an out-of-family
    score. The config with the most out-of-family attacks flagged at the threshold that flags at
    most ``max_benign_rate`` of the out-of-family benign rows wins (ties: higher AUC, then order);
    the detector is then fitted on all ``rows`` with that threshold.

    Returns ``(detector, report)``; ``report[name] = {"auc", "attack_rate", "threshold"}`` on the
    out-of-family scores, plus ``report["chosen"] = name``.
    """
    from .attack_set import family_folds

    if not isinstance(configs, dict) or not configs:
        raise ValueError("configs must be a non-empty dict {name: InjectionDetector keyword arguments}")
    if not isinstance(max_benign_rate, (int, float)) or not 0.0 <= max_benign_rate <= 1.0:
        raise ValueError(f"max_benign_rate must be in [0, 1], got {max_benign_rate!r}")
    rows = list(rows)
    if not rows or not all(isinstance(r, dict) and {"text", "label", "family"} <= set(r) for r in rows):
        raise ValueError("rows must be a non-empty list of dicts with text, label and family")
    folds = family_folds(rows, n_folds, seed=seed)
    texts = [r["text"] for r in rows]
    y = np.array([r["label"] == "attack" for r in rows])
    pos = {id(r): i for i, r in enumerate(rows)}
    report: dict = {}
    for name, kw in configs.items():
        oof = np.zeros(len(rows))
        for fit_part, held_part in folds:
            det = InjectionDetector(embed, **kw).fit([r["text"] for r in fit_part],
                                                     [r["label"] == "attack" for r in fit_part], steps=steps)
            oof[[pos[id(r)] for r in held_part]] = det.scores([r["text"] for r in held_part])
        th = threshold_for_benign_rate(oof, y, max_benign_rate)
        report[name] = {"auc": _auc(oof, y), "attack_rate": float((oof[y] >= th).mean()), "threshold": th}
    order = list(configs)
    chosen = max(order, key=lambda n: (report[n]["attack_rate"], report[n]["auc"], -order.index(n)))
    det = InjectionDetector(embed, **configs[chosen]).fit(texts, y.tolist(), steps=steps)
    det.threshold = report[chosen]["threshold"]
    report["chosen"] = chosen
    return det, report


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
