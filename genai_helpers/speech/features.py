"""Spectrograms, Griffin-Lim, cepstra and distances for speech (chapter 16).

- :func:`stft` / :func:`istft` — the short-time Fourier transform at the book's settings
  (16 kHz, 1,024-sample Hann window, hop 256: 64 ms windows, 62.5 frames per second).
- :func:`mel_filterbank` — triangular filters on the Slaney mel scale, area-normalised; equal to
  ``librosa.filters.mel(sr=16000, n_fft=1024, n_mels=80)`` (chapter 16 asserts it).
- :func:`log_mel` — ``log(max(mel power, 1e-5))``, the features every model of the chapter reads.
- :func:`griffin_lim` — a waveform from a magnitude spectrogram by iterating phase estimates
  (Griffin and Lim, 1984); :func:`mel_to_audio` inverts a log-mel through the filterbank's
  pseudo-inverse first: the classic baseline vocoder.
- :func:`mfcc` and :func:`mel_cepstral_distortion` — cepstra (a DCT of the log-mel) and the
  distance between two utterances after dynamic time warping (:func:`dtw_path`), in dB.
- :func:`audio_html` — an HTML ``<audio>`` player with the sound embedded (MP3, or WAV), which
  plays on the static site without a server.
"""
from __future__ import annotations

import base64
import io
import math
import wave

import numpy as np
import torch

__all__ = ["SAMPLE_RATE", "N_FFT", "HOP", "N_MELS", "stft", "istft", "mel_filterbank", "log_mel", "griffin_lim",
           "mel_to_audio", "mfcc", "dtw_path", "mel_cepstral_distortion", "wav_bytes", "mp3_bytes", "audio_html"]

SAMPLE_RATE = 16_000
N_FFT = 1024
HOP = 256
N_MELS = 80


def _as_tensor(wave_, name="wave") -> torch.Tensor:
    if isinstance(wave_, np.ndarray):
        wave_ = torch.from_numpy(np.ascontiguousarray(wave_, dtype=np.float32))
    if not isinstance(wave_, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(wave_).__name__}")
    if wave_.dim() not in (1, 2) or wave_.shape[-1] < 1:
        raise ValueError(f"{name} must be 1-D (samples) or 2-D (batch, samples), got shape {tuple(wave_.shape)}")
    return wave_.float()


def stft(wave_, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """Complex STFT, shape ``(..., n_fft // 2 + 1, frames)``; centred frames, zero padding (as librosa)."""
    x = _as_tensor(wave_)
    return torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft, device=x.device), center=True,
                      pad_mode="constant", return_complex=True)


