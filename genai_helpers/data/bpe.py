"""A byte-level BPE tokenizer trained locally with Hugging Face ``tokenizers`` (chapter 04; reused in 06).

    from genai_helpers.data.bpe import BPETokenizer

    tok = BPETokenizer.train(texts, vocab_size=2000)
    ids = tok.encode("Hi Anna, are you free on Tuesday?")     # list[int]
    tok.decode(ids)                                            # the same string back, byte for byte
    tok.save("tok.json"); tok = BPETokenizer.load("tok.json")

Byte-level means the base alphabet is the 256 byte values (shown as printable characters, a space
becomes ``Ġ`` as in GPT-2), so *any* text encodes without an unknown token and decodes back
exactly. Byte-pair encoding then merges the most frequent adjacent pair, again and again, until the
vocabulary holds ``vocab_size`` tokens: frequent words become one token, rare ones a few pieces.
Text is first split GPT-2 style (words with their leading space, numbers, punctuation), so merges
never cross a word boundary. The special tokens (``<pad>``, ``<eos>`` by default) get the first
ids and are never produced by splitting ordinary text.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import torch

__all__ = ["DEFAULT_SPECIALS", "BPETokenizer"]

DEFAULT_SPECIALS = ("<pad>", "<eos>")


class BPETokenizer:
    """Wraps a ``tokenizers.Tokenizer`` (byte-level BPE); ids are ints in ``[0, len(self))``."""

    def __init__(self, backend):
        from tokenizers import Tokenizer

        if not isinstance(backend, Tokenizer):
            raise TypeError(f"backend must be a tokenizers.Tokenizer, got {type(backend).__name__}")
        self.backend = backend
        self.special_tokens = [t.content for t in backend.get_added_tokens_decoder().values() if t.special]

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 2000, *, min_frequency: int = 2,
              special_tokens: Sequence[str] = DEFAULT_SPECIALS) -> "BPETokenizer":
        """Learn merges from ``texts`` until the vocabulary has ``vocab_size`` tokens (>= 256 + specials).

        Deterministic for the same texts and settings. ``min_frequency``: a pair must occur this
        often to be merged (so the vocabulary can end up smaller than ``vocab_size``).
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        specials = list(special_tokens)
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        if vocab_size < 256 + len(specials):
            raise ValueError(f"vocab_size must be >= 256 + {len(specials)} special tokens, got {vocab_size}")
        if not isinstance(min_frequency, int) or min_frequency < 1:
            raise ValueError(f"min_frequency must be an int >= 1, got {min_frequency!r}")
        if any(not isinstance(s, str) or not s for s in specials) or len(set(specials)) != len(specials):
            raise ValueError(f"special_tokens must be distinct non-empty strings, got {specials}")
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of strings, not one string")
        texts = list(texts)
        if not texts or any(not isinstance(t, str) for t in texts):
            raise ValueError("texts must be a non-empty iterable of strings")

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Read a tokenizer saved with :meth:`save` (the ``tokenizers`` JSON format)."""
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}")
        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the whole tokenizer (vocabulary, merges, settings) as one JSON file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(path))
        return path

    # ---- use ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.backend.get_vocab_size()

    @property
    def vocab_size(self) -> int:
        return len(self)

    def token_to_id(self, token: str) -> int:
        i = self.backend.token_to_id(token)
        if i is None:
            raise KeyError(f"{token!r} is not in the vocabulary")
        return i

    def id_to_token(self, i: int) -> str:
        t = self.backend.id_to_token(int(i))
        if t is None:
            raise KeyError(f"id {i} is outside the vocabulary [0, {len(self)})")
        return t

    @property
    def pad_id(self) -> int | None:
        return self.backend.token_to_id("<pad>")

    @property
    def eos_id(self) -> int | None:
        return self.backend.token_to_id("<eos>")

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special-token strings inside ``text`` map to their ids)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self.backend.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if isinstance(texts, str) or any(not isinstance(t, str) for t in texts):
            raise TypeError("texts must be a sequence of str")
        return [e.ids for e in self.backend.encode_batch(list(texts))]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """The text of ``ids``; exact inverse of :meth:`encode` for any text."""
        ids = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
        if ids and (min(ids) < 0 or max(ids) >= len(self)):
            raise ValueError(f"ids must lie in [0, {len(self)}), got range [{min(ids)}, {max(ids)}]")
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def tokens(self, text: str) -> list[str]:
        """The token strings of ``text`` as the model sees them (``Ġ`` = a leading space)."""
        return self.backend.encode(text).tokens

    def token_texts(self) -> list[str]:
        """The decoded text of every id (``" the"`` rather than ``"Ġthe"``); used to find the
        tokens that start a new word."""
        return [self.backend.decode([i], skip_special_tokens=False) for i in range(len(self))]

    def encode_corpus(self, docs: Iterable[str], eos: bool = True) -> torch.Tensor:
        """One long 1-D ``torch.long`` tensor of ids, ``<eos>`` after every document."""
        if eos and self.eos_id is None:
            raise ValueError("this tokenizer has no <eos> token; pass eos=False")
        out: list[int] = []
        for ids in self.encode_batch(list(docs)):
            out.extend(ids)
            if eos:
                out.append(self.eos_id)
        return torch.tensor(out, dtype=torch.long)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={len(self)}, special_tokens={self.special_tokens})"
