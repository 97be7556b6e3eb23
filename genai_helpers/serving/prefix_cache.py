"""Automatic prefix caching for the serving engine (chapter 09).

Requests to one application share long prefixes: the system prompt, a few-shot block, the
document a conversation is about. Their keys and values are the same every time (a token's key
depends only on the tokens before it), so computing them again is waste. :class:`PrefixKVCache`
keeps the keys and values of prompt *blocks* of ``block_size`` tokens under a chain hash of every
token up to the block's end (the same rule as :meth:`~genai_helpers.serving.paged_kv.BlockAllocator.allocate_prompt`):
a new prompt reuses the blocks of its longest cached prefix and the model runs only on the rest.
The oldest-used blocks are evicted when ``max_blocks`` is reached. Keys and values are stored per
layer as ``(kv_heads, block_size, head_dim)`` tensors, so a grouped-query model stores fewer heads.

Used by :meth:`~genai_helpers.serving.engine.BatchEngine.add` and :func:`~genai_helpers.serving.batching.serve`
(``prefix_cache=``); tests check that logits with and without it are equal.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from .._checks import check_positive_int

__all__ = ["PrefixKVCache", "prefix_block_hashes"]


def prefix_block_hashes(tokens, block_size: int) -> list[int]:
    """Chain hash of every full block of ``tokens``: hash ``i`` covers ``tokens[: (i + 1) * block_size]``."""
    check_positive_int("block_size", block_size)
    hashes, h = [], 0
    for i in range(len(tokens) // block_size):
        h = hash((h, tuple(int(t) for t in tokens[i * block_size:(i + 1) * block_size])))
        hashes.append(h)
    return hashes


class PrefixKVCache:
    """``PrefixKVCache(block_size=16, max_blocks=256)``: cached key/value blocks of prompt prefixes.

    ``lookup(tokens) -> (n, blocks)``: the number of leading tokens already cached (a multiple of
    ``block_size``, at most ``len(tokens) - 1``, since the last prompt token must run to give the
    first output token's logits) and their per-block key/value tensors.
    ``insert(tokens, k, v)``: store the full blocks of a prompt whose keys/values per layer
    ``k[l], v[l]`` are ``(kv_heads, >= len(tokens), head_dim)``.
    ``hits`` / ``queried`` count prompt tokens, so ``hit_rate`` is the share of prompt tokens
    served from the cache.
    """

    def __init__(self, block_size: int = 16, max_blocks: int = 256):
        self.block_size = check_positive_int("block_size", block_size)
        self.max_blocks = check_positive_int("max_blocks", max_blocks)
        self._blocks: OrderedDict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = OrderedDict()
        self.hits = 0
        self.queried = 0

    def __len__(self) -> int:
        return len(self._blocks)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queried if self.queried else 0.0

    def lookup(self, tokens) -> tuple[int, list[tuple[list[torch.Tensor], list[torch.Tensor]]]]:
        if len(tokens) == 0:
            raise ValueError("tokens must be a non-empty sequence of token ids")
        found, hit = [], []
        for h in prefix_block_hashes(tokens, self.block_size):
            if h not in self._blocks:
                break
            hit.append(h)
            found.append(self._blocks[h])
        self._touch(hit)
        if len(found) * self.block_size >= len(tokens):
            found.pop()                                      # the last token is always computed
        n = len(found) * self.block_size
        self.hits += n
        self.queried += len(tokens)
        return n, found

    def insert(self, tokens, k: list[torch.Tensor], v: list[torch.Tensor]) -> int:
        """Store the full blocks of ``tokens`` not cached yet; returns how many were added."""
        if len(k) != len(v) or not k:
            raise ValueError("k and v must be non-empty lists with one tensor per layer")
        if any(t.ndim != 3 or t.shape[1] < len(tokens) for t in list(k) + list(v)):
            raise ValueError(f"every k[l] and v[l] must be (kv_heads, >= {len(tokens)}, head_dim), got "
                             f"{[tuple(t.shape) for t in k]}")
        bs, added = self.block_size, 0
        hashes = prefix_block_hashes(tokens, bs)[:self.max_blocks]
        for i, h in enumerate(hashes):
            if h not in self._blocks:
                sl = slice(i * bs, (i + 1) * bs)
                self._blocks[h] = ([t[:, sl].clone() for t in k], [t[:, sl].clone() for t in v])
                added += 1
        self._touch(hashes)
        while len(self._blocks) > self.max_blocks:
            self._blocks.popitem(last=False)                 # evict the least recently used block
        return added

    def _touch(self, chain: list[int]) -> None:
        """Mark a chain of blocks used, its first block most recently: eviction then takes the
        deepest blocks of the coldest chains first and never orphans a cached block's successors
        while keeping them."""
        for h in reversed(chain):
            self._blocks.move_to_end(h)
