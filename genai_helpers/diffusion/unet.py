"""A small text-conditioned U-Net noise predictor (chapter 13 builds it block by block)::

    x_t (B, C, H, W) ──conv──► [ResBlock (+ cross-attention)] ×levels, downsampling ──► middle
                         ◄── [ResBlock (+ cross-attention)] ×levels, upsampling, skip concats ◄─┘
    t ──sinusoid──MLP──► time embedding, added inside every ResBlock (plus the pooled prompt)
    prompt tokens (B, L, d_text) ──► keys/values of every cross-attention block

Shapes: ``x`` ``(B, in_channels, H, W)`` with ``H, W`` divisible by ``2 ** (len(channels) - 1)``;
``t`` int64 ``(B,)``; ``context`` ``(B, L, d_text)``; ``context_mask`` bool ``(B, L)`` (True at real
tokens); ``pooled`` ``(B, d_text)``. Output: predicted noise, the shape of ``x``. Every input
must have the batch size ``B`` of ``x`` (a batch-1 prompt is refused, not broadcast).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_tensor
from ..attention import MultiHeadAttention
from ..positional import timestep_embedding   # defined beside the other positional codes; still importable from here
from ..transformer import FeedForward

__all__ = ["ResBlock", "CrossAttentionBlock", "UNetConfig", "UNet"]


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the (time + prompt) embedding added in between; residual."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int = 8):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2, self.conv2 = nn.GroupNorm(groups, out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]          # (B, out_ch, 1, 1) broadcast over pixels
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class CrossAttentionBlock(nn.Module):
    """Pixels attend to prompt tokens: every pixel is a query, every token a key/value.

    ``(B, C, H, W)`` -> tokens ``(B, H*W, C)`` -> ``x + CrossAttn(LN(x), context)`` ->
    ``x + FFN(LN(x))`` -> back to ``(B, C, H, W)``. Keeps the last attention map in
    ``last_weights`` ``(B, heads, H*W, L)`` when ``keep_weights`` is set (for plots).
    """

    def __init__(self, channels: int, d_text: int, n_heads: int = 4):
        super().__init__()
        self.ln_attn, self.ln_ffn = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.attn = MultiHeadAttention(channels, n_heads, d_context=d_text)
        self.ffn = FeedForward(channels, 2 * channels)
        self.keep_weights, self.last_weights = False, None

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None) -> torch.Tensor:
        B, C, H, W = x.shape
        h = x.flatten(2).transpose(1, 2)                          # (B, H*W, C)
        out = self.attn(self.ln_attn(h), context, key_padding_mask=context_mask, need_weights=self.keep_weights)
        if self.keep_weights:
            out, self.last_weights = out
        h = h + out
        h = h + self.ffn(self.ln_ffn(h))
        return h.transpose(1, 2).reshape(B, C, H, W)


@dataclass
class UNetConfig:
    in_channels: int = 3
    channels: tuple = (32, 64, 64)          # per resolution level, highest resolution first
    attention_levels: tuple = (False, True, True)
    d_text: int = 64                        # width of the prompt tokens
    emb_dim: int = 128                      # time (+ pooled prompt) embedding width
    n_heads: int = 4
    pooled_text: bool = True                # also add the pooled prompt to the time embedding

    def __post_init__(self):
        check_positive_int("in_channels", self.in_channels)
        check_positive_int("d_text", self.d_text)
        check_positive_int("emb_dim", self.emb_dim)
        if len(self.channels) < 1 or len(self.attention_levels) != len(self.channels):
            raise ValueError("channels and attention_levels must be non-empty and of equal length")
        if any(c % 8 for c in self.channels):
            raise ValueError(f"channels must be multiples of 8 (GroupNorm), got {self.channels}")


class UNet(nn.Module):
    """The noise predictor ``eps_theta(x_t, t, prompt)``; see the module docstring for shapes."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = c = config or UNetConfig()
        self.time_mlp = nn.Sequential(nn.Linear(c.emb_dim, c.emb_dim), nn.SiLU(), nn.Linear(c.emb_dim, c.emb_dim))
        self.text_proj = nn.Linear(c.d_text, c.emb_dim) if c.pooled_text else None
        self.conv_in = nn.Conv2d(c.in_channels, c.channels[0], 3, padding=1)
        self.down, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        prev = c.channels[0]
        for i, (ch, att) in enumerate(zip(c.channels, c.attention_levels)):
            self.down.append(ResBlock(prev, ch, c.emb_dim))
            self.down_attn.append(CrossAttentionBlock(ch, c.d_text, c.n_heads) if att else nn.Identity())
            last = i == len(c.channels) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
            prev = ch
        self.mid1 = ResBlock(prev, prev, c.emb_dim)
        self.mid_attn = CrossAttentionBlock(prev, c.d_text, c.n_heads)
        self.mid2 = ResBlock(prev, prev, c.emb_dim)
        self.up, self.up_attn, self.upsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(c.channels))):
            ch, att = c.channels[i], c.attention_levels[i]
            self.up.append(ResBlock(prev + ch, ch, c.emb_dim))       # concat with the skip of this level
            self.up_attn.append(CrossAttentionBlock(ch, c.d_text, c.n_heads) if att else nn.Identity())
            self.upsample.append(nn.Identity() if i == 0 else nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                                          nn.Conv2d(ch, ch, 3, padding=1)))
            prev = ch
        self.norm_out = nn.GroupNorm(8, prev)
        self.conv_out = nn.Conv2d(prev, c.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _attend(self, block, h, context, context_mask):
        return h if isinstance(block, nn.Identity) else block(h, context, context_mask)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None,
                pooled: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        check_tensor("x", x, ndim=4)
        check_tensor("context", context, ndim=3)
        B = x.shape[0]
        for name, value in (("t", t), ("context", context), ("context_mask", context_mask), ("pooled", pooled)):
            if value is not None and (value.ndim == 0 or value.shape[0] != B):
                raise ValueError(f"{name} must have the batch size of x ({B}), got shape {tuple(value.shape)}; "
                                 "a batch-1 prompt is not broadcast: expand it explicitly")
        if x.shape[-1] % 2 ** (len(c.channels) - 1) or x.shape[-2] % 2 ** (len(c.channels) - 1):
            raise ValueError(f"x height and width must be divisible by {2 ** (len(c.channels) - 1)}, got {tuple(x.shape[-2:])}")
        emb = self.time_mlp(timestep_embedding(t, c.emb_dim))
        if self.text_proj is not None:
            if pooled is None:
                raise ValueError("pooled must be given when config.pooled_text is True")
            emb = emb + self.text_proj(pooled)
        h = self.conv_in(x)
        skips = []
        for res, att, down in zip(self.down, self.down_attn, self.downsample):
            h = self._attend(att, res(h, emb), context, context_mask)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb), context, context_mask), emb)
        for res, att, up in zip(self.up, self.up_attn, self.upsample):
            h = self._attend(att, res(torch.cat([h, skips.pop()], dim=1), emb), context, context_mask)
            h = up(h)
        return self.conv_out(F.silu(self.norm_out(h)))
