"""VQ-VAE: an image tokenizer with a learned codebook (chapter 12, "Image tokens").

    from genai_helpers.models.vqvae import VQVAE, VQVAEConfig, VectorQuantizer, codebook_usage

An image ``(B, C, H, W)`` in [-1, 1] goes through a convolutional **encoder** to a grid of
vectors ``z_e`` ``(B, D, H/f, W/f)`` (``f = 2 ** n_down``). The **vector quantiser** replaces each
vector by its nearest entry of a codebook ``(K, D)``; the index of that entry is the image *token*
at that grid position (``codes`` ``(B, H/f, W/f)``, ints in ``[0, K)``). The **decoder** maps the
quantised grid ``z_q`` back to pixels. Training minimises (van den Oord et al., 2017)::

    loss = ||x - decoder(z_q)||^2                  reconstruction (mean squared error per pixel)
         + ||sg[z_e] - e||^2                        codebook loss: pulls the chosen codes to the encoder
         + beta * ||z_e - sg[e]||^2                 commitment loss: keeps the encoder near its codes

where ``sg`` is stop-gradient. The nearest-code lookup has no gradient, so the decoder's gradient
is copied straight through to the encoder (``z_e + sg[z_q - z_e]``: forward value ``z_q``, backward
identity).

Codes that no encoder output picks receive no gradient and stay unused forever ("dead codes",
codebook collapse). :func:`codebook_usage` measures it (used codes, perplexity). Three remedies
live here (chapter 12, section 12.6):

* :meth:`VectorQuantizer.reset_dead_codes` moves dead codes onto random encoder outputs (used by
  Jukebox, Dhariwal et al. 2020, and some VQGAN-family code bases);
* ``ema_decay``: the codebook is not trained by the codebook loss but set to exponential moving
  averages of the encoder outputs assigned to each code (van den Oord et al. 2017, appendix;
  Razavi et al. 2019), see :func:`ema_codebook_update`;
* ``init="kmeans"``: the codebook starts at k-means centroids of the encoder outputs of the first
  training batch (:func:`kmeans`), so every code starts where the data is (as in SoundStream,
  Zeghidour et al. 2021).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_tensor

__all__ = ["nearest_codes", "straight_through", "vq_losses", "codebook_usage", "ema_codebook_update", "kmeans",
           "VectorQuantizer", "ResidualBlock",
           "VQVAEConfig", "Encoder", "Decoder", "VQVAEOutput", "VQVAE"]


def _check_beta(beta) -> float:
    if not isinstance(beta, (int, float)) or isinstance(beta, bool):
        raise TypeError(f"beta must be a float >= 0, got {type(beta).__name__}")
    if not (beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite float >= 0, got {beta}")
    return float(beta)


def _check_ema_decay(ema_decay) -> float | None:
    if ema_decay is None:
        return None
    if not isinstance(ema_decay, (int, float)) or isinstance(ema_decay, bool):
        raise TypeError(f"ema_decay must be None or a float in (0, 1), got {type(ema_decay).__name__}")
    if not 0 < ema_decay < 1:
        raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}")
    return float(ema_decay)


def _check_eps(eps) -> float:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool):
        raise TypeError(f"eps must be a float > 0, got {type(eps).__name__}")
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite float > 0, got {eps}")
    return float(eps)


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row (squared Euclidean distance) for every row of ``z``.

    ``z`` ``(N, D)``, ``codebook`` ``(K, D)`` -> ``(N,)`` int64 in ``[0, K)``. Uses
    ``|z|^2 - 2 z.e + |e|^2`` (one matrix product), ties go to the lowest index.
    """
    check_tensor("z", z, ndim=2)
    check_tensor("codebook", codebook, ndim=2)
    if z.shape[1] != codebook.shape[1]:
        raise ValueError(f"z has dimension {z.shape[1]} but the codebook has dimension {codebook.shape[1]}")
    d = (z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(1)[None, :])  # (N, K)
    return d.argmin(dim=1)


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Forward value ``z_q``, gradient passed unchanged to ``z_e`` (``z_e + sg[z_q - z_e]``)."""
    return z_e + (z_q - z_e).detach()


def vq_losses(z_e: torch.Tensor, z_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codebook_loss, commitment_loss)``: ``mean (sg[z_e] - z_q)^2`` and ``mean (z_e - sg[z_q])^2``.

    Both are means over every element; they have the same value and differ only in which side
    receives the gradient (the codebook, or the encoder). ``beta`` scales the second in the total.
    """
    if z_e.shape != z_q.shape:
        raise ValueError(f"z_e and z_q must have the same shape, got {tuple(z_e.shape)} and {tuple(z_q.shape)}")
    return F.mse_loss(z_q, z_e.detach()), F.mse_loss(z_e, z_q.detach())


