"""Complete models built from the blocks in :mod:`genai_helpers.transformer`."""
from .transformer_lm import TransformerLM, TransformerLMConfig  # noqa: F401
