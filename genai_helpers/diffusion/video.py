"""Text-to-video latent diffusion at toy size (chapter 15).

Shapes: every video tensor a model here takes is ``(B, C, T, H, W)`` — channels, then frames,
then pixels — the layout of ``nn.Conv3d``. (The data set returns ``(n, T, C, H, W)``; move the
frame axis with ``video.transpose(1, 2)``.) Pixels are in [-1, 1].

* :class:`VideoVAE` compresses space **and** time with 3-D convolutions: ``(B, 3, T, H, W)`` ->
  a latent ``(B, latent_channels, T/2, H/2, W/2)``, and back.
* :class:`TemporalConv` and :class:`TemporalAttention` mix information **only along time**: at each
  pixel position separately, across the frames (Make-A-Video, Video LDM). They are what an image
  denoiser lacks to make frames agree with each other.
* :class:`VideoDenoiser` is a factorised ("2-D + 1-D") U-Net: the image U-Net's residual blocks
  and cross-attention to the prompt (:mod:`.unet`) run on every frame on its own, and a temporal
  convolution and temporal attention after each of them link the frames. ``temporal=False``
  leaves the temporal layers out — an image model applied frame by frame — for comparison. It
  carries its own small text encoder (:class:`~.clip.TextEncoder`), trained with the denoiser.
* :func:`add_temporal_layers` is the recipe of Make-A-Video and Video LDM: take a trained image
  (per-frame) denoiser, insert temporal layers whose last projection is zero — so the new model
  starts out computing *exactly* what the image model did — and fine-tune on video.
* :func:`video_denoising_loss` and :func:`train_video_denoiser`: the noise-prediction loss of
  chapter 13 on 5-D latents, with prompt dropout and EMA weights, trained by the package's one
  loop (:func:`~genai_helpers.training.train`).
  Sampling reuses :func:`~.samplers.sample` and :func:`~.guidance.guided_eps_fn` unchanged —
  they work on tensors of any shape.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_probability, check_tensor
from ..attention import MultiHeadAttention
from .clip import TextEncoder
from ..training import TrainConfig, TrainHistory, train
from ..training_hooks import EMA
from .denoising import drop_prompts, epsilon_loss
from .schedules import NoiseSchedule
from .unet import CrossAttentionBlock, ResBlock, timestep_embedding

__all__ = ["frames_to_batch", "batch_to_frames", "VideoVAE", "video_vae_loss", "TemporalConv", "TemporalAttention",
           "VideoDenoiserConfig", "VideoDenoiser", "add_temporal_layers", "video_denoising_loss", "train_video_denoiser"]


def _check_video(name: str, x, channels: int | None = None) -> torch.Tensor:
    check_tensor(name, x, ndim=5)
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must be (B, C={channels}, T, H, W), got shape {tuple(x.shape)}")
    return x


def frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B*T, C, H, W)``: every frame becomes its own image (frame-major per clip)."""
    B, C, T, H, W = _check_video("x", x).shape
    return x.transpose(1, 2).reshape(B * T, C, H, W)


