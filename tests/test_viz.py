"""Figures: heatmaps, grids, diagrams and the static-site sweep player."""
import re

import numpy as np
import pytest
import torch

from genai_helpers import players, viz


def test_attention_heatmap_labels_rows_and_columns():
    fig = viz.attention_heatmap(torch.eye(3), ["a", "b", "c"], ["x", "y", "z"], title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    with pytest.raises(ValueError, match="query_tokens"):
        viz.attention_heatmap(torch.eye(3), ["a"])
    with pytest.raises(ValueError, match="weights"):
        viz.attention_heatmap(torch.ones(2, 2, 2))


def test_attention_grid_has_one_panel_per_head():
    fig = viz.attention_grid(torch.rand(2, 3, 4, 4), list("abcd"))
    assert len(fig.axes) == 6


def test_image_grid_shapes_and_validation():
    fig = viz.image_grid(torch.rand(10, 3, 8, 8), nrow=4)
    assert len(fig.axes) == 12                      # 3 rows of 4, two left blank
    with pytest.raises(ValueError, match="nrow"):
        viz.image_grid(torch.rand(2, 8, 8), nrow=0)
    with pytest.raises(ValueError, match="images"):
        viz.image_grid(torch.rand(8, 8))


def test_sweep_player_embeds_one_frame_per_value_with_a_slider():
    drawn = []

    def draw(fig, value):
        drawn.append(value)
        fig.add_subplot().plot([0, 1], [0, value])

    html = players.sweep_player([1, 2, 3], draw, figsize=(2, 2)).data
    assert 'type="range"' in html and "animation" in html
    assert len(re.findall(r"data:image/png;base64", html)) == 3
    assert set(drawn) == {1, 2, 3}
    with pytest.raises(ValueError, match="values"):
        players.sweep_player([], draw)


def test_pipeline_diagram_draws_every_stage():
    fig = viz.pipeline_diagram(["a", "b", "c"], notes=["1", "", "3"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert {"a", "b", "c", "1", "3"} <= set(texts)


# ---- players that work offline (issue 13, part 1) ------------------------------------------

def _matplotlib_player(frames: int = 2) -> str:
    """The HTML of a plain ``Animation.to_jshtml()`` player (what a chapter cell would store)."""
    from matplotlib.animation import FuncAnimation
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1), dpi=40)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    return FuncAnimation(fig, lambda i: ax.plot([0, 1], [0, i]), frames=frames).to_jshtml()


def test_offline_jshtml_drops_the_cdn_stylesheet_and_draws_all_nine_buttons():
    raw = _matplotlib_player()
    assert "maxcdn.bootstrapcdn.com" in raw and raw.count('<i class="fa fa-') == 9  # the bug
    fixed = players.offline_jshtml(raw)
    assert "font-awesome" not in fixed and "<link" not in fixed and 'class="fa' not in fixed
    assert fixed.count("<svg") == 9 and fixed.count('fill="currentColor"') == 9
    # Only the icons and the link change: buttons, slider, frames and script are all still there.
    assert fixed.count("<button") == raw.count("<button") == 9
    assert re.findall(r"data:image/png;base64,[^\"]+", fixed) == re.findall(r"data:image/png;base64,[^\"]+", raw)
    assert fixed.count("onclick=") == raw.count("onclick=") and 'type="range"' in fixed
    assert players.offline_jshtml(fixed) == fixed                       # idempotent
    # The reverse-play button gets its own (mirrored) icon, not the play icon.
    icons = re.findall(r'<path fill="currentColor" d="([^"]+)"', fixed)
    assert len(set(icons)) == 9


def test_offline_jshtml_leaves_other_html_alone_and_checks_its_input():
    other = '<link rel="stylesheet" href="https://example.org/font-awesome.css"><i class="fa fa-play"></i>'
    assert players.offline_jshtml(other) == other                       # not a matplotlib player
    with pytest.raises(TypeError, match="html"):
        players.offline_jshtml(b"<div></div>")
    unknown = '<div class="anim-buttons"><button><i class="fa fa-rocket"></i></button></div>'
    with pytest.raises(ValueError, match="fa-rocket"):
        players.offline_jshtml(unknown)


def test_sweep_player_is_offline_and_stores_frames_at_100_dpi():
    import base64
    import io

    from PIL import Image

    html = players.sweep_player([1, 2], lambda fig, v: fig.add_subplot().plot([0, v]), figsize=(2, 1.5)).data
    assert "maxcdn" not in html and "font-awesome" not in html and html.count("<svg") == 9
    first = re.search(r"data:image/png;base64,([^\"]+)", html).group(1)
    with Image.open(io.BytesIO(base64.b64decode(first))) as frame:
        assert frame.size == (200, 150)                             # 2 x 1.5 inches at 100 dpi
    assert players.PLAYER_DPI >= 100
    with pytest.raises(ValueError, match="dpi"):
        players.sweep_player([1], lambda fig, v: None, dpi=1000)
    with pytest.raises(ValueError, match="interval_ms"):
        players.sweep_player([1], lambda fig, v: None, interval_ms=0)


def test_sweep_player_lays_out_grid_axes_without_warnings():
    import warnings

    def draw(fig, v):                               # an image and a text panel, as chapter 10's player draws them
        ax, text_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 3]})
        ax.imshow(np.full((4, 4), v)); text_ax.axis("off"); text_ax.text(0, 0.5, f"value {v}")

    with warnings.catch_warnings():
        warnings.simplefilter("error")              # constrained layout warns on axes it cannot place
        html = players.sweep_player([1, 2], draw, figsize=(3, 1.5)).data
    assert html.count("data:image/png") == 2


