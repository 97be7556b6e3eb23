"""Visual question answering: the captioner's image encoder and a text decoder that reads a question
(chapter 10).

::

    images (B, 3, H, W) -> encoder -> memory (B, S, d)  ─┐
    <eos> q1 q2 ... qn  -> CaptionDecoder (causal self-attn, cross-attn to memory) -> logits at qn
                                                          -> restricted to the answer words

The answer is the next word after the question, read from the decoder's logits at the last
question token and restricted to ``answer_ids`` (a classification over one-word answers, as the
VQA v2 benchmark scores its most common answers). With ``encoder=None`` the model is *blind*: its
decoder cross-attends to one learned vector instead of the image, the question-only baseline.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_tensor
from .captioning import CaptionDecoder


class VQAModel(nn.Module):
    """``forward(images, ids, lengths, targets=None)`` -> answer logits ``(B, n_answers)`` (and the loss).

    ``ids`` ``(B, T)``: ``<eos>`` then the question's words, right-padded; ``lengths`` ``(B,)``: real
    tokens per row (start token included), so row ``b`` is answered from position ``lengths[b] - 1``.
    ``targets`` ``(B,)``: index of the right answer in ``answer_ids``. ``encoder=None`` builds the
    question-only baseline (``images`` is then ignored and may be ``None``); it needs a decoder
    whose cross-attention reads width ``d_model``.
    """

    def __init__(self, encoder: nn.Module | None, decoder: CaptionDecoder, answer_ids: list[int]):
        super().__init__()
        if not isinstance(decoder, CaptionDecoder):
            raise TypeError(f"decoder must be a CaptionDecoder, got {type(decoder).__name__}")
        if isinstance(answer_ids, (str, bytes)) or len(answer_ids) < 2:
            raise ValueError(f"answer_ids must list at least 2 token ids, got {answer_ids!r}")
        if len(set(answer_ids)) != len(answer_ids) or not all(
                isinstance(a, int) and 0 <= a < decoder.vocab_size for a in answer_ids):
            raise ValueError(f"answer_ids must be distinct ints in [0, {decoder.vocab_size}), got {answer_ids!r}")
        self.encoder, self.decoder = encoder, decoder
        self.register_buffer("answer_ids", torch.tensor(answer_ids, dtype=torch.long), persistent=False)
        self.null_memory = nn.Parameter(torch.randn(1, 1, decoder.d_model) * 0.02) if encoder is None else None

    @property
    def blind(self) -> bool:
        return self.encoder is None

    def memory(self, images: torch.Tensor | None, batch: int) -> torch.Tensor:
        """What the decoder cross-attends to: the image's ``(B, S, d)`` vectors, or (blind) one learned vector."""
        if self.blind:
            return self.null_memory.expand(batch, -1, -1)
        check_tensor("images", images, ndim=4)
        return self.encoder(images)

    def forward(self, images, ids: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor | None = None):
        check_tensor("ids", ids, ndim=2)
        check_tensor("lengths", lengths, ndim=1)
        if lengths.shape[0] != ids.shape[0]:
            raise ValueError(f"lengths must have one entry per row of ids ({ids.shape[0]}), got {lengths.shape[0]}")
        if bool((lengths < 1).any()) or bool((lengths > ids.shape[1]).any()):
            raise ValueError(f"lengths must be in [1, {ids.shape[1]}] (the width of ids)")
        if not self.blind and images.shape[0] != ids.shape[0]:
            raise ValueError(f"images and ids must have the same batch size, got {images.shape[0]} and {ids.shape[0]}")
        logits = self.decoder(ids, self.memory(images, ids.shape[0]))          # (B, T, vocab)
        last = logits[torch.arange(ids.shape[0], device=ids.device), lengths.to(ids.device) - 1]   # (B, vocab)
        answer_logits = last[:, self.answer_ids]                                # (B, n_answers)
        if targets is None:
            return answer_logits
        check_tensor("targets", targets, ndim=1)
        return answer_logits, F.cross_entropy(answer_logits, targets)

    @torch.no_grad()
    def predict(self, images, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Index (into ``answer_ids``) of the most likely answer, ``(B,)``."""
        return self(images, ids, lengths).argmax(-1)


def question_batch(questions: list[str], tokenizer, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids (B, max_len), lengths (B,))`` for a list of questions: ``<eos> w1 … wn <pad>…``.

    ``tokenizer`` is a :class:`genai_helpers.data.text.WordTokenizer`. Raises ``ValueError`` when a
    question does not fit in ``max_len`` (words + start token).
    """
    check_positive_int("max_len", max_len)
    if isinstance(questions, str) or not questions:
        raise TypeError("questions must be a non-empty list of strings")
    ids = torch.full((len(questions), max_len), tokenizer.pad_id, dtype=torch.long)
    lengths = torch.empty(len(questions), dtype=torch.long)
    for i, q in enumerate(questions):
        seq = [tokenizer.eos_id] + tokenizer.encode(q)
        if len(seq) > max_len:
            raise ValueError(f"max_len must be >= {len(seq)} for question {q!r}, got {max_len}")
        ids[i, :len(seq)] = torch.tensor(seq)
        lengths[i] = len(seq)
    return ids, lengths


__all__ = ["VQAModel", "question_batch"]
