"""Reverse process: one DDPM step, one DDIM step, and the sampling loop (chapter 13).

Both steps take a noise prediction ``eps`` for ``x_t`` at step ``t`` and return ``x_prev`` at the
previous step of the *inference* grid (``t - T // n`` for an ``n``-step grid). The arithmetic is
written to equal ``diffusers``' ``DDPMScheduler.step`` (``variance_type="fixed_small"``) and
``DDIMScheduler.step`` (``set_alpha_to_one=True``) with ``clip_sample`` on; the tests compare the
two step for step on the same inputs and the same noise.

* DDPM (Ho et al. 2020): predict ``x0``, take the mean of ``q(x_prev | x_t, x0)``, add fresh noise
  of the posterior variance. Stochastic; needs many steps.
* DDIM (Song et al. 2021): move along the predicted noise direction deterministically
  (``eta = 0``); the same trained model, far fewer steps.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from .._checks import check_positive_int, check_tensor
from .schedules import NoiseSchedule

__all__ = ["SAMPLERS", "inference_timesteps", "predict_x0", "ddpm_step", "ddim_step", "sample",
           "diffusers_scheduler", "sample_with_scheduler"]

SAMPLERS = ("ddpm", "ddim")


def inference_timesteps(num_train_steps: int, num_inference_steps: int) -> torch.Tensor:
    """The ``"leading"`` grid diffusers uses: ``[(n-1)k, ..., k, 0]`` with ``k = T // n``, int64."""
    check_positive_int("num_train_steps", num_train_steps)
    check_positive_int("num_inference_steps", num_inference_steps)
    if num_inference_steps > num_train_steps:
        raise ValueError(f"num_inference_steps must be <= num_train_steps ({num_train_steps}), got {num_inference_steps}")
    k = num_train_steps // num_inference_steps
    return torch.from_numpy((np.arange(0, num_inference_steps) * k)[::-1].copy().astype(np.int64))


def _alpha_bars(schedule: NoiseSchedule, t: int, prev_t: int):
    ab = schedule.alphas_cumprod
    ab_t = ab[t]
    ab_prev = ab[prev_t] if prev_t >= 0 else torch.tensor(1.0)
    return ab_t, ab_prev


def _check_step(eps, x_t, t, schedule):
    check_tensor("eps", eps)
    check_tensor("x_t", x_t)
    if eps.shape != x_t.shape:
        raise ValueError(f"eps must have the shape of x_t {tuple(x_t.shape)}, got {tuple(eps.shape)}")
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    if not 0 <= int(t) < schedule.num_steps:
        raise ValueError(f"t must lie in [0, {schedule.num_steps - 1}], got {t}")


