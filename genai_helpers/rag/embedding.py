"""Text embedders for retrieval (chapter 07): re-exported from :mod:`genai_helpers.embedders`.

The package has one embedder interface and one implementation of each embedder (the
sentence-transformers :class:`~genai_helpers.embedders.SentenceEmbedder` loaded by
:func:`~genai_helpers.embedders.load_embedder`, and the lexical
:class:`~genai_helpers.embedders.HashingEmbedder`); they live in :mod:`genai_helpers.embedders`
because chapter 07's retriever and chapter 08's agents both use them. This module keeps the chapter's import path
(``from genai_helpers.rag.embedding import load_embedder``). Here ``HashingEmbedder(dim)`` is
chapter 07's signed bag of words (``name = "hashing-bow-<dim>"``).
"""
from ..embedders import (DEFAULT_MODEL, HUB_MODEL, Embedder, HashingEmbedder, SentenceEmbedder,  # noqa: F401
                         check_texts, default_model_path, embedder_from_name, load_embedder)

_check_texts = check_texts      # the old private name

__all__ = ["DEFAULT_MODEL", "HUB_MODEL", "Embedder", "HashingEmbedder", "SentenceEmbedder", "default_model_path",
           "embedder_from_name", "load_embedder"]
