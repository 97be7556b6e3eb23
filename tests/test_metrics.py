"""Metrics: hand-computed values, and agreement with the reference libraries (sacrebleu,
rouge-score, NLTK's METEOR, pycocoevalcap's CIDEr-D, scikit-learn, scipy)."""
import math

import numpy as np
import pytest
import torch

from genai_helpers import metrics as M
from genai_helpers.metrics.meteor import DEBIAN_WORDNET_DIR

PAIRS = [  # (hypothesis, [references]) with punctuation, numbers, case and paraphrase
    ("The cat sat on the mat.", ["The cat is sitting on the mat.", "There is a cat on the mat."]),
    ("A quick brown fox jumps over the lazy dog!", ["The quick brown fox jumped over the lazy dog."]),
    ("It's 3.5 degrees outside, isn't it?", ["It is 3.5 degrees outside - isn't it?"]),
    ("The committee approved the new budget on Friday.", ["On Friday the committee passed the new budget."]),
    ("Large models need a lot of memory to train.", ["Training big models requires much memory."]),
    ("hello", ["hello there"]),
]
HYPS = [h for h, _ in PAIRS]
REFS = [r for _, r in PAIRS]


# --------------------------------------------------------------------------------------- perplexity

def test_perplexity_of_uniform_logits_is_the_vocabulary_size():
    assert math.isclose(M.perplexity(torch.zeros(3, 5, 17), torch.randint(0, 17, (3, 5))), 17, rel_tol=1e-6)


def test_perplexity_is_exp_of_mean_cross_entropy_and_skips_ignored_positions():
    logits = torch.randn(2, 4, 9, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[1, 2, 3, -100], [4, 5, -100, -100]])
    keep = targets != -100
    nll = -torch.log_softmax(logits, -1)[keep].gather(-1, targets[keep][:, None]).mean()
    assert math.isclose(M.perplexity(logits, targets), math.exp(nll.item()), rel_tol=1e-6)
    with pytest.raises(ValueError, match="targets"):
        M.perplexity(logits, targets[:, :3])
    with pytest.raises(ValueError, match="ignore_index"):
        M.perplexity(logits, torch.full((2, 4), -100))


# -------------------------------------------------------------------------------------------- BLEU

def test_bleu_equals_sacrebleu_corpus_bleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    max_refs = max(len(r) for r in REFS)
    streams = [[r[i] if i < len(r) else None for r in REFS] for i in range(max_refs)]
    ref = sacrebleu.corpus_bleu(HYPS, streams)
    ours = M.bleu(HYPS, REFS)
    assert abs(ours.score - ref.score) < 0.5
    assert math.isclose(ours.score, ref.score, rel_tol=1e-9)
    assert np.allclose(ours.precisions, ref.precisions) and math.isclose(ours.brevity_penalty, ref.bp)
    assert (ours.hyp_len, ours.ref_len) == (ref.sys_len, ref.ref_len)
    single = [r[0] for r in REFS]
    assert math.isclose(M.bleu(HYPS, single).score, sacrebleu.corpus_bleu(HYPS, [single]).score, rel_tol=1e-9)
    lower = sacrebleu.corpus_bleu(HYPS, [single], lowercase=True).score
    assert math.isclose(M.bleu(HYPS, single, lowercase=True).score, lower, rel_tol=1e-9)


def test_bleu_hand_computed():
    # 4 hypothesis tokens, all unigrams and bigrams right, trigrams 1 of 2, 4-gram 0 of 1 (smoothed to 1/2).
    res = M.bleu(["a b c d"], ["a b c e"])
    assert res.precisions == [75.0, 200 / 3, 50.0, 50.0]
    assert math.isclose(res.score, (0.75 * (2 / 3) * 0.5 * 0.5) ** 0.25 * 100)
    assert M.bleu(["a b c d"], ["a b c d"]).score == pytest.approx(100.0)
    assert M.bleu(["x y"], ["a b c d"]).score == 0.0
    short = M.bleu(["a b"], ["a b c d"])                      # brevity penalty exp(1 - 4/2)
    assert math.isclose(short.brevity_penalty, math.exp(-1))


