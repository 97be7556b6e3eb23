"""Training a noise predictor: the denoising loss, prompt dropout, EMA weights (chapter 13).

The loss is the one of Ho et al. (2020): noise a clean image to a random step ``t`` with the
forward process, ask the model for the noise, take the mean squared error. Prompt dropout
replaces a fraction of the prompts by the empty prompt so the same model also learns the
unconditional prediction that classifier-free guidance needs. Samples are drawn from an
exponential moving average (EMA) of the weights, which is much smoother than the last step's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .._checks import check_positive_int, check_probability, check_tensor
from ..training import TrainConfig, TrainHistory, train
from ..training_hooks import EMA, every   # noqa: F401  (EMA lived here; importing it from here still works)
from .schedules import NoiseSchedule

__all__ = ["PromptBank", "denoising_loss", "epsilon_loss", "drop_prompts", "DenoiserHistory", "train_denoiser"]


@dataclass
class PromptBank:
    """Encoded prompts, computed once: row 0 must be the empty prompt.

    ``context`` ``(P, L, d)`` token features, ``mask`` ``(P, L)`` bool, ``pooled`` ``(P, d)``.
    ``take(idx)`` returns the model's keyword arguments for a batch of prompt indices.
    """

    prompts: list
    context: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def __post_init__(self):
        if not self.prompts or self.prompts[0] != "":
            raise ValueError("prompts[0] must be the empty prompt ''")
        self.index = {p: i for i, p in enumerate(self.prompts)}

    @classmethod
    @torch.no_grad()
    def encode(cls, clip_model, prompts) -> "PromptBank":
        """Encode ``[""] + prompts`` (duplicates dropped) with a :class:`~.clip.CLIP`'s frozen text encoder."""
        unique = [""] + sorted(set(p for p in prompts if p))
        ids, mask = clip_model.tokenize(unique)
        tokens, pooled = clip_model.text(ids, mask)
        return cls(unique, tokens.detach(), mask, pooled.detach())

    def ids(self, prompts) -> torch.Tensor:
        """Row numbers ``(len(prompts),)`` int64 of ``prompts`` (each must be in the bank)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of str (wrap a single prompt in a list)")
        unknown = [p for p in prompts if p not in self.index]
        if unknown:
            shown = ", ".join(repr(p) for p in self.prompts[:20]) + (", ..." if len(self.prompts) > 20 else "")
            raise ValueError(f"prompts must be in the bank: {unknown[0]!r} is not ({len(unknown)} unknown); "
                             f"the bank's {len(self.prompts)} prompts are {shown}. Encode it with PromptBank.encode")
        return torch.tensor([self.index[p] for p in prompts], dtype=torch.long)

    def take(self, idx: torch.Tensor) -> dict:
        return {"context": self.context[idx], "context_mask": self.mask[idx], "pooled": self.pooled[idx]}


def denoising_loss(model: nn.Module, x0: torch.Tensor, cond: dict, schedule: NoiseSchedule,
                   generator: torch.Generator | None = None, min_snr_gamma: float | None = None) -> torch.Tensor:
    """``|| eps - model(x_t, t, **cond) ||^2`` with ``t ~ U{0..T-1}``, ``eps ~ N(0, I)``; ``x0`` in [-1, 1].

    ``min_snr_gamma`` (e.g. 5) weighs each sample by ``min(SNR_t, gamma) / SNR_t`` (Hang et al.
    2023, "Min-SNR"): the nearly clean steps, whose noise is hard to see and easy to ignore, stop
    dominating the gradient, which speeds up training. ``None`` is the plain mean.
    """
    check_tensor("x0", x0, ndim=4)
    return epsilon_loss(model, x0, cond, schedule, generator, min_snr_gamma)


def epsilon_loss(model: nn.Module, x0: torch.Tensor, cond: dict, schedule: NoiseSchedule,
                 generator: torch.Generator | None = None, min_snr_gamma: float | None = None) -> torch.Tensor:
    """The noise-prediction loss of :func:`denoising_loss` for ``x0`` of any shape ``(B, ...)``
    (images ``(B, C, H, W)``, clips ``(B, C, T, H, W)``): draws ``t`` then the noise from
    ``generator``, averages the squared error per sample, then over the batch (Min-SNR weighted
    when ``min_snr_gamma`` is set)."""
    B = x0.shape[0]
    t = torch.randint(0, schedule.num_steps, (B,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    x_t = schedule.add_noise(x0, noise, t)
    per_sample = (model(x_t, t, **cond) - noise).pow(2).flatten(1).mean(1)
    if min_snr_gamma is None:
        return per_sample.mean()
    if not min_snr_gamma > 0:
        raise ValueError(f"min_snr_gamma must be > 0 or None, got {min_snr_gamma}")
    snr = schedule.snr().to(x0.device)[t]
    return (per_sample * snr.clamp(max=min_snr_gamma) / snr).mean()


def drop_prompts(idx: torch.Tensor, p_uncond: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each prompt index by 0 (the empty prompt) with probability ``p_uncond``."""
    check_probability("p_uncond", p_uncond)
    keep = torch.rand(idx.shape, generator=generator) >= p_uncond
    return torch.where(keep, idx, torch.zeros_like(idx))


