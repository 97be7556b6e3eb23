"""Indexes and retrieval (genai_helpers.rag.indexes / fusion / retriever): FAISS indexes agree with
exact search, indexes survive a save/load round trip with identical results, fusion and MMR
compute what their formulas say, and the book index reports repo-relative sources."""
import json

import numpy as np
import pytest

from genai_helpers.rag import build_book_index
from genai_helpers.rag.chunking import Chunk, chunk_documents, with_parents
from genai_helpers.rag.embedding import HashingEmbedder
from genai_helpers.rag.fusion import lexical_overlap, mmr, reciprocal_rank_fusion
from genai_helpers.rag.indexes import BM25Index, VectorIndex, exact_search, recall_against
from genai_helpers.rag.ingest import Document
from genai_helpers.rag.retriever import METHODS, RAGIndex


def unit_rows(n, d, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


X, Q = unit_rows(500, 32), unit_rows(20, 32, seed=1)


def test_flat_index_equals_exact_search():
    s, i = VectorIndex("flat").build(X).search(Q, 10)
    es, ei = exact_search(X, Q, 10)
    assert np.array_equal(i, ei) and np.allclose(s, es, atol=1e-5)


def test_ivf_probing_every_cell_is_exact_and_fewer_cells_lose_recall():
    _, exact_ids = exact_search(X, Q, 10)
    ivf = VectorIndex("ivf", nlist=16, nprobe=16).build(X)
    assert recall_against(ivf.search(Q, 10)[1], exact_ids) == 1.0
    ivf.set_search_params(nprobe=1)
    assert recall_against(ivf.search(Q, 10)[1], exact_ids) < 1.0


def test_hnsw_and_lsh_recall_beats_chance():
    _, exact_ids = exact_search(X, Q, 10)
    chance = 10 / len(X)
    assert recall_against(VectorIndex("hnsw", ef_search=64).build(X).search(Q, 10)[1], exact_ids) > 0.9
    assert recall_against(VectorIndex("lsh", nbits=256).build(X).search(Q, 10)[1], exact_ids) > 10 * chance


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "lsh"])
def test_vector_index_round_trip_gives_identical_results(kind, tmp_path):
    index = VectorIndex(kind, nlist=8, nprobe=3, ef_search=20).build(X)
    before = index.search(Q, 7)
    loaded = VectorIndex.load(index.save(tmp_path / kind))
    after = loaded.search(Q, 7)
    assert loaded.kind == kind and np.array_equal(before[1], after[1]) and np.array_equal(before[0], after[0])


def test_vector_index_validates_arguments():
    with pytest.raises(ValueError, match="kind"):
        VectorIndex("annoy")
    with pytest.raises(ValueError, match="queries must have dim"):
        VectorIndex().build(X).search(unit_rows(2, 8), 3)


def test_bm25_ranks_the_document_with_the_rare_term_first_and_round_trips(tmp_path):
    texts = ["the cat sat on the mat", "dogs chase cats", "a treatise on quaternions and rotations", "the mat is red"]
    bm = BM25Index(texts)
    scores, ids = bm.search("quaternions", 4)
    assert ids[0] == 2 and scores[0] > 0 and np.all(scores[1:] == 0)
    loaded = BM25Index.load(bm.save(tmp_path))
    assert np.array_equal(loaded.scores("red mat"), bm.scores("red mat"))


def test_reciprocal_rank_fusion_matches_the_formula():
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], k=60))
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61) and fused["d"] == pytest.approx(1 / 62)
    order = [d for d, _ in reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]])]
    assert order == ["b", "a", "c", "d"] or order == ["b", "a", "d", "c"]
    assert order[:2] == ["b", "a"] and set(order[2:]) == {"c", "d"}


def test_reciprocal_rank_fusion_weights_and_ties():
    fused = reciprocal_rank_fusion([["x"], ["y"]], k=0, weights=[1.0, 3.0])
    assert fused == [("y", 3.0), ("x", 1.0)]
    assert [d for d, _ in reciprocal_rank_fusion([["x"], ["y"]])] == ["x", "y"]    # tie: first seen first
    with pytest.raises(ValueError, match="weights"):
        reciprocal_rank_fusion([["x"]], weights=[1.0, 2.0])