def test_jshtml_helper_converts_and_validates_the_mode():
    from matplotlib.animation import FuncAnimation
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1), dpi=30)
    FigureCanvasAgg(fig)
    anim = FuncAnimation(fig, lambda i: [], frames=2)
    html = players.jshtml(anim, default_mode="loop")
    assert "font-awesome" not in html and re.search(r'value="loop"[^>]*\n?\s*checked', html)
    with pytest.raises(ValueError, match="default_mode"):
        players.jshtml(anim, default_mode="bounce")


def test_players_are_still_reachable_from_viz_where_chapters_call_them():
    """Chapters call viz.sweep_player; the players live in genai_helpers.players since the split."""
    for name in ("sweep_player", "jshtml", "offline_jshtml", "offline_notebook_outputs", "PLAYER_DPI"):
        assert getattr(viz, name) is getattr(players, name)
    from genai_helpers.viz import sweep_player
    assert sweep_player is players.sweep_player
    with pytest.raises(AttributeError, match="no_such_player"):
        viz.no_such_player


def test_offline_notebook_outputs_fixes_every_player_and_keeps_the_code_hash():
    import nbformat

    from genai_helpers.notebook import code_sha256

    raw = _matplotlib_player()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("A player: <i class=\"fa fa-play\"></i>"),
        nbformat.v4.new_code_cell("HTML(anim.to_jshtml())", outputs=[
            nbformat.v4.new_output("display_data", data={"text/html": raw, "text/plain": "<HTML>"})]),
        nbformat.v4.new_code_cell("anim", outputs=[
            nbformat.v4.new_output("execute_result", data={"text/html": raw.splitlines(keepends=True)},
                                   execution_count=2),
            nbformat.v4.new_output("stream", name="stdout", text="done\n")]),
    ])
    before_hash, markdown = code_sha256(nb), nb.cells[0].source
    assert players.offline_notebook_outputs(nb) == 2
    assert code_sha256(nb) == before_hash and nb.cells[0].source == markdown
    assert "font-awesome" not in nb.cells[1].outputs[0].data["text/html"]
    lines = nb.cells[2].outputs[0].data["text/html"]
    assert isinstance(lines, list) and "font-awesome" not in "".join(lines)
    assert players.offline_notebook_outputs(nb) == 0                    # nothing left to fix


def test_execute_stores_a_direct_to_jshtml_player_with_drawn_buttons(tmp_path):
    """A real (smoke) run through genai_helpers.notebook.execute: a cell that calls matplotlib's
    own ``to_jshtml()`` is stored without the CDN link (execute applies offline_notebook_outputs)."""
    pytest.importorskip("nbclient")
    import nbformat

    from genai_helpers.notebook import execute

    path = tmp_path / "98_player.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from IPython.display import HTML\n"
        "from matplotlib.animation import FuncAnimation\n"
        "from matplotlib.backends.backend_agg import FigureCanvasAgg\n"
        "from matplotlib.figure import Figure\n"
        "fig = Figure(figsize=(1, 1), dpi=30)\n"
        "FigureCanvasAgg(fig)\n"
        "HTML(FuncAnimation(fig, lambda i: [], frames=2).to_jshtml())")]), path)
    execute(path, mode="smoke", timeout=120)
    html = "".join(nbformat.read(path, as_version=4).cells[0].outputs[0].data["text/html"])
    assert 'class="anim-buttons"' in html and html.count("<svg") == 9
    assert "font-awesome" not in html and "maxcdn" not in html


def test_stored_chapter_players_load_nothing_from_the_network():
    """Every stored player of every chapter draws its own buttons (no Font Awesome from a CDN)."""
    from pathlib import Path

    notebooks = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
    assert notebooks
    bad = [nb.name for nb in notebooks if "bootstrapcdn.com/font-awesome" in nb.read_text(encoding="utf-8")]
    assert not bad, f"players linking Font Awesome from a CDN in {bad}: run tools/offline_players.py"


# ---- the book's figure style (issue 13, part 7) --------------------------------------------

def test_book_style_is_applied_on_import():
    import matplotlib

    viz.use_book_style()
    for key, value in viz.BOOK_STYLE.items():
        assert matplotlib.rcParams[key] == value, key
    assert matplotlib.rcParams["figure.constrained_layout.use"]        # titles never overlap
    from matplotlib.figure import Figure

    assert type(Figure().get_layout_engine()).__name__ == "ConstrainedLayoutEngine"


