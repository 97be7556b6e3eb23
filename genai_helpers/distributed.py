"""Process groups from a notebook, and collectives built from point-to-point messages (chapter 02).

``Workers(world_size)`` starts ``world_size`` CPU processes with ``torch.multiprocessing`` (the
*spawn* method, as CUDA requires), joins them into one ``torch.distributed`` process group over
the **gloo** backend on the loopback address (127.0.0.1, a free port), and keeps them alive, so
a chapter pays the start-up (a few seconds: each process imports torch) once::

    with Workers(2) as workers:
        results = workers.run(my_function, arg)   # my_function(arg) on every rank; list by rank

A spawned process re-imports what it runs, so ``my_function`` must be importable — defined in
a module such as this package, not in a notebook cell. That is why the chapter's distributed
code lives here. The workers set the same environment variables ``torchrun`` sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), so code written for them
runs unchanged under ``torchrun --nproc_per_node=N``.

The collectives — :func:`ring_all_reduce` and :func:`hierarchical_all_reduce` — use only
``dist.send``/``dist.recv``/``isend``/``irecv`` and count the bytes each rank sends in a
:class:`ByteCounter`, so they can be checked against ``dist.all_reduce`` and the textbook volume
``2·(n-1)/n · N`` bytes per rank for the ring.
"""
from __future__ import annotations

import os
import queue
import socket
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from ._checks import check_positive_int, check_tensor

__all__ = ["LOOPBACK", "free_port", "Workers", "launch", "rank_and_world", "ByteCounter", "ring_all_reduce",
           "hierarchical_all_reduce", "check_collectives"]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _worker_main(rank: int, world_size: int, port: int, threads: int, tasks, results) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR=LOOPBACK, MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        while True:
            task = tasks.get()
            if task is None:
                break
            fn, args, kwargs = task
            try:
                results.put((rank, True, fn(*args, **kwargs)))
            except BaseException:                      # report, keep serving
                results.put((rank, False, traceback.format_exc()))
    finally:
        dist.destroy_process_group()


