"""Data, tensor and pipeline parallelism, ZeRO and FSDP — the code chapter 02 runs on CPU ranks.

Functions named ``*_on_rank`` run inside a process group (start one with
:class:`genai_helpers.distributed.Workers`); they are defined here, not in the notebook, because
spawned processes must import what they run. Everything uses the gloo backend and runs on CPU;
the same code runs with NCCL on GPUs.

- data parallel: :func:`ddp_gradients_on_rank`, :func:`train_ddp_on_rank` (the shared training loop
  under ``DistributedDataParallel``);
- tensor parallel: :class:`ColumnParallelLinear`, :class:`RowParallelLinear` (Megatron-style);
- pipeline parallel: :func:`gpipe_schedule` (unit-time simulator) and :func:`pipeline_on_rank`
  (a real GPipe pipeline over two ranks, with measured idle time);
- ZeRO / FSDP: :func:`zero_bytes_per_rank` (accounting from a model's tensors) and
  :func:`fsdp_shards_on_rank` (``torch.distributed.fsdp.fully_shard``'s actual shard sizes).
"""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn

from ._checks import check_positive_int

__all__ = ["shard_batch", "ShardedBatches", "SeededModel", "ddp_gradients_on_rank", "train_ddp_on_rank",
           "ColumnParallelLinear", "RowParallelLinear", "tensor_parallel_mlp_on_rank", "gpipe_schedule",
           "bubble_fraction", "pipeline_on_rank", "reference_pipeline_grads", "zero_bytes_per_rank",
           "fsdp_shards_on_rank"]


def shard_batch(batch, rank: int, world_size: int):
    """Rank ``rank``'s contiguous slice of a global batch (tensors cut along dim 0)."""
    if isinstance(batch, torch.Tensor):
        if batch.shape[0] % world_size:
            raise ValueError(f"world_size ({world_size}) must divide the batch size {batch.shape[0]}")
        return batch.chunk(world_size)[rank]
    if isinstance(batch, (list, tuple)):
        return type(batch)(shard_batch(b, rank, world_size) for b in batch)
    raise TypeError(f"batch must be a tensor or a tuple/list of tensors, got {type(batch).__name__}")


class ShardedBatches:
    """``batch_fn`` for one rank: micro-batch ``i`` of the global ``batch_fn``, this rank's slice.

    Picklable when ``global_batch_fn`` is, so it can be sent to spawned workers.
    """

    def __init__(self, global_batch_fn: Callable, rank: int, world_size: int):
        check_positive_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.global_batch_fn, self.rank, self.world_size = global_batch_fn, rank, world_size

    def __call__(self, i: int):
        return shard_batch(self.global_batch_fn(i), self.rank, self.world_size)


class SeededModel:
    """Picklable model factory: ``SeededModel(TransformerLM, config, seed)()`` seeds torch, then
    builds ``model_cls(config)`` — so every rank (and the single-process reference) starts from
    the same weights."""

    def __init__(self, model_cls: Callable[..., nn.Module], config, seed: int = 0):
        if not callable(model_cls):
            raise TypeError("model_cls must be callable: model_cls(config) -> nn.Module")
        check_positive_int("seed", seed, minimum=0)
        self.model_cls, self.config, self.seed = model_cls, config, seed

    def __call__(self) -> nn.Module:
        torch.manual_seed(self.seed)
        return self.model_cls(self.config)


# -------------------------------------------------------------------------------- data parallel


def ddp_gradients_on_rank(model_fn: Callable[[], nn.Module], batch) -> dict[str, torch.Tensor]:
    """Wrap ``model_fn()`` in DDP, backprop the loss of this rank's slice of ``batch``, return grads.

    ``model_fn`` must build the same model on every rank (DDP broadcasts rank 0's weights anyway);
    the model returns ``(output, loss)`` for ``model(x, y)``. DDP averages gradients across
    ranks during ``backward``, so every rank returns the full-batch gradient.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    rank, world = dist.get_rank(), dist.get_world_size()
    model = DDP(model_fn())
    x, y = shard_batch(batch, rank, world)
    _, loss = model(x, y)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.module.named_parameters()}


def train_ddp_on_rank(model_fn: Callable[[], nn.Module], optimizer_fn: Callable, global_batch_fn: Callable,
                      config, checkpoint_dir: str | None = None):
    """The shared loop :func:`genai_helpers.training.train`, unchanged, under DDP on this rank.

    Each rank trains on its slice of ``global_batch_fn(i)``. Returns ``(history, state_dict)``
    from rank 0 (``None`` elsewhere). This is what ``torchrun`` would run on every GPU.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    from .training import train

    rank, world = dist.get_rank(), dist.get_world_size()
    model = DDP(model_fn())
    optimizer = optimizer_fn(model.parameters())
    history = train(model, optimizer, ShardedBatches(global_batch_fn, rank, world), config)
    if rank != 0:
        return None
    return history, {k: v.clone() for k, v in model.module.state_dict().items()}


