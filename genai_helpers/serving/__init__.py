"""Serving and inference optimisation (chapter 09).

- :mod:`~genai_helpers.serving.workload`     Poisson request stream with prompt/output length distributions
- :mod:`~genai_helpers.serving.engine`       batched decoding with one KV-cache slot per request
- :mod:`~genai_helpers.serving.batching`     static vs continuous batching: throughput, TTFT, p50/p95/p99
- :mod:`~genai_helpers.serving.paged_kv`     paged KV cache: block allocator, block tables, fragmentation,
  prefix sharing with copy-on-write
- :mod:`~genai_helpers.serving.prefix_cache` automatic prefix caching of prompt blocks for the engine
- :mod:`~genai_helpers.serving.quantization` bf16, int8 dynamic, int8/int4 weight-only
- :mod:`~genai_helpers.serving.pruning`      magnitude pruning (global or per layer)
- :mod:`~genai_helpers.serving.distillation` knowledge distillation loss (KL on softened logits)
- :mod:`~genai_helpers.serving.speculative`  speculative decoding (draft + verify) with exact acceptance rule
- :mod:`~genai_helpers.serving.cost`         token cost formula; response cache, semantic cache, routing
"""
from .batching import ServeReport, measure_step_seconds, serve  # noqa: F401
from .cost import Price, replay_levers, token_cost  # noqa: F401
from .distillation import distillation_loss, distillation_loss_fn  # noqa: F401
from .engine import BatchEngine  # noqa: F401
from .paged_kv import BlockAllocator, PagedKVStore, compare_reservations  # noqa: F401
from .prefix_cache import PrefixKVCache  # noqa: F401
from .pruning import magnitude_prune, sparsity_of  # noqa: F401
from .quantization import quantize_int8_dynamic, quantize_weights, state_bytes, to_bf16  # noqa: F401
from .speculative import autoregressive_generate, speculative_generate  # noqa: F401
from .workload import Request, poisson_requests  # noqa: F401

__all__ = ["ServeReport", "measure_step_seconds", "serve", "Price", "replay_levers", "token_cost",
           "distillation_loss", "distillation_loss_fn", "BatchEngine", "BlockAllocator", "PagedKVStore",
           "compare_reservations", "PrefixKVCache", "magnitude_prune", "sparsity_of", "quantize_int8_dynamic", "quantize_weights",
           "state_bytes", "to_bf16", "autoregressive_generate", "speculative_generate", "Request",
           "poisson_requests"]
