"""A small word recogniser and speaker embedding: the book's stand-in for an ASR model (chapter 16).

A text-to-speech system is judged by listening, and at scale by machines that listen: the word
error rate (WER) of an automatic speech recogniser such as Whisper on the synthesised audio
measures *intelligibility*, and the cosine similarity of speaker embeddings measures whether the
voice is the one asked for. Whisper is far too large to train here, so chapter 16 trains this
model instead, plainly a stand-in: it knows only the 75 words of :mod:`genai_helpers.speech.data`
(word-level CTC over a closed vocabulary) and has heard only espeak-ng's four voices. Its WER
says "would a listener trained on clean espeak speech of this domain understand it", nothing about
speech in general.

    from genai_helpers.speech import data, recognizer
    model, history = recognizer.train_recognizer(data.make_split("train", 1500), steps=600)
    hyps = recognizer.transcribe(model, [u.wave for u in test])
    recognizer.word_error_rate([u.text for u in test], hyps)

The model (:class:`WordRecognizer`, about 0.82 M parameters) reads a log-mel spectrogram
(:func:`genai_helpers.speech.features.log_mel`, 80 bands at 62.5 frames per second):

    log-mel (B, 80, T) -> (x + 6) / 4 -> two 1-D convolutions with stride 2 (15.6 frames/s)
      -> + sinusoidal positions -> 4-layer pre-norm transformer encoder (d 128, 4 heads, masked padding)
      -> states (B, T/4, 128)
      -> CTC head: a linear layer to VOCAB = ("<blank>",) + data.WORDS        (B, T/4, 76)
      -> speaker head: mean and std of the states over time (256) -> 64-d embedding -> 4 voices

A word lasts at least a few of those 64 ms frames even at the fastest speed, which is all CTC
needs; a bidirectional GRU learned the same task several times slower per second of CPU.

CTC (Graves et al., 2006) lets the model emit one word label somewhere inside the frames of that
word and ``<blank>`` elsewhere; :func:`transcribe` decodes greedily (best label per frame, merge
repeats, drop blanks). Training (:func:`train_recognizer`) uses the package's one training loop
(:func:`genai_helpers.training.train`: tqdm bar, live loss plot in Jupyter) and augments the
log-mels so the recogniser still hears speech that a small codec or TTS model made buzzy,
band-limited or smeared: random gain, a noise floor, a random low-pass cut, spectral tilt, blur
across bands, and SpecAugment time and frequency masks (Park et al., 2019).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_positive_int
from ..positional import sinusoidal_positions
from . import data, features

__all__ = ["VOCAB", "VOICES", "WordRecognizer", "train_recognizer", "transcribe", "word_errors", "matched_words",
           "word_error_rate", "voice_accuracy", "speaker_embeddings", "speaker_similarity"]

#: The CTC head's labels, index 0 the blank and then the domain's words in sorted order.
VOCAB = ("<blank>",) + tuple(data.WORDS)
#: The speaker head's classes, the espeak-ng voices in ``data.VOICES`` order.
VOICES = tuple(data.VOICES)
_WORD_ID = {w: i for i, w in enumerate(VOCAB)}
_LOG_FLOOR = math.log(1e-5)            # log_mel's floor: the value of silence, used for padding


#: The constructor arguments of the recogniser ``make pretrain-speech`` trains (and ships).
DEFAULT_CONFIG = {"n_mels": features.N_MELS, "d_model": 128, "n_layers": 4, "n_heads": 4, "d_ff": 384,
                  "embed_dim": 64, "dropout": 0.1}


class WordRecognizer(nn.Module):
    """Log-mel ``(B, 80, T)`` -> per-frame word logits, voice logits and a speaker embedding.

    ``forward(logmel, lengths)`` returns ``(logits (B, T', len(VOCAB)), out_lengths (B,),
    voice_logits (B, len(VOICES)))`` with ``T' = ceil(T / 4)`` (15.6 frames per second);
    ``lengths`` are the valid frames of each padded row (default: all ``T``). In eval mode padding
    beyond ``lengths`` barely changes the outputs: attention and the speaker pooling are masked, and
    only the convolutions' few-frame receptive field at the end of a row sees it.
    """

    def __init__(self, n_mels: int = features.N_MELS, d_model: int = 128, n_layers: int = 4, n_heads: int = 4,
                 d_ff: int = 384, embed_dim: int = 64, dropout: float = 0.1):
        super().__init__()
        for name, v in (("n_mels", n_mels), ("d_model", d_model), ("n_layers", n_layers), ("n_heads", n_heads),
                        ("d_ff", d_ff), ("embed_dim", embed_dim)):
            check_positive_int(name, v)
        if d_model % n_heads:
            raise ValueError(f"d_model must be a multiple of n_heads, got {d_model} and {n_heads}")
        self.n_mels = n_mels
        self.front = nn.Sequential(                                   # (B, 80, T) -> (B, d_model, T / 4)
            nn.Conv1d(n_mels, d_model, 5, stride=2, padding=2), nn.BatchNorm1d(d_model), nn.GELU(),
            nn.Conv1d(d_model, d_model, 5, stride=2, padding=2), nn.BatchNorm1d(d_model), nn.GELU(),
        )
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        # No final LayerNorm: with it the CTC head's logits start small and training leaves the
        # all-blank plateau much later (measured while building this model).
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.ctc_head = nn.Linear(d_model, len(VOCAB))
        self.speaker_proj = nn.Sequential(nn.Linear(2 * d_model, embed_dim), nn.LayerNorm(embed_dim))
        self.voice_head = nn.Linear(embed_dim, len(VOICES))

    @staticmethod
    def normalise(logmel: torch.Tensor) -> torch.Tensor:
        """Fixed affine scaling of log-mel values (about -11.5 to +5) to roughly zero mean, unit spread."""
        return (logmel + 6.0) / 4.0

    def _check(self, logmel, lengths) -> torch.Tensor:
        if not isinstance(logmel, torch.Tensor):
            raise TypeError(f"logmel must be a torch.Tensor (B, {self.n_mels}, T), got {type(logmel).__name__}")
        if logmel.dim() != 3 or logmel.shape[1] != self.n_mels or logmel.shape[2] < 1:
            raise ValueError(f"logmel must have shape (B, {self.n_mels}, T >= 1), got {tuple(logmel.shape)}")
        B, _, T = logmel.shape
        if lengths is None:
            return torch.full((B,), T, dtype=torch.long)
        lengths = torch.as_tensor(lengths).long().cpu()
        if lengths.shape != (B,) or lengths.min() < 1 or lengths.max() > T:
            raise ValueError(f"lengths must hold B = {B} ints in [1, T = {T}], got {lengths.tolist()}")
        return lengths

    def encode(self, logmel: torch.Tensor, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states ``(B, T', d_model)`` and their valid lengths ``(B,)``, ``T' = ceil(T / 4)``."""
        lengths = self._check(logmel, lengths)
        x = self.front(self.normalise(logmel)).transpose(1, 2)     # (B, T', d_model)
        out_lengths = (lengths + 3) // 4                            # two convolutions: kernel 5, stride 2, padding 2
        x = x + sinusoidal_positions(x.shape[1], x.shape[2]).to(x.device, x.dtype)
        pad = torch.arange(x.shape[1])[None, :] >= out_lengths[:, None]             # (B, T'), True = padding
        return self.encoder(x, src_key_padding_mask=pad.to(x.device)), out_lengths

    def _embedding(self, h: torch.Tensor, out_lengths: torch.Tensor) -> torch.Tensor:
        """Masked mean and standard deviation over time -> the (un-normalised) speaker embedding."""
        mask = (torch.arange(h.shape[1])[None, :] < out_lengths[:, None]).to(h.device, h.dtype)[..., None]
        n = mask.sum(1)                                            # (B, 1)
        mean = (h * mask).sum(1) / n
        var = (((h - mean[:, None]) ** 2) * mask).sum(1) / n
        return self.speaker_proj(torch.cat([mean, (var + 1e-5).sqrt()], dim=-1))

    def forward(self, logmel: torch.Tensor, lengths=None):
        h, out_lengths = self.encode(logmel, lengths)
        return self.ctc_head(h), out_lengths, self.voice_head(self._embedding(h, out_lengths))

    def embed(self, logmel: torch.Tensor, lengths=None) -> torch.Tensor:
        """L2-normalised speaker embeddings, shape ``(B, embed_dim)``."""
        h, out_lengths = self.encode(logmel, lengths)
        return F.normalize(self._embedding(h, out_lengths), dim=-1)


# ----------------------------------------------------------------------------------------- inputs

def _to_logmel(item, name: str) -> torch.Tensor:
    """A 1-D waveform (16 kHz) or an ``(80, frames)`` log-mel -> the log-mel, float32 on the CPU."""
    if isinstance(item, np.ndarray):
        item = torch.from_numpy(np.ascontiguousarray(item, dtype=np.float32))
    if not isinstance(item, torch.Tensor):
        raise TypeError(f"{name} must hold numpy arrays or torch tensors, got {type(item).__name__}")
    item = item.detach().float().cpu()
    if item.dim() == 1 and item.numel() >= 1:
        return features.log_mel(item)
    if item.dim() == 2 and item.shape[0] == features.N_MELS and item.shape[1] >= 1:
        return item
    raise ValueError(f"{name} must hold 1-D waveforms (16 kHz samples) or ({features.N_MELS}, frames) "
                     f"log-mels, got shape {tuple(item.shape)}")


def _as_list(items, name: str) -> list:
    if isinstance(items, (np.ndarray, torch.Tensor)) or not isinstance(items, Sequence) or isinstance(items, str):
        raise TypeError(f"{name} must be a list of waveforms or log-mels, got {type(items).__name__}")
    if len(items) == 0:
        raise ValueError(f"{name} must not be empty")
    return list(items)


def _pad(logmels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(80, T_i)`` log-mels into ``(B, 80, max T)``, padded with silence; and the lengths."""
    lengths = torch.tensor([m.shape[1] for m in logmels])
    out = torch.full((len(logmels), logmels[0].shape[0], int(lengths.max())), _LOG_FLOOR)
    for i, m in enumerate(logmels):
        out[i, :, : m.shape[1]] = m
    return out, lengths


def _batches(model: WordRecognizer, logmels: list[torch.Tensor], batch_size: int = 32):
    """Yield ``(indices, padded, lengths)`` in length order (less padding), on the model's device."""
    device = next(model.parameters()).device
    order = sorted(range(len(logmels)), key=lambda i: logmels[i].shape[1])
    for s in range(0, len(order), batch_size):
        idx = order[s: s + batch_size]
        x, lengths = _pad([logmels[i] for i in idx])
        yield idx, x.to(device), lengths


# ----------------------------------------------------------------------------------------- training

def _augment(x: torch.Tensor, lengths: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Corrupt a padded log-mel batch ``(B, 80, T)`` the way a small vocoder might, one draw per row.

    All in the log-mel domain (cheap, no STFT per step), each corruption on a random half of the
    rows: gain of up to ±6 dB; a white noise floor 30-60 dB below the row's loudest band (added
    in the power domain); a low-pass roll-off above a random band (about 3-8 kHz); a spectral tilt
    of up to ±4 dB; a blur across neighbouring bands (smeared formants); then, on every row,
    SpecAugment: one frequency mask of up to 8 bands and one time mask of up to 8 % of the row,
    filled with the row's mean.
    """
    B, M, T = x.shape
    u = lambda *shape: torch.rand(*shape, generator=g)                      # noqa: E731
    half = lambda: (u(B, 1, 1) < 0.5).float()                               # noqa: E731
    x = x + half() * (u(B, 1, 1) * 2 - 1) * math.log(10 ** 0.6)              # gain: +-6 dB of power
    peak = x.amax(dim=(1, 2), keepdim=True)
    floor = peak - (3 + 3 * u(B, 1, 1)) * math.log(10)                        # 30-60 dB below the peak
    x = torch.where(half().bool(), torch.logaddexp(x, floor.expand_as(x)), x)
    bands = torch.arange(M, dtype=torch.float32)[None, :, None]
    cut = (45 + 35 * u(B, 1, 1)).floor()                                       # mel band ~3 kHz .. 8 kHz
    x = x - half() * (bands - cut).clamp(min=0) * 0.5                         # ~2 dB per band above the cut
    x = x + half() * (u(B, 1, 1) * 2 - 1) * math.log(10 ** 0.4) * (bands / (M - 1) - 0.5) * 2
    blur = u(B) < 0.5
    if blur.any():
        kernel = torch.tensor([0.25, 0.5, 0.25]).view(1, 1, 3, 1)
        x = x.clone()
        x[blur] = F.conv2d(F.pad(x[blur][:, None], (0, 0, 1, 1), mode="replicate"), kernel)[:, 0]
    x = torch.maximum(x, torch.tensor(_LOG_FLOOR))
    fill = x.mean(dim=(1, 2), keepdim=True)
    w = (u(B) * 9).long()                                                     # SpecAugment
    f0 = (u(B) * (M - w)).long()
    fmask = (bands[..., 0] >= f0[:, None]) & (bands[..., 0] < (f0 + w)[:, None])          # (B, M)
    tw = (u(B) * 0.08 * lengths).long()
    t0 = (u(B) * (lengths - tw).clamp(min=1)).long()
    t = torch.arange(T)[None, :]
    tmask = (t >= t0[:, None]) & (t < (t0 + tw)[:, None])                                 # (B, T)
    return torch.where(fmask[:, :, None] | tmask[:, None, :], fill, x)


def _check_utterances(utterances) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    if isinstance(utterances, (str, bytes)) or not isinstance(utterances, Sequence):
        raise TypeError(f"utterances must be a list of data.Utterance, got {type(utterances).__name__}")
    if len(utterances) == 0:
        raise ValueError("utterances must not be empty")
    logmels, targets, voices = [], [], []
    for k, u in enumerate(utterances):
        if not all(hasattr(u, a) for a in ("text", "voice", "wave")):
            raise TypeError(f"utterances[{k}] must have .text, .voice and .wave (a data.Utterance), "
                            f"got {type(u).__name__}")
        words = u.text.split()
        unknown = [w for w in words if w not in _WORD_ID]
        if not words or unknown:
            raise ValueError(f"utterances[{k}].text must be non-empty words of data.WORDS; unknown: {unknown}")
        if u.voice not in VOICES:
            raise ValueError(f"utterances[{k}].voice must be one of {VOICES}, got {u.voice!r}")
        m = _to_logmel(u.wave, f"utterances[{k}].wave")
        if (m.shape[1] + 3) // 4 < len(words):                   # CTC needs a frame per word at least
            raise ValueError(f"utterances[{k}] is too short for its {len(words)} words ({m.shape[1]} frames)")
        logmels.append(m)
        targets.append(torch.tensor([_WORD_ID[w] for w in words]))
        voices.append(VOICES.index(u.voice))
    return logmels, targets, torch.tensor(voices)


def train_recognizer(utterances: Sequence, *, steps: int, batch_size: int = 16, lr: float = 3e-3,
                     voice_weight: float = 1.0, seed: int = 0, augment: bool = True, progress: bool = True,
                     device="cpu") -> tuple[WordRecognizer, list[dict]]:
    """Train a :class:`WordRecognizer` on ``utterances`` (``data.Utterance``: text, voice, wave).

    Each step draws ``batch_size`` utterances at random (a pure function of ``seed`` and the step,
    so a run is repeatable), augments their log-mels (``augment``, see ``_augment``) and
    minimises ``CTC + voice_weight * cross-entropy(voice)`` with AdamW at ``lr`` (linear warm-up
    over the first 5 % of steps, then cosine decay to 5 %), gradients clipped at norm 1.

    Returns ``(model, history)``: the model in eval mode on ``device``, and one dict per 10 steps,
    ``{"step", "loss", "ctc", "voice"}`` (means over those steps). A step (batch 16) takes about
    0.15 s on one CPU core; chapter 16 prints the timing of its run.
    """
    from ..training import TrainConfig, train

    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_positive_int("seed", seed, minimum=0)
    for name, v in (("lr", lr), ("voice_weight", voice_weight)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} must be a float, got {type(v).__name__}")
    if not 0 < lr <= 1:
        raise ValueError(f"lr must be in (0, 1], got {lr}")
    if not 0 <= voice_weight <= 10:
        raise ValueError(f"voice_weight must be in [0, 10], got {voice_weight}")
    logmels, targets, voices = _check_utterances(utterances)
    device = torch.device(device)

    torch.manual_seed(seed)
    model = WordRecognizer().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    n = len(logmels)

    def batch_fn(i: int):
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        idx = torch.randint(n, (batch_size,), generator=g).tolist()
        x, lengths = _pad([logmels[j] for j in idx])
        if augment:
            x = _augment(x, lengths, g)
        tgt = [targets[j] for j in idx]
        return x, lengths, torch.cat(tgt), torch.tensor([len(t) for t in tgt]), voices[idx]

    def loss_fn(model, batch):
        x, lengths, tgt, tgt_lengths, voice = batch
        logits, out_lengths, voice_logits = model(x, lengths)
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)               # (T', B, V) for ctc_loss
        ctc = F.ctc_loss(log_probs, tgt, out_lengths, tgt_lengths.cpu(), blank=0, zero_infinity=True)
        ce = F.cross_entropy(voice_logits.float(), voice)
        return ctc + voice_weight * ce, {"ctc": ctc.detach(), "voice": ce.detach()}

    config = TrainConfig(steps=steps, log_every=min(10, steps), progress=progress, live_plot=progress,
                         plot_title="Recogniser training loss (CTC + voice)", lr_schedule="cosine",
                         warmup_steps=max(1, steps // 20), min_lr_ratio=0.05, precision="fp32")
    hist = train(model, optimizer, batch_fn, config, loss_fn=loss_fn, device=device)
    history = [{"step": s, "loss": l, "ctc": c, "voice": v}
               for s, l, c, v in zip(hist.step, hist.loss, hist.terms["ctc"], hist.terms["voice"])]
    model.eval()
    return model, history


# ----------------------------------------------------------------------------------------- using it

def _check_model(model) -> WordRecognizer:
    if not isinstance(model, WordRecognizer):
        raise TypeError(f"model must be a WordRecognizer, got {type(model).__name__}")
    return model


def _greedy(ids: list[int]) -> str:
    """Best path -> words: merge repeated labels, then drop blanks."""
    words, prev = [], 0
    for i in ids:
        if i != prev and i != 0:
            words.append(VOCAB[i])
        prev = i
    return " ".join(words)


@torch.no_grad()
def transcribe(model: WordRecognizer, waves_or_logmels: Sequence, batch_size: int = 32) -> list[str]:
    """Greedy CTC transcripts, one string of space-separated :data:`VOCAB` words per input.

    Each input is a 1-D waveform at 16 kHz (numpy or torch) or an ``(80, frames)`` log-mel."""
    _check_model(model)
    check_positive_int("batch_size", batch_size)
    items = _as_list(waves_or_logmels, "waves_or_logmels")
    logmels = [_to_logmel(x, f"waves_or_logmels[{k}]") for k, x in enumerate(items)]
    was_training = model.training
    model.eval()
    out: list[str] = [""] * len(logmels)
    for idx, x, lengths in _batches(model, logmels, batch_size):
        logits, out_lengths, _ = model(x, lengths)
        best = logits.argmax(-1).cpu()
        for row, i in enumerate(idx):
            out[i] = _greedy(best[row, : out_lengths[row]].tolist())
    model.train(was_training)
    return out


@torch.no_grad()
def speaker_embeddings(model: WordRecognizer, waves_or_logmels: Sequence, batch_size: int = 32) -> torch.Tensor:
    """L2-normalised speaker embeddings, shape ``(N, 64)``, one row per input (waveform or log-mel)."""
    _check_model(model)
    check_positive_int("batch_size", batch_size)
    items = _as_list(waves_or_logmels, "waves_or_logmels")
    logmels = [_to_logmel(x, f"waves_or_logmels[{k}]") for k, x in enumerate(items)]
    was_training = model.training
    model.eval()
    out = torch.empty(len(logmels), model.voice_head.in_features)
    for idx, x, lengths in _batches(model, logmels, batch_size):
        out[idx] = model.embed(x, lengths).cpu()
    model.train(was_training)
    return out


@torch.no_grad()
def voice_accuracy(model: WordRecognizer, waves: Sequence, voices: Sequence[str]) -> float:
    """Fraction of ``waves`` whose voice the speaker head names correctly (chance: 1 / 4)."""
    _check_model(model)
    items = _as_list(waves, "waves")
    voices = _as_list(voices, "voices")
    if len(items) != len(voices):
        raise ValueError(f"waves and voices must have the same length, got {len(items)} and {len(voices)}")
    bad = [v for v in voices if v not in VOICES]
    if bad:
        raise ValueError(f"voices must be names in {VOICES}, got {bad[0]!r}")
    logmels = [_to_logmel(x, f"waves[{k}]") for k, x in enumerate(items)]
    was_training = model.training
    model.eval()
    correct = 0
    for idx, x, lengths in _batches(model, logmels):
        pred = model(x, lengths)[2].argmax(-1).cpu().tolist()
        correct += sum(VOICES[p] == voices[i] for p, i in zip(pred, idx))
    model.train(was_training)
    return correct / len(items)


def speaker_similarity(model: WordRecognizer, waves_a: Sequence, waves_b: Sequence) -> float:
    """Mean cosine similarity of the speaker embeddings of pairs ``(waves_a[i], waves_b[i])``, in [-1, 1]."""
    a = _as_list(waves_a, "waves_a")
    b = _as_list(waves_b, "waves_b")
    if len(a) != len(b):
        raise ValueError(f"waves_a and waves_b must have the same length, got {len(a)} and {len(b)}")
    return float((speaker_embeddings(model, a) * speaker_embeddings(model, b)).sum(-1).mean())


# ----------------------------------------------------------------------------------------- scoring

def _words(text, name: str) -> list[str]:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    return text.split()


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """``(edits, n_ref)``: the fewest word substitutions + insertions + deletions that turn ``hyp``
    into ``ref`` (Levenshtein distance over words, split on whitespace), and the words in ``ref``."""
    r, h = _words(ref, "ref"), _words(hyp, "hyp")
    prev = list(range(len(h) + 1))                  # distance from r[:0] to h[:j]
    for i, rw in enumerate(r, 1):
        cur = [i] + [0] * len(h)
        for j, hw in enumerate(h, 1):
            cur[j] = min(prev[j] + 1,               # deletion (a reference word missing)
                         cur[j - 1] + 1,            # insertion (an extra hypothesis word)
                         prev[j - 1] + (rw != hw))  # substitution or match
        prev = cur
    return prev[-1], len(r)


def matched_words(ref: str, hyp: str) -> list[bool]:
    """For each word of ``ref``: True when it is matched exactly in a minimum-edit alignment of
    ``hyp`` to ``ref`` (among minimum-edit alignments, one with the most matches)."""
    r, h = _words(ref, "ref"), _words(hyp, "hyp")
    n, m = len(r), len(h)
    # cost[i][j] = (edits, -matches) of the best alignment of r[:i] and h[:j], compared as a tuple
    cost = [[(i + j, 0) for j in range(m + 1)] for i in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            e, k = cost[i - 1][j - 1]
            diag = (e, k - 1) if r[i - 1] == h[j - 1] else (e + 1, k)
            up, left = cost[i - 1][j], cost[i][j - 1]
            cost[i][j] = min(diag, (up[0] + 1, up[1]), (left[0] + 1, left[1]))
    out, i, j = [False] * n, n, m
    while i > 0 and j > 0:
        e, k = cost[i - 1][j - 1]
        match = r[i - 1] == h[j - 1]
        if cost[i][j] == ((e, k - 1) if match else (e + 1, k)):
            out[i - 1] = match
            i, j = i - 1, j - 1
        elif cost[i][j] == (cost[i - 1][j][0] + 1, cost[i - 1][j][1]):
            i -= 1
        else:
            j -= 1
    return out


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER: total word edits / total reference words (can exceed 1 with many insertions)."""
    for name, v in (("references", references), ("hypotheses", hypotheses)):
        if isinstance(v, str) or not isinstance(v, Sequence):
            raise TypeError(f"{name} must be a list of str, got {type(v).__name__}")
    if len(references) != len(hypotheses):
        raise ValueError(f"references and hypotheses must have the same length, "
                         f"got {len(references)} and {len(hypotheses)}")
    if len(references) == 0:
        raise ValueError("references must not be empty")
    edits = n_ref = 0
    for k, (r, h) in enumerate(zip(references, hypotheses)):
        _words(r, f"references[{k}]"), _words(h, f"hypotheses[{k}]")
        e, n = word_errors(r, h)
        edits, n_ref = edits + e, n_ref + n
    if n_ref == 0:
        raise ValueError("references must contain at least one word in total")
    return edits / n_ref
