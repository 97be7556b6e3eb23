"""Capacity planning for a generative-AI service (chapter 17): throughput models of one replica,
the fleet a load needs, and two small simulations of a fleet over time.

Serving a language model (chapter 09 measures each piece on a small model):

- :class:`ServingGPU`, ``SERVING_GPUS`` — peak bf16 FLOP/s, memory, memory bandwidth and an
  illustrative hourly price per accelerator (data-sheet numbers; replace the prices with yours).
- :func:`decode_step` — one decoding step of a batch: it reads every weight and every cached key
  and value once, so at small batch it is bound by memory bandwidth, at large batch by FLOP/s.
- :func:`prefill_seconds` — the prompt pass, ``2·P`` FLOPs per prompt token, compute bound.
- :func:`replica_throughput` — one replica decoding a batch while it interleaves the prefills of
  the requests that replace finished ones: each user's speed and the replica's requests per second.
- :func:`max_concurrent_sequences` — how many sequences' KV caches fit beside the weights.
- :func:`replicas_for_load` — replicas for a demand at a target utilisation, plus spares (N+1).

Serving a diffusion transformer (chapter 13 builds one):

- :func:`dit_params` and :func:`dit_forward_flops` — exact counts for
  :class:`genai_helpers.diffusion.dit.DiT` (the chapter checks both against the module and
  ``torch.utils.flop_counter``), usable at any size.

A fleet over time:

- :func:`diurnal_load` — a day of requests per second: a raised cosine (sharpened to a chosen
  peak-to-mean ratio) with noise, seeded.
- :func:`simulate_autoscaler` — a reactive autoscaler with a target utilisation and a delay before
  new replicas serve; counts GPU-hours, the utilisation of every step and the requests that found
  no capacity.
- :func:`simulate_load_balancer` — requests of unequal length routed to replicas by round robin,
  at random or to the replica with the fewest outstanding requests; replicas may fail, their
  unfinished requests are retried elsewhere.

Every assumption is an argument with a default that the docstring states; nothing is hidden.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from .._checks import check_choice, check_positive_int
from ..estimates import GPUS

__all__ = ["ServingGPU", "SERVING_GPUS", "decode_step", "prefill_seconds", "replica_throughput",
           "max_concurrent_sequences",
           "replicas_for_load", "dit_params", "dit_forward_flops", "diurnal_load", "AutoscaleResult",
           "simulate_autoscaler", "BalancerResult", "BALANCER_POLICIES", "simulate_load_balancer"]


def _number(name: str, value, *, low: float = 0.0, high: float = math.inf, low_open: bool = True) -> float:
    """``value`` as a float if it is a finite real number in ``(low, high]`` (``[low, high]`` when not
    ``low_open``); otherwise a TypeError or ValueError that names the parameter and the range."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or value > high:
        bounds = ("(" if low_open else "[") + f"{low:g}, " + (f"{high:g}]" if math.isfinite(high) else "inf)")
        raise ValueError(f"{name} must be a finite number in {bounds}, got {value}")
    return value


@dataclass(frozen=True)
class ServingGPU:
    """One accelerator: dense bf16 peak (TFLOP/s), memory (GB, 1e9 bytes), memory bandwidth (TB/s,
    1e12 bytes/s) and an illustrative rental price (USD per hour)."""
    name: str
    peak_tflops_bf16: float
    memory_gb: float
    hbm_tb_per_s: float
    usd_per_hour: float


# NVIDIA data sheets: H100 SXM 989 TFLOP/s bf16 dense, 80 GB HBM3 at 3.35 TB/s; A100 80GB SXM
# 312 TFLOP/s, 2,039 GB/s; L4 121 TFLOP/s bf16 dense (242 with sparsity), 24 GB GDDR6 at 300 GB/s.
# Prices of the first two are those of genai_helpers.estimates.GPUS; the L4's is illustrative too.
SERVING_GPUS = {
    "H100-SXM": ServingGPU("H100-SXM", GPUS["H100-SXM"].peak_tflops_bf16, GPUS["H100-SXM"].memory_gb, 3.35,
                           GPUS["H100-SXM"].usd_per_hour),
    "A100-80GB": ServingGPU("A100-80GB", GPUS["A100-80GB"].peak_tflops_bf16, GPUS["A100-80GB"].memory_gb, 2.039,
                            GPUS["A100-80GB"].usd_per_hour),
    "L4": ServingGPU("L4", 121.0, 24.0, 0.3, 0.8),
}


