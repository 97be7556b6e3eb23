"""Offline data sources (each with an install or download path for readers elsewhere)."""
from .text import (FORTUNE_CATEGORIES, WordTokenizer, find_fortunes_dir, load_fortunes,  # noqa: F401
                   split_documents, window_batch_fn)
from .images import FASHION_CLASSES, load_fashion_mnist  # noqa: F401,E402
from .procedural import FACE_ATTRIBUTES, make_faces, make_scenes, scene_captions  # noqa: F401,E402

__all__ = ["FORTUNE_CATEGORIES", "WordTokenizer", "find_fortunes_dir", "load_fortunes", "split_documents",
           "window_batch_fn", "FASHION_CLASSES", "load_fashion_mnist", "FACE_ATTRIBUTES", "make_faces",
           "make_scenes", "scene_captions"]
from .vqa import QUESTION_TYPES, VQASet, make_vqa, relation_word  # noqa: F401,E402  (chapter 10's questions)

__all__ += ["QUESTION_TYPES", "VQASet", "make_vqa", "relation_word"]
