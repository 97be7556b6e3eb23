"""Ask the book: retrieval, a grounded reader, citations and abstention behind one call (chapter 07).

::

    from genai_helpers.rag import build_book_assistant
    assistant = build_book_assistant(".")
    reply = assistant.ask("How do I force a chapter to run on the CPU?")
    reply.text        # the answer, each sentence followed by its passage number, like [1]
    reply.citations   # repo-relative paths of the cited passages, best first
    reply.abstained   # True when the book does not answer the question

The pieces:

- **Retrieval**: the book index of :func:`~genai_helpers.rag.retriever.build_book_index` (hybrid
  dense + BM25 search, reranked).
- **Reader**: :class:`GroundedReader` splits the retrieved passages into answer *units* (a
  sentence, or a sentence ending in ``:`` together with the code block it introduces), scores
  each against the question and returns the best ones with ``[n]`` citations. The score blends
  the embedding cosine with the share of the question's content words (weighted by rarity) that
  the unit contains: the embedding hears paraphrases, the word share hears exact names such as
  ``GENAI_DEVICE`` that a small embedding model blurs. The reader is *extractive*: it quotes the
  book and writes no new words, so every sentence it gives is supported by the passage it cites.
- **Abstention**: when the best unit scores below ``min_score`` the assistant replies
  ``"I don't know from the book."`` with no citations. Chapter 07 tunes the weights
  and the threshold on the dev half of the labelled questions (plus out-of-scope questions) and
  reports the test half.
- **A generator instead of the reader**: any callable ``generator(question, hits) -> Answer``,
  ``generator="book-lm"`` for the book LM fine-tuned as a grounded reader
  (:class:`~genai_helpers.rag.lm_reader.BookLMReader`, offline, shipped weights), or
  :class:`~genai_helpers.rag.generation.TransformersGenerator` (an instruction model with its chat
  template, on Colab or a GPU). Chapter 07 keeps as the default the answerer that scores better on
  the dev questions.
"""
from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .evaluation import sentences
from .generation import ABSTAIN, Answer
from .indexes import bm25_tokens

__all__ = ["DEFAULT_ASSISTANT_METHOD", "STOP_WORDS", "content_words", "answer_units", "GroundedReader", "BookAnswer", "BookAssistant",
           "build_book_assistant", "answer_recall", "token_f1"]

#: Question words that carry no content, beyond the stop words :func:`~genai_helpers.rag.indexes.bm25_tokens`
#: already drops.
STOP_WORDS = frozenset("""a an the of to in on at for from by with and or but not no is are was were be been being
do does did done can could should would will may might must shall have has had having it its this that these those
there here what which who whom whose how why when where i you we they he she them me my your our their us one
as if than then so such into onto about over under out up down also only just very more most much many some any
each every all both either neither other another""".split())

#: The retrieval method :func:`build_book_assistant` asks the index for; ``None`` means the index's
#: own method (for :func:`~genai_helpers.rag.retriever.build_book_index`, ``"hybrid_rerank"``).
#: Chapter 07 compares it with the trained cross-encoder (``"hybrid_ce"``) on the dev questions.
DEFAULT_ASSISTANT_METHOD: str | None = None

_HEADING = re.compile(r"^\s*#+\s")
_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.S)


def content_words(text: str) -> list[str]:
    """The BM25 tokens of ``text`` (lower-cased words, plural ``s`` stripped, see
    :func:`~genai_helpers.rag.indexes.bm25_tokens`) without :data:`STOP_WORDS` and one-letter words."""
    return [w for w in bm25_tokens(text) if w not in STOP_WORDS and len(w) > 1]


def _clean_unit(text: str) -> str:
    text = _CODE_BLOCK.sub(lambda m: " ".join(m.group(1).split()), text)       # a code block -> its one line
    text = re.sub(r"^\s*(?:[-*:]|\d+\.)\s+", "", text)                          # bullets, definition colons
    text = re.sub(r"[*]", "", text).replace("`", "")
    text = re.sub(r"\s+:\s+", ": ", text)
    return " ".join(text.split())


