"""Train chapter 5's English -> Spanish Bible translator once, and ship it.

    python -m genai_helpers.models.bible_mt.pretrain --prepare --work .mtwork      # here: data + tokenizer
    python -m genai_helpers.models.bible_mt.pretrain --sweep --work .mtwork --out OUT --seconds 300
    python -m genai_helpers.models.bible_mt.pretrain --join OUT --work .mtwork      # here: int8 + manifest

``--prepare`` exports the two Bibles (Debian's SWORD modules), splits them by reference exactly as
the chapter does (``split_by_reference(valid_percent=1, test_percent=1)``), trains one joint
English+Spanish BPE on the training verses and writes the splits as JSON, so a lent GPU needs neither
the Debian packages nor ``mod2imp``. ``--sweep`` trains every run of :data:`RUNS` at once, one process
each, for the same wall-clock budget (the learning rate follows the elapsed fraction of it), scores
greedy BLEU on the validation verses for several decoding settings, and only then the test verses:
the run and the decoding setting are chosen on validation BLEU. ``--join`` stores the chosen run as
weight-only int8 beside the tokenizer, with ``manifest.json`` and the training history.

The recipe is the low-resource one (Sennrich and Zhang, 2019): a small transformer, one shared
subword vocabulary with tied embeddings, strong dropout, label smoothing 0.1, many epochs.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ...checkpoint import write_atomic
from ..seq2seq import Seq2SeqConfig, Seq2SeqTransformer

__all__ = ["RUNS", "VOCAB_SIZE", "MAX_TOKENS", "prepare", "load_splits", "model_config", "train_run", "decode_bleu",
           "sweep", "join", "main"]

VOCAB_SIZE = 8000          # one BPE for both languages (tied source, target and output embeddings)
MAX_TOKENS = 160           # verses longer than this (either side) are left out of training only
MAX_LEN = 256              # the model's position table: longest source or output
SEED = 0
LABEL_SMOOTHING = 0.1
BATCH_PAIRS = 192
#: Every run of the sweep, by name, with its settings. All share the vocabulary, the data and the
#: wall-clock budget, and sizes stay at most about 8 M parameters (the int8 file must stay small
#: enough to ship).
RUNS = {
    "base": dict(d_model=256, layers=(3, 3), dropout=0.3, lr=1e-3, dae=0.0),
    "lr2e-3": dict(d_model=256, layers=(3, 3), dropout=0.3, lr=2e-3, dae=0.0),
    "lr5e-4": dict(d_model=256, layers=(3, 3), dropout=0.3, lr=5e-4, dae=0.0),
    "drop0.1": dict(d_model=256, layers=(3, 3), dropout=0.1, lr=1e-3, dae=0.0),
    "enc4dec2": dict(d_model=256, layers=(4, 2), dropout=0.3, lr=1e-3, dae=0.0),
    "dae": dict(d_model=256, layers=(3, 3), dropout=0.3, lr=1e-3, dae=0.25),
}
#: Decoding settings tried on the validation verses (greedy; n = no_repeat_ngram_size, 0 = off).
NO_REPEAT = (0, 3, 4)


def prepare(work: str | os.PathLike) -> dict:
    """Export, split and tokenise the Bible pairs into ``work`` (``splits.json.gz``, ``tokenizer.json``)."""
    from ...data import translation as T
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    pairs = T.load_bible_pairs()
    split = T.split_by_reference(pairs, valid_percent=1, test_percent=1)
    data = {k: [[p.ref, p.source, p.target] for p in v] for k, v in split.items()}
    vocab = T.SubwordVocab.train([p.source for p in split["train"]] + [p.target for p in split["train"]],
                                 vocab_size=VOCAB_SIZE)
    vocab.save(work / "tokenizer.json")
    write_atomic(work / "splits.json.gz", gzip.compress(json.dumps(data, ensure_ascii=False).encode(), mtime=0))
    return {k: len(v) for k, v in data.items()}


def load_splits(work: str | os.PathLike) -> dict[str, list[list[str]]]:
    return json.loads(gzip.decompress((Path(work) / "splits.json.gz").read_bytes()))


def model_config(vocab_size: int, run: dict) -> Seq2SeqConfig:
    enc, dec = run["layers"]
    return Seq2SeqConfig(vocab_size, vocab_size, d_model=run["d_model"], n_heads=4, n_encoder_layers=enc,
                         n_decoder_layers=dec, dropout=run["dropout"], max_len=MAX_LEN, share_embeddings=True,
                         embed_init_std=run["d_model"] ** -0.5)


def _lr_factor(progress: float, warmup: float = 0.03, floor: float = 0.05) -> float:
    if progress < warmup:
        return progress / warmup
    p = min(1.0, (progress - warmup) / (1 - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))


def _batch(src, tgt, device):
    from ...data import translation as T
    s, ti, to = T.seq2seq_batch(src, tgt)
    return s.to(device), ti.to(device), to.to(device)


@torch.no_grad()
def decode_bleu(model, vocab, sources, references, device, *, no_repeat_ngram_size=0, batch=128):
    """Greedy translations of ``sources`` (the shipped :class:`~genai_helpers.models.bible_mt.Translator`'s
    batching and length rule; bf16 on a GPU) and their corpus BLEU (sacrebleu)."""
    import sacrebleu
    from . import Translator
    mt = Translator(model, vocab, no_repeat_ngram_size)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = mt.translate(list(sources), batch_size=batch)
    return out, sacrebleu.corpus_bleu(out, [list(references)]).score


def train_run(name: str, work: str | os.PathLike, out: str | os.PathLike, seconds: float,
              device: str | None = None, evals: int = 12, eval_limit: int | None = None) -> dict:
    """Train run ``name`` of :data:`RUNS` (``name@seed`` for another seed than ``SEED``) for ``seconds`` of wall clock; write ``<out>/<name>.safetensors``
    (fp16) and ``<out>/<name>.json`` (history, validation BLEU per decoding setting, test BLEU)."""
    from safetensors.torch import save
    from ...data import translation as T
    key, _, seed = name.partition("@")                   # "drop0.1@2": run drop0.1 with seed 2
    run, seed = RUNS[key], int(seed or SEED)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    work, out = Path(work), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = T.SubwordVocab.load(work / "tokenizer.json")
    data = load_splits(work)
    src = [vocab.encode(s) for _, s, _ in data["train"]]
    tgt = [vocab.encode(t) for _, _, t in data["train"]]
    keep = [i for i in range(len(src)) if len(src[i]) <= MAX_TOKENS and len(tgt[i]) <= MAX_TOKENS]
    src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
    val, test = data["valid"][:eval_limit], data["test"][:eval_limit]
    vsrc = [vocab.encode(s)[:MAX_TOKENS] for _, s, _ in val]
    vtgt = [vocab.encode(t)[:MAX_TOKENS] for _, _, t in val]
    torch.manual_seed(seed)
    model = Seq2SeqTransformer(model_config(len(vocab), run)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=run["lr"], betas=(0.9, 0.98), weight_decay=0.01)
    g = torch.Generator().manual_seed(seed + 1)
    import random
    rng = random.Random(seed + 2)
    hist = {"step": [], "seconds": [], "train_loss": [], "lr": [], "eval_step": [], "eval_seconds": [],
            "valid_loss": [], "valid_bleu": [], "epochs": []}
    t0, step, tokens, running = time.perf_counter(), 0, 0, []
    next_eval = 0.0
    autocast = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    while True:
        elapsed = time.perf_counter() - t0
        progress = elapsed / seconds
        if elapsed >= next_eval or progress >= 1:
            model.eval()
            with torch.no_grad(), torch.autocast(**autocast):
                vl = []
                for k in range(0, len(vsrc), 128):
                    s, ti, to = _batch(vsrc[k:k + 128], vtgt[k:k + 128], dev)
                    logits, _ = model(s, ti)
                    vl.append((F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), to.reshape(-1),
                                               ignore_index=T.PAD, reduction="sum").item(), int((to != T.PAD).sum())))
            _, vb = decode_bleu(model, vocab, [s for _, s, _ in val], [t for _, _, t in val], dev)
            hist["eval_step"].append(step)
            hist["eval_seconds"].append(round(elapsed, 1))
            hist["valid_loss"].append(sum(a for a, _ in vl) / sum(b for _, b in vl))
            hist["valid_bleu"].append(vb)
            print(f"[{name}] step {step} {elapsed:.0f}s epoch {step * BATCH_PAIRS / len(src):.1f} "
                  f"valid loss {hist['valid_loss'][-1]:.3f} BLEU {vb:.2f}", flush=True)
            next_eval = elapsed + seconds / max(1, evals)
            model.train()
            if progress >= 1:
                break
        lr = run["lr"] * _lr_factor(progress)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(src), (BATCH_PAIRS,), generator=g).tolist()
        if run["dae"] and rng.random() < run["dae"]:
            # denoising on the Spanish side: a masked verse in, the verse out (the decoder learns Spanish)
            bs = [T.mask_spans(tgt[j], rng, mask_ratio=0.35) for j in idx]
            bt = [tgt[j] for j in idx]
        else:
            bs, bt = [src[j] for j in idx], [tgt[j] for j in idx]
        s, ti, to = _batch(bs, bt, dev)
        with torch.autocast(**autocast):
            logits, _ = model(s, ti)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), to.reshape(-1), ignore_index=T.PAD,
                               label_smoothing=LABEL_SMOOTHING)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += int((to != T.PAD).sum())
        running.append(loss.item() if step % 10 == 0 else None)
        if step % 50 == 0:
            vals = [v for v in running if v is not None]
            hist["step"].append(step)
            hist["seconds"].append(round(time.perf_counter() - t0, 1))
            hist["train_loss"].append(sum(vals) / max(1, len(vals)))
            hist["lr"].append(lr)
            hist["epochs"].append(step * BATCH_PAIRS / len(src))
            running = []
    train_s = time.perf_counter() - t0
    # choose the decoding setting on validation, then score the test verses once
    settings = {}
    for n in NO_REPEAT:
        _, settings[n] = decode_bleu(model, vocab, [s for _, s, _ in val], [t for _, _, t in val], dev,
                                     no_repeat_ngram_size=n)
    best_n = max(settings, key=settings.get)
    hyps, test_bleu = decode_bleu(model, vocab, [s for _, s, _ in test], [t for _, _, t in test], dev,
                                  no_repeat_ngram_size=best_n)
    # the source embedding is the target embedding (tied): stored once, the loader restores it
    state = {k: v.detach().half().cpu().contiguous() for k, v in model.state_dict().items() if k != "src_embed.weight"}
    write_atomic(out / f"{name}.safetensors", save(state))
    result = {"name": name, "seed": seed, "run": {**run, "layers": list(run["layers"])}, "params": model.num_parameters(),
              "steps": step, "train_seconds": round(train_s, 1), "target_tokens_seen": tokens,
              "epochs": step * BATCH_PAIRS / len(src), "train_pairs": len(src),
              "valid_bleu_by_no_repeat_ngram": {str(k): v for k, v in settings.items()},
              "no_repeat_ngram_size": best_n, "valid_bleu": settings[best_n], "test_bleu": test_bleu,
              "test_samples": [[r, h] for (r, _, _), h in list(zip(test, hyps))[:8]],
              "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else f"{platform.machine()} cpu",
              "torch": torch.__version__, "history": hist}
    write_atomic(out / f"{name}.json", json.dumps(result, indent=1, ensure_ascii=False))
    print(f"[{name}] done: {step} steps, {result['epochs']:.1f} epochs, valid BLEU {settings} -> n={best_n}, "
          f"test BLEU {test_bleu:.2f}", flush=True)
    return result


def sweep(work, out, seconds, names=None, ship=None, evals=12, eval_limit=None) -> list[dict]:
    """Every run at once, one process each (they share the GPU); returns their results. With ``ship``,
    copies what ``--join`` needs there: ``sweep.json`` (every run, with its training curve), the chosen
    run's ``.json`` and fp16 ``.safetensors``, and all logs in ``logs.txt`` (four files: what a lent
    machine sends back is limited)."""
    names = list(names or RUNS)
    procs = []
    for name in names:
        log = open(Path(out) / f"{name}.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-m", "genai_helpers.models.bible_mt.pretrain", "--run", name,
                                       "--work", str(work), "--out", str(out), "--seconds", str(seconds),
                                       "--evals", str(evals)] + (["--eval-limit", str(eval_limit)] if eval_limit else []),
                                      stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "2"}))
    for p in procs:
        p.wait()
    results = []
    for name in names:
        f = Path(out) / f"{name}.json"
        if f.is_file():
            results.append(json.loads(f.read_text()))
    if results:
        best = max(results, key=lambda r: r["valid_bleu"])
        summary = {"chosen": best["name"], "chosen_by": "highest validation BLEU (greedy, best no-repeat setting)",
                   "seconds_per_run": seconds, "runs_at_once": len(names),
                   "runs": [{k: r[k] for k in ("name", "run", "params", "steps", "epochs", "train_seconds",
                                                "valid_bleu_by_no_repeat_ngram", "valid_bleu", "no_repeat_ngram_size",
                                                "test_bleu", "device", "history")} for r in results]}
        write_atomic(Path(out) / "sweep.json", json.dumps(summary, indent=1))
        print(json.dumps([{k: v for k, v in r.items() if k != "history"} for r in summary["runs"]], indent=1))
        if ship:
            import shutil
            ship = Path(ship)
            ship.mkdir(parents=True, exist_ok=True)
            for f in ("sweep.json", f"{best['name']}.json", f"{best['name']}.safetensors"):
                shutil.copy(Path(out) / f, ship / f)
            (ship / "logs.txt").write_text("".join((Path(out) / f"{n}.log").read_text() for n in names))
    return results


def join(out, work) -> dict:
    """Store the sweep's chosen run here as int8 with its tokenizer, manifest, history and sweep summary."""
    from dataclasses import asdict
    from ...checkpoint import file_sha256
    from ...data.translation import SubwordVocab
    from ..book_lm import save_int8
    from . import MT_DIR, WEIGHTS, TOKENIZER, MANIFEST, HISTORY, SWEEP
    out, work = Path(out), Path(work)
    summary = json.loads((out / "sweep.json").read_text())
    name = summary["chosen"]
    result = json.loads((out / f"{name}.json").read_text())
    from safetensors.torch import load_file
    state = load_file(str(out / f"{name}.safetensors"))
    save_int8(state, MT_DIR / WEIGHTS)
    write_atomic(MT_DIR / TOKENIZER, (work / "tokenizer.json").read_bytes())
    write_atomic(MT_DIR / HISTORY, json.dumps(result["history"]))
    write_atomic(MT_DIR / SWEEP, json.dumps(summary, indent=1))
    splits = load_splits(work)
    man = {"model": "genai_helpers.models.seq2seq.Seq2SeqTransformer",
           "config": asdict(model_config(len(SubwordVocab.load(work / "tokenizer.json")),
                                         {**result["run"], "layers": tuple(result["run"]["layers"])})),
           "run": name, "params": result["params"], "steps": result["steps"], "epochs": result["epochs"],
           "batch_pairs": BATCH_PAIRS, "label_smoothing": LABEL_SMOOTHING, "train_seconds": result["train_seconds"],
           "target_tokens_seen": result["target_tokens_seen"], "device": result["device"], "torch": result["torch"],
           "data": {k: len(v) for k, v in splits.items()}, "train_pairs_used": result["train_pairs"],
           "max_tokens": MAX_TOKENS, "splits_sha256": file_sha256(work / "splits.json.gz"),
           "no_repeat_ngram_size": result["no_repeat_ngram_size"], "valid_bleu": result["valid_bleu"],
           "test_bleu_at_training": result["test_bleu"],
           "storage": "weight-only int8 (group 64, fp16 scales); BLEU above measured in bf16 before storage",
           "sha256": file_sha256(MT_DIR / WEIGHTS), "tokenizer_sha256": file_sha256(MT_DIR / TOKENIZER)}
    write_atomic(MT_DIR / MANIFEST, json.dumps(man, indent=1))
    return man


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=".mtwork")
    ap.add_argument("--out", default=".mtwork/out")
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--prepare", action="store_true")
    ap.add_argument("--run")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--join")
    ap.add_argument("--ship", help="with --sweep: copy the chosen run and the summary here")
    ap.add_argument("--device")
    ap.add_argument("--evals", type=int, default=12, help="validation BLEU points on the training curve")
    ap.add_argument("--eval-limit", type=int, help="score only the first N validation and test verses (a quick check)")
    a = ap.parse_args(argv)
    if a.prepare:
        print(prepare(a.work))
    if a.run:
        train_run(a.run, a.work, a.out, a.seconds, a.device, a.evals, a.eval_limit)
    if a.sweep:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        sweep(a.work, a.out, a.seconds, a.only, a.ship, a.evals, a.eval_limit)
    if a.join:
        print(json.dumps(join(a.join, a.work), indent=1))


if __name__ == "__main__":
    main()
