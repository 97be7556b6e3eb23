"""Chapter 07's trained reranker (genai_helpers.rag.cross_encoder) and HyDE's book-LM writer
(genai_helpers.rag.hyde): bad input raises ValueError naming the parameter, the synthetic training
groups have the promised shape and use no labelled question, only the top layer and the head are
trained and shipped, the shipped weights load (sha256 checked) and rank a relevant passage first."""
import json

import numpy as np
import pytest
import torch

from genai_helpers.embedders import HashingEmbedder, load_embedder
from genai_helpers.rag import cross_encoder as ce
from genai_helpers.rag.chunking import chunk_documents
from genai_helpers.rag.hyde import BookLMWriter
from genai_helpers.rag.ingest import Document
from genai_helpers.rag.retriever import RAGIndex


@pytest.fixture(scope="module")
def minilm():
    st = load_embedder(device="cpu").model
    return st[0].auto_model, st.tokenizer


def small_index():
    docs = [Document("## Cats\n\nCats purr loudly and sleep on warm mats all day long.\n\n## Dogs\n\n"
                     "Dogs bark at the mail carrier every single morning.", "book/pets.md"),
            Document("## Orbits\n\nPlanets follow elliptical orbits around the distant sun.\n\n## Tides\n\n"
                     "The moon raises tides twice a day on every ocean.", "book/space.md")]
    return RAGIndex(chunk_documents(docs, "markdown", size=200), HashingEmbedder(256), method="hybrid")


def test_cross_encoder_trains_only_the_top_layer_and_head(minilm):
    model = ce.CrossEncoder(*minilm, trained_layers=1)
    names = sorted(model.trainable_state())
    assert all(n.startswith(("bert.encoder.layer.5.", "head.")) for n in names) and "head.weight" in names
    lender = dict(minilm[0].named_parameters())
    assert all(p is not lender[n[len("bert."):]] for n, p in model.named_parameters() if n.startswith("bert."))  # a copy


@pytest.mark.parametrize("kw, name", [({"trained_layers": 0}, "trained_layers"), ({"trained_layers": 7}, "trained_layers"),
                                      ({"max_tokens": 8}, "max_tokens"), ({"batch_size": 0}, "batch_size")])
def test_cross_encoder_rejects_bad_settings(minilm, kw, name):
    with pytest.raises(ValueError, match=name):
        ce.CrossEncoder(*minilm, **kw)


def test_score_shape_and_bad_input(minilm):
    model = ce.CrossEncoder(*minilm)
    s = model.score("why do dogs bark", ["Dogs bark.", "Cats purr.", "Tides rise."])
    assert s.shape == (3,) and np.array_equal(s, model.score("why do dogs bark", ["Dogs bark.", "Cats purr.", "Tides rise."]))
    assert model.score("q", []).shape == (0,)
    with pytest.raises(ValueError, match="question"):
        model.score("  ", ["a"])
    with pytest.raises(TypeError, match="passages"):
        model.score("q", "a passage")


def test_reranker_data_groups_and_bad_input():
    index = small_index()
    train, held = ce.make_reranker_data(index, n_negatives=2, holdout=0.0)
    assert train and not held
    for q, passages in train:
        assert isinstance(q, str) and len(passages) == 3
        assert passages[0] in {c.embed_text for c in index.chunks} and passages[0] not in passages[1:]
    assert ce.make_reranker_data(index, n_negatives=2, holdout=0.0) == (train, held)      # deterministic
    with pytest.raises(ValueError, match="n_negatives"):
        ce.make_reranker_data(index, n_negatives=0)
    with pytest.raises(ValueError, match="holdout"):
        ce.make_reranker_data(index, holdout=0.9)


def test_training_lowers_the_loss_and_saves_only_trained_tensors(minilm, tmp_path):
    index = small_index()
    train, _ = ce.make_reranker_data(index, n_negatives=2, holdout=0.0)
    torch.set_num_threads(2)
    model, hist = ce.train_cross_encoder(train, train[:2], bert=minilm[0], tokenizer=minilm[1], steps=6,
                                         groups_per_step=2, eval_every=3, head_lr=1e-2)
    assert len(hist["loss"]) == 6 and hist["eval_step"] == [0, 3, 6] and hist["seconds"] >= 0
    sha = ce.save_cross_encoder(model, tmp_path, {"name": "test"})
    man = json.loads((tmp_path / ce.MANIFEST).read_text())
    assert man["sha256"] == sha and man["trained_layers"] == 1 and man["weights_dtype"] == "float16"
    loaded = ce.load_cross_encoder(tmp_path)
    texts = [p for p in train[0][1]]
    assert np.allclose(loaded.score(train[0][0], texts), model.score(train[0][0], texts), atol=0.05)   # fp16 storage
    (tmp_path / ce.WEIGHTS).write_bytes((tmp_path / ce.WEIGHTS).read_bytes()[:-2] + b"\0\0")
    ce._LOADED.clear()
    with pytest.raises(ValueError, match="sha256"):
        ce.load_cross_encoder(tmp_path)
    with pytest.raises(ValueError, match="steps"):
        ce.train_cross_encoder(train, steps=0, bert=minilm[0], tokenizer=minilm[1])
    with pytest.raises(ValueError, match="train_groups"):
        ce.train_cross_encoder([], bert=minilm[0], tokenizer=minilm[1])


def test_shipped_reranker_loads_and_ranks_the_relevant_passage_first():
    man = ce.reranker_manifest()
    assert man["data"]["labelled_questions_used"] == 0 and len(man["history"]["loss"]) == man["training"]["steps"]
    model = ce.load_cross_encoder()
    s = model.score("What does the KV cache store during generation?",
                    ["The KV cache stores the keys and values of earlier tokens, so each new token attends to them "
                     "without recomputing them.", "Leonardo da Vinci painted the Mona Lisa in Florence."])
    assert s[0] > s[1]


def test_hybrid_ce_method_reorders_hybrid_candidates():
    index = small_index()
    hits = index.search("why do dogs bark", 2, method="hybrid_ce")
    assert len(hits) == 2 and "bark" in hits[0].text


def test_book_lm_writer_is_deterministic_and_checks_input():
    writer = BookLMWriter(max_new_tokens=8)
    a = writer("What is a KV cache?")
    assert isinstance(a, str) and a and a == writer("What is a KV cache?")
    assert writer.write_many(["What is a KV cache?"]) == [a]
    with pytest.raises(ValueError, match="max_new_tokens"):
        BookLMWriter(writer.model, writer.tok, max_new_tokens=0)
    with pytest.raises(ValueError, match="prompt"):
        BookLMWriter(writer.model, writer.tok, prompt="no placeholder")
    with pytest.raises(ValueError, match="repetition_penalty"):
        BookLMWriter(writer.model, writer.tok, repetition_penalty=0.5)
    with pytest.raises(ValueError, match="question"):
        writer(" ")
    with pytest.raises(TypeError, match="questions"):
        writer.write_many("one question")