def batch_to_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Inverse of :func:`frames_to_batch`: ``(B*T, C, H, W)`` -> ``(B, C, T, H, W)``."""
    check_tensor("x", x, ndim=4)
    check_positive_int("frames", frames)
    if x.shape[0] % frames:
        raise ValueError(f"x's first dimension ({x.shape[0]}) must be a multiple of frames={frames}")
    BT, C, H, W = x.shape
    return x.reshape(BT // frames, frames, C, H, W).transpose(1, 2)


# --------------------------------------------------------------------------------------------
# Video VAE: 3-D convolutions, stride 2 in time, height and width
# --------------------------------------------------------------------------------------------

def _block3d(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(a, b, 3, padding=1), nn.GroupNorm(8, b), nn.SiLU())


class VideoVAE(nn.Module):
    """Encoder ``x -> (mean, logvar)``, decoder ``z -> x``; one stride-2 3-D conv halves T, H and W.

    ``(B, 3, T, H, W)`` in [-1, 1] <-> latent ``(B, latent_channels, T/2, H/2, W/2)``: with 4 latent
    channels that is ``3 * 8 / 4 = 6`` times fewer numbers. T, H and W must be even.
    """

    def __init__(self, in_channels: int = 3, latent_channels: int = 4, width: int = 32):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("latent_channels", latent_channels)
        check_positive_int("width", width, minimum=8)
        if width % 8:
            raise ValueError(f"width must be a multiple of 8 (GroupNorm), got {width}")
        w = width
        self.in_channels, self.latent_channels = in_channels, latent_channels
        self.encoder = nn.Sequential(_block3d(in_channels, w), nn.Conv3d(w, 2 * w, 3, stride=2, padding=1),
                                     _block3d(2 * w, 2 * w), nn.Conv3d(2 * w, 2 * latent_channels, 1))
        self.decoder = nn.Sequential(nn.Conv3d(latent_channels, 2 * w, 3, padding=1), _block3d(2 * w, 2 * w),
                                     nn.Upsample(scale_factor=2, mode="nearest"), _block3d(2 * w, w),
                                     nn.Conv3d(w, in_channels, 3, padding=1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, T, H, W)`` -> ``mean, logvar`` each ``(B, latent_channels, T/2, H/2, W/2)``."""
        _check_video("x", x, self.in_channels)
        if any(s % 2 for s in x.shape[2:]):
            raise ValueError(f"x frames, height and width must be even, got {tuple(x.shape[2:])}")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent_channels, t, h, w)`` -> ``(B, C, 2t, 2h, 2w)`` in [-1, 1]."""
        _check_video("z", z, self.latent_channels)
        return torch.tanh(self.decoder(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Reconstruct through a sampled latent: returns ``(recon, mean, logvar)``."""
        mean, logvar = self.encode(x)
        z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=generator).to(mean.device)
        return self.decode(z), mean, logvar


def video_vae_loss(recon: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, beta: float = 1e-3):
    """``MSE(recon, x) + beta * KL`` with the KL summed over the latent and divided by the number of
    values in one clip (both terms "per value"). Returns ``(loss, {"recon", "kl"})``."""
    if not isinstance(beta, (int, float)) or beta < 0:
        raise ValueError(f"beta must be a number >= 0, got {beta!r}")
    if recon.shape != x.shape:
        raise ValueError(f"recon must have the shape of x {tuple(x.shape)}, got {tuple(recon.shape)}")
    recon_term = F.mse_loss(recon, x)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean() / x[0].numel()
    return recon_term + beta * kl, {"recon": recon_term.detach(), "kl": kl.detach()}


# --------------------------------------------------------------------------------------------
# Temporal layers: mix along T only, at each (h, w) separately
# --------------------------------------------------------------------------------------------

