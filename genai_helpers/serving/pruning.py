"""Magnitude pruning: zero the smallest weights (chapter 09).

Unstructured pruning sets the fraction ``sparsity`` of weights with the smallest absolute value
to zero, either over all pruned layers together (``scope="global"``, what
``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured`` does) or layer by layer
(``scope="layer"``). The zeros save nothing on dense kernels: speed and memory gains need a
sparse format or structured pruning (whole heads, channels). The chapter measures the quality
cost, which is what decides whether it is worth it.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .._checks import check_probability

__all__ = ["SCOPES", "prunable_weights", "magnitude_prune", "sparsity_of"]

SCOPES = ("global", "layer")


def prunable_weights(model: nn.Module, skip: tuple[str, ...] = ()) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every ``nn.Linear`` not matching ``skip``; shared (tied)
    weights are listed once."""
    seen, out = set(), []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and not any(s in name for s in skip) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            out.append((name, m))
    return out


def magnitude_prune(model: nn.Module, sparsity: float, *, scope: str = "global", skip: tuple[str, ...] = (),
                    inplace: bool = False) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Zero the ``sparsity`` fraction (in [0, 1)) of smallest-magnitude Linear weights.

    Returns ``(pruned model, masks)`` with ``masks[name]`` a bool tensor (True = kept). Ties at the
    threshold are broken by position, as ``torch.topk`` does, so exactly ``round(sparsity * n)``
    weights are zeroed. Biases, LayerNorms and embeddings are left alone.
    """
    check_probability("sparsity", sparsity)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    model = model if inplace else copy.deepcopy(model)
    layers = prunable_weights(model, skip)
    if not layers:
        raise ValueError("model has no nn.Linear weights to prune (check skip)")
    masks: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        if scope == "global":
            flat = torch.cat([m.weight.abs().flatten() for _, m in layers])
            n_prune = round(sparsity * flat.numel())
            keep = torch.ones_like(flat, dtype=torch.bool)
            if n_prune:
                keep[torch.topk(flat, n_prune, largest=False).indices] = False
            start = 0
            for name, m in layers:
                n = m.weight.numel()
                masks[name] = keep[start:start + n].view_as(m.weight)
                start += n
        else:
            for name, m in layers:
                flat = m.weight.abs().flatten()
                n_prune = round(sparsity * flat.numel())
                keep = torch.ones_like(flat, dtype=torch.bool)
                if n_prune:
                    keep[torch.topk(flat, n_prune, largest=False).indices] = False
                masks[name] = keep.view_as(m.weight)
        for name, m in layers:
            m.weight.mul_(masks[name])
    return model, masks


def sparsity_of(model: nn.Module, skip: tuple[str, ...] = ()) -> float:
    """Fraction of exactly-zero weights over the model's Linear layers."""
    layers = prunable_weights(model, skip)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    return zeros / sum(m.weight.numel() for _, m in layers)
