"""Shared bits of the benchmarks: best-of and interleaved timing, the machine's matmul peak, the results file."""
from __future__ import annotations

import datetime as dt
import json
import math
import platform
import random
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_of(fn, repeats=5, warmup=1):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); sync(); times.append(time.perf_counter() - t0)
    return min(times)


def matmul_peak_flops(device, n=1024, repeats=10, dtype=torch.float32, shape=None) -> float:
    """Measured FLOP/s of a float32 matmul (best of ``repeats``): the machine's practical peak.

    ``shape=(m, k, n)`` times an ``(m, k) @ (k, n)`` product (2 m k n FLOPs); by default a square
    ``n x n x n`` one. Call it in the same run as the thing it is a peak for, since a shared
    machine's peak moves with the load.
    """
    m, k, n = shape if shape is not None else (n, n, n)
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    t = best_of(lambda: a @ b, repeats=repeats, warmup=2)
    return 2 * m * k * n / t


def interleaved_times(fns: dict, rounds: int = 40, per_visit: int = 3, seed: int = 0, between=None) -> dict:
    """Time several callables side by side on a machine whose load changes under us.

    Each round visits every callable once, in a freshly shuffled order (so none always runs first,
    or right after a given other); a visit runs it once untimed (its weights and buffers back in
    cache, as in a real loop that runs one model) and then ``per_visit`` timed calls, and keeps
    their median. ``between()``, when given, runs once per round (e.g. a peak measurement that
    should see the same load). Returns ``{name: [median seconds of each round]}``; compare two
    callables with the median over rounds of their per-round ratio, which cancels load drifts
    slower than a round.
    """
    rng = random.Random(seed)
    names = list(fns)
    out = {k: [] for k in names}
    for _ in range(rounds):
        rng.shuffle(names)
        for k in names:
            fn = fns[k]
            fn(); sync()
            ts = []
            for _ in range(per_visit):
                t0 = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t0)
            out[k].append(statistics.median(ts))
        if between is not None:
            between()
    return out


def quartiles(xs) -> tuple[float, float, float]:
    """(25th, 50th, 75th) percentiles of ``xs`` (at least two values)."""
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def median_ci(xs, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free ~95% interval for the median of ``xs``: the order statistics at ranks
    n/2 -+ z sqrt(n)/2 (binomial sign-test interval; needs no assumption about the noise)."""
    s = sorted(xs)
    n = len(s)
    half = z * n ** 0.5 / 2
    lo, hi = max(0, int(n / 2 - half)), min(n - 1, int(math.ceil(n / 2 + half)) - 1)
    return s[lo], s[hi]


def write_results(name: str, device, payload: dict) -> Path:
    """``benchmarks/results/<name>.json`` with device, versions and date, beside the figures."""
    import transformers
    out = RESULTS / f"{name}.json"
    RESULTS.mkdir(exist_ok=True)
    meta = {"device": str(device), "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": torch.get_num_threads(), "machine": platform.machine(), "date": dt.date.today().isoformat()}
    out.write_text(json.dumps({**meta, **payload}, indent=1))
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return out