class Workers:
    """``world_size`` CPU processes in one gloo process group, kept alive between calls.

    ``threads`` is torch's intra-op threads per process (default: the cores divided evenly).
    Use as a context manager, or call :meth:`close`. ``run(fn, *args)`` calls ``fn(*args)`` on
    every rank and returns the list of return values, by rank (they are pickled back).
    """

    def __init__(self, world_size: int = 2, *, threads: int | None = None, timeout: float = 300.0):
        check_positive_int("world_size", world_size)
        if threads is None:
            threads = max(1, (os.cpu_count() or 1) // world_size)
        check_positive_int("threads", threads)
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        import torch.multiprocessing as mp

        self.world_size, self.timeout = world_size, timeout
        ctx = mp.get_context("spawn")
        self._tasks = [ctx.Queue() for _ in range(world_size)]
        self._results = ctx.Queue()
        port = free_port()
        self._procs = [ctx.Process(target=_worker_main, args=(r, world_size, port, threads, self._tasks[r], self._results),
                                   daemon=True) for r in range(world_size)]
        for p in self._procs:
            p.start()

    def run(self, fn: Callable, *args, **kwargs) -> list:
        """Run ``fn(*args, **kwargs)`` on every rank; return the results ordered by rank."""
        if not callable(fn):
            raise TypeError("fn must be callable (and importable: defined in a module, not a notebook)")
        if getattr(fn, "__module__", None) == "__main__":
            raise ValueError(f"fn={fn.__name__} is defined in __main__ (a notebook or script); spawned "
                             "processes cannot import it — define it in a module")
        if not self._procs:
            raise RuntimeError("these workers are closed")
        for q in self._tasks:
            q.put((fn, args, kwargs))
        out: list[Any] = [None] * self.world_size
        errors = []
        for _ in range(self.world_size):
            try:
                rank, ok, value = self._results.get(timeout=self.timeout)
            except queue.Empty:
                self.close()
                raise TimeoutError(f"a rank did not answer within {self.timeout} s; workers closed") from None
            if ok:
                out[rank] = value
            else:
                errors.append(f"--- rank {rank} ---\n{value}")
        if errors:
            raise RuntimeError("a worker raised:\n" + "\n".join(errors))
        return out

    def close(self) -> None:
        """Stop the processes (after any task in flight)."""
        for q in self._tasks:
            q.put(None)
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        self._procs = []

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def launch(fn: Callable, world_size: int = 2, *args, **kwargs) -> list:
    """Start :class:`Workers`, run ``fn`` once on every rank, stop them; results by rank."""
    with Workers(world_size) as workers:
        return workers.run(fn, *args, **kwargs)


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` when no process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# --------------------------------------------------------------------------------------------
# Collectives from point-to-point messages


@dataclass
class ByteCounter:
    """Bytes and messages one rank has sent through the functions below."""

    bytes_sent: int = 0
    messages: int = 0

    def add(self, t: torch.Tensor) -> None:
        self.bytes_sent += t.numel() * t.element_size()
        self.messages += 1


def _isend(t: torch.Tensor, dst: int, counter: ByteCounter | None):
    if counter is not None:
        counter.add(t)
    return dist.isend(t.contiguous(), dst)


def ring_all_reduce(tensor: torch.Tensor, counter: ByteCounter | None = None,
                    ranks: list[int] | None = None) -> torch.Tensor:
    """Sum ``tensor`` across ``ranks`` (default: all) in place with the ring algorithm; return it.

    The flat tensor is cut into ``n`` chunks. Reduce-scatter: in ``n-1`` steps each rank sends one
    chunk to its right neighbour and adds the chunk arriving from its left, after which rank ``r``
    holds the full sum of chunk ``r+1``. All-gather: ``n-1`` more steps pass the finished chunks
    round. Each rank sends ``2·(n-1)/n`` of the tensor in total, independent of ``n``.
    Every rank in ``ranks`` must call it with a tensor of the same shape and dtype.
    """
    check_tensor("tensor", tensor)
    ranks = list(range(dist.get_world_size())) if ranks is None else list(ranks)
    n = len(ranks)
    me = ranks.index(dist.get_rank())
    if n == 1:
        return tensor
    flat = tensor.data.view(-1) if tensor.is_contiguous() else tensor.data.reshape(-1)
    chunks = list(torch.tensor_split(flat, n))
    right, left = ranks[(me + 1) % n], ranks[(me - 1) % n]
    for step in range(n - 1):                           # reduce-scatter
        send_i, recv_i = (me - step) % n, (me - step - 1) % n
        incoming = torch.empty_like(chunks[recv_i])
        req = _isend(chunks[send_i], right, counter)
        dist.recv(incoming, left)
        req.wait()
        chunks[recv_i] += incoming
    for step in range(n - 1):                           # all-gather
        send_i, recv_i = (me + 1 - step) % n, (me - step) % n
        incoming = torch.empty_like(chunks[recv_i])
        req = _isend(chunks[send_i], right, counter)
        dist.recv(incoming, left)
        req.wait()
        chunks[recv_i].copy_(incoming)
    if not tensor.is_contiguous():
        tensor.data.copy_(flat.view_as(tensor))
    return tensor


def hierarchical_all_reduce(tensor: torch.Tensor, ranks_per_node: int, counter: ByteCounter | None = None) -> torch.Tensor:
    """Sum ``tensor`` across all ranks in place in three phases, the way multi-node jobs do.

    Ranks ``[k·g, (k+1)·g)`` form "node" ``k`` (``g = ranks_per_node``; fast links inside a node,
    slow between nodes). 1) inside each node, every rank sends its tensor to the node's first rank
    (the leader), which sums them; 2) the leaders ring-all-reduce across nodes — the only traffic
    on the slow links; 3) each leader sends the result back to its node.
    """
    check_tensor("tensor", tensor)
    check_positive_int("ranks_per_node", ranks_per_node)
    world, rank = dist.get_world_size(), dist.get_rank()
    if world % ranks_per_node:
        raise ValueError(f"ranks_per_node must divide the world size ({world}), got {ranks_per_node}")
    leader = rank - rank % ranks_per_node
    if rank == leader:
        incoming = torch.empty_like(tensor)
        for peer in range(leader + 1, leader + ranks_per_node):
            dist.recv(incoming, peer)
            tensor += incoming
        ring_all_reduce(tensor, counter, ranks=list(range(0, world, ranks_per_node)))
        reqs = [_isend(tensor, peer, counter) for peer in range(leader + 1, leader + ranks_per_node)]
        for r in reqs:
            r.wait()
    else:
        _isend(tensor, leader, counter).wait()
        dist.recv(tensor, leader)
    return tensor


def check_collectives(numel: int = 1000, ranks_per_node: int = 2, seed: int = 0) -> dict:
    """Run on every rank: compare ring and hierarchical all-reduce with ``dist.all_reduce``.

    Each rank sums a different random float64 vector of ``numel`` values. Returns this rank's
    max absolute differences and the bytes it sent in each algorithm.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    x = torch.randn(numel, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + rank))
    ref = x.clone()
    dist.all_reduce(ref)
    ring, ring_bytes = x.clone(), ByteCounter()
    ring_all_reduce(ring, ring_bytes)
    out = {"rank": rank, "tensor_bytes": x.numel() * x.element_size(),
           "ring_max_diff": (ring - ref).abs().max().item(), "ring_bytes_sent": ring_bytes.bytes_sent}
    if world % ranks_per_node == 0:
        hier, hier_bytes = x.clone(), ByteCounter()
        hierarchical_all_reduce(hier, ranks_per_node, hier_bytes)
        out.update(hier_max_diff=(hier - ref).abs().max().item(), hier_bytes_sent=hier_bytes.bytes_sent)
    return out