def answer_units(passage: str) -> list[str]:
    """The candidate answers in a passage: its sentences (headings and table rows left out, since
    they name a topic rather than say something about it). A sentence that ends in ``:`` is joined
    to the unit after it (the command or list it introduces), and a definition-list term to its
    definition (``make book`` + ``: Builds the static website`` -> ``make book: Builds ...``)."""
    if not isinstance(passage, str):
        raise TypeError(f"passage must be a str, got {type(passage).__name__}")
    protected = _CODE_BLOCK.sub(lambda m: "```\n" + m.group(1).replace("\n\n", "\n") + "```", passage)
    raw = sentences(protected)
    merged: list[str] = []
    for part in raw:
        if _HEADING.match(part) or part.lstrip().startswith("|"):
            merged.append("")                    # a boundary: nothing joins across a heading
            continue
        prev = merged[-1] if merged else ""
        if prev and (prev.rstrip().endswith(":") or
                     (part.lstrip().startswith(": ") and len(prev.split()) <= 8 and not prev.rstrip().endswith("."))):
            merged[-1] = prev.rstrip() + " " + part.lstrip()
            continue
        merged.append(part)
    units = [_clean_unit(m) for m in merged if m]
    return [u for u in units if len(u.split()) >= 3]


@dataclass
class BookAnswer:
    """What :meth:`BookAssistant.ask` returns."""

    question: str
    text: str
    #: Repo-relative paths of the cited passages, best first, each once.
    citations: list[str]
    abstained: bool
    #: The reader's best unit score (the number compared with the abstention threshold).
    score: float = 0.0
    #: The retrieved passages, in the order the answer numbers them.
    passages: list = field(default_factory=list)
    generator: str = ""


