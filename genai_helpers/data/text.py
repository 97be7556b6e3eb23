"""Real English text that works offline, and a word-level tokenizer for small models.

The corpus is the ``fortunes`` collection (quotations, jokes, definitions and short prose by many
authors), shipped by Debian and Ubuntu as the package ``fortunes`` (``apt-get install fortunes``;
on macOS ``brew install fortune``). Chapter 01 trains its attention model on it. Files are plain
text with one ``%`` line between entries.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import torch

__all__ = ["FORTUNES_ENV", "FORTUNE_DIRS", "FORTUNE_CATEGORIES", "find_fortunes_dir", "load_fortunes",
           "split_documents", "WordTokenizer", "WindowBatches", "window_batch_fn"]

FORTUNES_ENV = "GENAI_FORTUNES_DIR"
FORTUNE_DIRS = ("/usr/share/games/fortunes", "/usr/share/fortunes", "/usr/local/share/games/fortunes",
                "/opt/homebrew/share/games/fortunes", "/usr/local/share/fortunes")
# Prose-like categories; ASCII art and a few collections with dated stereotypes are left out.
FORTUNE_CATEGORIES = ("computers", "cookie", "definitions", "education", "food", "fortunes", "goedel",
                      "humorists", "kids", "law", "linux", "literature", "love", "magic", "medicine",
                      "miscellaneous", "news", "paradoxum", "people", "pets", "platitudes", "riddles",
                      "science", "songs-poems", "sports", "startrek", "tao", "wisdom", "work", "zippy")


def find_fortunes_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the fortune files: ``root``, then ``$GENAI_FORTUNES_DIR``, then system paths."""
    candidates = [root] if root is not None else [os.environ.get(FORTUNES_ENV), *FORTUNE_DIRS]
    for c in candidates:
        if c and (Path(c) / "wisdom").is_file():
            return Path(c)
    where = str(root) if root is not None else ", ".join(FORTUNE_DIRS)
    raise FileNotFoundError(
        f"No fortunes corpus found (looked in: {where}). Install it with `apt-get install fortunes` "
        f"(Debian/Ubuntu/Colab; the chapter's first cell does this on Colab) or `brew install fortune` "
        f"(macOS), or point ${FORTUNES_ENV} at a folder of fortune files.")


def load_fortunes(root: str | os.PathLike | None = None,
                  categories: Sequence[str] = FORTUNE_CATEGORIES) -> list[str]:
    """Return every fortune in ``categories`` as one whitespace-normalised string, in file order."""
    folder = find_fortunes_dir(root)
    docs: list[str] = []
    for cat in categories:
        path = folder / cat
        if not path.is_file():
            raise ValueError(f"categories contains {cat!r}, which is not a file in {folder}")
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in re.split(r"^%\s*$", text, flags=re.M):
            entry = " ".join(entry.split())
            if len(entry.split()) >= 4:
                docs.append(entry)
    return docs


def split_documents(docs: Sequence[str], fractions=(0.9, 0.05, 0.05), seed: int = 0):
    """Shuffle documents with ``seed`` and cut them into train / validation / test lists."""
    if abs(sum(fractions) - 1) > 1e-9 or any(f < 0 for f in fractions) or len(fractions) != 3:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    n_train, n_val = int(fractions[0] * len(docs)), int(fractions[1] * len(docs))
    pick = lambda idx: [docs[i] for i in idx]  # noqa: E731
    return pick(order[:n_train]), pick(order[n_train:n_train + n_val]), pick(order[n_train + n_val:])


class WordTokenizer:
    """Lower-cased words and punctuation marks, the ``vocab_size`` most frequent kept.

    Ids 0-3 are the special tokens ``<pad> <unk> <eos> <mask>``. Word-level tokens keep attention
    maps readable (one cell per word); chapter 04 moves to a trained BPE tokenizer.
    """

    SPECIALS = ("<pad>", "<unk>", "<eos>", "<mask>")
    PATTERN = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+|[^\sa-z0-9]")

    def __init__(self, vocab: Sequence[str]):
        if list(vocab[:4]) != list(self.SPECIALS):
            raise ValueError(f"vocab must start with the special tokens {self.SPECIALS}")
        self.itos = list(vocab)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.unk_id, self.eos_id, self.mask_id = 0, 1, 2, 3

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4000) -> "WordTokenizer":
        if not isinstance(vocab_size, int) or vocab_size <= len(cls.SPECIALS):
            raise ValueError(f"vocab_size must be an int > {len(cls.SPECIALS)}, got {vocab_size!r}")
        counts = Counter(w for t in texts for w in cls.split(t))
        words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        return cls([*cls.SPECIALS, *words[: vocab_size - len(cls.SPECIALS)]])

    @classmethod
    def split(cls, text: str) -> list[str]:
        return cls.PATTERN.findall(text.lower())

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, self.unk_id) for w in self.split(text)]

    def decode(self, ids: Iterable[int]) -> str:
        words = [self.itos[int(i)] for i in ids]
        text = " ".join(words)
        return re.sub(r" ([.,;:!?)'\"])", r"\1", text).replace("( ", "(")

    def tokens(self, text: str) -> list[str]:
        """The tokens the model sees for ``text`` (unknown words shown as ``<unk>``)."""
        return [self.itos[i] for i in self.encode(text)]

    def encode_corpus(self, docs: Iterable[str]) -> torch.Tensor:
        """One long 1-D tensor of ids with ``<eos>`` after every document."""
        ids: list[int] = []
        for d in docs:
            ids.extend(self.encode(d))
            ids.append(self.eos_id)
        return torch.tensor(ids, dtype=torch.long)


class WindowBatches:
    """Picklable ``batch_fn`` of random windows (see :func:`window_batch_fn`); chapter 02 sends
    it to spawned data-parallel workers, which a closure could not be."""

    def __init__(self, stream: torch.Tensor, batch_size: int, block_size: int, seed: int = 0):
        self.stream, self.batch_size, self.block_size, self.seed = stream, batch_size, block_size, seed

    def __call__(self, i: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        starts = torch.randint(0, self.stream.numel() - self.block_size - 1, (self.batch_size,), generator=g)
        offsets = torch.arange(self.block_size + 1)
        windows = self.stream[starts[:, None] + offsets[None, :]]
        return windows[:, :-1], windows[:, 1:]


def window_batch_fn(stream: torch.Tensor, batch_size: int, block_size: int, seed: int = 0) -> WindowBatches:
    """``batch_fn(i) -> (x, y)`` of random windows from ``stream``; a pure function of ``i``.

    ``x`` and ``y`` are ``(batch_size, block_size)``, ``y`` shifted by one token (next-token
    targets). Being pure in ``i`` is what lets :func:`genai_helpers.training.train` resume exactly.
    """
    if stream.ndim != 1 or stream.numel() <= block_size + 1:
        raise ValueError(f"stream must be 1-D and longer than block_size + 1 ({block_size + 1})")
    return WindowBatches(stream, batch_size, block_size, seed)
