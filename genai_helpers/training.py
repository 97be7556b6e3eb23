"""The training loop every chapter uses.

    history = train(model, optimizer, batch_fn, TrainConfig(steps=2000), loss_fn=lm_loss)

What it does for you, each switched by :class:`TrainConfig`:

- mixed precision where the device supports it (bf16 on recent GPUs, fp16 + loss scaling on
  older ones, fp32 on CPU unless asked), gradient clipping and gradient accumulation;
- optional gradient checkpointing (for models with ``set_gradient_checkpointing``);
- a tqdm progress bar and, in Jupyter, a live loss plot that leaves one final figure behind;
- atomic safetensors checkpoints every ``checkpoint_every`` steps; re-running with the same
  ``checkpoint_path`` resumes and gives exactly the result an uninterrupted run would.

``batch_fn(i)`` must return micro-batch number ``i`` (``i = step * accumulation_steps + micro``)
and be a pure function of ``i`` — that is what makes resuming exact. Chapter 01 introduces the
loop; chapter 02 measures checkpointing and mixed precision and runs it under DDP.

Under ``torch.distributed`` (``torchrun``, or chapter 02's notebook workers) pass a model wrapped in
``DistributedDataParallel`` and a ``batch_fn`` that returns *this rank's* micro-batch; nothing else
changes. Gradients are averaged across ranks by DDP (synchronised only on the last micro-batch of
an accumulated step), the logged loss is the mean over ranks, and only rank 0 shows progress,
draws the plot and writes the checkpoint (of the unwrapped model, so its keys have no
``module.`` prefix and it loads into a plain model).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ._checks import check_positive_int
from .checkpoint import load_checkpoint, save_checkpoint
from .runtime import get_device

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    steps: int                                  # optimizer steps in the whole run
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

    def __post_init__(self):
        check_positive_int("steps", self.steps)
        check_positive_int("accumulation_steps", self.accumulation_steps)
        check_positive_int("log_every", self.log_every)
        check_positive_int("eval_every", self.eval_every, minimum=0)
        check_positive_int("checkpoint_every", self.checkpoint_every, minimum=0)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.checkpoint_path is not None and not str(self.checkpoint_path).endswith(".safetensors"):
            raise ValueError(f"checkpoint_path must end in .safetensors, got {self.checkpoint_path!r}")


@dataclass
class TrainHistory:
    """What happened: logged steps, mean training loss per log interval, learning rate, evals."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("step", "loss", "lr", "eval_step", "eval", "seconds")}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainHistory":
        return cls(**{k: d[k] for k in ("step", "loss", "lr", "eval_step", "eval", "seconds")})


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
          device: torch.device | None = None) -> TrainHistory:
    """Train ``model`` for ``config.steps`` optimizer steps and return its :class:`TrainHistory`."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not callable(batch_fn):
        raise TypeError("batch_fn must be callable: batch_fn(i) -> micro-batch i")
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

    history, start = TrainHistory(), 0
    ckpt = Path(config.checkpoint_path) if config.checkpoint_path else None
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, inner, optimizer, scheduler, map_location=device)
        start = state["step"]
        history = TrainHistory.from_dict(state["extra"]["history"])
        history.resumed_from = start
        running, count = state["extra"]["running"], state["extra"]["count"]
    else:
        running, count = 0.0, 0

    def checkpoint(step: int) -> None:
        if ckpt is not None:
            if rank == 0:
                extra = {"history": history.as_dict(), "running": running, "count": count}
                save_checkpoint(ckpt, inner, optimizer, scheduler, step=step, extra=extra)
            if world > 1:
                torch.distributed.barrier()

    plot = _make_live_plot(config) if rank == 0 else None
    bar = _make_bar(config, start) if rank == 0 else None
    t0 = time.perf_counter()
    model.train()
    try:
        for step in range(start, config.steps):
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for micro in range(config.accumulation_steps):
                batch = to_device(batch_fn(step * config.accumulation_steps + micro), device)
                ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
                last = micro == config.accumulation_steps - 1
                sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
                with sync:
                    with ctx:
                        loss = loss_fn(model, batch) / config.accumulation_steps
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"loss became {loss.item()} at step {step}")
                    (scaler.scale(loss) if scaler else loss).backward()
                step_loss += loss.item()
            if world > 1:                                 # log the mean loss over ranks
                mean = torch.tensor([step_loss], dtype=torch.float64, device=device)  # NCCL needs device tensors
                torch.distributed.all_reduce(mean)
                step_loss = mean.item() / world
            if scaler:
                scaler.unscale_(optimizer)
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            running, count = running + step_loss, count + 1
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                history.step.append(done)
                history.loss.append(running / count)
                history.lr.append(optimizer.param_groups[0]["lr"])
                running, count = 0.0, 0
                if bar is not None:
                    bar.set_postfix(loss=f"{history.loss[-1]:.3f}")
            if eval_fn is not None and ((config.eval_every and done % config.eval_every == 0) or done == config.steps):
                model.eval()
                with torch.no_grad():
                    history.eval.append({k: float(v) for k, v in eval_fn(model).items()})
                history.eval_step.append(done)
                model.train()
            if bar is not None:
                bar.update(1)
            if plot is not None:
                plot.update(history)
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done != config.steps:
                history.seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                checkpoint(done)
    finally:
        if bar is not None:
            bar.close()
    history.seconds += time.perf_counter() - t0
    checkpoint(config.steps)
    if plot is not None:
        plot.finish(history)
    if config.gradient_checkpointing:
        inner.set_gradient_checkpointing(False)
    model.eval()
    return history


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper; else ``model``."""
    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    return model


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


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                    min_ratio: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to ``min_ratio`` × the base learning rate."""
    check_positive_int("total_steps", total_steps)
    check_positive_int("warmup_steps", warmup_steps, minimum=0)
    if not 0 <= min_ratio <= 1:
        raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