# ------------------------------------------------------------------------------ tensor parallel


class _CopyToRanks(torch.autograd.Function):
    """Megatron's ``f``: identity forward; backward sums the input gradient over ranks."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


class _SumOverRanks(torch.autograd.Function):
    """Megatron's ``g``: all-reduce (sum) forward; identity backward."""

    @staticmethod
    def forward(ctx, x):
        x = x.contiguous().clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad


class _GatherLastDim(torch.autograd.Function):
    """All-gather slices along the last dimension; backward keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=-1)

    @staticmethod
    def backward(ctx, grad):
        return grad.chunk(dist.get_world_size(), dim=-1)[dist.get_rank()].contiguous()


class _SplitLastDim(torch.autograd.Function):
    """This rank's slice of the last dimension; backward all-gathers the slices' gradients."""

    @staticmethod
    def forward(ctx, x):
        return x.chunk(dist.get_world_size(), dim=-1)[dist.get_rank()].contiguous()

    @staticmethod
    def backward(ctx, grad):
        return _GatherLastDim.apply(grad)


class ColumnParallelLinear(nn.Module):
    """The output features of a ``Linear`` split across ranks: rank ``r`` holds rows
    ``[r·out/n, (r+1)·out/n)`` of the weight and computes that slice of the output.

    The input is replicated on every rank; in backward its gradient is summed over ranks (each rank
    only sees its slice's contribution). ``gather=True`` all-gathers the slices into the full
    ``(..., out_features)`` output; ``gather=False`` leaves ``(..., out_features/n)`` for a following
    :class:`RowParallelLinear` — the Megatron MLP needs no communication between the two.
    """

    def __init__(self, full: nn.Linear, gather: bool = True):
        super().__init__()
        if not isinstance(full, nn.Linear):
            raise TypeError(f"full must be an nn.Linear, got {type(full).__name__}")
        rank, world = dist.get_rank(), dist.get_world_size()
        if full.out_features % world:
            raise ValueError(f"world size {world} must divide out_features={full.out_features}")
        self.gather = gather
        self.weight = nn.Parameter(full.weight.detach().chunk(world, 0)[rank].clone())
        self.bias = nn.Parameter(full.bias.detach().chunk(world, 0)[rank].clone()) if full.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = nn.functional.linear(_CopyToRanks.apply(x), self.weight, self.bias)
        return _GatherLastDim.apply(local) if self.gather else local


class RowParallelLinear(nn.Module):
    """The input features of a ``Linear`` split across ranks: rank ``r`` holds columns
    ``[r·in/n, (r+1)·in/n)`` of the weight, multiplies its slice of the input, and the partial
    outputs are summed with an all-reduce (in backward the gradient passes through). The bias is added once, after the sum.

    ``x`` is ``(..., in_features/n)`` (already split) or ``(..., in_features)`` (split here).
    """

    def __init__(self, full: nn.Linear):
        super().__init__()
        if not isinstance(full, nn.Linear):
            raise TypeError(f"full must be an nn.Linear, got {type(full).__name__}")
        rank, world = dist.get_rank(), dist.get_world_size()
        if full.in_features % world:
            raise ValueError(f"world size {world} must divide in_features={full.in_features}")
        self.rank, self.world, self.in_features = rank, world, full.in_features
        self.weight = nn.Parameter(full.weight.detach().chunk(world, 1)[rank].clone())
        self.bias = nn.Parameter(full.bias.detach().clone()) if full.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.in_features and self.world > 1:
            x = _SplitLastDim.apply(x)
        out = _SumOverRanks.apply(nn.functional.linear(x, self.weight))
        return out + self.bias if self.bias is not None else out


def tensor_parallel_mlp_on_rank(d_model: int = 64, d_ff: int = 256, seed: int = 0) -> dict:
    """Check a column-then-row parallel MLP against the unsplit one, forward and backward.

    Every rank builds the same ``Linear(d, d_ff) -> GELU -> Linear(d_ff, d)`` and input; returns
    the max differences of the output and of the input gradient, and this rank's weight count.
    """
    torch.manual_seed(seed)
    fc1, fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
    x = torch.randn(4, 8, d_model, requires_grad=True)
    ref = fc2(nn.functional.gelu(fc1(x)))
    (ref_grad,) = torch.autograd.grad(ref.square().sum(), x)
    col, row = ColumnParallelLinear(fc1, gather=False), RowParallelLinear(fc2)
    x2 = x.detach().clone().requires_grad_(True)
    out = row(nn.functional.gelu(col(x2)))
    out.square().sum().backward()
    col_full = ColumnParallelLinear(fc1, gather=True)(x.detach())
    return {"rank": dist.get_rank(), "mlp_max_diff": (out - ref).abs().max().item(),
            "input_grad_max_diff": (x2.grad - ref_grad).abs().max().item(),
            "column_gather_max_diff": (col_full - fc1(x.detach())).abs().max().item(),
            "local_weights": col.weight.numel() + row.weight.numel(),
            "full_weights": fc1.weight.numel() + fc2.weight.numel()}


# ---------------------------------------------------------------------------- pipeline parallel


def gpipe_schedule(n_stages: int, n_micro: int, forward_time: float = 1.0, backward_time: float = 2.0) -> dict:
    """Simulate a GPipe schedule: all micro-batch forwards, then all backwards, in unit times.

    Returns ``{"tasks": [(stage, micro, "F"|"B", start, end)], "makespan", "bubble"}`` where
    ``bubble`` is the idle fraction of the stage-time area; it equals ``(p-1)/(m+p-1)``.
    """
    check_positive_int("n_stages", n_stages)
    check_positive_int("n_micro", n_micro)
    p, m = n_stages, n_micro
    tasks = []
    for s in range(p):
        for i in range(m):
            start = (s + i) * forward_time
            tasks.append((s, i, "F", start, start + forward_time))
    f_end = (m + p - 1) * forward_time
    for s in range(p):
        for i in range(m):
            start = f_end + ((p - 1 - s) + i) * backward_time
            tasks.append((s, i, "B", start, start + backward_time))
    makespan = f_end + (m + p - 1) * backward_time
    busy = p * m * (forward_time + backward_time)
    return {"tasks": tasks, "makespan": makespan, "bubble": 1 - busy / (p * makespan)}


def bubble_fraction(n_stages: int, n_micro: int) -> float:
    """GPipe's idle fraction ``(p-1)/(m+p-1)`` for ``p`` stages and ``m`` micro-batches."""
    check_positive_int("n_stages", n_stages)
    check_positive_int("n_micro", n_micro)
    return (n_stages - 1) / (n_micro + n_stages - 1)


def _stage_model(n_layers: int, width: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(n_layers)])


