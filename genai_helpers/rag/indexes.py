"""Search indexes: FAISS vector indexes (flat, IVF, HNSW, LSH) and BM25 keyword search (chapter 07).

:class:`VectorIndex` wraps one FAISS index over L2-normalised vectors with inner-product
(= cosine) scores:

- ``"flat"`` — exact search, every vector compared: the reference the others are measured against;
- ``"ivf"``  — clustering-based: k-means cells (``nlist``), a query searches the ``nprobe`` nearest;
- ``"hnsw"`` — graph-based: a hierarchical navigable small-world graph (``M`` links, ``ef_search``);
- ``"lsh"``  — hashing: random hyperplanes turn vectors into ``nbits``-bit codes compared by
  Hamming distance (score = ``-hamming``; the ranking is approximate and scores are not cosines).

:class:`BM25Index` ranks by Okapi BM25 (``rank-bm25``) over lower-cased word tokens. Both save to a
folder and load back with identical search results.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..checkpoint import write_atomic

__all__ = ["KINDS", "VectorIndex", "exact_search", "recall_against", "measure_index", "STOPWORDS", "bm25_tokens",
           "BM25Index"]

KINDS = ("flat", "ivf", "hnsw", "lsh")


def _as_matrix(name: str, x) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n, dim), got shape {x.shape}")
    return x


class VectorIndex:
    """A FAISS index over ``(n, dim)`` float32 vectors (rows of unit norm for cosine scores).

    ``search(queries, k)`` returns ``(scores, ids)``, both ``(n_queries, k)``, best first; ids are
    row numbers of the added vectors (``-1`` where fewer than ``k`` were found).
    """

    def __init__(self, kind: str = "flat", *, nlist: int = 16, nprobe: int = 4, m: int = 16,
                 ef_search: int = 32, nbits: int = 256, seed: int = 0):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        for name, v in (("nlist", nlist), ("nprobe", nprobe), ("m", m), ("ef_search", ef_search), ("nbits", nbits)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.kind, self.params = kind, dict(nlist=nlist, nprobe=nprobe, m=m, ef_search=ef_search, nbits=nbits, seed=seed)
        self.index = None
        self.dim = 0

    def build(self, vectors) -> "VectorIndex":
        import faiss

        x = _as_matrix("vectors", vectors)
        self.dim = d = x.shape[1]
        p = self.params
        if self.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif self.kind == "ivf":
            nlist = min(p["nlist"], x.shape[0])
            self._quantizer = faiss.IndexFlatIP(d)          # the coarse quantizer: one centroid per cell
            index = faiss.IndexIVFFlat(self._quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = p["seed"]
            index.train(x)
            index.nprobe = min(p["nprobe"], nlist)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, p["m"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = max(40, p["ef_search"])
            index.hnsw.efSearch = p["ef_search"]
        else:
            index = faiss.IndexLSH(d, p["nbits"], True, True)   # rotate, learn thresholds
            index.train(x)
        index.add(x)
        self.index = index
        return self

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change the speed/recall knob at query time (IVF ``nprobe``, HNSW ``ef_search``)."""
        if nprobe is not None and self.kind == "ivf":
            self.params["nprobe"] = self.index.nprobe = min(nprobe, self.index.nlist)
        if ef_search is not None and self.kind == "hnsw":
            self.params["ef_search"] = self.index.hnsw.efSearch = ef_search

    def search(self, queries, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            raise RuntimeError("the index is empty: call build(vectors) first")
        q = _as_matrix("queries", queries)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries must have dim {self.dim}, got {q.shape[1]}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        scores, ids = self.index.search(q, min(k, len(self)))
        if self.kind == "lsh":
            scores = -scores                          # Hamming distance -> higher is better
        return scores.astype(np.float32), ids.astype(np.int64)

    def save(self, folder: str | os.PathLike) -> Path:
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "vectors.faiss", faiss.serialize_index(self.index).tobytes())
        write_atomic(folder / "vectors.json", json.dumps({"kind": self.kind, "dim": self.dim, "params": self.params}))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "VectorIndex":
        import faiss

        folder = Path(folder)
        meta = json.loads((folder / "vectors.json").read_text())
        params = dict(meta["params"])
        out = cls(meta["kind"], **{k: v for k, v in params.items() if k != "seed"}, seed=params.get("seed", 0))
        out.index, out.dim = faiss.read_index(str(folder / "vectors.faiss")), meta["dim"]
        out.set_search_params(nprobe=params["nprobe"], ef_search=params["ef_search"])
        return out

    def __repr__(self) -> str:
        return f"VectorIndex({self.kind!r}, n={len(self)}, dim={self.dim})"


