"""Evaluating retrieval and generation on the book's labelled question set (chapter 07).

The question set (``book_questions.json`` beside this file) pairs each question with the
repo-relative ``sources`` that answer it and an ``evidence`` phrase from the first source.
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
- ``recall``       — share of a question's relevant sources that appear in the top ``k``.

The metric functions are those of :mod:`genai_helpers.metrics.ranking`.
Generation is scored by :func:`faithfulness` (share of answer sentences supported by the
retrieved passages) and :func:`answer_relevance` (cosine of answer and question embeddings).
"""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..metrics import dcg_at_k, mean_reciprocal_rank, ndcg_at_k, precision_at_k, recall_at_k

__all__ = ["QUESTIONS_PATH", "Question", "normalise", "load_questions", "load_out_of_scope", "dev_test_split", "grade", "RetrievalReport",
           "evaluate_retrieval", "sentences", "faithfulness", "answer_relevance"]

QUESTIONS_PATH = Path(__file__).with_name("book_questions.json")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    sources: tuple[str, ...]
    evidence: str
    answer: str


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
        question = Question(q["id"], q["question"], tuple(q["sources"]), q["evidence"], q["answer"])
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


def grade(question: Question, source: str, text: str) -> int:
    """2 if ``source`` is relevant and ``text`` holds the evidence phrase, 1 if only the source
    is relevant, 0 otherwise."""
    if source not in question.sources:
        return 0
    return 2 if normalise(question.evidence) in normalise(text) else 1


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

    def row(self) -> dict[str, float]:
        return {f"hit@{self.k}": self.hit_rate, f"evidence@{self.k}": self.evidence_hit, "MRR": self.mrr,
                f"nDCG@{self.k}": self.ndcg, f"P@{self.k}": self.precision, f"R@{self.k}": self.recall}


def evaluate_retrieval(search: Callable[[str, int], Sequence], questions: Sequence[Question], k: int = 5, *,
                       corpus: Sequence[tuple[str, str]] | None = None) -> RetrievalReport:
    """Score ``search(question, k) -> hits`` (each hit with ``.source`` and ``.text``) on
    ``questions`` at cut-off ``k`` (see the module docstring). ``corpus`` — ``(source, text)`` of
    every chunk the search can return — gives nDCG its ideal ranking; without it the ideal is
    taken from the retrieved list only."""
    if not questions:
        raise ValueError("questions must hold at least one question")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    rankings, relevant, ndcgs, precisions, recalls, ev_hits, first = [], [], [], [], [], [], {}
    for q in questions:
        hits = list(search(q.question, k))[:k]
        sources = [h.source for h in hits]
        grades = [grade(q, h.source, h.text) for h in hits]
        rel = set(q.sources)
        rankings.append(sources)
        relevant.append(rel)
        precisions.append(precision_at_k(sources, rel, k))
        recalls.append(recall_at_k(list(dict.fromkeys(sources)), rel, k))
        ev_hits.append(float(2 in grades))
        if corpus is not None:          # ideal ranking: the best grades anywhere in the corpus
            ideal = dcg_at_k(sorted((grade(q, s, t) for s, t in corpus), reverse=True)[:k] or [0], k)
            ndcgs.append(dcg_at_k(grades or [0], k) / ideal if ideal > 0 else 0.0)
        else:
            ndcgs.append(ndcg_at_k(grades or [0], k))
        first[q.id] = next((i for i, s in enumerate(sources, 1) if s in rel), 0)
    return RetrievalReport(
        k=k,
        hit_rate=float(np.mean([r > 0 for r in first.values()])),
        evidence_hit=float(np.mean(ev_hits)),
        mrr=mean_reciprocal_rank(rankings, relevant),
        ndcg=float(np.mean(ndcgs)),
        precision=float(np.mean(precisions)),
        recall=float(np.mean(recalls)),
        first_rank=first,
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


def answer_relevance(question: str, answer: str, embed: Callable[[Sequence[str]], np.ndarray]) -> float:
    """Cosine similarity between the question and the answer embeddings, in [-1, 1] (0 if the answer is empty)."""
    answer = re.sub(r"\s*\[\d+\]", "", answer).strip()
    if not answer:
        return 0.0
    v = embed([question, answer])
    return float(v[0] @ v[1])