def _gpu(gpu) -> ServingGPU:
    if isinstance(gpu, str):
        if gpu not in SERVING_GPUS:
            raise ValueError(f"gpu must be one of {sorted(SERVING_GPUS)} or a ServingGPU, got {gpu!r}")
        return SERVING_GPUS[gpu]
    if not isinstance(gpu, ServingGPU):
        raise TypeError(f"gpu must be a str or ServingGPU, got {type(gpu).__name__}")
    return gpu


# ---- one replica of a language model ----------------------------------------------------------

def decode_step(n_params: float, gpu: str | ServingGPU, *, batch: int, context_tokens: float,
                kv_bytes_per_token: float, bytes_per_param: float = 2.0, bandwidth_efficiency: float = 0.6,
                mfu: float = 0.5, n_gpus: int = 1) -> dict[str, float]:
    """Time of one decoding step for ``batch`` sequences holding ``context_tokens`` each (mean).

    A step reads every weight once (``n_params·bytes_per_param``) and every cached key and value
    (``batch·context_tokens·kv_bytes_per_token``, see :func:`genai_helpers.estimates.kv_cache_bytes`
    with ``batch_size=seq_len=1``) at ``bandwidth_efficiency`` of the data-sheet bandwidth, and does
    ``2·n_params·batch`` FLOPs at ``mfu`` of the peak. The step takes the longer of the two times
    (they overlap). ``n_gpus`` > 1 is tensor parallelism, counted as ideal (bandwidth and FLOP/s
    add up; real all-reduces cost a few percent more).

    Returns ``step_s``, ``memory_s``, ``compute_s``, ``bytes_read``, ``tokens_per_s`` (the replica's
    decode throughput, ``batch / step_s``), ``tokens_per_s_per_sequence`` (one user's speed) and
    ``bound`` (1.0 when memory bound, 0.0 when compute bound).
    """
    g = _gpu(gpu)
    _number("n_params", n_params)
    check_positive_int("batch", batch)
    check_positive_int("n_gpus", n_gpus)
    _number("context_tokens", context_tokens, low_open=False)
    _number("kv_bytes_per_token", kv_bytes_per_token, low_open=False)
    _number("bytes_per_param", bytes_per_param)
    _number("bandwidth_efficiency", bandwidth_efficiency, high=1.0)
    _number("mfu", mfu, high=1.0)
    bytes_read = n_params * bytes_per_param + batch * context_tokens * kv_bytes_per_token
    memory_s = bytes_read / (g.hbm_tb_per_s * 1e12 * bandwidth_efficiency * n_gpus)
    compute_s = 2.0 * n_params * batch / (g.peak_tflops_bf16 * 1e12 * mfu * n_gpus)
    step_s = max(memory_s, compute_s)
    return {"step_s": step_s, "memory_s": memory_s, "compute_s": compute_s, "bytes_read": bytes_read,
            "tokens_per_s": batch / step_s, "tokens_per_s_per_sequence": 1.0 / step_s,
            "bound": 1.0 if memory_s >= compute_s else 0.0}


def prefill_seconds(n_params: float, prompt_tokens: float, gpu: str | ServingGPU, *, mfu: float = 0.5,
                    n_gpus: int = 1) -> float:
    """GPU time of the prompt pass: ``2·n_params·prompt_tokens`` FLOPs at ``mfu`` of the peak
    (compute bound: every prompt token is processed in parallel). Attention's ``T²`` term is left
    out; it adds under 10% below a few thousand tokens for a 7B-class model (chapter 01, §1.9)."""
    g = _gpu(gpu)
    _number("n_params", n_params)
    _number("prompt_tokens", prompt_tokens, low_open=False)
    _number("mfu", mfu, high=1.0)
    check_positive_int("n_gpus", n_gpus)
    return 2.0 * n_params * prompt_tokens / (g.peak_tflops_bf16 * 1e12 * mfu * n_gpus)


