"""Noise schedules and the forward (noising) process of a diffusion model (chapter 13).

A schedule is a table of ``T`` per-step noise variances ``beta_t``. From it come
``alpha_t = 1 - beta_t`` and ``alpha_bar_t = prod_{s<=t} alpha_s``, and the forward process jumps
straight from a clean image to step ``t``:

    x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps,      eps ~ N(0, I)

Both schedules here are computed exactly as diffusers computes ``beta_schedule="linear"`` and
``"squaredcos_cap_v2"`` (float32), so the package and ``DDPMScheduler`` share one table
(``tests/test_diffusion.py`` checks it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_positive_int, check_tensor

__all__ = ["SCHEDULES", "linear_betas", "cosine_betas", "NoiseSchedule"]

SCHEDULES = ("linear", "cosine")


def linear_betas(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """``num_steps`` betas evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020), float32."""
    check_positive_int("num_steps", num_steps)
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float32)


def cosine_betas(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Betas whose ``alpha_bar`` follows ``cos((t/T + s)/(1 + s) * pi/2)^2`` (Nichol & Dhariwal 2021).

    Each beta is capped at ``max_beta`` so the last step stays finite. Float32, shape ``(num_steps,)``.
    """
    check_positive_int("num_steps", num_steps)
    if not 0 < max_beta < 1:
        raise ValueError(f"max_beta must be in (0, 1), got {max_beta}")
    if not s >= 0:
        raise ValueError(f"s must be >= 0, got {s}")

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float32)


@dataclass
class NoiseSchedule:
    """The tables of one schedule: ``betas``, ``alphas``, ``alphas_cumprod`` (all ``(T,)`` float32).

    Build one with :meth:`make` (``"linear"`` or ``"cosine"``). ``add_noise`` is the forward
    process; ``table`` lists a few steps for reading; ``snr`` is ``alpha_bar / (1 - alpha_bar)``.
    """

    name: str
    betas: torch.Tensor

    def __post_init__(self):
        check_tensor("betas", self.betas, ndim=1)
        if not bool(((self.betas > 0) & (self.betas < 1)).all()):
            raise ValueError("betas must all lie in (0, 1)")
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)

    @classmethod
    def make(cls, name: str = "linear", num_steps: int = 1000) -> "NoiseSchedule":
        if name == "linear":
            return cls(name, linear_betas(num_steps))
        if name == "cosine":
            return cls(name, cosine_betas(num_steps))
        raise ValueError(f"name must be one of {SCHEDULES}, got {name!r}")

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio ``alpha_bar_t / (1 - alpha_bar_t)`` per step, ``(T,)``."""
        return self.alphas_cumprod / (1 - self.alphas_cumprod)

    def table(self, steps=None) -> list[dict]:
        """Rows ``{t, beta, alpha_bar, signal_scale, noise_scale}`` at the given steps (default: 6 spread out)."""
        T = self.num_steps
        steps = [0, T // 10, T // 4, T // 2, 3 * T // 4, T - 1] if steps is None else list(steps)
        rows = []
        for t in steps:
            if not 0 <= int(t) < T:
                raise ValueError(f"steps must lie in [0, {T - 1}], got {t}")
            ab = float(self.alphas_cumprod[t])
            rows.append({"t": int(t), "beta": float(self.betas[t]), "alpha_bar": ab,
                         "signal_scale": math.sqrt(ab), "noise_scale": math.sqrt(1 - ab)})
        return rows

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward process ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``.

        ``x0`` and ``noise`` ``(B, ...)`` of the same shape; ``t`` int64 ``(B,)`` in ``[0, T)``.
        Same arithmetic as ``DDPMScheduler.add_noise``.
        """
        check_tensor("x0", x0)
        check_tensor("noise", noise)
        check_tensor("t", t, ndim=1)
        if noise.shape != x0.shape:
            raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
        if t.shape[0] != x0.shape[0]:
            raise ValueError(f"t must have one step per sample ({x0.shape[0]}), got {t.shape[0]}")
        if int(t.min()) < 0 or int(t.max()) >= self.num_steps:
            raise ValueError(f"t must lie in [0, {self.num_steps - 1}]")
        ab = self.alphas_cumprod.to(device=x0.device, dtype=x0.dtype)[t.to(x0.device)]
        shape = (-1,) + (1,) * (x0.ndim - 1)
        return ab.sqrt().view(shape) * x0 + (1 - ab).sqrt().view(shape) * noise
