"""The book's GPT against nanoGPT's ``model.py`` and transformers' GPT2LMHeadModel, in one process.

    make bench            (or: python benchmarks/bench_gpt.py [--rounds 40])

The model is nanoGPT's CPU configuration (4 layers x 128 wide, 4 heads, context 64, a 65-symbol
character vocabulary, batch 12, dropout 0, biases on). All models get the same weights (nanoGPT's
state-dict keys are ours; ``GPT.to_hf_gpt2`` converts for transformers), the same batch and the same
optimizer: nanoGPT's ``configure_optimizers`` (AdamW, lr 1e-3, betas (0.9, 0.99) as in its
shakespeare_char config, weight decay 0.1 on matrices only; the fused kernel only on CUDA, as
nanoGPT's train.py does, so on CPU the default per-tensor loop for every model).

Checked first: our logits equal transformers' (max |diff| printed, must be < 1e-4), and equal
nanoGPT's once nanoGPT's activation is switched to GPT-2's tanh GELU. nanoGPT as shipped uses the
exact erf GELU (``nn.GELU()``), a slightly different function from GPT-2's tanh approximation
(``gelu_new``), which ours keeps by default so that it matches GPT-2 checkpoints
(``GPTConfig(activation="gelu")`` switches ours to the exact form). Each ratio pairs two models that
compute the same function: ours with ``activation="gelu"`` against nanoGPT as shipped (the
headline), and ours (tanh) against nanoGPT switched to tanh and against transformers. Two nanoGPTs are timed:

- ``nanogpt``: its ``model.py`` unchanged (vendored in ``benchmarks/nanogpt_model.py``);
- ``nanogpt_tanh``: the same, each block's ``mlp.gelu`` set to ``nn.GELU(approximate="tanh")``,
  i.e. exactly our function: the difference between ``nanogpt`` and ``nanogpt_tanh`` is the price
  of GPT-2's activation, not of anyone's code.

Training step = forward with targets (cross-entropy inside the model, as nanoGPT does it),
``zero_grad(set_to_none=True)``, backward, AdamW step. The machine is shared, so the models are
timed in interleaved rounds (:func:`_common.interleaved_times`: shuffled order each round, one
untimed step then the median of 3 timed steps per visit); the ratio reported is the median over
rounds of the per-round ratio ours / theirs, with its quartiles.

MFU. FLOPs are counted the nanoGPT / PaLM (Chowdhery et al. 2022, app. B) way: per token
``6 N + 12 L d T`` with N the parameters without the position table (the tied token embedding
counts once, as the output projection), L layers, width d, context T: ``6 N`` is the forward
(2 FLOPs per weight) and backward (4) of every weight matrix, ``12 L d T`` the attention scores
and weighted sum (2 matmuls of 2 T d FLOPs per token and layer, x3 for forward plus backward;
causal masking is not discounted). LayerNorm, GELU, softmax, the loss and AdamW count nothing.
The peak is a float32 1024 x 1024 x 1024 matmul (best of 5) measured once per round, in between
the training steps, so that it sees the same load; MFU = FLOPs per step / median step time /
median peak. The model's own largest matmul shape (B*T x d x 4d) is timed too: small matmuls do
not reach the square peak, and that bounds what any implementation of this model can get.

Also timed against transformers: greedy ``generate`` with a KV cache, 16-token prompts and 48
new tokens, at batch 1 and 8 (tokens checked equal first). nanoGPT's ``generate`` has no KV cache,
so it is not compared there.

Results go to ``benchmarks/results/gpt.json`` (chapter 09 reads it). Nothing is asserted about
times: they vary by machine and by what else runs on it.
"""
from __future__ import annotations

import argparse
import dataclasses
import contextlib
import io
import statistics
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import nanogpt_model  # noqa: E402  (vendored, MIT; see its header)
from _common import best_of, interleaved_times, median_ci, quartiles, write_results  # noqa: E402
from genai_helpers.models.gpt import GPT, GPTConfig  # noqa: E402
from genai_helpers.runtime import get_device, seed_everything  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