def codebook_usage(codes: torch.Tensor, codebook_size: int) -> dict:
    """How much of the codebook a batch of token ids uses.

    ``codes``: int tensor of any shape, values in ``[0, codebook_size)``. Returns ``counts`` (``(K,)``
    int64), ``used`` (codes picked at least once), ``dead`` (``K - used``), ``usage`` (``used / K``)
    and ``perplexity`` = ``exp(entropy of the code histogram)``: the number of equally likely codes
    that would give the same entropy (``K`` at best, 1 when everything maps to one code).
    """
    check_positive_int("codebook_size", codebook_size)
    check_tensor("codes", codes)
    if codes.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"codes must hold integer ids, got {codes.dtype}")
    flat = codes.reshape(-1).long()
    if flat.numel() == 0:
        raise ValueError("codes must not be empty")
    if flat.min() < 0 or flat.max() >= codebook_size:
        raise ValueError(f"codes must be in [0, {codebook_size}), got range [{int(flat.min())}, {int(flat.max())}]")
    counts = torch.bincount(flat, minlength=codebook_size)
    p = counts.double() / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    used = int((counts > 0).sum())
    return {"counts": counts, "used": used, "dead": codebook_size - used, "usage": used / codebook_size,
            "perplexity": float(entropy.exp())}


@torch.no_grad()
def ema_codebook_update(ema_count: torch.Tensor, ema_sum: torch.Tensor, z: torch.Tensor, codes: torch.Tensor,
                        decay: float, eps: float = 1e-5) -> torch.Tensor:
    """One EMA codebook step (van den Oord et al. 2017, appendix A.1; Razavi et al. 2019); in place.

    ``ema_count`` ``(K,)`` and ``ema_sum`` ``(K, D)`` are the running count and running sum of the
    encoder outputs assigned to each code; ``z`` ``(N, D)`` this batch's encoder outputs, ``codes``
    ``(N,)`` their nearest codes. With ``n_k`` = how many rows picked code ``k`` and ``s_k`` their sum::

        ema_count <- decay * ema_count + (1 - decay) * n_k
        ema_sum   <- decay * ema_sum   + (1 - decay) * s_k
        N_k       =  (ema_count_k + eps) / (sum(ema_count) + K * eps) * sum(ema_count)   Laplace smoothing
        codebook  =  ema_sum / N_k                                                       returned, (K, D)

    The smoothing keeps ``N_k > 0`` for codes nobody picks (no division by zero) and leaves the
    total count unchanged. Returns the new codebook; the caller copies it into its weights.
    """
    decay, eps = _check_ema_decay(decay), _check_eps(eps)
    if decay is None:
        raise TypeError("decay must be a float in (0, 1), got None")
    check_tensor("ema_count", ema_count, ndim=1)
    check_tensor("ema_sum", ema_sum, ndim=2)
    check_tensor("z", z, ndim=2)
    check_tensor("codes", codes, ndim=1)
    K, D = ema_sum.shape
    if ema_count.shape[0] != K or z.shape[1] != D or codes.shape[0] != z.shape[0]:
        raise ValueError(f"shapes do not match: ema_count {tuple(ema_count.shape)}, ema_sum {tuple(ema_sum.shape)}, "
                         f"z {tuple(z.shape)}, codes {tuple(codes.shape)}")
    onehot = F.one_hot(codes.long(), K).to(z.dtype)                    # (N, K)
    ema_count.mul_(decay).add_(onehot.sum(0), alpha=1 - decay)
    ema_sum.mul_(decay).add_(onehot.T @ z, alpha=1 - decay)
    total = ema_count.sum()
    smoothed = (ema_count + eps) / (total + K * eps) * total
    return ema_sum / smoothed[:, None]


