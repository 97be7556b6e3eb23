"""A small neural audio codec: a convolutional autoencoder with residual vector quantisation (chapter 16).

Speech becomes *tokens* the way SoundStream, EnCodec and Mimi do it, at toy scale:

    wave ─► log-mel (62.5 frames/s) ─► encoder (convs, stride 2) ─► z (31.25 frames/s, 64-d)
         ─► residual VQ: codebook 1 quantises z, codebook 2 what is left, ... (Q codebooks of K codes)
         ─► decoder (convs, upsample 2) ─► log-magnitude and phase per STFT frame ─► inverse STFT ─► wave

- :class:`ResidualVQ` — ``Q`` codebooks, each quantising the residual of the ones before
  (nearest code by Euclidean distance), codebooks learned by exponential moving averages of the
  vectors assigned to them (van den Oord et al., 2017, appendix), a commitment loss, the
  straight-through gradient, and restarts of codes no vector uses. *Quantiser dropout* (training
  with a random number of codebooks, as SoundStream does) makes the first ``q`` codebooks a usable
  codec on their own, so one model gives a quality-per-bitrate curve.
- The decoder ends in an inverse STFT (as Vocos does): it predicts each frame's log-magnitude and a
  phase (as an unnormalised complex number), so it needs no upsampling to the audio rate. It is
  trained with a multi-resolution STFT loss and a log-mel loss, without a discriminator; that keeps
  training to minutes on a CPU, and is why the audio sounds buzzier than a GAN-trained codec.

At the book's settings one code frame covers 32 ms; with ``Q`` codebooks of 256 codes the bit rate is
``31.25 * 8 * Q`` bits/s (1 kbit/s for Q = 4).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import features

__all__ = ["CodecConfig", "ResidualVQ", "Codec", "multi_resolution_stft_loss", "codec_loss", "train_codec"]


@dataclass(frozen=True)
class CodecConfig:
    n_codebooks: int = 8          # Q
    codebook_size: int = 256      # K
    dim: int = 64                 # the latent and code vector width
    channels: int = 192           # conv width
    stride: int = 2               # code frames per STFT frame: 62.5 / 2 = 31.25 per second

    def __post_init__(self):
        for name in ("n_codebooks", "codebook_size", "dim", "channels", "stride"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")

    @property
    def frame_rate(self) -> float:
        return features.SAMPLE_RATE / features.HOP / self.stride

    def bitrate(self, n_codebooks: int | None = None) -> float:
        q = self.n_codebooks if n_codebooks is None else n_codebooks
        return self.frame_rate * q * math.log2(self.codebook_size)


class ResidualVQ(nn.Module):
    """``n_codebooks`` vector quantisers in series, each on the residual the previous left."""

    def __init__(self, n_codebooks: int, codebook_size: int, dim: int, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.n_codebooks, self.codebook_size, self.dim, self.decay, self.eps = n_codebooks, codebook_size, dim, decay, eps
        self.register_buffer("codebooks", torch.randn(n_codebooks, codebook_size, dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(n_codebooks, codebook_size))
        self.register_buffer("ema_sum", self.codebooks.clone())
        self.register_buffer("initialised", torch.zeros(n_codebooks, dtype=torch.bool))

    @staticmethod
    def nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean distance) for each row of ``x``."""
        d = (x.pow(2).sum(-1, keepdim=True) - 2 * x @ codebook.T + codebook.pow(2).sum(-1)[None])
        return d.argmin(-1)

    def _check_n(self, n_q):
        n_q = self.n_codebooks if n_q is None else n_q
        if not isinstance(n_q, int) or not 1 <= n_q <= self.n_codebooks:
            raise ValueError(f"n_q must be an int in [1, {self.n_codebooks}], got {n_q!r}")
        return n_q

    def forward(self, z: torch.Tensor, n_q: int | None = None):
        """Quantise ``z`` (B, T, dim) with the first ``n_q`` codebooks.

        Returns ``(quantised with the straight-through gradient, codes (B, T, n_q), commitment loss)``;
        in training mode the codebooks move towards the mean of the vectors assigned to them.
        """
        n_q = self._check_n(n_q)
        flat = z.reshape(-1, self.dim)
        residual, total, codes, commit = flat, torch.zeros_like(flat), [], flat.new_zeros(())
        for q in range(n_q):
            r = residual.detach()
            if self.training and not bool(self.initialised[q]):
                # start the codebook from data vectors, not random points far from them
                idx = torch.randint(0, r.shape[0], (self.codebook_size,), device=r.device)
                self.codebooks[q] = r[idx] + 1e-3 * torch.randn_like(r[idx])
                self.ema_sum[q] = self.codebooks[q].clone()
                self.ema_count[q] = 1.0
                self.initialised[q] = True
            idx = self.nearest(r, self.codebooks[q])
            chosen = self.codebooks[q][idx]
            commit = commit + F.mse_loss(residual, chosen.detach())
            if self.training:
                with torch.no_grad():
                    onehot = F.one_hot(idx, self.codebook_size).type_as(r)
                    count, summed = onehot.sum(0), onehot.T @ r
                    self.ema_count[q].mul_(self.decay).add_(count, alpha=1 - self.decay)
                    self.ema_sum[q].mul_(self.decay).add_(summed, alpha=1 - self.decay)
                    n = self.ema_count[q].sum()
                    smoothed = (self.ema_count[q] + self.eps) / (n + self.codebook_size * self.eps) * n
                    self.codebooks[q] = self.ema_sum[q] / smoothed[:, None]
                    dead = self.ema_count[q] < 1e-2                     # codes nobody has used lately
                    if dead.any():
                        pick = torch.randint(0, r.shape[0], (int(dead.sum()),), device=r.device)
                        self.codebooks[q][dead] = r[pick]
                        self.ema_sum[q][dead] = r[pick]
                        self.ema_count[q][dead] = 1.0
            total = total + chosen
            residual = residual - chosen
            codes.append(idx)
        quantised = flat + (total - flat).detach()                      # straight-through estimator
        B, T, _ = z.shape
        return quantised.view(B, T, self.dim), torch.stack(codes, -1).view(B, T, n_q), commit / n_q

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the chosen code vectors: codes (B, T, q) -> (B, T, dim), for any q <= n_codebooks."""
        if codes.dim() != 3 or codes.shape[-1] > self.n_codebooks:
            raise ValueError(f"codes must be (B, T, q) with q <= {self.n_codebooks}, got {tuple(codes.shape)}")
        return sum(self.codebooks[q][codes[..., q]] for q in range(codes.shape[-1]))


class _Res(nn.Module):
    def __init__(self, c: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(c, c, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(c, c, 1)

    def forward(self, x):
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


class Codec(nn.Module):
    """Encoder -> :class:`ResidualVQ` -> decoder with an inverse-STFT head (see the module docstring)."""

    def __init__(self, config: CodecConfig = CodecConfig()):
        super().__init__()
        self.config = config
        c, s = config.channels, config.stride
        n_bins = features.N_FFT // 2 + 1
        self.encoder = nn.Sequential(
            nn.Conv1d(features.N_MELS, c, 3, padding=1), _Res(c, 1), _Res(c, 2),
            nn.Conv1d(c, c, 2 * s, stride=s, padding=s // 2), _Res(c, 1), _Res(c, 2), nn.GELU(),
            nn.Conv1d(c, config.dim, 1))
        self.rvq = ResidualVQ(config.n_codebooks, config.codebook_size, config.dim)
        self.decoder = nn.Sequential(
            nn.Conv1d(config.dim, c, 3, padding=1), _Res(c, 1), _Res(c, 2),
            nn.ConvTranspose1d(c, c, 2 * s, stride=s, padding=s // 2), _Res(c, 1), _Res(c, 2), _Res(c, 4),
            nn.GELU(), nn.Conv1d(c, 3 * n_bins, 1))

    @staticmethod
    def normalise(logmel: torch.Tensor) -> torch.Tensor:
        return (logmel + 5.0) / 4.0

    def n_frames(self, n_samples: int) -> int:
        """Code frames for a waveform of ``n_samples`` (STFT frames rounded up to the stride, / stride)."""
        stft_frames = n_samples // features.HOP + 1
        return -(-stft_frames // self.config.stride)

    def encode(self, wave: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Codes (B, T_codes, n_q) of a waveform batch (B, N) (or (N,))."""
        return self._encode(wave, n_q)[1]

    def _encode(self, wave, n_q=None):
        if wave.dim() == 1:
            wave = wave[None]
        x = self.normalise(features.log_mel(wave))
        pad = (-x.shape[-1]) % self.config.stride
        if pad:
            x = F.pad(x, (0, pad), value=float(self.normalise(torch.tensor(math.log(1e-5)))))
        z = self.encoder(x).transpose(1, 2)                                 # (B, T, dim)
        return self.rvq(z, n_q)

    def decode(self, codes: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Waveform (B, N) from codes (B, T, q); ``length`` trims it to ``N`` samples."""
        z = self.rvq.decode(codes)
        return self._synth(z, length)

    def _synth(self, z, length=None):
        out = self.decoder(z.transpose(1, 2))                               # (B, 3 * bins, T * stride)
        logmag, re, im = out.chunk(3, dim=1)
        phase = torch.complex(re, im)
        phase = phase / torch.clamp(phase.abs(), min=1e-5)
        spec = torch.exp(torch.clamp(logmag, max=6.0)) * phase
        n = length if length is not None else (spec.shape[-1] - 1) * features.HOP
        return features.istft(spec, length=n)

    def forward(self, wave: torch.Tensor, n_q: int | None = None):
        """Reconstruction (B, N), codes, commitment loss."""
        if wave.dim() == 1:
            wave = wave[None]
        q, codes, commit = self._encode(wave, n_q)
        return self._synth(q, wave.shape[-1]), codes, commit


def multi_resolution_stft_loss(x: torch.Tensor, y: torch.Tensor, sizes=(256, 512, 1024, 2048)) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over STFT sizes (Yamamoto et al., 2020)."""
    total = x.new_zeros(())
    for n in sizes:
        win = torch.hann_window(n, device=x.device)
        X = torch.stft(x, n, n // 4, window=win, return_complex=True).abs() + 1e-5
        Y = torch.stft(y, n, n // 4, window=win, return_complex=True).abs() + 1e-5
        sc = torch.linalg.norm(Y - X) / torch.linalg.norm(Y)
        total = total + sc + F.l1_loss(torch.log(X), torch.log(Y))
    return total / len(sizes)


def codec_loss(codec: Codec, wave: torch.Tensor, n_q: int | None = None, commit_weight: float = 0.25):
    """The training objective and its parts: multi-resolution STFT + log-mel L1 + commitment."""
    recon, _, commit = codec(wave, n_q)
    stft_l = multi_resolution_stft_loss(recon, wave)
    mel_l = F.l1_loss(features.log_mel(recon), features.log_mel(wave))
    loss = stft_l + mel_l + commit_weight * commit
    return loss, {"loss": loss.item(), "stft": stft_l.item(), "mel": mel_l.item(), "commit": commit.item()}


def _crops(waves, n: int, length: int, g: torch.Generator) -> torch.Tensor:
    out = torch.zeros(n, length)
    for b in range(n):
        w = waves[int(torch.randint(len(waves), (1,), generator=g))]
        if len(w) > length:
            s = int(torch.randint(len(w) - length, (1,), generator=g))
            out[b] = w[s:s + length]
        else:
            out[b, :len(w)] = w
    return out


def train_codec(waves, config: CodecConfig = CodecConfig(), *, steps: int, batch_size: int = 16,
                crop_seconds: float = 1.0, lr: float = 2e-3, seed: int = 0, quantizer_dropout: bool = True,
                device="cpu", progress: bool = True, callback=None):
    """Train a :class:`Codec` on random crops of ``waves`` (float tensors or arrays at 16 kHz).

    Returns ``(codec, history)``, history a list of ``{"step", "loss", "stft", "mel", "commit", "n_q"}``.
    With ``quantizer_dropout`` each step uses a random number of codebooks in ``[1, Q]``.
    ``callback(step, history)`` runs every 25 steps (for a live plot).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not waves:
        raise ValueError("waves must be a non-empty list of waveforms")
    if not 0.1 <= crop_seconds <= 10:
        raise ValueError(f"crop_seconds must be in [0.1, 10], got {crop_seconds}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    waves = [torch.as_tensor(w, dtype=torch.float32) for w in waves]
    codec = Codec(config).to(device)
    opt = torch.optim.AdamW(codec.parameters(), lr=lr, betas=(0.8, 0.99), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 4),
                                                pct_start=max(0.05, 2.0 / max(steps, 4)))
    length = int(crop_seconds * features.SAMPLE_RATE) // features.HOP * features.HOP
    history = []
    from tqdm.auto import tqdm
    bar = tqdm(range(steps), desc="codec", disable=not progress)
    for step in bar:
        n_q = int(torch.randint(1, config.n_codebooks + 1, (1,), generator=g)) if quantizer_dropout else None
        batch = _crops(waves, batch_size, length, g).to(device)
        loss, parts = codec_loss(codec, batch, n_q)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append({"step": step, "n_q": n_q or config.n_codebooks, **parts})
        if step % 10 == 0:
            bar.set_postfix(loss=f"{parts['loss']:.3f}", mel=f"{parts['mel']:.3f}")
        if callback is not None and (step % 25 == 0 or step == steps - 1):
            callback(step, history)
    codec.eval()
    return codec, history
