"""The book's language model: one GPT pretrained once on the offline English corpus, used by every
text chapter.

    from genai_helpers.models.book_lm import load_book_lm, bits_per_byte

    model, tok = load_book_lm()                   # offline, seconds; checks the sha256 of the weights
    ids = torch.tensor([tok.encode("The river")])
    print(tok.decode(model.generate(ids, 60, temperature=0.8, top_p=0.9)[0].tolist()))
    bits_per_byte(model, tok, "Some English text.")

The weights (``book_lm.safetensors``), the byte-level BPE tokenizer (``tokenizer.json``) and the
``manifest.json`` (config, data hashes, steps, tokens seen, validation and test loss, sha256) ship
inside this package folder; ``make pretrain`` (``python -m genai_helpers.models.book_lm.pretrain``)
makes them: corpus (:mod:`genai_helpers.data.book_corpus`) -> tokenizer -> GPT, resumable.
The model is :class:`genai_helpers.models.gpt.GPT`, so ``generate`` and every other method is the
book's own.
"""
from __future__ import annotations

import json
import math
import os
import sys
import urllib.request
from pathlib import Path
from typing import Sequence

import torch

from ..._checks import check_positive_int
from ...checkpoint import file_sha256 as _sha256
from ..gpt import GPT, GPTConfig

__all__ = ["BOOK_LM_DIR", "WEIGHTS", "TOKENIZER", "MANIFEST", "BookTokenizer", "load_book_lm", "load_tokenizer",
           "bits_per_byte", "token_nll", "manifest", "artifact", "narrative_text", "EOT", "int8_quantize",
           "int8_dequantize", "save_int8", "INT8_GROUP"]

BOOK_LM_DIR = Path(__file__).resolve().parent
WEIGHTS = "book_lm.safetensors"
TOKENIZER = "tokenizer.json"
MANIFEST = "manifest.json"
EOT = "<|endoftext|>"
REPO_RAW = "https://raw.githubusercontent.com/genai-system-design/genai-book/main/genai_helpers/models/book_lm"
WEIGHTS_ENV = "GENAI_BOOK_LM_DIR"


class BookTokenizer:
    """Byte-level BPE (the ``tokenizers`` library): every string encodes, nothing is ever unknown.

    ``encode(str) -> list[int]``, ``decode(list[int]) -> str``; ``eot_id`` is the
    ``<|endoftext|>`` token that separates documents (and starts every text the model scores)."""

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self.eot_id = tokenizer.token_to_id(EOT)
        if self.eot_id is None:
            raise ValueError(f"the tokenizer has no {EOT} token")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "BookTokenizer":
        from tokenizers import Tokenizer
        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def train(cls, texts, vocab_size: int = 4096, min_frequency: int = 2) -> "BookTokenizer":
        """Learn a byte-level BPE of ``vocab_size`` tokens (256 bytes + merges + ``<|endoftext|>``)."""
        check_positive_int("vocab_size", vocab_size, minimum=258)
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOT],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    def save(self, path: str | os.PathLike) -> None:
        from ...checkpoint import write_atomic
        write_atomic(path, self._tok.to_str())

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._tok.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts))]

    def decode(self, ids) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_strings(self, ids) -> list[str]:
        """Each id decoded on its own (for plots of attention over tokens)."""
        return [self.decode([int(i)]) for i in ids]

    def __repr__(self) -> str:
        return f"BookTokenizer(byte-level BPE, vocab_size={self.vocab_size})"


def _folder(folder=None) -> Path:
    return Path(folder or os.environ.get(WEIGHTS_ENV) or BOOK_LM_DIR)