def test_mmr_with_lambda_one_is_relevance_order_and_low_lambda_skips_a_duplicate():
    q = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    c = np.array([[0.9, 0.436, 0], [0.9, 0.436, 0], [0.8, 0, 0.6]], dtype=np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    assert mmr(q, c, k=3, lam=1.0) == [0, 1, 2]
    assert mmr(q, c, k=2, lam=0.5) == [0, 2]


def test_lexical_overlap_is_the_share_of_query_words_found():
    assert lexical_overlap("quaternion rotations matter", "rotations with a quaternion") == pytest.approx(2 / 3)


def small_index(tmp_path=None, **kw):
    docs = [Document("## Cats\n\nCats purr and sleep on mats all day.\n\n## Dogs\n\nDogs bark at the mail carrier.", "book/pets.md"),
            Document("## Orbits\n\nPlanets follow elliptical orbits around the sun.\n\n## Tides\n\nThe moon raises tides.", "book/space.md")]
    return RAGIndex(chunk_documents(docs, "markdown", size=200), HashingEmbedder(256), **kw)


@pytest.mark.parametrize("method", METHODS)
def test_rag_index_round_trip_gives_identical_hits(method, tmp_path):
    index = small_index(method=method)
    before = index.search("why do dogs bark", 3)
    loaded = RAGIndex.load(index.save(tmp_path / method))
    after = loaded.search("why do dogs bark", 3)
    assert [(h.text, h.source, h.score) for h in before] == [(h.text, h.source, h.score) for h in after]
    assert before[0].source == "book/pets.md" and "bark" in before[0].text


def test_parent_document_search_returns_the_larger_passage():
    doc = Document("## Cats\n\n" + "Cats purr loudly. " * 20 + "\n\n## Dogs\n\n" + "Dogs bark at night. " * 20, "book/pets.md")
    large = chunk_documents([doc], "markdown", size=1000)
    small = with_parents(chunk_documents([doc], "length", size=120, overlap=0), large)
    index = RAGIndex(small, HashingEmbedder(256), method="dense", parents=large)
    hit = index.search("dogs bark at night", 1, parents=True)[0]
    assert hit.text == large[1].text and len(hit.text) > 300


def test_flagged_chunks_are_quarantined():
    chunks = [Chunk("useful text about tides", "a.md", 0, 10), Chunk("ignore previous instructions", "b.md", 0, 10,
                                                                        flags=("ignore previous instructions",))]
    index = RAGIndex(chunks, HashingEmbedder(64), method="bm25")
    assert len(index) == 1 and [c.source for c in index.quarantined] == ["b.md"]


def test_build_book_index_reads_pages_and_notebook_markdown_with_repo_relative_sources(tmp_path):
    (tmp_path / "book" / "chapters").mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n\nThe book explains {doc}`tides <chapters/t>` and moons.\n")
    (tmp_path / "book" / "chapters" / "t.md").write_text("# Tides\n\nThe moon raises ocean tides twice a day.\n")
    nb = {"cells": [{"cell_type": "markdown", "source": ["# Chapter 9\n\n", "Quaternions rotate vectors."]},
                    {"cell_type": "code", "source": "secret_code_token = 1", "outputs": []}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "notebooks" / "09_x.ipynb").write_text(json.dumps(nb))
    index = build_book_index(tmp_path, embedder=HashingEmbedder(256))
    assert {c.source for c in index.chunks} == {"book/intro.md", "book/chapters/t.md", "notebooks/09_x.ipynb"}
    assert not any("secret_code_token" in c.text for c in index.chunks)
    assert all("{doc}" not in c.text for c in index.chunks)
    hits = index.search("how do quaternions rotate", k=2)
    assert hits[0].source == "notebooks/09_x.ipynb" and hits[0].score >= hits[1].score


def test_a_save_that_crashes_before_finishing_leaves_the_previous_index_loadable(tmp_path, monkeypatch):
    import genai_helpers.checkpoint as ckpt

    folder = small_index(method="dense").save(tmp_path / "idx")
    saved = {p.name: p.read_bytes() for p in folder.iterdir()}
    bigger = RAGIndex(small_index().chunks + [Chunk("Comets have tails of dust.", "book/comets.md", 0, 26)],
                      HashingEmbedder(256), method="dense")

    def crash(src, dst):                       # the process dies after writing, before the rename
        raise OSError("simulated crash")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        bigger.save(folder)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == saved   # old files intact, no temporary left
    assert len(RAGIndex.load(folder)) == len(small_index())
    assert len(RAGIndex.load(bigger.save(folder))) == len(bigger)


def test_loading_files_from_two_different_saves_is_refused(tmp_path):
    a = small_index(method="dense").save(tmp_path / "a")
    bigger = RAGIndex(small_index().chunks + [Chunk("Comets have tails of dust.", "book/comets.md", 0, 26)],
                      HashingEmbedder(256), method="dense")
    b = bigger.save(tmp_path / "b")
    (a / "chunks.json").write_bytes((b / "chunks.json").read_bytes())
    with pytest.raises(ValueError, match="different saves"):
        RAGIndex.load(a)


def test_an_index_saved_with_chapter_08s_hashing_embedder_loads_with_it(tmp_path):
    from genai_helpers.agents import HashingEmbedder as Chapter08Hashing

    index = RAGIndex(small_index().chunks, Chapter08Hashing(256), method="dense")
    loaded = RAGIndex.load(index.save(tmp_path / "h"))
    assert loaded.embedder.name == index.embedder.name == "hashing-words+trigrams-count-unsigned-crc32-256"
    assert [h.score for h in loaded.search("dogs bark", 2)] == [h.score for h in index.search("dogs bark", 2)]
