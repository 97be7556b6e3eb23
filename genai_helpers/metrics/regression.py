"""Regression metrics: MSE, MAE, RMSE (chapter 03). Inputs are equal-length sequences or arrays of numbers."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["mse", "mae", "rmse"]


def _errors(y_true, y_pred) -> np.ndarray:
    t = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_pred, dtype=float).ravel()
    if t.size == 0:
        raise ValueError("y_true must not be empty")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same number of values, got {t.size} and {p.size}")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("y_true and y_pred must be finite numbers")
    return p - t


def mse(y_true, y_pred) -> float:
    """Mean squared error (units²): large errors dominate."""
    return float(np.mean(_errors(y_true, y_pred) ** 2))


def mae(y_true, y_pred) -> float:
    """Mean absolute error (units of the target): every unit of error counts the same."""
    return float(np.mean(np.abs(_errors(y_true, y_pred))))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error: MSE back in the target's units; always >= MAE."""
    return math.sqrt(mse(y_true, y_pred))
