"""Percentile bootstrap (genai_helpers.metrics.bootstrap): the draw, the interval, pairing, and the
errors; checked against a hand-written loop, scipy.stats.bootstrap and the normal approximation."""
import math

import numpy as np
import pytest

from genai_helpers.metrics.bootstrap import BootstrapCI, bootstrap_ci, bootstrap_indices, paired_bootstrap


def test_indices_are_a_fixed_draw_with_replacement():
    idx = bootstrap_indices(7, 500, seed=3)
    assert idx.shape == (500, 7) and idx.min() >= 0 and idx.max() <= 6
    assert np.array_equal(idx, bootstrap_indices(7, 500, seed=3))
    assert not np.array_equal(idx, bootstrap_indices(7, 500, seed=4))
    assert any(len(set(row)) < 7 for row in idx.tolist())          # with replacement: repeats happen


def test_interval_equals_a_hand_written_percentile_bootstrap():
    values = np.random.default_rng(1).exponential(size=40)
    ci = bootstrap_ci(values, n_resamples=2000, confidence=0.9, seed=5)
    rng = np.random.default_rng(5)
    means = [values[rng.integers(0, 40, size=40)].mean() for _ in range(2000)]
    # the same draw, row by row: numpy fills (2000, 40) in the order the loop asks for it
    assert np.allclose(sorted(ci.distribution), sorted(means))
    assert math.isclose(ci.low, np.quantile(means, 0.05)) and math.isclose(ci.high, np.quantile(means, 0.95))
    assert ci.estimate == pytest.approx(values.mean()) and ci.n == 40 and ci.n_resamples == 2000


def test_interval_agrees_with_scipy_percentile_bootstrap_and_the_normal_interval():
    from scipy import stats
    values = np.random.default_rng(2).normal(3.0, 2.0, size=300)
    ci = bootstrap_ci(values, n_resamples=4000, seed=0)
    ref = stats.bootstrap((values,), np.mean, n_resamples=4000, method="percentile",
                          random_state=np.random.default_rng(0)).confidence_interval
    se = values.std(ddof=1) / math.sqrt(values.size)
    for ours, theirs, normal in ((ci.low, ref.low, values.mean() - 1.96 * se),
                                 (ci.high, ref.high, values.mean() + 1.96 * se)):
        assert abs(ours - theirs) < 0.25 * se            # different random draws: agree to a fraction of a SE
        assert abs(ours - normal) < 0.25 * se
    assert ci.low < values.mean() < ci.high


def test_custom_statistic_on_rows_resamples_whole_items():
    # corpus-level ratio: sum of hits over sum of totals, the way corpus BLEU pools n-gram counts
    rng = np.random.default_rng(0)
    totals = rng.integers(5, 30, size=60)
    rows = np.stack([rng.binomial(totals, 0.3), totals], axis=1)
    def ratio(sample):
        return sample[:, 0].sum() / sample[:, 1].sum()
    ci = bootstrap_ci(rows, ratio, n_resamples=500, seed=1)
    assert ci.estimate == pytest.approx(rows[:, 0].sum() / rows[:, 1].sum())
    idx = bootstrap_indices(60, 500, seed=1)
    assert np.allclose(ci.distribution, [ratio(rows[i]) for i in idx])
    assert ci.low < ci.estimate < ci.high


def test_wider_interval_for_fewer_items_and_higher_confidence():
    values = np.random.default_rng(3).normal(size=400)
    wide = bootstrap_ci(values[:25], seed=0)
    narrow = bootstrap_ci(values, seed=0)
    assert (wide.high - wide.low) > 2 * (narrow.high - narrow.low)
    c99 = bootstrap_ci(values, confidence=0.99, seed=0)
    assert c99.low < narrow.low and c99.high > narrow.high


def test_a_constant_sample_has_a_zero_width_interval():
    ci = bootstrap_ci([0.5] * 10)
    assert ci.low == ci.high == ci.estimate == 0.5


def test_paired_difference_cancels_shared_item_variation():
    rng = np.random.default_rng(4)
    difficulty = rng.normal(0, 5, size=80)                 # per-prompt difficulty, shared by both systems
    a = difficulty + rng.normal(0, 0.3, size=80)
    b = difficulty + 0.4 + rng.normal(0, 0.3, size=80)     # B is better by 0.4 on every prompt
    paired = paired_bootstrap(a, b, seed=0)
    assert paired.estimate == pytest.approx(b.mean() - a.mean())
    assert paired.excludes(0) and paired.low > 0
    # unpaired, the difficulty noise swamps the 0.4: the two intervals overlap
    ca, cb = bootstrap_ci(a, seed=0), bootstrap_ci(b, seed=1)
    assert ca.high > cb.low
    assert (paired.high - paired.low) < 0.2 * (ca.high - ca.low)


def test_paired_uses_one_draw_for_both_and_a_custom_statistic():
    rng = np.random.default_rng(5)
    a, b = rng.random(30), rng.random(30)
    paired = paired_bootstrap(a, b, np.median, n_resamples=300, seed=9)
    idx = bootstrap_indices(30, 300, seed=9)
    assert np.allclose(paired.distribution, [np.median(b[i]) - np.median(a[i]) for i in idx])
    assert paired.estimate == pytest.approx(np.median(b) - np.median(a))


def test_no_difference_gives_an_interval_around_zero():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=200), rng.normal(size=200)
    paired = paired_bootstrap(a, b, seed=0)
    assert paired.low < 0 < paired.high and not paired.excludes(0)
    identical = paired_bootstrap(a, a)
    assert identical.low == identical.high == 0.0


def test_format_and_str_state_the_interval_and_n():
    ci = bootstrap_ci([0.1, 0.2, 0.3, 0.4], n_resamples=200)
    assert isinstance(ci, BootstrapCI)
    assert ci.format(2, scale=100).startswith("25.00 [")
    assert "n=4" in str(ci) and "200 resamples" in str(ci) and "95% CI" in str(ci)


@pytest.mark.parametrize("kwargs, error, word", [
    (dict(values=[]), ValueError, "values"),
    (dict(values=3.0), ValueError, "values"),
    (dict(values=[1.0, float("nan")]), ValueError, "finite"),
    (dict(values=["a", "b"]), TypeError, "values"),
    (dict(values=[1.0], n_resamples=0), ValueError, "n_resamples"),
    (dict(values=[1.0], n_resamples=10.0), TypeError, "n_resamples"),
    (dict(values=[1.0], confidence=1.0), ValueError, "confidence"),
    (dict(values=[1.0], confidence="0.9"), TypeError, "confidence"),
    (dict(values=[1.0], seed=-1), ValueError, "seed"),
    (dict(values=[1.0], statistic="mean"), TypeError, "statistic"),
])
def test_bad_arguments_name_the_parameter(kwargs, error, word):
    with pytest.raises(error, match=word):
        bootstrap_ci(**kwargs)


def test_paired_rejects_mismatched_items_and_indices_reject_bad_n():
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="n must be"):
        bootstrap_indices(0)
    with pytest.raises(TypeError, match="n must be"):
        bootstrap_indices(2.5)
    with pytest.raises(ValueError, match="non-finite"):
        # nan when a resample drew one item three times (1 in 9 resamples)
        bootstrap_ci([0.0, 1.0, 2.0], lambda s: s.mean() if len(set(s.tolist())) > 1 else float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_ci([0.0, 1.0], lambda s: float("inf"))
