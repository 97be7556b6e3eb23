"""Chapter 04 data: the byte-level BPE tokenizer round-trips any text and survives save/load;
the email generator is deterministic, varied, and its splits are disjoint."""
import random

import pytest
import torch

from genai_helpers.data.bpe import BPETokenizer
from genai_helpers.data.emails import completion_pairs, email_splits, make_email, make_emails

CORPUS = ["the cat sat on the mat", "the cat ate the rat", "a mat for the cat"] * 20


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(CORPUS, vocab_size=300)


def test_bpe_round_trip_on_any_text(tok, tmp_path):
    texts = ["the cat sat", "Unseen WORDS, digits 12345 and ümlauts — even emoji 🙂\n\ttabs", ""]
    for t in texts:
        assert tok.decode(tok.encode(t)) == t
    path = tok.save(tmp_path / "tok.json")
    again = BPETokenizer.load(path)
    assert len(again) == len(tok)
    for t in texts:
        assert again.encode(t) == tok.encode(t)


def test_bpe_merges_frequent_words_and_keeps_specials_first(tok):
    assert tok.token_to_id("<pad>") == 0 and tok.eos_id == 1
    assert tok.tokens("the cat") == ["the", "Ġcat"]            # frequent words became single tokens
    assert len(tok.encode("zyxw")) == 4                          # unseen letters: one byte each
    assert len(tok) <= 300 and len(tok) >= 256 + 2


def test_bpe_training_is_deterministic():
    a = BPETokenizer.train(CORPUS, vocab_size=300)
    b = BPETokenizer.train(CORPUS, vocab_size=300)
    assert [a.id_to_token(i) for i in range(len(a))] == [b.id_to_token(i) for i in range(len(b))]


def test_bpe_encode_corpus_appends_eos(tok):
    ids = tok.encode_corpus(["the cat", "a mat"])
    assert ids.dtype == torch.long
    assert ids.tolist() == tok.encode("the cat") + [tok.eos_id] + tok.encode("a mat") + [tok.eos_id]
    assert tok.token_texts()[tok.token_to_id("Ġcat")] == " cat"


def test_bpe_validation(tok):
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train(CORPUS, vocab_size=100)
    with pytest.raises(TypeError, match="texts"):
        BPETokenizer.train("one string", vocab_size=300)
    with pytest.raises(ValueError, match="ids"):
        tok.decode([len(tok)])
    with pytest.raises(TypeError, match="text"):
        tok.encode(3)
    with pytest.raises(FileNotFoundError):
        BPETokenizer.load("/nonexistent/tok.json")


def test_emails_deterministic_distinct_and_varied():
    a, b = make_emails(300, seed=1), make_emails(300, seed=1)
    assert a == b
    assert len(set(a)) == 300
    assert make_emails(50, seed=2) != a[:50]
    # each email: a From/To/Subject header, a blank line, then greeting, blank line, body, sign-off, name
    headers = [e.split("\n\n", 1)[0].split("\n") for e in a]
    bodies = [e.split("\n\n", 1)[1] for e in a]
    assert all([h[0][:5], h[1][:3], h[2][:8]] == ["From:", "To:", "Subject:"] for h in headers)
    greetings = {b.split("\n")[0].split()[0] for b in bodies}
    sign_offs = {e.split("\n")[-2] for e in a}
    assert len(greetings) >= 5 and len(sign_offs) >= 6
    assert len({b.split("\n")[2].split(".")[0] for b in bodies}) > 40   # many different first sentences
    for e, body in zip(a[:20], bodies[:20]):
        lines = body.split("\n")
        assert lines[0].startswith(("Hi", "Hello", "Dear", "Hey", "Good")) and lines[1] == ""
        assert "{" not in e and "}" not in e                               # every slot was filled


def test_email_splits_are_fixed_and_disjoint():
    tr, va, te = email_splits(500, 60, 60, seed=0)
    assert (len(tr), len(va), len(te)) == (500, 60, 60)
    assert not (set(tr) & set(va)) and not (set(tr) & set(te)) and not (set(va) & set(te))
    assert email_splits(500, 60, 60, seed=0) == (tr, va, te)
    assert email_splits(500, 60, 60, seed=1)[2] != te


def test_completion_pairs_cut_at_word_boundary_inside_body():
    emails = make_emails(100, seed=3)
    pairs = completion_pairs(emails, seed=0)
    assert len(pairs) == 100
    for email, (prefix, rest) in zip(emails, pairs):
        assert prefix + rest == email
        assert prefix.endswith(" ") and "\n\n" in prefix
        assert len(prefix.split()) >= 4 and len(rest.split("\n\n")[0].split()) >= 3
    assert completion_pairs(emails, seed=0) == pairs


def test_email_validation():
    with pytest.raises(ValueError, match="n"):
        make_emails(0)
    with pytest.raises(TypeError, match="rng"):
        make_email(3)
    with pytest.raises(ValueError, match="n_val"):
        email_splits(10, 0, 5)
    assert isinstance(make_email(random.Random(0)), str)