def replica_throughput(n_params: float, gpu: str | ServingGPU, *, batch: int, prompt_tokens: float,
                       output_tokens: float, kv_bytes_per_token: float, bytes_per_param: float = 2.0,
                       bandwidth_efficiency: float = 0.6, mfu: float = 0.5, n_gpus: int = 1) -> dict[str, float]:
    """One replica in steady state: ``batch`` sequences decode together, and every finished answer
    is replaced by a new request whose prefill runs *between* decode steps (chunked prefill,
    counted as serial GPU time: no overlap with the decode step is assumed).

    Each decode step gives every sequence one token, so ``batch / output_tokens`` requests finish
    per step on average and as many prefills must be interleaved per step. A user therefore waits
    ``effective_step_s = step_s + (batch / output_tokens) · prefill_s`` per token, where ``step_s``
    is :func:`decode_step` at the mean context ``prompt_tokens + output_tokens / 2`` and ``prefill_s``
    is :func:`prefill_seconds` of ``prompt_tokens``.

    Returns ``step_s``, ``prefill_s``, ``prefill_per_step_s``, ``effective_step_s``,
    ``tokens_per_s_per_sequence`` (``1 / effective_step_s``, what each user sees), ``requests_per_s``
    (``batch / (output_tokens · effective_step_s)``) and ``prefill_share`` of the GPU's time.
    """
    _number("output_tokens", output_tokens)
    _number("prompt_tokens", prompt_tokens, low_open=False)
    s = decode_step(n_params, gpu, batch=batch, context_tokens=prompt_tokens + output_tokens / 2,
                    kv_bytes_per_token=kv_bytes_per_token, bytes_per_param=bytes_per_param,
                    bandwidth_efficiency=bandwidth_efficiency, mfu=mfu, n_gpus=n_gpus)
    prefill = prefill_seconds(n_params, prompt_tokens, gpu, mfu=mfu, n_gpus=n_gpus)
    per_step = batch / output_tokens * prefill
    effective = s["step_s"] + per_step
    return {"step_s": s["step_s"], "prefill_s": prefill, "prefill_per_step_s": per_step,
            "effective_step_s": effective, "tokens_per_s_per_sequence": 1.0 / effective,
            "requests_per_s": batch / (output_tokens * effective), "prefill_share": per_step / effective}


