"""The book assistant (genai_helpers.rag.assistant): units, reader, citations, abstention, metrics.

Runs on a small hand-made corpus with the hashing embedder (fast, offline); the real book index
is exercised by chapter 07.
"""
import pytest

from genai_helpers.embedders import HashingEmbedder
from genai_helpers.rag import Answer, BookAssistant, GroundedReader, RAGIndex, build_book_assistant
from genai_helpers.rag.assistant import answer_recall, answer_units, content_words, token_f1
from genai_helpers.rag.chunking import Chunk
from genai_helpers.rag.evaluation import dev_test_split, load_out_of_scope

DEVICES = ("## Devices\n\nEach chapter picks the fastest device it finds: a GPU, then the CPU. "
           "To override it, set `GENAI_DEVICE` before starting Jupyter:\n\n```bash\nGENAI_DEVICE=cpu make lab\n```")
COMMANDS = "## The two commands\n\n`make book`\n: Builds the static website into `_build/html/`.\n\n`make test`\n: Runs every test."
OTHER = "## Sampling\n\nTemperature divides the logits before the softmax. Top-p keeps the smallest set of tokens whose mass reaches p."


@pytest.fixture(scope="module")
def index():
    chunks = [Chunk(DEVICES, "book/how_to_use.md", 0, len(DEVICES), "Devices"),
              Chunk(COMMANDS, "book/how_to_use.md", 0, len(COMMANDS), "The two commands"),
              Chunk(OTHER, "notebooks/03_sampling_and_evaluation.ipynb", 0, len(OTHER), "Sampling")]
    return RAGIndex(chunks, HashingEmbedder(2048), method="hybrid")


def test_units_keep_the_command_a_colon_introduces_and_join_definition_terms():
    units = answer_units(DEVICES)
    assert any("GENAI_DEVICE=cpu make lab" in u and u.startswith("To override it") for u in units)
    assert not any(u.startswith("Devices") for u in units)                 # headings are not answers
    assert "make book: Builds the static website into _build/html/." in answer_units(COMMANDS)
    with pytest.raises(TypeError, match="passage"):
        answer_units(None)


def test_assistant_answers_with_citations_best_first(index):
    assistant = build_book_assistant(index=index, k=3, min_score=0.2)
    reply = assistant.ask("Which environment variable makes a chapter use the CPU, GENAI_DEVICE?")
    assert not reply.abstained
    assert "GENAI_DEVICE=cpu" in reply.text and "[" in reply.text
    assert reply.citations[0] == "book/how_to_use.md"
    assert len(reply.citations) == len(set(reply.citations))
    assert all(not c.startswith("/") for c in reply.citations)            # repo-relative


def test_assistant_abstains_without_support(index):
    assistant = build_book_assistant(index=index, k=3, min_score=0.9)
    reply = assistant.ask("Who painted the Mona Lisa?")
    assert reply.abstained and reply.citations == []
    assert reply.text == "I don't know from the book."


def test_reader_never_writes_words_outside_the_passages(index):
    reader = GroundedReader(index.embedder.encode, min_score=-1)
    hits = index.search("How do I build the website?", 3)
    ans = reader("How do I build the website?", hits)
    body = " ".join(part.rsplit("[", 1)[0] for part in ans.text.split("] ") if part)
    passages = " ".join(answer_units(h.text)[i] for h in hits for i in range(len(answer_units(h.text))))
    for word in content_words(body):
        assert word in content_words(passages)


def test_a_custom_generator_is_used_and_bad_input_is_refused(index):
    calls = []

    def generator(question, hits):
        calls.append(len(hits))
        return Answer("It is make book [1].", {1: hits[0].source})

    assistant = build_book_assistant(index=index, generator=generator, k=2)
    reply = assistant.ask("How do I build the website?")
    assert calls == [2] and reply.citations == [reply.passages[0].source] and not reply.abstained
    with pytest.raises(ValueError, match="question"):
        assistant.ask("   ")
    with pytest.raises(TypeError, match="question"):
        assistant.ask(42)
    with pytest.raises(ValueError, match="at most"):
        assistant.ask("x" * 5000)
    with pytest.raises(ValueError, match="k must be"):
        BookAssistant(index, k=0)
    with pytest.raises(TypeError, match="generator"):
        build_book_assistant(index=index, generator=3)
    with pytest.raises(ValueError, match="lexical_weight"):
        GroundedReader(index.embedder.encode, lexical_weight=-1)


def test_answer_metrics():
    assert answer_recall("Run GENAI_DEVICE=cpu make lab.", "GENAI_DEVICE=cpu") == 1.0
    assert answer_recall("I don't know.", "make book") == 0.0
    assert token_f1("make book builds it", "make book") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert token_f1("nothing here", "make book") == 0.0


def test_dev_test_split_is_fixed_per_id_and_out_of_scope_questions_load():
    ids = [f"q{i:02d}" for i in range(40)]
    dev, test = dev_test_split(ids)
    assert sorted(dev + test) == list(range(40)) and dev and test
    dev2, _ = dev_test_split(ids + ["q99"])                 # adding a question moves no other one
    assert [i for i in dev2 if i < 40] == dev
    oos = load_out_of_scope()
    assert len(oos) >= 20 and len({i for i, _ in oos}) == len(oos)
