"""Continuous vs static batching on the same simulated request stream, one process.

    make bench            (or: python benchmarks/bench_serving.py)

A GPT (4 layers x 128 wide, context 256) serves 64 requests arriving as a Poisson stream whose rate
is set from a measured decoding step: requests come as fast as full batches could serve them. Prompts are 8-32 tokens; output lengths are long-tailed (4 to 160,
mean 32), as in real traffic. Both schedulers run the real model through the same batched engine
with at most 8 requests at once (``genai_helpers.serving``); static batching admits a new batch
only when the whole previous one is done, continuous batching refills free slots after every
decoding step. The first requests' tokens are checked equal to ``GPT.generate`` under both
policies (scheduling must not change answers). Results go to ``benchmarks/results/serving.json``. Nothing is asserted.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402
from genai_helpers.models.gpt import GPT, GPTConfig  # noqa: E402
from genai_helpers.runtime import get_device, seed_everything  # noqa: E402
from genai_helpers.serving import measure_step_seconds, poisson_requests, serve  # noqa: E402

N_REQUESTS, MAX_BATCH, MEAN_OUT = 64, 8, 32


def main() -> None:
    seed_everything(0)
    device = get_device()
    model = GPT(GPTConfig(vocab_size=65, block_size=256, n_layer=4, n_head=4, n_embd=128)).to(device).eval()
    with torch.no_grad():
        model.transformer.wte.weight.normal_(0.0, 1.0)     # clear argmax winners (see bench_gpt.py)
    _, decode_s = measure_step_seconds(model, MAX_BATCH)
    rate = MAX_BATCH / decode_s / MEAN_OUT       # offered load = what full batches could just sustain
    reqs = poisson_requests(N_REQUESTS, rate, prompt_len=(8, 32), output_len=(4, 160), output_mean=MEAN_OUT,
                            vocab_size=65, seed=0)
    for r in reqs:
        r.prompt = r.prompt.to(device)
    reports = {}
    for policy in ("static", "continuous"):
        reports[policy] = serve(model, reqs, policy=policy, max_batch=MAX_BATCH)
    for r, a, b in list(zip(reqs, reports["static"].outputs, reports["continuous"].outputs))[:4]:
        ref = model.generate(r.prompt[None], r.max_new_tokens, temperature=0)[0, r.prompt_len:].tolist()
        assert a == ref and b == ref, "a scheduler changed a request's answer"
    rows = [reports[p].summary() for p in ("static", "continuous")]
    ratio = rows[1]["throughput_tok_s"] / rows[0]["throughput_tok_s"]
    print(f"device={device}  torch={torch.__version__}  threads={torch.get_num_threads()}")
    print(f"{N_REQUESTS} requests at {rate:.1f}/s (decoding step {decode_s * 1e3:.1f} ms at {MAX_BATCH} rows), "
          f"max batch {MAX_BATCH}, {rows[0]['tokens']} tokens to generate")
    print(f"{'policy':<11} {'tok/s':>7} {'TTFT p50':>9} {'p95':>7} {'latency p50':>12} {'p95':>7} {'p99':>7} {'wasted rows':>12}")
    for r in rows:
        print(f"{r['policy']:<11} {r['throughput_tok_s']:7.0f} {r['ttft_p50_s']:9.2f} {r['ttft_p95_s']:7.2f} "
              f"{r['latency_p50_s']:12.2f} {r['latency_p95_s']:7.2f} {r['latency_p99_s']:7.2f} {r['wasted_row_steps']:12d}")
    print(f"continuous / static throughput: {ratio:.2f}x")
    write_results("serving", device, {"config": {"requests": N_REQUESTS, "rate_per_s": rate, "max_batch": MAX_BATCH,
                                                 "decode_step_s": decode_s, "prompt_len": [8, 32], "output_len": [4, 160],
                                                 "output_mean": MEAN_OUT,
                                                 "n_layer": 4, "n_embd": 128, "block_size": 256},
                                      "rows": rows, "continuous_over_static": ratio})


if __name__ == "__main__":
    main()
