"""Paged KV cache: fixed-size blocks and per-sequence block tables (chapter 09).

A contiguous KV cache reserves ``max_len`` slots for every sequence up front, because it does not
know how long the answer will be; most of that memory is never written. Paging (the idea behind
vLLM's PagedAttention) cuts the cache into blocks of ``block_size`` token slots taken from one
shared pool. A sequence owns a *block table*, the list of its blocks in order; it grows by one
block when the last one fills, and frees all of them when it finishes. Waste is then at most
``block_size - 1`` slots per sequence (internal fragmentation) instead of ``max_len - length``.

:class:`BlockAllocator` does the bookkeeping; :class:`PagedKVStore` keeps real key/value tensors
in a block pool and gathers a sequence back into a contiguous ``(n_head, T, head_dim)`` tensor,
equal to what a contiguous cache would hold. :func:`compare_reservations` measures both layouts
on a set of sequence lengths.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_positive_int

__all__ = ["OutOfBlocks", "BlockAllocator", "PagedKVStore", "ReservationReport", "compare_reservations"]


class OutOfBlocks(RuntimeError):
    """The pool has no free block left (a scheduler would pre-empt or queue the request)."""


class BlockAllocator:
    """``BlockAllocator(num_blocks, block_size)``: a free list of block ids and block tables.

    ``allocate(seq_id, n_tokens)`` reserves blocks for a new sequence; ``append(seq_id, n=1)`` adds
    tokens (a new block only when the last one is full); ``free(seq_id)`` returns its blocks. Blocks
    are handed out lowest id first so tests and pictures are deterministic.
    """

    def __init__(self, num_blocks: int, block_size: int):
        self.num_blocks = check_positive_int("num_blocks", num_blocks)
        self.block_size = check_positive_int("block_size", block_size)
        self._free = list(range(num_blocks - 1, -1, -1))      # pop() gives the lowest id
        self.tables: dict[object, list[int]] = {}
        self.lengths: dict[object, int] = {}

    # bookkeeping -----------------------------------------------------------------------------
    def blocks_needed(self, n_tokens: int) -> int:
        return math.ceil(n_tokens / self.block_size)

    @property
    def free_blocks(self) -> int:
        return len(self._free)

    @property
    def used_blocks(self) -> int:
        return self.num_blocks - len(self._free)

    def can_allocate(self, n_tokens: int) -> bool:
        return self.blocks_needed(n_tokens) <= len(self._free)

    def _take(self, k: int) -> list[int]:
        if k > len(self._free):
            raise OutOfBlocks(f"need {k} blocks, {len(self._free)} free of {self.num_blocks}")
        return [self._free.pop() for _ in range(k)]

    def allocate(self, seq_id, n_tokens: int) -> list[int]:
        """Reserve blocks for a new sequence of ``n_tokens`` (>= 1); returns its block table."""
        if seq_id in self.tables:
            raise ValueError(f"seq_id {seq_id!r} is already allocated")
        check_positive_int("n_tokens", n_tokens)
        self.tables[seq_id] = self._take(self.blocks_needed(n_tokens))
        self.lengths[seq_id] = n_tokens
        return self.tables[seq_id]

    def append(self, seq_id, n: int = 1) -> list[int]:
        """Grow ``seq_id`` by ``n`` tokens; returns the block ids newly added (often none)."""
        if seq_id not in self.tables:
            raise KeyError(f"unknown seq_id {seq_id!r}")
        check_positive_int("n", n)
        new_len = self.lengths[seq_id] + n
        extra = self.blocks_needed(new_len) - len(self.tables[seq_id])
        added = self._take(extra) if extra > 0 else []
        self.tables[seq_id].extend(added)
        self.lengths[seq_id] = new_len
        return added

    def free(self, seq_id) -> None:
        """Return every block of ``seq_id`` to the pool."""
        if seq_id not in self.tables:
            raise KeyError(f"unknown seq_id {seq_id!r}")
        self._free.extend(reversed(self.tables.pop(seq_id)))
        self._free.sort(reverse=True)
        del self.lengths[seq_id]

    def slot(self, seq_id, position: int) -> tuple[int, int]:
        """``(block id, offset in block)`` where token ``position`` of ``seq_id`` lives."""
        if not 0 <= position < self.lengths[seq_id]:
            raise ValueError(f"position must be in [0, {self.lengths[seq_id]}), got {position}")
        return self.tables[seq_id][position // self.block_size], position % self.block_size

    def stats(self) -> dict:
        """Tokens stored, slots reserved, and the wasted fraction (internal fragmentation)."""
        tokens = sum(self.lengths.values())
        reserved = self.used_blocks * self.block_size
        return {"sequences": len(self.tables), "tokens": tokens, "reserved_slots": reserved,
                "used_blocks": self.used_blocks, "free_blocks": self.free_blocks,
                "waste": 1 - tokens / reserved if reserved else 0.0}


class PagedKVStore:
    """Keys and values for one attention layer in a block pool of shape
    ``(num_blocks, block_size, n_head, head_dim)``, addressed through a :class:`BlockAllocator`.

    ``write(seq_id, k, v)`` appends ``k, v`` of shape ``(n_head, t, head_dim)`` to the sequence
    (allocating as needed); ``gather(seq_id)`` returns its ``(n_head, T, head_dim)`` keys and values
    in order, as a contiguous cache would hold them.
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
        pos = torch.arange(start, start + t)
        table = torch.tensor(self.alloc.tables[seq_id])
        blocks, offsets = table[pos // self.alloc.block_size], pos % self.alloc.block_size
        self.k_pool[blocks, offsets] = k.transpose(0, 1).to(self.k_pool.dtype)
        self.v_pool[blocks, offsets] = v.transpose(0, 1).to(self.v_pool.dtype)

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
