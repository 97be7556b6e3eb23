"""Systems: what a chapter ships around its models. They import the layers below (primitives,
infrastructure, models) and nothing in the package imports them.

- :mod:`~genai_helpers.systems.smart_compose`  Smart Compose: triggering, cached beam search,
  filters, typing sessions (chapter 04; old path ``genai_helpers.compose``)
- :mod:`~genai_helpers.systems.chat_pipeline`  the chat assistant around an aligned model: safety
  filters, prompt enhancer, best-of-n, session memory (chapter 06; old path ``genai_helpers.chat_pipeline``)
- :mod:`~genai_helpers.systems.design`  capacity planning: one replica's throughput, DiT FLOPs, a day
  of load under an autoscaler, load balancing and failover (chapter 17)

The other systems are subpackages of their own, kept at their old paths:
:mod:`genai_helpers.rag` (the RAG assistant over this book, chapter 07), :mod:`genai_helpers.agents`
and :mod:`genai_helpers.guardrails` (chapter 08), :mod:`genai_helpers.serving` (chapter 09).
"""
__all__ = ["chat_pipeline", "design", "smart_compose"]
