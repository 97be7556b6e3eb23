"""Learning-rate schedules (chapter 01): the package's one warm-up-cosine schedule.

:func:`warmup_cosine` is the multiplier; the training loop applies it itself with
``TrainConfig(lr_schedule="cosine")``, which also anneals within a time budget (see
:mod:`genai_helpers.training`, "Learning-rate schedule and time budget"); :func:`cosine_schedule`
is the same function as a step-based ``LambdaLR`` for ``train(..., scheduler=)``.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_positive_int

__all__ = ["cosine_schedule", "warmup_cosine"]


def warmup_cosine(step: int, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.1,
                  position: float | None = None) -> float:
    """The learning-rate multiplier of (0-based) step ``step``: linear warm-up, then cosine decay.

    ``(step + 1) / warmup_steps`` during warm-up, then ``min_ratio + (1 - min_ratio) * (1 + cos(pi * q)) / 2``
    with ``q = (position - warmup_steps) / (total_steps - warmup_steps)`` clipped to [0, 1]: 1 at
    the end of warm-up, ``min_ratio`` at ``position = total_steps``. ``position`` (in steps,
    default ``step``) lets a time budget move the run's end forward (see :mod:`genai_helpers.training`);
    it is never behind ``step``. The package's only warm-up-cosine schedule.
    """
    pos = step if position is None or position < step else position
    if pos < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (pos - warmup_steps) / max(1, total_steps - warmup_steps))
    factor = min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return min(factor, (step + 1) / warmup_steps) if step < warmup_steps else factor


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                    min_ratio: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`warmup_cosine` as a step-based ``LambdaLR`` (pass it as ``train(..., scheduler=)``).

    Linear warm-up then cosine decay to ``min_ratio`` × the base learning rate. Under a time budget
    use ``TrainConfig(lr_schedule="cosine")`` instead: a step-based scheduler cannot see the clock.
    """
    check_positive_int("total_steps", total_steps)
    check_positive_int("warmup_steps", warmup_steps, minimum=0)
    if not 0 <= min_ratio <= 1:
        raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")

    def factor(step: int) -> float:
        return warmup_cosine(step, total_steps, warmup_steps, min_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