def istft(spec: torch.Tensor, length: int | None = None, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """The inverse of :func:`stft` (overlap-add with the same Hann window)."""
    return torch.istft(spec, n_fft, hop, window=torch.hann_window(n_fft, device=spec.device), center=True,
                       length=length)


def _hz_to_mel(f):
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's default, htk=False)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """Mel filters, shape ``(n_mels, n_fft // 2 + 1)``: triangles between ``n_mels + 2`` points equally
    spaced on the Slaney mel scale, each scaled to unit area (``2 / bandwidth``)."""
    for name, v in (("sr", sr), ("n_fft", n_fft), ("n_mels", n_mels)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    fmax = sr / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sr / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sr/2 = {sr / 2}, got fmin={fmin}, fmax={fmax}")
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


_FB_CACHE: dict = {}


def _fb(device) -> torch.Tensor:
    key = str(device)
    if key not in _FB_CACHE:
        _FB_CACHE[key] = mel_filterbank().to(device)
    return _FB_CACHE[key]


def log_mel(wave_, *, floor: float = 1e-5) -> torch.Tensor:
    """Log mel power spectrogram, shape ``(..., 80, frames)``: ``log(max(M |STFT|^2, floor))``."""
    spec = stft(wave_)
    power = spec.real ** 2 + spec.imag ** 2
    return torch.log(torch.clamp(_fb(power.device) @ power, min=floor))


def griffin_lim(magnitude: torch.Tensor, n_iter: int = 32, length: int | None = None, *, momentum: float = 0.99,
                seed: int = 0) -> torch.Tensor:
    """A waveform whose STFT magnitude approximates ``magnitude`` (``(n_fft // 2 + 1, frames)``).

    Starts from random phase and alternates: take the phase of STFT(ISTFT(current)), keep the target
    magnitude. ``momentum`` is the "fast Griffin-Lim" of Perraudin et al. (2013), as in librosa.
    """
    if not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be an int >= 1, got {n_iter!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    g = torch.Generator().manual_seed(seed)
    mag = magnitude.float()
    angles = torch.exp(2j * math.pi * torch.rand(mag.shape, generator=g)).to(mag.device)
    prev = torch.zeros_like(angles)
    for _ in range(n_iter):
        rebuilt = stft(istft(mag * angles, length=length))
        new = rebuilt - (momentum / (1 + momentum)) * prev if momentum else rebuilt
        prev = rebuilt
        angles = new / torch.clamp(new.abs(), min=1e-8)
    return istft(mag * angles, length=length)


def mel_to_audio(logmel: torch.Tensor, n_iter: int = 32, length: int | None = None) -> torch.Tensor:
    """Griffin-Lim from a log-mel: power back through the filterbank's pseudo-inverse (non-negative),
    then :func:`griffin_lim` on its square root. Loses what the 80 mel bands averaged away."""
    power = torch.clamp(torch.linalg.pinv(_fb(logmel.device)) @ torch.exp(logmel), min=0.0)
    return griffin_lim(power.sqrt(), n_iter=n_iter, length=length)


def mfcc(logmel: torch.Tensor, n_mfcc: int = 13) -> torch.Tensor:
    """Mel-frequency cepstral coefficients: an orthonormal DCT-II of the log-mel over the mel axis,
    shape ``(n_mfcc, frames)`` (``librosa.feature.mfcc(S=...)`` with dB instead of natural log)."""
    n = logmel.shape[-2]
    k = torch.arange(n_mfcc, dtype=torch.float32)[:, None]
    m = torch.arange(n, dtype=torch.float32)[None, :]
    basis = torch.cos(math.pi / n * (m + 0.5) * k) * math.sqrt(2.0 / n)
    basis[0] /= math.sqrt(2.0)
    return basis.to(logmel.device) @ logmel


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """The minimum-cost monotonic alignment through a cost matrix (steps right, down, diagonal)."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or 0 in cost.shape:
        raise ValueError(f"cost must be a non-empty 2-D matrix, got shape {cost.shape}")
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row, prev = acc[i], acc[i - 1]
        c = cost[i - 1]
        for j in range(1, m + 1):
            row[j] = c[j - 1] + min(prev[j - 1], prev[j], row[j - 1])
    i, j, path = n, m, []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = int(np.argmin((acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])))
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    return path[::-1]


def mel_cepstral_distortion(wave_a, wave_b, n_mfcc: int = 13) -> float:
    """Mel-cepstral distortion in dB between two utterances of the same text, after DTW alignment:
    ``(10 / ln 10) * sqrt(2 * sum_{d=1}^{n_mfcc-1} (c_d - c'_d)^2)`` averaged over aligned frames,
    where ``c`` are the cepstra of the natural-log mel *amplitude* (half the log power); ``c_0``,
    the loudness, is left out."""
    ca = mfcc(0.5 * log_mel(wave_a), n_mfcc)[1:].T.numpy()
    cb = mfcc(0.5 * log_mel(wave_b), n_mfcc)[1:].T.numpy()
    cost = np.sqrt(((ca[:, None, :] - cb[None, :, :]) ** 2).sum(-1))
    path = dtw_path(cost)
    d = np.array([cost[i, j] for i, j in path])
    return float(10.0 / math.log(10) * math.sqrt(2.0) * d.mean())


def wav_bytes(wave_, sr: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM mono WAV file contents."""
    x = _as_tensor(wave_).detach().cpu().numpy().reshape(-1)
    pcm = (np.clip(x, -1.0, 1.0) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def mp3_bytes(wave_, sr: int = SAMPLE_RATE) -> bytes | None:
    """MP3 file contents (libsndfile through ``soundfile``, about 4 kB per second of 16 kHz speech),
    or ``None`` when no MP3 encoder is available."""
    try:
        import soundfile
    except ImportError:
        return None
    if "MP3" not in soundfile.available_formats():
        return None
    x = _as_tensor(wave_).detach().cpu().numpy().reshape(-1).astype(np.float32)
    buf = io.BytesIO()
    soundfile.write(buf, np.clip(x, -1.0, 1.0), sr, format="MP3", compression_level=0.6)
    return buf.getvalue()


def audio_html(wave_, sr: int = SAMPLE_RATE, label: str = "", fmt: str = "mp3") -> str:
    """An HTML audio player with the sound embedded as a data URI: it plays offline, on the static site.

    ``fmt="mp3"`` (default; about a tenth of the size of WAV, so a page can hold dozens of players)
    falls back to WAV when no MP3 encoder is installed; ``fmt="wav"`` embeds 16-bit PCM."""
    import html
    if fmt not in ("mp3", "wav"):
        raise ValueError(f"fmt must be 'mp3' or 'wav', got {fmt!r}")
    payload = mp3_bytes(wave_, sr) if fmt == "mp3" else None
    mime = "audio/mpeg" if payload is not None else "audio/wav"
    if payload is None:
        payload = wav_bytes(wave_, sr)
    data = base64.b64encode(payload).decode("ascii")
    cap = f'<div style="font:12px sans-serif;margin:2px 0">{html.escape(label)}</div>' if label else ""
    return (f'<figure style="display:inline-block;margin:4px 8px">{cap}'
            f'<audio controls preload="none" src="data:{mime};base64,{data}"></audio></figure>')
