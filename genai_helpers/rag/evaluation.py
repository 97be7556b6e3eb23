"""Evaluating retrieval and generation on the book's labelled question set (chapter 07).

The question set (``book_questions.json`` beside this file) pairs each question with the
repo-relative ``sources`` that answer it, an ``evidence`` phrase from the first source, a gold
``answer`` and a ``paraphrase``: the question in a reader's own words, sharing few content words
with the evidence (so a retriever that only matches the labeller's wording is found out).
:func:`load_questions` drops — and reports — questions whose first source is absent from the
checkout (a placeholder page replaced by its chapter, say) or whose evidence phrase is no
longer in it (the page was rewritten), so the metrics never count a question the corpus cannot
answer.

Relevance of a retrieved chunk to a question is graded like the worked example of chapter 03:
2 = from a relevant source *and* containing the evidence phrase, 1 = from a relevant source,
0 = otherwise. :func:`evaluate_retrieval` reports, for a search function and a cut-off ``k``:

- ``hit_rate``     — share of questions with a relevant-source chunk in the top ``k``;
- ``evidence_hit`` — the stricter version: a top-``k`` chunk containing the evidence phrase;
- ``mrr``          — mean reciprocal rank of the first relevant-source chunk;
- ``ndcg``         — nDCG@k with the graded relevance above (the ideal ranking is taken over
  every chunk of the index, so an answer missed entirely lowers it);
- ``precision``    — share of the top-``k`` chunks that come from a relevant source;
- ``recall``       — share of a question's relevant sources that appear in the top ``k``;
- ``context_precision`` — RAGAS-style context precision@k: the mean, over the ranks ``i`` that
  hold a relevant chunk (grade >= 1), of the precision of the top ``i`` (0 when none is relevant),
  so relevant chunks near the top count more;
- ``context_recall`` — does the top-``k`` context contain the evidence (a grade-2 chunk)? This is
  ``evidence_hit`` by another name, the RAGAS term for it.

``per_question`` keeps each question's values (``hit``, ``rr``, ``ndcg``, ``context_precision``,
``context_recall``) for confidence intervals. :func:`label_problems` lists stale labels (a unit
test keeps that list empty).

The metric functions are those of :mod:`genai_helpers.metrics.ranking`.
Generation is scored by :func:`faithfulness` (share of answer sentences supported by the
retrieved passages), :func:`claim_support` (each cited claim checked against the passage it
cites), :func:`cited_grades` (are the cited passages relevant by the labels above: citation
precision) and :func:`answer_relevance` (cosine of answer and question embeddings).
"""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..metrics import dcg_at_k, mean_reciprocal_rank, ndcg_at_k, precision_at_k, recall_at_k

__all__ = ["QUESTIONS_PATH", "Question", "normalise", "load_questions", "label_problems", "load_out_of_scope", "dev_test_split",
           "word_overlap", "grade", "context_precision", "RetrievalReport", "evaluate_retrieval", "sentences", "faithfulness",
           "claims", "claim_support", "cited_grades", "answer_relevance"]

QUESTIONS_PATH = Path(__file__).with_name("book_questions.json")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    sources: tuple[str, ...]
    evidence: str
    answer: str
    #: The question reworded by hand to avoid the evidence's words ("" when none is given).
    paraphrase: str = ""


def normalise(text: str) -> str:
    """Lower case, Markdown/LaTeX marks (`` ` * $ _ \\``) removed, whitespace collapsed."""
    text = re.sub(r"[`*$\\]", "", text.lower())
    return " ".join(text.split())


