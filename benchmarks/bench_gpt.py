"""The book's GPT against transformers' GPT2LMHeadModel, same size, same weights, one process.

    make bench            (or: python benchmarks/bench_gpt.py)

The model is nanoGPT's CPU configuration (4 layers x 128 wide, 4 heads, context 64, a 65-symbol
character vocabulary, batch 12). Logits are checked equal first (``GPT.to_hf_gpt2`` copies the
weights); then, alternating the two so that both see the same machine load:

- one AdamW training step (forward, cross-entropy, backward, update): median milliseconds;
- greedy ``generate`` with a KV cache, 16-token prompts and 48 new tokens, at batch 1 and 8
  (the generated tokens are checked equal first): tokens per second;
- model FLOP utilisation (MFU) of our training step: the model's FLOPs per step (nanoGPT's
  estimate, ``6 N + 12 L d T`` per token) divided by the step time and by the machine's measured
  float32 matmul peak (a 1024^3 matmul, best of 10).

Results go to ``benchmarks/results/gpt.json``. Nothing is asserted: times vary by machine.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, matmul_peak_flops, sync, write_results  # noqa: E402
from genai_helpers.models.gpt import GPT, GPTConfig  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402
from genai_helpers.runtime import get_device, seed_everything  # noqa: E402

VOCAB, BLOCK, LAYERS, WIDTH, HEADS, BATCH = 65, 64, 4, 128, 4, 12


def train_step_fn(model, opt, x, y, hf: bool):
    def step():
        logits = model(input_ids=x).logits if hf else model(x)[0]
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main() -> None:
    seed_everything(0)
    hf_logging.set_verbosity_error()           # the "pass an attention_mask" hint: inputs here are unpadded
    device = get_device()
    cfg = GPTConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=LAYERS, n_head=HEADS, n_embd=WIDTH, dropout=0.0)
    ours = GPT(cfg).to(device)
    hf = ours.to_hf_gpt2().to(device)
    hf.config.pad_token_id = 0
    x = torch.randint(0, VOCAB, (BATCH, BLOCK), device=device)
    y = torch.randint(0, VOCAB, (BATCH, BLOCK), device=device)
    with torch.no_grad():
        diff = float((ours(x)[0] - hf(input_ids=x).logits).abs().max())
    assert diff < 1e-4, f"logits differ by {diff}: fix before timing"
    print(f"device={device}  torch={torch.__version__}  threads={torch.get_num_threads()}  max |logit diff| {diff:.1e}")

    # ---- training step, alternating the two models ------------------------------------------
    ours.train(); hf.train()
    steps = {"ours": train_step_fn(ours, torch.optim.AdamW(ours.parameters(), lr=1e-3), x, y, False),
             "hf": train_step_fn(hf, torch.optim.AdamW(hf.parameters(), lr=1e-3), x, y, True)}
    times = {"ours": [], "hf": []}
    for _ in range(3):
        for fn in steps.values():
            fn()
    for _ in range(30):
        for name, fn in steps.items():
            sync(); t0 = time.perf_counter(); fn(); sync(); times[name].append(time.perf_counter() - t0)
    step_ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    step_ms_best = {k: min(v) * 1e3 for k, v in times.items()}

    n_params = ours.num_parameters() - ours.transformer.wpe.weight.numel()
    flops_per_step = (6 * n_params + 12 * LAYERS * WIDTH * BLOCK) * BATCH * BLOCK
    peak = matmul_peak_flops(device)
    mfu = flops_per_step / (step_ms["ours"] / 1e3) / peak

    # ---- greedy generation ------------------------------------------------------------------
    # A freshly initialised model has near-uniform logits, so batch-dependent float rounding can
    # flip a greedy argmax; unit-variance embeddings give clear winners. Same weights again in HF.
    with torch.no_grad():
        ours.transformer.wte.weight.normal_(0.0, 1.0)
    ours.eval()
    hf = ours.to_hf_gpt2().to(device).eval()
    hf.config.pad_token_id = 0
    gen_rows = []
    for bs in (1, 8):
        prompt = torch.randint(0, VOCAB, (bs, 16), device=device)
        new = BLOCK - 16
        a = ours.generate(prompt, new, temperature=0)
        mask = torch.ones_like(prompt)
        with torch.no_grad():
            b = hf.generate(prompt, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                            do_sample=False, use_cache=True, pad_token_id=0)
        assert torch.equal(a, b), f"generated tokens differ at batch {bs}: fix before timing"
        t_ours = best_of(lambda: ours.generate(prompt, new, temperature=0), repeats=5)
        with torch.no_grad():
            t_hf = best_of(lambda: hf.generate(prompt, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                                               do_sample=False, use_cache=True, pad_token_id=0), repeats=5)
        gen_rows.append({"batch": bs, "new_tokens": new, "ours_tok_s": bs * new / t_ours, "hf_tok_s": bs * new / t_hf,
                         "ours_over_hf_speed": t_hf / t_ours})

    print(f"\nGPT {LAYERS} layers x {WIDTH}, context {BLOCK}, batch {BATCH}, {n_params / 1e6:.2f}M parameters")
    print(f"{'training step (AdamW)':<34} {'ours ms':>9} {'HF ms':>9} {'HF/ours':>8}")
    print(f"{'median of 30':<34} {step_ms['ours']:9.1f} {step_ms['hf']:9.1f} {step_ms['hf'] / step_ms['ours']:8.2f}")
    print(f"{'best of 30':<34} {step_ms_best['ours']:9.1f} {step_ms_best['hf']:9.1f} "
          f"{step_ms_best['hf'] / step_ms_best['ours']:8.2f}")
    print(f"matmul peak {peak / 1e9:.0f} GFLOP/s; model {flops_per_step / 1e9:.2f} GFLOP/step -> "
          f"{flops_per_step / (step_ms['ours'] / 1e3) / 1e9:.0f} GFLOP/s, MFU {mfu:.1%}")
    print(f"\n{'greedy generate (KV cache)':<34} {'ours tok/s':>11} {'HF tok/s':>10} {'ours/HF':>8}")
    for r in gen_rows:
        print(f"{'batch ' + str(r['batch']) + ', ' + str(r['new_tokens']) + ' new tokens':<34} {r['ours_tok_s']:11.0f} "
              f"{r['hf_tok_s']:10.0f} {r['ours_over_hf_speed']:8.2f}")
    write_results("gpt", device, {
        "config": {"vocab_size": VOCAB, "block_size": BLOCK, "n_layer": LAYERS, "n_embd": WIDTH, "n_head": HEADS,
                   "batch": BATCH, "params_excluding_positions": n_params},
        "max_abs_logit_diff": diff,
        "train_step_ms": {"ours_median": step_ms["ours"], "hf_median": step_ms["hf"], "ours_best": step_ms_best["ours"],
                          "hf_best": step_ms_best["hf"], "hf_over_ours": step_ms["hf"] / step_ms["ours"]},
        "mfu": {"flops_per_step": flops_per_step, "matmul_peak_flops": peak, "achieved_flops": flops_per_step / (step_ms["ours"] / 1e3),
                "mfu": mfu},
        "generate": gen_rows})


if __name__ == "__main__":
    main()
