"""genai_helpers: the training and inference code behind the book *Generative AI System Design*.

Organised by capability, not by chapter:

- :mod:`genai_helpers.runtime`     device (CUDA -> MPS -> CPU), seeding, smoke/full mode
- :mod:`genai_helpers.attention`   scaled dot-product and multi-head attention, masks (ch. 01)
- :mod:`genai_helpers.positional`  sinusoidal and learned positional encodings (ch. 01, 04)
- :mod:`genai_helpers.transformer` feed-forward, transformer block, mixture of experts (ch. 01)
- :mod:`genai_helpers.models`      complete models (a small transformer language model, ...)
- :mod:`genai_helpers.sampling`    greedy, temperature, top-k, top-p, repetition penalty, beam search (ch. 03)
- :mod:`genai_helpers.metrics`     text, classification, regression, ranking and A/B-test metrics (ch. 03)
- :mod:`genai_helpers.rag`         retrieval-augmented generation: ``build_book_index(...).search(q, k)`` (ch. 07)
- :mod:`genai_helpers.data`        offline data sources and tokenizers
- :mod:`genai_helpers.training`    the training loop every chapter uses
- :mod:`genai_helpers.checkpoint`  safetensors checkpoints written atomically
- :mod:`genai_helpers.memory`      activation bytes saved for backward, peak memory, step timing (ch. 02)
- :mod:`genai_helpers.distributed` gloo process groups from a notebook, ring/hierarchical all-reduce (ch. 02)
- :mod:`genai_helpers.parallelism` data, tensor and pipeline parallelism, ZeRO accounting, FSDP (ch. 02)
- :mod:`genai_helpers.estimates`   back-of-envelope parameters, memory, FLOPs, GPU-days and cost (ch. 02)
- :mod:`genai_helpers.viz`         attention heatmaps, image grids, live plots, sweep players
- :mod:`genai_helpers.notebook`    run metadata, `record_result`, the stale-output check for chapters
"""
__version__ = "0.1.0"

from .runtime import get_device, is_smoke, pick, run_mode, seed_everything  # noqa: E402,F401


def __getattr__(name):
    # `from genai_helpers import record_result` (chapters record their headline numbers), imported
    # lazily so that `python -m genai_helpers.notebook` does not import its own module twice.
    if name == "record_result":
        from .notebook import record_result
        return record_result
    raise AttributeError(f"module 'genai_helpers' has no attribute {name!r}")
