"""LoRA: low-rank adapters for linear layers, and hence attention projections (chapter 14).

Fine-tuning a weight ``W (out, in)`` changes it by ``ΔW``. LoRA (Hu et al. 2021) keeps ``W``
frozen and learns the change as a product of two thin matrices::

    y = W x + (alpha / r) * B (A dropout(x))        A: (r, in), B: (out, r), r << min(in, out)

``B`` starts at zero, so a freshly injected adapter leaves the model's output unchanged, and only
``r * (in + out)`` numbers per layer train and must be stored per task or per subject. After
training, :func:`merge_lora` folds ``(alpha / r) B A`` into ``W`` (no extra cost at inference);
:func:`unmerge_lora` takes it out again, e.g. to swap adapters.

QLoRA (Dettmers et al. 2023) is the same adapter on top of a *quantised* frozen base: any module
with ``in_features``/``out_features`` that maps ``(..., in) -> (..., out)`` can be wrapped, e.g.
:class:`~genai_helpers.serving.quantization.Int4WeightOnlyLinear`; such a base cannot be merged
(its weight is 4-bit codes).

The conventions follow Hugging Face ``peft`` (``lora_A`` Kaiming-uniform, ``lora_B`` zeros,
``scaling = alpha / r``, ``target_modules`` matched against the end of qualified module names);
``tests/test_lora.py`` checks the outputs equal peft's for the same base weights and adapters.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_probability
from ..checkpoint import load_checkpoint, save_checkpoint

__all__ = ["DEFAULT_TARGETS", "LoRALinear", "inject_lora", "lora_layers", "lora_parameters", "merge_lora",
           "unmerge_lora", "count_parameters", "save_lora", "load_lora"]

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")     # the attention projections of genai_helpers.attention


def _check_alpha(alpha) -> float:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise TypeError(f"alpha must be a number, got {type(alpha).__name__}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    return float(alpha)


class LoRALinear(nn.Module):
    """A linear ``base`` (frozen by default) plus a trainable low-rank update ``(alpha / r) * B @ A``.

    ``base``: an ``nn.Linear`` (mergeable) or any module with ``in_features`` and ``out_features``
    (e.g. a weight-only quantised linear: QLoRA). Input ``(..., in_features)``, output
    ``(..., out_features)``. ``alpha`` defaults to ``r`` (scaling 1). ``dropout`` (in [0, 1)) acts
    on the adapter's input only, during training. ``freeze_base=False`` leaves the base's
    ``requires_grad`` flags as they are (to train base and adapter together).
    """

    def __init__(self, base: nn.Module, r: int = 4, alpha: float | None = None, dropout: float = 0.0, *,
                 freeze_base: bool = True):
        super().__init__()
        if not isinstance(base, nn.Module) or not all(hasattr(base, a) for a in ("in_features", "out_features")):
            raise TypeError(f"base must be an nn.Linear or a module with in_features/out_features, got {type(base).__name__}")
        check_positive_int("r", r)
        self.r = r
        self.alpha = float(r) if alpha is None else _check_alpha(alpha)
        self.scaling = self.alpha / r
        self.dropout_p = check_probability("dropout", dropout)
        if not isinstance(freeze_base, bool):
            raise TypeError(f"freeze_base must be a bool, got {type(freeze_base).__name__}")
        self.base = base.requires_grad_(False) if freeze_base else base
        self.in_features, self.out_features = base.in_features, base.out_features
        ref = next(iter(base.parameters()), None)
        device = ref.device if ref is not None else None
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))          # as nn.Linear and peft
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def mergeable(self) -> bool:
        return isinstance(self.base, nn.Linear)

    def delta_weight(self) -> torch.Tensor:
        """The update ``(alpha / r) * B @ A``, shape ``(out_features, in_features)``."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        update = F.linear(F.linear(self.dropout(x).to(self.lora_A.dtype), self.lora_A), self.lora_B) * self.scaling
        return y + update.to(y.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``base.weight`` (idempotent). Needs an ``nn.Linear`` base."""
        if not self.mergeable:
            raise TypeError(f"cannot merge into a {type(self.base).__name__} base (only nn.Linear); "
                            "dequantise it first, or keep the adapter separate")
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the update from ``base.weight`` again (idempotent)."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.r}, alpha={self.alpha:g}, merged={self.merged}"


def _check_targets(target_modules) -> tuple[str, ...]:
    if isinstance(target_modules, str) or not isinstance(target_modules, (list, tuple)):
        raise TypeError(f"target_modules must be a list or tuple of module names, got {type(target_modules).__name__}")
    if not target_modules or not all(isinstance(t, str) and t for t in target_modules):
        raise ValueError(f"target_modules must be a non-empty list of non-empty strings, got {target_modules!r}")
    return tuple(target_modules)


def _matches(name: str, targets: tuple[str, ...]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def inject_lora(model: nn.Module, target_modules: Sequence[str] = DEFAULT_TARGETS, r: int = 4,
                alpha: float | None = None, dropout: float = 0.0, *, freeze_base: bool = True) -> list[str]:
    """Wrap every linear-like layer whose qualified name is, or ends with ``.`` + , one of
    ``target_modules`` in a :class:`LoRALinear` (in place); return the wrapped names.

    With ``freeze_base`` (default) every parameter of ``model`` except the adapters stops requiring
    gradients, so an optimiser over ``[p for p in model.parameters() if p.requires_grad]`` trains
    only the adapters. With ``freeze_base=False`` no ``requires_grad`` flag is changed, the wrapped
    layers' weights included (full fine-tuning plus adapters). Raises ValueError when nothing matches.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    targets = _check_targets(target_modules)
    check_positive_int("r", r)
    if freeze_base:
        model.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, LoRALinear) or not _matches(full, targets):
                continue
            if not (isinstance(child, nn.Linear) or hasattr(child, "in_features") and hasattr(child, "out_features")):
                continue
            setattr(module, child_name, LoRALinear(child, r=r, alpha=alpha, dropout=dropout, freeze_base=freeze_base))
            wrapped.append(full)
    if not wrapped:
        raise ValueError(f"target_modules {list(targets)} matched no linear layer of {type(model).__name__}")
    return wrapped


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """``(qualified name, layer)`` for every :class:`LoRALinear` in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            yield name, module


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapter matrices (``lora_A``, ``lora_B`` of every layer), for an optimiser."""
    return [p for _, layer in lora_layers(model) for p in (layer.lora_A, layer.lora_B)]


