"""A video Diffusion Transformer with 3-D (spatio-temporal) patches, chapter 15.

The data flow::

    z_t (B, C, T, H, W) ──patchify_video──► (B, N, pt*ph*pw*C), N = (T/pt)(H/ph)(W/pw) tubelets
        ──linear + learned positions──► N tokens of width d
        ──► chapter 13's DiT blocks (DiTBlock): full self-attention over *all* N tokens
            (every frame and every place at once) + MLP, LayerNorms modulated by the condition
        ──► modulated LayerNorm + linear ──► (B, N, pt*ph*pw*C) ──unpatchify_video──► noise (B, C, T, H, W)

The factorised U-Net of :mod:`genai_helpers.diffusion.video` mixes space and time in separate layers (2-D per frame,
then 1-D per pixel); this model mixes them in one attention over space-time tokens, as Sora-style
systems do. The condition is chapter 13's: ``time MLP(sinusoidal t) + linear(pooled prompt)``
entering every block through adaLN-Zero, so each block starts as the identity and the output head
starts at zero. The prompt is read by the same small text encoder as
:class:`~genai_helpers.diffusion.video.VideoDenoiser` (:class:`~.clip.TextEncoder`), trained with the model, and the call
``model(x, t, ids, mask)`` is the same, so :func:`~.video.train_video_denoiser` and the samplers
take either model.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_tensor
from ..positional import timestep_embedding
from .clip import TextEncoder
from .dit import DiTBlock, modulate

__all__ = ["patchify_video", "unpatchify_video", "VideoDiTConfig", "VideoDiT"]


def _check_patch(patch) -> tuple[int, int, int]:
    if not (isinstance(patch, (tuple, list)) and len(patch) == 3):
        raise TypeError(f"patch must be a (frames, height, width) triple of ints, got {patch!r}")
    return tuple(check_positive_int("patch", p) for p in patch)


def patchify_video(x: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B, N, pt*ph*pw*C)`` tubelet tokens, ``N = (T/pt)(H/ph)(W/pw)``.

    Tubelets are numbered frame-block first, then row, then column (raster order within each
    block of ``pt`` frames); inside a token the numbers are ordered ``(frame, row, column, channel)``
    — chapter 13's DiT layout (:func:`~.dit.patchify`) with a frame axis in front. With
    ``patch = (1, p, p)`` each frame is patchified on its own, as an image DiT would.
    """
    check_tensor("x", x, ndim=5)
    pt, ph, pw = _check_patch(patch)
    B, C, T, H, W = x.shape
    if T % pt or H % ph or W % pw:
        raise ValueError(f"patch {(pt, ph, pw)} must divide (frames, height, width) {(T, H, W)}")
    gt, gh, gw = T // pt, H // ph, W // pw
    x = x.reshape(B, C, gt, pt, gh, ph, gw, pw)
    return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(B, gt * gh * gw, pt * ph * pw * C)


