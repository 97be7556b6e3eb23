"""Complete models built from the blocks in :mod:`genai_helpers.transformer`, and small text classifiers."""
from .ngram_classifier import HashedNgramClassifier, ngram_features  # noqa: F401
from .transformer_lm import TransformerLM, TransformerLMConfig  # noqa: F401