def test_tokenize_13a_splits_punctuation_but_not_decimals():
    assert M.tokenize_13a("It's 3.5 degrees, isn't it?") == ["It's", "3.5", "degrees", ",", "isn't", "it", "?"]


def test_bleu_validates_arguments():
    with pytest.raises(ValueError, match="hypotheses"):
        M.bleu([], [])
    with pytest.raises(ValueError, match="same length"):
        M.bleu(["a"], ["a", "b"])
    with pytest.raises(TypeError, match="references"):
        M.bleu(["a"], [[3]])
    with pytest.raises(ValueError, match="max_order"):
        M.bleu(["a"], ["a"], max_order=0)


# ------------------------------------------------------------------------------------------- ROUGE

@pytest.mark.parametrize("stem", [False, True])
def test_rouge_equals_rouge_score(stem):
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rouge3", "rougeL"], use_stemmer=stem)
    for hyp, refs in PAIRS:
        ref = scorer.score(refs[0], hyp)
        ours = M.rouge(hyp, refs[0], ["rouge1", "rouge2", "rouge3", "rougeL"], use_stemmer=stem)
        for kind in ref:
            assert math.isclose(ours[kind].precision, ref[kind].precision, abs_tol=1e-12)
            assert math.isclose(ours[kind].recall, ref[kind].recall, abs_tol=1e-12)
            assert math.isclose(ours[kind].fmeasure, ref[kind].fmeasure, abs_tol=1e-12)


def test_rouge_hand_computed():
    r = M.rouge("the cat was found under the bed", "the cat was under the bed")
    assert (r["rouge1"].precision, r["rouge1"].recall) == (6 / 7, 1.0)
    assert (r["rouge2"].precision, r["rouge2"].recall) == (4 / 6, 4 / 5)
    assert r["rougeL"].recall == 1.0 and M.lcs_length("abcbdab", "bdcaba") == 4
    with pytest.raises(ValueError, match="rouge_types"):
        M.rouge("a", "a", ["rougeX"])
    with pytest.raises(TypeError, match="hypothesis"):
        M.rouge(3, "a")


# ------------------------------------------------------------------------------------------ METEOR

class NoSynonyms:
    """A WordNet stand-in with no synsets, to run NLTK's METEOR on exact and stem matches only."""

    def synsets(self, word):
        return []


def test_meteor_hand_computed_exact_matches():
    # 6 of 6 hypothesis words match 6 of 7 reference words in 2 chunks:
    # P = 1, R = 6/7, F = PR / (0.9 P + 0.1 R), penalty = 0.5 (2/6)^3.
    hyp, ref = "the cat sat on the mat", "the cat sat quietly on the mat"
    p, r = 1.0, 6 / 7
    expected = p * r / (0.9 * p + 0.1 * r) * (1 - 0.5 * (2 / 6) ** 3)
    assert math.isclose(M.meteor(hyp, ref, use_synonyms=False), expected, rel_tol=1e-12)
    assert M.meteor("the cat", "the cat", use_synonyms=False) == pytest.approx(1 * (1 - 0.5 * (1 / 2) ** 3))
    assert M.meteor("dog", "cat", use_synonyms=False) == 0.0


def test_meteor_stem_matches_count_without_wordnet():
    alignment = M.meteor_alignment("the cats were running", "the cat was running", use_synonyms=False)
    assert [s for *_, s in alignment] == ["exact", "stem", "exact"]      # cats~cat; were/was not a stem pair


def test_meteor_equals_nltk_without_synonyms():
    meteor_score = pytest.importorskip("nltk.translate.meteor_score")
    for hyp, refs in PAIRS:
        h, rs = hyp.lower().split(), [r.lower().split() for r in refs]
        ref = meteor_score.meteor_score(rs, h, wordnet=NoSynonyms())
        assert math.isclose(M.meteor(h, rs, use_synonyms=False), ref, rel_tol=1e-12)


