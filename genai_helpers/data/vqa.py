"""Questions about procedural scenes, generated from their objects (chapter 10, visual question answering).

:func:`make_vqa` asks, for each scene of :func:`genai_helpers.data.procedural.make_scenes`, up to
three questions whose answers are one word read off the scene's objects:

- ``colour``: *what colour is the circle* (asked only about a shape that occurs once in the scene),
  answer one of the six scene colours;
- ``shape``: *what shape is the red object* (colours are distinct within a scene), answer circle,
  square or triangle;
- ``position``: *where is the red circle from the blue square* (two-object scenes), answer left,
  right, above or below, by the rule that writes the captions' relation words.

A question names only what the image must then be read for, so a model that never sees the image
can do no better than the answer frequencies of its question type.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .procedural import SceneObject

#: The question types of :func:`make_vqa`, in the order they are asked.
QUESTION_TYPES = ("colour", "shape", "position")


def relation_word(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` lies relative to ``b``: ``"left"``, ``"right"``, ``"above"`` or ``"below"``
    (the larger of the two offsets decides, as in the captions of ``make_scenes``)."""
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        return "left" if dx > 0 else "right"
    return "above" if dy > 0 else "below"


@dataclass
class VQASet:
    """Parallel lists: ``questions[i]`` about scene ``scene[i]`` has answer ``answers[i]`` and type ``types[i]``."""
    questions: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    scene: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.questions)


def make_vqa(objects: list[list[SceneObject]], seed: int = 0) -> VQASet:
    """Questions for every scene in ``objects`` (the third output of ``make_scenes``).

    One question of each type that applies (:data:`QUESTION_TYPES`), about an object drawn with
    ``seed``; a scene gives 1 to 3 questions. Raises ``TypeError`` on anything but a list of
    lists of :class:`~genai_helpers.data.procedural.SceneObject`.
    """
    if not isinstance(objects, (list, tuple)) or not all(
            isinstance(s, (list, tuple)) and s and all(isinstance(o, SceneObject) for o in s) for s in objects):
        raise TypeError("objects must be a list of non-empty lists of SceneObject (make_scenes' third output)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    out = VQASet()

    def add(q, a, t, i):
        out.questions.append(q); out.answers.append(a); out.types.append(t); out.scene.append(i)

    for i, objs in enumerate(objects):
        shapes = [o.shape for o in objs]
        unique = [o for o in objs if shapes.count(o.shape) == 1]
        if unique:
            o = unique[int(rng.integers(len(unique)))]
            add(f"what colour is the {o.shape}", o.colour, "colour", i)
        o = objs[int(rng.integers(len(objs)))]
        add(f"what shape is the {o.colour} object", o.shape, "shape", i)
        if len(objs) == 2:
            a, b = (objs[0], objs[1]) if rng.integers(2) else (objs[1], objs[0])
            add(f"where is the {a.colour} {a.shape} from the {b.colour} {b.shape}", relation_word(a, b), "position", i)
    return out


__all__ = ["QUESTION_TYPES", "VQASet", "make_vqa", "relation_word"]
