"""Batching token sequences: one :func:`pad_batch` for every chapter that pads ids.

Chapter 05 pads source and target sentences with the vocabulary's ``<pad>`` id (0); chapter 06
pads SFT inputs with the tokenizer's pad id and SFT targets with ``-100`` (the ignore index of the
cross-entropy). Both call this function (``genai_helpers.data.translation.pad_batch`` and
``genai_helpers.finetuning.alignment.pad_batch`` are re-exports of it).
"""
from __future__ import annotations

from typing import Sequence

import torch

DEFAULT_PAD_VALUE = 0      # the <pad> id of the book's word and subword vocabularies (chapter 05)


def pad_batch(seqs: Sequence[Sequence[int]], pad_value: int = DEFAULT_PAD_VALUE) -> torch.Tensor:
    """Right-pad lists of ints into one ``(B, T)`` int64 tensor, ``T = max(1, longest length)``.

    ``seqs``: a non-empty sequence of ``B`` id sequences (lists, tuples or 1-D tensors; an empty
    sequence becomes a row of padding). ``pad_value``: the int written after each sequence — a pad
    token id, or ``-100`` for targets the loss must ignore. Default 0, chapter 05's ``<pad>``;
    pass the tokenizer's own ``pad_id`` for any other vocabulary.
    """
    if isinstance(seqs, (str, bytes)) or not isinstance(seqs, Sequence):
        raise TypeError(f"seqs must be a sequence of id sequences, got {type(seqs).__name__}")
    if len(seqs) == 0:
        raise ValueError("seqs must hold at least one sequence")
    if not isinstance(pad_value, int) or isinstance(pad_value, bool):
        raise TypeError(f"pad_value must be an int (a token id, or -100 for ignored targets), got {type(pad_value).__name__}")
    width = max(1, max(len(s) for s in seqs))
    out = torch.full((len(seqs), width), pad_value, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, :len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out


__all__ = ["pad_batch", "DEFAULT_PAD_VALUE"]