@pytest.fixture(scope="module")
def wordnet_dir(tmp_path_factory):
    if not (DEBIAN_WORDNET_DIR / "data.noun").is_file():
        pytest.skip("Debian wordnet-base / wordnet-sense-index not installed (CI installs them)")
    return M.setup_wordnet(tmp_path_factory.mktemp("nltk_data"))


def test_setup_wordnet_copies_files_and_writes_lexnames(wordnet_dir):
    assert (wordnet_dir / "lexnames").read_text().splitlines()[3] == "03\tnoun.Tops\t1"
    assert not (wordnet_dir / "data.noun").is_symlink()
    assert M.load_wordnet() is not None and "synonym" in M.wordnet_status()


def test_meteor_with_wordnet_equals_nltk_and_uses_synonyms(wordnet_dir):
    from nltk.corpus import wordnet
    from nltk.translate.meteor_score import meteor_score

    for hyp, refs in PAIRS:
        h, rs = hyp.lower().split(), [r.lower().split() for r in refs]
        assert math.isclose(M.meteor(h, rs, use_synonyms=True), meteor_score(rs, h, wordnet=wordnet), rel_tol=1e-12)
    stages = [s for *_, s in M.meteor_alignment("my car broke down", "my auto broke down", use_synonyms=True)]
    assert stages == ["exact", "synonym", "exact", "exact"]
    assert M.meteor("my car broke down", "my auto broke down") > M.meteor("my car broke down", "my auto broke down",
                                                                          use_synonyms=False)


def test_setup_wordnet_names_the_debian_packages_when_files_are_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        M.setup_wordnet(tmp_path / "data", source=tmp_path)


def test_meteor_validates_arguments():
    with pytest.raises(ValueError, match="alpha"):
        M.meteor("a", "a", alpha=2.0)
    with pytest.raises(ValueError, match="references"):
        M.meteor("a", [])
    with pytest.raises(TypeError, match="use_synonyms"):
        M.meteor("a", "a", use_synonyms="yes")


# ------------------------------------------------------------------------------------------- CIDEr

def test_cider_equals_pycocoevalcap():
    cider_mod = pytest.importorskip("pycocoevalcap.cider.cider")
    hyps = [" ".join(M.tokenize_rouge(h)) for h in HYPS]
    refs = [[" ".join(M.tokenize_rouge(r)) for r in rs] for rs in REFS]
    ref_mean, ref_each = cider_mod.Cider().compute_score({i: r for i, r in enumerate(refs)},
                                                         {i: [h] for i, h in enumerate(hyps)})
    mean, each = M.cider(hyps, refs)
    assert math.isclose(mean, ref_mean, rel_tol=1e-9) and np.allclose(each, ref_each)


def test_cider_rewards_the_matching_caption_over_a_generic_one():
    refs = [["a dog runs on the beach", "a dog running along the sea"], ["a man rides a red bike", "a cyclist on a red bike"],
            ["two cats sleep on a sofa", "cats sleeping on the couch"]]
    good = M.cider(["a dog runs along the beach", "a man on a red bike", "two cats sleeping on a sofa"], refs)[0]
    generic = M.cider(["a picture of a thing", "a picture of a thing", "a picture of a thing"], refs)[0]
    assert good > 1.0 > 0.1 > generic
    with pytest.raises(ValueError, match="sigma"):
        M.cider(["a"], [["a"]], sigma=0)


# ------------------------------------------------------------------------- distinct-n, ExactMatch@N

def test_distinct_n_counts_unique_ngrams():
    assert M.distinct_n(["a b a b", "a b c"], 1) == 3 / 7
    assert M.distinct_n(["a b a b", "a b c"], 2) == 3 / 5        # ab, ba, ab | ab, bc
    assert M.distinct_n([["x", "y", "z"]], 2) == 1.0
    assert M.distinct_n([[5, 6, 5, 6]], 2) == 2 / 3                 # token ids work too
    assert M.distinct_n(["a"], 2) == 0.0
    with pytest.raises(ValueError, match="n"):
        M.distinct_n(["a b"], 0)
    with pytest.raises(ValueError, match="texts"):
        M.distinct_n([], 1)


