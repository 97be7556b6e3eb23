"""Improved precision and recall (Kynkäänniemi et al., 2019), chapter 11: k-NN balls in feature space."""
import numpy as np
import pytest
import torch

from genai_helpers.metrics import knn_precision_recall, knn_radii


def brute_force(real, fake, k):
    """The paper's definition written out point by point."""
    def radius(points, i):
        d = sorted(float(np.linalg.norm(points[i] - points[j])) for j in range(len(points)) if j != i)
        return d[k - 1]
    r_real = [radius(real, i) for i in range(len(real))]
    r_fake = [radius(fake, i) for i in range(len(fake))]
    inside = lambda x, pts, radii: any(np.linalg.norm(x - p) <= r for p, r in zip(pts, radii))  # noqa: E731
    return (np.mean([inside(f, real, r_real) for f in fake]), np.mean([inside(r, fake, r_fake) for r in real]))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_precision_recall_matches_the_definition_point_by_point(k):
    rng = np.random.default_rng(k)
    real, fake = rng.normal(size=(40, 3)), rng.normal(loc=0.7, scale=0.6, size=(30, 3))
    assert knn_precision_recall(real, fake, k) == pytest.approx(brute_force(real, fake, k), abs=1e-12)


def test_knn_radii_equal_the_kth_smallest_distance_to_another_row():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    np.testing.assert_allclose(knn_radii(x, 3), d.kthvalue(4, dim=1).values.numpy(), rtol=1e-12)


def test_same_set_scores_one_and_far_apart_sets_score_zero():
    x = np.random.default_rng(0).normal(size=(64, 8))
    assert knn_precision_recall(x, x, 3) == (1.0, 1.0)
    assert knn_precision_recall(x, x + 100.0, 3) == (0.0, 0.0)


def test_a_collapsed_generator_has_high_precision_and_low_recall():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(200, 2))
    fake = 0.01 * rng.normal(size=(200, 2))          # every sample near the centre of the real cloud
    precision, recall = knn_precision_recall(real, fake, 3)
    assert precision == 1.0 and recall < 0.05


def test_recall_grows_with_k():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(200, 4)), 0.5 * rng.normal(size=(200, 4))
    recalls = [knn_precision_recall(real, fake, k)[1] for k in (1, 3, 10, 30)]
    assert recalls == sorted(recalls) and recalls[-1] > recalls[0]


@pytest.mark.parametrize("call, param", [
    (lambda: knn_precision_recall(np.zeros((10, 3)), np.zeros((10, 3)), 0), "k"),
    (lambda: knn_precision_recall(np.zeros((10, 3)), np.zeros((5, 3)), 5), "k"),
    (lambda: knn_precision_recall(np.zeros((10, 3)), np.zeros((10, 3)), 2.0), "k"),
    (lambda: knn_precision_recall(np.zeros((10, 3)), np.zeros((10, 4)), 3), "feature size"),
    (lambda: knn_precision_recall(np.zeros(10), np.zeros((10, 3)), 3), "real"),
    (lambda: knn_radii(np.zeros((4, 2)), 4), "k"),
])
def test_invalid_arguments_name_the_parameter(call, param):
    with pytest.raises((ValueError, TypeError), match=param):
        call()
