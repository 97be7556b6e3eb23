"""Serving the book LM: batching, prefix caching, chunked prefill and int8, side by side in one process.

    make bench            (or: python benchmarks/bench_serving.py)

The model is the book's pretrained LM (``load_book_lm``: 3 layers x 128, RoPE, context 128);
prompts are windows of its held-out narrative text. Every comparison runs the same requests through
the same engine (``genai_helpers.serving``) and checks that the lever does not change a single
token: every request's greedy output is asserted equal to ``model.generate``.

1. **Static vs continuous batching**: 64 requests, Poisson arrivals at the rate full batches of 8
   could just sustain (from a measured decoding step); throughput, TTFT and TPOT percentiles.
2. **Prefix caching**: 48 requests that share one of three 64-token system prompts, continuous
   batching with and without :class:`~genai_helpers.serving.prefix_cache.PrefixKVCache`
   (blocks of 16 tokens); prefix hit rate and TTFT.
3. **Chunked prefill**: 24 short requests decoding while 8 long prompts (100 tokens) arrive;
   the longest wait between two tokens of a running request (p95) and the long prompts' TTFT,
   with and without ``prefill_chunk=16``.
4. **int8**: PyTorch's dynamic int8 quantisation of the Linear layers (a real int8 kernel on CPU)
   against fp32: greedy tokens/s at batch 1 and 8 in interleaved rounds, weight bytes, and bits
   per byte on the held-out text.
5. **Ours vs transformers**: the same weights converted with ``GPT.to_hf_neox`` (GPT-NeoX is the
   Hugging Face layout of a RoPE GPT), logits compared and greedy tokens asserted equal, then our
   KV-cached ``generate`` against ``GPTNeoXForCausalLM.generate`` (``use_cache=True``) at batch 1
   and 8, for the chapters' book LM and the bigger gpu-size book LM (6 x 384, 12.2M parameters).
6. **Speculative vs plain decoding**: the gpu-size book LM as target, the chapters' book LM (same
   tokenizer, 11x fewer parameters) as draft, greedy, k = 2, 3, 4 draft tokens per round; every
   output asserted equal to the target's own greedy tokens. Reported beside the speed-up: the
   measured acceptance rate, the draft/target cost ratio c per token, and the speed-up Leviathan et
   al. (2023) predict from them, ``(1 - a^(k+1)) / ((1 - a)(k c + 1))``.

Times are wall-clock on a shared machine: read the ratios, which pair runs made one after the
other, more than the absolute numbers. Results go to ``benchmarks/results/serving.json``.
Nothing is asserted about speed.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_times, quartiles, write_results  # noqa: E402
from genai_helpers.models.book_lm import bits_per_byte, load_book_lm, narrative_text  # noqa: E402
from genai_helpers.runtime import get_device, seed_everything  # noqa: E402
from genai_helpers.serving.speculative import autoregressive_generate, speculative_generate  # noqa: E402
from genai_helpers.serving import (PrefixKVCache, Request, measure_step_seconds, poisson_requests,  # noqa: E402
                                   quantize_int8_dynamic, serve, state_bytes)

N_REQUESTS, MAX_BATCH, MEAN_OUT = 64, 8, 32


def check_tokens(model, reqs, report, what: str) -> None:
    for r, out in zip(reqs, report.outputs):
        ref = model.generate(r.prompt[None], r.max_new_tokens, temperature=0)[0, r.prompt_len:].tolist()
        assert out == ref, f"{what} changed the answer of request {r.id}"


def window(stream: torch.Tensor, rng: np.random.Generator, n: int) -> torch.Tensor:
    start = int(rng.integers(0, stream.numel() - n))
    return stream[start:start + n].clone()


def batching(model, stream, device) -> dict:
    _, decode_s = measure_step_seconds(model, MAX_BATCH)
    rate = MAX_BATCH / decode_s / MEAN_OUT            # offered load = what full batches could just sustain
    reqs = poisson_requests(N_REQUESTS, rate, prompt_len=(8, 32), output_len=(4, 90), output_mean=MEAN_OUT,
                            token_stream=stream, seed=0)
    for r in reqs:
        r.prompt = r.prompt.to(device)
    reports = {p: serve(model, reqs, policy=p, max_batch=MAX_BATCH) for p in ("static", "continuous")}
    for p, rep in reports.items():
        check_tokens(model, reqs, rep, f"{p} batching")
    rows = [reports[p].summary() for p in ("static", "continuous")]
    ratio = rows[1]["throughput_tok_s"] / rows[0]["throughput_tok_s"]
    print(f"1. {N_REQUESTS} requests at {rate:.1f}/s (decoding step {decode_s * 1e3:.1f} ms at {MAX_BATCH} rows), "
          f"max batch {MAX_BATCH}, {rows[0]['tokens']} tokens")
    print(f"   {'policy':<11} {'tok/s':>7} {'TTFT p50':>9} {'p95':>7} {'TPOT p50':>9} {'p95':>7} {'latency p95':>12}")
    for r in rows:
        print(f"   {r['policy']:<11} {r['throughput_tok_s']:7.0f} {r['ttft_p50_s']:9.3f} {r['ttft_p95_s']:7.3f} "
              f"{r['tpot_p50_s']:9.4f} {r['tpot_p95_s']:7.4f} {r['latency_p95_s']:12.3f}")
    print(f"   continuous / static throughput: {ratio:.2f}x")
    return {"config": {"requests": N_REQUESTS, "rate_per_s": rate, "max_batch": MAX_BATCH, "decode_step_s": decode_s,
                       "prompt_len": [8, 32], "output_len": [4, 90], "output_mean": MEAN_OUT, "model": "book_lm"},
            "rows": rows, "continuous_over_static": ratio}


def prefix_caching(model, stream, device) -> dict:
    rng = np.random.default_rng(1)
    systems = [window(stream, rng, 64) for _ in range(3)]
    reqs = []
    for k in range(48):
        prompt = torch.cat([systems[k % 3], window(stream, rng, int(rng.integers(4, 13)))]).to(device)
        reqs.append(Request(id=k, arrival=0.004 * k, prompt=prompt, max_new_tokens=int(rng.integers(8, 25))))
    out = {}
    for name, pc in (("off", None), ("on", PrefixKVCache(block_size=16, max_blocks=64))):
        rep = serve(model, reqs, policy="continuous", max_batch=MAX_BATCH, prefix_cache=pc)
        check_tokens(model, reqs, rep, f"prefix caching {name}")
        out[name] = {**rep.summary(), "prefix_hit_rate": pc.hit_rate if pc else 0.0}
    ratio = out["off"]["ttft_p50_s"] / out["on"]["ttft_p50_s"]
    print(f"2. 48 requests sharing three 64-token system prompts: prefix hit rate {out['on']['prefix_hit_rate']:.2f}; "
          f"TTFT p50 {out['off']['ttft_p50_s'] * 1e3:.1f} -> {out['on']['ttft_p50_s'] * 1e3:.1f} ms ({ratio:.2f}x), "
          f"p95 {out['off']['ttft_p95_s'] * 1e3:.1f} -> {out['on']['ttft_p95_s'] * 1e3:.1f} ms")
    return {**out, "ttft_p50_off_over_on": ratio}


def chunked_prefill(model, stream, device) -> dict:
    rng = np.random.default_rng(2)
    reqs = [Request(id=k, arrival=0.002 * k, prompt=window(stream, rng, 8).to(device), max_new_tokens=60)
            for k in range(24)]
    reqs += [Request(id=24 + k, arrival=0.02 + 0.01 * k, prompt=window(stream, rng, 100).to(device), max_new_tokens=8)
             for k in range(8)]
    out = {}
    for name, chunk in (("whole", None), ("chunk_16", 16)):
        rep = serve(model, reqs, policy="continuous", max_batch=MAX_BATCH, prefill_chunk=chunk)
        check_tokens(model, reqs, rep, f"prefill {name}")
        out[name] = {"short_max_gap_p95_s": float(np.percentile(rep.max_gap[:24], 95)),
                     "long_ttft_p50_s": float(np.median(rep.ttft[24:])), **rep.summary()}
    g = out["whole"]["short_max_gap_p95_s"] / out["chunk_16"]["short_max_gap_p95_s"]
    print(f"3. 24 short requests decoding while 8 100-token prompts arrive: longest inter-token wait p95 "
          f"{out['whole']['short_max_gap_p95_s'] * 1e3:.1f} -> {out['chunk_16']['short_max_gap_p95_s'] * 1e3:.1f} ms "
          f"({g:.2f}x shorter with 16-token chunks); long prompts' TTFT p50 "
          f"{out['whole']['long_ttft_p50_s'] * 1e3:.1f} -> {out['chunk_16']['long_ttft_p50_s'] * 1e3:.1f} ms")
    return {**out, "gap_p95_whole_over_chunked": g}


def int8(model, tok, device) -> dict:
    if device.type != "cpu":
        print("4. int8 dynamic quantisation runs on CPU only: skipped")
        return {}
    q = quantize_int8_dynamic(model)
    text = narrative_text()
    bpb = {"fp32": bits_per_byte(model, tok, text), "int8_dynamic": bits_per_byte(q, tok, text)}
    prompt = torch.tensor(tok.encode("The morning was cold, and the road"))[None]
    rows = {}
    for batch in (1, 8):
        p = prompt.repeat(batch, 1)
        fns = {"fp32": lambda p=p: model.generate(p, 48, temperature=0),
               "int8": lambda p=p: q.generate(p, 48, temperature=0)}
        times = interleaved_times(fns, rounds=8, per_visit=2)
        ratios = [a / b for a, b in zip(times["fp32"], times["int8"])]
        rows[batch] = {"fp32_tok_s": batch * 48 / statistics.median(times["fp32"]),
                       "int8_tok_s": batch * 48 / statistics.median(times["int8"]),
                       "int8_speedup": statistics.median(ratios), "int8_speedup_quartiles": quartiles(ratios)}
    sizes = {"fp32_bytes": state_bytes(model), "int8_dynamic_bytes": state_bytes(q)}
    print(f"4. int8 dynamic (Linear layers): weights {sizes['fp32_bytes'] / 2**20:.2f} -> "
          f"{sizes['int8_dynamic_bytes'] / 2**20:.2f} MiB; bits per byte {bpb['fp32']:.3f} -> {bpb['int8_dynamic']:.3f}")
    for b, r in rows.items():
        print(f"   greedy, batch {b}: fp32 {r['fp32_tok_s']:.0f} tok/s, int8 {r['int8_tok_s']:.0f} tok/s "
              f"(int8 / fp32 speed {r['int8_speedup']:.2f}x, quartiles {r['int8_speedup_quartiles'][0]:.2f}-"
              f"{r['int8_speedup_quartiles'][2]:.2f})")
    return {"bits_per_byte": bpb, **sizes, "generate": {str(b): r for b, r in rows.items()}}


def versus_transformers(models: dict, stream, device) -> dict:
    out = {}
    rng = np.random.default_rng(3)
    for name, model in models.items():
        hf = model.to_hf_neox().to(device)
        x = window(stream, rng, 100)[None].to(device)
        diff = float((model(x)[0] - hf(x).logits).abs().max())
        assert diff < 1e-4, f"{name}: logits differ from transformers' by {diff}"
        rows = {}
        for batch in (1, 8):
            p = torch.stack([window(stream, rng, 16) for _ in range(batch)]).to(device)
            mask = torch.ones_like(p)
            hf_gen = lambda p=p, mask=mask: hf.generate(p, attention_mask=mask, max_new_tokens=48, min_new_tokens=48,
                                                         do_sample=False, use_cache=True, pad_token_id=0)
            ours_gen = lambda p=p: model.generate(p, 48, temperature=0)
            assert torch.equal(ours_gen(), hf_gen()), f"{name}: greedy tokens differ from transformers' at batch {batch}"
            times = interleaved_times({"ours": ours_gen, "hf": hf_gen}, rounds=6, per_visit=2)
            ratios = [h / o for o, h in zip(times["ours"], times["hf"])]
            rows[str(batch)] = {"ours_tok_s": batch * 48 / statistics.median(times["ours"]),
                                "hf_tok_s": batch * 48 / statistics.median(times["hf"]),
                                "ours_over_hf_speed": statistics.median(ratios),
                                "ours_over_hf_speed_quartiles": quartiles(ratios)}
        out[name] = {"params": model.num_parameters(), "max_abs_logit_diff": diff, "generate": rows}
        print(f"5. {name} ({model.num_parameters() / 1e6:.1f}M) vs transformers GPTNeoXForCausalLM, same weights "
              f"(max |logit diff| {diff:.1e}, greedy tokens equal):")
        for b, r in rows.items():
            print(f"   greedy, batch {b}: ours {r['ours_tok_s']:.0f} tok/s, HF {r['hf_tok_s']:.0f} tok/s, "
                  f"ours / HF speed {r['ours_over_hf_speed']:.2f}x (quartiles {r['ours_over_hf_speed_quartiles'][0]:.2f}-"
                  f"{r['ours_over_hf_speed_quartiles'][2]:.2f})")
    return out


def speculative(target, draft, stream) -> dict:
    rng = np.random.default_rng(4)
    prompts = [window(stream, rng, 24).tolist() for _ in range(8)]
    new = 64
    plain = {}
    for i, p in enumerate(prompts):
        plain[i] = autoregressive_generate(target, p, new, temperature=0)[0]
    per_token = {}
    for name, m in (("target", target), ("draft", draft)):
        per_token[name] = statistics.median(autoregressive_generate(m, prompts[0], new, temperature=0)[1]
                                            for _ in range(3)) / new
    c = per_token["draft"] / per_token["target"]
    rows = {}
    for k in (2, 3, 4):
        fns = {"plain": lambda: [autoregressive_generate(target, p, new, temperature=0) for p in prompts],
               "speculative": lambda k=k: [speculative_generate(target, draft, p, new, k=k, temperature=0)
                                           for p in prompts]}
        runs = fns["speculative"]()
        stats = [s for _, s in runs]
        for i, (toks, _) in enumerate(runs):
            assert toks == plain[i], f"speculative decoding (k={k}) changed prompt {i}'s greedy tokens"
        times = interleaved_times(fns, rounds=3, per_visit=1)
        ratios = [a / b for a, b in zip(times["plain"], times["speculative"])]
        accepted, checked = sum(s.accepted for s in stats), sum(s.checked for s in stats)
        a = accepted / checked
        predicted = (k + 1 if a == 1 else (1 - a ** (k + 1)) / (1 - a)) / (k * c + 1)
        rows[str(k)] = {"speedup": statistics.median(ratios), "speedup_quartiles": quartiles(ratios),
                        "acceptance_rate": a, "tokens_per_round": sum(len(x) for x in plain.values())
                        / sum(s.rounds for s in stats), "predicted_speedup": predicted}
    print(f"6. speculative decoding, target gpu-size book LM ({target.num_parameters() / 1e6:.1f}M), draft the "
          f"chapters' book LM ({draft.num_parameters() / 1e6:.1f}M), greedy, {len(prompts)} prompts x {new} tokens, "
          f"outputs equal to the target's; draft/target time per token c = {c:.2f}")
    for k, r in rows.items():
        print(f"   k={k}: speed-up {r['speedup']:.2f}x (quartiles {r['speedup_quartiles'][0]:.2f}-"
              f"{r['speedup_quartiles'][2]:.2f}), acceptance {r['acceptance_rate']:.2f}, tokens per target call "
              f"{r['tokens_per_round']:.2f}, predicted from acceptance and c: {r['predicted_speedup']:.2f}x")
    return {"prompts": len(prompts), "new_tokens": new, "draft_over_target_time_per_token": c,
            "target_s_per_token": per_token["target"], "draft_s_per_token": per_token["draft"], "by_k": rows}


def main() -> None:
    seed_everything(0)
    device = get_device()
    model, tok = load_book_lm(device)
    model.eval()
    stream = torch.tensor(tok.encode(narrative_text()))
    print(f"device={device}  torch={torch.__version__}  threads={torch.get_num_threads()}  "
          f"model=book LM ({model.num_parameters():,} parameters)")
    with torch.no_grad():
        results = batching(model, stream, device)
        results["prefix_caching"] = prefix_caching(model, stream, device)
        results["chunked_prefill"] = chunked_prefill(model, stream, device)
        results["int8"] = int8(model, tok, device)
        big, big_tok = load_book_lm(device, size="gpu")
        assert big_tok.encode(narrative_text()[:2000]) == tok.encode(narrative_text()[:2000]), "tokenizers differ"
        results["vs_transformers"] = versus_transformers({"book_lm": model, "book_lm_gpu": big}, stream, device)
        results["speculative"] = speculative(big, model, stream)
    write_results("serving", device, results)


if __name__ == "__main__":
    main()
