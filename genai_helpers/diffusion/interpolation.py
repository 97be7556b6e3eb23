"""Temporal super-resolution by frame interpolation (chapter 15).

Video systems generate a few key frames and then *fill in* the frames between them (Make-A-Video,
Imagen Video): a clip of ``T`` frames becomes ``2T - 1`` by inserting one frame between every
neighbouring pair, and doing that ``times`` times over widens the gap between key frames to
``2 ** times``. Two ways to make a middle frame:

* :func:`linear_blend` — the baseline: the pixel-wise average of its neighbours. A moving shape
  turns into two half-transparent ghosts instead of one shape halfway along the path.
* :class:`MidFrameNet` — a small CNN that sees both neighbours and predicts a correction to that
  blend (its last layer starts at zero, so an untrained net *is* the blend). Trained on real
  clips: frames ``i`` and ``i + 2g`` in, frame ``i + g`` as the target, for the gaps ``g`` it is given.

Frames are ``(B, C, H, W)``; clips ``(B, C, T, H, W)`` (the :mod:`genai_helpers.diffusion.video` layout), values in [-1, 1].
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_tensor
from ..training import TrainConfig, train

__all__ = ["linear_blend", "MidFrameNet", "interpolate_clip", "frame_triplets", "train_mid_frame_net"]


def linear_blend(prev: torch.Tensor, nxt: torch.Tensor, weight: float = 0.5) -> torch.Tensor:
    """``(1 - weight) * prev + weight * nxt``: the frame a fraction ``weight`` of the way from ``prev`` to ``nxt``."""
    check_tensor("prev", prev)
    check_tensor("nxt", nxt)
    if prev.shape != nxt.shape:
        raise ValueError(f"nxt must have the shape of prev {tuple(prev.shape)}, got {tuple(nxt.shape)}")
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 <= weight <= 1:
        raise ValueError(f"weight must be a number in [0, 1], got {weight!r}")
    return (1 - weight) * prev + weight * nxt


class MidFrameNet(nn.Module):
    """``(prev, next) -> middle frame``: ``blend + CNN([prev, next])``; the CNN's last conv is zero at start."""

    def __init__(self, channels: int = 3, width: int = 32, depth: int = 3):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("width", width)
        check_positive_int("depth", depth)
        layers, c = [], 2 * channels
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.SiLU()]
            c = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        check_tensor("prev", prev, ndim=4)
        check_tensor("nxt", nxt, ndim=4)
        if prev.shape != nxt.shape:
            raise ValueError(f"nxt must have the shape of prev {tuple(prev.shape)}, got {tuple(nxt.shape)}")
        return (linear_blend(prev, nxt) + self.out(self.body(torch.cat([prev, nxt], dim=1)))).clamp(-1, 1)


def interpolate_clip(clips: torch.Tensor, predict_mid: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = linear_blend,
                     times: int = 1) -> torch.Tensor:
    """Insert a predicted frame between every pair: ``(B, C, T, H, W)`` -> ``(B, C, 2T - 1, H, W)``.

    Original frames land on the even indices, ``predict_mid(frame_i, frame_{i+1})`` on the odd ones.
    ``times=k`` repeats this ``k`` times (each pass fills between the frames of the last one):
    ``T`` key frames ``2**k`` apart become ``(T - 1) * 2**k + 1`` frames.
    """
    check_tensor("clips", clips, ndim=5)
    if clips.shape[2] < 2:
        raise ValueError(f"clips must have at least 2 frames, got {clips.shape[2]}")
    if not callable(predict_mid):
        raise TypeError("predict_mid must be callable: predict_mid(prev, next) -> middle frame")
    check_positive_int("times", times)
    if times > 1:
        return interpolate_clip(interpolate_clip(clips, predict_mid, times - 1), predict_mid)
    B, C, T, H, W = clips.shape
    prev = clips[:, :, :-1].transpose(1, 2).reshape(-1, C, H, W)
    nxt = clips[:, :, 1:].transpose(1, 2).reshape(-1, C, H, W)
    mids = predict_mid(prev, nxt).reshape(B, T - 1, C, H, W).transpose(1, 2)
    out = clips.new_empty(B, C, 2 * T - 1, H, W)
    out[:, :, 0::2] = clips
    out[:, :, 1::2] = mids
    return out


def frame_triplets(clips: torch.Tensor, gap: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All ``(frame i, frame i+gap, frame i+2*gap)`` triplets of ``(B, C, T, H, W)`` clips, each ``(B*(T-2*gap), C, H, W)``."""
    check_tensor("clips", clips, ndim=5)
    check_positive_int("gap", gap)
    if clips.shape[2] < 2 * gap + 1:
        raise ValueError(f"clips need at least 2 * gap + 1 = {2 * gap + 1} frames for triplets, got {clips.shape[2]}")
    B, C, T, H, W = clips.shape
    take = lambda a: clips[:, :, a:T - 2 * gap + a].transpose(1, 2).reshape(-1, C, H, W)   # noqa: E731
    return take(0), take(gap), take(2 * gap)


def train_mid_frame_net(net: MidFrameNet, clips: torch.Tensor, *, steps: int, batch_size: int = 128,
                        lr: float = 2e-3, seed: int = 0, gaps=(1,)) -> dict:
    """Train ``net`` to predict frame ``i+g`` from frames ``i`` and ``i+2g`` of real ``clips`` (mean squared error),
    on the triplets of every gap ``g`` in ``gaps`` pooled together.

    AdamW with cosine decay to 0 over ``steps``, in fp32, through :func:`~genai_helpers.training.train`.
    Returns ``{"loss": [...], "seconds": s}`` (one loss per step) and leaves ``net`` frozen in eval mode.
    """
    if not isinstance(net, MidFrameNet):
        raise TypeError(f"net must be a MidFrameNet, got {type(net).__name__}")
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    gaps = tuple(gaps) if isinstance(gaps, (tuple, list)) else gaps
    if not isinstance(gaps, tuple) or not gaps:
        raise ValueError(f"gaps must be a non-empty tuple of positive ints, got {gaps!r}")
    prev, mid, nxt = (torch.cat(parts) for parts in zip(*(frame_triplets(clips, g) for g in gaps)))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)

    def batch_fn(i):
        idx = torch.randint(0, len(prev), (batch_size,), generator=gen)
        return prev[idx], nxt[idx], mid[idx]

    def loss_fn(model, batch):
        p, n, m = batch
        return F.mse_loss(model(p, n), m)

    config = TrainConfig(steps=steps, grad_clip=None, precision="fp32", log_every=1, progress=False, live_plot=False,
                         lr_schedule="cosine", min_lr_ratio=0.0)
    hist = train(net, opt, batch_fn, config, loss_fn=loss_fn)
    net.eval().requires_grad_(False)
    return {"loss": hist.loss, "seconds": hist.seconds}