@torch.no_grad()
def kmeans(z: torch.Tensor, k: int, *, n_iter: int = 10, generator: torch.Generator | None = None) -> torch.Tensor:
    """``k`` centroids ``(k, D)`` of the rows of ``z`` ``(N, D)`` by Lloyd's algorithm.

    Starts from ``k`` distinct random rows (rows reused only when ``N < k``), then ``n_iter`` rounds
    of "assign each row to its nearest centroid, move each centroid to the mean of its rows". A
    centroid that loses all its rows stays where it was. Every centroid therefore lies on or among
    the data: used to initialise a codebook from encoder outputs (``init="kmeans"``).
    """
    check_tensor("z", z, ndim=2)
    check_positive_int("k", k)
    check_positive_int("n_iter", n_iter, minimum=0)
    if z.shape[0] == 0:
        raise ValueError("z must hold at least one row")
    z = z.float()
    centroids = z[_sample_rows(z.shape[0], k, generator).to(z.device)].clone()
    for _ in range(n_iter):
        assign = nearest_codes(z, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assign, z)
        counts = torch.bincount(assign, minlength=k)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None].to(z.dtype)
    return centroids


class VectorQuantizer(nn.Module):
    """Codebook of ``codebook_size`` vectors of size ``embed_dim``; nearest-code quantisation.

    ``init="uniform"`` draws the codebook from U(-1/K, 1/K) (the default of common PyTorch VQ-VAE
    implementations; the paper does not specify one; it leaves many codes dead);
    ``init="normal"`` from N(0, 1); ``init="kmeans"`` starts uniform and, on the first forward
    pass in training mode, replaces the codebook by :func:`kmeans` centroids of that batch's
    encoder outputs (``kmeans_iters`` Lloyd rounds).

    ``ema_decay=None``: the codebook is a parameter trained by the codebook loss. ``ema_decay`` in
    (0, 1) (typically 0.99): the codebook takes no gradient; every forward pass in training mode
    applies :func:`ema_codebook_update` (Laplace smoothing ``eps``) and the returned codebook loss
    is detached (a value to log, nothing to train).
    """

    def __init__(self, codebook_size: int, embed_dim: int, *, init: str = "uniform",
                 ema_decay: float | None = None, eps: float = 1e-5, kmeans_iters: int = 10):
        super().__init__()
        check_positive_int("codebook_size", codebook_size)
        check_positive_int("embed_dim", embed_dim)
        if init not in ("uniform", "normal", "kmeans"):
            raise ValueError(f"init must be 'uniform', 'normal' or 'kmeans', got {init!r}")
        self.ema_decay, self.eps = _check_ema_decay(ema_decay), _check_eps(eps)
        self.kmeans_iters = check_positive_int("kmeans_iters", kmeans_iters, minimum=0)
        self.codebook_size, self.embed_dim, self.init = codebook_size, embed_dim, init
        self.codebook = nn.Embedding(codebook_size, embed_dim)
        if init == "normal":
            nn.init.normal_(self.codebook.weight)
        else:
            nn.init.uniform_(self.codebook.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        # True once the codebook holds its starting values (k-means waits for the first batch)
        self.register_buffer("initialized", torch.tensor(init != "kmeans"))
        if self.ema_decay is not None:
            self.codebook.weight.requires_grad_(False)
            # count 1 and sum = the code itself: a code nobody picks keeps its value (both decay alike)
            self.register_buffer("ema_count", torch.ones(codebook_size))
            self.register_buffer("ema_sum", self.codebook.weight.detach().clone())

    @property
    def uses_ema(self) -> bool:
        return self.ema_decay is not None

    @torch.no_grad()
    def init_from_data(self, z_e: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Set the codebook to k-means centroids of encoder outputs ``z_e`` ``(B, D, h, w)`` or ``(N, D)``."""
        flat = self._flatten("z_e", z_e)
        centroids = kmeans(flat, self.codebook_size, n_iter=self.kmeans_iters, generator=generator)
        self.codebook.weight.copy_(centroids.to(self.codebook.weight))
        if self.uses_ema:
            self.ema_count.fill_(1.0)
            self.ema_sum.copy_(self.codebook.weight)
        self.initialized.fill_(True)

    def _flatten(self, name: str, z_e: torch.Tensor) -> torch.Tensor:
        check_tensor(name, z_e, ndim=(2, 4))
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1]) if z_e.ndim == 4 else z_e
        if flat.shape[1] != self.embed_dim:
            raise ValueError(f"{name} must have dimension {self.embed_dim}, got {flat.shape[1]}")
        return flat

    def forward(self, z_e: torch.Tensor):
        """``z_e`` ``(B, D, h, w)`` -> ``(z_q_st, codes, codebook_loss, commitment_loss)``.

        ``z_q_st`` ``(B, D, h, w)`` has the values of the chosen codes and the straight-through
        gradient; ``codes`` ``(B, h, w)`` int64.
        """
        check_tensor("z_e", z_e, ndim=4)
        if z_e.shape[1] != self.embed_dim:
            raise ValueError(f"z_e must have {self.embed_dim} channels, got {z_e.shape[1]}")
        B, D, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, D)                # (B*h*w, D)
        if self.training and not bool(self.initialized):
            self.init_from_data(flat.detach())                          # init="kmeans": first training batch
        codes = nearest_codes(flat.detach(), self.codebook.weight.detach())
        if self.training and self.uses_ema:
            new = ema_codebook_update(self.ema_count, self.ema_sum, flat.detach().float(), codes,
                                      self.ema_decay, self.eps)
            self.codebook.weight.copy_(new.to(self.codebook.weight))
        z_q = self.lookup(codes.view(B, h, w))                          # (B, D, h, w), grad to the codebook
        codebook_loss, commitment_loss = vq_losses(z_e, z_q)
        if self.uses_ema:
            codebook_loss = codebook_loss.detach()                      # the EMA moves the codes, not this loss
        return straight_through(z_e, z_q), codes.view(B, h, w), codebook_loss, commitment_loss

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, h, w)`` -> code vectors ``(B, D, h, w)``."""
        check_tensor("codes", codes, ndim=3)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must be in [0, {self.codebook_size}), got range [{int(codes.min())}, {int(codes.max())}]")
        return self.codebook(codes.long()).permute(0, 3, 1, 2)

    @torch.no_grad()
    def reset_dead_codes(self, z_e: torch.Tensor, counts: torch.Tensor, *, min_count: int = 1,
                         generator: torch.Generator | None = None) -> int:
        """Move every code used fewer than ``min_count`` times onto a random encoder output.

        ``z_e``: encoder outputs ``(B, D, h, w)`` or ``(N, D)`` from recent batches; ``counts``
        ``(K,)``: how often each code was picked since the last reset. Returns how many codes were
        moved. A moved code sits where the data is, so the next batch picks it and its gradient
        flows again (the fix used by Jukebox, Dhariwal et al. 2020, and some VQGAN-family code
        bases). The encoder outputs are
        drawn *without* replacement: two dead codes restarted on the same vector would stay tied
        (the nearest-code search always picks the lower index, so the other stays dead). Only when
        there are more dead codes than outputs is an output reused, as evenly as possible.
        """
        check_tensor("counts", counts, ndim=1)
        if counts.shape[0] != self.codebook_size:
            raise ValueError(f"counts must have {self.codebook_size} entries, got {counts.shape[0]}")
        check_positive_int("min_count", min_count)
        flat = self._flatten("z_e", z_e)
        dead = (counts.to(self.codebook.weight.device) < min_count).nonzero().flatten()
        if len(dead) == 0:
            return 0
        if flat.shape[0] == 0:
            raise ValueError("z_e must hold at least one encoder output to restart dead codes on")
        pick = _sample_rows(flat.shape[0], len(dead), generator)
        self.codebook.weight[dead] = flat[pick.to(flat.device)].to(self.codebook.weight)
        if self.uses_ema:                                   # restart the running averages there too
            self.ema_count[dead] = 1.0
            self.ema_sum[dead] = self.codebook.weight[dead]
        return int(len(dead))


def _sample_rows(n: int, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """``k`` row indices in ``[0, n)``, distinct while ``k <= n`` (whole random permutations
    concatenated beyond that, so each row is used ``floor(k/n)`` or ``ceil(k/n)`` times)."""
    rounds = -(-k // n)
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(rounds)])[:k]


class ResidualBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))``, channels unchanged."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