def merge_lora(model: nn.Module) -> int:
    """Merge every adapter of ``model`` into its base weight; return how many were merged."""
    layers = [layer for _, layer in lora_layers(model)]
    for layer in layers:
        layer.merge()
    return len(layers)


def unmerge_lora(model: nn.Module) -> int:
    """Undo :func:`merge_lora`; return how many layers were unmerged."""
    layers = [layer for _, layer in lora_layers(model)]
    for layer in layers:
        layer.unmerge()
    return len(layers)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"trainable": ..., "total": ...}`` numbers of parameters (shared tensors counted once)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = list(model.parameters())                  # .parameters() already de-duplicates shared tensors
    return {"trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}


class _AdapterView(nn.Module):
    """A module whose state dict is exactly the adapters of ``model`` (shared tensors, not copies)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        for name, layer in lora_layers(model):
            holder = nn.Module()
            holder.lora_A, holder.lora_B = layer.lora_A, layer.lora_B
            self.add_module(name.replace(".", "__"), holder)
        if not len(self._modules):
            raise ValueError("model has no LoRA layers: call inject_lora first")


def save_lora(path: str | os.PathLike, model: nn.Module, extra: dict | None = None) -> Path:
    """Write only the adapters of ``model`` (``lora_A``/``lora_B`` of every layer) to a
    ``.safetensors`` file, atomically, with ``r``, ``alpha`` and the layer names in its metadata."""
    view = _AdapterView(model)
    for _, layer in lora_layers(model):
        if layer.merged:
            raise ValueError("unmerge_lora(model) before saving: merged adapters are inside the base weights")
    layers = dict(lora_layers(model))
    meta = {"layers": {n: {"r": m.r, "alpha": m.alpha} for n, m in layers.items()}, **(extra or {})}
    return save_checkpoint(path, view, extra=meta, rng=False)


def load_lora(path: str | os.PathLike, model: nn.Module) -> dict:
    """Load adapters written by :func:`save_lora` into ``model``, which must already carry LoRA
    layers of the same names and shapes (``inject_lora`` with the same settings); returns the
    metadata."""
    return load_checkpoint(path, _AdapterView(model), rng=False)["extra"]
