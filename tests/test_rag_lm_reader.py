"""The book LM as a grounded reader (genai_helpers.rag.lm_reader): data, batches, shipped weights,
answers, abstention and bad input. Fast: a hand-made corpus and the shipped 1.1 M-parameter model."""
import json

import numpy as np
import pytest
import torch

from genai_helpers.embedders import HashingEmbedder
from genai_helpers.models.book_lm import load_tokenizer
from genai_helpers.rag import RAGIndex, build_book_assistant, load_generator
from genai_helpers.rag import lm_reader
from genai_helpers.rag.chunking import Chunk
from genai_helpers.rag.evaluation import claims
from genai_helpers.rag.generation import ABSTAIN as ABSTAIN_TEXT

DEVICES = ("## Devices\n\nEach chapter picks the fastest device it finds: a GPU, then the CPU. "
           "To override it, set `GENAI_DEVICE` before starting Jupyter:\n\n```bash\nGENAI_DEVICE=cpu make lab\n```")
COMMANDS = ("## The two commands\n\n`make book`\n: Builds the static website into `_build/html/`.\n\n`make test`\n: "
            "Runs every test. See [Chapter 2](../notebooks/02_training_at_scale.ipynb#x) for more.")
OTHER = ("## Sampling\n\nTemperature divides the logits before the softmax. Top-p keeps the smallest set of tokens "
         "whose mass reaches p. A lower temperature sharpens the distribution over the next token.")
CHUNKS = [Chunk(DEVICES, "book/how_to_use.md", 0, len(DEVICES), "Devices"),
          Chunk(COMMANDS, "book/how_to_use.md", 0, len(COMMANDS), "The two commands"),
          Chunk(OTHER, "notebooks/03_sampling_and_evaluation.ipynb", 0, len(OTHER), "Sampling")]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def reader():
    return lm_reader.load_book_lm_reader()


def test_prompt_and_windows(tok):
    p = lm_reader.reader_prompt("Which command builds the site?", "make book builds it.", 3)
    assert p == "Question: Which command builds the site?\nPassage [3]: make book builds it.\nAnswer:"
    wins = lm_reader.passage_windows(COMMANDS, tok, max_tokens=16)
    assert len(wins) >= 2 and all(len(tok.encode(w)) <= 16 for w in wins)
    assert "](" not in " ".join(lm_reader.passage_windows(COMMANDS, tok))        # links shortened to their text
    assert lm_reader.passage_windows("   ", tok) == []
    with pytest.raises(ValueError, match="n must be"):
        lm_reader.reader_prompt("q?", "w", 0)
    with pytest.raises(ValueError, match="question"):
        lm_reader.reader_prompt("  ", "w", 1)
    with pytest.raises(TypeError, match="window"):
        lm_reader.reader_prompt("q?", None, 1)
    with pytest.raises(ValueError, match="max_tokens"):
        lm_reader.passage_windows(COMMANDS, tok, max_tokens=4)


def test_raft_data_has_oracle_and_abstention_examples_and_is_deterministic(tok):
    data = lm_reader.make_reader_data(CHUNKS * 3, tok, p_no_oracle=0.5, seed=0)
    assert data == lm_reader.make_reader_data(CHUNKS * 3, tok, p_no_oracle=0.5, seed=0)
    answers = [a for _, a in data]
    assert ABSTAIN_TEXT in answers and any(a != ABSTAIN_TEXT for a in answers)
    for prompt, answer in data:
        n = prompt.split("Passage [")[1].split("]")[0]
        assert prompt.startswith("Question: ") and prompt.endswith("\nAnswer:")
        if answer != ABSTAIN_TEXT:
            assert answer.endswith(f"[{n}]")                                     # cites the passage it read
    only = lm_reader.make_reader_data(CHUNKS, tok, p_no_oracle=0.0, seed=0)
    assert ABSTAIN_TEXT not in [a for _, a in only]
    with pytest.raises(ValueError, match="p_no_oracle"):
        lm_reader.make_reader_data(CHUNKS, tok, p_no_oracle=1.5)


