"""Measuring what a training step keeps in memory, and how long it takes.

Chapter 02 uses these to put numbers on gradient checkpointing and mixed precision:

- :func:`saved_activation_bytes` counts the bytes autograd *saves for the backward pass* during a
  forward pass (via ``torch.autograd.graph.saved_tensors_hooks``). These activations are what
  gradient checkpointing discards and recomputes, and what bf16 autocast halves. Parameters saved
  by an op (a ``Linear`` saves its weight) are not counted: they live in memory anyway.
- :func:`peak_memory_bytes` is the allocator's peak on CUDA (``torch.cuda.max_memory_allocated``).
  PyTorch keeps no allocation statistics for CPU tensors, so on CPU it returns ``None`` and the
  chapter reports the saved-activation count (plus weights, gradients and optimizer state, which
  :func:`tensor_bytes` counts exactly) instead.
- :func:`time_call` is the median wall time of a callable over a few repeats.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Iterable

import torch

from ._checks import check_positive_int

__all__ = ["tensor_bytes", "optimizer_state_bytes", "saved_activation_bytes", "peak_memory_bytes", "time_call"]


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes held by ``tensors`` (each storage counted once), e.g. ``model.parameters()``."""
    seen, total = set(), 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors must hold torch.Tensor, got {type(t).__name__}")
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += key[1]
    return total


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors in ``optimizer.state`` (Adam: ``exp_avg`` and ``exp_avg_sq``)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return tensor_bytes(v for s in optimizer.state.values() for v in s.values()
                        if isinstance(v, torch.Tensor) and v.ndim > 0)


def saved_activation_bytes(forward: Callable[[], torch.Tensor], exclude: Iterable[torch.Tensor] = ()) -> tuple[torch.Tensor, int]:
    """Run ``forward()`` and count the bytes autograd saves for backward; return ``(output, bytes)``.

    Each storage is counted once (views of one tensor share it). Storages of ``exclude`` (pass
    ``model.parameters()``) are skipped. With gradient checkpointing the checkpointed blocks save
    only their inputs, so the count drops; the recomputation in backward holds one block's
    activations at a time on top of it (chapter 02, §2.2).
    """
    if not callable(forward):
        raise TypeError("forward must be callable: forward() -> output tensor")
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip and ptr not in seen and t.device.type != "meta":
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    return out, total


def peak_memory_bytes(step: Callable[[], object], device: torch.device) -> int | None:
    """Peak bytes allocated on a CUDA ``device`` while ``step()`` runs, above what was held before.

    Returns ``None`` on CPU and MPS, where PyTorch keeps no allocator peak statistics.
    """
    device = torch.device(device)
    if device.type != "cuda":
        step()
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def time_call(fn: Callable[[], object], repeats: int = 3, warmup: int = 1,
              device: torch.device | None = None) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    check_positive_int("repeats", repeats)
    check_positive_int("warmup", warmup, minimum=0)
    sync = (lambda: torch.cuda.synchronize(device)) if device is not None and torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