class GroundedReader:
    """Extractive, cited reader (see the module docstring).

    ``score(unit) = cosine(question, unit) + lexical_weight * share`` where ``share`` is the
    rarity-weighted share of the question's content words found in the unit (0..1). Returns up to
    ``max_units`` units: the best, plus any other within ``keep_within`` of it, best first; abstains
    when the best scores below ``min_score``.
    """

    name = "grounded reader (extractive: quotes and cites the book, writes no new words)"

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray], *, lexical_weight: float = 0.5,
                 min_score: float = 0.45, max_units: int = 2, keep_within: float = 0.05,
                 idf: Callable[[str], float] | None = None):
        if not 0 <= lexical_weight <= 5:
            raise ValueError(f"lexical_weight must be in [0, 5], got {lexical_weight}")
        if not -1 <= min_score <= 6:
            raise ValueError(f"min_score must be in [-1, 6], got {min_score}")
        if not isinstance(max_units, int) or isinstance(max_units, bool) or not 1 <= max_units <= 10:
            raise ValueError(f"max_units must be an int in [1, 10], got {max_units!r}")
        if not 0 <= keep_within <= 1:
            raise ValueError(f"keep_within must be in [0, 1], got {keep_within}")
        self.embed, self.lexical_weight, self.min_score = embed, lexical_weight, min_score
        self.max_units, self.keep_within = max_units, keep_within
        self.idf = idf or (lambda w: 1.0)

    def share(self, question_words: Sequence[str], unit: str) -> float:
        """Rarity-weighted share of ``question_words`` that occur in ``unit`` (0 when none given)."""
        words = set(question_words)
        if not words:
            return 0.0
        have = set(content_words(unit))
        total = sum(self.idf(w) for w in words)
        return sum(self.idf(w) for w in words if w in have) / total if total > 0 else 0.0

    def components(self, question: str, hits: Sequence) -> tuple[list[tuple[int, str]], np.ndarray, np.ndarray, np.ndarray]:
        """``(units, cos, lex, with_previous)``: every candidate unit as ``(passage number from 1,
        text)``; its embedding cosine with the question, taken as the better of the unit alone and
        the unit read after the previous one (so "To override it, set X" is heard with what "it"
        is); the rarity-weighted share of question words it holds (over the same span); and
        whether the previous unit belongs to the answer (bool array)."""
        units = [(n, u, i) for n, h in enumerate(hits, 1) if not getattr(h, "flags", ())
                 for i, u in enumerate(answer_units(h.text))]
        if not units:
            return [], np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool)
        pairs = [(units[j - 1][1] + " " + u) if i > 0 else u for j, (n, u, i) in enumerate(units)]
        vecs = self.embed([question] + [u for _, u, _ in units] + pairs)
        m = len(units)
        alone, paired = vecs[1:m + 1] @ vecs[0], vecs[m + 1:] @ vecs[0]
        has_prev = np.array([i > 0 for _, _, i in units])
        with_prev = has_prev & (paired > alone + 0.05)
        cos = np.where(with_prev, paired, alone)
        qwords = content_words(question)
        lex = np.array([self.share(qwords, p if w else u) for (_, u, _), p, w in zip(units, pairs, with_prev)])
        return [(n, p if w else u) for (n, u, _), p, w in zip(units, pairs, with_prev)], cos, lex, with_prev

    def scores(self, question: str, hits: Sequence) -> tuple[list[tuple[int, str]], np.ndarray]:
        """``(units, scores)``: every candidate unit as ``(passage number from 1, text)`` (with its
        previous unit when that reads better) and ``cos + lexical_weight * lex``."""
        units, cos, lex, _ = self.components(question, hits)
        return units, cos + self.lexical_weight * lex

    def __call__(self, question: str, hits: Sequence) -> Answer:
        units, scores = self.scores(question, hits)
        return self.answer_from(units, scores, hits)

    def answer_from(self, units: Sequence[tuple[int, str]], scores: np.ndarray, hits: Sequence) -> Answer:
        """The answer for precomputed ``units`` and ``scores`` (see :meth:`scores`)."""
        if not len(units):
            return Answer(ABSTAIN, abstained=True, generator=self.name)
        best = float(scores.max())
        if best < self.min_score:
            return Answer(ABSTAIN, abstained=True, support=best, generator=self.name)
        order = [int(i) for i in np.argsort(-scores, kind="stable")]
        chosen, seen = [], set()
        for i in order:
            if len(chosen) == self.max_units or scores[i] < best - self.keep_within:
                break
            key = units[i][1].lower()
            if any(key in other or other in key for other in seen):   # same sentence, overlapping chunks
                continue
            seen.add(key)
            chosen.append(i)
        text = " ".join(f"{units[i][1].rstrip('.:')}. [{units[i][0]}]" for i in chosen)
        cites = {units[i][0]: hits[units[i][0] - 1].source for i in chosen}
        return Answer(text, cites, False, best, self.name)


def _ordered_sources(answer: Answer) -> list[str]:
    """Cited sources in the order the answer first cites them (best unit first), each once."""
    order = [int(n) for n in re.findall(r"\[(\d+)\]", answer.text)]
    out: list[str] = []
    for n in order + sorted(answer.citations):
        src = answer.citations.get(n)
        if src is not None and src not in out:
            out.append(src)
    return out