def test_exact_match_at_n_compares_the_first_n_words():
    preds = ["see you on monday then", "see you tuesday", "thanks a lot"]
    refs = ["see you on monday at noon", "see you on tuesday", "thanks"]
    assert M.exact_match_at_n(preds, refs, 1) == 1.0
    assert M.exact_match_at_n(preds, refs, 3) == 1 / 3
    assert M.exact_match_at_n(preds, refs, 4) == 1 / 3
    assert M.exact_match_at_n([[4, 8, 15], [4, 9]], [[4, 8, 16], [4, 8]], 2) == 0.5
    with pytest.raises(TypeError, match="predictions"):
        M.exact_match_at_n([[1.5]], [[1]], 1)
    with pytest.raises(ValueError, match="n"):
        M.exact_match_at_n(preds, refs, 0)
    with pytest.raises(ValueError, match="same length"):
        M.exact_match_at_n(preds, refs[:2], 1)


# ------------------------------------------------------------------------- classification, regression

Y_TRUE = ["cat", "dog", "dog", "bird", "cat", "dog", "bird", "cat", "dog", "cat"]
Y_PRED = ["cat", "dog", "cat", "bird", "dog", "dog", "cat", "cat", "dog", "bird"]


def test_classification_equals_scikit_learn():
    skm = pytest.importorskip("sklearn.metrics")
    assert M.accuracy(Y_TRUE, Y_PRED) == skm.accuracy_score(Y_TRUE, Y_PRED) == 0.6
    assert (M.confusion_matrix(Y_TRUE, Y_PRED) == skm.confusion_matrix(Y_TRUE, Y_PRED)).all()
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(Y_TRUE, Y_PRED, average=average, zero_division=0)
        ours = M.precision_recall_f1(Y_TRUE, Y_PRED, average=average)
        assert np.allclose([ours.precision, ours.recall, ours.f1], [p, r, f])
    yt, yp = [1, 0, 1, 1, 0, 0, 1], [1, 1, 1, 0, 0, 0, 0]
    p, r, f, _ = skm.precision_recall_fscore_support(yt, yp, average="binary")
    ours = M.precision_recall_f1(yt, yp)
    assert (ours.precision, ours.recall) == (2 / 3, 2 / 4) and math.isclose(ours.f1, f) and (p, r) == (2 / 3, 0.5)


def test_confusion_matrix_rows_are_true_labels():
    m = M.confusion_matrix([0, 0, 1], [0, 1, 1], labels=[0, 1])
    assert m.tolist() == [[1, 1], [0, 1]]
    with pytest.raises(ValueError, match="labels"):
        M.confusion_matrix([0], [0], labels=[0, 0])
    with pytest.raises(ValueError, match="average"):
        M.precision_recall_f1([0], [0], average="mean")
    with pytest.raises(ValueError, match="y_true"):
        M.accuracy([], [])