@dataclass
class VQVAEConfig:
    in_channels: int = 1
    hidden: int = 64              # channels of the convolutional trunk
    embed_dim: int = 16           # D: size of each code vector
    codebook_size: int = 128      # K: number of tokens
    n_down: int = 2               # stride-2 convolutions: a 28x28 image becomes a 7x7 token grid
    n_res: int = 1                # residual blocks in the encoder and decoder
    beta: float = 0.25            # weight of the commitment loss
    init: str = "uniform"         # codebook initialisation: "uniform", "normal" or "kmeans" (see VectorQuantizer)
    ema_decay: float | None = None  # None: codebook loss trains the codebook; e.g. 0.99: EMA codebook updates

    def __post_init__(self):
        for name in ("in_channels", "hidden", "embed_dim", "codebook_size", "n_down"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("n_res", self.n_res, minimum=0)
        _check_beta(self.beta)
        _check_ema_decay(self.ema_decay)


class Encoder(nn.Module):
    """``(B, C, H, W)`` -> ``(B, D, H / 2**n_down, W / 2**n_down)``."""

    def __init__(self, c: VQVAEConfig):
        super().__init__()
        layers, ch = [], c.in_channels
        for i in range(c.n_down):
            out = c.hidden if i == c.n_down - 1 else max(c.hidden // 2, 1)
            layers += [nn.Conv2d(ch, out, 4, stride=2, padding=1), nn.ReLU()]
            ch = out
        layers += [nn.Conv2d(ch, c.hidden, 3, padding=1)]
        layers += [ResidualBlock(c.hidden) for _ in range(c.n_res)]
        layers += [nn.ReLU(), nn.Conv2d(c.hidden, c.embed_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """``(B, D, h, w)`` -> ``(B, C, h * 2**n_down, w * 2**n_down)`` (no output squashing)."""

    def __init__(self, c: VQVAEConfig):
        super().__init__()
        layers = [nn.Conv2d(c.embed_dim, c.hidden, 3, padding=1)]
        layers += [ResidualBlock(c.hidden) for _ in range(c.n_res)]
        ch = c.hidden
        for i in range(c.n_down):
            last = i == c.n_down - 1
            out = c.in_channels if last else max(c.hidden // 2, 1)
            layers += [nn.ReLU(), nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1)]
            ch = out
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@dataclass
class VQVAEOutput:
    recon: torch.Tensor            # (B, C, H, W) reconstruction
    codes: torch.Tensor            # (B, h, w) token ids
    z_e: torch.Tensor              # (B, D, h, w) encoder output
    recon_loss: torch.Tensor       # mean squared error per pixel
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    loss: torch.Tensor             # recon + codebook + beta * commitment (no codebook term with EMA)


class VQVAE(nn.Module):
    """Encoder -> VectorQuantizer -> Decoder. Images ``(B, C, H, W)`` in [-1, 1], ``H, W`` divisible by ``2**n_down``."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        if not isinstance(config, VQVAEConfig):
            raise TypeError(f"config must be a VQVAEConfig, got {type(config).__name__}")
        self.config = c = config
        self.encoder = Encoder(c)
        self.quantizer = VectorQuantizer(c.codebook_size, c.embed_dim, init=c.init, ema_decay=c.ema_decay)
        self.decoder = Decoder(c)

    def _check_images(self, x: torch.Tensor) -> None:
        check_tensor("x", x, ndim=4)
        f = 2 ** self.config.n_down
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"x must have {self.config.in_channels} channels, got {x.shape[1]}")
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"image height and width must be divisible by {f}, got {tuple(x.shape[2:])}")

    def forward(self, x: torch.Tensor) -> VQVAEOutput:
        self._check_images(x)
        z_e = self.encoder(x)
        z_q, codes, cb, commit = self.quantizer(z_e)
        recon = self.decoder(z_q)
        rec = F.mse_loss(recon, x)
        codebook_term = 0.0 if self.quantizer.uses_ema else cb
        return VQVAEOutput(recon, codes, z_e, rec, cb, commit, rec + codebook_term + self.config.beta * commit)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> token ids ``(B, h, w)``."""
        self._check_images(x)
        return self.quantizer(self.encoder(x))[1]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, h, w)`` -> images ``(B, C, H, W)`` clamped to [-1, 1]."""
        return self.decoder(self.quantizer.lookup(codes)).clamp(-1, 1)

    def config_dict(self) -> dict:
        return asdict(self.config)
