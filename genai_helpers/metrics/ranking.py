"""Ranking and retrieval metrics: Precision@k, Recall@k, MRR, (mean) average precision, nDCG@k.

Chapter 03 reproduces a worked retrieval example with them; chapter 07 evaluates a RAG retriever.
``retrieved`` is a ranked list of document ids (best first), ``relevant`` a set of ids.
"""
from __future__ import annotations

import math
from typing import Hashable, Iterable, Sequence

from ._inputs import check_k, check_nonempty, check_same_length

__all__ = ["precision_at_k", "recall_at_k", "reciprocal_rank", "mean_reciprocal_rank", "average_precision",
           "mean_average_precision", "dcg_at_k", "ndcg_at_k"]


def _ranked(retrieved) -> list:
    if isinstance(retrieved, (str, bytes)) or not isinstance(retrieved, Iterable):
        raise TypeError("retrieved must be a ranked list of document ids")
    return list(retrieved)


def _relevant(relevant) -> set:
    if isinstance(relevant, (str, bytes)) or not isinstance(relevant, Iterable):
        raise TypeError("relevant must be a set (or list) of document ids")
    return set(relevant)


def precision_at_k(retrieved: Sequence[Hashable], relevant: Iterable[Hashable], k: int) -> float:
    """Relevant documents among the first ``k`` retrieved, divided by ``k`` (in ``[0, 1]``).

    Dividing by ``k`` even when fewer than ``k`` were retrieved is the usual convention: an
    empty slot is a slot the user sees no answer in.
    """
    check_k(k)
    ranked, rel = _ranked(retrieved), _relevant(relevant)
    return sum(doc in rel for doc in ranked[:k]) / k


def recall_at_k(retrieved: Sequence[Hashable], relevant: Iterable[Hashable], k: int) -> float:
    """Share of all relevant documents found in the first ``k`` retrieved (in ``[0, 1]``)."""
    check_k(k)
    ranked, rel = _ranked(retrieved), _relevant(relevant)
    if not rel:
        raise ValueError("relevant must hold at least one document id (recall is undefined otherwise)")
    return sum(doc in rel for doc in ranked[:k]) / len(rel)


def reciprocal_rank(retrieved: Sequence[Hashable], relevant: Iterable[Hashable]) -> float:
    """``1 / rank`` of the first relevant document (rank counted from 1); 0 if none was retrieved."""
    ranked, rel = _ranked(retrieved), _relevant(relevant)
    return next((1.0 / i for i, doc in enumerate(ranked, 1) if doc in rel), 0.0)


def mean_reciprocal_rank(ranked_lists: Sequence[Sequence[Hashable]], relevant_sets: Sequence[Iterable[Hashable]]) -> float:
    """MRR: the mean of :func:`reciprocal_rank` over queries: how soon the first good answer appears."""
    check_nonempty("ranked_lists", ranked_lists)
    check_same_length("ranked_lists", ranked_lists, "relevant_sets", relevant_sets)
    return sum(reciprocal_rank(r, s) for r, s in zip(ranked_lists, relevant_sets)) / len(ranked_lists)


def average_precision(retrieved: Sequence[Hashable], relevant: Iterable[Hashable], k: int | None = None) -> float:
    """AP: the mean of Precision@i over the ranks ``i`` where a relevant document appears.

    Divided by the number of relevant documents (``min(|relevant|, k)`` with a cut-off ``k``), so
    relevant documents never retrieved count as zero. 1.0 means every relevant document is ranked
    above every irrelevant one.
    """
    ranked, rel = _ranked(retrieved), _relevant(relevant)
    if not rel:
        raise ValueError("relevant must hold at least one document id")
    if k is not None:
        ranked = ranked[:check_k(k)]
    hits, total = 0, 0.0
    for i, doc in enumerate(ranked, 1):
        if doc in rel:
            hits += 1
            total += hits / i
    return total / (len(rel) if k is None else min(len(rel), k))


def mean_average_precision(ranked_lists: Sequence[Sequence[Hashable]], relevant_sets: Sequence[Iterable[Hashable]],
                           k: int | None = None) -> float:
    """mAP: :func:`average_precision` averaged over queries."""
    check_nonempty("ranked_lists", ranked_lists)
    check_same_length("ranked_lists", ranked_lists, "relevant_sets", relevant_sets)
    return sum(average_precision(r, s, k) for r, s in zip(ranked_lists, relevant_sets)) / len(ranked_lists)


def dcg_at_k(relevances: Sequence[float], k: int) -> float:
    """Discounted cumulative gain: ``sum_i rel_i / log2(i + 1)`` over the first ``k`` ranks (i from 1)."""
    check_k(k)
    rels = [float(r) for r in relevances]
    if any(r < 0 or math.isnan(r) for r in rels):
        raise ValueError("relevances must be non-negative numbers")
    return sum(r / math.log2(i + 1) for i, r in enumerate(rels[:k], 1))


def ndcg_at_k(relevances: Sequence[float], k: int) -> float:
    """nDCG@k: DCG of the ranking divided by the DCG of the ideal order of the same grades.

    ``relevances`` are graded relevances (e.g. 0 = not, 1 = somewhat, 2 = highly relevant) *in the
    order the system ranked the documents*. Linear gains and a ``log2`` discount, as in
    ``sklearn.metrics.ndcg_score``. In ``[0, 1]``; 0 if no document is relevant.
    """
    check_nonempty("relevances", relevances)
    ideal = dcg_at_k(sorted(relevances, reverse=True), k)
    return dcg_at_k(relevances, k) / ideal if ideal > 0 else 0.0
