"""The book's image feature network: a small CNN that stands in for Inception-v3 (chapters 11-13).

FID, KID and the Inception Score are defined on the features and class probabilities of an
Inception-v3 network trained on ImageNet. That network cannot be downloaded here (and would be
far too slow on a CPU), so every image chapter trains its own small classifier on its own data
and uses it the same way. Numbers computed with it are comparable *between generators scored
with the same network* — never with published FIDs.

- :class:`FeatureNet`: conv-BN-ReLU stages (stride 2 after the first), global average pooling,
  then a linear head. ``features(x)`` is the pooled penultimate vector, ``stages(x)`` the
  activation maps used by :func:`perceptual_distance`.
- :func:`train_feature_net`: trains it on images ``[N, C, H, W]`` in [-1, 1] with

  * ``labels`` LongTensor ``[N]`` — one softmax head (cross-entropy);
  * LongTensor ``[N, A]`` — ``A`` categorical attributes, one softmax head each (sum of
    cross-entropies; e.g. the faces' eight attributes);
  * float ``[N, K]`` of 0/1 — ``K`` independent binary labels (binary cross-entropy).

- :func:`image_features`, :func:`generator_scores` (FID, KID, IS via
  :mod:`genai_helpers.metrics.image`) and :func:`perceptual_distance` (an LPIPS-like distance).

With several heads, the Inception Score is computed per head (a binary label counts as a
two-class head) and averaged; ``generator_scores`` also returns the per-head scores.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_positive_int, check_tensor
from ..training import TrainConfig, train
from .image import fid_from_features, inception_score, kernel_inception_distance

__all__ = ["FeatureNet", "train_feature_net", "image_features", "generator_scores", "perceptual_distance"]

_KINDS = ("single", "multi_head", "multi_label")


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=False))


class FeatureNet(nn.Module):
    """A small classifier CNN whose penultimate layer serves as the image feature space.

    Args:
        in_channels: image channels ``C``.
        head_sizes: number of outputs of each head — ``(n_classes,)`` for one softmax head,
            one entry per attribute for several softmax heads, or ``(K,)`` with
            ``kind="multi_label"`` for K sigmoid outputs.
        kind: ``"single"``, ``"multi_head"`` or ``"multi_label"`` (see the module docstring).
        width: channels of the first stage; the stages have ``width, 2w, 4w, 4w`` channels, so
            the feature size ``feature_dim`` is ``4 * width``.
    """

    def __init__(self, in_channels: int, head_sizes: Sequence[int], *, kind: str = "single", width: int = 32):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("width", width)
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        head_sizes = tuple(int(h) for h in head_sizes)
        if not head_sizes or any(h < 1 for h in head_sizes):
            raise ValueError(f"head_sizes must be a non-empty sequence of ints >= 1, got {head_sizes}")
        if kind != "multi_head" and len(head_sizes) != 1:
            raise ValueError(f"kind={kind!r} takes one head size, got {head_sizes}")
        self.kind, self.head_sizes, self.in_channels = kind, head_sizes, in_channels
        chans = (width, 2 * width, 4 * width, 4 * width)
        self.blocks = nn.ModuleList([_conv_block(in_channels, chans[0], 1), _conv_block(chans[0], chans[1], 2),
                                     _conv_block(chans[1], chans[2], 2), _conv_block(chans[2], chans[3], 2)])
        self.feature_dim = chans[-1]
        self.head = nn.Linear(self.feature_dim, sum(head_sizes))
        self.train_report: dict = {}

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activation maps after each stage: ``[B, w, H, W], [B, 2w, H/2, W/2], ...`` (4 maps)."""
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[B, feature_dim]``: the last stage, globally average-pooled."""
        return self.stages(x)[-1].mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, sum(head_sizes)]`` (heads concatenated)."""
        return self.head(self.features(x))

    def split_logits(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """Logits split per head (``multi_label``: one ``[B, K]`` block)."""
        return list(torch.split(logits, self.head_sizes, dim=1))

    @torch.no_grad()
    def head_probs(self, images: torch.Tensor, batch_size: int = 256) -> list[torch.Tensor]:
        """Per-head class probabilities, each ``[N, C_h]`` with rows summing to 1.

        A ``multi_label`` net gives one ``[N, 2]`` head per label (``[1 - p, p]``).
        """
        _check_images(images, self.in_channels)
        device = next(self.parameters()).device
        logits = torch.cat([self(images[i:i + batch_size].to(device)).float().cpu()
                            for i in range(0, len(images), batch_size)])
        if self.kind == "multi_label":
            p = torch.sigmoid(logits)
            return [torch.stack([1 - p[:, k], p[:, k]], 1) for k in range(p.shape[1])]
        return [t.softmax(1) for t in self.split_logits(logits)]

    def class_probs(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """``[N, n_outputs]``: softmax (one head), per-head softmaxes side by side, or sigmoids (multi-label)."""
        probs = self.head_probs(images, batch_size)
        if self.kind == "multi_label":
            return torch.stack([p[:, 1] for p in probs], 1)
        return torch.cat(probs, 1)

    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted labels: ``[N]`` (one head), ``[N, A]`` (several heads) or 0/1 ``[N, K]`` (multi-label)."""
        probs = self.head_probs(images, batch_size)
        if self.kind == "multi_label":
            return torch.stack([p[:, 1] > 0.5 for p in probs], 1).long()
        preds = torch.stack([p.argmax(1) for p in probs], 1)
        return preds[:, 0] if self.kind == "single" else preds


def _check_images(images, channels: int | None = None) -> torch.Tensor:
    check_tensor("images", images, ndim=4)
    if not images.is_floating_point():
        raise TypeError(f"images must be a float tensor in [-1, 1], got dtype {images.dtype}")
    if images.shape[2] < 8 or images.shape[3] < 8:
        raise ValueError(f"images must be at least 8x8 pixels, got shape {tuple(images.shape)}")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"images must have {channels} channels (as the network was trained), got {images.shape[1]}")
    return images


def _label_kind(labels: torch.Tensor, n: int) -> tuple[str, tuple[int, ...]]:
    check_tensor("labels", labels, ndim=(1, 2))
    if labels.shape[0] != n:
        raise ValueError(f"labels must have one row per image ({n}), got {labels.shape[0]}")
    if labels.is_floating_point():
        if labels.ndim != 2 or not ((labels == 0) | (labels == 1)).all():
            raise ValueError("float labels must be a [N, K] tensor of 0/1 attributes (multi-label)")
        return "multi_label", (labels.shape[1],)
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"labels must be a LongTensor of class ids or a float 0/1 tensor, got {labels.dtype}")
    if (labels < 0).any():
        raise ValueError("class ids in labels must be >= 0")
    if labels.ndim == 1:
        return "single", (int(labels.max()) + 1,)
    return "multi_head", tuple(int(m) + 1 for m in labels.max(0).values)


def _loss(net: FeatureNet, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if net.kind == "multi_label":
        return F.binary_cross_entropy_with_logits(logits, y)
    if net.kind == "single":
        return F.cross_entropy(logits, y)
    return sum(F.cross_entropy(part, y[:, h]) for h, part in enumerate(net.split_logits(logits)))


def train_feature_net(images: torch.Tensor, labels: torch.Tensor, *, epochs: int = 5, batch_size: int = 128,
                      lr: float = 2e-3, seed: int = 0, device=None, width: int = 32,
                      val_fraction: float = 0.1, head_sizes: Sequence[int] | None = None) -> FeatureNet:
    """Train a :class:`FeatureNet` classifier and return it frozen in eval mode.

    Args:
        images: float ``[N, C, H, W]`` in [-1, 1], ``H, W >= 8``.
        labels: LongTensor ``[N]`` (classes), LongTensor ``[N, A]`` (A categorical attributes) or
            float ``[N, K]`` of 0/1 (multi-label, binary cross-entropy).
        epochs, batch_size, lr: AdamW training budget (weight decay 1e-4, cosine decay of ``lr`` to 0;
            fp32, through :func:`~genai_helpers.training.train`).
        seed: seeds the initialisation, the validation split and the shuffling — the result is
            deterministic on a given device and does not touch the global random state.
        device: where to train (default: CPU); the returned net stays there.
        width: channels of the first stage (features are ``4 * width``-dimensional).
        val_fraction: fraction in [0, 0.5) held out to measure accuracy (0 trains on all).
        head_sizes: classes per head, when the labels do not show every class.

    ``net.train_report`` holds ``train_loss`` (last epoch), ``val_accuracy`` (mean over heads or
    labels; ``None`` without a validation split), ``val_accuracy_per_head``, ``seconds``.
    """
    _check_images(images)
    kind, sizes = _label_kind(labels, len(images))
    if head_sizes is not None:
        head_sizes = tuple(int(h) for h in head_sizes)
        if len(head_sizes) != len(sizes) or any(h < s for h, s in zip(head_sizes, sizes)):
            raise ValueError(f"head_sizes {head_sizes} do not cover the labels (need at least {sizes})")
        sizes = head_sizes
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive float, got {lr!r}")
    if not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in [0, 0.5), got {val_fraction!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        net = FeatureNet(images.shape[1], sizes, kind=kind, width=width).to(device)
        order = torch.randperm(len(images), generator=gen)
        n_val = int(round(val_fraction * len(images)))
        val_idx, train_idx = order[:n_val], order[n_val:]
        if len(train_idx) < 2:
            raise ValueError(f"need at least 2 training images after the validation split, got {len(train_idx)}")
        steps_per_epoch = max(1, len(train_idx) // batch_size)
        perms = [train_idx[torch.randperm(len(train_idx), generator=gen)] for _ in range(epochs)]   # one shuffle per epoch
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)

        def batch_fn(i):
            s = i % steps_per_epoch
            idx = perms[i // steps_per_epoch][s * batch_size:(s + 1) * batch_size]
            return images[idx], labels[idx]

        config = TrainConfig(steps=epochs * steps_per_epoch, grad_clip=None, precision="fp32", log_every=steps_per_epoch,
                             progress=False, live_plot=False, lr_schedule="cosine", min_lr_ratio=0.0)
        hist = train(net, opt, batch_fn, config, loss_fn=lambda model, b: _loss(model, model(b[0]), b[1]), device=device)
        net.eval().requires_grad_(False)
        per_head = None
        if n_val:
            pred, truth = net.predict(images[val_idx]), labels[val_idx]
            if kind == "single":
                pred, truth = pred[:, None], truth[:, None]
            per_head = [float((pred[:, h] == truth[:, h].long()).float().mean()) for h in range(truth.shape[1])]
    net.train_report = {"train_loss": hist.loss[-1],
                        "val_accuracy": sum(per_head) / len(per_head) if per_head else None,
                        "val_accuracy_per_head": per_head, "n_train": len(train_idx), "n_val": n_val,
                        "seconds": time.perf_counter() - start}
    return net


def _check_net(net) -> FeatureNet:
    if not isinstance(net, FeatureNet):
        raise TypeError(f"net must be a FeatureNet (see train_feature_net), got {type(net).__name__}")
    return net


@torch.no_grad()
def image_features(net: FeatureNet, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Penultimate features ``[N, feature_dim]`` (float64, CPU) of images ``[N, C, H, W]`` in [-1, 1]."""
    _check_net(net)
    _check_images(images, net.in_channels)
    check_positive_int("batch_size", batch_size)
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    feats = torch.cat([net.features(images[i:i + batch_size].to(device)).double().cpu()
                       for i in range(0, len(images), batch_size)])
    net.train(was_training)
    return feats


def generator_scores(net: FeatureNet, real_images: torch.Tensor | None, fake_images: torch.Tensor, *,
                     kid_subsets: int = 10, kid_subset_size: int = 100, is_splits: int = 1,
                     seed: int = 0, real_features: torch.Tensor | None = None) -> dict:
    """FID, KID and Inception Score of ``fake_images`` against ``real_images`` (both in [-1, 1]).

    Returns a dict with ``fid``, ``kid``, ``kid_std`` (over ``kid_subsets`` subsets),
    ``inception_score`` and ``is_std`` (of the fakes; mean over heads when the net has several)
    and ``is_per_head``. Lower FID/KID is better; higher IS is better. FID is biased upwards for
    small sample sizes, so compare values only at equal ``N``.

    Scoring many generators against one reference set? Compute its features once with
    :func:`image_features` and pass them as ``real_features`` (then ``real_images`` may be None).
    """
    _check_net(net)
    sets = [("fake_images", fake_images)] + ([("real_images", real_images)] if real_features is None else [])
    for name, imgs in sets:
        check_tensor(name, imgs, ndim=4)
        if len(imgs) < 2:
            raise ValueError(f"{name} must hold at least 2 images, got {len(imgs)}")
    if real_features is not None:
        check_tensor("real_features", real_features, ndim=2)
        if real_features.shape[1] != net.feature_dim:
            raise ValueError(f"real_features must have {net.feature_dim} columns, got {real_features.shape[1]}")
    real = image_features(net, real_images) if real_features is None else real_features
    fake = image_features(net, fake_images)
    fid = fid_from_features(real, fake)
    kid, kid_std = kernel_inception_distance(real, fake, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    per_head = [inception_score(p.double().numpy(), splits=is_splits) for p in net.head_probs(fake_images)]
    return {"fid": fid, "kid": kid, "kid_std": kid_std,
            "inception_score": sum(s for s, _ in per_head) / len(per_head),
            "is_std": sum(s for _, s in per_head) / len(per_head),
            "is_per_head": [s for s, _ in per_head]}


def perceptual_distance(net: FeatureNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """An LPIPS-like distance ``[N]`` between image batches ``x`` and ``y`` ``[N, C, H, W]`` in [-1, 1].

    For each stage's activation map, every pixel's channel vector is scaled to unit length; the
    squared difference is summed over channels, averaged over pixels, then averaged over the
    four stages (LPIPS also learns per-channel weights; this version weighs channels equally).
    0 for identical images, symmetric, and differentiable with respect to ``x`` and ``y`` (the
    network's own weights are frozen), so it can serve as a training loss.
    """
    _check_net(net)
    _check_images(x, net.in_channels)
    _check_images(y, net.in_channels)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    was_training = net.training
    net.eval()
    total = 0.0
    for fx, fy in zip(net.stages(x), net.stages(y)):
        fx = fx / (fx.norm(dim=1, keepdim=True) + 1e-10)
        fy = fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
        total = total + ((fx - fy) ** 2).sum(1).mean((1, 2))
    net.train(was_training)
    return total / len(net.blocks)