def load_questions(root: str | Path = ".", path: str | Path | None = None) -> tuple[list[Question], list[tuple[str, str]]]:
    """``(questions, skipped)``: the questions whose first source exists under ``root`` and still
    contains the evidence phrase, and ``(id, reason)`` for those left out (so an edited page
    flags its stale questions instead of silently counting them as misses)."""
    from .ingest import ingest_files

    data = json.loads(Path(path or QUESTIONS_PATH).read_text(encoding="utf-8"))
    kept, skipped, texts = [], [], {}
    for q in data["questions"]:
        question = Question(q["id"], q["question"], tuple(q["sources"]), q["evidence"], q["answer"], q.get("paraphrase", ""))
        first = Path(root) / question.sources[0]
        if not first.is_file():
            skipped.append((question.id, f"source {question.sources[0]} is not in this checkout"))
            continue
        if first not in texts:
            docs = ingest_files([first], root).documents
            texts[first] = normalise(docs[0].text) if docs else ""
        if normalise(question.evidence) not in texts[first]:
            skipped.append((question.id, f"evidence {question.evidence!r} is no longer in {question.sources[0]} (page rewritten?)"))
            continue
        kept.append(question)
    return kept, skipped


def label_problems(root: str | Path = ".", path: str | Path | None = None) -> list[tuple[str, str]]:
    """``(id, reason)`` for every label that no longer matches the book under ``root``: a source
    file missing, an evidence phrase absent from the first source, or a question without a
    paraphrase. Empty when every label is current (``tests/test_rag_labels.py`` checks this)."""
    data = json.loads(Path(path or QUESTIONS_PATH).read_text(encoding="utf-8"))
    _, problems = load_questions(root, path)
    for q in data["questions"]:
        problems += [(q["id"], f"source {s} is not in this checkout") for s in q["sources"][1:]
                     if not (Path(root) / s).is_file()]
        if not q.get("paraphrase", "").strip():
            problems.append((q["id"], "no paraphrase"))
    return problems


def load_out_of_scope(path: str | Path | None = None) -> list[tuple[str, str]]:
    """``[(id, question), ...]``: questions the book does not answer, for tuning and testing abstention."""
    data = json.loads(Path(path or QUESTIONS_PATH).read_text(encoding="utf-8"))
    return [(q["id"], q["question"]) for q in data.get("out_of_scope", [])]


def dev_test_split(ids: Sequence[str]) -> tuple[list[int], list[int]]:
    """Positions of ``ids`` in the dev half and in the test half: a fixed split by a hash of each id
    (CRC-32 parity), so adding a question never moves another one between halves."""
    dev, test = [], []
    for i, name in enumerate(ids):
        (dev if zlib.crc32(str(name).encode("utf-8")) % 2 == 0 else test).append(i)
    return dev, test


def word_overlap(text: str, reference: str) -> float:
    """Share of ``text``'s distinct content words (see :func:`~genai_helpers.rag.assistant.content_words`)
    that also occur in ``reference``; 0 when ``text`` has none. Measures how much a question
    copies the wording of its evidence."""
    from .assistant import content_words

    words = set(content_words(text))
    return len(words & set(content_words(reference))) / len(words) if words else 0.0


def grade(question: Question, source: str, text: str) -> int:
    """2 if ``source`` is relevant and ``text`` holds the evidence phrase, 1 if only the source
    is relevant, 0 otherwise."""
    if source not in question.sources:
        return 0
    return 2 if normalise(question.evidence) in normalise(text) else 1


