"""Classification metrics: accuracy, precision, recall, F1, confusion matrix (chapter 03).

Labels may be any hashable values (ints, strings). Checked against ``sklearn.metrics`` in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

from ._inputs import check_nonempty, check_same_length

__all__ = ["AVERAGES", "accuracy", "confusion_matrix", "PRF", "precision_recall_f1"]

AVERAGES = ("binary", "macro", "micro", "weighted")


def _check_pair(y_true, y_pred) -> tuple[list, list]:
    y_true, y_pred = list(y_true), list(y_pred)
    check_nonempty("y_true", y_true)
    check_same_length("y_true", y_true, "y_pred", y_pred)
    return y_true, y_pred


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """Share of predictions equal to the true label, in ``[0, 1]``."""
    y_true, y_pred = _check_pair(y_true, y_pred)
    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)


def confusion_matrix(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
                     labels: Sequence[Hashable] | None = None) -> np.ndarray:
    """``(L, L)`` int matrix: row = true label, column = predicted label, in the order of ``labels``.

    ``labels`` defaults to the sorted set of labels seen in either sequence. The diagonal holds the
    correct predictions; everything off it is a specific confusion.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    labels = sorted(set(y_true) | set(y_pred)) if labels is None else list(labels)
    if len(set(labels)) != len(labels) or not labels:
        raise ValueError("labels must be a non-empty list without duplicates")
    index = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if t in index and p in index:
            m[index[t], index[p]] += 1
    return m


@dataclass
class PRF:
    precision: float    # of the items predicted positive, the share that are positive
    recall: float       # of the positive items, the share predicted positive
    f1: float           # harmonic mean of precision and recall


def _prf(tp: float, fp: float, fn: float) -> PRF:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return PRF(p, r, 2 * p * r / (p + r) if p + r else 0.0)


def precision_recall_f1(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], *, average: str = "binary",
                        positive_label: Hashable = 1) -> PRF:
    """Precision, recall and F1, each in ``[0, 1]`` (0 where undefined, like scikit-learn's ``zero_division=0``).

    ``average``: ``"binary"`` scores ``positive_label`` only; ``"macro"`` averages the per-class
    scores (every class counts the same); ``"weighted"`` weights them by each class's true count;
    ``"micro"`` pools all decisions (equal to accuracy for single-label problems).
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    y_true, y_pred = _check_pair(y_true, y_pred)
    labels = sorted(set(y_true) | set(y_pred), key=repr)
    if average == "binary":
        if positive_label not in labels and len(labels) > 2:
            raise ValueError(f"positive_label={positive_label!r} does not occur in y_true or y_pred")
        labels = [positive_label]
    per = []
    for lab in labels:
        tp = sum(t == lab and p == lab for t, p in zip(y_true, y_pred))
        fp = sum(t != lab and p == lab for t, p in zip(y_true, y_pred))
        fn = sum(t == lab and p != lab for t, p in zip(y_true, y_pred))
        per.append((lab, tp, fp, fn))
    if average == "binary":
        return _prf(*per[0][1:])
    if average == "micro":
        return _prf(*(sum(x[i] for x in per) for i in (1, 2, 3)))
    scores = [_prf(tp, fp, fn) for _, tp, fp, fn in per]
    if average == "macro":
        w = np.ones(len(scores)) / len(scores)
    else:
        support = np.array([tp + fn for _, tp, _, fn in per], dtype=float)
        w = support / support.sum()
    return PRF(*(float(np.dot(w, [getattr(s, k) for s in scores])) for k in ("precision", "recall", "f1")))