def unpatchify_video(tokens: torch.Tensor, patch: tuple[int, int, int], grid: tuple[int, int, int],
                     channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify_video`: ``(B, gt*gh*gw, pt*ph*pw*C)`` -> ``(B, C, gt*pt, gh*ph, gw*pw)``.

    ``grid`` is the number of tubelets along ``(frames, height, width)``.
    """
    check_tensor("tokens", tokens, ndim=3)
    pt, ph, pw = _check_patch(patch)
    check_positive_int("channels", channels)
    if not (isinstance(grid, (tuple, list)) and len(grid) == 3):
        raise TypeError(f"grid must be a (frames, height, width) triple of tubelet counts, got {grid!r}")
    gt, gh, gw = (check_positive_int("grid", g) for g in grid)
    B, N, D = tokens.shape
    if N != gt * gh * gw or D != pt * ph * pw * channels:
        raise ValueError(f"tokens must have shape (B, {gt * gh * gw}, {pt * ph * pw * channels}) for grid {tuple(grid)}, "
                         f"patch {(pt, ph, pw)}, channels {channels}; got {tuple(tokens.shape)}")
    x = tokens.reshape(B, gt, gh, gw, pt, ph, pw, channels).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.reshape(B, channels, gt * pt, gh * ph, gw * pw)


@dataclass
class VideoDiTConfig:
    vocab_size: int = 64
    in_channels: int = 4                 # latent channels
    frames: int = 4                      # latent frames
    size: int = 8                        # latent height = width
    patch: tuple = (2, 2, 2)             # tubelet: frames x rows x columns
    d_model: int = 128
    depth: int = 4
    n_heads: int = 4
    mlp_ratio: int = 4
    max_len: int = 8                     # prompt tokens, <eos> included
    d_text: int = 64
    text_depth: int = 2

    def __post_init__(self):
        for name in ("vocab_size", "in_channels", "frames", "size", "d_model", "depth", "n_heads", "mlp_ratio",
                     "d_text", "text_depth"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("max_len", self.max_len, minimum=2)
        pt, ph, pw = _check_patch(self.patch)
        if self.frames % pt or self.size % ph or self.size % pw:
            raise ValueError(f"patch {self.patch} must divide (frames, size, size) {(self.frames, self.size, self.size)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads must divide d_model {self.d_model}, got {self.n_heads}")

    @property
    def grid(self) -> tuple[int, int, int]:
        """Tubelets along (frames, height, width)."""
        pt, ph, pw = self.patch
        return self.frames // pt, self.size // ph, self.size // pw

    @property
    def n_tokens(self) -> int:
        gt, gh, gw = self.grid
        return gt * gh * gw


class VideoDiT(nn.Module):
    """``eps_theta(z_t, t, prompt)`` on video latents ``(B, in_channels, frames, size, size)``.

    ``forward(x, t, ids, mask)`` as :class:`~genai_helpers.diffusion.video.VideoDenoiser`: ``t`` int64 ``(B,)``,
    ``ids``/``mask`` ``(B, max_len)`` from :func:`~.clip.encode_prompts`. Output: the noise, shaped like ``x``.
    """

    def __init__(self, config: VideoDiTConfig | None = None):
        super().__init__()
        self.config = c = config or VideoDiTConfig()
        pt, ph, pw = c.patch
        token_dim = pt * ph * pw * c.in_channels
        self.text = TextEncoder(c.vocab_size, c.d_text, c.text_depth, c.n_heads, c.max_len)
        self.embed = nn.Linear(token_dim, c.d_model)
        self.pos = nn.Parameter(torch.randn(1, c.n_tokens, c.d_model) * 0.02)      # one learned vector per tubelet
        self.time_mlp = nn.Sequential(nn.Linear(c.d_model, c.d_model), nn.SiLU(), nn.Linear(c.d_model, c.d_model))
        self.text_proj = nn.Linear(c.d_text, c.d_model)
        self.blocks = nn.ModuleList(DiTBlock(c.d_model, c.n_heads, c.mlp_ratio) for _ in range(c.depth))
        self.ln_out = nn.LayerNorm(c.d_model, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(c.d_model, 2 * c.d_model)
        self.head = nn.Linear(c.d_model, token_dim)
        for layer in (self.ada_out, self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        c = self.config
        check_tensor("x", x, ndim=5)
        if tuple(x.shape[1:]) != (c.in_channels, c.frames, c.size, c.size):
            raise ValueError(f"x must have shape (B, {c.in_channels}, {c.frames}, {c.size}, {c.size}), got {tuple(x.shape)}")
        check_tensor("t", t, ndim=1)
        check_tensor("ids", ids, ndim=2)
        if t.shape[0] != x.shape[0] or ids.shape[0] != x.shape[0]:
            raise ValueError(f"t and ids must have one row per clip ({x.shape[0]}), got {t.shape[0]} and {ids.shape[0]}")
        _, pooled = self.text(ids, mask)
        cond = self.time_mlp(timestep_embedding(t, c.d_model)) + self.text_proj(pooled)    # (B, d)
        h = self.embed(patchify_video(x, c.patch)) + self.pos                               # (B, N, d)
        for block in self.blocks:
            h = block(h, cond)                                                              # attention over all N tokens
        shift, scale = self.ada_out(F.silu(cond)).chunk(2, dim=-1)
        h = self.head(modulate(self.ln_out(h), shift, scale))                               # (B, N, pt*ph*pw*C)
        return unpatchify_video(h, c.patch, c.grid, c.in_channels)
