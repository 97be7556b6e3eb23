"""Figures for reading: attention heatmaps, image grids, live loss plots, sweep players, diagrams.

Everything returns a matplotlib ``Figure`` (or an ``IPython.display.HTML`` player) built with the
object-oriented API, so nothing is drawn twice in a notebook and figures are easy to test.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


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
    """

    def __init__(self, title: str = "Training loss", min_interval: float = 2.0):
        from IPython.display import display

        self.title, self.min_interval, self._last = title, min_interval, 0.0
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
        for key in sorted({k for e in history.eval for k in e}):
            if "loss" in key:
                ax.plot(history.eval_step, [e.get(key, np.nan) for e in history.eval], "o-", label=key)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy (nats)")
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


def sweep_player(values: Sequence, draw: Callable[[Figure, object], None], *, figsize=(6.0, 4.0),
                 interval_ms: int = 600, label: str | None = None, dpi: int = 72):
    """Turn a parameter sweep into an HTML player with play controls and a frame slider.

    ``draw(fig, value)`` draws one frame onto a cleared figure. This is the static-site twin of an
    ipywidgets slider: every frame is precomputed (``Animation.to_jshtml``), so it works with no
    kernel and no network. Frames are stored at ``dpi`` to keep notebooks small.
    Returns ``IPython.display.HTML``.
    """
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation

    values = list(values)
    if not values:
        raise ValueError("values must contain at least one setting")
    if not callable(draw):
        raise TypeError("draw must be callable: draw(fig, value)")
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)

    def frame(i):
        fig.clear()
        draw(fig, values[i])
        if label:
            fig.text(0.01, 0.01, f"{label} = {values[i]}", fontsize=9, color="0.3")
        return []

    anim = FuncAnimation(fig, frame, frames=len(values), interval=interval_ms, blit=False)
    html = anim.to_jshtml(default_mode="once")
    return HTML(html)


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
