"""Moving shapes: the simplest captioned *video* data set (chapter 15).

One circle, square or triangle in one of six colours glides in a straight line across a dark
background, e.g. ``"a red circle moving right quickly"``. Every clip comes with its ground truth
(shape, colour, direction, speed), so a chapter can *measure* whether a generated clip moves the
way its prompt asked, not only whether its frames look right. The drawing reuses the anti-aliased
canvas of :mod:`genai_helpers.data.procedural` and the shapes/colours of
:mod:`genai_helpers.data.shapes`.

Clips are ``(n, frames, 3, size, size)`` floats in [0, 1] — frames on axis 1. The shape moves
``SPEEDS[speed]`` of the image width per frame; its start is drawn so that the whole path stays
inside the image.
"""
from __future__ import annotations

import numpy as np
import torch

from .procedural import SCENE_COLOURS, _Canvas
from .shapes import COLOURS, SHAPES

__all__ = ["DIRECTIONS", "DIRECTION_STEPS", "SPEEDS", "SPEED_NAMES", "ATTRIBUTES", "video_prompt", "parse_video_prompt",
           "make_moving_shapes", "make_clips_for_captions", "label_matrix"]

DIRECTIONS = ("right", "left", "down", "up")
#: ``(dx, dy)`` per frame in image coordinates: x grows to the right (column), y grows *downwards*
#: (row index, as ``imshow`` draws it), so "down" is ``+y`` and "up" is ``-y``.
DIRECTION_STEPS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}
_STEP = DIRECTION_STEPS
SPEEDS = {"slowly": 0.03, "quickly": 0.06}                                     # fraction of the width per frame
SPEED_NAMES = tuple(SPEEDS)
#: The attributes a clip's prompt names, the columns of :func:`label_matrix`.
ATTRIBUTES = ("shape", "colour", "direction", "speed")