def max_concurrent_sequences(n_params: float, gpu: str | ServingGPU, *, context_tokens: float,
                             kv_bytes_per_token: float, bytes_per_param: float = 2.0,
                             memory_fraction: float = 0.9, n_gpus: int = 1) -> int:
    """How many sequences of ``context_tokens`` fit in the KV cache of one replica: the memory left
    after the weights, of the ``memory_fraction`` usable (the rest is activations, the CUDA context
    and fragmentation; a paged cache, chapter 09 §9.5, keeps the last small). 0 if the weights do not fit."""
    g = _gpu(gpu)
    _number("n_params", n_params)
    _number("context_tokens", context_tokens)
    _number("kv_bytes_per_token", kv_bytes_per_token)
    _number("bytes_per_param", bytes_per_param)
    _number("memory_fraction", memory_fraction, high=1.0)
    check_positive_int("n_gpus", n_gpus)
    free = g.memory_gb * 1e9 * memory_fraction * n_gpus - n_params * bytes_per_param
    return max(0, int(free // (context_tokens * kv_bytes_per_token)))


def replicas_for_load(demand: float, capacity_per_replica: float, *, target_utilisation: float = 0.7,
                      spare: int = 0) -> int:
    """Replicas so that ``demand`` (any unit per second) keeps each below ``target_utilisation`` of
    ``capacity_per_replica`` (same unit), plus ``spare`` replicas for failover (``spare=1``: N+1)."""
    _number("demand", demand, low_open=False)
    _number("capacity_per_replica", capacity_per_replica)
    _number("target_utilisation", target_utilisation, high=1.0)
    check_positive_int("spare", spare, minimum=0)
    return max(1, math.ceil(demand / (capacity_per_replica * target_utilisation) - 1e-9)) + spare


# ---- a diffusion transformer ------------------------------------------------------------------

def _dit_shape(image_size, in_channels, patch, d_model, depth, d_text, mlp_ratio):
    for name, v in (("image_size", image_size), ("in_channels", in_channels), ("patch", patch),
                    ("d_model", d_model), ("depth", depth), ("d_text", d_text), ("mlp_ratio", mlp_ratio)):
        check_positive_int(name, v)
    if image_size % patch:
        raise ValueError(f"patch must divide image_size {image_size}, got {patch}")
    return (image_size // patch) ** 2, patch * patch * in_channels


def dit_params(*, image_size: int, in_channels: int, patch: int, d_model: int, depth: int, d_text: int,
               mlp_ratio: int = 4) -> dict[str, int]:
    """Parameters of :class:`genai_helpers.diffusion.dit.DiT` by part; ``"total"`` is the sum.

    ``image_size`` is the side of the (latent) image the denoiser sees, ``in_channels`` its channels.
    Per block: attention ``4d² + 4d``, MLP ``2·r·d² + (r+1)·d``, adaLN-Zero ``6d² + 6d`` (the
    condition makes six shift/scale/gate vectors); outside the blocks: patch embedding, learned
    positions, time MLP, prompt projection, output adaLN and head.
    """
    n_tokens, patch_dim = _dit_shape(image_size, in_channels, patch, d_model, depth, d_text, mlp_ratio)
    d = d_model
    per_block = (4 * d * d + 4 * d) + (2 * mlp_ratio * d * d + (mlp_ratio + 1) * d) + (6 * d * d + 6 * d)
    parts = {
        "per_block": per_block,
        "blocks": depth * per_block,
        "patch_embed": patch_dim * d + d,
        "positions": n_tokens * d,
        "time_mlp": 2 * (d * d + d),
        "text_proj": d_text * d + d,
        "out_ada": 2 * d * d + 2 * d,
        "head": d * patch_dim + patch_dim,
    }
    parts["total"] = sum(v for k, v in parts.items() if k != "per_block")
    return parts


def dit_forward_flops(*, image_size: int, in_channels: int, patch: int, d_model: int, depth: int, d_text: int,
                      mlp_ratio: int = 4, batch: int = 1) -> dict[str, float]:
    """FLOPs of one :class:`~genai_helpers.diffusion.dit.DiT` forward pass (2 per multiply-add),
    counting matrix multiplies only, as ``torch.utils.flop_counter.FlopCounterMode`` does.

    With ``N`` tokens: per block ``(24 + 2·(2r - 8))·N·d²`` — that is ``24·N·d²`` at ``r = 4`` —
    for the projections and MLP, ``4·N²·d`` for ``QKᵀ`` and ``A·V``, and ``12·d²`` for adaLN (once per
    image, not per token). Returns ``linear`` (per-token weights), ``attention`` (the ``N²`` part),
    ``conditioning`` (per-image weights) and ``total``, all for ``batch`` images.
    """
    n_tokens, patch_dim = _dit_shape(image_size, in_channels, patch, d_model, depth, d_text, mlp_ratio)
    check_positive_int("batch", batch)
    d, n = d_model, n_tokens
    linear = depth * 2 * n * (4 * d * d + 2 * mlp_ratio * d * d) + 2 * n * patch_dim * d * 2
    attention = depth * 4 * n * n * d
    conditioning = depth * 2 * 6 * d * d + 2 * (2 * d * d) + 2 * d_text * d + 2 * 2 * d * d
    total = linear + attention + conditioning
    return {k: float(batch * v) for k, v in
            (("linear", linear), ("attention", attention), ("conditioning", conditioning), ("total", total))}


# ---- a day of load and an autoscaler ------------------------------------------------------------

def _raised_cosine_power(shape: np.ndarray, trough_fraction: float, peak_to_mean: float) -> float:
    """The power ``k`` for which ``trough + (1 - trough)·shape**k`` has mean ``1 / peak_to_mean``
    (bisection on ``log k``; the mean falls as ``k`` grows)."""
    lo_ratio, hi_ratio = 1.0, 1.0 / trough_fraction if trough_fraction > 0 else math.inf
    if not lo_ratio < peak_to_mean < hi_ratio:
        raise ValueError(f"peak_to_mean must lie in (1, 1/trough_fraction) = (1, {hi_ratio:g}), got {peak_to_mean}")
    target = 1.0 / peak_to_mean

    def mean(k: float) -> float:
        return float(np.mean(trough_fraction + (1 - trough_fraction) * shape ** k))

    lo, hi = -12.0, 12.0                                               # log k
    if not mean(math.exp(hi)) <= target <= mean(math.exp(lo)):
        raise ValueError(f"peak_to_mean {peak_to_mean} cannot be reached with this grid")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean(math.exp(mid)) > target else (lo, mid)
    return math.exp(0.5 * (lo + hi))


def diurnal_load(*, peak_rps: float, trough_fraction: float = 0.25, hours: float = 24.0, step_s: float = 60.0,
                 peak_hour: float = 14.0, noise: float = 0.05, seed: int = 0,
                 peak_to_mean: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A day of traffic: requests per second at each ``step_s`` step, and the step times in hours.

    The mean follows ``trough_fraction·peak_rps + (1 - trough_fraction)·peak_rps·c**k`` with ``c`` a
    raised cosine, 1 at ``peak_hour`` and 0 twelve hours away. ``k = 1`` (the plain cosine) unless
    ``peak_to_mean`` is given: then ``k`` is solved so that the noise-free curve's mean over the
    steps is ``peak_rps / peak_to_mean`` (a larger ratio gives a sharper afternoon peak; it must lie
    in ``(1, 1/trough_fraction)``). Each step is multiplied by ``1 + noise·z`` with ``z`` standard
    normal (seeded by ``seed``), clipped at zero. Returns ``(hours_at_step, rps)``.
    """
    _number("peak_rps", peak_rps)
    _number("trough_fraction", trough_fraction, low_open=False, high=1.0)
    _number("hours", hours)
    _number("step_s", step_s)
    _number("peak_hour", peak_hour, low_open=False, high=24.0)
    _number("noise", noise, low_open=False, high=1.0)
    if peak_to_mean is not None:
        _number("peak_to_mean", peak_to_mean)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    n = int(round(hours * 3600 / step_s))
    if n < 2:
        raise ValueError(f"hours / step_s must give at least 2 steps, got {n}")
    t = np.arange(n) * step_s / 3600.0
    shape = 0.5 * (1 + np.cos(2 * np.pi * (t - peak_hour) / 24.0))           # 1 at the peak, 0 at the trough
    k = 1.0 if peak_to_mean is None else _raised_cosine_power(shape, trough_fraction, float(peak_to_mean))
    mean = peak_rps * (trough_fraction + (1 - trough_fraction) * shape ** k)
    rng = np.random.default_rng(seed)
    return t, np.clip(mean * (1 + noise * rng.standard_normal(n)), 0.0, None)


@dataclass
class AutoscaleResult:
    """One simulated day: ``replicas`` serving at each step, ``served`` and ``unserved`` requests per
    step (``unserved`` found every replica busy: queued past its latency target or dropped),
    ``utilisation`` of each step (load over the serving replicas' capacity; above 1 means requests
    went unserved, and queues already grow long well below 1), ``gpu_hours`` paid (replicas
    starting up are paid too) and ``unserved_fraction`` of all requests."""
    replicas: np.ndarray
    served: np.ndarray
    unserved: np.ndarray
    utilisation: np.ndarray
    gpu_hours: float
    unserved_fraction: float

    def steps_above(self, utilisation: float) -> int:
        """How many steps ran above ``utilisation`` (0-1 or more) of the serving capacity."""
        _number("utilisation", utilisation)
        return int(np.sum(self.utilisation > utilisation))


def simulate_autoscaler(load_rps, *, capacity_rps: float, step_s: float = 60.0, target_utilisation: float = 0.7,
                        scale_up_delay_steps: int = 5, scale_down_delay_steps: int = 15, min_replicas: int = 1,
                        max_replicas: int = 1000, gpus_per_replica: int = 1,
                        initial_replicas: int | None = None) -> AutoscaleResult:
    """Run a reactive autoscaler over ``load_rps`` (requests per second at each step of ``step_s``).

    Each replica serves up to ``capacity_rps``. At the end of every step the autoscaler reads the
    load it just saw and wants ``ceil(load / (capacity_rps·target_utilisation))`` replicas (within
    ``[min_replicas, max_replicas]``). It orders the missing ones at once; they are paid from then
    on but serve only ``scale_up_delay_steps`` steps later (a machine to boot, weights to load). It
    removes replicas only after the wish has stayed lower for ``scale_down_delay_steps`` steps
    (so a dip does not throw away capacity the next peak needs). Requests above the serving
    capacity of a step are counted as unserved (no backlog carries over: a chat request that waits
    minutes has failed anyway). ``min_replicas == max_replicas`` is fixed provisioning.
    ``initial_replicas`` serving at the start defaults to the wish for the first step's load.
    """
    load = np.asarray(load_rps, dtype=float)
    if load.ndim != 1 or load.size < 1 or not np.all(np.isfinite(load)) or np.any(load < 0):
        raise ValueError("load_rps must be a 1-d sequence of finite numbers >= 0")
    _number("capacity_rps", capacity_rps)
    _number("step_s", step_s)
    _number("target_utilisation", target_utilisation, high=1.0)
    check_positive_int("scale_up_delay_steps", scale_up_delay_steps, minimum=0)
    check_positive_int("scale_down_delay_steps", scale_down_delay_steps, minimum=0)
    check_positive_int("min_replicas", min_replicas)
    check_positive_int("max_replicas", max_replicas, minimum=min_replicas)
    check_positive_int("gpus_per_replica", gpus_per_replica)

    def wish(rps: float) -> int:
        return int(np.clip(math.ceil(rps / (capacity_rps * target_utilisation) - 1e-9), min_replicas, max_replicas))

    if initial_replicas is None:
        initial_replicas = wish(load[0])
    check_positive_int("initial_replicas", initial_replicas, minimum=min_replicas)
    serving, pending = initial_replicas, []           # pending: steps at which ordered replicas start serving
    low_for = 0
    replicas, served, unserved = np.zeros(load.size, int), np.zeros(load.size), np.zeros(load.size)
    paid = 0.0
    for i, rps in enumerate(load):
        serving += sum(1 for s in pending if s <= i)
        pending = [s for s in pending if s > i]
        replicas[i] = serving
        paid += (serving + len(pending)) * step_s
        demand = rps * step_s
        served[i] = min(demand, serving * capacity_rps * step_s)
        unserved[i] = demand - served[i]
        want = wish(rps)
        total = serving + len(pending)
        if want > total:
            pending += [i + 1 + scale_up_delay_steps] * (want - total)
            low_for = 0
        elif want < total:
            low_for += 1
            if low_for > scale_down_delay_steps:
                drop = total - want
                cancel = min(drop, len(pending))       # cancel orders not yet serving first
                pending = sorted(pending)[:len(pending) - cancel]
                serving -= drop - cancel
                low_for = 0
        else:
            low_for = 0
    total_requests = float(load.sum() * step_s)
    return AutoscaleResult(replicas=replicas, served=served, unserved=unserved,
                           utilisation=load / (replicas * capacity_rps), gpu_hours=paid * gpus_per_replica / 3600.0,
                           unserved_fraction=float(unserved.sum() / total_requests) if total_requests else 0.0)


# ---- load balancing and failover ----------------------------------------------------------------

BALANCER_POLICIES = ("round_robin", "random", "least_outstanding")


@dataclass
class BalancerResult:
    """Per request (in arrival order): ``latency`` (s, from its first arrival to completion),
    ``wait`` (s, ``latency`` minus the request's own service time: time spent queued, plus work
    lost on a failed replica), ``replica`` that completed it and ``retried`` (it was on a replica
    that failed)."""
    latency: np.ndarray
    wait: np.ndarray
    replica: np.ndarray
    retried: np.ndarray

    def p(self, q: float, mask=None, *, of: str = "wait") -> float:
        """The ``q``-th percentile (0-100) of ``of`` (``"wait"`` or ``"latency"``), optionally of
        the requests where ``mask`` is true."""
        check_choice("of", of, ("wait", "latency"))
        values = getattr(self, of)
        return float(np.percentile(values if mask is None else values[np.asarray(mask)], q))


def simulate_load_balancer(arrivals, service_s, *, n_replicas: int, policy: str = "least_outstanding",
                           slots: int = 1, failures: dict[int, float] | None = None, seed: int = 0) -> BalancerResult:
    """Route requests to ``n_replicas`` replicas and return every request's latency.

    ``arrivals`` (s, sorted) and ``service_s`` (s of work each request needs) have one entry per
    request. A replica serves up to ``slots`` requests at once, each at full speed (continuous
    batching with a fixed batch size), first come first served. Policies: ``"round_robin"``
    (the next replica in turn), ``"random"`` (seeded by ``seed``) and ``"least_outstanding"`` (the
    replica with the fewest requests assigned and not finished; ties to the lowest index). None of
    them knows a request's length. ``failures`` maps a replica to the time (s) it dies: from then on
    it gets nothing, and every request it had not finished is sent again, at that time, to the
    replicas still alive (its latency still counts from its first arrival).
    """
    t = np.asarray(arrivals, dtype=float)
    s = np.asarray(service_s, dtype=float)
    if t.ndim != 1 or s.shape != t.shape or t.size < 1:
        raise ValueError("arrivals and service_s must be 1-d sequences of the same, non-zero length")
    if not (np.all(np.isfinite(t)) and np.all(np.diff(t) >= 0) and t[0] >= 0):
        raise ValueError("arrivals must be finite, >= 0 and sorted")
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError("service_s must hold finite numbers > 0")
    check_positive_int("n_replicas", n_replicas)
    check_positive_int("slots", slots)
    check_choice("policy", policy, BALANCER_POLICIES)
    failures = dict(failures or {})
    for r, when in failures.items():
        if not isinstance(r, (int, np.integer)) or not 0 <= r < n_replicas:
            raise ValueError(f"failures keys must be replica indices in [0, {n_replicas - 1}], got {r!r}")
        _number(f"failures[{r}]", when, low_open=False)
    if len(failures) >= n_replicas:
        raise ValueError(f"failures must leave at least one replica alive, got {len(failures)} of {n_replicas}")

    rng = np.random.default_rng(seed)
    n = t.size
    done = np.full(n, np.nan)
    replica_of = np.full(n, -1)
    retried = np.zeros(n, bool)
    free_at = [[0.0] * slots for _ in range(n_replicas)]          # heap of slot-free times per replica
    running: list[list[tuple[float, int]]] = [[] for _ in range(n_replicas)]  # (finish, request) per replica
    alive = [True] * n_replicas
    deaths = sorted((when, r) for r, when in failures.items())
    events = [(float(t[i]), i) for i in range(n)]                  # (time sent to the balancer, request)
    heapq.heapify(events)
    turn = 0
    while events or deaths:
        if deaths and (not events or deaths[0][0] <= events[0][0]):   # a failure comes first
            when, r = deaths.pop(0)
            alive[r] = False
            for finish, j in running[r]:
                if finish > when:                                  # unfinished: retry elsewhere
                    retried[j] = True
                    heapq.heappush(events, (when, j))
            running[r] = []
            continue
        now, i = heapq.heappop(events)
        live = [r for r in range(n_replicas) if alive[r]]
        if policy == "round_robin":
            r = live[turn % len(live)]
            turn += 1
        elif policy == "random":
            r = live[int(rng.integers(len(live)))]
        else:
            running_now = [sum(1 for finish, _ in running[q] if finish > now) for q in live]
            r = live[int(np.argmin(running_now))]
        running[r] = [(f, j) for f, j in running[r] if f > now]
        start = max(now, heapq.heappop(free_at[r]))
        finish = start + s[i]
        heapq.heappush(free_at[r], finish)
        running[r].append((finish, i))
        done[i], replica_of[i] = finish, r
    return BalancerResult(latency=done - t, wait=np.maximum(done - t - s, 0.0), replica=replica_of, retried=retried)
