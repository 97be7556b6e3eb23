"""Video metrics: per-frame FID and an FVD-style distance, with stand-in feature networks (chapter 15).

* **Per-frame FID** treats every frame of every clip as an image and computes FID on the features
  of an *image* network (:class:`~.feature_net.FeatureNet`). It judges how each frame looks and is
  blind to their order: shuffle the frames of every clip and it does not change at all.
* **FVD** (Fréchet Video Distance, Unterthiner et al. 2018) is the same Fréchet distance on
  features of *whole clips* from a video network — an I3D network trained on Kinetics in the
  paper. Here :class:`VideoFeatureNet`, a small 3-D CNN trained in the book to classify the moving
  shapes' attributes (shape, colour, direction, speed), stands in for I3D, as the book's image
  FeatureNet stands in for Inception-v3. Numbers are comparable only between generators scored
  with the same network, never with published FVDs.
* **Motion tracking** (:func:`track_centroids`, :func:`motion_from_track`) needs no network at
  all: it follows the centre of the pixels that differ from the clip's background, frame by
  frame, and fits a straight-line velocity. Its direction is the *ground-truth reading* of a
  generated clip's motion, to compare with the direction its prompt asked for.

Video tensors are ``(N, C, T, H, W)`` in [-1, 1].
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_tensor
from ..training import TrainConfig, train
from .feature_net import FeatureNet
from .image import fid_from_features

__all__ = ["VideoFeatureNet", "train_video_feature_net", "video_features", "fvd", "per_frame_fid", "shuffle_frames",
           "track_centroids", "motion_from_track"]


def _check_videos(name: str, x) -> torch.Tensor:
    check_tensor(name, x, ndim=5)
    if x.shape[2] < 2:
        raise ValueError(f"{name} must be (N, C, T, H, W) with T >= 2 frames, got shape {tuple(x.shape)}")
    return x


def _block(a: int, b: int, stride) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(a, b, 3, stride=stride, padding=1, bias=False), nn.BatchNorm3d(b), nn.ReLU())


class VideoFeatureNet(nn.Module):
    """A small 3-D CNN classifier; its pooled penultimate layer is the clip feature space.

    Three conv3d-BN-ReLU stages (``width, 2w, 4w`` channels; the last two stride 2 in time and
    space), global average pooling to ``feature_dim = 4 * width``, and one linear softmax head per
    attribute (``head_sizes``).
    """

    def __init__(self, in_channels: int, head_sizes: Sequence[int], width: int = 16):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("width", width)
        head_sizes = tuple(int(h) for h in head_sizes)
        if not head_sizes or any(h < 1 for h in head_sizes):
            raise ValueError(f"head_sizes must be a non-empty sequence of ints >= 1, got {head_sizes}")
        self.head_sizes, self.in_channels = head_sizes, in_channels
        self.blocks = nn.Sequential(_block(in_channels, width, 1), _block(width, 2 * width, 2),
                                    _block(2 * width, 4 * width, 2))
        self.feature_dim = 4 * width
        self.head = nn.Linear(self.feature_dim, sum(head_sizes))
        self.train_report: dict = {}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, feature_dim)``."""
        return self.blocks(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits per head: a list of ``(B, head_size)`` tensors."""
        return list(self.head(self.features(x)).split(self.head_sizes, dim=1))

    @torch.no_grad()
    def predict(self, videos: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """Predicted class of every head: int64 ``(N, n_heads)``."""
        _check_videos("videos", videos)
        dev = next(self.parameters()).device
        out = [torch.stack([h.argmax(1) for h in self(videos[i:i + batch_size].to(dev))], 1).cpu()
               for i in range(0, len(videos), batch_size)]
        return torch.cat(out)


def train_video_feature_net(videos: torch.Tensor, labels: torch.Tensor, *, epochs: int = 5, batch_size: int = 64,
                            lr: float = 3e-3, width: int = 16, seed: int = 0, val_fraction: float = 0.1,
                            head_sizes: Sequence[int] | None = None, device=None) -> VideoFeatureNet:
    """Train a :class:`VideoFeatureNet` on ``videos`` ``(N, C, T, H, W)`` in [-1, 1] with ``labels``
    int64 ``(N, A)`` (A categorical attributes; sum of cross-entropies). Returns it frozen in eval
    mode; ``net.train_report`` has ``val_accuracy_per_head``, ``train_loss`` (mean of the last epoch) and
    ``seconds``. AdamW (weight decay 1e-4), cosine decay of ``lr`` to 0, fp32, through
    :func:`~genai_helpers.training.train`.
    Deterministic given ``seed`` (does not touch the global random state).
    """
    _check_videos("videos", videos)
    check_tensor("labels", labels, ndim=2)
    if labels.shape[0] != videos.shape[0] or labels.dtype != torch.long:
        raise ValueError(f"labels must be int64 (N={videos.shape[0]}, A), got {labels.dtype} {tuple(labels.shape)}")
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    if not 0 <= val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in [0, 0.5), got {val_fraction!r}")
    sizes = tuple(int(m) + 1 for m in labels.max(0).values) if head_sizes is None else tuple(head_sizes)
    if len(sizes) != labels.shape[1]:
        raise ValueError(f"head_sizes must have one entry per label column ({labels.shape[1]}), got {sizes}")
    device = torch.device("cpu") if device is None else torch.device(device)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        net = VideoFeatureNet(videos.shape[1], sizes, width=width).to(device)
        order = torch.randperm(len(videos), generator=gen)
        n_val = int(round(val_fraction * len(videos)))
        val_idx, train_idx = order[:n_val], order[n_val:]
        steps_per_epoch = max(1, len(train_idx) // batch_size)
        perms = [train_idx[torch.randperm(len(train_idx), generator=gen)] for _ in range(epochs)]   # one shuffle per epoch
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)

        def batch_fn(i):
            s = i % steps_per_epoch
            idx = perms[i // steps_per_epoch][s * batch_size:(s + 1) * batch_size]
            return videos[idx], labels[idx]

        def loss_fn(model, batch):
            x, y = batch
            return sum(F.cross_entropy(logits, y[:, h]) for h, logits in enumerate(model(x)))

        config = TrainConfig(steps=epochs * steps_per_epoch, grad_clip=None, precision="fp32", log_every=steps_per_epoch,
                             progress=False, live_plot=False, lr_schedule="cosine", min_lr_ratio=0.0)
        hist = train(net, opt, batch_fn, config, loss_fn=loss_fn, device=device)
        net.eval().requires_grad_(False)
        per_head = None
        if n_val:
            pred = net.predict(videos[val_idx])
            per_head = (pred == labels[val_idx]).float().mean(0).tolist()
    net.train_report = {"train_loss": hist.loss[-1], "val_accuracy_per_head": per_head,
                        "n_train": len(train_idx), "n_val": n_val, "seconds": time.perf_counter() - start}
    return net


@torch.no_grad()
def video_features(net: VideoFeatureNet, videos: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Clip features ``(N, feature_dim)`` on the CPU."""
    if not isinstance(net, VideoFeatureNet):
        raise TypeError(f"net must be a VideoFeatureNet, got {type(net).__name__}")
    _check_videos("videos", videos)
    dev = next(net.parameters()).device
    return torch.cat([net.features(videos[i:i + batch_size].to(dev)).cpu() for i in range(0, len(videos), batch_size)])


def fvd(net: VideoFeatureNet, real: torch.Tensor, fake: torch.Tensor) -> float:
    """FVD-style distance: Fréchet distance between the clip features of ``real`` and ``fake`` (``(N, C, T, H, W)``)."""
    return fid_from_features(video_features(net, real).double().numpy(), video_features(net, fake).double().numpy())


@torch.no_grad()
def per_frame_fid(net: FeatureNet, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 256) -> float:
    """FID over all frames of all clips, as images, with an image :class:`~genai_helpers.metrics.feature_net.FeatureNet`. Order-blind by design."""
    if not isinstance(net, FeatureNet):
        raise TypeError(f"net must be a FeatureNet, got {type(net).__name__}")
    feats = []
    dev = next(net.parameters()).device
    for name, v in (("real", real), ("fake", fake)):
        _check_videos(name, v)
        frames = v.transpose(1, 2).flatten(0, 1)                                  # (N*T, C, H, W)
        feats.append(torch.cat([net.features(frames[i:i + batch_size].to(dev)).cpu()
                                for i in range(0, len(frames), batch_size)]).double().numpy())
    return fid_from_features(*feats)


def shuffle_frames(videos: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Every clip's frames in a random order (its own permutation per clip, never the identity when T > 1).

    The frames are the same, only their order changes: per-frame FID cannot see it, FVD should.
    """
    _check_videos("videos", videos)
    gen = torch.Generator().manual_seed(seed)
    T = videos.shape[2]
    out = torch.empty_like(videos)
    for i in range(len(videos)):
        perm = torch.randperm(T, generator=gen)
        while torch.equal(perm, torch.arange(T)):
            perm = torch.randperm(T, generator=gen)
        out[i] = videos[i][:, perm]
    return out


# --------------------------------------------------------------------------------------------
# Motion, measured without a network: where is the shape in each frame?
# --------------------------------------------------------------------------------------------

def track_centroids(videos: torch.Tensor, threshold: float = 0.3, min_mass: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The centre of the shape in every frame of ``videos`` ``(N, C, T, H, W)`` in [-1, 1].

    The background is each clip's per-channel median over all its frames and pixels (the shape
    covers well under half of them); a pixel's weight is its colour distance from that background
    (Euclidean over channels) minus ``threshold``, floored at 0. Returns ``(positions, mass)``:
    ``positions`` float ``(N, T, 2)``, the weighted centre ``(x, y)`` in fractions of the width and
    height, x to the right and y **downwards** (row order, as the data set's "down" means);
    ``nan`` for a frame whose total weight ``mass`` ``(N, T)`` is below ``min_mass`` (an empty
    frame: the shape has faded away).
    """
    _check_videos("videos", videos)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or threshold < 0:
        raise ValueError(f"threshold must be a number >= 0 (colour distance in [-1, 1] units), got {threshold!r}")
    if not isinstance(min_mass, (int, float)) or isinstance(min_mass, bool) or min_mass <= 0:
        raise ValueError(f"min_mass must be a number > 0 (summed pixel weight), got {min_mass!r}")
    x = videos.detach().float().cpu()
    N, C, T, H, W = x.shape
    background = x.flatten(2).median(dim=2).values[:, :, None, None, None]          # (N, C, 1, 1, 1)
    weight = ((x - background).norm(dim=1) - threshold).clamp(min=0)                  # (N, T, H, W)
    mass = weight.sum(dim=(2, 3))                                                     # (N, T)
    ys = (torch.arange(H, dtype=torch.float32) + 0.5) / H
    xs = (torch.arange(W, dtype=torch.float32) + 0.5) / W
    cx = (weight.sum(2) * xs).sum(2) / mass.clamp(min=1e-12)
    cy = (weight.sum(3) * ys).sum(2) / mass.clamp(min=1e-12)
    positions = torch.stack([cx, cy], dim=-1)
    positions[mass < min_mass] = float("nan")
    return positions, mass


def motion_from_track(positions: torch.Tensor, min_speed: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares straight-line velocity of each track and the direction it reads as.

    ``positions`` ``(N, T, 2)`` from :func:`track_centroids` (``nan`` frames are skipped). Returns
    ``(velocity, direction)``: ``velocity`` ``(N, 2)`` in fractions of the width per frame
    (``nan`` with fewer than 2 tracked frames); ``direction`` int64 ``(N,)``, an index into
    ``DIRECTIONS`` of ``genai_helpers.data.video`` (right, left, down, up) along the larger velocity
    component, or -1 when the clip is still (speed below ``min_speed``) or not tracked.
    """
    check_tensor("positions", positions, ndim=3)
    if positions.shape[2] != 2 or positions.shape[1] < 2:
        raise ValueError(f"positions must be (N, T >= 2, 2), got shape {tuple(positions.shape)}")
    if not isinstance(min_speed, (int, float)) or isinstance(min_speed, bool) or min_speed < 0:
        raise ValueError(f"min_speed must be a number >= 0 (fraction of the width per frame), got {min_speed!r}")
    p = positions.double()
    ok = ~p.isnan().any(-1)                                                           # (N, T) tracked frames
    t = torch.arange(p.shape[1], dtype=torch.float64).expand(p.shape[:2])
    n = ok.sum(1).double()
    w = ok.double()
    t_mean = (t * w).sum(1) / n.clamp(min=1)
    p0 = torch.where(ok[..., None], p, torch.zeros_like(p))
    p_mean = (p0 * w[..., None]).sum(1) / n.clamp(min=1)[:, None]
    dt = (t - t_mean[:, None]) * w
    velocity = (dt[..., None] * (p0 - p_mean[:, None])).sum(1) / (dt ** 2).sum(1).clamp(min=1e-12)[:, None]
    velocity[n < 2] = float("nan")
    vx, vy = velocity[:, 0], velocity[:, 1]
    horizontal = vx.abs() >= vy.abs()
    direction = torch.where(horizontal, torch.where(vx > 0, 0, 1), torch.where(vy > 0, 2, 3))
    still = (n < 2) | ~(velocity.norm(dim=1) >= min_speed)
    direction[still] = -1
    return velocity.float(), direction.long()
