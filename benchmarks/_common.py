"""Shared bits of the benchmarks: best-of timing, the machine's matmul peak, the results file."""
from __future__ import annotations

import datetime as dt
import json
import platform
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


def matmul_peak_flops(device, n=1024, repeats=10, dtype=torch.float32) -> float:
    """Measured FLOP/s of an n x n x n matmul (best of ``repeats``): the machine's practical peak."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = best_of(lambda: a @ b, repeats=repeats, warmup=2)
    return 2 * n ** 3 / t


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
