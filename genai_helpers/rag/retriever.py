"""The retriever: chunks + embeddings + FAISS + BM25 behind one ``search(query, k)`` (chapter 07).

:func:`build_book_index` reads the book (``book/**/*.md`` and the Markdown cells of
``notebooks/*.ipynb``), chunks it by Markdown structure, embeds the chunks with the offline
all-MiniLM-L6-v2 model and returns a :class:`RAGIndex`. ``index.search(query, k)`` returns
:class:`Hit` objects (``.text``, ``.score``, ``.source``), best first, using
:data:`DEFAULT_METHOD` — the method chapter 07 measured best on the book's question set.

Methods (``search(..., method=...)``):

- ``"dense"``   — cosine similarity of embeddings (FAISS);
- ``"bm25"``    — keyword search;
- ``"hybrid"``  — dense and BM25 rankings fused by reciprocal rank fusion;
- ``"hybrid_rerank"`` — the top 12 hybrid candidates re-ordered by :func:`genai_helpers.rag.fusion.rerank`
  (window cosine plus word overlap: no training);
- ``"hybrid_ce"`` — the same 12 candidates re-ordered by the trained cross-encoder of
  :mod:`genai_helpers.rag.cross_encoder` (shipped weights, loaded on first use);
- ``"multi_query"`` — the query, its keyword rewrite and its feedback expansion, each searched
  with hybrid, fused again (query rewriting / expansion).

Chunks carrying an injection flag (see :mod:`genai_helpers.rag.ingest`) are quarantined: kept out
of the index and listed in ``index.quarantined``.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .chunking import Chunk, chunk_documents
from ..checkpoint import write_atomic
from ..embedders import embedder_from_name, load_embedder
from .fusion import reciprocal_rank_fusion, rerank
from .indexes import BM25Index, VectorIndex, bm25_tokens
from .ingest import IngestReport, load_book

__all__ = ["METHODS", "DEFAULT_METHOD", "CANDIDATES", "RERANK_CANDIDATES", "Hit", "RAGIndex", "build_book_index",
           "rewrite_query", "expand_query", "hyde_search"]

METHODS = ("dense", "bm25", "hybrid", "hybrid_rerank", "hybrid_ce", "multi_query")
#: The retrieval method :class:`RAGIndex` uses unless told otherwise: hybrid search, then reranking.
DEFAULT_METHOD = "hybrid_rerank"
CANDIDATES = 30           # how deep each ranking goes before fusion
RERANK_CANDIDATES = 12    # how many fused candidates the reranker looks at again


@dataclass(frozen=True)
class Hit:
    """One search result: the passage, its score (higher is better; scale depends on the method),
    its repo-relative ``source`` path, heading trail, chunk number and injection flags."""

    text: str
    score: float
    source: str
    section: str = ""
    chunk_id: int = -1
    flags: tuple[str, ...] = ()


class RAGIndex:
    """Chunks, their dense index and their BM25 index; ``search(query, k)`` is the public entry.

    ``parents`` (optional) are larger chunks; each chunk's ``parent`` field points into it, and
    ``search(..., parents=True)`` returns the parents of the best-matching chunks
    (parent-document retrieval).
    """

    def __init__(self, chunks: Sequence[Chunk], embedder=None, *, method: str = DEFAULT_METHOD,
                 index_kind: str = "flat", parents: Sequence[Chunk] = (), quarantine: bool = True,
                 index_params: dict | None = None, _vectors: VectorIndex | None = None):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        chunks = list(chunks)
        self.quarantined = [c for c in chunks if c.flags] if quarantine else []
        self.chunks = [c for c in chunks if not (quarantine and c.flags)]
        if not self.chunks:
            raise ValueError("chunks must hold at least one (unflagged) chunk")
        self.embedder = embedder if embedder is not None else load_embedder()
        self.method, self.parents = method, list(parents)
        self.report: IngestReport | None = None
        texts = [c.embed_text for c in self.chunks]
        if _vectors is None:
            _vectors = VectorIndex(index_kind, **(index_params or {})).build(self.embedder.encode(texts))
        self.vectors = _vectors
        self.bm25 = BM25Index(texts)

    def __len__(self) -> int:
        return len(self.chunks)

    # -- the rankings -------------------------------------------------------------------------
    def dense_ranking(self, query: str, depth: int = CANDIDATES, *, vector=None) -> list[tuple[int, float]]:
        q = self.embedder.encode([query]) if vector is None else np.asarray(vector, np.float32).reshape(1, -1)
        scores, ids = self.vectors.search(q, min(depth, len(self)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def bm25_ranking(self, query: str, depth: int = CANDIDATES) -> list[tuple[int, float]]:
        scores, ids = self.bm25.search(query, min(depth, len(self)))
        return [(int(i), float(s)) for i, s in zip(ids, scores)]

    def hybrid_ranking(self, query: str, depth: int = CANDIDATES) -> list[tuple[int, float]]:
        fused = reciprocal_rank_fusion([[i for i, _ in self.dense_ranking(query, depth)],
                                        [i for i, _ in self.bm25_ranking(query, depth)]])
        return [(int(i), s) for i, s in fused]

    def ranking(self, query: str, method: str | None = None, depth: int = CANDIDATES) -> list[tuple[int, float]]:
        """``[(chunk_id, score), ...]`` best first, for ``method`` (default: the index's)."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        method = method or self.method
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method == "dense":
            return self.dense_ranking(query, depth)
        if method == "bm25":
            return self.bm25_ranking(query, depth)
        if method == "hybrid":
            return self.hybrid_ranking(query, depth)
        if method == "multi_query":
            variants = list(dict.fromkeys([query, rewrite_query(query), expand_query(query, self)]))
            fused = reciprocal_rank_fusion([[i for i, _ in self.hybrid_ranking(v, depth)] for v in variants])
            return [(int(i), s) for i, s in fused]
        cands = [i for i, _ in self.hybrid_ranking(query, depth)][:RERANK_CANDIDATES]
        texts = [self.chunks[i].embed_text for i in cands]
        if method == "hybrid_ce":
            scores = self.cross_encoder.score(query, texts)
        else:
            scores = rerank(query, texts, self.embedder.encode, window=400)
        order = np.argsort(-scores, kind="stable")
        return [(cands[j], float(scores[j])) for j in order]

    @property
    def cross_encoder(self):
        """The trained reranker of ``method="hybrid_ce"``
        (:func:`~genai_helpers.rag.cross_encoder.load_cross_encoder`; loaded once, on first use)."""
        from .cross_encoder import load_cross_encoder
        return load_cross_encoder()

    # -- the public entry ---------------------------------------------------------------------
    def hit(self, chunk_id: int, score: float) -> Hit:
        c = self.chunks[chunk_id]
        return Hit(c.text, float(score), c.source, c.section, chunk_id, c.flags)

    def search(self, query: str, k: int = 5, *, method: str | None = None, parents: bool = False) -> list[Hit]:
        """The ``k`` best passages for ``query``, best first (see the module docstring for methods).

        With ``parents=True`` the passages returned are the parent chunks of the best matches
        (each parent once, scored by its best child); the index must have been built with parents.
        """
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        ranked = self.ranking(query, method, depth=max(CANDIDATES, 4 * k))
        if not parents:
            return [self.hit(i, s) for i, s in ranked[:k]]
        if not self.parents:
            raise ValueError("parents=True needs an index built with parents (see with_parents)")
        out, seen = [], set()
        for i, s in ranked:
            p = self.chunks[i].parent
            if p < 0 or p in seen:
                continue
            seen.add(p)
            pc = self.parents[p]
            out.append(Hit(pc.text, s, pc.source, pc.section, i, pc.flags))
            if len(out) == k:
                break
        return out

    # -- persistence --------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the FAISS index and ``chunks.json`` (chunks, settings, embedder name) to ``folder``
        (created if needed). Each file is written atomically (:func:`genai_helpers.checkpoint.write_atomic`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.vectors.save(folder)
        meta = {"method": self.method, "embedder": self.embedder.name,
                "chunks": [asdict(c) for c in self.chunks], "parents": [asdict(c) for c in self.parents],
                "quarantined": [asdict(c) for c in self.quarantined]}
        write_atomic(folder / "chunks.json", json.dumps(meta))   # last: the folder is complete once it exists
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, embedder=None) -> "RAGIndex":
        """Load an index saved by :meth:`save`; ``embedder`` defaults to the one it was built with."""
        folder = Path(folder)
        meta = json.loads((folder / "chunks.json").read_text())
        as_chunk = lambda d: Chunk(**{**d, "flags": tuple(d["flags"])})  # noqa: E731
        embedder = embedder if embedder is not None else embedder_from_name(meta["embedder"])
        if embedder.name != meta["embedder"]:
            raise ValueError(f"embedder must match the saved one ({meta['embedder']!r}), got {embedder.name!r}")
        out = cls([as_chunk(d) for d in meta["chunks"]], embedder, method=meta["method"],
                  parents=[as_chunk(d) for d in meta["parents"]], _vectors=VectorIndex.load(folder))
        if len(out.vectors) != len(out.chunks):
            raise ValueError(f"{folder} holds {len(out.vectors)} vectors for {len(out.chunks)} chunks: "
                             "its files come from different saves; save the index again")
        out.quarantined = [as_chunk(d) for d in meta["quarantined"]]
        return out

    def __repr__(self) -> str:
        return (f"RAGIndex({len(self)} chunks from {len({c.source for c in self.chunks})} sources, "
                f"method={self.method!r}, {self.vectors!r}, embedder={self.embedder.name!r})")


def build_book_index(root: str | os.PathLike = ".", embedder=None, *, method: str = DEFAULT_METHOD,
                     chunk_method: str = "markdown", size: int = 1000, overlap: int = 150,
                     index_kind: str = "flat") -> RAGIndex:
    """Index the book under ``root`` (the repository root): ingest, chunk, embed, index.

    ``embedder`` defaults to the offline all-MiniLM-L6-v2 (:func:`~genai_helpers.embedders.load_embedder`). The ingestion
    report is kept as ``index.report``; flagged chunks are quarantined.
    """
    report = load_book(root)
    chunks = chunk_documents(report.documents, chunk_method, size=size, overlap=overlap)
    index = RAGIndex(chunks, embedder, method=method, index_kind=index_kind)
    index.report = report
    return index


# ---------------------------------------------------------------------------------------------
# Query rewriting and expansion

_FRAMING = re.compile(r"^(?:according to the book,?\s*|in the book,?\s*)?(?:what|which|who|how|why|when|where)"
                      r"(?:\s+(?:is|are|does|do|did|was|were|can|should|would|many|much))*\s+", re.IGNORECASE)


def rewrite_query(query: str) -> str:
    """A keyword rewrite: question framing ("what does", "how many") and stop words removed."""
    stripped = _FRAMING.sub("", query.strip()).rstrip("?")
    return " ".join(w for w in re.findall(r"[\w'-]+|\$[^$]+\$", stripped) if w.lower() not in
                    {"the", "a", "an", "of", "to", "in", "book", "chapter", "this"}) or query


def expand_query(query: str, index: RAGIndex, *, n_terms: int = 5, feedback: int = 3) -> str:
    """Pseudo-relevance feedback: append the ``n_terms`` words most characteristic (tf-idf) of
    the top ``feedback`` BM25 passages that the query does not already contain."""
    top = [i for i, _ in index.bm25_ranking(query, feedback)]
    df = Counter(w for toks in index.bm25.tokens for w in set(toks))
    n = len(index.bm25.tokens)
    tf = Counter(w for i in top for w in index.bm25.tokens[i])
    have = set(bm25_tokens(query))
    scored = sorted(((c * np.log(n / (1 + df[w])), w) for w, c in tf.items() if w not in have and len(w) > 2),
                    reverse=True)
    return query + " " + " ".join(w for _, w in scored[:n_terms])


def hyde_search(index: RAGIndex, query: str, write: Callable[[str], str], k: int = 5, *,
                mix: float = 0.5) -> list[Hit]:
    """HyDE: embed a *hypothetical answer* written by ``write(query)`` and search with it.

    The query vector is ``mix * e(hypothetical) + (1 - mix) * e(query)``, renormalised (``mix`` in
    [0, 1]; 1 is pure HyDE). Returns dense hits.
    """
    if not 0 <= mix <= 1:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    hypo = write(query)
    e = index.embedder.encode([hypo, query])
    v = mix * e[0] + (1 - mix) * e[1]
    v = v / max(np.linalg.norm(v), 1e-12)
    return [index.hit(i, s) for i, s in index.dense_ranking(query, k, vector=v)]
