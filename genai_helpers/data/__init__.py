"""Offline data sources (each with an install or download path for readers elsewhere)."""
from .text import (FORTUNE_CATEGORIES, WordTokenizer, find_fortunes_dir, load_fortunes,  # noqa: F401
                   split_documents, window_batch_fn)
