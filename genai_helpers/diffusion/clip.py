"""A CLIP-style text-image encoder trained contrastively in the book, and CLIPScore (chapter 13).

Two encoders map a caption and an image into one ``embed_dim`` space; training pulls matching
pairs together and pushes the other pairs of the batch apart (symmetric InfoNCE, Radford et al.
2021). The text encoder's *token* outputs are also what the diffusion models attend to, the way
Stable Diffusion uses CLIP's text encoder.

CLIPScore (Hessel et al. 2021) is ``100 * max(cos(image, text), 0)``. Ours is computed with this
small encoder trained on the book's shapes, so its values are not comparable with scores from
OpenAI's CLIP.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_tensor
from ..data.text import WordTokenizer
from ..transformer import TransformerBlock

__all__ = ["encode_prompts", "TextEncoder", "ImageEncoder", "CLIP", "clip_loss", "clip_score"]


def encode_prompts(tokenizer: WordTokenizer, prompts: Sequence[str], max_len: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Word ids with ``<eos>`` appended, right-padded: ``(ids (B, max_len) int64, mask (B, max_len) bool)``.

    The empty prompt ``""`` becomes just ``<eos>``: it is the "no prompt" input of classifier-free
    guidance. Prompts longer than ``max_len - 1`` words raise ValueError.
    """
    if not isinstance(tokenizer, WordTokenizer):
        raise TypeError(f"tokenizer must be a WordTokenizer, got {type(tokenizer).__name__}")
    check_positive_int("max_len", max_len, minimum=2)
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string")
    ids = torch.full((len(prompts), max_len), tokenizer.pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        words = tokenizer.encode(p) + [tokenizer.eos_id]
        if len(words) > max_len:
            raise ValueError(f"prompt {p!r} has {len(words)} tokens with <eos>; max_len is {max_len}")
        ids[i, :len(words)] = torch.tensor(words)
    return ids, ids != tokenizer.pad_id


class TextEncoder(nn.Module):
    """Token + position embeddings, ``depth`` transformer blocks, final LayerNorm.

    ``forward(ids, mask)`` returns ``(tokens (B, L, d), pooled (B, d))``; ``pooled`` is the output at
    the ``<eos>`` position (the last real token), as in CLIP.
    """

    def __init__(self, vocab_size: int, d_model: int = 64, depth: int = 2, n_heads: int = 4, max_len: int = 8):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(torch.randn(1, max_len, d_model) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, 2 * d_model) for _ in range(depth))
        self.ln = nn.LayerNorm(d_model)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_tensor("ids", ids, ndim=2)
        h = self.tok(ids) + self.pos[:, :ids.shape[1]]
        for block in self.blocks:
            h = block(h, key_padding_mask=mask)
        h = self.ln(h)
        last = mask.long().sum(1) - 1                                   # index of <eos>
        return h, h[torch.arange(h.shape[0]), last]


class ImageEncoder(nn.Module):
    """Three stride-2 conv stages (GroupNorm, SiLU) and a global average pool: ``(B, C, H, W)`` -> ``(B, width)``."""

    def __init__(self, in_channels: int = 3, width: int = 64):
        super().__init__()
        chans = [in_channels, width // 2, width, width]
        layers = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.GroupNorm(8, b), nn.SiLU(),
                       nn.Conv2d(b, b, 3, padding=1), nn.GroupNorm(8, b), nn.SiLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))


class CLIP(nn.Module):
    """Text and image encoders with linear projections into a shared, unit-normalised space.

    Images in ``[-1, 1]``, ``(B, 3, H, W)``. ``logit_scale`` starts at ``log(1/0.07)`` and is learned.
    """

    def __init__(self, tokenizer: WordTokenizer, embed_dim: int = 64, d_text: int = 64, max_len: int = 8):
        super().__init__()
        self.tokenizer, self.max_len = tokenizer, max_len
        self.text = TextEncoder(len(tokenizer), d_text, max_len=max_len)
        self.image = ImageEncoder(3, 64)
        self.text_proj = nn.Linear(d_text, embed_dim, bias=False)
        self.image_proj = nn.Linear(64, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def tokenize(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_prompts(self.tokenizer, prompts, self.max_len)

    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.logit_scale.device), mask.to(self.logit_scale.device)
        return F.normalize(self.text_proj(self.text(ids, mask)[1]), dim=-1)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        check_tensor("images", images, ndim=4)
        return F.normalize(self.image_proj(self.image(images)), dim=-1)

    def forward(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """The contrastive loss of a batch of matching (image, prompt) pairs."""
        return clip_loss(self.embed_images(images), self.embed_text(prompts), self.logit_scale.exp())


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric cross-entropy over the ``(B, B)`` similarity matrix; pair ``i`` matches ``i``.

    Pass ``targets`` (``(B,)`` ids) to treat every pair with the same id as a match (our
    captions repeat: 18 shape/colour combinations), spreading the target mass over them.
    """
    check_tensor("image_emb", image_emb, ndim=2)
    check_tensor("text_emb", text_emb, ndim=2)
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"text_emb must have the shape of image_emb {tuple(image_emb.shape)}, got {tuple(text_emb.shape)}")
    logits = logit_scale * image_emb @ text_emb.T                      # (B, B) image i vs text j
    if targets is None:
        labels = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    same = (targets[:, None] == targets[None, :]).float()
    soft = same / same.sum(1, keepdim=True)
    return (-(soft * logits.log_softmax(1)).sum(1).mean() - (soft * logits.T.log_softmax(1)).sum(1).mean()) / 2


@torch.no_grad()
def clip_score(model: CLIP, images: torch.Tensor, prompts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """Per-pair CLIPScore ``100 * max(cos(image_i, prompt_i), 0)``, ``(B,)``; images in ``[-1, 1]``."""
    if not isinstance(model, CLIP):
        raise TypeError(f"model must be a CLIP, got {type(model).__name__}")
    check_tensor("images", images, ndim=4)
    if len(prompts) != images.shape[0]:
        raise ValueError(f"prompts must have one entry per image ({images.shape[0]}), got {len(prompts)}")
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, images.shape[0], batch_size):
        img = model.embed_images(images[i:i + batch_size].to(model.logit_scale.device))
        txt = model.embed_text(list(prompts[i:i + batch_size]))
        out.append(100 * (img * txt).sum(-1).clamp(min=0))
    model.train(was_training)
    return torch.cat(out).cpu()
