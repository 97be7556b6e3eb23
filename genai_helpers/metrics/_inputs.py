"""Input checks shared by the metric modules (each error names the parameter)."""
from __future__ import annotations

from typing import Sequence


def check_k(k, name: str = "k") -> int:
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"{name} must be an int >= 1, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"{name} must be an int >= 1, got {k}")
    return k


def check_same_length(name_a: str, a: Sequence, name_b: str, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must have the same length, got {len(a)} and {len(b)}")


def check_nonempty(name: str, seq) -> None:
    if len(seq) == 0:
        raise ValueError(f"{name} must not be empty")


def check_text(name: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def as_reference_list(name: str, value) -> list[str]:
    """One reference (str) or several (list of str) -> list of str."""
    refs = [value] if isinstance(value, str) else list(value)
    if not refs:
        raise ValueError(f"{name} must hold at least one reference string")
    for r in refs:
        check_text(name, r)
    return refs