def test_encoded_examples_and_batches(tok):
    x, y = lm_reader.encode_example(tok, "Question: q?\nPassage [1]: w.\nAnswer:", "w. [1]")
    assert len(x) == len(y) and y[0] == -100 and y[-1] == tok.eot_id and x[0] == tok.eot_id
    enc = [lm_reader.encode_example(tok, p, a) for p, a in lm_reader.make_reader_data(CHUNKS, tok, seed=0)]
    batches = lm_reader.ReaderBatches(enc, tok.eot_id, batch_size=4, seed=0)
    bx, by = batches(7)
    assert bx.shape == by.shape and bx.shape[0] == 4 and bx.dtype == torch.long
    assert torch.equal(batches(7)[0], bx)                                        # a pure function of i
    with pytest.raises(ValueError, match="batch_size"):
        lm_reader.ReaderBatches(enc, tok.eot_id, batch_size=0)


def test_shipped_manifest_matches_the_weights():
    man = lm_reader.reader_manifest()
    assert man["data"]["labelled_questions_used"] == 0
    assert man["config"]["block_size"] == lm_reader.BLOCK_SIZE and man["seed"] == lm_reader.SEED
    assert len(man["history"]["step"]) == len(man["history"]["loss"]) > 0
    assert man["history"]["loss"][-1] < man["history"]["loss"][0]


def test_reader_answers_with_a_citation_or_abstains(reader):
    index = RAGIndex(CHUNKS, HashingEmbedder(2048), method="hybrid")
    hits = index.search("Which command builds the static website?", 3)
    ans = reader("Which command builds the static website?", hits)
    if not ans.abstained:
        assert ans.citations and all(1 <= n <= len(hits) for n in ans.citations)
        assert all(marks for _, marks in claims(ans.text))                       # every claim cites a passage
    assert reader("Which command builds the static website?", []).abstained      # nothing to read
    strict = lm_reader.BookLMReader(reader.model, reader.tok, abstain_threshold=1e-9)
    assert strict("Which command builds the static website?", hits).text == ABSTAIN_TEXT
    lp = reader.abstain_logprobs([p for _, _, p in reader.windows("Who painted the Mona Lisa?", hits)])
    assert lp.shape == (len(reader.windows("Who painted the Mona Lisa?", hits)),) and np.all(lp <= 0)


def test_assistant_with_the_book_lm_keeps_its_api():
    index = RAGIndex(CHUNKS, HashingEmbedder(2048), method="hybrid")
    assistant = build_book_assistant(index=index, generator="book-lm", k=3)
    reply = assistant.ask("Which command builds the static website?")
    assert isinstance(reply.text, str) and isinstance(reply.abstained, bool)
    assert all(c in {ch.source for ch in CHUNKS} for c in reply.citations)
    assert reply.abstained == (reply.citations == [])


def test_bad_input(reader):
    with pytest.raises(ValueError, match="abstain_threshold"):
        lm_reader.BookLMReader(reader.model, reader.tok, abstain_threshold=0)
    with pytest.raises(ValueError, match="max_windows"):
        lm_reader.BookLMReader(reader.model, reader.tok, max_windows=0)
    with pytest.raises(TypeError, match="question"):
        reader(None, [])
    with pytest.raises(ValueError, match="name"):
        load_generator("", None)


def test_damaged_weights_are_refused(tmp_path):
    import shutil
    for name in (lm_reader.WEIGHTS, lm_reader.MANIFEST):
        shutil.copy(lm_reader.READER_DIR / name, tmp_path / name)
    man = json.loads((tmp_path / lm_reader.MANIFEST).read_text())
    man["sha256"] = "0" * 64
    (tmp_path / lm_reader.MANIFEST).write_text(json.dumps(man))
    with pytest.raises(ValueError, match="sha256"):
        lm_reader.load_book_lm_reader(tmp_path)
    with pytest.raises(FileNotFoundError, match="pretrain-reader"):
        lm_reader.load_book_lm_reader(tmp_path / "missing")