def context_precision(grades: Sequence[int], k: int) -> float:
    """RAGAS-style context precision@k of a ranked list of relevance ``grades``: the mean of
    precision@i over the ranks ``i <= k`` whose grade is >= 1 (0 when none is). 1.0 when every
    relevant chunk comes before every irrelevant one."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    rel = [g >= 1 for g in list(grades)[:k]]
    if not any(rel):
        return 0.0
    return float(np.mean([np.mean(rel[:i + 1]) for i, r in enumerate(rel) if r]))


@dataclass
class RetrievalReport:
    """Mean metrics over questions, and per question the rank (1-based) of the first
    relevant-source hit (0 = not in the top ``k``)."""

    k: int
    hit_rate: float
    evidence_hit: float
    mrr: float
    ndcg: float
    precision: float
    recall: float
    first_rank: dict[str, int]
    context_precision: float = 0.0
    context_recall: float = 0.0
    #: One array per measure (``hit``, ``rr``, ``ndcg``, ``context_precision``, ``context_recall``),
    #: with one entry per question in the order given.
    per_question: dict[str, np.ndarray] = field(default_factory=dict)

    def row(self) -> dict[str, float]:
        return {f"hit@{self.k}": self.hit_rate, f"evidence@{self.k}": self.evidence_hit, "MRR": self.mrr,
                f"nDCG@{self.k}": self.ndcg, f"P@{self.k}": self.precision, f"R@{self.k}": self.recall}


def evaluate_retrieval(search: Callable[[str, int], Sequence], questions: Sequence[Question], k: int = 5, *,
                       corpus: Sequence[tuple[str, str]] | None = None, paraphrased: bool = False) -> RetrievalReport:
    """Score ``search(question, k) -> hits`` (each hit with ``.source`` and ``.text``) on
    ``questions`` at cut-off ``k`` (see the module docstring). ``corpus`` — ``(source, text)`` of
    every chunk *this* search can return (its own chunking) — gives nDCG its ideal ranking;
    without it the ideal is taken from the retrieved list only. ``paraphrased=True`` asks each
    question's :attr:`Question.paraphrase` instead of its original wording."""
    if not questions:
        raise ValueError("questions must hold at least one question")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if paraphrased and any(not q.paraphrase for q in questions):
        raise ValueError("paraphrased=True needs a paraphrase for every question")
    rankings, relevant, ndcgs, precisions, recalls, ev_hits, first, cps, ranks = [], [], [], [], [], [], {}, [], []
    for q in questions:
        hits = list(search(q.paraphrase if paraphrased else q.question, k))[:k]
        sources = [h.source for h in hits]
        grades = [grade(q, h.source, h.text) for h in hits]
        rel = set(q.sources)
        rankings.append(sources)
        relevant.append(rel)
        precisions.append(precision_at_k(sources, rel, k))
        recalls.append(recall_at_k(list(dict.fromkeys(sources)), rel, k))
        ev_hits.append(float(2 in grades))
        cps.append(context_precision(grades, k))
        if corpus is not None:          # ideal ranking: the best grades anywhere in the corpus
            ideal = dcg_at_k(sorted((grade(q, s, t) for s, t in corpus), reverse=True)[:k] or [0], k)
            ndcgs.append(dcg_at_k(grades or [0], k) / ideal if ideal > 0 else 0.0)
        else:
            ndcgs.append(ndcg_at_k(grades or [0], k))
        ranks.append(next((i for i, s in enumerate(sources, 1) if s in rel), 0))
        first[q.id] = ranks[-1]
    return RetrievalReport(
        k=k,
        hit_rate=float(np.mean([r > 0 for r in ranks])),
        evidence_hit=float(np.mean(ev_hits)),
        mrr=mean_reciprocal_rank(rankings, relevant),
        ndcg=float(np.mean(ndcgs)),
        precision=float(np.mean(precisions)),
        recall=float(np.mean(recalls)),
        first_rank=first,
        context_precision=float(np.mean(cps)),
        context_recall=float(np.mean(ev_hits)),
        per_question={"hit": np.array([float(r > 0) for r in ranks]), "rr": np.array([1.0 / r if r else 0.0 for r in ranks]),
                      "ndcg": np.array(ndcgs), "context_precision": np.array(cps), "context_recall": np.array(ev_hits)},
    )


# ---------------------------------------------------------------------------------------------
# Generation metrics

def sentences(text: str) -> list[str]:
    """Split text into sentences: after ``.``, ``!`` or ``?``, and at blank lines, headings and
    list items; a single line break (hard-wrapped Markdown) does not end a sentence."""
    text = re.sub(r"\n(?=\s*(?:#|[-*] |\d+\. |: |\|))", "\n\n", text.strip())   # structure starts a new unit
    parts = re.split(r"(?<=[.!?])\s+|\n\s*\n", text)
    return [p.strip() for p in parts if len(p.strip().split()) >= 2]


