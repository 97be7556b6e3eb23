"""Attention side by side: the book's implementations against PyTorch's, in one run.

    make bench            (or: python benchmarks/bench_attention.py)

Outputs are checked equal first; then each pair is timed (best of several runs) and the ratio
printed. ``ours_explicit`` is the readable path that also returns the weights (what chapter 01
uses to draw heatmaps); ``ours_fused`` is what the models use when weights are not requested.
Results go to ``benchmarks/results/attention.json`` with device, versions and date, so prose and
tables can quote them without drifting. Nothing here is asserted: times vary by machine.
"""
from __future__ import annotations

import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genai_helpers.attention import MultiHeadAttention, scaled_dot_product_attention  # noqa: E402
from genai_helpers.runtime import get_device, seed_everything  # noqa: E402


def best_of(fn, repeats=7):
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn(); sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); sync(); times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    seed_everything(0)
    device = get_device()
    d_model, heads, batch = 256, 4, 4
    rows = []
    with torch.no_grad():
        for T in (128, 512, 1024):
            q, k, v = (torch.randn(batch, heads, T, d_model // heads, device=device) for _ in range(3))
            ours, _ = scaled_dot_product_attention(q, k, v, is_causal=True)
            ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            assert torch.allclose(ours, ref, atol=1e-4), "outputs differ: fix before timing"
            t_ours = best_of(lambda: scaled_dot_product_attention(q, k, v, is_causal=True))
            t_ref = best_of(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
            rows.append({"what": "sdpa explicit (returns weights) vs F.sdpa", "T": T,
                         "ours_ms": t_ours * 1e3, "ref_ms": t_ref * 1e3, "ratio": t_ours / t_ref})

            x = torch.randn(batch, T, d_model, device=device)
            mha = MultiHeadAttention(d_model, heads).to(device).eval()
            torch_mha = nn.MultiheadAttention(d_model, heads, batch_first=True).to(device).eval()
            torch_mha.in_proj_weight.copy_(torch.cat([mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight]))
            torch_mha.in_proj_bias.copy_(torch.cat([mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias]))
            torch_mha.out_proj.load_state_dict(mha.out_proj.state_dict())
            mask = ~torch.ones(T, T, dtype=torch.bool, device=device).tril()
            ref_out = torch_mha(x, x, x, attn_mask=mask, need_weights=False)[0]
            assert torch.allclose(mha(x, is_causal=True), ref_out, atol=1e-4), "MHA outputs differ"
            t_ours = best_of(lambda: mha(x, is_causal=True))
            t_ref = best_of(lambda: torch_mha(x, x, x, attn_mask=mask, need_weights=False))
            rows.append({"what": "MultiHeadAttention (fused) vs nn.MultiheadAttention", "T": T,
                         "ours_ms": t_ours * 1e3, "ref_ms": t_ref * 1e3, "ratio": t_ours / t_ref})

    print(f"device={device}  torch={torch.__version__}  threads={torch.get_num_threads()}")
    print(f"{'comparison':<54} {'T':>5} {'ours ms':>9} {'ref ms':>9} {'ours/ref':>9}")
    for r in rows:
        print(f"{r['what']:<54} {r['T']:>5} {r['ours_ms']:9.2f} {r['ref_ms']:9.2f} {r['ratio']:9.2f}")
    out = Path(__file__).parent / "results" / "attention.json"
    out.write_text(json.dumps({
        "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}", "date": dt.date.today().isoformat(), "rows": rows}, indent=1))
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    main()