def pipeline_on_rank(n_micro: int, batch_size: int = 64, width: int = 256, layers_per_stage: int = 4,
                     seed: int = 0) -> dict:
    """A real GPipe step over ranks 0..p-1 (p = world size): rank ``s`` holds layers of stage ``s``.

    The batch is cut into ``n_micro`` micro-batches; activations go forward with ``isend``/``recv``
    (non-blocking sends, so a stage starts its next micro-batch at once), then gradients come back. Returns this rank's busy (compute) seconds, the step's wall seconds,
    the last stage's loss and the parameter gradients, so the caller can compare with the unsplit
    model (:func:`reference_pipeline_grads`) and measure the bubble ``1 - busy/wall``.
    """
    check_positive_int("n_micro", n_micro)
    if batch_size % n_micro:
        raise ValueError(f"n_micro must divide batch_size={batch_size}, got {n_micro}")
    rank, p = dist.get_rank(), dist.get_world_size()
    full = _stage_model(p * layers_per_stage, width, seed)
    stage = full[rank * layers_per_stage:(rank + 1) * layers_per_stage]
    g = torch.Generator().manual_seed(seed + 1)
    x_all, y_all = torch.randn(batch_size, width, generator=g), torch.randn(batch_size, width, generator=g)
    mb = batch_size // n_micro
    dist.barrier()
    busy, t0 = 0.0, time.perf_counter()
    inputs, outputs, pending, loss_total = [], [], [], 0.0
    for i in range(n_micro):                                             # forwards
        if rank == 0:
            inp = x_all[i * mb:(i + 1) * mb]
        else:
            inp = torch.empty(mb, width)
            dist.recv(inp, rank - 1)
            inp.requires_grad_(True)
        t = time.perf_counter()
        out = stage(inp)
        if rank == p - 1:
            out = ((out - y_all[i * mb:(i + 1) * mb]) ** 2).mean() / n_micro
            loss_total += out.item()
        busy += time.perf_counter() - t
        if rank < p - 1:                     # non-blocking: start the next micro-batch at once
            pending.append(dist.isend(out.detach().contiguous(), rank + 1))
        inputs.append(inp)
        outputs.append(out)
    for i in range(n_micro):                                             # backwards
        if rank == p - 1:
            grad = None
        else:
            grad = torch.empty(mb, width)
            dist.recv(grad, rank + 1)
        t = time.perf_counter()
        outputs[i].backward(grad)
        busy += time.perf_counter() - t
        if rank > 0:
            pending.append(dist.isend(inputs[i].grad.contiguous(), rank - 1))
    for req in pending:
        req.wait()
    wall = time.perf_counter() - t0
    return {"rank": rank, "busy_s": busy, "wall_s": wall, "loss": loss_total if rank == p - 1 else None,
            "grads": [q.grad.clone() for q in stage.parameters()]}


