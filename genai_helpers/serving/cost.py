"""What serving costs, and the levers that lower it (chapter 09).

The token cost formula: a request with ``p`` prompt tokens and ``o`` output tokens costs

    cost = p * price_in / 1e6 + o * price_out / 1e6          (prices per million tokens)

Output tokens are priced higher (often 3-5x) because each one is a sequential decoding step, while
the prompt is processed in one parallel pass. Three levers cut it without touching the model:

- a **response cache**: an identical request (same normalised text) is answered from storage;
- a **semantic cache**: a *similar* request is answered from storage (chapter 08's
  :class:`~genai_helpers.agents.cache.SemanticCache`) — more hits, some of them wrong;
- **model routing**: easy requests go to a cheaper model, hard ones to the big one.

:func:`replay_levers` measures them on a labelled query stream and returns cost, hit rates and
wrong answers for each configuration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

import numpy as np

__all__ = ["Price", "token_cost", "monthly_cost", "normalise_query", "LeverResult", "replay_levers"]


@dataclass(frozen=True)
class Price:
    """Prices in currency units per million tokens."""
    input_per_m: float
    output_per_m: float

    def __post_init__(self):
        if self.input_per_m < 0 or self.output_per_m < 0:
            raise ValueError(f"prices must be >= 0, got {self.input_per_m}, {self.output_per_m}")


def token_cost(prompt_tokens, output_tokens, price: Price):
    """Cost of requests with the given token counts (scalars or arrays broadcast together)."""
    p, o = np.asarray(prompt_tokens, dtype=float), np.asarray(output_tokens, dtype=float)
    if (p < 0).any() or (o < 0).any():
        raise ValueError("prompt_tokens and output_tokens must be >= 0")
    out = (p * price.input_per_m + o * price.output_per_m) / 1e6
    return float(out) if out.ndim == 0 else out


def monthly_cost(requests_per_day: float, prompt_tokens: float, output_tokens: float, price: Price,
                 days: int = 30) -> float:
    """``requests_per_day * days`` requests of average size at ``price``."""
    if requests_per_day < 0:
        raise ValueError(f"requests_per_day must be >= 0, got {requests_per_day}")
    return requests_per_day * days * token_cost(prompt_tokens, output_tokens, price)


def normalise_query(text: str) -> str:
    """Lower-case, collapse whitespace, drop trailing punctuation: the response cache's key."""
    return " ".join(text.lower().split()).rstrip("?!. ")


@dataclass
class LeverResult:
    name: str
    requests: int
    cost: float
    hits: int = 0
    wrong_hits: int = 0
    routed_small: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    def as_row(self, baseline: float) -> dict:
        return {"lever": self.name, "cost": self.cost, "saving": 1 - self.cost / baseline if baseline else 0.0,
                "hit_rate": self.hit_rate, "wrong_hits": self.wrong_hits, "routed_small": self.routed_small}


def replay_levers(queries: Sequence[str], intents: Sequence[Hashable], *, prompt_tokens: Sequence[int],
                  output_tokens: Sequence[int], big: Price, small: Price | None = None,
                  route_small: Sequence[bool] | None = None, embed: Callable | None = None,
                  threshold: float = 0.85, capacity: int = 256, embed_cost: float = 0.0) -> list[LeverResult]:
    """Replay a query stream under each lever and return one :class:`LeverResult` per setting:
    ``no cache``, ``response cache``, ``semantic cache`` (if ``embed``), ``routing`` (if ``small`` and
    ``route_small``), and ``semantic cache + routing`` when both are available.

    A cache hit costs ``embed_cost`` (semantic) or nothing (exact); a miss pays the model that
    answers it. A *wrong hit* is a hit whose stored query had a different intent.
    """
    n = len(queries)
    if not (len(intents) == len(prompt_tokens) == len(output_tokens) == n):
        raise ValueError("queries, intents, prompt_tokens and output_tokens must have the same length")
    if route_small is not None and len(route_small) != n:
        raise ValueError("route_small must have one flag per query")
    from ..agents.cache import SemanticCache

    def cost_of(i: int, use_small: bool) -> float:
        return token_cost(prompt_tokens[i], output_tokens[i], small if use_small else big)

    results = []
    results.append(LeverResult("no cache", n, sum(cost_of(i, False) for i in range(n))))
    store: dict[str, Hashable] = {}
    r = LeverResult("response cache", n, 0.0)
    for i, q in enumerate(queries):
        key = normalise_query(q)
        if key in store:
            r.hits += 1
            r.wrong_hits += store[key] != intents[i]
        else:
            store[key] = intents[i]
            r.cost += cost_of(i, False)
    results.append(r)
    can_route = small is not None and route_small is not None
    configs = []
    if embed is not None:
        configs.append(("semantic cache", True, False))
    if can_route:
        configs.append(("routing", False, True))
    if embed is not None and can_route:
        configs.append(("semantic cache + routing", True, True))
    vectors = embed(list(queries)) if embed is not None else None
    for name, use_cache, use_routing in configs:
        r = LeverResult(name, n, 0.0)
        cache = SemanticCache(embed, threshold=threshold, capacity=capacity) if use_cache else None
        for i, q in enumerate(queries):
            if cache is not None:
                answer, _, _ = cache.lookup(q, vectors[i])
                r.cost += embed_cost
                if answer is not None:
                    r.hits += 1
                    r.wrong_hits += answer != intents[i]
                    continue
            to_small = bool(use_routing and route_small[i])
            r.routed_small += to_small
            r.cost += cost_of(i, to_small)
            if cache is not None:
                cache.put(q, intents[i], vectors[i])
        results.append(r)
    return results