def artifact(name: str, folder: str | os.PathLike | None = None) -> Path:
    """Path of one of the book LM's files (``"scaling_sweep.json"``, ``"pretrain_history.json"``, ...)
    in ``folder`` (default: the package folder or ``$GENAI_BOOK_LM_DIR``); it must exist."""
    path = _folder(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; `make pretrain` (or `make pretrain-sweep`) writes it")
    return path


_SIZES = ("cpu", "gpu")


def _names(size: str) -> tuple[str, str]:
    """(weights file, manifest file) of a size: ``cpu`` is the model every chapter uses (trained on 2
    CPU cores); ``gpu`` the bigger one trained on a lent GPU (``gpu_sweep.py``)."""
    if size not in _SIZES:
        raise ValueError(f"size must be one of {_SIZES}, got {size!r}")
    if size == "cpu":
        return WEIGHTS, MANIFEST
    return WEIGHTS.replace(".safetensors", f"-{size}.safetensors"), MANIFEST.replace(".json", f"-{size}.json")


def manifest(folder: str | os.PathLike | None = None, size: str = "cpu") -> dict:
    """The manifest of the shipped (or ``folder``'s) weights of ``size`` ("cpu" | "gpu"): config,
    data, training, losses, sha256."""
    path = _folder(folder) / _names(size)[1]
    if not path.is_file():
        raise FileNotFoundError(_missing_message(path.parent))
    return json.loads(path.read_text())


def _missing_message(folder: Path) -> str:
    return (f"The book LM's weights are not in {folder}. Make them with `make pretrain` (about an hour on "
            f"2 CPU cores, resumable), or download {REPO_RAW}/{WEIGHTS} and {TOKENIZER} and {MANIFEST} into "
            f"that folder (load_book_lm(download=True) does it).")




def _download(folder: Path, size: str = "cpu") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    weights, man = _names(size)
    for name in (man, TOKENIZER, weights):
        if not (folder / name).is_file():
            urllib.request.urlretrieve(f"{REPO_RAW}/{name}", folder / name)


def load_tokenizer(folder: str | os.PathLike | None = None) -> BookTokenizer:
    path = _folder(folder) / TOKENIZER
    if not path.is_file():
        raise FileNotFoundError(_missing_message(path.parent))
    return BookTokenizer.from_file(path)


def load_book_lm(device=None, *, folder: str | os.PathLike | None = None, download: bool | None = None,
                 check_hash: bool = True, size: str = "cpu") -> tuple[GPT, BookTokenizer]:
    """``(model, tokenizer)`` of the book LM, in eval mode on ``device`` (default: CPU).

    Reads ``folder`` (default: this package folder, or ``$GENAI_BOOK_LM_DIR``). When the files are
    absent and ``download`` is true (default: only on Colab) it fetches them from the book's
    repository; otherwise it raises ``FileNotFoundError`` saying how to make them. The weights'
    sha256 must match the manifest (``check_hash``). ``size="gpu"`` loads the bigger model trained on
    a lent GPU (6 layers x 384, 12.2 M parameters, stored as weight-only int8; see ``gpu_sweep.json``)
    instead of the one the chapters use."""
    from safetensors.torch import load_file
    folder = _folder(folder)
    weights, _ = _names(size)
    if download is None:
        download = "google.colab" in sys.modules
    if not (folder / weights).is_file() and download:
        _download(folder, size)
    if not (folder / weights).is_file():
        raise FileNotFoundError(_missing_message(folder))
    man = manifest(folder, size)
    if check_hash and _sha256(folder / weights) != man["sha256"]:
        raise ValueError(f"{folder / weights} does not match the sha256 in its manifest: the file is damaged or "
                         f"from another run; re-download it or run `make pretrain`")
    model = GPT(GPTConfig(**man["config"]))
    state = _read_weights(folder / weights)
    missing, unexpected = model.load_state_dict(state, strict=False)     # lm_head.weight is tied to wte
    missing = [k for k in missing if not (model.config.tie_weights and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"weights do not fit the manifest's config: missing {missing}, unexpected {unexpected}")
    model.eval()
    if device is not None:
        model.to(device)
    return model, load_tokenizer(folder)


def int8_quantize(w: torch.Tensor, group_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric weight-only int8 of a 2-D weight ``(out, in)``, one scale per group of
    ``group_size`` input columns: codes (int8, same shape) and scales ``(out, in // group_size)``
    (the same as ``serving.quantization.quantize_tensor(w, 8, group_size)``; models sit below serving)."""
    if w.ndim != 2 or w.shape[1] % group_size:
        raise ValueError(f"w must be 2-D with a width divisible by group_size={group_size}, got {tuple(w.shape)}")
    g = w.detach().float().reshape(w.shape[0], -1, group_size)
    scales = g.abs().amax(dim=2).clamp(min=1e-12) / 127
    q = torch.round(g / scales[..., None]).clamp(-128, 127).reshape(w.shape)
    return q.to(torch.int8), scales


def int8_dequantize(q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """fp32 weights from :func:`int8_quantize`'s codes and scales."""
    group = q.shape[1] // scales.shape[1]
    return (q.float().reshape(q.shape[0], -1, group) * scales.float()[..., None]).reshape(q.shape)


#: Input columns per scale of the int8 storage (:func:`save_int8`).
INT8_GROUP = 64


def save_int8(state: dict, path: str | os.PathLike) -> None:
    """Weight-only int8 safetensors, written atomically: each 2-D tensor ``k`` as int8 codes ``k``
    plus fp16 scales ``k.scales`` (:func:`int8_quantize`, one scale per ``INT8_GROUP`` input
    columns); other tensors fp16. Half the bytes of fp16; the gpu size ships this way, which keeps
    the repository small enough to travel to a lent GPU (64 MiB). Read back by the loader."""
    from safetensors.torch import save
    from ...checkpoint import write_atomic
    out = {}
    for k, v in state.items():
        if v.ndim == 2 and v.shape[1] % INT8_GROUP == 0:
            q, sc = int8_quantize(v.float(), INT8_GROUP)
            out[k], out[k + ".scales"] = q.contiguous(), sc.to(torch.float16).contiguous()
        else:
            out[k] = v.to(torch.float16).contiguous()
    write_atomic(path, save(out, metadata={"format": f"int8 weight-only, group {INT8_GROUP}, fp16 scales"}))


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """fp32 state dict from fp16 safetensors, or from weight-only int8 ones (codes ``k`` plus
    ``k.scales``, as the gpu size is stored)."""
    from safetensors.torch import load_file
    raw = load_file(str(path))
    state = {}
    for k, v in raw.items():
        if k.endswith(".scales"):
            continue
        if k + ".scales" in raw:
            state[k] = int8_dequantize(v, raw[k + ".scales"])
        else:
            state[k] = v.float()
    return state


@torch.no_grad()
def token_nll(model: GPT, ids: Sequence[int], *, bos: int | None = None, stride: int | None = None,
              batch_size: int = 8) -> torch.Tensor:
    """Negative log-likelihood (nats) of every token of ``ids`` given all before it (and ``bos``).

    Long texts are scored in windows of ``block_size`` that overlap by ``block_size - stride``
    tokens (default stride: half a window), so every token after the first window sees at least
    half a window of context; each token is scored once."""
    ids = [int(i) for i in ids]
    if bos is not None:
        ids = [bos] + ids
    if len(ids) < 2:
        raise ValueError("ids must hold at least one token to predict (two with no bos)")
    T = model.config.block_size
    stride = stride or T // 2
    check_positive_int("stride", stride)
    if stride > T:
        raise ValueError(f"stride must be in [1, block_size={T}], got {stride}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    data = torch.tensor(ids, dtype=torch.long)
    # windows: [s, s+T) predicting positions from max(s+1, prev_end) ... s+T-1
    starts, first = [], []
    s, scored_to = 0, 1
    while True:
        end = min(s + T, len(ids))
        starts.append(s)
        first.append(scored_to)
        scored_to = end
        if end >= len(ids):
            break
        s = max(0, min(s + stride, len(ids) - T))
    out = torch.empty(len(ids) - 1)
    try:
        for b in range(0, len(starts), batch_size):
            chunk = list(range(b, min(b + batch_size, len(starts))))
            L = min(T, len(ids))
            x = torch.stack([data[starts[j]:starts[j] + L] for j in chunk]).to(device)
            logits, _ = model(x)
            logp = torch.log_softmax(logits.float(), dim=-1)
            for row, j in enumerate(chunk):
                st = starts[j]
                pos = torch.arange(first[j], st + L)            # absolute positions predicted here
                tgt = data[pos]
                lp = logp[row, pos - st - 1].cpu().gather(1, tgt[:, None])[:, 0]
                out[pos - 1] = -lp
    finally:
        model.train(was_training)
    return out


def bits_per_byte(model: GPT, tokenizer: BookTokenizer, text: str, *, stride: int | None = None) -> float:
    """Bits per UTF-8 byte of ``text`` under ``model``: the sum of every token's negative log2
    probability (the first one after ``<|endoftext|>``) divided by the text's bytes. Unlike loss per
    token it does not depend on the tokenizer, so models and n-grams with any vocabulary compare."""
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty str")
    nll = token_nll(model, tokenizer.encode(text), bos=tokenizer.eot_id, stride=stride)
    return float(nll.sum()) / math.log(2) / len(text.encode("utf-8"))


def narrative_text() -> str:
    """The held-out narrative prose (six original short stories written for the book; in no
    training source), stories separated by blank lines."""
    raw = (BOOK_LM_DIR / "narrative_heldout.txt").read_text(encoding="utf-8")
    lines = [ln for ln in raw.splitlines() if not ln.startswith("#")]
    stories = [s.strip() for s in "\n".join(lines).split("%%")]
    return "\n\n".join(s for s in stories if s)
