"""Image-generator metrics: Fréchet distance against scipy, KID and Inception Score behaviour."""
import numpy as np
import pytest
import scipy.linalg

from genai_helpers.metrics import (fid_from_features, frechet_distance, gaussian_stats, inception_score,
                                   kernel_inception_distance)


def _random_cov(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


@pytest.mark.parametrize("d", [1, 3, 16])
def test_frechet_distance_equals_the_scipy_sqrtm_reference(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-6, abs=1e-8)


def test_frechet_distance_of_1d_gaussians_has_the_closed_form():
    # W2² between N(m1, v1) and N(m2, v2) is (m1 - m2)² + (√v1 - √v2)²
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)


def test_fid_is_zero_for_the_same_features_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(500, 8))
    assert fid_from_features(feats, feats) == pytest.approx(0, abs=1e-8)
    small, large = fid_from_features(feats, feats + 0.5), fid_from_features(feats, feats + 2.0)
    assert small == pytest.approx(8 * 0.25, rel=1e-6) and large == pytest.approx(8 * 4.0, rel=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same, _ = kernel_inception_distance(a, b, subsets=20, subset_size=200)
    shifted, _ = kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 0.05 and shifted > 10 * abs(same) + 0.1


def test_inception_score_ranges_from_one_to_the_number_of_classes():
    uniform = np.full((100, 10), 0.1)
    assert inception_score(uniform)[0] == pytest.approx(1.0)
    confident_diverse = np.eye(10)[np.arange(100) % 10]
    assert inception_score(confident_diverse)[0] == pytest.approx(10.0, rel=1e-6)
    confident_collapsed = np.eye(10)[np.zeros(100, dtype=int)]
    assert inception_score(confident_collapsed)[0] == pytest.approx(1.0, rel=1e-6)


def test_gaussian_stats_match_numpy():
    f = np.random.default_rng(2).normal(size=(50, 4))
    mu, sigma = gaussian_stats(f)
    assert np.allclose(mu, f.mean(0)) and np.allclose(sigma, np.cov(f.T))


@pytest.mark.parametrize("call, param", [
    (lambda: frechet_distance([0, 0], np.eye(2), [0], np.eye(2)), "mu1 and mu2"),
    (lambda: frechet_distance([0, 0], np.eye(3), [0, 0], np.eye(2)), "sigma1"),
    (lambda: frechet_distance([0, 0], np.eye(2), [0, 0], [[1, 2], [0, 1]]), "sigma2"),
    (lambda: kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 4))), "feature size"),
    (lambda: kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 3)), subsets=0), "subsets"),
    (lambda: inception_score(np.full((4, 2), 0.7)), "probs"),
    (lambda: inception_score(np.full((4, 2), 0.5), splits=9), "splits"),
    (lambda: gaussian_stats(np.zeros(5)), "features"),
])
def test_invalid_arguments_name_the_parameter(call, param):
    with pytest.raises(ValueError, match=param):
        call()
