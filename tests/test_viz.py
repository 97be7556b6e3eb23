"""Figures: heatmaps, grids, diagrams and the static-site sweep player."""
import re

import pytest
import torch

from genai_helpers import viz


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

    html = viz.sweep_player([1, 2, 3], draw, figsize=(2, 2)).data
    assert 'type="range"' in html and "animation" in html
    assert len(re.findall(r"data:image/png;base64", html)) == 3
    assert set(drawn) == {1, 2, 3}
    with pytest.raises(ValueError, match="values"):
        viz.sweep_player([], draw)


def test_pipeline_diagram_draws_every_stage():
    fig = viz.pipeline_diagram(["a", "b", "c"], notes=["1", "", "3"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert {"a", "b", "c", "1", "3"} <= set(texts)
