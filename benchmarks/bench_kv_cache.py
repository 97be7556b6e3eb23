"""Generation with and without the KV cache, at 128, 512 and 1024 tokens, one process.

    make bench            (or: python benchmarks/bench_kv_cache.py)

Without a cache, token ``t`` re-runs the whole model over all ``t`` tokens so far (quadratic in
length); with it, each step feeds one token and attends to stored keys and values (linear). Both
paths of ``GPT.generate`` are checked to produce the same greedy tokens first. Model: 4 layers x
128 wide, 4 heads, context 1024, 65-symbol vocabulary; a 1-token prompt, greedy decoding to the
full length. Results go to ``benchmarks/results/kv_cache.json``. Nothing is asserted.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, write_results  # noqa: E402
from genai_helpers.models.gpt import GPT, GPTConfig  # noqa: E402
from genai_helpers.runtime import get_device, seed_everything  # noqa: E402

LENGTHS = (128, 512, 1024)


def main() -> None:
    seed_everything(0)
    device = get_device()
    model = GPT(GPTConfig(vocab_size=65, block_size=max(LENGTHS), n_layer=4, n_head=4, n_embd=128)).to(device).eval()
    with torch.no_grad():
        model.transformer.wte.weight.normal_(0.0, 1.0)     # clear argmax winners (see bench_gpt.py)
    prompt = torch.zeros(1, 1, dtype=torch.long, device=device)
    check = 128
    a = model.generate(prompt, check, temperature=0, use_cache=True)
    b = model.generate(prompt, check, temperature=0, use_cache=False)
    assert torch.equal(a, b), "cached and uncached generation differ: fix before timing"
    rows = []
    for L in LENGTHS:
        new = L - 1
        t_cached = best_of(lambda: model.generate(prompt, new, temperature=0, use_cache=True), repeats=3)
        t_plain = best_of(lambda: model.generate(prompt, new, temperature=0, use_cache=False), repeats=1, warmup=0)
        rows.append({"tokens": L, "cached_s": t_cached, "uncached_s": t_plain, "cached_tok_s": new / t_cached,
                     "uncached_tok_s": new / t_plain, "speedup": t_plain / t_cached})
    print(f"device={device}  torch={torch.__version__}  threads={torch.get_num_threads()}")
    print(f"{'tokens':>7} {'cached s':>9} {'uncached s':>11} {'cached tok/s':>13} {'uncached tok/s':>15} {'speed-up':>9}")
    for r in rows:
        print(f"{r['tokens']:7d} {r['cached_s']:9.2f} {r['uncached_s']:11.2f} {r['cached_tok_s']:13.0f} "
              f"{r['uncached_tok_s']:15.0f} {r['speedup']:8.1f}x")
    write_results("kv_cache", device, {"config": {"n_layer": 4, "n_embd": 128, "n_head": 4, "vocab_size": 65,
                                                  "prompt_tokens": 1}, "rows": rows})


if __name__ == "__main__":
    main()
