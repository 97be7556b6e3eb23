"""The book LM's corpus builder: markup removal, the split by document, the data card."""
import json

import pytest

from genai_helpers.data import book_corpus as bc


def test_strip_wiki():
    raw = ("'''Achilles''' ( ; , Akhilleus, ) was a {{lang|grc|hero}} of the [[Trojan War|war]].<ref>x</ref>\n"
           "{| class=wikitable\n| a || b\n|}\n== See also ==\n* [[Hector]]")
    out = bc._strip_wiki(raw)
    assert "Achilles (Akhilleus) was a of the war." in " ".join(out.split())
    assert "Hector" not in out and "wikitable" not in out and "<ref>" not in out


def test_bucket_is_stable_and_about_two_percent():
    assert bc._bucket("devil", "abc") == bc._bucket("devil", "abc")
    counts = {"train": 0, "val": 0, "test": 0}
    for i in range(20_000):
        counts[bc._bucket("x", str(i))] += 1
    assert 300 < counts["val"] < 500 and 300 < counts["test"] < 500


def test_build_small_corpus(tmp_path):
    out = bc.build_corpus(tmp_path / "c", sources=("devil",), verbose=False)
    card = json.loads((out / "card.json").read_text())
    stats = card["sources"]["devil"]
    assert stats["licence"] == "public domain" and stats["kept_docs"] > 100
    docs = {s: bc.read_split(s, out) for s in ("train", "val", "test")}
    assert len(docs["train"]) > 10 * len(docs["test"]) > 0
    assert not set(docs["train"]) & set(docs["test"])               # split by document
    for s, d in docs.items():
        assert all(len(x) >= bc.MIN_DOC_CHARS for x in d)
        assert card["files"][f"{s}.txt"]["docs"] == len(d)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="sources"):
        bc.build_corpus(tmp_path, sources=("nope",))
    with pytest.raises(ValueError, match="split"):
        bc.read_split("dev", tmp_path)
    with pytest.raises(ValueError, match="name"):
        bc.iter_source("nope")
