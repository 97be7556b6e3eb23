"""The labelled question set of chapter 07 and the evaluation functions built on it
(genai_helpers.rag.evaluation): labels stay current, paraphrases avoid the evidence's wording,
context precision, claim-level faithfulness and citation grades."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from genai_helpers.embedders import HashingEmbedder
from genai_helpers.rag.evaluation import (Question, claim_support, claims, cited_grades, context_precision,
                                          evaluate_retrieval, label_problems, load_questions, normalise, word_overlap)

ROOT = Path(__file__).resolve().parents[1]


def test_every_label_matches_the_current_book():
    # A rewritten page must come with new labels: each source exists, each evidence phrase is
    # still in its first source, each question has a paraphrase.
    assert label_problems(ROOT) == []


def test_paraphrases_share_fewer_words_with_the_evidence_than_the_questions_do():
    questions, _ = load_questions(ROOT)
    assert len(questions) >= 60
    for q in questions:
        assert q.paraphrase and normalise(q.paraphrase) != normalise(q.question), q.id
    original = np.mean([word_overlap(q.evidence, q.question) for q in questions])
    paraphrased = np.mean([word_overlap(q.evidence, q.paraphrase) for q in questions])
    assert paraphrased < original / 2, (original, paraphrased)


def test_word_overlap_is_the_share_of_content_words_found():
    assert word_overlap("attention scores", "the scores of attention") == 1.0
    assert word_overlap("attention scores", "the key") == 0.0
    assert word_overlap("the of", "anything") == 0.0            # no content words


def test_context_precision_rewards_relevant_chunks_at_the_top():
    assert context_precision([2, 1, 0, 0, 0], 5) == 1.0
    assert context_precision([0, 0, 0, 0, 1], 5) == pytest.approx(0.2)
    assert context_precision([0, 1, 1], 5) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert context_precision([0, 0, 0, 0, 0, 2], 5) == 0.0      # beyond the cut-off
    with pytest.raises(ValueError, match="k must be"):
        context_precision([1], 0)


Q = Question("t1", "why scale attention scores?", ("a.md",), "keep unit variance", "to keep unit variance",
             "what goes wrong without the division?")
A_TEXT = "We scale the scores to keep unit variance whatever the width."
B_TEXT = "Cats sleep most of the day."
HITS = [SimpleNamespace(source="b.md", text=B_TEXT), SimpleNamespace(source="a.md", text=A_TEXT),
        SimpleNamespace(source="a.md", text="More about attention.")]


def test_evaluate_retrieval_keeps_per_question_values_and_can_ask_the_paraphrase():
    asked = []

    def search(query, k):
        asked.append(query)
        return HITS[:k]

    r = evaluate_retrieval(search, [Q], k=3, corpus=[(h.source, h.text) for h in HITS])
    assert asked == [Q.question]
    assert r.first_rank == {"t1": 2} and r.per_question["rr"].tolist() == [0.5]
    assert r.context_recall == r.evidence_hit == 1.0
    assert r.context_precision == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r.per_question["ndcg"][0] == pytest.approx(r.ndcg)
    evaluate_retrieval(search, [Q], k=3, paraphrased=True)
    assert asked[-1] == Q.paraphrase
    with pytest.raises(ValueError, match="paraphrase"):
        evaluate_retrieval(search, [Question("t2", "q?", ("a.md",), "x", "y")], k=3, paraphrased=True)


def test_ndcg_ideal_comes_from_the_corpus_given():
    # The same retrieved list scores lower when the corpus holds a better chunk it missed.
    search = lambda q, k: HITS[2:3]                                  # grade 1 only
    own = evaluate_retrieval(search, [Q], k=3, corpus=[(HITS[2].source, HITS[2].text)])
    richer = evaluate_retrieval(search, [Q], k=3, corpus=[(h.source, h.text) for h in HITS])
    assert own.ndcg == 1.0 and richer.ndcg < 1.0


def test_claims_carry_the_marks_that_close_their_group():
    assert claims("A is b. C is d. [1] E is f. [2][3] Tail here.") == [
        ("A is b.", [1]), ("C is d.", [1]), ("E is f.", [2, 3]), ("Tail here.", [])]


def test_claim_support_checks_each_claim_against_the_passage_it_cites():
    passages = [B_TEXT, A_TEXT]
    assert claim_support("We scale the scores to keep unit variance. [2]", passages) == [True]
    assert claim_support("We scale the scores to keep unit variance. [1]", passages) == [False]   # wrong citation
    assert claim_support("Scores keep unit variance. Cats fly. [2]", passages) == [True, False]
    assert claim_support("Unit variance is kept. [9]", passages) == [False]                  # out of range
    emb = HashingEmbedder(512).encode
    assert claim_support("the scores keep unit variance whatever width [2]", passages, emb, threshold=0.5) == [True]
    with pytest.raises(ValueError, match="threshold"):
        claim_support("x [1]", passages, threshold=2)


def test_cited_grades_grade_each_cited_passage_once():
    assert cited_grades(Q, "Cats. [1] Scale. [2] Again. [2]", HITS) == [0, 2]
    assert cited_grades(Q, "More. [3] Out of range. [7]", HITS) == [1]
    assert cited_grades(Q, "I don't know from the book.", HITS) == []
