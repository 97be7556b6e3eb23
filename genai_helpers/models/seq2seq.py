"""An encoder-decoder transformer for translation (chapter 05), built from the chapter 01 blocks::

    source ids ──► embed + positions ──► N encoder blocks (full self-attention, padding mask) ──► memory
    target ids ──► embed + positions ──► N decoder blocks (causal self-attention,
                                                          cross-attention to memory) ──► LN ──► logits

The blocks are :class:`genai_helpers.transformer.TransformerBlock` (pre-LayerNorm); the decoder
blocks are built with ``cross_attention=True``. Source and target may share one vocabulary and
one embedding table (``share_embeddings=True``, needed when one model reads and writes both
languages, as in denoising pretraining) or keep two. The output head is tied to the target
embedding.

Shapes: ``src`` ``(B, S)`` and ``tgt`` ``(B, T)`` token ids, right-padded with ``pad_id``;
``memory`` ``(B, S, d_model)``; logits ``(B, T, tgt_vocab_size)``.

Decoding: :meth:`Seq2SeqTransformer.greedy_decode` (batched) and
:meth:`Seq2SeqTransformer.beam_decode`, which runs :func:`genai_helpers.sampling.beam_search`
over a step function that re-runs the decoder on the prefix (no KV cache: sentences here are
short, and the code stays readable).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_probability, check_tensor
from ..positional import SinusoidalPositionalEncoding
from ..sampling import Beam, beam_search
from ..transformer import TransformerBlock


@dataclass
class Seq2SeqConfig:
    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 128
    n_heads: int = 4
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    d_ff: int | None = None           # default 4 * d_model
    dropout: float = 0.1
    max_len: int = 256                # longest source or target sequence (sinusoidal table size)
    share_embeddings: bool = False    # one embedding table for both sides (needs equal vocab sizes)
    embed_init_std: float | None = None   # std of the embedding init; None = 0.02 (as the linear layers).
    # d_model ** -0.5 is the original Transformer's choice: with the sqrt(d_model) input scaling the
    # token vectors then start with unit variance per coordinate, the scale of the sinusoidal table.
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self):
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "n_encoder_layers",
                     "n_decoder_layers", "max_len"):
            check_positive_int(name, getattr(self, name))
        if self.d_ff is not None:
            check_positive_int("d_ff", self.d_ff)
        check_probability("dropout", self.dropout)
        if self.embed_init_std is not None:
            if isinstance(self.embed_init_std, bool) or not isinstance(self.embed_init_std, (int, float)):
                raise TypeError(f"embed_init_std must be a float or None, got {type(self.embed_init_std).__name__}")
            if not 0 < self.embed_init_std <= 10:
                raise ValueError(f"embed_init_std must be in (0, 10], got {self.embed_init_std}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads must divide d_model ({self.d_model}), got {self.n_heads}")
        if self.d_model % 2:
            raise ValueError(f"d_model must be even (sinusoidal positions), got {self.d_model}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError("share_embeddings=True needs src_vocab_size == tgt_vocab_size, got "
                             f"{self.src_vocab_size} and {self.tgt_vocab_size}")
        for name in ("pad_id", "bos_id", "eos_id"):
            value = check_positive_int(name, getattr(self, name), minimum=0)
            if value >= min(self.src_vocab_size, self.tgt_vocab_size):
                raise ValueError(f"{name} must be < the vocabulary sizes, got {value}")
        if len({self.pad_id, self.bos_id, self.eos_id}) != 3:
            raise ValueError("pad_id, bos_id and eos_id must be three different ids")


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder transformer; ``forward(src, tgt_in, tgt_out)`` returns ``(logits, loss)``.

    ``tgt_in`` is the target shifted right (``<bos> y1 .. y_{T-1}``), ``tgt_out`` the target
    (``y1 .. y_T <eos>``); the loss is the mean cross-entropy over non-padding positions of
    ``tgt_out`` (``None`` when ``tgt_out`` is not given). This ``(output, loss)`` shape is what
    :func:`genai_helpers.training.train` expects from ``model(*batch)``.
    """

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        if not isinstance(config, Seq2SeqConfig):
            raise TypeError(f"config must be a Seq2SeqConfig, got {type(config).__name__}")
        self.config = c = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_embed = self.src_embed if c.share_embeddings else nn.Embedding(c.tgt_vocab_size, c.d_model)
        self.positions = SinusoidalPositionalEncoding(c.d_model, c.max_len)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(TransformerBlock(c.d_model, c.n_heads, c.d_ff, c.dropout)
                                     for _ in range(c.n_encoder_layers))
        self.ln_enc = nn.LayerNorm(c.d_model)
        self.decoder = nn.ModuleList(TransformerBlock(c.d_model, c.n_heads, c.d_ff, c.dropout, cross_attention=True)
                                     for _ in range(c.n_decoder_layers))
        self.ln_dec = nn.LayerNorm(c.d_model)
        self.apply(self._init)

    def _init(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            std = 0.02 if self.config.embed_init_std is None else float(self.config.embed_init_std)
            nn.init.normal_(module.weight, std=std)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ checks and embeddings
    def _check_ids(self, name: str, ids, vocab_size: int) -> torch.Tensor:
        check_tensor(name, ids, ndim=2)
        if ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{name} must hold integer token ids, got {ids.dtype}")
        if ids.shape[1] == 0 or ids.shape[1] > self.config.max_len:
            raise ValueError(f"{name} length must be in [1, max_len={self.config.max_len}], got {ids.shape[1]}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
            raise ValueError(f"{name} ids must lie in [0, {vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")
        return ids

    def _embed(self, table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        # Scale by sqrt(d) so the token signal is not drowned by the [-1, 1] position table.
        return self.drop(self.positions(table(ids) * math.sqrt(self.config.d_model)))

    def source_mask(self, src: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` boolean, ``True`` at real source tokens (the attention module's convention)."""
        return src != self.config.pad_id

    # ------------------------------------------------------------------ encoder and decoder
    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Source ids ``(B, S)`` -> memory ``(B, S, d_model)``. Padding keys are masked in every block."""
        self._check_ids("src", src, self.config.src_vocab_size)
        src_mask = self.source_mask(src) if src_mask is None else src_mask
        x = self._embed(self.src_embed, src)
        for block in self.encoder:
            x = block(x, key_padding_mask=src_mask)            # full (bidirectional) self-attention
        return self.ln_enc(x)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor, *,
               last_only: bool = False) -> torch.Tensor:
        """Target prefix ``(B, T)`` + memory ``(B, S, d)`` -> next-token logits ``(B, T, tgt_vocab)``
        (``(B, 1, tgt_vocab)`` with ``last_only``: decoding needs only the last position's, and the
        output head is most of a small model's work).

        Causal self-attention (position t sees targets ``<= t``) and cross-attention to the real
        source tokens. Right padding in ``tgt_in`` needs no mask: the causal mask already hides
        later positions from every real one.
        """
        self._check_ids("tgt_in", tgt_in, self.config.tgt_vocab_size)
        check_tensor("memory", memory, ndim=3)
        if memory.shape[0] != tgt_in.shape[0]:
            raise ValueError(f"memory batch {memory.shape[0]} must equal tgt_in batch {tgt_in.shape[0]}")
        y = self._embed(self.tgt_embed, tgt_in)
        for block in self.decoder:
            y = block(y, memory, is_causal=True, context_padding_mask=src_mask)
        if last_only:
            y = y[:, -1:]
        return self.ln_dec(y) @ self.tgt_embed.weight.T        # tied output head

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor | None = None):
        src_mask = self.source_mask(src)
        logits = self.decode(tgt_in, self.encode(src, src_mask), src_mask)
        loss = None
        if tgt_out is not None:
            check_tensor("tgt_out", tgt_out, ndim=2)
            if tgt_out.shape != tgt_in.shape:
                raise ValueError(f"tgt_out must have the shape of tgt_in {tuple(tgt_in.shape)}, got {tuple(tgt_out.shape)}")
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                                   ignore_index=self.config.pad_id)
        return logits, loss

    @torch.no_grad()
    def cross_attention(self, src: torch.Tensor, tgt_in: torch.Tensor) -> list[torch.Tensor]:
        """Cross-attention weights of every decoder block: a list of ``(B, n_heads, T, S)`` tensors.

        Row t says which source tokens the decoder looked at while predicting target token t+1
        (rows sum to 1 over the real source tokens). The decoder is re-run with every block
        asked for its cross-attention weights (``need_cross_weights=True``).
        """
        src_mask = self.source_mask(src)
        memory = self.encode(src, src_mask)
        self._check_ids("tgt_in", tgt_in, self.config.tgt_vocab_size)
        y = self._embed(self.tgt_embed, tgt_in)
        maps = []
        for block in self.decoder:
            y, w = block(y, memory, is_causal=True, context_padding_mask=src_mask, need_cross_weights=True)
            maps.append(w)
        return maps

    # ------------------------------------------------------------------ decoding
    def _check_decode_args(self, src, max_len, no_repeat_ngram_size: int = 0) -> None:
        self._check_ids("src", src, self.config.src_vocab_size)
        check_positive_int("max_len", max_len)
        if max_len + 1 > self.config.max_len:
            raise ValueError(f"max_len must be < config.max_len ({self.config.max_len}), got {max_len}")
        check_positive_int("no_repeat_ngram_size", no_repeat_ngram_size, minimum=0)

    def _next_logits(self, ys: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor,
                     no_repeat_ngram_size: int = 0) -> torch.Tensor:
        """Next-token logits ``(B, tgt_vocab)`` (float32) after the prefixes ``ys`` ``(B, t)``, with
        ``<pad>`` set to ``-inf``: padding is never emitted (the loss never trained it as an output).
        With ``no_repeat_ngram_size = n > 0`` a token that would repeat an n-gram already in its
        row's prefix is set to ``-inf`` too (the ``no_repeat_ngram_size`` of Hugging Face ``generate``)."""
        logits = self.decode(ys, memory, src_mask, last_only=True)[:, -1].float()
        logits[:, self.config.pad_id] = float("-inf")
        n = no_repeat_ngram_size
        if n and ys.shape[1] > n:
            # any earlier n-gram of the output (after <bos>) that starts with its last n-1 tokens names a
            # token that may not come next
            for row, seq in enumerate(ys[:, 1:].tolist()):
                tail = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
                banned = {seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == tail}
                if banned:
                    logits[row, list(banned)] = float("-inf")
        return logits

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_len: int = 64, *, no_repeat_ngram_size: int = 0) -> list[list[int]]:
        """Pick the most probable token at every step, for a whole batch ``src`` ``(B, S)``.

        ``<pad>`` is never picked (as in :meth:`beam_decode`); ``no_repeat_ngram_size = n > 0``
        never writes the same n tokens twice in one output. Returns one id list per sentence,
        without ``<bos>`` and cut before ``<eos>``.
        """
        self._check_decode_args(src, max_len, no_repeat_ngram_size)
        c = self.config
        src_mask = self.source_mask(src)
        memory = self.encode(src, src_mask)
        ys = torch.full((src.shape[0], 1), c.bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            nxt = self._next_logits(ys, memory, src_mask, no_repeat_ngram_size).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, c.pad_id), nxt)
            ys = torch.cat([ys, nxt[:, None]], dim=1)
            done |= nxt == c.eos_id
            if bool(done.all()):
                break
        return [self._strip(row) for row in ys[:, 1:].tolist()]

    def _strip(self, ids: list[int]) -> list[int]:
        out = []
        for t in ids:
            if t in (self.config.eos_id, self.config.pad_id):
                break
            out.append(t)
        return out

    @torch.no_grad()
    def beam_decode(self, src: torch.Tensor, beam_width: int = 4, max_len: int = 64, *,
                    length_penalty: float = 1.0, num_return: int = 1, no_repeat_ngram_size: int = 0) -> list[Beam]:
        """Beam search for ONE source sentence ``src`` ``(1, S)`` (or ``(S,)``).

        Uses :func:`genai_helpers.sampling.beam_search`: hypotheses are ranked by
        ``log_prob / length ** length_penalty`` (0 = raw sum, which prefers short outputs).
        ``beam_width=1`` with ``length_penalty=0`` is exactly greedy decoding. Returns
        ``num_return`` :class:`~genai_helpers.sampling.Beam` objects, best first, whose ``tokens``
        are cut before ``<eos>``. ``no_repeat_ngram_size`` as in :meth:`greedy_decode`.
        """
        if isinstance(src, torch.Tensor) and src.ndim == 1:
            src = src[None]
        self._check_decode_args(src, max_len, no_repeat_ngram_size)
        if src.shape[0] != 1:
            raise ValueError(f"beam_decode translates one sentence: src must be (1, S), got {tuple(src.shape)}")
        src_mask = self.source_mask(src)
        memory = self.encode(src, src_mask)

        def step(ids: torch.Tensor) -> torch.Tensor:            # (beams, t) -> (beams, vocab)
            n = ids.shape[0]
            return self._next_logits(ids, memory.expand(n, -1, -1), src_mask.expand(n, -1), no_repeat_ngram_size)

        beams = beam_search(step, [self.config.bos_id], beam_width, max_len, eos_id=self.config.eos_id,
                            length_penalty=length_penalty, num_return=num_return)
        return [Beam(self._strip(b.tokens), b.log_prob, b.score) for b in beams]

    def sequence_log_prob(self, src: torch.Tensor, tgt: list[int]) -> float:
        """Total log-probability (nats) the model gives target ids ``tgt`` (then ``<eos>``) for ``src`` ``(1, S)``."""
        c = self.config
        tgt_in = torch.tensor([[c.bos_id, *tgt]], device=src.device)
        tgt_out = torch.tensor([[*tgt, c.eos_id]], device=src.device)
        with torch.no_grad():
            logits, _ = self(src, tgt_in)
        return float(torch.log_softmax(logits.double(), -1)[0].gather(-1, tgt_out[0, :, None]).sum())

    def config_dict(self) -> dict:
        return asdict(self.config)


__all__ = ["Seq2SeqConfig", "Seq2SeqTransformer"]