class TemporalConv(nn.Module):
    """``x + Conv_time(SiLU(LayerNorm(x)))`` with a ``(k, 1, 1)`` kernel: each pixel sees its own
    position in the ``k`` neighbouring frames. ``(B, C, T, H, W)`` -> same shape. The norm is over
    channels at each position (not GroupNorm, whose statistics would mix all pixels and frames)."""

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("kernel", kernel)
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (same-length output), got {kernel}")
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv3d(channels, channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_video("x", x)
        return x + self.conv(F.silu(self.norm(x.movedim(1, -1)).movedim(-1, 1)))


class TemporalAttention(nn.Module):
    """Self-attention across frames at every pixel: ``(B, C, T, H, W)`` -> same shape.

    Each of the ``B*H*W`` pixel positions becomes a sequence of ``T`` tokens (its value in every
    frame) plus a sinusoidal frame-position embedding; ``x + MHA(LN(x + pos))``, then back. Pixels
    never see other pixels here — that is the spatial layers' job.
    """

    def __init__(self, channels: int, n_heads: int = 4):
        super().__init__()
        check_positive_int("channels", channels)
        self.ln = nn.LayerNorm(channels)
        self.attn = MultiHeadAttention(channels, n_heads)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = _check_video("x", x, self.channels).shape
        seq = x.permute(0, 3, 4, 2, 1).reshape(B * H * W, T, C)                    # (B*H*W, T, C)
        pos = timestep_embedding(torch.arange(T, device=x.device), C).to(x.dtype)   # (T, C) frame positions
        seq = seq + self.attn(self.ln(seq + pos))
        return seq.reshape(B, H, W, T, C).permute(0, 4, 3, 1, 2)


# --------------------------------------------------------------------------------------------
# The factorised video denoiser
# --------------------------------------------------------------------------------------------

@dataclass
class VideoDenoiserConfig:
    in_channels: int = 4                 # latent channels of the VideoVAE
    channels: tuple = (32, 64)           # per resolution level, highest first (multiples of 8)
    vocab_size: int = 64                 # the prompt tokenizer's vocabulary
    max_len: int = 8                     # prompt tokens, <eos> included
    d_text: int = 64
    text_depth: int = 2
    emb_dim: int = 128
    n_heads: int = 4
    temporal: bool = True                # False: no temporal conv/attention (an image model per frame)

    def __post_init__(self):
        for name in ("in_channels", "vocab_size", "d_text", "text_depth", "emb_dim", "n_heads"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("max_len", self.max_len, minimum=2)
        if not self.channels or any(not isinstance(c, int) or c < 8 or c % 8 for c in self.channels):
            raise ValueError(f"channels must be a non-empty tuple of multiples of 8, got {self.channels}")
        if not isinstance(self.temporal, bool):
            raise TypeError(f"temporal must be a bool, got {type(self.temporal).__name__}")


class _Stage(nn.Module):
    """ResBlock (per frame) -> [TemporalConv] -> cross-attention to the prompt (per frame) -> [TemporalAttention]."""

    def __init__(self, c_in: int, c_out: int, cfg: VideoDenoiserConfig):
        super().__init__()
        self.res = ResBlock(c_in, c_out, cfg.emb_dim)
        self.cross = CrossAttentionBlock(c_out, cfg.d_text, cfg.n_heads)
        self.tconv = TemporalConv(c_out) if cfg.temporal else None
        self.tattn = TemporalAttention(c_out, cfg.n_heads) if cfg.temporal else None

    def forward(self, h, emb, ctx, ctx_mask, frames):
        h = self.res(h, emb)
        if self.tconv is not None:
            h = frames_to_batch(self.tconv(batch_to_frames(h, frames)))
        h = self.cross(h, ctx, ctx_mask)
        if self.tattn is not None:
            h = frames_to_batch(self.tattn(batch_to_frames(h, frames)))
        return h


class VideoDenoiser(nn.Module):
    """``eps_theta(z_t, t, prompt)`` on video latents ``(B, C, T, H, W)``; H, W divisible by ``2**(levels-1)``.

    ``forward(x, t, ids, mask)``: ``t`` int64 ``(B,)``; ``ids``/``mask`` ``(B, max_len)`` from
    :func:`~.clip.encode_prompts` (the empty prompt is just ``<eos>``). Output: the noise, shaped like ``x``.
    """

    def __init__(self, config: VideoDenoiserConfig | None = None):
        super().__init__()
        self.config = c = config or VideoDenoiserConfig()
        self.text = TextEncoder(c.vocab_size, c.d_text, c.text_depth, c.n_heads, c.max_len)
        self.time_mlp = nn.Sequential(nn.Linear(c.emb_dim, c.emb_dim), nn.SiLU(), nn.Linear(c.emb_dim, c.emb_dim))
        self.text_proj = nn.Linear(c.d_text, c.emb_dim)
        self.conv_in = nn.Conv2d(c.in_channels, c.channels[0], 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        prev = c.channels[0]
        for i, ch in enumerate(c.channels):
            self.down.append(_Stage(prev, ch, c))
            last = i == len(c.channels) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
            prev = ch
        self.mid = _Stage(prev, prev, c)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(c.channels))):
            ch = c.channels[i]
            self.up.append(_Stage(prev + ch, ch, c))
            self.upsample.append(nn.Identity() if i == 0 else nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                                          nn.Conv2d(ch, ch, 3, padding=1)))
            prev = ch
        self.norm_out = nn.GroupNorm(8, prev)
        self.conv_out = nn.Conv2d(prev, c.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        c = self.config
        B, C, T, H, W = _check_video("x", x, c.in_channels).shape
        check_tensor("t", t, ndim=1)
        check_tensor("ids", ids, ndim=2)
        if t.shape[0] != B or ids.shape[0] != B:
            raise ValueError(f"t and ids must have one row per clip ({B}), got {t.shape[0]} and {ids.shape[0]}")
        k = 2 ** (len(c.channels) - 1)
        if H % k or W % k:
            raise ValueError(f"x height and width must be divisible by {k}, got {(H, W)}")
        tokens, pooled = self.text(ids, mask)
        emb = self.time_mlp(timestep_embedding(t, c.emb_dim)) + self.text_proj(pooled)     # (B, emb)
        # every frame is an image that shares its clip's step, prompt and prompt tokens
        emb, ctx, ctx_mask = (v.repeat_interleave(T, dim=0) for v in (emb, tokens, mask))
        h = self.conv_in(frames_to_batch(x))
        skips = []
        for stage, down in zip(self.down, self.downsample):
            h = stage(h, emb, ctx, ctx_mask, T)
            skips.append(h)
            h = down(h)
        h = self.mid(h, emb, ctx, ctx_mask, T)
        for stage, up in zip(self.up, self.upsample):
            h = up(stage(torch.cat([h, skips.pop()], dim=1), emb, ctx, ctx_mask, T))
        return batch_to_frames(self.conv_out(F.silu(self.norm_out(h))), T)


def add_temporal_layers(image_model: VideoDenoiser) -> VideoDenoiser:
    """A ``temporal=True`` copy of a ``temporal=False`` denoiser that starts as that image model.

    Every weight of ``image_model`` (text encoder, residual and cross-attention blocks) is copied;
    the inserted :class:`TemporalConv` and :class:`TemporalAttention` layers get a zero output
    projection, so each is the identity (both are residual) until fine-tuning moves them. The
    returned model's outputs equal ``image_model``'s on any input. ``image_model`` is not changed.
    """
    if not isinstance(image_model, VideoDenoiser):
        raise TypeError(f"image_model must be a VideoDenoiser, got {type(image_model).__name__}")
    if image_model.config.temporal:
        raise ValueError("image_model already has temporal layers (config.temporal=True); pass a temporal=False model")
    cfg = VideoDenoiserConfig(**{**vars(image_model.config), "temporal": True})
    video_model = VideoDenoiser(cfg).to(next(image_model.parameters()).device)
    missing, unexpected = video_model.load_state_dict(image_model.state_dict(), strict=False)
    if unexpected or any(".tconv." not in k and ".tattn." not in k for k in missing):
        raise RuntimeError(f"image and video denoisers differ beyond the temporal layers: {missing}, {unexpected}")
    with torch.no_grad():
        for m in video_model.modules():
            if isinstance(m, TemporalConv):
                m.conv.weight.zero_()
                m.conv.bias.zero_()
            elif isinstance(m, TemporalAttention):
                m.attn.out_proj.weight.zero_()
                if m.attn.out_proj.bias is not None:
                    m.attn.out_proj.bias.zero_()
    return video_model


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def video_denoising_loss(model: nn.Module, x0: torch.Tensor, cond: dict, schedule: NoiseSchedule,
                         generator: torch.Generator | None = None, min_snr_gamma: float | None = None) -> torch.Tensor:
    """``|| eps - model(x_t, t, **cond) ||^2`` on clips ``x0`` ``(B, C, T, H, W)``, ``t ~ U{0..T-1}``.

    Same recipe as :func:`~.denoising.denoising_loss` (draws ``t`` then the noise from
    ``generator``, optional Min-SNR weighting), for 5-D tensors.
    """
    _check_video("x0", x0)
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    return epsilon_loss(model, x0, cond, schedule, generator, min_snr_gamma)


def train_video_denoiser(model: nn.Module, latents: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                         null_prompt: tuple[torch.Tensor, torch.Tensor], schedule: NoiseSchedule, *, steps: int,
                         batch_size: int = 32, lr: float = 2e-3, warmup: int = 50, p_uncond: float = 0.15,
                         ema_decay: float = 0.995, seed: int = 0, log_every: int = 25,
                         min_snr_gamma: float | None = 5.0, time_budget_s: float | None = None) -> tuple[EMA, TrainHistory]:
    """AdamW, linear warm-up then cosine decay to 0, prompt dropout, gradient clipping at 1, EMA weights,
    in fp32, through :func:`~genai_helpers.training.train`.

    ``latents`` ``(N, C, T, H, W)``; ``prompt_ids``/``prompt_mask`` ``(N, max_len)``, one encoded
    prompt per clip (:func:`~.clip.encode_prompts`); ``null_prompt`` the ``(ids, mask)`` of the
    empty prompt ``""``, each ``(1, max_len)``, which replaces a prompt with probability
    ``p_uncond``. Returns ``(ema, history)`` (a :class:`~genai_helpers.training.TrainHistory`);
    stops after the current step once ``time_budget_s`` is spent, and the cosine is laid out so
    that it has then decayed to 0 (the position in the run is the larger of the fraction of
    ``steps`` and the fraction of ``time_budget_s`` done).
    """
    _check_video("latents", latents)
    check_tensor("prompt_ids", prompt_ids, ndim=2)
    check_tensor("prompt_mask", prompt_mask, ndim=2)
    if prompt_ids.shape[0] != latents.shape[0] or prompt_mask.shape != prompt_ids.shape:
        raise ValueError(f"prompt_ids and prompt_mask must be (N={latents.shape[0]}, max_len), "
                         f"got {tuple(prompt_ids.shape)} and {tuple(prompt_mask.shape)}")
    null_ids, null_mask = null_prompt
    if tuple(null_ids.shape) != (1, prompt_ids.shape[1]) or null_mask.shape != null_ids.shape:
        raise ValueError(f"null_prompt must be (ids, mask) each of shape (1, {prompt_ids.shape[1]})")
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_positive_int("warmup", warmup, minimum=0)
    check_probability("p_uncond", p_uncond)
    gen = torch.Generator().manual_seed(seed)          # one stream: batch, prompt dropout, then t and noise
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    ema = EMA(model, ema_decay)

    def batch_fn(i):
        idx = torch.randint(0, latents.shape[0], (batch_size,), generator=gen)
        keep = drop_prompts(torch.ones(batch_size, dtype=torch.long), p_uncond, gen).bool()[:, None]
        ids = torch.where(keep, prompt_ids[idx], null_ids)
        mask = torch.where(keep, prompt_mask[idx], null_mask)
        return latents[idx], {"ids": ids, "mask": mask}

    def loss_fn(net, batch):
        x0, cond = batch
        return video_denoising_loss(net, x0, cond, schedule, gen, min_snr_gamma)

    config = TrainConfig(steps=steps, grad_clip=1.0, precision="fp32", log_every=log_every, progress=False,
                         live_plot=False, time_budget_s=time_budget_s, lr_schedule="cosine", warmup_steps=warmup,
                         min_lr_ratio=0.0)
    return ema, train(model, opt, batch_fn, config, loss_fn=loss_fn, hooks=[ema])
