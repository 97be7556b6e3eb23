"""A dual autoregressive text-to-speech model over codec tokens (chapter 16).

The design follows Fish-Speech's "dual AR" idea at toy scale. Speech is a grid of tokens: one column
per code frame (31.25 per second), ``Q`` rows (the residual codebooks of
:mod:`genai_helpers.speech.codec`). One transformer over all ``T * Q`` tokens would be slow, so
the work is split:

- the **slow transformer** runs once per *frame*: its sequence is ``[voice, speed, text characters,
  frame 0, frame 1, ...]``, where a frame's input is the sum of the embeddings of the previous
  frame's ``Q`` codes; causal self-attention; its output ``h_t`` summarises everything before frame t;
- the **fast transformer** runs once per *codebook* inside a frame: its sequence is
  ``[h_t, code_1, ..., code_{Q-1}]`` and it predicts ``code_1 ... code_Q`` one after the other, so
  the fine codebooks depend on the coarse ones of the same frame.

Both use pre-norm blocks with RMSNorm (``x / rms(x) * g``, no mean subtraction, no bias).

**Alignment.** A decoder-only TTS model must learn which characters each frame is saying. Big
models learn it from thousands of hours; with an hour of audio and minutes of CPU it often never
appears. So, as E2 TTS and F5-TTS do, the model is told the utterance's length: every character gets
a feature of its relative position ``(i + 1/2) / N`` and every frame of ``(t + 1/2) / T``, through the
same projection, so attention can match "60 % through the frames" with "60 % through the text". A
duration model (:class:`DurationModel`, a least-squares fit) predicts ``T`` from the text, voice and
speed at synthesis time, and generation stops after ``T`` frames.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..lr_schedules import cosine_schedule
from . import data

__all__ = ["CHARS", "TTSConfig", "encode_text", "RMSNorm", "Block", "progress_features", "DualARTTS",
           "synthesize", "DurationModel", "fit_duration_model", "make_batch", "tts_loss", "train_tts", "train_tts_stage"]

#: The characters the model reads (id 0 is padding).
CHARS = " abcdefghijklmnopqrstuvwxyz'"


def encode_text(text: str) -> list[int]:
    """Character ids (1..len(CHARS)) of ``text``, lower-cased; other characters raise ValueError."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    t = text.lower().strip()
    bad = sorted({c for c in t if c not in CHARS})
    if not t or bad:
        raise ValueError(f"text must be non-empty letters, spaces and apostrophes; got bad characters {bad}")
    return [CHARS.index(c) + 1 for c in t]