class BookAssistant:
    """``ask(question)`` -> :class:`BookAnswer`: retrieve ``k`` passages, read, cite or abstain.

    ``answerer`` is any ``callable(question, hits) -> Answer`` (default: a :class:`GroundedReader`
    on the index's embedder and BM25 statistics). ``max_question_chars`` bounds the input.
    """

    def __init__(self, index, answerer: Callable | None = None, *, k: int = 4, method: str | None = None,
                 max_question_chars: int = 2000, **reader_options):
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 20:
            raise ValueError(f"k must be an int in [1, 20], got {k!r}")
        if not isinstance(max_question_chars, int) or max_question_chars < 1:
            raise ValueError(f"max_question_chars must be a positive int, got {max_question_chars!r}")
        self.index, self.k, self.method, self.max_question_chars = index, k, method, max_question_chars
        if answerer is None:
            answerer = GroundedReader(index.embedder.encode, idf=_idf_from_index(index), **reader_options)
        elif reader_options:
            raise TypeError(f"reader options {sorted(reader_options)} apply only to the default reader")
        self.answerer = answerer

    def retrieve(self, question: str) -> list:
        return self.index.search(question, self.k, method=self.method)

    def ask(self, question: str) -> BookAnswer:
        if not isinstance(question, str):
            raise TypeError(f"question must be a str, got {type(question).__name__}")
        if not question.strip():
            raise ValueError("question must be a non-empty string")
        if len(question) > self.max_question_chars:
            raise ValueError(f"question must be at most {self.max_question_chars} characters, got {len(question)}")
        hits = self.retrieve(question)
        ans = self.answerer(question, hits)
        cites = [] if ans.abstained else _ordered_sources(ans)
        return BookAnswer(question, ans.text, cites, bool(ans.abstained), float(ans.support), list(hits),
                          ans.generator or getattr(self.answerer, "name", type(self.answerer).__name__))

    __call__ = ask


def _idf_from_index(index) -> Callable[[str], float]:
    """Inverse document frequency of a BM25 token over the index's chunks."""
    df: Counter = Counter()
    for toks in index.bm25.tokens:
        df.update(set(toks))
    n = len(index.bm25.tokens)
    return lambda w: math.log(1 + n / (1 + df.get(w, 0)))


def build_book_assistant(root: str | os.PathLike = ".", *, index=None, embedder=None, generator=None,
                         k: int = 4, method: str | None = DEFAULT_ASSISTANT_METHOD, **reader_options) -> BookAssistant:
    """The book assistant over the repository at ``root``.

    ``index``: a prebuilt :class:`~genai_helpers.rag.retriever.RAGIndex` (else one is built, about a
    minute on two CPU cores). ``generator``: ``None`` for the offline :class:`GroundedReader`,
    ``"book-lm"`` for the fine-tuned book LM reader (``"book-lm-untrained"``: the same prompt, no
    fine-tuning), a Hugging Face model name for
    :class:`~genai_helpers.rag.generation.TransformersGenerator`, or any
    ``callable(question, hits) -> Answer``. ``method``: the retrieval method (one of
    ``genai_helpers.rag.retriever.METHODS``; ``None``: the index's own). ``reader_options`` go to
    :class:`GroundedReader`.
    """
    if method is not None:
        from .retriever import METHODS
        if method not in METHODS:
            raise ValueError(f"method must be None or one of {METHODS}, got {method!r}")
    if index is None:
        from .retriever import build_book_index

        index = build_book_index(root, embedder)
    if isinstance(generator, str):
        from .generation import load_generator

        generator = load_generator(generator, index.embedder.encode)
    elif generator is not None and not callable(generator):
        raise TypeError(f"generator must be None, a model name or a callable(question, hits), got {type(generator).__name__}")
    return BookAssistant(index, generator, k=k, method=method, **reader_options)


# ---------------------------------------------------------------------------------------------
# Answer metrics against short gold answers

def answer_recall(answer: str, gold: str) -> float:
    """Share of the gold answer's content words (see :func:`content_words`) that the answer
    contains: 1.0 when every key word of the gold answer is there. 0 for an empty gold answer."""
    g = set(content_words(gold))
    if not g:
        return 0.0
    return len(g & set(content_words(answer))) / len(g)


def token_f1(answer: str, gold: str) -> float:
    """SQuAD-style token F1 between the content words of ``answer`` and ``gold``."""
    a, g = Counter(content_words(answer)), Counter(content_words(gold))
    common = sum((a & g).values())
    if common == 0:
        return 0.0
    p, r = common / sum(a.values()), common / sum(g.values())
    return 2 * p * r / (p + r)