DenoiserHistory = TrainHistory      # the old name: ``step``, ``loss``, ``lr``, ``seconds``, ``steps_done`` and more


def train_denoiser(model: nn.Module, images: torch.Tensor, prompt_idx: torch.Tensor, bank: PromptBank,
                   schedule: NoiseSchedule, *, steps: int, batch_size: int = 128, lr: float = 2e-3,
                   warmup: int = 100, p_uncond: float = 0.15, ema_decay: float = 0.999, weight_decay: float = 0.0,
                   seed: int = 0, log_every: int = 25, time_budget_s: float | None = None,
                   min_snr_gamma: float | None = None, callback=None) -> tuple[EMA, DenoiserHistory]:
    """AdamW + linear warm-up + cosine decay to 0, prompt dropout, gradient clipping at 1, EMA weights
    (``min_snr_gamma``: see :func:`denoising_loss`), in fp32, through :func:`~genai_helpers.training.train`.

    ``images`` ``(N, C, H, W)`` in [-1, 1]; ``prompt_idx`` ``(N,)`` rows of ``bank``. Stops early
    (cleanly, after the current step) when ``time_budget_s`` runs out, and the cosine then ends
    at that moment (see :mod:`genai_helpers.training`). ``callback(step, loss)`` is called every
    ``log_every`` steps and at the last (e.g. a live plot). Returns ``(ema, history)``, a
    :class:`~genai_helpers.training.TrainHistory` (``steps_done``, ``seconds``, ``step``, ``loss``, ``lr``).
    """
    check_tensor("images", images, ndim=4)
    check_tensor("prompt_idx", prompt_idx, ndim=1)
    if prompt_idx.shape[0] != images.shape[0]:
        raise ValueError(f"prompt_idx must have one entry per image ({images.shape[0]}), got {prompt_idx.shape[0]}")
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_positive_int("warmup", warmup, minimum=0)
    gen = torch.Generator().manual_seed(seed)          # one stream: batch, prompt dropout, then t and noise
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    ema = EMA(model, ema_decay)

    def batch_fn(i):
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=gen)
        return images[idx], bank.take(drop_prompts(prompt_idx[idx], p_uncond, gen))

    def loss_fn(net, batch):
        x0, cond = batch
        return denoising_loss(net, x0, cond, schedule, gen, min_snr_gamma)

    hooks = [ema]
    if callback is not None:
        hooks.append(every(log_every, lambda info: callback(info.step, info.history.loss[-1])))
    config = TrainConfig(steps=steps, grad_clip=1.0, precision="fp32", log_every=log_every, progress=False,
                         live_plot=False, time_budget_s=time_budget_s, lr_schedule="cosine", warmup_steps=warmup,
                         min_lr_ratio=0.0)
    return ema, train(model, opt, batch_fn, config, loss_fn=loss_fn, hooks=hooks)