@dataclass(frozen=True)
class TTSConfig:
    n_codebooks: int = 4          # Q: how many of the codec's codebooks the model writes
    codebook_size: int = 256      # K
    d_slow: int = 192
    n_slow_layers: int = 4
    d_fast: int = 128
    n_fast_layers: int = 2
    n_heads: int = 4
    n_voices: int = len(data.VOICES)
    n_speeds: int = len(data.SPEEDS)
    n_progress: int = 24          # sinusoid pairs of the relative-position feature

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{f.name} must be a positive int, got {v!r}")
        for d in (self.d_slow, self.d_fast):
            if d % self.n_heads:
                raise ValueError(f"d_slow and d_fast must be divisible by n_heads={self.n_heads}, got {d}")


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` (Zhang and Sennrich, 2019)."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Block(nn.Module):
    """Pre-norm transformer block: RMSNorm -> causal multi-head attention -> residual, RMSNorm -> MLP
    (GELU, 4x) -> residual. ``forward(x, mask, cache)`` accepts a key/value cache for decoding."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.fc1 = nn.Linear(d, 4 * d, bias=False)
        self.fc2 = nn.Linear(4 * d, d, bias=False)

    def forward(self, x, mask=None, cache=None):
        B, T, D = x.shape
        H = self.n_heads
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], 2)
                v = torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def progress_features(frac: torch.Tensor, n: int) -> torch.Tensor:
    """Sinusoids ``sin/cos(pi * k * frac)`` for k = 1..n, shape ``frac.shape + (2n,)``."""
    k = torch.arange(1, n + 1, device=frac.device, dtype=torch.float32)
    ang = math.pi * frac[..., None].float() * k
    return torch.cat([torch.sin(ang), torch.cos(ang)], -1)


class DualARTTS(nn.Module):
    """The slow (per frame) and fast (per codebook) transformers; see the module docstring."""

    def __init__(self, config: TTSConfig = TTSConfig()):
        super().__init__()
        self.config = c = config
        self.char_emb = nn.Embedding(len(CHARS) + 1, c.d_slow, padding_idx=0)
        self.voice_emb = nn.Embedding(c.n_voices, c.d_slow)
        self.speed_emb = nn.Embedding(c.n_speeds, c.d_slow)
        self.progress = nn.Linear(2 * c.n_progress, c.d_slow, bias=False)
        self.is_audio = nn.Parameter(torch.zeros(c.d_slow))
        self.bos = nn.Parameter(torch.randn(c.d_slow) * 0.02)
        self.code_emb = nn.ModuleList(nn.Embedding(c.codebook_size, c.d_slow) for _ in range(c.n_codebooks))
        self.slow = nn.ModuleList(Block(c.d_slow, c.n_heads) for _ in range(c.n_slow_layers))
        self.slow_norm = RMSNorm(c.d_slow)
        self.to_fast = nn.Linear(c.d_slow, c.d_fast, bias=False)
        self.fast_code_emb = nn.ModuleList(nn.Embedding(c.codebook_size, c.d_fast) for _ in range(c.n_codebooks - 1))
        self.fast_pos = nn.Parameter(torch.randn(c.n_codebooks, c.d_fast) * 0.02)
        self.fast = nn.ModuleList(Block(c.d_fast, c.n_heads) for _ in range(c.n_fast_layers))
        self.fast_norm = RMSNorm(c.d_fast)
        self.heads = nn.ModuleList(nn.Linear(c.d_fast, c.codebook_size, bias=False) for _ in range(c.n_codebooks))
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    # -- the slow transformer ---------------------------------------------------------------------
    def prefix(self, text_ids: torch.Tensor, text_len: torch.Tensor, voice: torch.Tensor, speed: torch.Tensor):
        """Input vectors of ``[voice, speed, characters]`` (B, 2 + N, d); padding characters are zeros."""
        B, N = text_ids.shape
        pos = torch.arange(N, device=text_ids.device)[None].float()
        frac = (pos + 0.5) / text_len[:, None].float()
        x = self.char_emb(text_ids) + self.progress(progress_features(frac, self.config.n_progress))
        x = x * (text_ids > 0)[..., None]
        return torch.cat([self.voice_emb(voice)[:, None], self.speed_emb(speed)[:, None], x], 1)

    def frame_inputs(self, prev_codes: torch.Tensor, t0: torch.Tensor | int, n_frames: torch.Tensor):
        """Input vectors of frames t0.. (B, T, d) from the previous frames' codes (B, T, Q); the code
        row ``-1`` stands for "no previous frame" (the first frame) and gives the BOS vector."""
        B, T, Q = prev_codes.shape
        first = prev_codes[..., 0] < 0
        safe = prev_codes.clamp(min=0)
        x = sum(self.code_emb[q](safe[..., q]) for q in range(Q))
        x = torch.where(first[..., None], self.bos.expand_as(x), x)
        t = torch.arange(T, device=prev_codes.device)[None].float() + (t0 if isinstance(t0, int) else t0[:, None])
        frac = (t + 0.5) / n_frames[:, None].float()
        return x + self.progress(progress_features(frac, self.config.n_progress)) + self.is_audio

    def slow_forward(self, x, mask=None, caches=None):
        for i, blk in enumerate(self.slow):
            x = blk(x, mask, None if caches is None else caches[i])
        return self.slow_norm(x)

    # -- the fast transformer ---------------------------------------------------------------------
    def fast_logits(self, h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Logits (M, Q', K) for codebooks 1..Q' of M frames, given their slow states ``h`` (M, d_slow)
        and their first ``Q' - 1`` codes (M, Q' - 1) (teacher forcing, or those sampled so far)."""
        Qp = codes.shape[1] + 1
        seq = [self.to_fast(h)[:, None]]
        seq += [self.fast_code_emb[j](codes[:, j])[:, None] for j in range(Qp - 1)]
        x = torch.cat(seq, 1) + self.fast_pos[:Qp]
        mask = torch.ones(Qp, Qp, dtype=torch.bool, device=x.device).tril()
        for blk in self.fast:
            x = blk(x, mask)
        x = self.fast_norm(x)
        return torch.stack([self.heads[j](x[:, j]) for j in range(Qp)], 1)

    def forward(self, text_ids, text_len, voice, speed, codes, n_frames):
        """Teacher-forced logits (B, T, Q, K) for target ``codes`` (B, T, Q) (padding frames: any value)."""
        B, T, Q = codes.shape
        pre = self.prefix(text_ids, text_len, voice, speed)
        prev = torch.cat([torch.full_like(codes[:, :1], -1), codes[:, :-1]], 1)
        x = torch.cat([pre, self.frame_inputs(prev, 0, n_frames)], 1)
        P = pre.shape[1]
        L = P + T
        key_ok = torch.ones(B, L, dtype=torch.bool, device=x.device)
        key_ok[:, 2:P] = text_ids > 0
        mask = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()[None] & key_ok[:, None, :]
        mask = mask | torch.eye(L, dtype=torch.bool, device=x.device)[None]       # no query sees nothing
        h = self.slow_forward(x, mask[:, None])[:, P:]                           # (B, T, d)
        logits = self.fast_logits(h.reshape(B * T, -1), codes.reshape(B * T, Q)[:, :-1])
        return logits.view(B, T, Q, -1)

    @torch.no_grad()
    def attention_maps(self, text: str, voice: int, speed: int, codes: torch.Tensor) -> torch.Tensor:
        """Attention weights of every slow layer for one utterance with known ``codes`` (T, Q):
        shape (layers, heads, T, 2 + N), the rows of the T frames over the prefix keys
        ``[voice, speed, characters]`` (renormalised to sum to 1 over the prefix)."""
        dev = next(self.parameters()).device
        ids = torch.tensor([encode_text(text)], device=dev)
        b = {"text_ids": ids, "text_len": torch.tensor([ids.shape[1]], device=dev),
             "voice": torch.tensor([voice], device=dev), "speed": torch.tensor([speed], device=dev)}
        codes = codes[None, :, :self.config.n_codebooks].to(dev)
        T = codes.shape[1]
        pre = self.prefix(b["text_ids"], b["text_len"], b["voice"], b["speed"])
        prev = torch.cat([torch.full_like(codes[:, :1], -1), codes[:, :-1]], 1)
        x = torch.cat([pre, self.frame_inputs(prev, 0, torch.tensor([T], device=dev))], 1)
        P, L = pre.shape[1], pre.shape[1] + T
        mask = torch.ones(L, L, dtype=torch.bool, device=dev).tril()
        maps = []
        for blk in self.slow:
            B, _, D = x.shape
            H = blk.n_heads
            q, k, _ = blk.qkv(blk.norm1(x)).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(D // H)
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)[0, :, P:, :P]
            maps.append(att / att.sum(-1, keepdim=True))
            x = blk(x, mask)
        return torch.stack(maps)

    @torch.no_grad()
    def generate(self, text: str, voice: int, speed: int, n_frames: int, *, temperature: float = 0.7,
                 top_k: int = 20, seed: int = 0, on_frame=None) -> torch.Tensor:
        """Codes (n_frames, Q) for ``text``; slow transformer with a key/value cache, fast transformer
        sampled codebook by codebook. ``on_frame(t, codes_so_far)`` is called after each frame (for
        streaming). ``temperature=0`` is greedy."""
        c = self.config
        if not isinstance(n_frames, int) or not 1 <= n_frames <= 1000:
            raise ValueError(f"n_frames must be an int in [1, 1000], got {n_frames!r}")
        if not 0 <= voice < c.n_voices or not 0 <= speed < c.n_speeds:
            raise ValueError(f"voice must be in [0, {c.n_voices}) and speed in [0, {c.n_speeds}), got {voice}, {speed}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        dev = next(self.parameters()).device
        g = torch.Generator(device=dev).manual_seed(seed)
        ids = torch.tensor([encode_text(text)], device=dev)
        n = torch.tensor([ids.shape[1]], device=dev)
        caches = [dict() for _ in self.slow]
        pre = self.prefix(ids, n, torch.tensor([voice], device=dev), torch.tensor([speed], device=dev))
        self.slow_forward(pre, torch.ones(pre.shape[1], pre.shape[1], dtype=torch.bool, device=dev).tril(), caches)
        out = torch.empty(n_frames, c.n_codebooks, dtype=torch.long, device=dev)
        prev = torch.full((1, 1, c.n_codebooks), -1, dtype=torch.long, device=dev)
        nf = torch.tensor([n_frames], device=dev)
        for t in range(n_frames):
            h = self.slow_forward(self.frame_inputs(prev, t, nf), None, caches)[:, -1]
            codes = torch.empty(1, 0, dtype=torch.long, device=dev)
            for j in range(c.n_codebooks):
                logits = self.fast_logits(h, codes)[:, j]
                if temperature == 0:
                    nxt = logits.argmax(-1, keepdim=True)
                else:
                    logits = logits / temperature
                    if top_k:
                        kth = logits.topk(min(top_k, logits.shape[-1]), -1).values[:, -1:]
                        logits = logits.masked_fill(logits < kth, float("-inf"))
                    nxt = torch.multinomial(logits.softmax(-1), 1, generator=g)
                codes = torch.cat([codes, nxt], 1)
            out[t] = codes[0]
            prev = codes[:, None]
            if on_frame is not None:
                on_frame(t, out[:t + 1])
        return out


def synthesize(model: DualARTTS, codec, text: str, voice: int, speed: int, n_frames: int, *,
               chunk_frames: int | None = None, lookahead: int = 2, temperature: float = 0.7, top_k: int = 20,
               seed: int = 0):
    """Speak ``text``: codes from ``model``, audio from the codec's decoder.

    With ``chunk_frames`` the audio is *streamed*: every ``chunk_frames`` new frames the decoder runs
    on all frames so far and the samples that the last ``lookahead`` frames could still change are
    held back until the next chunk (the decoder's convolutions look a few frames ahead).
    Returns ``(wave, info)``; ``info`` has ``seconds`` (wall time), ``first_audio_s`` (time until the
    first chunk is ready; the whole synthesis without streaming), ``audio_s`` and ``rtf`` (wall time /
    audio duration), and ``chunks`` (the list of streamed pieces).
    """
    if chunk_frames is not None and (not isinstance(chunk_frames, int) or chunk_frames < 1):
        raise ValueError(f"chunk_frames must be None or an int >= 1, got {chunk_frames!r}")
    if not isinstance(lookahead, int) or lookahead < 0:
        raise ValueError(f"lookahead must be an int >= 0, got {lookahead!r}")
    from . import features
    samples_per_frame = features.HOP * codec.config.stride
    chunks, state = [], {"sent": 0, "first": None}
    t0 = time.perf_counter()

    def emit(t, codes):
        done = t + 1
        if chunk_frames is None or (done % chunk_frames and done < n_frames):
            return
        with torch.no_grad():
            wave = codec.decode(codes[None], None)[0]
        end = len(wave) if done == n_frames else min(len(wave), max(0, (done - lookahead) * samples_per_frame))
        if end > state["sent"]:
            chunks.append(wave[state["sent"]:end])
            state["sent"] = end
            if state["first"] is None:
                state["first"] = time.perf_counter() - t0

    codes = model.generate(text, voice, speed, n_frames, temperature=temperature, top_k=top_k, seed=seed,
                           on_frame=emit)
    if chunk_frames is None:
        with torch.no_grad():
            wave = codec.decode(codes[None], None)[0]
        chunks = [wave]
        state["first"] = time.perf_counter() - t0
    else:
        wave = torch.cat(chunks)
    seconds = time.perf_counter() - t0
    audio_s = len(wave) / features.SAMPLE_RATE
    return wave, {"seconds": seconds, "first_audio_s": state["first"], "audio_s": audio_s,
                  "rtf": seconds / audio_s, "chunks": chunks, "codes": codes}


# -- duration ---------------------------------------------------------------------------------------
@dataclass
class DurationModel:
    """Frames ≈ (a·characters + b·words + c) · 175 / speed + voice offset: a least-squares fit."""
    coef: list

    @staticmethod
    def features(text: str, voice: str, speed: int) -> np.ndarray:
        r = 175.0 / speed
        one_hot = [1.0 if voice == v else 0.0 for v in data.VOICES]
        return np.array([len(text) * r, len(text.split()) * r, r] + one_hot)

    def predict(self, text: str, voice: str, speed: int) -> int:
        return max(1, int(round(float(self.features(text, voice, speed) @ np.array(self.coef)))))


def fit_duration_model(texts, voices, speeds, n_frames) -> DurationModel:
    """Least-squares :class:`DurationModel` from examples (text, voice, speed) -> frame count."""
    if not (len(texts) == len(voices) == len(speeds) == len(n_frames)) or not texts:
        raise ValueError("texts, voices, speeds and n_frames must be non-empty and of equal length")
    X = np.stack([DurationModel.features(t, v, s) for t, v, s in zip(texts, voices, speeds)])
    coef, *_ = np.linalg.lstsq(X, np.asarray(n_frames, dtype=np.float64), rcond=None)
    return DurationModel([float(c) for c in coef])


# -- training ---------------------------------------------------------------------------------------
def make_batch(items, n_codebooks: int):
    """Pad a list of ``(text, voice_index, speed_index, codes (T, Q_codec))`` into model inputs."""
    B = len(items)
    ids = [encode_text(t) for t, *_ in items]
    N = max(map(len, ids))
    T = max(c.shape[0] for *_, c in items)
    text_ids = torch.zeros(B, N, dtype=torch.long)
    codes = torch.zeros(B, T, n_codebooks, dtype=torch.long)
    valid = torch.zeros(B, T, dtype=torch.bool)
    for b, (i, (_, _, _, c)) in enumerate(zip(ids, items)):
        text_ids[b, :len(i)] = torch.tensor(i)
        codes[b, :c.shape[0]] = c[:, :n_codebooks]
        valid[b, :c.shape[0]] = True
    return {"text_ids": text_ids, "text_len": torch.tensor([len(i) for i in ids]),
            "voice": torch.tensor([v for _, v, _, _ in items]), "speed": torch.tensor([s for _, _, s, _ in items]),
            "codes": codes, "n_frames": valid.sum(1), "valid": valid}


def tts_loss(model: DualARTTS, batch) -> tuple[torch.Tensor, dict]:
    """Cross-entropy of every (valid frame, codebook), and the per-codebook parts."""
    logits = model(batch["text_ids"], batch["text_len"], batch["voice"], batch["speed"], batch["codes"],
                   batch["n_frames"])
    v = batch["valid"]
    ce = F.cross_entropy(logits[v].flatten(0, 1), batch["codes"][v].flatten(), reduction="none")
    per_q = ce.view(-1, model.config.n_codebooks).mean(0)
    return per_q.mean(), {"loss": per_q.mean().item(), **{f"ce{q + 1}": per_q[q].item() for q in range(len(per_q))}}


def train_tts(items, config: TTSConfig = TTSConfig(), *, steps: int, batch_size: int = 16, lr: float = 2e-3,
              seed: int = 0, device="cpu", progress: bool = True, callback=None):
    """Train a :class:`DualARTTS` on ``items`` (see :func:`make_batch`); returns ``(model, history)``."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not items:
        raise ValueError("items must be a non-empty list of (text, voice, speed, codes)")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = DualARTTS(config).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    sched = cosine_schedule(opt, steps, warmup_steps=max(1, steps // 20))
    from tqdm.auto import tqdm
    history = []
    bar = tqdm(range(steps), desc="tts", disable=not progress)
    for step in bar:
        pick = torch.randint(len(items), (batch_size,), generator=g).tolist()
        batch = {k: v.to(device) for k, v in make_batch([items[i] for i in pick], config.n_codebooks).items()}
        model.train()
        loss, parts = tts_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append({"step": step, **parts})
        if step % 10 == 0:
            bar.set_postfix(loss=f"{parts['loss']:.3f}")
        if callback is not None and (step % 25 == 0 or step == steps - 1):
            callback(step, history)
    model.eval()
    return model, history


def train_tts_stage(folder: Path, steps: int) -> None:
    """``make pretrain-speech``'s second stage: encode the train split with the shipped codec, fit the
    duration model, train the dual AR model, save weights, history and manifest entries."""
    from ..checkpoint import write_atomic
    from . import pretrain
    from .weights import load_codec
    utts = data.make_split("train", pretrain.TRAIN_UTTERANCES, pretrain.SEED)
    codec = load_codec(folder)
    cfg = TTSConfig()
    with torch.no_grad():
        codes = [codec.encode(torch.from_numpy(u.wave), cfg.n_codebooks)[0] for u in utts]
    items = [(u.text, data.VOICES.index(u.voice), data.SPEEDS.index(u.speed), c) for u, c in zip(utts, codes)]
    dur = fit_duration_model([u.text for u in utts], [u.voice for u in utts], [u.speed for u in utts],
                             [c.shape[0] for c in codes])
    t0 = time.time()
    model, history = train_tts(items, cfg, steps=steps, seed=pretrain.SEED)
    seconds = time.time() - t0
    sha = pretrain.save_fp16(model, folder / "tts.safetensors")
    write_atomic(folder / "tts_history.json", json.dumps(history))
    man = pretrain._manifest(folder)
    man["stages"]["tts"] = {"file": "tts.safetensors", "sha256": sha, "config": dataclasses.asdict(cfg),
                            "steps": steps, "seconds": round(seconds, 1), "machine": pretrain._machine(),
                            "duration_model": dur.coef, "codec_sha256": man["stages"]["codec"]["sha256"],
                            "data": {"split": "train", "n": pretrain.TRAIN_UTTERANCES, "seed": pretrain.SEED},
                            "final_loss": sum(h["loss"] for h in history[-50:]) / min(50, len(history))}
    pretrain._write_manifest(folder, man)
    print(f"tts: {steps} steps in {seconds:.0f} s -> {folder / 'tts.safetensors'}")
