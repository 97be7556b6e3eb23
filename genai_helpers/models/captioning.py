"""Image captioning: an image encoder (CNN or ViT) feeding a text decoder with cross-attention.

Chapter 10 builds every piece inline and checks it equal to this module::

    images (B, 3, H, W) -> encoder -> memory (B, S, d)  ─┐
    <eos> w1 w2 ...     -> decoder: causal self-attn, cross-attn to memory, FFN -> next-word logits

- :func:`~genai_helpers.patches.patchify` / :func:`~genai_helpers.patches.unpatchify` (from
  :mod:`genai_helpers.patches`, re-exported here): cut an image into non-overlapping ``p × p``
  patches in raster order (row by row) and put them back; each patch ordered (channel, row, column), as ``F.unfold`` and a stride-``p`` conv.
- :func:`sinusoidal_positions_2d` and :class:`PatchPositions`: where a patch sits, as a 1-D index
  (ViT) or a (row, column) pair, learned or fixed sine/cosine.
- :class:`CNNEncoder`: convolutions down to a ``g × g`` feature grid, flattened to ``g²`` vectors.
- :class:`ViTEncoder`: patch embedding + positions + transformer blocks (no mask).
- :class:`CaptionDecoder`: word embeddings + learned positions + pre-norm blocks with
  cross-attention (:class:`genai_helpers.transformer.TransformerBlock`), tied output head; can
  return the cross-attention maps (which image region each generated word looked at).
- :class:`Captioner`: encoder + decoder, the training loss, greedy and beam-search captions
  (:func:`genai_helpers.sampling.beam_search`).

The start token is ``<eos>`` (as GPT-2 starts documents with its end-of-text token), so the word
tokenizer of :mod:`genai_helpers.data.text` needs no extra special token.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_probability, check_tensor
from ..patches import patchify, unpatchify   # the book's one patchify (channel-first patches); re-exported
from ..positional import LearnedPositionalEmbedding, sinusoidal_positions
from ..sampling import Beam, beam_search
from ..transformer import TransformerBlock

#: The position encodings a captioner's encoder can add to its image features (chapter 10 compares them).
POSITION_KINDS = ("none", "1d-fixed", "1d-learned", "2d-fixed", "2d-learned")


# ---------------------------------------------------------------------------------- positions

def sinusoidal_positions_2d(n_rows: int, n_cols: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D table ``(n_rows·n_cols, d_model)`` in raster order.

    The first ``d_model/2`` dimensions are the 1-D sinusoidal code of the patch's row, the last
    ``d_model/2`` that of its column (:func:`genai_helpers.positional.sinusoidal_positions`), so
    patches in the same row share the first half and the dot product of two entries depends only
    on the (row, column) offset between them. ``d_model`` must be divisible by 4.
    """
    check_positive_int("n_rows", n_rows)
    check_positive_int("n_cols", n_cols)
    check_positive_int("d_model", d_model)
    if d_model % 4:
        raise ValueError(f"d_model must be divisible by 4 for 2-D sinusoidal positions, got {d_model}")
    half = d_model // 2
    rows = sinusoidal_positions(n_rows, half, base)                     # (R, d/2)
    cols = sinusoidal_positions(n_cols, half, base)                     # (C, d/2)
    return torch.cat([rows[:, None, :].expand(n_rows, n_cols, half),
                      cols[None, :, :].expand(n_rows, n_cols, half)], dim=-1).reshape(n_rows * n_cols, d_model)


