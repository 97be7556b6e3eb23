"""Figures for reading: the book's style, attention heatmaps, image grids, live loss plots, log
axes, diagrams.

Everything returns a matplotlib ``Figure`` built with the object-oriented API, so nothing is drawn
twice in a notebook and figures are easy to test.

Importing this module applies the book's figure style once (:func:`use_book_style`): constrained
layout (titles never overlap), light grid lines on plots but never over images or heatmaps;
:func:`log_axis` puts an axis on a log scale only when its data span decades.

The players that work offline (``sweep_player``, ``jshtml``, ``offline_jshtml``,
``offline_notebook_outputs``, ``PLAYER_DPI``) live in :mod:`genai_helpers.players`; ``viz.sweep_player``
and the others still work (chapters call them from here).
"""
from __future__ import annotations

import math
import time
from typing import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

__all__ = ["BOOK_STYLE", "LiveLossPlot", "attention_grid", "attention_heatmap", "image_grid", "in_notebook",
           "log_axis", "pipeline_diagram", "use_book_style", "without_grid_over_images"]

# --------------------------------------------------------------------------------------------
# The book's style, set in one place
# --------------------------------------------------------------------------------------------

#: matplotlib settings every chapter figure uses (applied on import by :func:`use_book_style`).
BOOK_STYLE = {
    "figure.dpi": 90,                        # inline figures: readable, notebooks stay small
    "figure.constrained_layout.use": True,   # titles, labels and colorbars never overlap
    "axes.grid": True,                       # light grid on plots (never over images: see below)
    "grid.alpha": 0.3,
    "axes.titlesize": "medium",
    "legend.fontsize": "small",
}


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE` to ``matplotlib.rcParams`` and, inside IPython, hide grid lines
    over images when a figure is displayed (:func:`without_grid_over_images`).

    Called when ``genai_helpers.viz`` is imported; calling it again is harmless. A chapter that
    sets its own ``rcParams`` afterwards (for example ``axes.grid``) still gets images without a
    grid, because the rule is applied when the figure is shown.
    """
    matplotlib.rcParams.update(BOOK_STYLE)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    shell = get_ipython()
    if shell is not None:
        _install_display_rule(shell)


def without_grid_over_images(fig: Figure) -> Figure:
    """Turn grid lines off on every axes of ``fig`` that shows an image or a heatmap
    (``imshow``, ``matshow``, ``pcolormesh``, ``hist2d``): a grid over pixels hides them.
    Returns ``fig`` (changed in place)."""
    for ax in fig.axes:
        if ax.images or any(isinstance(c, QuadMesh) for c in ax.collections):
            ax.grid(False)
    return fig


_HOOKED_SHELLS: set[int] = set()


def _install_display_rule(shell) -> None:
    """Wrap IPython's display formatters for ``Figure`` so every shown figure passes through
    :func:`without_grid_over_images` first. ``%matplotlib inline`` (or the first pyplot import)
    re-registers IPython's own formatters, so the wrap is renewed before each cell runs."""
    _wrap_figure_formatters(shell)
    if id(shell) not in _HOOKED_SHELLS:
        _HOOKED_SHELLS.add(id(shell))
        shell.events.register("pre_run_cell", lambda info=None: _wrap_figure_formatters(shell))


def _wrap_figure_formatters(shell) -> None:
    for formatter in shell.display_formatter.formatters.values():
        try:
            show = formatter.lookup_by_type(Figure)
        except (KeyError, AttributeError):
            continue
        if getattr(show, "_genai_book_rule", False):
            continue

        def show_without_grid_over_images(fig, _show=show):
            return _show(without_grid_over_images(fig))

        show_without_grid_over_images._genai_book_rule = True
        formatter.for_type(Figure, show_without_grid_over_images)


def _decade_label(value: float, pos=None) -> str:
    """``0.001`` ... ``10000`` written out, ``10^k`` beyond; empty for a tick that is not a decade."""
    if not value > 0:
        return ""
    k = round(math.log10(value))
    if not math.isclose(value, 10.0 ** k, rel_tol=1e-6):
        return ""
    return f"{10.0 ** k:g}" if -3 <= k <= 4 else f"$10^{{{k}}}$"


def log_axis(ax, axis: str = "y", values=None, *, min_decades: float = 1.0) -> bool:
    """Put ``axis`` (``"x"`` or ``"y"``) of ``ax`` on a base-10 log scale, but only when its data
    span at least ``min_decades`` decades (largest / smallest positive value >= 10 ** min_decades).

    A log axis over less than a decade shows no labelled tick at all, so such data keep a linear
    axis. Major ticks sit on decades and read ``0.01, 0.1, 1, 10, 100, 1000`` (``10^k`` beyond
    ``10^-3 .. 10^4``); minor ticks (2..9 x each decade) are unlabelled.

    ``values``: the data to measure (any array-like); by default the data already plotted on
    ``ax``. Returns True when the log scale was applied. Used for loss curves, latencies and
    sweeps over powers of two (chapters 01, 02, 09, 11).
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    if not (isinstance(min_decades, (int, float)) and min_decades > 0):
        raise ValueError(f"min_decades must be a number > 0, got {min_decades!r}")
    if values is None:
        lo, hi = ax.dataLim.intervalx if axis == "x" else ax.dataLim.intervaly
        data = np.array([lo, hi], dtype=float)
    else:
        data = _as_numpy(values).astype(float).ravel()
    data = data[np.isfinite(data)]
    positive = data[data > 0]
    if positive.size == 0:
        raise ValueError(f"log_axis needs positive finite data on the {axis} axis (plot first, or pass values=)")
    if math.log10(positive.max() / positive.min()) < min_decades:
        return False
    getattr(ax, f"set_{axis}scale")("log", base=10)
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(base=10, numticks=12))
    target.set_major_formatter(FuncFormatter(_decade_label))
    target.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10)), numticks=12))
    target.set_minor_formatter(NullFormatter())
    return True


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Colab, nbclient), False in a terminal or pytest."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def attention_heatmap(weights, query_tokens: Sequence[str] | None = None, key_tokens: Sequence[str] | None = None,
                      *, ax=None, title: str | None = None, colorbar: bool = True, vmax: float | None = None):
    """Draw one attention matrix ``(L, S)``: row i shows where query token i looks.

    Returns the figure (a new one unless ``ax`` is given).
    """
    w = _as_numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be a 2-D (queries, keys) matrix, got shape {w.shape}")
    if query_tokens is not None and len(query_tokens) != w.shape[0]:
        raise ValueError(f"query_tokens must have {w.shape[0]} entries, got {len(query_tokens)}")
    if key_tokens is not None and len(key_tokens) != w.shape[1]:
        raise ValueError(f"key_tokens must have {w.shape[1]} entries, got {len(key_tokens)}")
    if ax is None:
        size = max(3.0, 0.32 * max(w.shape) + 1.5)
        fig = Figure(figsize=(size + (0.8 if colorbar else 0), size))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    im = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=vmax if vmax is not None else max(float(w.max()), 1e-9))
    ax.grid(False)
    if query_tokens is not None:
        ax.set_yticks(range(len(query_tokens)), query_tokens, fontsize=8)
    if key_tokens is not None:
        ax.set_xticks(range(len(key_tokens)), key_tokens, fontsize=8, rotation=90)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    return fig


def attention_grid(weights, tokens: Sequence[str] | None = None, *, title: str | None = None,
                   layer_names: Sequence[str] | None = None):
    """All heads of all layers: ``weights`` is ``(n_layers, n_heads, T, T)``. One panel per head."""
    w = _as_numpy(weights)
    if w.ndim != 4:
        raise ValueError(f"weights must be (n_layers, n_heads, T, T), got shape {w.shape}")
    n_layers, n_heads = w.shape[:2]
    fig = Figure(figsize=(2.6 * n_heads, 2.6 * n_layers + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_layers, n_heads, squeeze=False))
    for li in range(n_layers):
        for hi in range(n_heads):
            ax = axes[li, hi]
            ax.imshow(w[li, hi], cmap="viridis", vmin=0, vmax=1)
            ax.grid(False)
            ax.set_xticks([])
            ax.set_yticks([])
            name = layer_names[li] if layer_names else f"layer {li}"
            ax.set_title(f"{name}, head {hi}", fontsize=9)
            if tokens is not None and hi == 0:
                ax.set_yticks(range(len(tokens)), tokens, fontsize=6)
    if title:
        fig.suptitle(title)
    return fig


def image_grid(images, nrow: int = 8, *, titles: Sequence[str] | None = None, title: str | None = None,
               value_range: tuple[float, float] = (0.0, 1.0), cell_inches: float = 1.1):
    """Grid of images ``(N, C, H, W)`` or ``(N, H, W)`` (tensor or array), clipped to ``value_range``."""
    x = _as_numpy(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) or (N, H, W), got shape {x.shape}")
    if not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a positive int, got {nrow!r}")
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    x = np.clip((x - lo) / (hi - lo), 0, 1)
    n = x.shape[0]
    cols, rows = min(nrow, n), -(-n // nrow)
    fig = Figure(figsize=(cell_inches * cols, cell_inches * rows + (0.4 if title else 0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < n:
            img = x[i].transpose(1, 2, 0)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


class LiveLossPlot:
    """A loss curve that redraws in place in Jupyter and leaves exactly one final figure.

    Uses a display handle, so the stored notebook output is the last drawing, not one per update.
    ``ylabel`` names the loss (default: cross-entropy, what the training loop logs for language
    models); ``yscale`` is a matplotlib scale (``"linear"``, ``"log"``). ``update(history)`` and
    ``finish(history)`` read ``history.step`` and ``history.loss`` (and ``eval``/``eval_step`` when
    present), e.g. a :class:`~genai_helpers.training.TrainHistory` filled from a callback.
    """

    def __init__(self, title: str = "Training loss", min_interval: float = 2.0, *,
                 ylabel: str = "cross-entropy (nats)", yscale: str = "linear"):
        from IPython.display import display

        if not isinstance(ylabel, str):
            raise TypeError(f"ylabel must be a str, got {type(ylabel).__name__}")
        if yscale not in ("linear", "log"):
            raise ValueError(f"yscale must be 'linear' or 'log', got {yscale!r}")
        self.title, self.min_interval, self._last = title, min_interval, 0.0
        self.ylabel, self.yscale = ylabel, yscale
        self.fig = Figure(figsize=(6.0, 3.2), layout="constrained")
        self.ax = self.fig.add_subplot()
        self.handle = display(self._placeholder(), display_id=True)

    @staticmethod
    def _placeholder():
        from IPython.display import HTML

        return HTML("<i>training…</i>")

    def _draw(self, history) -> None:
        ax = self.ax
        ax.clear()
        ax.plot(history.step, history.loss, label="train loss (mean per log interval)")
        evals = getattr(history, "eval", [])
        for key in sorted({k for e in evals for k in e}):
            if "loss" in key:
                ax.plot(history.eval_step, [e.get(key, np.nan) for e in evals], "o-", label=key)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(self.ylabel)
        ax.set_yscale(self.yscale)
        ax.set_title(self.title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    def update(self, history) -> None:
        now = time.monotonic()
        if history.step and now - self._last >= self.min_interval:
            self._last = now
            self._draw(history)
            self.handle.update(self.fig)

    def finish(self, history) -> None:
        if history.step:
            self._draw(history)
            self.handle.update(self.fig)


def pipeline_diagram(stages: Sequence[str], *, title: str | None = None, notes: Sequence[str] | None = None):
    """Boxes joined by arrows, left to right: the system a chapter builds, drawn in one line."""
    if not stages:
        raise ValueError("stages must name at least one stage")
    n = len(stages)
    fig = Figure(figsize=(max(6.0, 1.9 * n), 1.9 if notes else 1.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0, n)
    ax.set_ylim(-0.9 if notes else -0.2, 1)
    ax.axis("off")
    for i, name in enumerate(stages):
        ax.text(i + 0.5, 0.5, name, ha="center", va="center", fontsize=9, wrap=True,
                bbox=dict(boxstyle="round,pad=0.5", fc="#e8f0fe", ec="#3367d6"))
        if notes is not None and i < len(notes) and notes[i]:
            ax.text(i + 0.5, -0.35, notes[i], ha="center", va="center", fontsize=7, color="0.35", wrap=True)
        if i < n - 1:
            ax.annotate("", xy=(i + 1.12, 0.5), xytext=(i + 0.88, 0.5),
                        arrowprops=dict(arrowstyle="->", color="#3367d6", lw=1.5))
    if title:
        ax.set_title(title, fontsize=11)
    return fig


use_book_style()


# The offline players moved to genai_helpers.players; chapters still call viz.sweep_player etc.
# (imported on first use: players imports this module, so an import here would be circular).
_PLAYER_NAMES = ("PLAYER_DPI", "jshtml", "offline_jshtml", "offline_notebook_outputs", "sweep_player")


def __getattr__(name):
    if name in _PLAYER_NAMES:
        from . import players
        return getattr(players, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