def _grid_visible(ax) -> bool:
    return any(line.get_visible() for line in ax.xaxis.get_gridlines() + ax.yaxis.get_gridlines())


def test_no_grid_over_images_or_heatmaps_but_plots_keep_theirs():
    from matplotlib.figure import Figure

    fig = Figure()
    ax_img, ax_mesh, ax_plot = fig.subplots(1, 3)
    for ax in (ax_img, ax_mesh, ax_plot):
        ax.grid(True)
    ax_img.imshow(np.eye(4))
    ax_mesh.pcolormesh(np.eye(4))
    ax_plot.plot([0, 1], [1, 0])
    assert viz.without_grid_over_images(fig) is fig
    assert not _grid_visible(ax_img) and not _grid_visible(ax_mesh) and _grid_visible(ax_plot)
    # The book's own heatmap never draws a grid, whatever rcParams say.
    assert not _grid_visible(viz.attention_heatmap(torch.eye(3)).axes[0])


def test_display_rule_removes_grids_when_ipython_shows_a_figure():
    """In a notebook, figures are shown through IPython's display formatters: viz wraps the one
    for Figure (and renews the wrap before each cell, since %matplotlib inline replaces it)."""
    from types import SimpleNamespace

    from IPython.core.formatters import DisplayFormatter
    from matplotlib.figure import Figure

    shown = []
    formatters = DisplayFormatter()
    png = formatters.formatters["image/png"]
    ipython_own = lambda fig: shown.append(fig) or b"png"  # noqa: E731
    png.for_type(Figure, ipython_own)
    callbacks = []
    shell = SimpleNamespace(display_formatter=formatters,
                            events=SimpleNamespace(register=lambda name, fn: callbacks.append((name, fn))))
    viz._install_display_rule(shell)
    viz._install_display_rule(shell)                                   # idempotent
    assert [name for name, _ in callbacks] == ["pre_run_cell"]
    fig = Figure()
    ax = fig.add_subplot()
    ax.grid(True)
    ax.imshow(np.eye(3))
    assert png(fig) == b"png" and shown == [fig] and not _grid_visible(ax)
    png.for_type(Figure, ipython_own)                                  # what %matplotlib inline does
    callbacks[0][1](None)                                              # before the next cell
    assert getattr(png.lookup_by_type(Figure), "_genai_book_rule", False)


def test_log_axis_only_over_decades_with_readable_ticks():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    ax.plot([1, 2, 3], [0.01, 1.0, 1000.0])
    assert viz.log_axis(ax, "y") is True and ax.get_yscale() == "log"
    ax.set_ylim(0.01, 1000)
    labels = [label.get_text() for loc, label in zip(ax.get_yticks(), ax.get_yticklabels())
              if 0.01 <= loc <= 1000]
    assert labels == ["0.01", "0.1", "1", "10", "100", "1000"], labels
    assert all(not t.get_text() for t in ax.yaxis.get_minorticklabels())
    # Less than a decade: stays linear (a log axis there would show no labelled tick).
    ax2 = Figure().add_subplot()
    ax2.plot([1, 2], [2.0, 9.0])
    assert viz.log_axis(ax2, "y") is False and ax2.get_yscale() == "linear"
    assert viz.log_axis(ax2, "x", values=[2, 4, 8, 16, 32, 64]) is True and ax2.get_xscale() == "log"
    # Far from 1: powers of ten in TeX.
    assert viz._decade_label(1e-6) == "$10^{-6}$" and viz._decade_label(1e5) == "$10^{5}$"
    assert viz._decade_label(3.0) == ""
    with pytest.raises(ValueError, match="axis"):
        viz.log_axis(ax, "z")
    with pytest.raises(ValueError, match="positive"):
        viz.log_axis(Figure().add_subplot(), "y", values=[-1, 0])
    with pytest.raises(ValueError, match="min_decades"):
        viz.log_axis(ax, "y", min_decades=0)


def test_live_loss_plot_labels_the_loss_it_is_given_and_checks_its_options(monkeypatch):
    import IPython.display

    from genai_helpers.training import TrainHistory

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id=False: shown.append(obj) or _Handle(shown))
    plot = viz.LiveLossPlot("denoiser", ylabel="Min-SNR-weighted MSE", yscale="log")
    history = TrainHistory()
    history.step += [10, 20]
    history.loss += [0.5, 0.05]
    plot.finish(history)
    assert plot.ax.get_ylabel() == "Min-SNR-weighted MSE" and plot.ax.get_yscale() == "log"
    assert shown[-1] is plot.fig                       # the handle now holds the final figure
    default = viz.LiveLossPlot()
    assert default.ylabel == "cross-entropy (nats)" and default.yscale == "linear"
    with pytest.raises(ValueError, match="yscale"):
        viz.LiveLossPlot(yscale="symlog")
    with pytest.raises(TypeError, match="ylabel"):
        viz.LiveLossPlot(ylabel=3)


class _Handle:
    def __init__(self, shown):
        self.shown = shown

    def update(self, obj):
        self.shown.append(obj)
