"""Paged KV cache: fixed-size blocks and per-sequence block tables (chapter 09).

A contiguous KV cache reserves ``max_len`` slots for every sequence up front, because it does not
know how long the answer will be; most of that memory is never written. Paging (the idea behind
vLLM's PagedAttention) cuts the cache into blocks of ``block_size`` token slots taken from one
shared pool. A sequence owns a *block table*, the list of its blocks in order; it grows by one
block when the last one fills, and frees all of them when it finishes. Waste is then at most
``block_size - 1`` slots per sequence (internal fragmentation) instead of ``max_len - length``.

:class:`BlockAllocator` does the bookkeeping; with ``prefix_caching=True`` it also shares blocks
between sequences. Every full block of a prompt is registered under a hash of *all* the tokens up to
its end (a chain hash, so a block is reused only after an identical prefix); a later prompt that
starts with the same tokens takes those blocks instead of computing their keys and values again
(automatic prefix caching, as in vLLM and SGLang's RadixAttention). Blocks carry reference counts;
:meth:`BlockAllocator.fork` shares a whole sequence (parallel sampling, beam search), and a
sequence that writes into a shared, partly filled block first gets its own copy of it
(copy-on-write). A freed block that holds a registered prefix stays cached until the pool needs it
(least recently used first).

:class:`PagedKVStore` keeps real key/value tensors
in a block pool and gathers a sequence back into a contiguous ``(n_head, T, head_dim)`` tensor,
equal to what a contiguous cache would hold. :func:`compare_reservations` measures both layouts
on a set of sequence lengths.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch

from .._checks import check_positive_int

__all__ = ["OutOfBlocks", "BlockAllocator", "PagedKVStore", "ReservationReport", "compare_reservations"]


class OutOfBlocks(RuntimeError):
    """The pool has no free block left (a scheduler would pre-empt or queue the request)."""


class BlockAllocator:
    """``BlockAllocator(num_blocks, block_size, prefix_caching=False)``: a free list of block ids,
    reference counts and block tables.

    ``allocate(seq_id, n_tokens)`` reserves blocks for a new sequence; ``append(seq_id, n=1)`` adds
    tokens (a new block only when the last one is full); ``free(seq_id)`` returns its blocks. Blocks
    are handed out lowest id first so tests and pictures are deterministic.

    Sharing: ``fork(parent, child)`` gives ``child`` the parent's blocks (reference count + 1);
    ``allocate_prompt(seq_id, tokens)`` (needs ``prefix_caching=True``) reuses the cached blocks of
    the longest registered prefix of ``tokens`` and returns how many tokens it covers. When a
    sequence appends into a shared block that is not full, the block is copied first: the pair
    ``(source, copy)`` is queued in ``copies`` for the store that holds the tensors.
    """

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = False):
        self.num_blocks = check_positive_int("num_blocks", num_blocks)
        self.block_size = check_positive_int("block_size", block_size)
        if not isinstance(prefix_caching, bool):
            raise TypeError(f"prefix_caching must be a bool, got {type(prefix_caching).__name__}")
        self.prefix_caching = prefix_caching
        self._free = list(range(num_blocks - 1, -1, -1))      # pop() gives the lowest id
        self.tables: dict[object, list[int]] = {}
        self.lengths: dict[object, int] = {}
        self.refcount: dict[int, int] = {}                     # block id -> sequences using it
        self.copies: list[tuple[int, int]] = []                # (source, copy) waiting for the store
        self._cache: dict[int, int] = {}                       # prefix hash -> block id
        self._block_hash: dict[int, int] = {}                  # block id -> its prefix hash
        self._evictable: OrderedDict[int, None] = OrderedDict()  # cached blocks nobody uses, LRU first
        self.prefix_queried_tokens = 0
        self.prefix_hit_tokens = 0

    # bookkeeping -----------------------------------------------------------------------------
    def blocks_needed(self, n_tokens: int) -> int:
        return math.ceil(n_tokens / self.block_size)

    @property
    def free_blocks(self) -> int:
        """The number of blocks a new sequence can take (never used, or cached but unused and evicted on demand)."""
        return len(self._free) + len(self._evictable)

    @property
    def used_blocks(self) -> int:
        return self.num_blocks - self.free_blocks

    @property
    def cached_blocks(self) -> int:
        """Blocks registered in the prefix cache (in use or evictable)."""
        return len(self._block_hash)

    @property
    def prefix_hit_rate(self) -> float:
        """Share of the prompt tokens passed to :meth:`allocate_prompt` whose blocks were cached."""
        return self.prefix_hit_tokens / self.prefix_queried_tokens if self.prefix_queried_tokens else 0.0

    def can_allocate(self, n_tokens: int) -> bool:
        return self.blocks_needed(n_tokens) <= self.free_blocks

    def _take(self, k: int) -> list[int]:
        if k > self.free_blocks:
            raise OutOfBlocks(f"need {k} blocks, {self.free_blocks} free of {self.num_blocks}")
        out = []
        for _ in range(k):
            if self._free:
                b = self._free.pop()
            else:                                          # evict the least recently used cached block
                b, _ = self._evictable.popitem(last=False)
                del self._cache[self._block_hash.pop(b)]
            self.refcount[b] = 1
            out.append(b)
        return out

    def _share(self, b: int) -> None:
        if self.refcount.get(b, 0) == 0:
            self._evictable.pop(b)                         # a cached block comes back into use
            self.refcount[b] = 0
        self.refcount[b] += 1

    def _release(self, b: int) -> None:
        self.refcount[b] -= 1
        if self.refcount[b] == 0:
            del self.refcount[b]
            if b in self._block_hash:
                self._evictable[b] = None                  # keep its keys/values for a later prompt
            else:
                self._free.append(b)

    def allocate(self, seq_id, n_tokens: int) -> list[int]:
        """Reserve blocks for a new sequence of ``n_tokens`` (>= 1); returns its block table."""
        if seq_id in self.tables:
            raise ValueError(f"seq_id {seq_id!r} is already allocated")
        check_positive_int("n_tokens", n_tokens)
        self.tables[seq_id] = self._take(self.blocks_needed(n_tokens))
        self.lengths[seq_id] = n_tokens
        return self.tables[seq_id]

    def _prefix_hashes(self, tokens) -> list[int]:
        """The chain hash of every *full* block of ``tokens``: block i's hash covers tokens[: (i+1)*bs]."""
        hashes, h = [], 0
        for i in range(len(tokens) // self.block_size):
            h = hash((h, tuple(tokens[i * self.block_size:(i + 1) * self.block_size])))
            hashes.append(h)
        return hashes

    def allocate_prompt(self, seq_id, tokens) -> int:
        """Reserve blocks for a new sequence whose prompt is ``tokens`` (a non-empty list of ints),
        reusing the cached blocks of its longest registered prefix. Returns the number of leading
        tokens whose keys and values are already in the pool (a multiple of ``block_size``, at most
        ``len(tokens) - 1``: the last prompt token is always computed, since its logits are needed).
        The new full blocks are registered, so the caller must write their keys and values."""
        if not self.prefix_caching:
            raise ValueError("allocate_prompt needs BlockAllocator(..., prefix_caching=True)")
        if seq_id in self.tables:
            raise ValueError(f"seq_id {seq_id!r} is already allocated")
        tokens = [int(t) for t in tokens]
        if not tokens:
            raise ValueError("tokens must be a non-empty list of token ids")
        hashes = self._prefix_hashes(tokens)
        hit = []
        for h in hashes:
            if h not in self._cache:
                break
            hit.append(self._cache[h])
        if len(hit) * self.block_size >= len(tokens):
            hit.pop()                                      # recompute the block holding the last token
        n_new = self.blocks_needed(len(tokens)) - len(hit)
        if n_new > self.free_blocks - sum(1 for b in hit if self.refcount.get(b, 0) == 0):
            raise OutOfBlocks(f"need {n_new} new blocks, {self.free_blocks} free of {self.num_blocks}")
        for b in hit:
            self._share(b)
        table = hit + self._take(n_new)
        for i in range(len(hit), len(hashes)):              # register the newly computed full blocks
            if hashes[i] not in self._cache:
                self._cache[hashes[i]] = table[i]
                self._block_hash[table[i]] = hashes[i]
        self.tables[seq_id], self.lengths[seq_id] = table, len(tokens)
        cached = len(hit) * self.block_size
        self.prefix_queried_tokens += len(tokens)
        self.prefix_hit_tokens += cached
        return cached

    def fork(self, parent, child) -> list[int]:
        """``child`` starts as a copy of ``parent`` that shares its blocks (no data copied)."""
        if parent not in self.tables:
            raise KeyError(f"unknown seq_id {parent!r}")
        if child in self.tables:
            raise ValueError(f"seq_id {child!r} is already allocated")
        for b in self.tables[parent]:
            self._share(b)
        self.tables[child] = list(self.tables[parent])
        self.lengths[child] = self.lengths[parent]
        return self.tables[child]

    def append(self, seq_id, n: int = 1) -> list[int]:
        """Grow ``seq_id`` by ``n`` tokens; returns the block ids newly added (often none). If the
        last block is shared and not full, it is replaced by a private copy first (queued in
        ``copies``, and returned among the added blocks)."""
        if seq_id not in self.tables:
            raise KeyError(f"unknown seq_id {seq_id!r}")
        check_positive_int("n", n)
        table, length = self.tables[seq_id], self.lengths[seq_id]
        new_len = length + n
        extra = self.blocks_needed(new_len) - len(table)
        cow = length % self.block_size != 0 and self.refcount[table[-1]] > 1
        if extra + cow > self.free_blocks:
            raise OutOfBlocks(f"need {extra + cow} blocks, {self.free_blocks} free of {self.num_blocks}")
        added = []
        if cow:                                            # copy-on-write of the shared partial block
            (copy,) = self._take(1)
            self.copies.append((table[-1], copy))
            self._release(table[-1])
            table[-1] = copy
            added.append(copy)
        if extra > 0:
            new = self._take(extra)
            table.extend(new)
            added.extend(new)
        self.lengths[seq_id] = new_len
        return added

    def free(self, seq_id) -> None:
        """Release every block of ``seq_id``: a block goes back to the pool when no sequence uses it
        (a registered prefix block stays cached until the pool needs it)."""
        if seq_id not in self.tables:
            raise KeyError(f"unknown seq_id {seq_id!r}")
        for b in reversed(self.tables.pop(seq_id)):
            self._release(b)
        self._free.sort(reverse=True)
        del self.lengths[seq_id]

    def slot(self, seq_id, position: int) -> tuple[int, int]:
        """``(block id, offset in block)`` where token ``position`` of ``seq_id`` lives."""
        if not 0 <= position < self.lengths[seq_id]:
            raise ValueError(f"position must be in [0, {self.lengths[seq_id]}), got {position}")
        return self.tables[seq_id][position // self.block_size], position % self.block_size

    def stats(self) -> dict:
        """Tokens stored, slots reserved, and the wasted fraction (internal fragmentation). Shared
        blocks count once, so with sharing ``tokens`` (summed over sequences) can exceed the slots."""
        tokens = sum(self.lengths.values())
        reserved = self.used_blocks * self.block_size
        return {"sequences": len(self.tables), "tokens": tokens, "reserved_slots": reserved,
                "used_blocks": self.used_blocks, "free_blocks": self.free_blocks,
                "waste": 1 - tokens / reserved if reserved else 0.0}


class PagedKVStore:
    """Keys and values for one attention layer in a block pool of shape
    ``(num_blocks, block_size, n_head, head_dim)``, addressed through a :class:`BlockAllocator`.

    ``write(seq_id, k, v)`` appends ``k, v`` of shape ``(n_head, t, head_dim)`` to the sequence
    (allocating as needed); ``write_prompt(seq_id, tokens, kv_fn)`` starts a sequence through the
    prefix cache; ``fork(parent, child)`` shares a sequence; ``gather(seq_id)`` returns its
    ``(n_head, T, head_dim)`` keys and values in order, as a contiguous cache would hold them.
    """

    def __init__(self, allocator: BlockAllocator, n_head: int, head_dim: int, dtype=torch.float32, device=None):
        self.alloc = allocator
        shape = (allocator.num_blocks, allocator.block_size, n_head, head_dim)
        self.k_pool = torch.zeros(shape, dtype=dtype, device=device)
        self.v_pool = torch.zeros(shape, dtype=dtype, device=device)

    def write(self, seq_id, k: torch.Tensor, v: torch.Tensor) -> None:
        if k.shape != v.shape or k.ndim != 3 or k.shape[0] != self.k_pool.shape[2] or k.shape[2] != self.k_pool.shape[3]:
            raise ValueError(f"k and v must both be (n_head, t, head_dim) = ({self.k_pool.shape[2]}, t, "
                             f"{self.k_pool.shape[3]}), got {tuple(k.shape)} and {tuple(v.shape)}")
        t = k.shape[1]
        if seq_id in self.alloc.tables:
            start = self.alloc.lengths[seq_id]
            self.alloc.append(seq_id, t)
        else:
            start = 0
            self.alloc.allocate(seq_id, t)
        self._apply_copies()
        pos = torch.arange(start, start + t)
        table = torch.tensor(self.alloc.tables[seq_id])
        blocks, offsets = table[pos // self.alloc.block_size], pos % self.alloc.block_size
        self.k_pool[blocks, offsets] = k.transpose(0, 1).to(self.k_pool.dtype)
        self.v_pool[blocks, offsets] = v.transpose(0, 1).to(self.v_pool.dtype)

    def _apply_copies(self) -> None:
        for src, dst in self.alloc.copies:                  # copy-on-write: the new block gets the old data
            self.k_pool[dst] = self.k_pool[src]
            self.v_pool[dst] = self.v_pool[src]
        self.alloc.copies.clear()

    def write_prompt(self, seq_id, tokens, kv_fn) -> int:
        """Start ``seq_id`` with the prompt ``tokens`` through the prefix cache: ``kv_fn(start)``
        must return the keys and values ``(n_head, len(tokens) - start, head_dim)`` of the prompt
        from position ``start`` on (a real engine runs the model only on those tokens, attending to
        the cached ones). Returns ``start``, the number of tokens served from the cache."""
        start = self.alloc.allocate_prompt(seq_id, tokens)
        k, v = kv_fn(start)
        t = len(tokens) - start
        if k.shape != v.shape or k.ndim != 3 or k.shape[1] != t:
            self.alloc.free(seq_id)
            raise ValueError(f"kv_fn({start}) must return k and v of shape (n_head, {t}, head_dim), "
                             f"got {tuple(k.shape)} and {tuple(v.shape)}")
        pos = torch.arange(start, len(tokens))
        table = torch.tensor(self.alloc.tables[seq_id])
        blocks, offsets = table[pos // self.alloc.block_size], pos % self.alloc.block_size
        self.k_pool[blocks, offsets] = k.transpose(0, 1).to(self.k_pool.dtype)
        self.v_pool[blocks, offsets] = v.transpose(0, 1).to(self.v_pool.dtype)
        return start

    def fork(self, parent, child) -> None:
        """``child`` shares ``parent``'s keys and values until one of them writes (copy-on-write)."""
        self.alloc.fork(parent, child)

    def gather(self, seq_id) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.alloc.lengths[seq_id]
        table = torch.tensor(self.alloc.tables[seq_id])
        k = self.k_pool[table].flatten(0, 1)[:T]             # (T, n_head, head_dim)
        v = self.v_pool[table].flatten(0, 1)[:T]
        return k.transpose(0, 1), v.transpose(0, 1)

    def free(self, seq_id) -> None:
        self.alloc.free(seq_id)


@dataclass
class ReservationReport:
    tokens: int               # slots actually holding a key/value
    contiguous_slots: int     # reserved when every sequence preallocates max_len
    paged_slots: int          # reserved with blocks of block_size
    block_size: int
    max_len: int

    @property
    def contiguous_waste(self) -> float:
        return 1 - self.tokens / self.contiguous_slots

    @property
    def paged_waste(self) -> float:
        return 1 - self.tokens / self.paged_slots

    def fit_in(self, budget_slots: int, n_seqs: int) -> dict:
        """How many of these ``n_seqs`` sequences fit at once in ``budget_slots`` token slots."""
        return {"contiguous": min(n_seqs, budget_slots // self.max_len),
                "paged": min(n_seqs, int(budget_slots // (self.paged_slots / n_seqs)))}


def compare_reservations(lengths, *, max_len: int, block_size: int) -> ReservationReport:
    """Slots used vs reserved for sequences of final ``lengths`` (prompt + output tokens), when
    each preallocates ``max_len`` contiguous slots and when each takes ``ceil(len / block_size)``
    blocks. Every length must be in ``[1, max_len]``."""
    check_positive_int("max_len", max_len)
    check_positive_int("block_size", block_size)
    lengths = [int(x) for x in lengths]
    if not lengths or min(lengths) < 1 or max(lengths) > max_len:
        raise ValueError(f"lengths must be a non-empty list of ints in [1, max_len={max_len}]")
    paged = sum(math.ceil(n / block_size) * block_size for n in lengths)
    return ReservationReport(tokens=sum(lengths), contiguous_slots=max_len * len(lengths), paged_slots=paged,
                             block_size=block_size, max_len=max_len)
