"""Players that work offline: a parameter sweep or an animation as an HTML player with every frame
embedded, play controls and a frame slider (chapters 01-15 use them for their sweeps).

Players (:func:`sweep_player`, :func:`jshtml`) draw their own buttons, so they work on the static
site, in JupyterLab offline and on Colab; :func:`offline_jshtml` fixes the output of a plain
``Animation.to_jshtml()`` the same way, and ``genai_helpers.notebook.execute`` applies it to every
stored output (:func:`offline_notebook_outputs`). Frames are stored at :data:`PLAYER_DPI` and drawn
in the book's style (:mod:`genai_helpers.viz`); ``tools/offline_players.py`` converts the players
already stored in notebooks.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .viz import without_grid_over_images

__all__ = ["PLAYER_DPI", "jshtml", "offline_jshtml", "offline_notebook_outputs", "sweep_player"]

PLAYER_DPI = 100
"""Resolution of the frames of :func:`sweep_player` and :func:`jshtml` (dots per inch): sharp
enough to read tick labels."""

# matplotlib's player (Animation.to_jshtml) draws its buttons with Font Awesome 4 icons
# (<i class="fa fa-play">) and links the font from a CDN, so offline its buttons are blank.
# The book draws them as inline SVG (16 x 16 view box, filled with the button's text colour).
_ICON_PATHS = {
    "minus": "M2 6.5h12v3H2z",
    "plus": "M6.5 2h3v4.5H14v3H9.5V14h-3V9.5H2v-3h4.5z",
    "play": "M4 2l10 6-10 6z",
    "play-reverse": "M12 2L2 8l10 6z",
    "pause": "M3 2h4v12H3zM9 2h4v12H9z",
    "step-forward": "M2 2l9 6-9 6zM11 2h3v12h-3z",
    "step-backward": "M14 2L5 8l9 6zM2 2h3v12H2z",
    "fast-forward": "M1 2l6 6-6 6zM7 2l6 6-6 6zM13 2h2v12h-2z",
    "fast-backward": "M15 2L9 8l6 6zM9 2L3 8l6 6zM1 2h2v12H1z",
}
_FONT_AWESOME_LINK = re.compile(r"<link\b[^>]*font-awesome[^>]*>[ \t]*\n?", re.IGNORECASE)
_FONT_AWESOME_ICON = re.compile(r'<i class="fa fa-([a-z-]+)((?: fa-[a-z-]+)*)"\s*>\s*</i>')
_PLAYER_MARK = 'class="anim-buttons"'


def _icon_svg(name: str) -> str:
    return ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16" width="14" height="14" '
            'aria-hidden="true" focusable="false" style="vertical-align: middle">'
            f'<path fill="currentColor" d="{_ICON_PATHS[name]}"/></svg>')


def offline_jshtml(html: str) -> str:
    """Make a matplotlib ``Animation.to_jshtml()`` player work with no network.

    Removes the ``<link>`` to Font Awesome on a CDN and draws each button's icon as inline SVG,
    so the play, pause and step buttons show on the offline site, in JupyterLab without network
    and on Colab. HTML that is not a matplotlib player is returned unchanged, and so is a player
    already converted (the function is idempotent). ``html``: the player's HTML string.
    Raises ``ValueError`` naming an icon it cannot draw (a newer matplotlib template).
    """
    if not isinstance(html, str):
        raise TypeError(f"html must be a str (the output of Animation.to_jshtml()), got {type(html).__name__}")
    if _PLAYER_MARK not in html:
        return html

    def icon(m: re.Match) -> str:
        name, modifiers = m.group(1), m.group(2).split()
        if name == "play" and "fa-flip-horizontal" in modifiers:
            name = "play-reverse"
        if name not in _ICON_PATHS:
            raise ValueError(f"offline_jshtml: no drawing for the player icon fa-{name}; "
                             f"known: {sorted(_ICON_PATHS)}")
        return _icon_svg(name)

    html = _FONT_AWESOME_ICON.sub(icon, html)
    return _FONT_AWESOME_LINK.sub("", html)


def jshtml(anim, *, default_mode: str = "once") -> str:
    """``anim.to_jshtml()`` made to work offline (:func:`offline_jshtml`): the HTML of a player
    with every frame embedded, a frame slider and drawn buttons. ``default_mode``: ``"once"``,
    ``"loop"`` or ``"reflect"``. Wrap it in ``IPython.display.HTML`` to show it."""
    if default_mode not in ("once", "loop", "reflect"):
        raise ValueError(f"default_mode must be 'once', 'loop' or 'reflect', got {default_mode!r}")
    return offline_jshtml(anim.to_jshtml(default_mode=default_mode))


def offline_notebook_outputs(nb) -> int:
    """Apply :func:`offline_jshtml` to every ``text/html`` output of the notebook ``nb`` (an
    ``nbformat`` node, changed in place); return how many outputs changed.

    ``genai_helpers.notebook.execute`` calls it before saving, so a chapter's players work
    offline even when a cell calls ``Animation.to_jshtml()`` directly. Code cells are not
    touched, so the notebook's code hash (the stale-output check) does not change.
    """
    changed = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data") or {}
            html = data.get("text/html")
            if html is None:
                continue
            text = html if isinstance(html, str) else "".join(html)
            fixed = offline_jshtml(text)
            if fixed != text:
                data["text/html"] = fixed if isinstance(html, str) else fixed.splitlines(keepends=True)
                changed += 1
    return changed


def sweep_player(values: Sequence, draw: Callable[[Figure, object], None], *, figsize=(6.0, 4.0),
                 interval_ms: int = 600, label: str | None = None, dpi: int = PLAYER_DPI):
    """Turn a parameter sweep into an HTML player with play controls and a frame slider.

    ``draw(fig, value)`` draws one frame onto a cleared figure. The figure uses constrained layout,
    so ``draw`` should make its axes on a grid (``fig.subplots``, ``fig.add_subplot``,
    ``fig.add_gridspec``): axes placed by hand with ``fig.add_axes`` are outside the layout, and
    matplotlib warns that it found no grid to arrange. This is the static-site twin of an
    ipywidgets slider: every frame is precomputed (:func:`jshtml`), so it works with no kernel and
    no network. ``figsize`` in inches; frames are stored at ``dpi`` (default 100, the book's
    minimum for readable labels; 30..300 accepted); ``interval_ms`` between frames when playing.
    Returns ``IPython.display.HTML``.
    """
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation

    values = list(values)
    if not values:
        raise ValueError("values must contain at least one setting")
    if not callable(draw):
        raise TypeError("draw must be callable: draw(fig, value)")
    if not (isinstance(dpi, (int, float)) and 30 <= dpi <= 300):
        raise ValueError(f"dpi must be a number in [30, 300], got {dpi!r}")
    if not (isinstance(interval_ms, int) and interval_ms >= 1):
        raise ValueError(f"interval_ms must be an int >= 1 (milliseconds), got {interval_ms!r}")
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)

    def frame(i):
        fig.clear()
        draw(fig, values[i])
        without_grid_over_images(fig)
        if label:
            fig.text(0.01, 0.01, f"{label} = {values[i]}", fontsize=9, color="0.3")
        return []

    anim = FuncAnimation(fig, frame, frames=len(values), interval=interval_ms, blit=False)
    return HTML(jshtml(anim, default_mode="once"))