def exact_search(vectors, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by inner product in NumPy: ``(scores, ids)`` of shape ``(n_queries, k)``."""
    x, q = _as_matrix("vectors", vectors), _as_matrix("queries", queries)
    if not isinstance(k, int) or not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be an int in [1, {x.shape[0]}], got {k!r}")
    s = q @ x.T
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, ids, axis=1), ids


def recall_against(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean share of the exact top-k ids that the approximate search also returned (in [0, 1])."""
    a, e = np.asarray(approx_ids), np.asarray(exact_ids)
    if a.shape[0] != e.shape[0]:
        raise ValueError(f"approx_ids and exact_ids must have the same number of rows, got {a.shape[0]} and {e.shape[0]}")
    return float(np.mean([len(set(r) & set(t)) / len(t) for r, t in zip(a.tolist(), e.tolist())]))


def measure_index(index: VectorIndex, queries, exact_ids: np.ndarray, k: int = 10, *, repeats: int = 3) -> dict:
    """Recall@k against exact search and queries per second (best of ``repeats`` timed passes)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        _, ids = index.search(queries, k)
        best = min(best, time.perf_counter() - t0)
    return {"recall": recall_against(ids, exact_ids), "qps": len(queries) / max(best, 1e-9)}


# ---------------------------------------------------------------------------------------------
# BM25

STOPWORDS = frozenset("""a an and are as at be by can do does for from has have how i in is it its of on or
that the their then there these this to was what when where which who why will with you your""".split())
_TOKEN = re.compile(r"[a-z0-9]+")


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric words minus a few stop words, with a light plural strip."""
    out = []
    for w in _TOKEN.findall(text.lower()):
        if w in STOPWORDS:
            continue
        if len(w) > 4 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


class BM25Index:
    """Okapi BM25 (``k1``, ``b``) over :func:`bm25_tokens` of each text; ``search`` returns
    ``(scores, ids)`` for one query, best first, documents with score 0 included last."""

    def __init__(self, texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75):
        from rank_bm25 import BM25Okapi

        texts = list(texts)
        if not texts:
            raise ValueError("texts must hold at least one document")
        if not k1 > 0 or not 0 <= b <= 1:
            raise ValueError(f"k1 must be > 0 and b in [0, 1], got k1={k1}, b={b}")
        self.k1, self.b, self.texts = k1, b, texts
        self.tokens = [bm25_tokens(t) or ["<empty>"] for t in texts]
        self.bm25 = BM25Okapi(self.tokens, k1=k1, b=b)

    def __len__(self) -> int:
        return len(self.texts)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query``: shape ``(n_documents,)``."""
        return np.asarray(self.bm25.get_scores(bm25_tokens(query)), dtype=np.float64)

    def search(self, query: str, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        s = self.scores(query)
        ids = np.argsort(-s, kind="stable")[:k]
        return s[ids], ids

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "bm25.json", json.dumps({"k1": self.k1, "b": self.b, "texts": self.texts}))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "BM25Index":
        meta = json.loads((Path(folder) / "bm25.json").read_text())
        return cls(meta["texts"], k1=meta["k1"], b=meta["b"])
