"""Combining and re-ordering ranked lists (chapter 07): reciprocal rank fusion, MMR, reranking.

- :func:`reciprocal_rank_fusion` merges rankings from different retrievers (dense + BM25 = hybrid
  search; several rewritten queries) using only ranks, so scores on different scales never mix:
  ``score(d) = sum_r w_r / (k + rank_r(d))`` with ranks counted from 1 and ``k = 60`` by default.
- :func:`mmr` (maximal marginal relevance) re-orders candidates to trade relevance against
  redundancy: ``lambda * sim(q, d) - (1 - lambda) * max_{s in selected} sim(d, s)``.
- :func:`lexical_overlap` and :func:`rerank` are the *reranking* stage. A cross-encoder (a model
  reading query and passage together) is the usual reranker, but none ships offline here; these
  rerankers are honest stand-ins: the same bi-encoder scoring smaller windows of each candidate,
  blended with the share of query words the candidate contains.
"""
from __future__ import annotations

from typing import Callable, Hashable, Sequence

import numpy as np

from .indexes import bm25_tokens

__all__ = ["reciprocal_rank_fusion", "mmr", "lexical_overlap", "windows", "rerank"]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hashable]], *, k: int = 60,
                           weights: Sequence[float] | None = None) -> list[tuple[Hashable, float]]:
    """Fuse ranked id lists (best first) into one ``[(id, score), ...]`` list, best first.

    ``k`` (>= 0) damps the head of each list: larger ``k`` gives lower ranks relatively more say.
    Ties keep the order in which ids were first seen. ``weights`` (one per ranking, >= 0)
    defaults to 1 each.
    """
    if not isinstance(k, (int, float)) or k < 0:
        raise ValueError(f"k must be a number >= 0, got {k!r}")
    rankings = [list(r) for r in rankings]
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings) or any(w < 0 for w in weights):
        raise ValueError(f"weights must hold one number >= 0 per ranking ({len(rankings)}), got {weights!r}")
    scores: dict[Hashable, float] = {}
    for w, ranking in zip(weights, rankings):
        seen = set()
        for rank, doc in enumerate(ranking, 1):
            if doc in seen:                     # a duplicate later in one list adds nothing
                continue
            seen.add(doc)
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    order = sorted(scores.items(), key=lambda kv: -kv[1])   # sorted() is stable: ties keep first-seen order
    return order


def mmr(query_vec, candidate_vecs, *, k: int = 5, lam: float = 0.7) -> list[int]:
    """Maximal marginal relevance: indices into ``candidate_vecs`` (``(n, dim)``, unit rows), ``k``
    of them, picked greedily. ``lam`` in [0, 1]: 1 = pure relevance, 0 = pure diversity."""
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    c = np.asarray(candidate_vecs, dtype=np.float32)
    q = np.asarray(query_vec, dtype=np.float32).reshape(-1)
    if c.ndim != 2 or c.shape[1] != q.shape[0]:
        raise ValueError(f"candidate_vecs must be (n, {q.shape[0]}), got {c.shape}")
    rel = c @ q
    sim = c @ c.T
    chosen: list[int] = []
    left = list(range(len(c)))
    while left and len(chosen) < k:
        if chosen:
            redundancy = sim[np.ix_(left, chosen)].max(axis=1)
        else:
            redundancy = np.zeros(len(left))
        score = lam * rel[left] - (1 - lam) * redundancy
        best = left[int(np.argmax(score))]
        chosen.append(best)
        left.remove(best)
    return chosen


def lexical_overlap(query: str, text: str) -> float:
    """Share of the query's distinct content words (BM25 tokens) that appear in ``text``, in [0, 1]."""
    q = set(bm25_tokens(query))
    if not q:
        return 0.0
    return len(q & set(bm25_tokens(text))) / len(q)


def windows(text: str, size: int = 300, stride: int = 150) -> list[str]:
    """Overlapping character windows of ``text`` (at least one), cut at spaces."""
    if size < 20 or stride < 1:
        raise ValueError(f"size must be >= 20 and stride >= 1, got size={size}, stride={stride}")
    if len(text) <= size:
        return [text]
    out, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        out.append(text[start:end])
        if end == len(text):
            break
        nxt = text.find(" ", start + stride)
        start = nxt + 1 if 0 < nxt < end else start + stride
    return out


def rerank(query: str, texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray], *,
           alpha: float = 0.7, window: int = 300) -> np.ndarray:
    """Rerank scores for ``texts`` (shape ``(n,)``, higher is better): ``alpha`` times the best
    cosine between the query and any ``window``-character window of the text (a finer look than
    the whole-chunk embedding), plus ``1 - alpha`` times :func:`lexical_overlap`. ``alpha`` in [0, 1]."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    texts = list(texts)
    if not texts:
        return np.zeros(0)
    pieces, owner = [], []
    for i, t in enumerate(texts):
        for w in windows(t, window, window // 2):
            pieces.append(w)
            owner.append(i)
    vecs = embed(pieces + [query])
    sims = vecs[:-1] @ vecs[-1]
    best = np.full(len(texts), -1.0)
    for i, s in zip(owner, sims):
        best[i] = max(best[i], float(s))
    lex = np.array([lexical_overlap(query, t) for t in texts])
    return alpha * best + (1 - alpha) * lex