def test_regression_equals_scikit_learn_and_hand_values():
    skm = pytest.importorskip("sklearn.metrics")
    t, p = [3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0]
    assert M.mse(t, p) == pytest.approx(skm.mean_squared_error(t, p)) == pytest.approx(0.375)
    assert M.mae(t, p) == pytest.approx(skm.mean_absolute_error(t, p)) == pytest.approx(0.5)
    assert M.rmse(t, p) == pytest.approx(math.sqrt(0.375)) and M.rmse(t, p) >= M.mae(t, p)
    with pytest.raises(ValueError, match="same number"):
        M.mse([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        M.mae([1.0], [float("nan")])


# ------------------------------------------------------------------------------------------ ranking

def test_seed_worked_example_precision_recall_ndcg():
    retrieved = ["lora-guide", "llama-arch", "qlora-memory", "gpt4-api", "llama-finetune"]
    relevant = {"lora-guide", "qlora-memory", "llama-finetune", "peft-survey"}
    assert M.precision_at_k(retrieved, relevant, 5) == 0.6
    assert M.recall_at_k(retrieved, relevant, 5) == 0.75
    assert M.ndcg_at_k([2, 0, 1, 0, 2], 5) == pytest.approx(3.2737 / 3.7619, abs=1e-4)
    assert round(M.ndcg_at_k([2, 0, 1, 0, 2], 5), 2) == 0.87


def test_mrr_and_average_precision_hand_computed():
    lists = [["a", "b", "c"], ["x", "y", "z"], ["p", "q", "r"]]
    rel = [{"a"}, {"z"}, {"q"}]
    assert M.mean_reciprocal_rank(lists, rel) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert M.reciprocal_rank(["a"], {"b"}) == 0.0
    ap = M.average_precision(["d1", "d2", "d3", "d4", "d5"], {"d1", "d3", "d5", "d9"})
    assert ap == pytest.approx((1 + 2 / 3 + 3 / 5) / 4)
    assert M.mean_average_precision([["d1", "d2"], ["d2", "d1"]], [{"d1"}, {"d1"}]) == pytest.approx((1 + 0.5) / 2)


def test_ranking_equals_scikit_learn():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        grades = rng.integers(0, 4, size=8)
        if grades.sum() == 0:
            continue
        scores = np.arange(8, 0, -1)                 # the system's order: position 1 scores highest
        for k in (1, 3, 5, 8):
            assert M.ndcg_at_k(grades.tolist(), k) == pytest.approx(skm.ndcg_score([grades], [scores], k=k))
        binary = (grades > 1).astype(int)
        if binary.sum():
            docs = list(range(8))
            relevant = {d for d in docs if binary[d]}
            assert M.average_precision(docs, relevant) == pytest.approx(skm.average_precision_score(binary, scores))


def test_ranking_validates_arguments():
    with pytest.raises(ValueError, match="k"):
        M.precision_at_k(["a"], {"a"}, 0)
    with pytest.raises(ValueError, match="k"):
        M.recall_at_k(["a"], {"a"}, 0)
    with pytest.raises(ValueError, match="relevant"):
        M.recall_at_k(["a"], set(), 1)
    with pytest.raises(ValueError, match="k"):
        M.ndcg_at_k([1, 0], 0)
    with pytest.raises(ValueError, match="relevances"):
        M.ndcg_at_k([1, -1], 2)
    with pytest.raises(ValueError, match="same length"):
        M.mean_reciprocal_rank([["a"]], [])
    with pytest.raises(TypeError, match="retrieved"):
        M.precision_at_k("abc", {"a"}, 1)
    assert M.ndcg_at_k([0, 0], 2) == 0.0


# ------------------------------------------------------------------------------------------- online

def test_two_proportion_z_test_equals_chi_square_without_correction():
    stats = pytest.importorskip("scipy.stats")
    res = M.two_proportion_z_test(200, 5000, 250, 5000)
    chi2, p, _, _ = stats.chi2_contingency([[200, 4800], [250, 4750]], correction=False)
    assert math.isclose(res.z ** 2, chi2, rel_tol=1e-9) and math.isclose(res.p_value, p, rel_tol=1e-9)
    assert res.z > 0 and res.ci_low < res.rate_b - res.rate_a < res.ci_high
    assert math.isclose(res.lift, 0.25)
    same = M.two_proportion_z_test(100, 1000, 100, 1000)
    assert same.z == 0 and same.p_value == 1.0


def test_required_sample_size_matches_the_textbook_formula():
    n = M.required_sample_size(0.10, 0.10)               # 10% -> 11%, alpha 0.05, power 0.8
    assert 14_000 < n < 15_000
    assert M.required_sample_size(0.10, 0.20) < n
    with pytest.raises(ValueError, match="base_rate"):
        M.required_sample_size(0.0, 0.1)
    with pytest.raises(ValueError, match="n_a"):
        M.two_proportion_z_test(0, 0, 1, 2)
    with pytest.raises(ValueError, match="successes"):
        M.two_proportion_z_test(5, 4, 1, 2)
