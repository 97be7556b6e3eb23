"""Knowledge distillation: a small student learns the teacher's whole next-token distribution
(chapter 09).

Hinton et al.'s loss mixes the usual cross-entropy on the data with a KL term that pulls the
student's softened distribution towards the teacher's:

    loss = alpha * T^2 * KL( softmax(z_t / T) || softmax(z_s / T) ) + (1 - alpha) * CE(z_s, y)

The ``T^2`` keeps the gradient scale of the KL term independent of the temperature ``T``.
The teacher's distribution says which wrong tokens are *nearly* right, which one-hot targets hide:
that is the extra signal a student gets.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_probability

__all__ = ["distillation_loss", "distillation_loss_fn"]


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None = None,
                      *, temperature: float = 2.0, alpha: float = 0.5, ignore_index: int = -100) -> torch.Tensor:
    """The mixed loss above. Logits ``(..., V)``; ``targets`` ``(...)`` ids (needed when ``alpha < 1``);
    the KL is averaged over positions (``batchmean`` over the flattened positions)."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits and teacher_logits must have the same shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    check_probability("alpha", alpha, allow_one=True)
    V = student_logits.shape[-1]
    s = student_logits.reshape(-1, V).float()
    t = teacher_logits.reshape(-1, V).float().detach()
    kl = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1),
                  reduction="batchmean", log_target=True) * temperature ** 2
    if alpha == 1.0:
        return kl
    if targets is None:
        raise ValueError("targets are needed when alpha < 1 (the cross-entropy part)")
    ce = F.cross_entropy(s, targets.reshape(-1), ignore_index=ignore_index)
    return alpha * kl + (1 - alpha) * ce


def distillation_loss_fn(teacher: nn.Module, *, temperature: float = 2.0, alpha: float = 0.5) -> Callable:
    """A ``loss_fn(student, batch)`` for :func:`genai_helpers.training.train`: ``batch = (x, y)``;
    both models return ``(logits, loss)`` from ``model(x)``; the teacher runs without gradients."""
    teacher.eval()

    def loss_fn(student: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        with torch.no_grad():
            t_logits = teacher(x)[0]
        s_logits = student(x)[0]
        return distillation_loss(s_logits, t_logits, y, temperature=temperature, alpha=alpha)

    return loss_fn
