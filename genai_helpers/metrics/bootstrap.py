"""Confidence intervals by resampling evaluation items: the percentile bootstrap (chapter 03).

    from genai_helpers.metrics.bootstrap import bootstrap_ci, paired_bootstrap

    bootstrap_ci(per_prompt_rouge)                       # mean and its 95% interval over prompts
    paired_bootstrap(rouge_greedy, rouge_beam)           # mean(beam - greedy), same resampled prompts

An evaluation set is a sample of the prompts a system will meet; a score on it would move on another
sample. The bootstrap estimates how much: draw ``n`` items *with replacement* from the ``n`` items,
recompute the statistic, repeat ``n_resamples`` times, and read the interval between the
``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the recomputed values (Efron's
percentile interval). Items are resampled whole (rows of ``values``), so a corpus-level metric such
as BLEU resamples the rows of its per-sentence counts and recomputes the corpus score from them.

Two decoders scored on the *same* prompts are compared with :func:`paired_bootstrap`: each resample
draws one set of prompts and scores both decoders on it, so the prompt-to-prompt variation that both
share cancels out of the difference (Koehn, 2004). An interval that excludes 0 says the difference
would very likely persist on another sample of prompts like these; one that straddles 0 does not.
The bootstrap says nothing about prompts unlike the sample, and with few items (under ~20) its
intervals are too narrow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["BootstrapCI", "bootstrap_indices", "bootstrap_ci", "paired_bootstrap"]

Statistic = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class BootstrapCI:
    """A statistic, its percentile-bootstrap interval, and what it was computed from."""

    estimate: float            # the statistic on the full sample (not the mean of the resamples)
    low: float                 # lower end of the interval
    high: float                # upper end of the interval
    n: int                     # items (prompts, documents, users) resampled
    n_resamples: int
    confidence: float          # e.g. 0.95
    distribution: np.ndarray = field(repr=False, compare=False)   # (n_resamples,) recomputed statistics

    def excludes(self, value: float = 0.0) -> bool:
        """True when ``value`` lies outside ``[low, high]`` (for a difference: "not zero")."""
        return not (self.low <= value <= self.high)

    def format(self, digits: int = 3, scale: float = 1.0) -> str:
        """``"0.123 [0.101, 0.145]"`` (values multiplied by ``scale``, e.g. 100 for percent)."""
        e, lo, hi = (scale * v for v in (self.estimate, self.low, self.high))
        return f"{e:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

    def __str__(self) -> str:
        return f"{self.format()} ({self.confidence:.0%} CI, n={self.n}, {self.n_resamples} resamples)"


def _check_draw_args(n_resamples, seed) -> None:
    if not isinstance(n_resamples, int) or isinstance(n_resamples, bool):
        raise TypeError(f"n_resamples must be an int >= 1, got {type(n_resamples).__name__}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be an int >= 1, got {n_resamples}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int >= 0, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed}")


def _check_resample_args(n_resamples, confidence, seed) -> None:
    _check_draw_args(n_resamples, seed)
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool):
        raise TypeError(f"confidence must be a float in (0, 1), got {type(confidence).__name__}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _as_items(name: str, values) -> np.ndarray:
    """``values`` as an array whose first axis indexes the items; at least one item, finite numbers."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers: one per item, or one row per item") from None
    if arr.ndim == 0:
        raise ValueError(f"{name} must hold one value (or one row) per item, got a scalar")
    if arr.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one item")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (drop or fill nan / inf items first)")
    return arr


