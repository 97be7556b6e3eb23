"""Argument validation shared by the package: every public function names the bad parameter."""
from __future__ import annotations

import torch


def check_positive_int(name: str, value, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_probability(name: str, value, *, allow_one: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    upper_ok = value <= 1 if allow_one else value < 1
    if not (0 <= value and upper_ok):
        bracket = "]" if allow_one else ")"
        raise ValueError(f"{name} must be in [0, 1{bracket}, got {value}")
    return float(value)


def check_tensor(name: str, value, *, ndim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if value.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {tuple(value.shape)}")
    return value


def check_choice(name: str, value, allowed: tuple):
    """``value`` if it is one of ``allowed``; otherwise a ValueError listing the accepted values."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value
