"""Hooks of the training loop (:func:`genai_helpers.training.train`, chapter 01): what a hook sees
after each step, a hook that runs every ``n`` steps, and the EMA of a model's weights (chapters 13-15).

``train(..., hooks=[h, ...])``: each hook is a callable ``hook(info)`` called after every optimizer
step, in order, on every rank, after the step is logged and ``eval_fn`` ran, before the
checkpoint and the progress bar. Its return value is ignored. ``info`` is a :class:`StepInfo`:

- ``step`` (int, steps done, 1 to ``steps``), ``steps`` (the configured total), ``final`` (bool:
  this is the last step, by steps or by time budget);
- ``loss`` (float: this step's loss, mean over micro-batches and ranks), ``terms`` (dict of
  floats, the same for the parts of a ``(loss, terms)`` loss);
- ``lr`` (float: the rate of parameter group 0 this step used), ``position`` (float in [0, 1]:
  the fraction of the run done, by steps or time), ``seconds`` (training time so far);
- ``model`` (the model without its DDP wrapper, in train mode: a hook that samples switches to
  eval mode under ``torch.no_grad()`` and back), ``optimizer``, ``history`` (so far), ``rank``;
- ``info.stop(reason)`` ends training after this step (``history.stopped == reason``); under DDP
  one rank asking stops all of them.

Ready-made: :class:`EMA` is a hook (``hooks=[ema]`` updates the average after every step), and
``every(n, fn)`` calls ``fn(info)`` every ``n`` steps and at the final step (e.g. a sample grid)::

    ema = EMA(model, decay=0.999)
    grids = every(500, lambda info: show_grid(sample(ema.model)))
    stop = lambda info: info.loss < 0.05 and info.stop("loss below 0.05")
    train(model, opt, batch_fn, TrainConfig(steps=5000, time_budget_s=600, lr_schedule="cosine",
          warmup_steps=100), hooks=[ema, grids, stop])

With no hooks the loop adds nothing per step (no :class:`StepInfo` is built).
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from ._checks import check_positive_int, check_probability

__all__ = ["EMA", "StepInfo", "every", "unwrap_model"]


class StepInfo:
    """What a hook sees after each optimizer step (its fields: see the module docstring)."""

    __slots__ = ("step", "steps", "final", "loss", "terms", "lr", "position", "seconds", "model",
                 "optimizer", "history", "rank", "stop_reason")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    def stop(self, reason: str = "stopped by a hook") -> bool:
        """End training after this step; ``history.stopped`` becomes ``reason``. Returns True."""
        self.stop_reason = str(reason)
        return True


def every(n: int, fn: Callable[[StepInfo], Any]) -> Callable[[StepInfo], None]:
    """A hook that calls ``fn(info)`` every ``n`` steps and at the final step (e.g. a sample grid)."""
    check_positive_int("n", n)
    if not callable(fn):
        raise TypeError("fn must be callable: fn(info)")

    def hook(info: StepInfo) -> None:
        if info.step % n == 0 or info.final:
            fn(info)

    return hook


class EMA:
    """Exponential moving average of a model's weights: ``ema = d * ema + (1 - d) * w`` after each step.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` so early averages are not dominated by
    the random initial weights. ``ema.model`` is a frozen copy to sample from (chapters 13-15).
    Pass it as a hook, ``train(..., hooks=[ema])``, or call ``ema.update(model)`` yourself.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        check_probability("decay", decay)
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, p in zip(self.model.parameters(), unwrap_model(model).parameters()):
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.model.buffers(), unwrap_model(model).buffers()):
            e.copy_(b)

    def __call__(self, info: StepInfo) -> None:
        self.update(info.model)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper; else ``model``."""
    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    return model
