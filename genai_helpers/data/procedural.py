"""Procedural images the book generates itself: cartoon faces and captioned shape scenes.

No download, no licence question, and every image comes with its ground truth — the face's
attributes, the scene's objects — so a chapter can *measure* whether a generator got them right
(chapters 10-15). Images are drawn at 4× resolution and averaged down, so edges are anti-aliased.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SUPERSAMPLE", "FACE_ATTRIBUTES", "SCENE_SHAPES", "SCENE_COLOURS", "SCENE_SIZES", "SCENE_RELATIONS",
           "make_faces", "SceneObject", "scene_captions", "make_scenes"]

SUPERSAMPLE = 4

#: The attributes of a procedural face and the values each can take (chapter 11's labels).
#: :meta hide-value:
FACE_ATTRIBUTES = {
    "face_shape": ("round", "oval", "square"),
    "skin_tone": ("very light", "light", "medium", "tan", "dark"),
    "eyes": ("open", "closed", "wide"),
    "mouth": ("smile", "neutral", "frown", "open"),
    "hair": ("none", "short", "long"),
    "hair_colour": ("black", "brown", "blond", "red"),
    "glasses": ("no", "yes"),
    "age": ("young", "old"),
}
_SKIN = np.array([[255, 224, 196], [241, 194, 150], [208, 153, 108], [168, 112, 72], [105, 68, 44]]) / 255
_HAIR = np.array([[30, 25, 25], [110, 70, 40], [230, 200, 110], [190, 80, 40]]) / 255
_GREY = np.array([200, 200, 200]) / 255

SCENE_SHAPES = ("circle", "square", "triangle")
SCENE_COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
                 "yellow": (240, 210, 40), "purple": (150, 60, 190), "white": (245, 245, 245)}
SCENE_SIZES = {"small": 0.14, "large": 0.24}          # half-size as a fraction of the image
SCENE_RELATIONS = ("left of", "right of", "above", "below")


def _check(n: int, size: int, generator) -> np.random.Generator:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int >= 16 (pixels), got {size!r}")
    return generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)


class _Canvas:
    """An RGB canvas on the unit square, drawn at ``size * SUPERSAMPLE`` and averaged down."""

    def __init__(self, size: int, background):
        n = size * SUPERSAMPLE
        self.size = size
        self.y, self.x = (np.mgrid[0:n, 0:n] + 0.5) / n
        self.rgb = np.ones((n, n, 3)) * np.asarray(background, dtype=float)

    def paint(self, mask, colour):
        self.rgb[mask] = colour

    def ellipse(self, cx, cy, rx, ry, power=2.0):
        return (np.abs(self.x - cx) / rx) ** power + (np.abs(self.y - cy) / ry) ** power <= 1

    def band(self, cx, cy, rx, ry, thickness, lower=True):
        """An arc: the lower (smile) or upper (frown) half of an elliptical ring."""
        r = np.sqrt(((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2)
        half = self.y >= cy if lower else self.y <= cy
        return (np.abs(r - 1) <= thickness) & half

    def rect(self, x0, y0, x1, y1):
        return (self.x >= x0) & (self.x <= x1) & (self.y >= y0) & (self.y <= y1)

    def triangle(self, cx, cy, half):
        top, bottom = cy - half, cy + half
        t = (self.y - top) / (bottom - top)                       # 0 at the apex, 1 at the base
        return (t >= 0) & (t <= 1) & (np.abs(self.x - cx) <= t * half)

    def image(self) -> np.ndarray:
        s, f = self.size, SUPERSAMPLE
        return self.rgb.reshape(s, f, s, f, 3).mean((1, 3)).transpose(2, 0, 1)      # (3, H, W)


def _draw_face(c: _Canvas, a: dict, rng: np.random.Generator) -> None:
    skin = _SKIN[a["skin_tone"]] * rng.uniform(0.95, 1.05)
    # Old hair is greyed only halfway, so its colour still shows; eyebrows carry the colour on bald faces.
    hair = 0.5 * (_HAIR[a["hair_colour"]] + _GREY) if a["age"] == 1 else _HAIR[a["hair_colour"]]
    cx, cy = 0.5 + rng.uniform(-0.03, 0.03), 0.54 + rng.uniform(-0.03, 0.03)
    rx, ry, power = {0: (0.31, 0.31, 2.0), 1: (0.26, 0.35, 2.0), 2: (0.29, 0.32, 4.0)}[a["face_shape"]]
    if a["hair"] == 2:                                            # long hair falls behind the face
        c.paint(c.ellipse(cx, cy + 0.05, rx + 0.07, ry + 0.08) & (c.y > cy - ry), hair)
    c.paint(c.ellipse(cx, cy, rx, ry, power), skin)
    if a["hair"] >= 1:                                            # hair cap over the forehead
        cap = c.ellipse(cx, cy - 0.05, rx + 0.03, ry + 0.02) & (c.y < cy - ry * 0.45)
        c.paint(cap, hair)
    if a["age"] == 1:                                             # forehead lines
        for dy in (-0.16, -0.12):
            c.paint(c.band(cx, cy + dy + 0.08, rx * 0.45, 0.08, 0.08, lower=False) & (c.y > cy - ry * 0.45), skin * 0.7)
    ex, ey = rx * 0.42, cy - ry * 0.12
    for side in (-1, 1):
        x0 = cx + side * ex
        if a["eyes"] == 0:
            c.paint(c.ellipse(x0, ey, 0.035, 0.035), (0.1, 0.1, 0.1))
        elif a["eyes"] == 1:
            c.paint(c.rect(x0 - 0.045, ey - 0.008, x0 + 0.045, ey + 0.008), (0.15, 0.1, 0.1))
        else:
            c.paint(c.ellipse(x0, ey, 0.06, 0.05), (1.0, 1.0, 1.0))
            c.paint(c.ellipse(x0, ey, 0.03, 0.03), (0.1, 0.1, 0.1))
        c.paint(c.rect(x0 - 0.06, ey - 0.105, x0 + 0.06, ey - 0.07), hair)      # eyebrow, in the hair colour
        if a["glasses"]:
            ring = c.ellipse(x0, ey, 0.085, 0.075) & ~c.ellipse(x0, ey, 0.065, 0.055)
            c.paint(ring, (0.1, 0.1, 0.1))
    if a["glasses"]:
        c.paint(c.rect(cx - ex + 0.085, ey - 0.007, cx + ex - 0.085, ey + 0.007), (0.1, 0.1, 0.1))
    my = cy + ry * 0.45
    lips = (0.55, 0.15, 0.15)
    if a["mouth"] == 0:
        c.paint(c.band(cx, my - 0.06, 0.13, 0.08, 0.22, lower=True), lips)
    elif a["mouth"] == 1:
        c.paint(c.rect(cx - 0.1, my - 0.01, cx + 0.1, my + 0.01), lips)
    elif a["mouth"] == 2:
        c.paint(c.band(cx, my + 0.05, 0.12, 0.07, 0.22, lower=False), lips)
    else:
        c.paint(c.ellipse(cx, my, 0.07, 0.05), (0.3, 0.05, 0.05))


def make_faces(n: int, size: int = 32, seed=0, **fixed) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``n`` cartoon faces ``(n, 3, size, size)`` in [0, 1] and their attributes.

    Attributes are drawn uniformly from :data:`FACE_ATTRIBUTES` (returned as int64 tensors of
    indices into those tuples); pass ``glasses=1`` etc. to fix one for every face.
    """
    rng = _check(n, size, seed)
    for name, value in fixed.items():
        if name not in FACE_ATTRIBUTES:
            raise ValueError(f"unknown face attribute {name!r}; choose from {sorted(FACE_ATTRIBUTES)}")
        if not 0 <= value < len(FACE_ATTRIBUTES[name]):
            raise ValueError(f"{name} must be in [0, {len(FACE_ATTRIBUTES[name]) - 1}], got {value}")
    attrs = {k: np.full(n, fixed[k]) if k in fixed else rng.integers(0, len(v), n) for k, v in FACE_ATTRIBUTES.items()}
    images = np.empty((n, 3, size, size))
    for i in range(n):
        background = rng.uniform(0.55, 0.95, 3)
        canvas = _Canvas(size, background)
        _draw_face(canvas, {k: int(v[i]) for k, v in attrs.items()}, rng)
        images[i] = canvas.image()
    return torch.from_numpy(images).float().clamp_(0, 1), {k: torch.from_numpy(v.astype(np.int64)) for k, v in attrs.items()}


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    x: float          # centre, as a fraction of the width (0 = left)
    y: float          # centre, as a fraction of the height (0 = top)

    def phrase(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"


def _relation(a: SceneObject, b: SceneObject) -> str:
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


_INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def scene_captions(objects: list[SceneObject]) -> list[str]:
    """Several reference captions for a scene of one or two objects (all true of the image)."""
    if len(objects) == 1:
        o = objects[0]
        return [f"a {o.phrase()}", f"a {o.phrase()} on a dark background", f"there is a {o.phrase()}",
                f"one {o.phrase()}"]
    a, b = objects
    rel = _relation(a, b)
    return [f"a {a.phrase()} {rel} a {b.phrase()}",
            f"a {b.phrase()} {_INVERSE[rel]} a {a.phrase()}",
            f"there is a {a.phrase()} {rel} a {b.phrase()}",
            f"a {a.colour} {a.shape} and a {b.colour} {b.shape}"]


def make_scenes(n: int, size: int = 32, seed=0, max_objects: int = 2) -> tuple[torch.Tensor, list[list[str]], list[list[SceneObject]]]:
    """``n`` scenes ``(n, 3, size, size)`` in [0, 1], their reference captions and their objects.

    Each scene has 1..``max_objects`` (at most 2) non-overlapping shapes of distinct colours on a
    dark background; with two, their spatial relation is unambiguous (offset mostly along one axis).
    """
    rng = _check(n, size, seed)
    if max_objects not in (1, 2):
        raise ValueError(f"max_objects must be 1 or 2, got {max_objects!r}")
    images, captions, scenes = np.empty((n, 3, size, size)), [], []
    colours = list(SCENE_COLOURS)
    for i in range(n):
        k = int(rng.integers(1, max_objects + 1))
        picked = rng.choice(len(colours), size=k, replace=False)
        if k == 1:
            sz = str(rng.choice(list(SCENE_SIZES)))
            h = SCENE_SIZES[sz]
            objs = [SceneObject(str(rng.choice(SCENE_SHAPES)), colours[picked[0]], sz,
                                float(rng.uniform(h + 0.02, 1 - h - 0.02)), float(rng.uniform(h + 0.02, 1 - h - 0.02)))]
        else:
            sizes = [str(s) for s in rng.choice(list(SCENE_SIZES), size=2)]
            horizontal = bool(rng.integers(0, 2))
            along = [0.25, 0.75] if rng.integers(0, 2) else [0.75, 0.25]
            across = rng.uniform(0.38, 0.62, 2)
            objs = []
            for j in range(2):
                x, y = (along[j], across[j]) if horizontal else (across[j], along[j])
                objs.append(SceneObject(str(rng.choice(SCENE_SHAPES)), colours[picked[j]], sizes[j], float(x), float(y)))
        canvas = _Canvas(size, rng.uniform(0.05, 0.2, 3))
        for o in objs:
            h = SCENE_SIZES[o.size]
            mask = {"circle": lambda: canvas.ellipse(o.x, o.y, h, h),
                    "square": lambda: canvas.rect(o.x - h * 0.85, o.y - h * 0.85, o.x + h * 0.85, o.y + h * 0.85),
                    "triangle": lambda: canvas.triangle(o.x, o.y, h)}[o.shape]()
            canvas.paint(mask, np.array(SCENE_COLOURS[o.colour]) / 255)
        images[i] = canvas.image()
        captions.append(scene_captions(objs))
        scenes.append(objs)
    return torch.from_numpy(images).float().clamp_(0, 1), captions, scenes
