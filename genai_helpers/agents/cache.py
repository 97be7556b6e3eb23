"""A semantic cache: answer a query from a stored answer when a *similar* query was seen
(chapter 08).

A lookup embeds the query and finds the most similar cached query; if its cosine similarity is
at least ``threshold`` it is a hit and the stored answer is returned without calling the model.
The cache holds at most ``capacity`` entries and evicts the least recently used one (an
``OrderedDict`` moved to the end on every hit). A threshold too low returns answers to
*different* questions (false hits); too high and paraphrases miss. :func:`replay_stream`
measures both on a labelled query stream.

**Per-user scope.** An answer can hold one user's data ("your order ships Monday"), so every
entry belongs to the ``user`` who caused it and a lookup only sees the asking user's entries —
plus entries stored with ``public=True`` (answers with nothing personal in them, such as
"what is beam search"). A hit never crosses users otherwise.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

import numpy as np

__all__ = ["CacheStats", "SemanticCache", "ReplayResult", "replay_stream", "load_paraphrase_set",
           "make_query_stream"]


@dataclass
class CacheStats:
    lookups: int = 0
    hits: int = 0
    evictions: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


class SemanticCache:
    """``SemanticCache(embed, threshold=0.85, capacity=256)``; ``threshold`` in [-1, 1].

    ``put(query, answer, user=..., public=...)`` and ``lookup(query, user=...)``: see the module
    docstring for the per-user scope (``user=None`` is one shared anonymous scope).
    """

    def __init__(self, embed: Callable, *, threshold: float = 0.85, capacity: int = 256):
        if not callable(embed):
            raise TypeError("embed must be callable: embed(list[str]) -> (N, D) array")
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [-1, 1], got {threshold}")
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity}")
        self.embed, self.threshold, self.capacity = embed, float(threshold), capacity
        self._entries: OrderedDict[int, tuple[str, np.ndarray, object, str | None, bool]] = OrderedDict()
        self._next = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _check_user(user) -> None:
        if user is not None and (not isinstance(user, str) or not user):
            raise ValueError(f"user must be a non-empty str or None, got {user!r}")

    def _best(self, vec: np.ndarray, user: str | None) -> tuple[int | None, float]:
        keys = [k for k, e in self._entries.items() if e[4] or e[3] == user]
        if not keys:
            return None, -1.0
        sims = np.stack([self._entries[k][1] for k in keys]) @ vec
        i = int(np.argmax(sims))
        return keys[i], float(sims[i])

    def lookup(self, query: str, vec: np.ndarray | None = None, *, user: str | None = None):
        """``(answer, matched_query, similarity)`` on a hit, ``(None, matched_query_or_None, similarity)``
        on a miss. Only ``user``'s own entries and public ones are searched. Pass ``vec`` to reuse an
        embedding already computed."""
        self._check_user(user)
        vec = self.embed([query])[0] if vec is None else vec
        self.stats.lookups += 1
        key, sim = self._best(vec, user)
        if key is not None and sim >= self.threshold:
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return self._entries[key][2], self._entries[key][0], sim
        return None, (self._entries[key][0] if key is not None else None), sim

    def put(self, query: str, answer, vec: np.ndarray | None = None, *, user: str | None = None,
            public: bool = False) -> None:
        """Store ``answer`` for ``query`` in ``user``'s scope (every user's, if ``public``); evicts the
        least recently used entry when full."""
        self._check_user(user)
        if not isinstance(public, bool):
            raise TypeError(f"public must be a bool, got {type(public).__name__}")
        vec = self.embed([query])[0] if vec is None else vec
        if len(self._entries) >= self.capacity:
            self._entries.popitem(last=False)
            self.stats.evictions += 1
        self._entries[self._next] = (query, np.asarray(vec, dtype=np.float32), answer, user, public)
        self._next += 1

    def cached_queries(self) -> list[str]:
        """Cached queries from least to most recently used."""
        return [e[0] for e in self._entries.values()]


@dataclass
class ReplayResult:
    hits: int = 0
    false_hits: int = 0          # hits whose cached query had a different intent
    cross_user_hits: int = 0     # hits served from an entry another user stored
    misses: int = 0
    seconds_with_cache: float = 0.0
    seconds_without_cache: float = 0.0
    evictions: int = 0
    similarities: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        return self.hits / self.n if self.n else 0.0

    @property
    def false_hit_rate(self) -> float:
        """False hits as a fraction of all hits (how often a cached answer is wrong)."""
        return self.false_hits / self.hits if self.hits else 0.0


def replay_stream(queries: Sequence[str], intents: Sequence[Hashable], embed: Callable, backend: Callable[[str], object],
                  *, threshold: float, capacity: int, vectors: np.ndarray | None = None,
                  backend_seconds: float | None = None, embed_seconds: float | None = None,
                  users: Sequence[str] | None = None, public: bool = False) -> ReplayResult:
    """Replay ``queries`` (with their ground-truth ``intents``) through a fresh cache.

    On a miss ``backend(query)`` is called and its answer cached. The time with the cache is the
    measured lookup time plus, on misses, the backend time; without the cache every query costs
    the backend time. ``backend_seconds`` fixes the backend's cost per call (a model's latency
    you measured elsewhere) instead of timing ``backend`` itself. ``vectors`` (N, D) reuses
    precomputed embeddings, so a threshold sweep embeds the stream once; each lookup is then charged
    the mean time of embedding one query: ``embed_seconds`` if given, otherwise measured on the
    first 20 queries after a warm-up call (``embed_seconds`` is ignored without ``vectors``).
    ``users`` (one per query) scopes the cache per user; answers are stored as ``public`` or
    private, and ``cross_user_hits`` counts hits served from another user's entry.
    """
    if len(queries) != len(intents):
        raise ValueError(f"queries and intents must have the same length, got {len(queries)} and {len(intents)}")
    if users is not None and len(users) != len(queries):
        raise ValueError(f"users must have one entry per query ({len(queries)}), got {len(users)}")
    cache = SemanticCache(embed, threshold=threshold, capacity=capacity)
    intent_of: dict[str, Hashable] = {}
    owners_of: dict[str, set] = {}
    result = ReplayResult()
    if vectors is None:                      # embedding happens inside the timed lookup
        embed_seconds = 0.0
    elif embed_seconds is not None:
        embed_seconds = float(embed_seconds)
    else:                                    # charge the measured cost of embedding one query
        embed([queries[0]])                  # warm-up call, not timed
        sample = list(queries[: min(20, len(queries))])
        t0 = time.perf_counter()
        for q in sample:
            embed([q])
        embed_seconds = (time.perf_counter() - t0) / len(sample)
    for i, (query, intent) in enumerate(zip(queries, intents)):
        t0 = time.perf_counter()
        vec = embed([query])[0] if vectors is None else vectors[i]
        user = users[i] if users is not None else None
        answer, matched, sim = cache.lookup(query, vec, user=user)
        lookup_s = time.perf_counter() - t0 + embed_seconds
        result.similarities.append(sim)
        if answer is not None:
            result.hits += 1
            result.false_hits += intent_of.get(matched) != intent
            result.cross_user_hits += user not in owners_of.get(matched, set())
            result.seconds_with_cache += lookup_s
            cost = backend_seconds if backend_seconds is not None else _timed(backend, query)[1]
            result.seconds_without_cache += cost
        else:
            result.misses += 1
            answer, cost = _timed(backend, query)
            cost = backend_seconds if backend_seconds is not None else cost
            cache.put(query, answer, vec, user=user, public=public)
            intent_of[query] = intent
            owners_of.setdefault(query, set()).add(user)
            result.seconds_with_cache += lookup_s + cost
            result.seconds_without_cache += cost
    result.evictions = cache.stats.evictions
    return result


def _timed(fn, arg):
    t0 = time.perf_counter()
    out = fn(arg)
    return out, time.perf_counter() - t0


def load_paraphrase_set() -> tuple[dict[str, list[str]], list[str]]:
    """The book's query set for cache experiments (``data/paraphrases.json``): ``intents``
    maps an intent name to 4 paraphrases of one question (some intents are deliberate near
    misses of others, e.g. beam search vs beam width, top-p vs top-k); ``one_off`` holds questions
    asked once."""
    import json
    from importlib import resources
    raw = json.loads(resources.files(__package__).joinpath("data/paraphrases.json").read_text(encoding="utf-8"))
    return raw["intents"], raw["one_off"]


def make_query_stream(intents: dict[str, list[str]], one_off: Sequence[str], n: int, *, new_fraction: float = 0.2,
                      zipf_s: float = 1.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """A realistic stream of ``n`` queries: popular questions come back often, in varying words.

    Each query is, with probability ``new_fraction``, the next one-off question (intent
    ``"new:<i>"``; recycled if the list runs out, so use ``n * new_fraction <= len(one_off)`` for
    all-new); otherwise an intent drawn with Zipf weights ``1 / rank**zipf_s`` and a random one
    of its paraphrases. Returns ``(queries, intents)``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n}")
    if not 0.0 <= new_fraction <= 1.0:
        raise ValueError(f"new_fraction must be in [0, 1], got {new_fraction}")
    rng = np.random.default_rng(seed)
    names = list(intents)
    order = rng.permutation(len(names))
    weights = 1.0 / (np.arange(1, len(names) + 1) ** zipf_s)
    weights /= weights.sum()
    queries, labels, next_new = [], [], 0
    for _ in range(n):
        if one_off and rng.random() < new_fraction:
            queries.append(one_off[next_new % len(one_off)])
            labels.append(f"new:{next_new % len(one_off)}")
            next_new += 1
        else:
            name = names[order[rng.choice(len(names), p=weights)]]
            queries.append(intents[name][rng.integers(len(intents[name]))])
            labels.append(name)
    return queries, labels
