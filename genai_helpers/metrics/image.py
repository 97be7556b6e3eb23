"""Distribution metrics for image generators: FID, KID and Inception Score (chapters 11-15).

All three compare *features* or *class probabilities* of images, not pixels. The standard
versions use an Inception-v3 network trained on ImageNet, which cannot be downloaded here; the
book trains its own feature network and says so wherever it reports these numbers — values are
comparable only between runs that use the same feature network.

- ``frechet_distance(mu1, sigma1, mu2, sigma2)``: the Fréchet (2-Wasserstein) distance between two
  Gaussians, ``|mu1 - mu2|² + tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½)``; FID is this distance between
  the Gaussians fitted to real and generated features.
- ``kernel_inception_distance``: unbiased MMD² with the cubic polynomial kernel, averaged over
  random subsets (unbiased, so it can be slightly negative for identical distributions).
- ``inception_score``: ``exp(E_x KL(p(y|x) || p(y)))`` — 1 for useless, up to the number of
  classes for confident *and* diverse predictions.
- ``knn_precision_recall``: improved precision and recall (Kynkäänniemi et al., 2019) — the share of
  generated samples inside the real samples' k-nearest-neighbour balls (fidelity) and of real
  samples inside the generated ones' (diversity); chapter 11 shows how much they depend on ``k``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["gaussian_stats", "frechet_distance", "fid_from_features", "kernel_inception_distance", "inception_score",
           "knn_radii", "knn_precision_recall"]


def _as_2d(name: str, x) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples >= 2, n_features), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(d,)`` and covariance ``(d, d)`` (unbiased, rows are samples) of ``features``."""
    f = _as_2d("features", features)
    return f.mean(0), np.cov(f, rowvar=False)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); covariances must be PSD ``(d, d)``.

    Computed through the symmetric matrix ``S1^½ S2 S1^½`` (its eigenvalues are those of
    ``S1 S2``), which stays real and stable where a general ``sqrtm(S1 @ S2)`` can return small
    imaginary parts.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,):
        raise ValueError(f"mu1 and mu2 must both have shape (d,), got {mu1.shape} and {mu2.shape}")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}), got {s.shape}")
        if not np.allclose(s, s.T, atol=1e-8 * max(1.0, np.abs(s).max())):
            raise ValueError(f"{name} must be symmetric")
    root1 = _psd_sqrt(s1)
    middle = np.linalg.eigvalsh((root1 @ s2 @ root1 + (root1 @ s2 @ root1).T) / 2)
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)


def fid_from_features(real, fake) -> float:
    """FID between two feature sets ``(n, d)`` (the book's feature network, not Inception-v3)."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def kernel_inception_distance(real, fake, *, subsets: int = 10, subset_size: int = 100,
                              seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of unbiased MMD² (kernel ``(x·y / d + 1)³``) over random subsets."""
    x, y = _as_2d("real", real), _as_2d("fake", fake)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real and fake must have the same feature size, got {x.shape[1]} and {y.shape[1]}")
    if not isinstance(subsets, int) or subsets < 1:
        raise ValueError(f"subsets must be an int >= 1, got {subsets!r}")
    if not isinstance(subset_size, int) or subset_size < 2:
        raise ValueError(f"subset_size must be an int >= 2, got {subset_size!r}")
    m = min(subset_size, len(x), len(y))
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        off = ~np.eye(m, dtype=bool)
        values.append(kxx[off].mean() + kyy[off].mean() - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def inception_score(probs, splits: int = 1) -> tuple[float, float]:
    """Mean and standard deviation over ``splits`` of exp(E KL(p(y|x) || p(y))) for ``probs`` ``(n, classes)``."""
    p = _as_2d("probs", probs)
    if (p < 0).any() or not np.allclose(p.sum(1), 1, atol=1e-4):
        raise ValueError("probs must be non-negative with rows summing to 1 (softmax outputs)")
    if not isinstance(splits, int) or not 1 <= splits <= len(p):
        raise ValueError(f"splits must be an int in [1, {len(p)}], got {splits!r}")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(0, keepdims=True)
        kl = (part * (np.log(np.clip(part, 1e-12, None)) - np.log(np.clip(marginal, 1e-12, None)))).sum(1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def _pairwise_distances(a: np.ndarray, b: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Euclidean distances ``(len(a), len(b))`` from explicit differences (exact; no ``a² + b² - 2ab``)."""
    return np.concatenate([np.sqrt(((a[i:i + chunk, None, :] - b[None, :, :]) ** 2).sum(-1))
                           for i in range(0, len(a), chunk)])


def _check_k(k, n: int, name: str) -> int:
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] (fewer than the {n} rows of {name}), got {k}")
    return k


def knn_radii(features, k: int = 3) -> np.ndarray:
    """Distance ``(n,)`` from each row of ``features`` ``(n, d)`` to its k-th nearest other row (itself excluded)."""
    f = _as_2d("features", features)
    _check_k(k, len(f), "features")
    return np.sort(_pairwise_distances(f, f), axis=1)[:, k]       # column 0 is the row itself (distance 0)


def knn_precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of Kynkäänniemi et al. (2019) on feature sets ``(n, d)``.

    Each real sample gets a ball whose radius is the distance to its ``k``-th nearest real
    neighbour; *precision* is the share of fake samples inside at least one real ball. *Recall*
    swaps the roles: the share of real samples inside at least one fake ball (radii from the fake
    set). Both lie in [0, 1]; a point on a ball's edge counts as inside. The paper uses k = 3 with
    50,000 samples per set in Inception-v3 features; with fewer samples the balls are wider and
    both numbers depend strongly on ``k`` (chapter 11 measures that). ``k`` must be smaller than
    both set sizes.
    """
    x, y = _as_2d("real", real), _as_2d("fake", fake)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real and fake must have the same feature size, got {x.shape[1]} and {y.shape[1]}")
    _check_k(k, min(len(x), len(y)), "the smaller set")
    d = _pairwise_distances(y, x)                                   # (n_fake, n_real)
    precision = float((d <= knn_radii(x, k)[None, :]).any(1).mean())
    recall = float((d.T <= knn_radii(y, k)[None, :]).any(1).mean())
    return precision, recall
