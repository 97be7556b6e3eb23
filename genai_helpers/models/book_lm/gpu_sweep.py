"""The book LM's ``gpu=`` size, picked by a data-constrained sweep on a lent GPU.

The CPU model is compute-limited (its 1.2e14 FLOPs see 2.7 epochs of the corpus); a GPU is not, so
there the corpus is the limit: every run here trains for ``EPOCHS`` passes over the training
tokens (about 25 M tokens, the most repeated data is worth; Muennighoff et al. 2023) and the sweep
asks which size and peak learning rate give the lowest validation loss for that data. Two extra runs
repeat the shipped CPU recipe (3x128 at 1.2e14 FLOPs) at its learning rate and at 3x it, to check
on the full budget the learning-rate probe that was run on CPU at a tenth of it.

Runs go in priority order and stop before ``TIME_LIMIT_S`` is spent (a lease is 15 minutes);
every finished run is appended to ``<out>/gpu_sweep.json`` at once. The shipped run (the smallest
size within ``TOLERANCE_NATS`` of the lowest validation loss, among sizes whose fp16 weights fit
``MAX_WEIGHT_BYTES``) is saved as fp16 safetensors,
split into shards of at most 15 MiB (files back from the lent machine are capped at 16 MiB);
``python -m genai_helpers.models.book_lm.gpu_sweep --join <folder> --work <work>`` joins them,
stores them as weight-only int8 (no measurable loss; half the bytes) in ``book_lm-gpu.safetensors``
and writes ``manifest-gpu.json`` beside the CPU model.

Inputs: ``--work`` holds ``train.npy``, ``val.npy``, ``test.npy`` (the token arrays
``pretrain.prepare`` writes) and ``test.txt`` (the corpus's test
documents), so the lent machine needs neither the Debian packages nor the corpus build.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from pathlib import Path

from . import (BOOK_LM_DIR, INT8_GROUP, TOKENIZER, BookTokenizer, _read_weights, _sha256, bits_per_byte, narrative_text,
               save_int8)
from .pretrain import (BATCH_SIZE, BLOCK_SIZE, SEED, docs_bits_per_byte, eval_loss, flops_per_token, load_tokens,
                       model_config, sample_texts, save_weights, train_run, _machine)
from ..gpt import GPT, GPTConfig
from ...checkpoint import write_atomic
from ...data.book_corpus import DOC_SEP

__all__ = ["EPOCHS", "RUNS", "MAX_WEIGHT_BYTES", "TIME_LIMIT_S", "TOLERANCE_NATS", "join", "main"]

EPOCHS = 4.0
MAX_WEIGHT_BYTES = 40 * 2**20
TIME_LIMIT_S = 420.0
SHARD_BYTES = 15 * 2**20
#: Runs within this many nats of the lowest validation loss count as tied (two learning rates of one
#: shape differed by 0.011 nats here), and the smallest tied size is shipped.
TOLERANCE_NATS = 0.02
#: The runs in priority order, each n_layer, n_embd, n_head, peak learning rate and budget (the
#: string "epochs" for EPOCHS passes over the training tokens, else training FLOPs).
RUNS = (
    (6, 384, 6, 1e-3, "epochs"),
    (3, 128, 4, 2e-3, 1.2e14),
    (3, 128, 4, 6e-3, 1.2e14),
    (4, 256, 4, 2e-3, "epochs"),
    (8, 384, 6, 1e-3, "epochs"),
    (6, 384, 6, 2e-3, "epochs"),
    (4, 256, 4, 1e-3, "epochs"),
    (8, 384, 6, 5e-4, "epochs"),
)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=False)
    ap.add_argument("--out", type=Path, required=False)
    ap.add_argument("--time-limit", type=float, default=TIME_LIMIT_S)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every budget (a smoke test: 0.001)")
    ap.add_argument("--runs", default=None, help="only these runs, e.g. 8x384@1e-3,4x256@2e-3 (4 epochs each)")
    ap.add_argument("--beat", type=float, default=math.inf,
                    help="the lowest validation loss of earlier calls (for the choice across calls)")
    ap.add_argument("--join", type=Path, default=None, help="join the shards in this folder into the package")
    args = ap.parse_args(argv)
    if args.join is not None:
        return join(args.join, args.work)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    tok = BookTokenizer.from_file(BOOK_LM_DIR / TOKENIZER)
    train_tokens = int(load_tokens("train", args.work).numel())
    test_docs = (args.work / "test.txt").read_text(encoding="utf-8").split(DOC_SEP)
    narrative = narrative_text()
    results, candidates = [], []
    runs = RUNS
    if args.runs:
        heads = {(L, d): h for L, d, h, _, _ in RUNS}
        runs = []
        for item in args.runs.split(","):
            shape, lr = item.split("@")
            L, d = map(int, shape.split("x"))
            runs.append((L, d, heads.get((L, d), max(1, d // 64)), float(lr), "epochs"))
    for (L, d, h, lr, budget) in runs:
        config = model_config(L, d, h)
        fpt = flops_per_token(config)
        flops = (EPOCHS * train_tokens * fpt if budget == "epochs" else budget) * args.scale
        weight_bytes = 2 * (12 * L * d * d + config.vocab_size * d)
        elapsed = time.time() - t_start
        steps = flops / (fpt * BATCH_SIZE * BLOCK_SIZE)
        prev = results[-1] if results else None     # time per step grows about with depth (launch-bound)
        guess = prev["seconds"] * steps / prev["steps"] * max(1.0, L / prev["n_layer"]) + 15 if prev else 0
        if elapsed + guess > args.time_limit:
            print(f"skip {L}x{d} lr {lr:g}: {elapsed:.0f} s spent, about {guess:.0f} s more would pass the limit",
                  flush=True)
            continue
        tag = f"gpu-{L}x{d}-lr{lr:g}-{budget}"
        r = train_run(config, flops, args.work, tag=tag, progress=False, eval_every=1000, lr=lr,
                      checkpoint_every=10**9)
        model = r["model"].eval()
        rec = {"n_layer": L, "n_embd": d, "n_head": h, "lr": lr, "budget": budget, "flops": r["flops"],
               "steps": r["steps"], "tokens": r["tokens"], "epochs": r["tokens"] / train_tokens,
               "params": r["params"], "seconds": round(r["seconds"], 1), "tokens_per_s": round(r["tokens_per_s"]),
               "val_nats_per_token": eval_loss(model, load_tokens("val", args.work), 256, seed=1),
               "test_nats_per_token": eval_loss(model, load_tokens("test", args.work), 256, seed=2),
               "evals": r["evals"], "fits_40MB": weight_bytes <= MAX_WEIGHT_BYTES}
        rec["bits_per_byte"] = {"test": docs_bits_per_byte(model, tok, test_docs, batch_size=64),
                                "narrative": bits_per_byte(model, tok, narrative)}
        print(json.dumps({k: v for k, v in rec.items() if k != "evals"}), flush=True)
        results.append(rec)
        if rec["fits_40MB"] and budget == "epochs":
            candidates.append((rec, model.cpu(), config))
        write_atomic(args.out / "gpu_sweep.json", json.dumps({"machine": _machine(), "batch_size": BATCH_SIZE,
                                                             "block_size": BLOCK_SIZE, "epochs": EPOCHS,
                                                             "train_tokens": train_tokens, "runs": results}, indent=1))
    lowest = min([c[0]["val_nats_per_token"] for c in candidates] + [args.beat])
    near = [c for c in candidates if c[0]["val_nats_per_token"] <= lowest + TOLERANCE_NATS]
    if not near:
        return
    rec, model, config = min(near, key=lambda c: (c[0]["params"], c[0]["val_nats_per_token"]))
    samples = sample_texts(model, tok)
    full = Path("/tmp/book_lm-gpu.safetensors")
    save_weights(model, full)
    blob = full.read_bytes()
    for i in range(0, len(blob), SHARD_BYTES):
        (args.out / f"book_lm-gpu.part{i // SHARD_BYTES}").write_bytes(blob[i:i + SHARD_BYTES])
    man = {"name": "book_lm", "size": "gpu", "config": config.__dict__, "seed": SEED,
           "chosen_by": f"gpu_sweep.json: the smallest size within {TOLERANCE_NATS} nats of the lowest validation loss "
                        "at 4 epochs (one seed per run cannot resolve less), among sizes within 40 MB of fp16",
           "training": {k: rec[k] for k in ("lr", "steps", "tokens", "epochs", "flops", "seconds", "tokens_per_s")}
           | {"batch_size": BATCH_SIZE, "precision": "bf16 autocast", "machine": _machine()},
           "params": rec["params"],
           "loss": {"val_nats_per_token": rec["val_nats_per_token"], "test_nats_per_token": rec["test_nats_per_token"]},
           "bits_per_byte": rec["bits_per_byte"], "samples_top_p_0.9": samples, "weights_dtype": "float16",
           "sha256": _sha256(full), "bytes": len(blob)}
    write_atomic(args.out / "manifest-gpu.json", json.dumps(man, indent=1))
    for s in samples:
        print("---", s)


def join(folder: Path, work: Path | None = None) -> None:
    """Join the fp16 shards ``book_lm-gpu.part*`` in ``folder`` (checked against the sha256 of
    ``manifest-gpu.json``), store them as weight-only int8 (``save_int8``) in the package as
    ``book_lm-gpu.safetensors``, and write ``manifest-gpu.json`` with the int8 file's sha256 and the
    validation and test loss of both (measured here, on the same windows; ``work`` holds val.npy and
    test.npy)."""
    from safetensors.torch import load
    parts = sorted(folder.glob("book_lm-gpu.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    man = json.loads((folder / "manifest-gpu.json").read_text())
    blob = b"".join(p.read_bytes() for p in parts)
    if hashlib.sha256(blob).hexdigest() != man["sha256"]:
        raise ValueError("the joined shards do not match the manifest's sha256")
    state = load(blob)
    dest = BOOK_LM_DIR / "book_lm-gpu.safetensors"
    save_int8(state, dest)
    losses = {}
    for name, st in (("fp16", state), ("int8", None)):
        model = GPT(GPTConfig(**man["config"]))
        if st is None:
            st = _read_weights(dest)
        model.load_state_dict({k: v.float() for k, v in st.items()}, strict=False)
        model.eval()
        losses[name] = {"val_nats_per_token": eval_loss(model, load_tokens("val", work), 256, seed=1),
                        "test_nats_per_token": eval_loss(model, load_tokens("test", work), 256, seed=2),
                        "narrative_bits_per_byte": bits_per_byte(model, BookTokenizer.from_file(BOOK_LM_DIR / TOKENIZER),
                                                                 narrative_text())}
    man["fp16_sha256"], man["fp16_bytes"] = man["sha256"], man["bytes"]
    man["sha256"], man["bytes"] = _sha256(dest), dest.stat().st_size
    man["weights_dtype"] = f"int8 weight-only (group {INT8_GROUP}, fp16 scales); norms fp16"
    man["loss_fp16_vs_int8_cpu"] = losses
    write_atomic(BOOK_LM_DIR / "manifest-gpu.json", json.dumps(man, indent=1))
    print(f"{dest} ({man['bytes']:,} bytes, fp16 was {man['fp16_bytes']:,}); {json.dumps(losses)}")


if __name__ == "__main__":
    main()
