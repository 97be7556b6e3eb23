"""Retrieval-augmented generation over a real corpus — this book (chapter 07).

Organised by capability:

- :mod:`~genai_helpers.rag.ingest`      parsing files and notebooks, skip report, injection flags, OCR
- :mod:`~genai_helpers.rag.chunking`    length / regex / Markdown- and code-aware / semantic chunking
- :mod:`~genai_helpers.rag.embedding`   the offline all-MiniLM-L6-v2 embedder, a hashing baseline
                                         (re-exported from :mod:`genai_helpers.embedders`, shared with chapter 08)
- :mod:`~genai_helpers.rag.indexes`     FAISS flat / IVF / HNSW / LSH, exact search, BM25
- :mod:`~genai_helpers.rag.fusion`      reciprocal rank fusion, MMR, reranking
- :mod:`~genai_helpers.rag.retriever`   ``build_book_index(...).search(query, k)``, query rewriting, HyDE
- :mod:`~genai_helpers.rag.generation`  grounded prompts with citations, answerers, CRAG, Self-RAG
- :mod:`~genai_helpers.rag.raft`        RAFT training data (oracle + distractors) and a trainable reader
- :mod:`~genai_helpers.rag.lm_reader`   the book LM fine-tuned RAFT-style as a grounded reader (shipped weights,
                                         ``make pretrain-reader``; ``build_book_assistant(generator="book-lm")``)
- :mod:`~genai_helpers.rag.evaluation`  the labelled question set, retrieval and generation metrics
- :mod:`~genai_helpers.rag.assistant`   ``build_book_assistant(root).ask(question)``: cited answers or abstention

Quick start (from the repository root)::

    from genai_helpers.rag import build_book_index
    index = build_book_index(".")
    for hit in index.search("why divide attention scores by the square root of d_k?", k=3):
        print(f"{hit.score:.3f}  {hit.source}  {hit.text[:80]}")
"""
from .chunking import Chunk, chunk_documents, split_by_length, split_by_regex, split_markdown, split_python  # noqa: F401
from .embedding import Embedder, HashingEmbedder, SentenceEmbedder, load_embedder  # noqa: F401
from .fusion import mmr, reciprocal_rank_fusion, rerank  # noqa: F401
from .indexes import BM25Index, VectorIndex, exact_search  # noqa: F401
from .ingest import Document, IngestReport, detect_injection, ingest_files, load_book  # noqa: F401
from .retriever import DEFAULT_METHOD, Hit, RAGIndex, build_book_index, expand_query, hyde_search, rewrite_query  # noqa: F401
from .evaluation import Question, answer_relevance, evaluate_retrieval, faithfulness, load_questions  # noqa: F401,E402
from .generation import (Answer, BigramWriter, ExtractiveAnswerer, build_prompt, corrective_rag,  # noqa: F401,E402
                         load_generator, self_rag)
from .assistant import BookAnswer, BookAssistant, GroundedReader, build_book_assistant  # noqa: F401,E402

__all__ = ["Chunk", "chunk_documents", "split_by_length", "split_by_regex", "split_markdown", "split_python",
           "Embedder", "HashingEmbedder", "SentenceEmbedder", "load_embedder", "mmr", "reciprocal_rank_fusion",
           "rerank", "BM25Index", "VectorIndex", "exact_search", "Document", "IngestReport", "detect_injection",
           "ingest_files", "load_book", "DEFAULT_METHOD", "Hit", "RAGIndex", "build_book_index", "expand_query",
           "hyde_search", "rewrite_query", "Question", "answer_relevance", "evaluate_retrieval", "faithfulness",
           "load_questions", "Answer", "BigramWriter", "ExtractiveAnswerer", "build_prompt", "corrective_rag",
           "load_generator", "self_rag", "BookAnswer", "BookAssistant", "GroundedReader", "build_book_assistant"]
