"""One captioned shape per image: the simplest text-to-image data set (chapter 13).

A single large circle, square or triangle in one of six colours on a dark background, slightly
moved and resized at random, with a caption such as ``"a red circle"``. Eighteen shape/colour
combinations make prompt fidelity *measurable*: a classifier trained on these images says whether
a generated sample shows the shape and colour its prompt asked for. The drawing reuses the
anti-aliased canvas of :mod:`genai_helpers.data.procedural` (scenes with one or two objects).
"""
from __future__ import annotations

import numpy as np
import torch

from .procedural import SCENE_COLOURS, SCENE_SHAPES, _Canvas

__all__ = ["SHAPES", "COLOURS", "TEMPLATES", "shape_prompt", "class_id", "class_prompt", "make_shapes"]

#: The shapes of chapter 13's images.
SHAPES = SCENE_SHAPES                                   # ("circle", "square", "triangle")
#: The colours of chapter 13's images.
COLOURS = tuple(SCENE_COLOURS)                          # ("red", "green", "blue", "yellow", "purple", "white")
#: The prompt templates, filled with a colour and a shape.
TEMPLATES = ("a {colour} {shape}", "one {colour} {shape}", "there is a {colour} {shape}",
             "a {colour} {shape} on a dark background")


def shape_prompt(shape: str, colour: str, template: int = 0) -> str:
    """The caption of ``template`` (index into :data:`TEMPLATES`) for a shape and colour."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    if colour not in COLOURS:
        raise ValueError(f"colour must be one of {COLOURS}, got {colour!r}")
    if not isinstance(template, int) or not 0 <= template < len(TEMPLATES):
        raise ValueError(f"template must be an int in [0, {len(TEMPLATES) - 1}], got {template!r}")
    return TEMPLATES[template].format(colour=colour, shape=shape)


def class_id(shape: int | torch.Tensor, colour: int | torch.Tensor):
    """The combined label ``shape * 6 + colour`` in ``[0, 18)`` (ints or tensors)."""
    return shape * len(COLOURS) + colour


def class_prompt(label: int, template: int = 0) -> str:
    """The caption for a combined label from :func:`class_id`."""
    if not isinstance(label, int) or not 0 <= label < len(SHAPES) * len(COLOURS):
        raise ValueError(f"label must be an int in [0, {len(SHAPES) * len(COLOURS) - 1}], got {label!r}")
    return shape_prompt(SHAPES[label // len(COLOURS)], COLOURS[label % len(COLOURS)], template)


def make_shapes(n: int, size: int = 16, seed=0, *, half_size=(0.26, 0.34), jitter: float = 0.14,
                background=(0.05, 0.2), shape=None, colour=None) -> tuple[torch.Tensor, list[str], dict[str, torch.Tensor]]:
    """``n`` images ``(n, 3, size, size)`` in [0, 1], one caption each, and the labels.

    Labels: ``{"shape": (n,), "colour": (n,), "label": (n,)}`` int64 (indices into :data:`SHAPES`,
    :data:`COLOURS`, and the combined :func:`class_id`). The shape's half-size is drawn from
    ``half_size`` (fractions of the image) and its centre from ``0.5 ± jitter``. Pass ``shape``
    / ``colour`` (names) to fix them. Each background channel is drawn from ``background``
    (low, high); ``(0.1, 0.1)`` gives one flat dark grey. Captions use a random template from
    :data:`TEMPLATES`.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8 (pixels), got {size!r}")
    lo, hi = half_size
    if not 0 < lo <= hi < 0.5:
        raise ValueError(f"half_size must be (low, high) with 0 < low <= high < 0.5, got {half_size!r}")
    if not 0 <= jitter <= 0.5 - hi:
        raise ValueError(f"jitter must lie in [0, {0.5 - hi:.2f}] so the shape stays inside, got {jitter!r}")
    if not 0 <= background[0] <= background[1] <= 0.3:
        raise ValueError(f"background must be (low, high) with 0 <= low <= high <= 0.3 (dark), got {background!r}")
    for name, value, allowed in (("shape", shape, SHAPES), ("colour", colour, COLOURS)):
        if value is not None and value not in allowed:
            raise ValueError(f"{name} must be one of {allowed} or None, got {value!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    shapes = np.full(n, SHAPES.index(shape)) if shape else rng.integers(0, len(SHAPES), n)
    colours = np.full(n, COLOURS.index(colour)) if colour else rng.integers(0, len(COLOURS), n)
    templates = rng.integers(0, len(TEMPLATES), n)
    images, captions = np.empty((n, 3, size, size)), []
    for i in range(n):
        h = rng.uniform(lo, hi)
        cx, cy = rng.uniform(0.5 - jitter, 0.5 + jitter, 2)
        canvas = _Canvas(size, rng.uniform(background[0], background[1], 3))
        s = SHAPES[shapes[i]]
        if s == "circle":
            mask = canvas.ellipse(cx, cy, h, h)
        elif s == "square":
            mask = canvas.rect(cx - h * 0.85, cy - h * 0.85, cx + h * 0.85, cy + h * 0.85)
        else:
            mask = canvas.triangle(cx, cy, h)
        canvas.paint(mask, np.array(SCENE_COLOURS[COLOURS[colours[i]]]) / 255)
        images[i] = canvas.image()
        captions.append(shape_prompt(s, COLOURS[colours[i]], int(templates[i])))
    labels = {"shape": torch.from_numpy(shapes.astype(np.int64)), "colour": torch.from_numpy(colours.astype(np.int64))}
    labels["label"] = class_id(labels["shape"], labels["colour"])
    return torch.from_numpy(images).float().clamp_(0, 1), captions, labels