def predict_x0(eps: torch.Tensor, x_t: torch.Tensor, alpha_bar_t, clip: float | None = 1.0,
               threshold: float | None = None) -> torch.Tensor:
    """Invert the forward process: ``x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab)``, clipped to ``[-clip, clip]``.

    ``threshold`` (a quantile in (0, 1), Imagen's dynamic thresholding, e.g. 0.995) replaces the
    clip: per sample, ``s`` = that quantile of ``|x0|``, kept in ``[1, clip]``; then ``x0`` is
    clamped to ``[-s, s]`` and divided by ``s``. Saturated pixels are pulled inwards instead of
    piling up at the bound, which helps at high guidance scales (as diffusers' ``thresholding=True``).
    """
    x0 = (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t ** 0.5
    if threshold is not None:
        if not isinstance(threshold, float) or not 0 < threshold < 1:
            raise ValueError(f"threshold must be a quantile in (0, 1), got {threshold!r}")
        flat = x0.abs().reshape(x0.shape[0], -1).float()
        s = torch.quantile(flat, threshold, dim=1).clamp(min=1, max=clip if clip is not None else float("inf"))
        s = s.to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
        return torch.maximum(torch.minimum(x0, s), -s) / s
    return x0.clamp(-clip, clip) if clip is not None else x0


def ddpm_step(eps: torch.Tensor, t: int, x_t: torch.Tensor, schedule: NoiseSchedule, *,
              prev_t: int | None = None, noise: torch.Tensor | None = None, clip: float | None = 1.0,
              threshold: float | None = None) -> torch.Tensor:
    """One ancestral DDPM step ``x_t -> x_prev`` (``prev_t`` defaults to ``t - 1``; ``-1`` means "to x0").
    ``clip`` / ``threshold``: how the predicted ``x0`` is bounded (see :func:`predict_x0`).

    ``noise`` ``N(0, I)`` of ``x_t``'s shape is scaled by the posterior standard deviation and
    added when ``t > 0`` (pass it for reproducibility; drawn with ``torch.randn`` when None).
    """
    _check_step(eps, x_t, t, schedule)
    t = int(t)
    prev_t = t - 1 if prev_t is None else int(prev_t)
    if not -1 <= prev_t < t:
        raise ValueError(f"prev_t must lie in [-1, t), got {prev_t} with t={t}")
    ab_t, ab_prev = _alpha_bars(schedule, t, prev_t)
    alpha_t = ab_t / ab_prev                     # the effective one-step alpha between the two grid points
    beta_t = 1 - alpha_t
    x0 = predict_x0(eps, x_t, ab_t, clip, threshold)
    # posterior mean of q(x_prev | x_t, x0): a blend of the predicted x0 and the current sample
    mean = (ab_prev ** 0.5 * beta_t) / (1 - ab_t) * x0 + alpha_t ** 0.5 * (1 - ab_prev) / (1 - ab_t) * x_t
    if t == 0:
        return mean
    variance = torch.clamp((1 - ab_prev) / (1 - ab_t) * beta_t, min=1e-20)   # "fixed_small"
    if noise is None:
        noise = torch.randn_like(x_t)
    return mean + variance ** 0.5 * noise


def ddim_step(eps: torch.Tensor, t: int, x_t: torch.Tensor, schedule: NoiseSchedule, *,
              prev_t: int, eta: float = 0.0, noise: torch.Tensor | None = None, clip: float | None = 1.0,
              threshold: float | None = None, clipped_eps: bool = False) -> torch.Tensor:
    """One DDIM step ``x_t -> x_prev`` (``prev_t = -1`` means "to x0", with ``alpha_bar = 1``).

    ``eta = 0`` is deterministic; ``eta = 1`` adds DDPM-sized noise (``noise`` as in :func:`ddpm_step`).
    The step is ``sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma z`` with
    ``sigma = eta * sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))``. When ``x0`` was
    clipped, the model's ``eps`` no longer matches it; ``clipped_eps=True`` re-derives the noise
    from the clipped ``x0`` (GLIDE's choice; diffusers' ``use_clipped_model_output``), so that the
    step stays on the line between ``x0`` and ``x_t``. The default keeps the model's ``eps``, as
    diffusers does by default.
    """
    _check_step(eps, x_t, t, schedule)
    t, prev_t = int(t), int(prev_t)
    if not -1 <= prev_t < t:
        raise ValueError(f"prev_t must lie in [-1, t), got {prev_t} with t={t}")
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    ab_t, ab_prev = _alpha_bars(schedule, t, prev_t)
    x0 = predict_x0(eps, x_t, ab_t, clip, threshold)
    if clipped_eps:
        eps = (x_t - ab_t ** 0.5 * x0) / (1 - ab_t) ** 0.5
    variance = (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
    std = eta * variance ** 0.5
    direction = (1 - ab_prev - std ** 2) ** 0.5 * eps          # "points back towards x_t"
    x_prev = ab_prev ** 0.5 * x0 + direction
    if eta > 0:
        if noise is None:
            noise = torch.randn_like(x_t)
        x_prev = x_prev + std * noise
    return x_prev


@torch.no_grad()
def sample(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape, schedule: NoiseSchedule, *,
           method: str = "ddim", steps: int = 50, generator: torch.Generator | None = None,
           device=None, eta: float = 0.0, clip: float | None = 1.0, trajectory_every: int = 0,
           threshold: float | None = None, clipped_eps: bool = False):
    """Run the reverse process from pure noise; returns ``(x0, info)``.

    ``eps_fn(x_t, t)`` predicts the noise (``t`` an int64 ``(B,)`` tensor); wrap a conditional model
    with :func:`genai_helpers.diffusion.guidance.guided_eps_fn` for classifier-free guidance.
    ``method`` is ``"ddpm"`` or ``"ddim"``; ``steps`` the inference grid size (DDPM with
    ``steps < T`` skips steps the way diffusers does). ``info`` holds ``seconds``, ``timesteps``
    and, with ``trajectory_every=k``, every k-th ``x_t`` and predicted ``x0`` (for animations).
    Noise comes from ``generator`` (CPU) so runs repeat exactly. ``eta`` in [0, 1] is DDIM's noise
    level (0: deterministic, 1: DDPM-sized noise); with ``method="ddpm"`` it must stay 0 (a
    ValueError otherwise: it would change nothing but the random stream). ``clip`` and
    ``threshold`` bound the predicted ``x0`` (:func:`predict_x0`); ``clipped_eps`` is DDIM's
    option to re-derive the noise from the bounded ``x0`` (:func:`ddim_step`).
    """
    if method not in SAMPLERS:
        raise ValueError(f"method must be one of {SAMPLERS}, got {method!r}")
    if method != "ddim" and clipped_eps:
        raise ValueError("clipped_eps applies to the 'ddim' sampler only")
    if method != "ddim" and eta != 0:
        raise ValueError(f"eta applies to the 'ddim' sampler only (DDPM's noise is fixed by the schedule), "
                         f"got eta={eta} with method={method!r}")
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    check_positive_int("steps", steps)
    check_positive_int("trajectory_every", trajectory_every, minimum=0)
    if not callable(eps_fn):
        raise TypeError("eps_fn must be callable: eps_fn(x_t, t) -> predicted noise")
    device = torch.device("cpu") if device is None else torch.device(device)
    timesteps = inference_timesteps(schedule.num_steps, steps)
    start = time.perf_counter()
    x = torch.randn(tuple(shape), generator=generator).to(device)
    traj_x, traj_x0, traj_t = [], [], []
    for i, t in enumerate(timesteps.tolist()):
        prev_t = timesteps[i + 1].item() if i + 1 < len(timesteps) else -1
        eps = eps_fn(x, torch.full((x.shape[0],), t, dtype=torch.long, device=device))
        noise = torch.randn(tuple(shape), generator=generator).to(device) if (method == "ddpm" and t > 0) or eta > 0 else None
        if trajectory_every and (i % trajectory_every == 0):
            traj_x.append(x.detach().cpu())
            traj_x0.append(predict_x0(eps, x, schedule.alphas_cumprod[t].to(device), clip, threshold).cpu())
            traj_t.append(t)
        if method == "ddpm":
            x = ddpm_step(eps, t, x, schedule, prev_t=prev_t, noise=noise, clip=clip, threshold=threshold)
        else:
            x = ddim_step(eps, t, x, schedule, prev_t=prev_t, eta=eta, noise=noise, clip=clip, threshold=threshold,
                          clipped_eps=clipped_eps)
    info = {"seconds": time.perf_counter() - start, "timesteps": timesteps}
    if trajectory_every:
        info.update(trajectory=torch.stack(traj_x + [x.cpu()]), predicted_x0=torch.stack(traj_x0), trajectory_t=traj_t + [-1])
    return x, info


def diffusers_scheduler(name: str, schedule: NoiseSchedule, clip: float | None = 1.0, **kwargs):
    """A diffusers scheduler over our ``schedule``'s betas (so it samples our denoisers), for
    ``name`` in ``"ddim"``, ``"ddpm"``, ``"dpm++2m"`` (DPM-Solver++ 2M, Lu et al. 2022) or
    ``"unipc"``; epsilon prediction. ``clip`` bounds the predicted ``x0`` as our samplers do
    (``clip_sample`` for DDIM/DDPM; for the multistep solvers ``thresholding`` with
    ``sample_max_value=clip``, which at 1.0 is the same static clip). It matters: near ``t = T`` the
    predicted ``x0`` divides the noise estimate by ``sqrt(alpha_bar_T)`` (about 5e-5 for the cosine
    schedule), and a multistep solver carries that unbounded estimate into its next steps.
    ``clip=None`` turns it off; ``kwargs`` override any option."""
    import diffusers

    classes = {"ddim": diffusers.DDIMScheduler, "ddpm": diffusers.DDPMScheduler,
               "dpm++2m": diffusers.DPMSolverMultistepScheduler, "unipc": diffusers.UniPCMultistepScheduler}
    if name not in classes:
        raise ValueError(f"name must be one of {tuple(classes)}, got {name!r}")
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    options = {"num_train_timesteps": schedule.num_steps, "trained_betas": schedule.betas.double().numpy(),
               "prediction_type": "epsilon"}
    if name in ("ddim", "ddpm"):
        options.update(clip_sample=clip is not None, clip_sample_range=clip if clip is not None else 1.0)
    else:
        options.update(thresholding=clip is not None, sample_max_value=clip if clip is not None else 1.0)
    if name == "dpm++2m":
        options["algorithm_type"] = "dpmsolver++"
    return classes[name](**{**options, **kwargs})


@torch.no_grad()
def sample_with_scheduler(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape, scheduler, *,
                          steps: int = 20, generator: torch.Generator | None = None, device=None):
    """Run any diffusers scheduler (see :func:`diffusers_scheduler`) on our ``eps_fn(x_t, t)``;
    returns ``(x0, info)`` like :func:`sample` (``info``: ``seconds``, ``timesteps``). The starting
    noise is drawn as :func:`sample` draws it, so the same ``generator`` seed starts both samplers
    from the same ``x_T``."""
    check_positive_int("steps", steps)
    if not callable(eps_fn):
        raise TypeError("eps_fn must be callable: eps_fn(x_t, t) -> predicted noise")
    device = torch.device("cpu") if device is None else torch.device(device)
    scheduler.set_timesteps(steps)
    start = time.perf_counter()
    x = torch.randn(tuple(shape), generator=generator).to(device) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long, device=device)
        eps = eps_fn(scheduler.scale_model_input(x, t), t_batch)
        x = scheduler.step(eps, t, x).prev_sample
    return x, {"seconds": time.perf_counter() - start, "timesteps": scheduler.timesteps.clone()}