def bootstrap_indices(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_resamples, n)`` item indices drawn uniformly with replacement from ``range(n)``.

    The same ``(n, n_resamples, seed)`` always gives the same indices (numpy's ``default_rng``);
    :func:`paired_bootstrap` uses one draw for both systems."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"n must be an int >= 1 (the number of items), got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be an int >= 1 (the number of items), got {n}")
    _check_draw_args(n_resamples, seed)
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _resampled(arrays: list[np.ndarray], statistic: Statistic | None, idx: np.ndarray) -> np.ndarray:
    """The statistic of every resample: ``(n_resamples,)`` for each array in ``arrays``."""
    if statistic is None:                                   # the mean: one vectorised gather
        return np.stack([a[idx].mean(axis=tuple(range(1, a.ndim + 1))) for a in arrays])
    return np.array([[float(statistic(a[rows])) for rows in idx] for a in arrays])


def _check_estimate(estimate: float) -> float:
    if not np.isfinite(estimate):
        raise ValueError(f"statistic returned a non-finite value on the full sample: {estimate}")
    return estimate


def _interval(dist: np.ndarray, confidence: float) -> tuple[float, float]:
    if not np.isfinite(dist).all():
        raise ValueError("statistic returned a non-finite value on some resample")
    alpha = 1 - confidence
    low, high = np.quantile(dist, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci(values, statistic: Statistic | None = None, *, n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> BootstrapCI:
    """Percentile-bootstrap interval of ``statistic`` over the items of ``values``.

    ``values``: one number per item ``(n,)`` (a per-prompt score), or one row per item
    ``(n, k)`` (per-prompt counts that a corpus-level metric sums). ``statistic(sample) -> float``
    maps a resample (``values[rows]``, same shape) to the statistic; default: the mean of all
    entries. ``n_resamples`` >= 1 (1,000 is usual for 95% intervals), ``confidence`` in (0, 1),
    ``seed`` >= 0 fixes the draw. Returns :class:`BootstrapCI` with the full-sample estimate.
    """
    _check_resample_args(n_resamples, confidence, seed)
    arr = _as_items("values", values)
    if statistic is not None and not callable(statistic):
        raise TypeError(f"statistic must be callable (sample) -> float, got {type(statistic).__name__}")
    estimate = _check_estimate(float(arr.mean()) if statistic is None else float(statistic(arr)))
    idx = bootstrap_indices(arr.shape[0], n_resamples, seed)
    dist = _resampled([arr], statistic, idx)[0]
    low, high = _interval(dist, confidence)
    return BootstrapCI(estimate, low, high, arr.shape[0], n_resamples, float(confidence), dist)


def paired_bootstrap(values_a, values_b, statistic: Statistic | None = None, *, n_resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> BootstrapCI:
    """Interval of ``statistic(B) - statistic(A)`` when A and B were scored on the same items.

    ``values_a`` and ``values_b``: the two systems' per-item values (same shape ``(n,)`` or
    ``(n, k)``, row *i* of both from item *i*). Every resample draws one set of rows and applies
    ``statistic`` (default: the mean) to both systems' rows, so the difference is paired. The
    returned :class:`BootstrapCI` is of the difference B - A; ``.excludes(0)`` is the usual
    "significant at 1 - confidence" reading, and ``(ci.distribution <= 0).mean()`` the share of
    resamples where B did not beat A.
    """
    _check_resample_args(n_resamples, confidence, seed)
    a, b = _as_items("values_a", values_a), _as_items("values_b", values_b)
    if a.shape != b.shape:
        raise ValueError(f"values_a and values_b must have the same shape (one row per shared item), got "
                         f"{a.shape} and {b.shape}")
    if statistic is not None and not callable(statistic):
        raise TypeError(f"statistic must be callable (sample) -> float, got {type(statistic).__name__}")
    stat = (lambda s: float(s.mean())) if statistic is None else statistic
    estimate = _check_estimate(float(stat(b)) - float(stat(a)))
    idx = bootstrap_indices(a.shape[0], n_resamples, seed)
    dist_a, dist_b = _resampled([a, b], statistic, idx)
    dist = dist_b - dist_a
    low, high = _interval(dist, confidence)
    return BootstrapCI(estimate, low, high, a.shape[0], n_resamples, float(confidence), dist)