def faithfulness(answer: str, passages: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray], *,
                 threshold: float = 0.75) -> float:
    """Share of the answer's sentences (citation marks ``[n]`` removed) supported by the passages:
    a sentence is supported when its cosine similarity with some passage sentence is at least
    ``threshold`` (in [-1, 1]) or it appears verbatim in a passage. 1.0 for an empty answer
    (nothing claimed). An automated stand-in for the claim-by-claim check of RAGAS."""
    if not -1 <= threshold <= 1:
        raise ValueError(f"threshold must be in [-1, 1], got {threshold}")
    claims = [re.sub(r"\s*\[\d+\]", "", s).strip() for s in sentences(answer)]
    claims = [c for c in claims if c]
    if not claims:
        return 1.0
    support = [s for p in passages for s in sentences(p)] or list(passages)
    if not support:
        return 0.0
    joined = normalise(" ".join(passages))
    vecs = embed(claims + support)
    sims = vecs[:len(claims)] @ vecs[len(claims):].T
    ok = [normalise(c) in joined or sims[i].max() >= threshold for i, c in enumerate(claims)]
    return float(np.mean(ok))


def claims(answer: str) -> list[tuple[str, list[int]]]:
    """The answer's claims as ``(text, cited passage numbers)``: its sentences, each with the
    ``[n]`` marks that close its group (marks removed from the text). Sentences before a group of
    marks share them (``"A. B. [1]"`` cites passage 1 for both); trailing sentences with no mark
    cite nothing."""
    out, pos = [], 0
    for m in re.finditer(r"((?:\s*\[\d+\])+)", answer):
        marks = [int(n) for n in re.findall(r"\d+", m.group(1))]
        out += [(t, marks) for t in (sentences(answer[pos:m.start()]) or [answer[pos:m.start()].strip()]) if t]
        pos = m.end()
    out += [(t, []) for t in (sentences(answer[pos:]) or [answer[pos:].strip()]) if t]
    return out


def claim_support(answer: str, passages: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray] | None = None, *,
                  threshold: float = 0.75) -> list[bool]:
    """Claim-level faithfulness: for each claim of :func:`claims`, is it supported by a passage
    it *cites* (``passages[n - 1]`` for a mark ``[n]``)? Supported when every content word of
    the claim occurs in a cited passage, or (with ``embed``) when its cosine with a sentence of a
    cited passage is at least ``threshold``. A claim citing nothing, or a passage number out of
    range, is unsupported. An extractive reader quotes its passages, so it scores 1 by
    construction; the check has teeth only for a generator that writes its own words."""
    from .assistant import content_words

    if not -1 <= threshold <= 1:
        raise ValueError(f"threshold must be in [-1, 1], got {threshold}")
    out = []
    for text, marks in claims(answer):
        cited = [passages[n - 1] for n in marks if 1 <= n <= len(passages)]
        words = set(content_words(text))
        ok = any(words <= set(content_words(p)) for p in cited)
        if not ok and cited and embed is not None:
            support = [s for p in cited for s in sentences(p)] or cited
            v = embed([text] + support)
            ok = bool((v[1:] @ v[0]).max() >= threshold)
        out.append(ok)
    return out


def cited_grades(question: Question, answer: str, hits: Sequence) -> list[int]:
    """Relevance grade (see :func:`grade`) of each distinct passage the answer cites with
    ``[n]`` (``hits[n - 1]``, each with ``.source`` and ``.text``), in citation order. The share
    of grades >= 1 is the answer's citation precision."""
    seen = list(dict.fromkeys(int(n) for n in re.findall(r"\[(\d+)\]", answer)))
    return [grade(question, hits[n - 1].source, hits[n - 1].text) for n in seen if 1 <= n <= len(hits)]


def answer_relevance(question: str, answer: str, embed: Callable[[Sequence[str]], np.ndarray]) -> float:
    """Cosine similarity between the question and the answer embeddings, in [-1, 1] (0 if the answer is empty)."""
    answer = re.sub(r"\s*\[\d+\]", "", answer).strip()
    if not answer:
        return 0.0
    v = embed([question, answer])
    return float(v[0] @ v[1])