def video_prompt(shape: str, colour: str, direction: str, speed: str | None = None) -> str:
    """``"a {colour} {shape} moving {direction}[ {speed}]"``; names from SHAPES, COLOURS, DIRECTIONS, SPEEDS."""
    for name, value, allowed in (("shape", shape, SHAPES), ("colour", colour, COLOURS),
                                 ("direction", direction, DIRECTIONS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if speed is not None and speed not in SPEEDS:
        raise ValueError(f"speed must be one of {SPEED_NAMES} or None, got {speed!r}")
    text = f"a {colour} {shape} moving {direction}"
    return text if speed is None else f"{text} {speed}"


def parse_video_prompt(prompt: str) -> dict:
    """Inverse of :func:`video_prompt`: ``{"shape", "colour", "direction", "speed"}`` (speed may be None)."""
    words = prompt.split() if isinstance(prompt, str) else []
    if len(words) not in (5, 6) or words[0] != "a" or words[3] != "moving":
        raise ValueError(f"prompt must look like 'a red circle moving right [quickly]', got {prompt!r}")
    out = {"colour": words[1], "shape": words[2], "direction": words[4], "speed": words[5] if len(words) == 6 else None}
    video_prompt(out["shape"], out["colour"], out["direction"], out["speed"])     # validates the names
    return out


def _draw(canvas: _Canvas, shape: str, cx: float, cy: float, h: float):
    if shape == "circle":
        return canvas.ellipse(cx, cy, h, h)
    if shape == "square":
        return canvas.rect(cx - h * 0.85, cy - h * 0.85, cx + h * 0.85, cy + h * 0.85)
    return canvas.triangle(cx, cy, h)


def make_moving_shapes(n: int, frames: int = 8, size: int = 16, seed=0, *, half_size=(0.2, 0.24),
                       speeds=SPEED_NAMES, background=(0.05, 0.15), with_speed: bool = True,
                       shape=None, colour=None, direction=None, speed=None):
    """``n`` clips, one caption each, and their labels.

    Returns ``(videos, captions, labels)``: ``videos`` float ``(n, frames, 3, size, size)`` in
    [0, 1]; ``captions`` a list of ``n`` strings; ``labels`` a dict of int64 ``(n,)`` tensors
    ``shape``, ``colour``, ``direction``, ``speed`` (indices into SHAPES, COLOURS, DIRECTIONS,
    SPEED_NAMES) and ``start`` float ``(n, 2)``, the shape's centre ``(x, y)`` in the first frame
    (fractions of the width).

    ``speeds`` lists the speed names to draw from; ``with_speed=False`` leaves the speed out of the
    captions. Pass ``shape``/``colour``/``direction``/``speed`` (names) to fix them. ``seed`` is
    an int or a ``numpy.random.Generator``; the same seed gives the same clips.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 2:
        raise ValueError(f"frames must be an int >= 2, got {frames!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise ValueError(f"size must be an int >= 8 (pixels), got {size!r}")
    lo, hi = half_size
    if not 0 < lo <= hi < 0.5:
        raise ValueError(f"half_size must be (low, high) with 0 < low <= high < 0.5, got {half_size!r}")
    speeds = tuple(speeds)
    if not speeds or any(s not in SPEEDS for s in speeds):
        raise ValueError(f"speeds must be a non-empty subset of {SPEED_NAMES}, got {speeds!r}")
    longest = max(SPEEDS[s] for s in speeds) * (frames - 1)
    if longest > 1 - 2 * hi:
        raise ValueError(f"frames={frames} at speed {max(speeds, key=SPEEDS.get)!r} travel {longest:.2f} of the image, "
                         f"more than the {1 - 2 * hi:.2f} that fits: use fewer frames or a smaller half_size")
    if not 0 <= background[0] <= background[1] <= 0.3:
        raise ValueError(f"background must be (low, high) with 0 <= low <= high <= 0.3 (dark), got {background!r}")
    for name, value, allowed in (("shape", shape, SHAPES), ("colour", colour, COLOURS),
                                 ("direction", direction, DIRECTIONS), ("speed", speed, speeds)):
        if value is not None and value not in allowed:
            raise ValueError(f"{name} must be one of {allowed} or None, got {value!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def draw_labels(value, allowed):
        return np.full(n, allowed.index(value)) if value is not None else rng.integers(0, len(allowed), n)

    shapes, colours = draw_labels(shape, SHAPES), draw_labels(colour, COLOURS)
    dirs = draw_labels(direction, DIRECTIONS)
    speed_ids = np.array([SPEED_NAMES.index(speeds[i]) for i in draw_labels(speed, speeds)]) if speed is None \
        else np.full(n, SPEED_NAMES.index(speed))
    videos = np.empty((n, frames, 3, size, size))
    starts, captions = np.empty((n, 2)), []
    for i in range(n):
        h = rng.uniform(lo, hi)
        dx, dy = _STEP[DIRECTIONS[dirs[i]]]
        v = SPEEDS[SPEED_NAMES[speed_ids[i]]]
        travel = v * (frames - 1)
        # along the motion: start so the whole path fits; across it: anywhere the shape fits
        along = rng.uniform(h, 1 - h - travel)
        across = rng.uniform(h, 1 - h)
        x0 = (along if dx > 0 else 1 - along) if dx else across
        y0 = (along if dy > 0 else 1 - along) if dy else across
        bg = rng.uniform(background[0], background[1], 3)
        rgb = np.array(SCENE_COLOURS[COLOURS[colours[i]]]) / 255
        for f in range(frames):
            canvas = _Canvas(size, bg)
            canvas.paint(_draw(canvas, SHAPES[shapes[i]], x0 + dx * v * f, y0 + dy * v * f, h), rgb)
            videos[i, f] = canvas.image()
        starts[i] = (x0, y0)
        captions.append(video_prompt(SHAPES[shapes[i]], COLOURS[colours[i]], DIRECTIONS[dirs[i]],
                                     SPEED_NAMES[speed_ids[i]] if with_speed else None))
    labels = {"shape": torch.from_numpy(shapes.astype(np.int64)), "colour": torch.from_numpy(colours.astype(np.int64)),
              "direction": torch.from_numpy(dirs.astype(np.int64)), "speed": torch.from_numpy(speed_ids.astype(np.int64)),
              "start": torch.from_numpy(starts).float()}
    return torch.from_numpy(videos).float().clamp_(0, 1), captions, labels


def make_clips_for_captions(captions, frames: int = 8, size: int = 16, seed=0, **kwargs):
    """One fresh clip per caption, drawn to say exactly what the caption says (chapter 15's
    caption-matched real sets): ``make_moving_shapes(1, shape=..., colour=..., direction=...,
    speed=...)`` per caption, from one random stream. A caption without a speed gets a random one.

    Returns ``(videos, captions, labels)`` as :func:`make_moving_shapes` does, in the order of
    ``captions``; ``kwargs`` (``half_size``, ``background``, ``speeds``) are passed on.
    """
    if isinstance(captions, str) or not hasattr(captions, "__len__") or len(captions) == 0:
        raise ValueError("captions must be a non-empty list of prompts like 'a red circle moving right quickly'")
    bad = [k for k in kwargs if k not in ("half_size", "background", "speeds")]
    if bad:
        raise TypeError(f"make_clips_for_captions got unexpected keyword(s) {bad}; allowed: half_size, background, speeds")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    parts = [make_moving_shapes(1, frames, size, rng, with_speed=parse_video_prompt(c)["speed"] is not None,
                                **{k: v for k, v in parse_video_prompt(c).items() if v is not None}, **kwargs)
             for c in captions]
    videos = torch.cat([p[0] for p in parts])
    labels = {k: torch.cat([p[2][k] for p in parts]) for k in parts[0][2]}
    return videos, [p[1][0] for p in parts], labels


def label_matrix(labels: dict) -> torch.Tensor:
    """Stack the four categorical labels into ``(n, 4)`` int64 columns in :data:`ATTRIBUTES` order."""
    missing = [a for a in ATTRIBUTES if a not in labels]
    if missing:
        raise ValueError(f"labels lacks {missing}")
    return torch.stack([labels[a] for a in ATTRIBUTES], dim=1)
