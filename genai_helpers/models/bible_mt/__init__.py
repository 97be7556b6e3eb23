"""Chapter 5's English -> Spanish translator, trained once on the Bible verses and shipped.

    from genai_helpers.models.bible_mt import load_translator

    mt = load_translator()                                  # offline, seconds; checks the sha256
    mt.translate(["Jesus wept.", "God is love."])           # greedy, the no-repeat setting it was tuned with

The weights (``bible_mt.safetensors``, weight-only int8), the joint English+Spanish BPE
(``tokenizer.json``), ``manifest.json`` (config, data sizes and hash, steps, epochs, device,
validation and test BLEU, sha256), ``history.json`` (the training curve) and ``sweep.json`` (every
run of the sweep that chose it) ship in this folder; :mod:`genai_helpers.models.bible_mt.pretrain`
makes them. The model is :class:`genai_helpers.models.seq2seq.Seq2SeqTransformer`.
"""
from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..seq2seq import Seq2SeqConfig, Seq2SeqTransformer

__all__ = ["MT_DIR", "WEIGHTS", "TOKENIZER", "MANIFEST", "HISTORY", "SWEEP", "Translator", "load_translator",
           "manifest", "history", "sweep_summary"]

MT_DIR = Path(__file__).resolve().parent
WEIGHTS, TOKENIZER, MANIFEST, HISTORY, SWEEP = ("bible_mt.safetensors", "tokenizer.json", "manifest.json",
                                                "history.json", "sweep.json")
REPO_RAW = "https://raw.githubusercontent.com/genai-system-design/genai-book/main/genai_helpers/models/bible_mt"


def _read_json(name: str) -> dict:
    path = MT_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; train the translator with `python -m "
                                "genai_helpers.models.bible_mt.pretrain` (see its docstring) or restore the file "
                                "from the repository")
    return json.loads(path.read_text())


def manifest() -> dict:
    """The shipped model's manifest (config, data, steps, device, BLEU, sha256)."""
    return _read_json(MANIFEST)


def history() -> dict:
    """The shipped run's training curve: ``step``, ``seconds``, ``train_loss``, ``eval_step``,
    ``valid_loss``, ``valid_bleu`` (greedy BLEU on the validation verses during training)."""
    return _read_json(HISTORY)


def sweep_summary() -> dict:
    """Every run of the sweep (settings, steps, validation and test BLEU) and which one ships."""
    return _read_json(SWEEP)


@dataclass
class Translator:
    """A loaded translator, with ``model`` (a
    :class:`~genai_helpers.models.seq2seq.Seq2SeqTransformer`), ``vocab`` (the joint BPE) and
    ``no_repeat_ngram_size`` (the decoding setting chosen on validation BLEU)."""
    model: Seq2SeqTransformer
    vocab: object
    no_repeat_ngram_size: int

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def translate(self, sentences: Sequence[str], *, beam_width: int = 1, no_repeat_ngram_size: int | None = None,
                  length_penalty: float = 1.0, batch_size: int = 64) -> list[str]:
        """English ``sentences`` to Spanish: greedy in batches (``beam_width=1``), else beam search
        one sentence at a time. The output may be at most ``1.5 x source tokens + 10`` tokens long."""
        from ..._checks import check_positive_int
        from ...data.translation import pad_batch
        if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
            raise TypeError("sentences must be a list of strings")
        check_positive_int("beam_width", beam_width)
        check_positive_int("batch_size", batch_size)
        n = self.no_repeat_ngram_size if no_repeat_ngram_size is None else no_repeat_ngram_size
        limit = self.model.config.max_len - 2
        ids = [self.vocab.encode(s)[:limit] or [self.model.config.eos_id] for s in sentences]
        out: list[str | None] = [None] * len(ids)
        self.model.eval()
        if beam_width == 1:
            order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
            for k in range(0, len(order), batch_size):
                chunk = order[k:k + batch_size]
                src = pad_batch([ids[i] for i in chunk]).to(self.device)
                max_len = min(limit + 1, int(1.5 * src.shape[1]) + 10)
                for i, h in zip(chunk, self.model.greedy_decode(src, max_len=max_len, no_repeat_ngram_size=n)):
                    out[i] = self.vocab.decode(h)
            return out
        for i, s in enumerate(ids):
            src = torch.tensor([s], device=self.device)
            max_len = min(limit + 1, int(1.5 * len(s)) + 10)
            beam = self.model.beam_decode(src, beam_width, max_len, length_penalty=length_penalty,
                                          no_repeat_ngram_size=n)[0]
            out[i] = self.vocab.decode(beam.tokens)
        return out


def _download(name: str) -> None:
    url = f"{REPO_RAW}/{name}"
    with urllib.request.urlopen(url, timeout=60) as r:         # Colab without a clone of the repository
        (MT_DIR / name).write_bytes(r.read())


def load_translator(device=None, *, download: bool | None = None) -> Translator:
    """The shipped translator on ``device`` (default: the book's device rule), weights checked
    against the manifest's sha256. Offline from the files in this folder; when they are absent and
    ``download`` is true (default: only on Colab) they are fetched from the repository."""
    from ...checkpoint import file_sha256
    from ...data.translation import SubwordVocab
    from ...runtime import get_device
    from ..book_lm import _read_weights
    if download is None:
        download = "COLAB_RELEASE_TAG" in os.environ
    for name in (WEIGHTS, TOKENIZER, MANIFEST):
        if not (MT_DIR / name).is_file() and download:
            _download(name)
    man = manifest()
    if file_sha256(MT_DIR / WEIGHTS) != man["sha256"]:
        raise ValueError(f"{MT_DIR / WEIGHTS} does not match its manifest's sha256; restore it from the repository")
    model = Seq2SeqTransformer(Seq2SeqConfig(**man["config"]))
    state = _read_weights(MT_DIR / WEIGHTS)
    state.setdefault("src_embed.weight", state["tgt_embed.weight"])      # tied: stored once
    model.load_state_dict(state)
    device = torch.device(device) if device is not None else get_device()
    return Translator(model.to(device).eval(), SubwordVocab.load(MT_DIR / TOKENIZER), man["no_repeat_ngram_size"])