def reference_pipeline_grads(n_stages: int, batch_size: int = 64, width: int = 256, layers_per_stage: int = 4,
                             seed: int = 0) -> tuple[float, list[torch.Tensor]]:
    """Loss and parameter gradients of the unsplit model that :func:`pipeline_on_rank` splits."""
    full = _stage_model(n_stages * layers_per_stage, width, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(batch_size, width, generator=g), torch.randn(batch_size, width, generator=g)
    loss = ((full(x) - y) ** 2).mean()
    loss.backward()
    return loss.item(), [q.grad.clone() for q in full.parameters()]


# ---------------------------------------------------------------------------------- ZeRO / FSDP


def zero_bytes_per_rank(model: nn.Module, world_size: int, stage: int, *, param_bytes: int = 2,
                        grad_bytes: int = 2, optimizer_bytes: int = 12) -> dict[str, float]:
    """Per-rank bytes of model state under ZeRO ``stage`` 0–3, from ``model``'s real tensors.

    Defaults are mixed-precision Adam: bf16 weights (2) and gradients (2), fp32 master weights and
    two Adam moments (12). Stage 0 is plain data parallelism (everything replicated); stage 1
    shards the optimizer state over ``world_size`` ranks, stage 2 also the gradients, stage 3 also
    the parameters (FSDP's ``FULL_SHARD``). Shards round up: ``ceil(numel / world_size)`` per tensor.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_positive_int("world_size", world_size)
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"stage must be 0, 1, 2 or 3, got {stage}")
    params = list({id(p): p for p in model.parameters()}.values())      # tied weights once
    full = sum(p.numel() for p in params)
    shard = sum(-(-p.numel() // world_size) for p in params)
    n_p = shard if stage >= 3 else full
    n_g = shard if stage >= 2 else full
    n_o = shard if stage >= 1 else full
    out = {"parameters": n_p * param_bytes, "gradients": n_g * grad_bytes, "optimizer": n_o * optimizer_bytes}
    out["total"] = sum(out.values())
    return out


def fsdp_shards_on_rank(model_fn: Callable[[], nn.Module], steps: int = 1, seed: int = 0,
                        api: str = "fully_shard") -> dict:
    """Shard ``model_fn()`` (a ``TransformerLM``) with FSDP on this rank and train ``steps`` Adam steps.

    ``api="fully_shard"`` (FSDP2: every block, then the root, sharded dim-0 per parameter) or
    ``"FullyShardedDataParallel"`` (FSDP1: the whole model flattened into one padded vector, split
    evenly). Returns the number of parameter values this rank actually stores, the model's total,
    this rank's Adam-state values (sharded too) and the final loss.
    """
    check_positive_int("steps", steps)
    if api not in ("fully_shard", "FullyShardedDataParallel"):
        raise ValueError(f"api must be 'fully_shard' or 'FullyShardedDataParallel', got {api!r}")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = model_fn()
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    vocab = model.config.vocab_size
    if api == "fully_shard":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        local = sum(p.to_local().numel() for p in model.parameters())
    else:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        model = FSDP(model, device_id=torch.device("cpu"))
        local = sum(p.numel() for p in model.parameters())           # this rank's flat shard
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed + rank)
    loss = None
    for _ in range(steps):
        x = torch.randint(0, vocab, (2, 16), generator=g)
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad()
    opt_local = sum((v.to_local() if hasattr(v, "to_local") else v).numel()
                    for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor) and v.ndim > 0)
    return {"rank": rank, "api": api, "local_param_values": local, "total_param_values": total,
            "local_adam_values": opt_local, "loss": loss.item()}