VOCAB, BLOCK, LAYERS, WIDTH, HEADS, BATCH = 65, 64, 4, 128, 4, 12
LR, BETAS, WEIGHT_DECAY = 1e-3, (0.9, 0.99), 0.1


def make_optimizer(model: nn.Module, device) -> torch.optim.AdamW:
    """nanoGPT's ``configure_optimizers``, applied to any model: decay matrices, not vectors."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS, fused=(device.type == "cuda"))


def nanogpt(device, gelu: str = "none") -> nn.Module:
    cfg = nanogpt_model.GPTConfig(block_size=BLOCK, vocab_size=VOCAB, n_layer=LAYERS, n_head=HEADS, n_embd=WIDTH,
                                  dropout=0.0, bias=True)
    with contextlib.redirect_stdout(io.StringIO()):        # it prints its parameter count
        model = nanogpt_model.GPT(cfg)
    if gelu != "none":
        for block in model.transformer.h:
            block.mlp.gelu = nn.GELU(approximate=gelu)
    return model.to(device)


def train_step_fn(model, opt, x, y, hf: bool):
    def step():
        if hf:                                   # same unshifted loss as the others (y is already the target)
            logits = model(input_ids=x).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        else:
            _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40, help="interleaved timing rounds (default 40)")
    args = ap.parse_args()
    if args.rounds < 2:
        raise ValueError(f"--rounds must be >= 2, got {args.rounds}")
    seed_everything(0)
    hf_logging.set_verbosity_error()           # the "pass an attention_mask" hint: inputs here are unpadded
    device = get_device()
    cfg = GPTConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=LAYERS, n_head=HEADS, n_embd=WIDTH, dropout=0.0)
    ours = GPT(cfg).to(device)
    ours_erf = GPT(dataclasses.replace(cfg, activation="gelu")).to(device)
    models = {"ours": ours, "ours_erf": ours_erf, "nanogpt": nanogpt(device), "nanogpt_tanh": nanogpt(device, "tanh")}
    for name in ("ours_erf", "nanogpt", "nanogpt_tanh"):
        models[name].load_state_dict(ours.state_dict())          # same keys, same weights (tied lm_head)
    hf = ours.to_hf_gpt2().to(device)
    hf.config.pad_token_id = 0
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randint(0, VOCAB, (BATCH, BLOCK), generator=gen).to(device)
    y = torch.randint(0, VOCAB, (BATCH, BLOCK), generator=gen).to(device)

    with torch.no_grad():
        ref = ours(x)[0]
        diff = float((ref - hf(input_ids=x).logits).abs().max())
        # with targets, nanoGPT returns the logits of every position (without, only the last one's)
        diffs_nano = {}
        for name in ("nanogpt", "nanogpt_tanh"):
            logits, loss = models[name](x, y)
            diffs_nano[name] = float((ref - logits).abs().max())
        diff_erf = float((ours_erf(x)[0] - models["nanogpt"](x, y)[0]).abs().max())
    assert diff < 1e-4, f"logits differ from transformers' by {diff}: fix before timing"
    assert diffs_nano["nanogpt_tanh"] < 1e-4, f"logits differ from nanoGPT (tanh GELU) by {diffs_nano['nanogpt_tanh']}"
    assert diff_erf < 1e-4, f"ours with activation='gelu' differs from nanoGPT as shipped by {diff_erf}"
    print(f"device={device}  torch={torch.__version__}  threads={torch.get_num_threads()}  "
          f"cpu={torch.backends.cpu.get_cpu_capability() if device.type == 'cpu' else '-'}")
    print(f"max |logit diff| vs transformers {diff:.1e}; vs nanoGPT with tanh GELU {diffs_nano['nanogpt_tanh']:.1e}; "
          f"vs nanoGPT as shipped (erf GELU) {diffs_nano['nanogpt']:.1e}; "
          f"ours with activation='gelu' vs nanoGPT as shipped {diff_erf:.1e}")

    # ---- training step, interleaved rounds -----------------------------------------------------
    for m in models.values():
        m.train()
    hf.train()
    steps = {name: train_step_fn(m, make_optimizer(m, device), x, y, False) for name, m in models.items()}
    steps["hf"] = train_step_fn(hf, make_optimizer(hf, device), x, y, True)
    peaks = []
    a = torch.randn(1024, 1024, device=device)
    b = torch.randn(1024, 1024, device=device)
    peaks_mlp = []
    am = torch.randn(BATCH * BLOCK, WIDTH, device=device)
    bm = torch.randn(WIDTH, 4 * WIDTH, device=device)

    def measure_peaks():
        peaks.append(2 * 1024 ** 3 / best_of(lambda: a @ b, repeats=5, warmup=1))
        peaks_mlp.append(2 * BATCH * BLOCK * WIDTH * 4 * WIDTH / best_of(lambda: am @ bm, repeats=5, warmup=1))

    for fn in steps.values():                                    # warm-up: allocator, kernels, AdamW state
        for _ in range(3):
            fn()
    times = interleaved_times(steps, rounds=args.rounds, per_visit=3, seed=0, between=measure_peaks)
    step_ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    # Each comparison pairs ours with the reference that computes the same function.
    pairs = {"nanogpt": "ours_erf", "nanogpt_tanh": "ours", "hf": "ours"}
    ratio = {k: [o / t for o, t in zip(times[pairs[k]], times[k])] for k in pairs}
    ratio_q = {k: quartiles(v) for k, v in ratio.items()}
    ratio_ci = {k: median_ci(v) for k, v in ratio.items()}

    n_params = ours.num_parameters() - ours.transformer.wpe.weight.numel()
    flops_per_step = (6 * n_params + 12 * LAYERS * WIDTH * BLOCK) * BATCH * BLOCK
    peak, peak_mlp = statistics.median(peaks), statistics.median(peaks_mlp)
    mfu = {k: flops_per_step / (step_ms[k] / 1e3) / peak for k in step_ms}

    # ---- greedy generation against transformers -------------------------------------------------
    # A freshly initialised model has near-uniform logits, so batch-dependent float rounding can
    # flip a greedy argmax; unit-variance embeddings give clear winners. Same weights again in HF.
    with torch.no_grad():
        ours.transformer.wte.weight.normal_(0.0, 1.0)
    ours.eval()
    hf = ours.to_hf_gpt2().to(device).eval()
    hf.config.pad_token_id = 0
    gen_rows = []
    for bs in (1, 8):
        prompt = torch.randint(0, VOCAB, (bs, 16), generator=gen).to(device)
        new = BLOCK - 16
        out_ours = ours.generate(prompt, new, temperature=0)
        mask = torch.ones_like(prompt)
        with torch.no_grad():
            out_hf = hf.generate(prompt, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                                 do_sample=False, use_cache=True, pad_token_id=0)
        assert torch.equal(out_ours, out_hf), f"generated tokens differ at batch {bs}: fix before timing"
        t_ours = best_of(lambda: ours.generate(prompt, new, temperature=0), repeats=5)
        with torch.no_grad():
            t_hf = best_of(lambda: hf.generate(prompt, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                                               do_sample=False, use_cache=True, pad_token_id=0), repeats=5)
        gen_rows.append({"batch": bs, "new_tokens": new, "ours_tok_s": bs * new / t_ours, "hf_tok_s": bs * new / t_hf,
                         "ours_over_hf_speed": t_hf / t_ours})

    # ---- report ---------------------------------------------------------------------------------
    labels = {"nanogpt": "nanoGPT model.py (erf GELU)", "nanogpt_tanh": "nanoGPT, GPT-2's tanh GELU",
              "hf": "transformers GPT2LMHeadModel (tanh)"}
    print(f"\nGPT {LAYERS} layers x {WIDTH}, context {BLOCK}, batch {BATCH}, {n_params / 1e6:.2f}M parameters; "
          f"AdamW training step, {args.rounds} interleaved rounds")
    print(f"{'model':<32} {'median ms':>10} {'MFU':>6}   ours / it: median of rounds [95% CI of median] (quartiles)")
    print(f"{'ours (tanh GELU, the default)':<32} {step_ms['ours']:10.1f} {mfu['ours']:6.1%}")
    print(f"{'ours, activation=gelu (erf)':<32} {step_ms['ours_erf']:10.1f} {mfu['ours_erf']:6.1%}")
    print("ratios pair ours with the reference that computes the same function: erf vs nanoGPT as shipped, "
          "tanh vs the others")
    for k, label in labels.items():
        q1, q2, q3 = ratio_q[k]
        lo, hi = ratio_ci[k]
        print(f"{label:<32} {step_ms[k]:10.1f} {mfu[k]:6.1%}   {q2:.3f} [{lo:.3f}, {hi:.3f}] ({q1:.3f}, {q3:.3f})")
    print(f"matmul peak (1024^3 fp32, median over rounds of best of 5) {peak / 1e9:.0f} GFLOP/s "
          f"(max {max(peaks) / 1e9:.0f}); "
          f"the model's MLP matmul ({BATCH * BLOCK}x{WIDTH}x{4 * WIDTH}) {peak_mlp / 1e9:.0f} GFLOP/s; "
          f"model {flops_per_step / 1e9:.2f} GFLOP/step -> ours {flops_per_step / (step_ms['ours'] / 1e3) / 1e9:.0f} GFLOP/s, "
          f"MFU {mfu['ours']:.1%} of the median peak, {flops_per_step / (step_ms['ours'] / 1e3) / max(peaks):.1%} of the max")
    print(f"\n{'greedy generate (KV cache)':<34} {'ours tok/s':>11} {'HF tok/s':>10} {'ours/HF':>8}")
    for r in gen_rows:
        print(f"{'batch ' + str(r['batch']) + ', ' + str(r['new_tokens']) + ' new tokens':<34} {r['ours_tok_s']:11.0f} "
              f"{r['hf_tok_s']:10.0f} {r['ours_over_hf_speed']:8.2f}")
    write_results("gpt", device, {
        "config": {"vocab_size": VOCAB, "block_size": BLOCK, "n_layer": LAYERS, "n_embd": WIDTH, "n_head": HEADS,
                   "batch": BATCH, "params_excluding_positions": n_params,
                   "optimizer": f"AdamW lr={LR} betas={BETAS} weight_decay={WEIGHT_DECAY} (matrices only), "
                                f"fused={device.type == 'cuda'}",
                   "timing": f"{args.rounds} interleaved rounds, shuffled order, 1 untimed + median of 3 steps per visit"},
        "max_abs_logit_diff": diff,
        "max_abs_logit_diff_nanogpt": diffs_nano,
        "train_step_ms": {"ours_median": step_ms["ours"], "ours_erf_median": step_ms["ours_erf"],
                          "nanogpt_median": step_ms["nanogpt"],
                          "nanogpt_tanh_median": step_ms["nanogpt_tanh"], "hf_median": step_ms["hf"],
                          "ours_over_nanogpt": ratio_q["nanogpt"][1],        # ours_erf / nanoGPT as shipped
                          "ours_over_nanogpt_quartiles": ratio_q["nanogpt"],
                          "ours_over_nanogpt_median_ci95": ratio_ci["nanogpt"],
                          "ours_over_nanogpt_tanh": ratio_q["nanogpt_tanh"][1],
                          "ours_over_nanogpt_tanh_quartiles": ratio_q["nanogpt_tanh"],
                          "ours_over_nanogpt_tanh_median_ci95": ratio_ci["nanogpt_tanh"],
                          "hf_over_ours": 1 / ratio_q["hf"][1],
                          "rounds": args.rounds},
        "mfu": {"flops_per_step": flops_per_step, "flops_formula": "(6 N + 12 L d T) * B * T, N without wpe",
                "matmul_peak_flops": peak, "matmul_peak_shape": [1024, 1024, 1024],
                "matmul_peak_flops_max_over_rounds": max(peaks),
                "mfu_vs_max_peak": flops_per_step / (step_ms["ours"] / 1e3) / max(peaks),
                "mlp_matmul_flops": peak_mlp, "mlp_matmul_shape": [BATCH * BLOCK, WIDTH, 4 * WIDTH],
                "achieved_flops": flops_per_step / (step_ms["ours"] / 1e3), "mfu": mfu["ours"],
                "mfu_nanogpt": mfu["nanogpt"], "mfu_hf": mfu["hf"]},
        "generate": gen_rows})


if __name__ == "__main__":
    main()