class PatchPositions(nn.Module):
    """Adds a position code to a ``(B, rows·cols, d_model)`` sequence of grid cells (raster order).

    ``kind``: ``"none"``; ``"1d-fixed"`` (sine/cosine of the raster index); ``"1d-learned"`` (one
    vector per index, as in ViT: ``rows·cols·d`` parameters); ``"2d-fixed"``
    (:func:`sinusoidal_positions_2d`); ``"2d-learned"`` (a learned row vector and a learned column
    vector of ``d/2`` each, concatenated: ``(rows + cols)·d/2`` parameters).
    """

    def __init__(self, grid: tuple[int, int], d_model: int, kind: str = "2d-learned"):
        super().__init__()
        if kind not in POSITION_KINDS:
            raise ValueError(f"kind must be one of {POSITION_KINDS}, got {kind!r}")
        if not (isinstance(grid, (tuple, list)) and len(grid) == 2):
            raise TypeError(f"grid must be a (rows, cols) pair, got {grid!r}")
        self.rows, self.cols = (check_positive_int("grid", int(g)) for g in grid)
        self.d_model = check_positive_int("d_model", d_model)
        if kind.startswith("2d") and d_model % 4:
            raise ValueError(f"d_model must be divisible by 4 for 2-D positions, got {d_model}")
        self.kind = kind
        n = self.rows * self.cols
        if kind == "1d-fixed":
            self.register_buffer("fixed", sinusoidal_positions(n, d_model), persistent=False)
        elif kind == "2d-fixed":
            self.register_buffer("fixed", sinusoidal_positions_2d(self.rows, self.cols, d_model), persistent=False)
        elif kind == "1d-learned":
            self.embedding = LearnedPositionalEmbedding(d_model, n)
        elif kind == "2d-learned":
            self.row_emb = nn.Parameter(torch.randn(self.rows, d_model // 2) * 0.02)
            self.col_emb = nn.Parameter(torch.randn(self.cols, d_model // 2) * 0.02)

    def table(self) -> torch.Tensor:
        """The ``(rows·cols, d_model)`` codes that :meth:`forward` adds (zeros for ``"none"``)."""
        n, d = self.rows * self.cols, self.d_model
        if self.kind == "none":
            return torch.zeros(n, d)
        if self.kind.endswith("fixed"):
            return self.fixed
        if self.kind == "1d-learned":
            return self.embedding.embedding.weight
        half = d // 2
        return torch.cat([self.row_emb[:, None, :].expand(self.rows, self.cols, half),
                          self.col_emb[None, :, :].expand(self.rows, self.cols, half)], dim=-1).reshape(n, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=3)
        if tuple(x.shape[1:]) != (self.rows * self.cols, self.d_model):
            raise ValueError(f"x must have shape (B, {self.rows * self.cols}, {self.d_model}), got {tuple(x.shape)}")
        if self.kind == "none":
            return x
        return x + self.table().to(x.dtype)


# ----------------------------------------------------------------------------------- encoders

class CNNEncoder(nn.Module):
    """Convolutions down to a feature grid, flattened to a sequence: ``(B, 3, H, W) -> (B, g·g, d_model)``.

    Each stage is ``Conv3×3 -> GELU -> MaxPool2``, so ``len(channels)`` stages shrink a side by
    ``2^len(channels)`` (32 px and three stages: a 4×4 grid of 16 vectors). A 1×1 conv maps the
    last stage to ``d_model``; the grid is read row by row. ``positions`` (a
    :data:`POSITION_KINDS` entry, default ``"2d-fixed"``, no parameters) adds a position code to each cell:
    without one, cross-attention sees an unordered set of cells, and a decoder can tell *left of*
    from *right of* only through what zero padding leaks into the cells' contents (chapter 10
    measures this).
    """

    def __init__(self, image_size: int = 32, d_model: int = 64, channels: tuple[int, ...] = (32, 64, 64),
                 in_channels: int = 3, positions: str = "2d-fixed"):
        super().__init__()
        check_positive_int("image_size", image_size)
        check_positive_int("d_model", d_model)
        check_positive_int("in_channels", in_channels)
        if not channels or not all(isinstance(c, int) and c > 0 for c in channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {channels!r}")
        if image_size % (2 ** len(channels)):
            raise ValueError(f"image_size must be divisible by 2**len(channels) = {2 ** len(channels)}, got {image_size}")
        layers, c_in = [], in_channels
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.GELU(), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, d_model, 1)
        self.grid = (image_size // 2 ** len(channels),) * 2
        self.image_size, self.d_model = image_size, d_model
        self.pos = PatchPositions(self.grid, d_model, positions)
        self.ln = nn.LayerNorm(d_model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_tensor("images", images, ndim=4)
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            raise ValueError(f"images must be {self.image_size}×{self.image_size}, got {tuple(images.shape[-2:])}")
        grid = self.proj(self.features(images))                      # (B, d, g, g)
        seq = grid.flatten(2).transpose(1, 2)                         # (B, g·g, d): row by row
        return self.ln(self.pos(seq))


class ViTEncoder(nn.Module):
    """Vision transformer: patchify -> linear patch embedding -> positions -> ``n_layer`` blocks -> LayerNorm.

    ``(B, 3, H, W) -> (B, (H/p)·(W/p), d_model)``. Every patch attends to every other (no mask),
    so the encoder can relate distant regions in one layer, which a 3×3 convolution cannot.
    """

    def __init__(self, image_size: int = 32, patch_size: int = 4, d_model: int = 64, n_layer: int = 2,
                 n_head: int = 4, in_channels: int = 3, positions: str = "2d-learned", dropout: float = 0.0):
        super().__init__()
        check_positive_int("image_size", image_size)
        check_positive_int("patch_size", patch_size)
        check_positive_int("n_layer", n_layer)
        check_positive_int("in_channels", in_channels)
        check_probability("dropout", dropout)
        if image_size % patch_size:
            raise ValueError(f"patch_size must divide image_size ({image_size}), got {patch_size}")
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.grid = (image_size // patch_size,) * 2
        self.patch_embed = nn.Linear(in_channels * patch_size ** 2, d_model)
        self.pos = PatchPositions(self.grid, d_model, positions)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_head, dropout=dropout) for _ in range(n_layer))
        self.ln = nn.LayerNorm(d_model)
        self.d_model = d_model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_tensor("images", images, ndim=4)
        if tuple(images.shape[1:]) != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(f"images must have shape (B, {self.in_channels}, {self.image_size}, {self.image_size}), "
                             f"got {tuple(images.shape)}")
        x = self.pos(self.patch_embed(patchify(images, self.patch_size)))   # (B, N, d)
        for block in self.blocks:
            x = block(x)
        return self.ln(x)


# ------------------------------------------------------------------------------------ decoder

def block_with_cross_weights(block: TransformerBlock, x: torch.Tensor, context: torch.Tensor):
    """Run a cross-attention ``TransformerBlock`` (causal self-attention) and also return its
    cross-attention weights ``(B, n_head, T, S)``: ``block(x, context, is_causal=True,
    need_cross_weights=True)``."""
    if not isinstance(block, TransformerBlock) or block.cross is None:
        raise ValueError("block must be a TransformerBlock built with cross_attention=True")
    return block(x, context, is_causal=True, need_cross_weights=True)


class CaptionDecoder(nn.Module):
    """Text decoder: ``ids (B, T)`` and image ``memory (B, S, d_context)`` -> logits ``(B, T, vocab)``.

    Word embedding + learned positions -> ``n_layer`` pre-norm blocks (causal self-attention,
    cross-attention to the memory, feed-forward) -> LayerNorm -> output head tied to the word
    embedding. ``max_len`` bounds the caption length (start token included).
    """

    def __init__(self, vocab_size: int, d_model: int = 64, n_layer: int = 2, n_head: int = 4,
                 max_len: int = 24, d_context: int | None = None, dropout: float = 0.0):
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layer", n_layer),
                        ("n_head", n_head), ("max_len", max_len)):
            check_positive_int(name, v)
        check_probability("dropout", dropout)
        self.vocab_size, self.d_model, self.max_len = vocab_size, d_model, max_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos = LearnedPositionalEmbedding(d_model, max_len)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_head, dropout=dropout, cross_attention=True, d_context=d_context)
            for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        self.head.weight = self.tok_emb.weight                       # weight tying

    def forward(self, ids: torch.Tensor, memory: torch.Tensor, *, need_weights: bool = False):
        """Logits ``(B, T, vocab)``; with ``need_weights=True`` also a list (one per layer) of
        cross-attention weights ``(B, n_head, T, S)``: how much word position ``t`` read image cell ``s``."""
        check_tensor("ids", ids, ndim=2)
        check_tensor("memory", memory, ndim=3)
        if ids.shape[0] != memory.shape[0]:
            raise ValueError(f"ids and memory must have the same batch size, got {ids.shape[0]} and {memory.shape[0]}")
        if ids.shape[1] > self.max_len:
            raise ValueError(f"ids length must be <= max_len={self.max_len}, got {ids.shape[1]}")
        x = self.drop(self.pos(self.tok_emb(ids)))
        maps = []
        for block in self.blocks:
            if need_weights:
                x, w = block(x, memory, is_causal=True, need_cross_weights=True)
                maps.append(w)
            else:
                x = block(x, memory, is_causal=True)
        logits = self.head(self.ln_f(x))
        return (logits, maps) if need_weights else logits


# ---------------------------------------------------------------------------------- captioner

class Captioner(nn.Module):
    """An image encoder and a :class:`CaptionDecoder`; the start token is ``bos_id`` (``<eos>`` in the book).

    ``forward(images, ids, targets=None)``: ``ids`` ``(B, T)`` begin with ``bos_id``; ``targets``
    ``(B, T)`` are ``ids`` shifted left (``-100`` = ignore) and give ``(logits, loss)``.
    """

    def __init__(self, encoder: nn.Module, decoder: CaptionDecoder, bos_id: int, eos_id: int):
        super().__init__()
        if not isinstance(decoder, CaptionDecoder):
            raise TypeError(f"decoder must be a CaptionDecoder, got {type(decoder).__name__}")
        for name, v in (("bos_id", bos_id), ("eos_id", eos_id)):
            check_positive_int(name, v, minimum=0)
            if v >= decoder.vocab_size:
                raise ValueError(f"{name} must be < vocab_size={decoder.vocab_size}, got {v}")
        self.encoder, self.decoder = encoder, decoder
        self.bos_id, self.eos_id = bos_id, eos_id

    def forward(self, images: torch.Tensor, ids: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.decoder(ids, self.encoder(images))
        if targets is None:
            return logits
        check_tensor("targets", targets, ndim=2)
        if targets.shape != ids.shape:
            raise ValueError(f"targets must have the shape of ids {tuple(ids.shape)}, got {tuple(targets.shape)}")
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)

    def _check_max_len(self, max_len: int) -> int:
        check_positive_int("max_len", max_len)
        if max_len >= self.decoder.max_len:
            raise ValueError(f"max_len must be < the decoder's max_len={self.decoder.max_len} (start token), got {max_len}")
        return max_len

    @torch.no_grad()
    def greedy(self, images: torch.Tensor, max_len: int = 20) -> list[list[int]]:
        """Greedy captions for a batch: the most likely next word each step, up to ``max_len``
        words; each list ends with ``eos_id`` if the model stopped (the start token is left out)."""
        self._check_max_len(max_len)
        memory = self.encoder(images)
        B = memory.shape[0]
        ids = torch.full((B, 1), self.bos_id, dtype=torch.long, device=memory.device)
        done = torch.zeros(B, dtype=torch.bool, device=memory.device)
        for _ in range(max_len):
            nxt = self.decoder(ids, memory)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.eos_id), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            done |= nxt == self.eos_id
            if bool(done.all()):
                break
        out = []
        for row in ids[:, 1:].tolist():
            out.append(row[:row.index(self.eos_id) + 1] if self.eos_id in row else row)
        return out

    def step_fn(self, image: torch.Tensor):
        """A :func:`genai_helpers.sampling.beam_search` step function for one image ``(3, H, W)``
        (or ``(1, 3, H, W)``): ``ids (beams, T) -> next-word logits (beams, vocab)``; the image is
        encoded once and its memory shared by every beam."""
        check_tensor("image", image, ndim=(3, 4))
        if image.ndim == 3:
            image = image[None]
        if image.shape[0] != 1:
            raise ValueError(f"image must be one image (3, H, W) or (1, 3, H, W), got shape {tuple(image.shape)}")
        with torch.no_grad():
            memory = self.encoder(image)

        @torch.no_grad()
        def step(ids: torch.Tensor) -> torch.Tensor:
            ids = ids.to(memory.device)
            return self.decoder(ids, memory.expand(ids.shape[0], -1, -1))[:, -1].float()

        return step

    def beam(self, image: torch.Tensor, beam_width: int = 3, max_len: int = 20, *,
             length_penalty: float = 1.0, num_return: int | None = None) -> list[Beam]:
        """Beam-search captions for one image, best first (see :func:`genai_helpers.sampling.beam_search`).
        With ``beam_width=1`` and ``length_penalty=0`` the result is the greedy caption."""
        self._check_max_len(max_len)
        return beam_search(self.step_fn(image), [self.bos_id], beam_width, max_len, eos_id=self.eos_id,
                           length_penalty=length_penalty, num_return=num_return)


def caption_batch(captions: list[str], tokenizer, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing tensors for a list of captions: ``(ids, targets)``, each ``(B, max_len)``.

    ``ids`` = ``<eos> w1 … wn <pad>…`` and ``targets`` = ``w1 … wn <eos> -100…``: position ``t``
    learns to predict word ``t + 1``; padding is ignored by the loss. ``tokenizer`` is a
    :class:`genai_helpers.data.text.WordTokenizer` (``encode``, ``eos_id``, ``pad_id``). Raises
    ``ValueError`` when a caption does not fit in ``max_len`` (words + end token).
    """
    check_positive_int("max_len", max_len)
    if isinstance(captions, str) or not captions:
        raise TypeError("captions must be a non-empty list of strings")
    ids = torch.full((len(captions), max_len), tokenizer.pad_id, dtype=torch.long)
    targets = torch.full((len(captions), max_len), -100, dtype=torch.long)
    for i, text in enumerate(captions):
        words = tokenizer.encode(text)
        if len(words) + 1 > max_len:
            raise ValueError(f"max_len must be >= {len(words) + 1} for caption {text!r}, got {max_len}")
        seq = [tokenizer.eos_id] + words
        ids[i, :len(seq)] = torch.tensor(seq)
        targets[i, :len(seq)] = torch.tensor(words + [tokenizer.eos_id])
    return ids, targets


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["POSITION_KINDS", "patchify", "unpatchify", "sinusoidal_positions_2d", "PatchPositions",
           "CNNEncoder", "ViTEncoder", "CaptionDecoder", "block_with_cross_weights", "Captioner",
           "caption_batch", "count_parameters"]
