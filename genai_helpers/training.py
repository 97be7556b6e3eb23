"""The training loop every model in the package trains with (chapter 01 introduces it).

    history = train(model, optimizer, batch_fn, TrainConfig(steps=2000), loss_fn=lm_loss)

What it does for you, each switched by :class:`TrainConfig`:

- mixed precision where the device supports it (bf16 on recent GPUs, fp16 + loss scaling on
  older ones, fp32 on CPU unless asked; a step that fp16 loss scaling skips for inf/nan gradients
  does not advance ``scheduler``), gradient clipping and gradient accumulation;
- optional gradient checkpointing (for models with ``set_gradient_checkpointing``);
- a learning-rate schedule (``lr_schedule="cosine"``: linear warm-up, then cosine decay) that also
  anneals within a time budget (``time_budget_s``), see below;
- a tqdm progress bar and, in Jupyter, a live loss plot that leaves one final figure behind;
- atomic safetensors checkpoints every ``checkpoint_every`` steps; re-running with the same
  ``checkpoint_path`` resumes and gives exactly the result an uninterrupted run would;
- hooks called after every step: EMA weights, sample grids, early stopping
  (:mod:`genai_helpers.training_hooks` says what a hook sees and holds the ready-made ones).

``batch_fn(i)`` returns micro-batch number ``i`` (``i = step * accumulation_steps + micro``); it is
called once per micro-batch, in order. Make it a pure function of ``i`` and resuming is exact;
one that draws from its own generator in order (chapters 11-15's data) trains identically but
cannot resume exactly. ``loss_fn(model, batch)`` returns the scalar loss, or ``(loss, terms)``
where ``terms`` is a dict of named scalar parts (e.g. ``{"recon": ..., "kl": ...}``): their means
per log interval go to ``history.terms[name]``, beside ``history.loss``.

Learning-rate schedule and time budget
--------------------------------------
With ``lr_schedule="cosine"`` the loop sets each parameter group's rate to its starting rate
(the optimizer's ``lr`` when ``train`` is called) times
:func:`~genai_helpers.lr_schedules.warmup_cosine`: linear warm-up over ``warmup_steps`` steps, then
cosine decay to ``min_lr_ratio`` × the starting rate at the end of the run. "The end of the run"
is whichever comes first, ``steps`` or ``time_budget_s``: the schedule is defined on the run's
*position* ``max(step, steps × elapsed / time_budget_s)`` (in steps), so a run that the time
budget stops early still ends at the annealed rate, instead of stopping halfway down a cosine
laid out for steps it never reached. Warm-up counts steps.
:func:`~genai_helpers.lr_schedules.cosine_schedule` is the same function as a step-based ``LambdaLR``
for ``scheduler=``. Both live in :mod:`genai_helpers.lr_schedules`.

What is deterministic:

- without a time budget, everything is a pure function of the step: the same seed gives the same
  losses, and a resumed run equals an uninterrupted one bit for bit;
- with a time budget, the number of steps, and every learning rate once the time fraction runs
  ahead of the step fraction, depend on how fast this machine runs at the moment: two runs
  differ. The checkpoint records the step, the next step's rate (optimizer state), the starting
  rates and the training seconds spent (``history.seconds``; downtime between runs not counted),
  so a resumed run continues the schedule and the budget where they were; its steps up to the
  checkpoint are the saved ones, those after it are as timing-dependent as any budgeted run.
  To repeat a budgeted run exactly, fix ``steps`` to the ``history.steps_done`` it reached and
  drop the budget: the same schedule shape, step-based.

The budget counts all time inside ``train`` (hooks, evaluation and checkpoints included); the
loop stops after the step during which it ran out (``history.stopped == "time budget"``).

Under ``torch.distributed`` (``torchrun``, or chapter 02's notebook workers) pass a model wrapped in
``DistributedDataParallel`` and a ``batch_fn`` that returns *this rank's* micro-batch; nothing else
changes. Gradients are averaged across ranks by DDP (synchronised only on the last micro-batch of
an accumulated step), the logged loss is the mean over ranks, and only rank 0 shows progress,
draws the plot and writes the checkpoint (of the unwrapped model, so its keys have no
``module.`` prefix and it loads into a plain model). One all-reduce per step carries the loss, a
non-finite flag (a NaN/inf loss on any rank raises ``FloatingPointError`` on every rank, instead
of leaving the others waiting in an all-reduce) and the elapsed time (so all ranks agree on the
schedule and on when the budget is spent).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ._checks import check_positive_int, check_probability
from .checkpoint import load_checkpoint, save_checkpoint
from .lr_schedules import cosine_schedule, warmup_cosine  # noqa: F401  (chapters import cosine_schedule from here)
from .training_hooks import EMA, StepInfo, every, unwrap_model  # noqa: F401  (and EMA, every from here)

__all__ = ["LR_SCHEDULES", "PRECISIONS", "TrainConfig", "TrainHistory", "default_loss", "resolve_precision",
           "to_device", "train"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LR_SCHEDULES = (None, "cosine")


@dataclass
class TrainConfig:
    steps: int                                  # optimizer steps in the whole run (at most)
    accumulation_steps: int = 1                 # micro-batches per optimizer step
    grad_clip: float | None = 1.0               # max global grad norm; None = off
    precision: str = "auto"                     # auto | fp32 | bf16 | fp16
    gradient_checkpointing: bool = False
    log_every: int = 10                         # steps between history entries
    eval_every: int = 0                         # steps between eval_fn calls (0 = only at the end)
    checkpoint_path: str | None = None          # .safetensors file; enables resume
    checkpoint_every: int = 0                   # steps between checkpoints (0 = only at the end)
    progress: bool = True                       # tqdm bar
    live_plot: bool = True                      # loss plot in Jupyter
    plot_title: str = "Training loss"
    time_budget_s: float | None = None          # stop after the step during which this runs out
    lr_schedule: str | None = None              # None: leave the rate alone | "cosine": warm-up + cosine
    warmup_steps: int = 0                       # linear warm-up steps of lr_schedule="cosine"
    min_lr_ratio: float = 0.1                   # final rate / starting rate of lr_schedule="cosine"

    def __post_init__(self):
        check_positive_int("steps", self.steps)
        check_positive_int("accumulation_steps", self.accumulation_steps)
        check_positive_int("log_every", self.log_every)
        check_positive_int("eval_every", self.eval_every, minimum=0)
        check_positive_int("checkpoint_every", self.checkpoint_every, minimum=0)
        check_positive_int("warmup_steps", self.warmup_steps, minimum=0)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.checkpoint_path is not None and not str(self.checkpoint_path).endswith(".safetensors"):
            raise ValueError(f"checkpoint_path must end in .safetensors, got {self.checkpoint_path!r}")
        if self.time_budget_s is not None and (isinstance(self.time_budget_s, bool)
                                               or not isinstance(self.time_budget_s, (int, float))
                                               or not self.time_budget_s > 0):
            raise ValueError(f"time_budget_s must be a number of seconds > 0 or None, got {self.time_budget_s!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.warmup_steps and self.lr_schedule is None:
            raise ValueError("warmup_steps needs lr_schedule='cosine'")
        check_probability("min_lr_ratio", self.min_lr_ratio, allow_one=True)


@dataclass
class TrainHistory:
    """What happened: logged steps, mean training loss per log interval, learning rate, evals.

    ``lr[k]`` is the rate after logged step ``step[k]`` (the one the next step uses); ``terms`` the
    parts of a ``(loss, terms)`` loss, logged like ``loss``; ``steps_done`` the optimizer steps
    taken; ``stopped`` why the run ended before ``steps`` (``"time budget"`` or a hook's reason).
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None
    terms: dict[str, list[float]] = field(default_factory=dict)
    steps_done: int = 0
    stopped: str | None = None

    _SAVED = ("step", "loss", "lr", "eval_step", "eval", "seconds", "terms", "steps_done", "stopped")

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self._SAVED}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainHistory":
        return cls(**{k: d[k] for k in cls._SAVED if k in d})          # older checkpoints lack the last three


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """Map a precision name to ``(autocast dtype or None, use a GradScaler)`` for ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"        # CPU and MPS: full precision unless asked
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    return torch.float16, device.type == "cuda"


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a tensor, or tensors nested in tuples/lists/dicts, to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def default_loss(model: torch.nn.Module, batch) -> torch.Tensor:
    """``model(*batch)`` must return ``(output, loss)`` or the loss itself."""
    out = model(*batch) if isinstance(batch, (tuple, list)) else model(batch)
    return out[1] if isinstance(out, tuple) else out


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch_fn: Callable[[int], Any],
          config: TrainConfig, *, loss_fn: Callable = default_loss, scheduler=None,
          eval_fn: Callable[[torch.nn.Module], dict] | None = None,
          device: torch.device | None = None, hooks: Sequence[Callable[[StepInfo], Any]] = ()) -> TrainHistory:
    """Train ``model`` for ``config.steps`` optimizer steps (or until the time budget or a hook
    stops it) and return its :class:`TrainHistory`. See the module docstring."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not callable(batch_fn):
        raise TypeError("batch_fn must be callable: batch_fn(i) -> micro-batch i")
    hooks = list(hooks)
    if any(not callable(h) for h in hooks):
        raise TypeError("hooks must be callables hook(info: StepInfo)")
    if scheduler is not None and config.lr_schedule is not None:
        raise ValueError("pass either scheduler= or TrainConfig(lr_schedule=...), not both")
    if scheduler is not None and config.time_budget_s is not None:
        raise ValueError("a step-based scheduler cannot anneal within time_budget_s; "
                         "use TrainConfig(lr_schedule='cosine') instead of scheduler=")
    device = device or next(model.parameters()).device
    model.to(device)
    inner = unwrap_model(model)
    rank, world = _rank_and_world()
    if config.gradient_checkpointing:
        if not hasattr(inner, "set_gradient_checkpointing"):
            raise ValueError("gradient_checkpointing=True needs a model with set_gradient_checkpointing()")
        inner.set_gradient_checkpointing(True)
    amp_dtype, use_scaler = resolve_precision(config.precision, device)
    scaler = torch.amp.GradScaler(device.type) if use_scaler else None
    acc, steps, budget = config.accumulation_steps, config.steps, config.time_budget_s

    history, start = TrainHistory(), 0
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    ckpt = Path(config.checkpoint_path) if config.checkpoint_path else None
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, inner, optimizer, scheduler, map_location=device)
        start = state["step"]
        history = TrainHistory.from_dict(state["extra"]["history"])
        history.resumed_from = start
        running, count = state["extra"]["running"], state["extra"]["count"]
        running_terms = state["extra"].get("running_terms", {})
        base_lrs = state["extra"].get("base_lrs", base_lrs)
    else:
        running, count, running_terms = 0.0, 0, {}

    def set_schedule_lr(step: int, elapsed: float) -> float:
        """Set the rate of (0-based) ``step``; return the run's position in [0, 1]."""
        position = step if budget is None else max(step, steps * elapsed / budget)
        if config.lr_schedule is not None:
            f = warmup_cosine(step, steps, config.warmup_steps, config.min_lr_ratio, position)
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * f
        return min(1.0, position / steps)

    def checkpoint(step: int) -> None:
        if ckpt is not None:
            if rank == 0:
                extra = {"history": history.as_dict(), "running": running, "count": count,
                         "running_terms": running_terms, "base_lrs": base_lrs}
                save_checkpoint(ckpt, inner, optimizer, scheduler, step=step, extra=extra)
            if world > 1:
                torch.distributed.barrier()

    def log(done: int, running: float, count: int, running_terms: dict):
        """Append the mean of the interval that ends at step ``done``; return the emptied accumulators."""
        history.step.append(done)
        history.loss.append(running / count)
        history.lr.append(optimizer.param_groups[0]["lr"])
        for k, v in running_terms.items():
            history.terms.setdefault(k, []).append(v / count)
        if bar is not None:
            bar.set_postfix(loss=f"{history.loss[-1]:.3f}")
        return 0.0, 0, {}

    prior = history.seconds                        # training seconds of earlier (resumed) runs
    t_start = time.perf_counter()
    done = start
    if history.stopped is not None and history.stopped != "time budget":
        stop = history.stopped                     # a hook ended this run: resuming returns it as it was
    elif budget is not None and prior >= budget:
        stop = "time budget"
    else:
        stop, history.stopped = None, None
    if stop is None and start == 0:
        set_schedule_lr(0, 0.0)                    # the first step's rate (a resumed run has it in the optimizer)

    plot = _make_live_plot(config) if rank == 0 and stop is None else None
    bar = _make_bar(config, start) if rank == 0 and stop is None else None
    model.train()
    try:
        for step in (range(start, steps) if stop is None else ()):
            optimizer.zero_grad(set_to_none=True)
            losses, term_parts = [], []
            for micro in range(acc):
                batch = to_device(batch_fn(step * acc + micro), device)
                ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
                last = micro == acc - 1
                sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
                with sync:
                    with ctx:
                        out = loss_fn(model, batch)
                    loss, terms = out if isinstance(out, tuple) else (out, None)
                    if acc > 1:
                        loss = loss / acc
                    (scaler.scale(loss) if scaler else loss).backward()
                losses.append(loss.detach())
                if terms:
                    term_parts.append(terms)
            # one host sync for the step's loss values: the same floats, summed in the same order, as .item() each
            step_loss = 0.0
            for v in torch.stack(losses).tolist() if acc > 1 else [losses[0].item()]:
                step_loss += v
            step_terms = _mean_terms(term_parts, acc)
            bad = 0.0 if math.isfinite(step_loss) else 1.0
            elapsed = prior + time.perf_counter() - t_start
            if world > 1:   # all ranks agree on the mean loss, on a non-finite loss anywhere, and on the clock
                buf = torch.tensor([step_loss, bad, elapsed, *step_terms.values()], dtype=torch.float64, device=device)
                torch.distributed.all_reduce(buf)                 # NCCL needs device tensors
                vals = buf.tolist()
                step_loss, bad, elapsed = vals[0] / world, vals[1], vals[2] / world
                step_terms = {k: v / world for k, v in zip(step_terms, vals[3:])}
            if bad:
                where = f"loss became {step_loss}" if world == 1 else f"loss was not finite on {int(bad)} of {world} ranks"
                raise FloatingPointError(f"{where} at step {step}")
            if scaler:
                scaler.unscale_(optimizer)
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            lr_used = optimizer.param_groups[0]["lr"]
            if scaler:
                scale = scaler.get_scale()
                scaler.step(optimizer)
                scaler.update()
                stepped = scaler.get_scale() >= scale          # the scale drops only when inf/nan grads skipped the step
            else:
                optimizer.step()
                stepped = True
            if scheduler is not None and stepped:
                scheduler.step()
            done = step + 1
            if budget is not None and elapsed >= budget and done < steps:
                stop = "time budget"
            position = set_schedule_lr(done, elapsed)
            final = done == steps or stop is not None
            running, count = running + step_loss, count + 1
            for k, v in step_terms.items():
                running_terms[k] = running_terms.get(k, 0.0) + v
            if done % config.log_every == 0 or final:
                running, count, running_terms = log(done, running, count, running_terms)
            if eval_fn is not None and ((config.eval_every and done % config.eval_every == 0) or final):
                model.eval()
                with torch.no_grad():
                    history.eval.append({k: float(v) for k, v in eval_fn(model).items()})
                history.eval_step.append(done)
                model.train()
            history.steps_done = done
            if hooks:
                info = StepInfo(step=done, steps=steps, final=final, loss=step_loss, terms=step_terms, lr=lr_used,
                                position=position, seconds=elapsed, model=inner, optimizer=optimizer,
                                history=history, rank=rank)
                for hook in hooks:
                    hook(info)
                asked = info.stop_reason is not None
                if world > 1:                              # one rank asking stops every rank
                    flag = torch.tensor([float(asked)], device=device)
                    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                    asked = bool(flag.item())
                if asked and stop is None:
                    stop = info.stop_reason or "stopped by a hook on another rank"
            if bar is not None:
                bar.update(1)
            if plot is not None:
                plot.update(history)
            if stop is not None:
                break
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done != steps:
                history.seconds = prior + time.perf_counter() - t_start
                checkpoint(done)
    finally:
        if bar is not None:
            bar.close()
    if count and stop is not None:                 # a hook stopped the run between two log steps
        running, count, running_terms = log(done, running, count, running_terms)
    history.seconds = prior + time.perf_counter() - t_start
    history.steps_done = done
    history.stopped = stop
    checkpoint(done)
    if plot is not None:
        plot.finish(history)
    if config.gradient_checkpointing:
        inner.set_gradient_checkpointing(False)
    model.eval()
    return history


def _mean_terms(parts: list[dict], acc: int) -> dict[str, float]:
    """Per-micro-batch ``{name: scalar}`` dicts -> their mean over the ``acc`` micro-batches, as floats."""
    if not parts:
        return {}
    names = list(parts[0])
    vals = torch.stack([torch.as_tensor(p[k]).detach().float().cpu() for p in parts for k in names]).tolist()
    out = dict.fromkeys(names, 0.0)
    for i, v in enumerate(vals):
        out[names[i % len(names)]] += v / acc
    return out


def _rank_and_world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _make_bar(config: TrainConfig, start: int):
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.steps, initial=start, desc="train", unit="step", mininterval=1.0)


def _make_live_plot(config: TrainConfig):
    if not config.live_plot:
        return None
    from .viz import LiveLossPlot, in_notebook

    return LiveLossPlot(config.plot_title) if in_notebook() else None
