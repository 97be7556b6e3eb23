"""Make the book LM: ``python -m genai_helpers.models.book_lm.pretrain`` (``make pretrain``).

Steps, each cached and skipped when its output exists:

1. the corpus (:func:`genai_helpers.data.book_corpus.corpus_dir`),
2. the byte-level BPE tokenizer, trained on the train split (``tokenizer.json``),
3. the token ids of each split (``<work>/{train,val,test}.npy``, documents joined by ``<|endoftext|>``),
4. the GPT, trained for a compute budget in FLOPs (a step count: warm-up + cosine),
   checkpointed every few minutes (``<work>/checkpoint.safetensors``): stop it and run again to
   resume; resuming trains the same steps on the same batches,
5. evaluation (bits per byte on val, test and the held-out narrative prose, an n-gram baseline on
   the same tokens, samples) and the shipped files: ``book_lm.safetensors`` (fp16), the
   ``manifest.json`` and ``pretrain_history.json`` (loss curve, tokens/s, MFU).

``--sweep`` instead runs the scaling sweep: several model sizes at each of three (smaller) FLOP
budgets, writing ``scaling_sweep.json``; the size trained by default is read off it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from . import BOOK_LM_DIR, EOT, MANIFEST, TOKENIZER, WEIGHTS, BookTokenizer, _names, _read_weights, _sha256, save_int8, token_nll, bits_per_byte, narrative_text
from ..gpt import GPT, GPTConfig
from ...checkpoint import write_atomic
from ...data import book_corpus

__all__ = ["SEED", "VOCAB_SIZE", "BLOCK_SIZE", "BATCH_SIZE", "SWEEP_SIZES", "SWEEP_BUDGETS", "SIZES", "BUDGET_FLOPS", "LRS",
           "CANDIDATES", "MAX_EPOCHS", "model_config", "flops_per_token", "prepare", "load_tokens", "eval_loss",
           "steps_for", "train_run", "sweep", "choose_size", "ngram_baseline", "save_weights", "export_checkpoint",
           "write_data_card", "SAMPLE_PROMPTS", "sample_texts", "docs_bits_per_byte", "main"]

SEED = 1234
VOCAB_SIZE = 4096
BLOCK_SIZE = 128
BATCH_SIZE = 32
LR = 2e-3
WARMUP_STEPS = 200
MIN_LR_RATIO = 0.1
WEIGHT_DECAY = 0.1
PEAK_GFLOPS = 210.0            # measured fp32 matmul peak of the 2-core machines (ENVIRONMENT.md; ch02 re-measures)
WORK_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genai_helpers" / "book_lm_work"

#: The sizes of the scaling sweep (n_layer, n_embd, n_head).
SWEEP_SIZES = ((2, 32, 2), (2, 48, 4), (2, 64, 4), (2, 96, 4), (3, 128, 4), (4, 160, 5), (5, 192, 6))
#: The sweep's compute budgets (training FLOPs, counted by :func:`flops_per_token`) and the sizes run
#: at each (indices into SWEEP_SIZES): an IsoFLOP sweep in the manner of Chinchilla (approach 2).
#: Budgets are in FLOPs, not seconds, so a busy or faster machine gives the same runs. (The first
#: pass ran sizes 2-5 only; every budget's best was its smallest size, so smaller sizes were added
#: until each budget's minimum was bracketed.)
SWEEP_BUDGETS = {1e12: (0, 1, 2, 3, 4, 5), 4e12: (0, 1, 2, 3, 4, 5, 6), 1.2e13: (2, 3, 4, 5)}
SWEEP_WARMUP = 50
#: What ``make pretrain`` trains (read off the sweep: see scaling_sweep.json and chapter 02) and its
#: compute: the cpu size's FLOPs take about 45 minutes on the 2-core machines (ENVIRONMENT.md).
#: The gpu size was picked by gpu_sweep.py (data-limited: 4 epochs of the corpus; 6x384 and 8x384
#: tied within 0.02 nats of validation loss, so the smaller one; see gpu_sweep.json).
SIZES = {"cpu": dict(n_layer=3, n_embd=128, n_head=4), "gpu": dict(n_layer=6, n_embd=384, n_head=6)}
BUDGET_FLOPS = {"cpu": 1.2e14, "gpu": 1.905669741477888e15}
LRS = {"cpu": LR, "gpu": 1e-3}


def model_config(n_layer: int, n_embd: int, n_head: int, vocab_size: int = VOCAB_SIZE) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, block_size=BLOCK_SIZE, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                     dropout=0.0, bias=False, pos_encoding="rope", tie_weights=True, activation="gelu")


def flops_per_token(config: GPTConfig) -> float:
    """Training FLOPs per token: 6 x (all matmul weights incl. the tied lm_head) + the causal half
    of attention (:func:`~genai_helpers.estimates.training_flops_with_attention`, ``causal=True``)."""
    from ...estimates import training_flops_with_attention
    d, L, T, V = config.n_embd, config.n_layer, config.block_size, config.vocab_size
    return training_flops_with_attention(12 * L * d * d + V * d, 1, L, T, d, causal=True)


# ------------------------------------------------------------------------------------------------
def prepare(work: Path = WORK_DIR, out: Path = BOOK_LM_DIR, verbose: bool = True) -> dict:
    """Corpus, tokenizer and token arrays; returns their hashes (for the manifest)."""
    work.mkdir(parents=True, exist_ok=True)
    cdir = book_corpus.corpus_dir()
    card = json.loads((cdir / "card.json").read_text())
    tok_path = out / TOKENIZER
    if not tok_path.is_file():
        t0 = time.time()
        tok = BookTokenizer.train(book_corpus.read_split("train", cdir), vocab_size=VOCAB_SIZE)
        tok.save(tok_path)
        if verbose:
            print(f"tokenizer: {tok.vocab_size} tokens in {time.time() - t0:.0f} s -> {tok_path}", flush=True)
    tok = BookTokenizer.from_file(tok_path)
    tok_hash = _sha256(tok_path)
    stamp = work / "tokens.json"
    want = {"corpus": {k: v["sha256"] for k, v in card["files"].items()}, "tokenizer": tok_hash}
    if not stamp.is_file() or json.loads(stamp.read_text()).get("inputs") != want:
        counts = {}
        for split in ("train", "val", "test"):
            docs = book_corpus.read_split(split, cdir)
            ids: list[int] = []
            for enc in tok.encode_batch(docs):
                ids.append(tok.eot_id)
                ids.extend(enc)
            arr = np.asarray(ids, dtype=np.uint16)
            np.save(work / f"{split}.npy", arr)
            counts[split] = {"tokens": int(arr.size), "bytes": card["files"][f"{split}.txt"]["bytes"]}
            if verbose:
                print(f"{split}: {arr.size:,} tokens, {counts[split]['bytes'] / arr.size:.2f} bytes/token", flush=True)
        write_atomic(stamp, json.dumps({"inputs": want, "counts": counts}, indent=1))
    info = json.loads(stamp.read_text())
    return {"corpus_files": card["files"], "tokenizer_sha256": tok_hash, "tokens": info["counts"],
            "corpus_card": card}


def load_tokens(split: str, work: Path = WORK_DIR) -> torch.Tensor:
    return torch.from_numpy(np.load(work / f"{split}.npy").astype(np.int64))


@torch.no_grad()
def eval_loss(model: GPT, stream: torch.Tensor, n_windows: int = 64, seed: int = 0) -> float:
    """Mean next-token loss (nats) over ``n_windows`` fixed random windows of ``stream``."""
    g = torch.Generator().manual_seed(seed)
    T = model.config.block_size
    starts = torch.randint(0, stream.numel() - T - 1, (n_windows,), generator=g)
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    for b in range(0, n_windows, 16):
        s = starts[b:b + 16]
        idx = s[:, None] + torch.arange(T + 1)[None]
        w = stream[idx].to(device)
        _, loss = model(w[:, :-1], w[:, 1:])
        total += float(loss) * len(s)
    model.train(was)
    return total / n_windows


def steps_for(config: GPTConfig, flops: float, batch_size: int = BATCH_SIZE) -> int:
    """Optimizer steps that spend ``flops`` training FLOPs on ``config`` at ``batch_size``."""
    return max(1, round(flops / (flops_per_token(config) * batch_size * config.block_size)))


def train_run(config: GPTConfig, flops: float, work: Path, *, tag: str, eval_every: int = 500,
              checkpoint_every: int = 200, progress: bool = True, device=None,
              warmup_steps: int = WARMUP_STEPS, batch_size: int = BATCH_SIZE, lr: float = LR) -> dict:
    """Train one model for a compute budget of ``flops`` (a step count, so the result does not
    depend on the machine's speed) at peak learning rate ``lr``; resumable from
    ``work/<tag>.safetensors``."""
    from tqdm.auto import tqdm
    from ...data.text import window_batch_fn
    from ...training import TrainConfig, train

    torch.manual_seed(SEED)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train_ids, val_ids = load_tokens("train", work), load_tokens("val", work)
    model = GPT(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), fused=device.type == "cuda")
    batch_fn = window_batch_fn(train_ids, batch_size, config.block_size, seed=SEED)
    fpt = flops_per_token(config)
    tokens_per_step = batch_size * config.block_size
    steps = steps_for(config, flops, batch_size)
    tc = TrainConfig(steps=steps, lr_schedule="cosine", warmup_steps=min(warmup_steps, steps // 10),
                     min_lr_ratio=MIN_LR_RATIO, grad_clip=1.0, precision="fp32" if device.type == "cpu" else "bf16",
                     log_every=max(1, min(25, steps // 100)), checkpoint_path=str(work / f"{tag}.safetensors"),
                     checkpoint_every=checkpoint_every, progress=False, live_plot=False)
    evals = []
    state = {"bar": None, "t0": None, "s0": None, "shown": -1e9}

    def hook(info):
        if state["bar"] is None and progress:
            state["bar"] = tqdm(total=steps, unit="step", desc=tag, initial=info.step - 1, mininterval=5,
                                dynamic_ncols=True)
        if state["t0"] is None:
            state["t0"], state["s0"] = info.seconds, info.step
        rate = (info.step - state["s0"]) * tokens_per_step / max(1e-9, info.seconds - state["t0"])
        if state["bar"] is not None and (info.final or info.seconds - state["shown"] >= 5):
            state["shown"] = info.seconds
            state["bar"].n = info.step
            state["bar"].set_postfix(loss=f"{info.loss:.3f}", tok_s=f"{rate:,.0f}",
                                     mfu=f"{rate * fpt / PEAK_GFLOPS / 1e9:.0%}", refresh=False)
            state["bar"].refresh()
        if info.step % eval_every == 0 or info.final:
            evals.append({"step": info.step, "seconds": round(info.seconds, 1),
                          "tokens": info.step * tokens_per_step, "val_loss": eval_loss(info.model, val_ids)})

    t0 = time.time()
    hist = train(model, opt, batch_fn, tc, hooks=[hook], device=device)
    if state["bar"] is not None:
        state["bar"].close()
    tokens = steps * tokens_per_step
    val = eval_loss(model, val_ids, n_windows=256, seed=1)
    return {"model": model, "history": hist.as_dict(), "evals": evals, "steps": steps, "tokens": tokens,
            "seconds": hist.seconds, "wall_this_call_s": time.time() - t0, "val_loss": val,
            "tokens_per_s": tokens / max(1e-9, hist.seconds),
            "mfu": tokens * fpt / max(1e-9, hist.seconds) / PEAK_GFLOPS / 1e9,
            "flops": tokens * fpt, "flops_per_token": fpt, "params": model.num_parameters(),
            "params_non_embedding": model.num_parameters(exclude_embeddings=True), "device": str(device)}


# ------------------------------------------------------------------------------------------------
def sweep(work: Path = WORK_DIR, out: Path = BOOK_LM_DIR, only: set[str] | None = None) -> dict:
    """Every size of :data:`SWEEP_BUDGETS` at its budget (resumable: finished runs are skipped)."""
    import fcntl
    prepare(work, out)
    path = out / "scaling_sweep.json"
    lock = open(work / "sweep.lock", "w")

    def read() -> dict:
        return json.loads(path.read_text()) if path.is_file() else {
            "runs": [], "warmup_steps": SWEEP_WARMUP, "batch_size": BATCH_SIZE, "block_size": BLOCK_SIZE}

    todo = [(budget, *SWEEP_SIZES[i]) for budget, which in SWEEP_BUDGETS.items() for i in which]
    if only:
        todo = [t for t in todo if f"{t[0]:.0e}:{t[1]}x{t[2]}" in only]
    for budget, L, d, h in todo:
            # several processes may share the list (one thread each): claim a run under the lock
            fcntl.flock(lock, fcntl.LOCK_EX)
            result = read()
            done = {(r["budget_flops"], r["n_layer"], r["n_embd"]) for r in result["runs"]}
            fcntl.flock(lock, fcntl.LOCK_UN)
            if (budget, L, d) in done:
                continue
            r = train_run(model_config(L, d, h), budget, work, tag=f"sweep-{budget:.0e}-{L}x{d}", eval_every=10 ** 9,
                          warmup_steps=SWEEP_WARMUP, checkpoint_every=10 ** 6)
            row = {k: r[k] for k in ("steps", "tokens", "seconds", "val_loss", "tokens_per_s", "mfu", "flops", "params",
                                     "params_non_embedding", "flops_per_token")}
            row.update(n_layer=L, n_embd=d, n_head=h, budget_flops=budget)
            fcntl.flock(lock, fcntl.LOCK_EX)
            result = read()
            result["runs"].append(row)
            result["runs"].sort(key=lambda r: (r["budget_flops"], r["params"]))
            result["machine"] = _machine()
            write_atomic(path, json.dumps(result, indent=1))
            fcntl.flock(lock, fcntl.LOCK_UN)
            print(f"sweep {budget:.0e} {L}x{d}: {row['params']:,} params, {row['tokens']:,} tokens, "
                  f"val loss {row['val_loss']:.3f}, {row['seconds']:.0f} s", flush=True)
    return read()


#: Shapes the trained size is chosen from (n_layer, n_embd, n_head).
CANDIDATES = ((2, 64, 4), (2, 96, 4), (3, 128, 4), (3, 160, 5), (4, 160, 5), (4, 192, 6), (5, 192, 6), (6, 256, 8))


MAX_EPOCHS = 4.0   # beyond about 4 passes repeated tokens are worth much less than new ones (Muennighoff et al. 2023)


def choose_size(sweep_result: dict, budget_flops: float, train_tokens: int, max_epochs: float = MAX_EPOCHS) -> dict:
    """Read the trained size off the sweep, Chinchilla's approach 3: fit ``L(N, D) = E + A/N^alpha +
    B/D^beta`` to every run (:func:`~genai_helpers.estimates.fit_scaling_law`), then for each
    candidate shape spend ``budget_flops`` on it (``D = budget / flops_per_token``) and pick the
    lowest predicted loss among the shapes that would see the ``train_tokens`` at most
    ``max_epochs`` times (the sweep's runs never repeat data, so the law knows nothing of
    repetition). Also returns approach 2 where it applies: the vertex of a parabola in ln(params)
    per budget, kept only when it lies among the sizes tried."""
    from ...estimates import fit_scaling_law, isoflop_minimum
    runs = sweep_result["runs"]
    law = fit_scaling_law([r["params"] for r in runs], [r["tokens"] for r in runs], [r["val_loss"] for r in runs])
    predicted = {}
    for c in CANDIDATES:
        cfg = model_config(*c)
        n, tokens = GPT(cfg).num_parameters(), budget_flops / flops_per_token(cfg)
        predicted[c] = {"params": n, "tokens": tokens, "loss": law["predict"](n, tokens)}
    allowed = [c for c in CANDIDATES if predicted[c]["tokens"] <= max_epochs * train_tokens]
    if not allowed:
        raise ValueError(f"every candidate would see the data more than max_epochs={max_epochs} times")
    best = min(allowed, key=lambda c: predicted[c]["loss"])
    vertices = {}
    for budget in sorted({r["budget_flops"] for r in runs}):
        rs = [r for r in runs if r["budget_flops"] == budget]
        try:
            m = isoflop_minimum([r["params"] for r in rs], [r["val_loss"] for r in rs])
        except ValueError:
            continue
        vertices[budget] = {"params_opt": m["params_opt"], "inside": m["inside"]}
    return {"law": {k: v for k, v in law.items() if k != "predict"}, "predicted": predicted, "allowed": allowed,
            "unconstrained_best": min(predicted, key=lambda c: predicted[c]["loss"]),
            "shape": dict(n_layer=best[0], n_embd=best[1], n_head=best[2]), "params": predicted[best]["params"],
            "isoflop_vertices": vertices}


def _machine() -> dict:
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    return {"device": torch.cuda.get_device_name(0) if dev == "cuda" else platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def ngram_baseline(work: Path, tok: BookTokenizer, texts: dict, orders=(2, 3, 4), discounts=(0.6, 0.75, 0.9),
                   n_eval: int = 60_000) -> dict:
    """The n-gram baseline on the same tokens: interpolated absolute discounting
    (:class:`~genai_helpers.models.ngram_lm.NGramLM`) fitted on every training token; order and
    discount tuned on the first ``n_eval`` validation tokens; then bits per byte of ``texts``
    (name -> list of documents)."""
    from ..ngram_lm import NGramLM
    train_ids = np.load(work / "train.npy").tolist()
    val_ids = np.load(work / "val.npy")[:n_eval].tolist()
    best, grid = None, []
    for order in orders:
        lm = NGramLM(order=order, vocab_size=VOCAB_SIZE).fit(train_ids)
        for d in discounts:
            lm.discount = d
            nll = float(-lm.log_probs(val_ids).mean())
            grid.append({"order": order, "discount": d, "val_nats_per_token": nll})
            if best is None or nll < best[0]:
                best = (nll, order, d, lm)
        lm = None
    _, order, discount, lm = best
    lm.discount = discount
    bpb = {}
    for name, docs in texts.items():                  # each document scored after <|endoftext|>, as the GPT's
        nats = sum(float(-lm.log_probs([tok.eot_id] + tok.encode(doc)).sum()) for doc in docs)
        bpb[name] = nats / math.log(2) / sum(len(doc.encode("utf-8")) for doc in docs)
    return {"grid": grid, "order": order, "discount": discount, "bits_per_byte": bpb}


#: The prompts of the samples a manifest stores.
SAMPLE_PROMPTS = ("The old man", "In the morning", "A computer is", "She opened the door and")


def sample_texts(model: GPT, tok: BookTokenizer, n_tokens: int = 60) -> list[str]:
    """One top-p 0.9 continuation of each of ``SAMPLE_PROMPTS`` (seeded), as the manifests show."""
    g = torch.Generator().manual_seed(SEED)
    out = []
    for prompt in SAMPLE_PROMPTS:
        ids = model.generate(torch.tensor([tok.encode(prompt)]), n_tokens, temperature=1.0, top_p=0.9, generator=g)
        out.append(tok.decode(ids[0].tolist()))
    return out


def docs_bits_per_byte(model: GPT, tok: BookTokenizer, docs: list[str], batch_size: int = 8) -> float:
    """Bits per byte of a list of documents, each scored from ``<|endoftext|>`` (the test split's way)."""
    nll = sum(float(token_nll(model, tok.encode(d), bos=tok.eot_id, batch_size=batch_size).sum()) for d in docs)
    return nll / math.log(2) / sum(len(d.encode()) for d in docs)


def save_weights(model: GPT, path: Path) -> str:
    """fp16 safetensors of ``model`` (the tied ``lm_head`` is the embedding, stored once), written
    atomically; returns its sha256."""
    from safetensors.torch import save_file
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
          if not (model.config.tie_weights and k == "lm_head.weight")}
    tmp = path.with_name(path.name + ".tmp")
    save_file(sd, str(tmp))
    os.replace(tmp, path)
    return _sha256(path)


def export_checkpoint(tag: str, config: GPTConfig, folder: Path, work: Path = WORK_DIR) -> Path:
    """A loadable book-LM folder (weights, tokenizer, manifest) from a training checkpoint, e.g. to
    try a run in progress: ``load_book_lm(folder=...)``."""
    import shutil
    from ...checkpoint import load_checkpoint
    folder.mkdir(parents=True, exist_ok=True)
    model = GPT(config)
    state = load_checkpoint(work / f"{tag}.safetensors", model)
    sha = save_weights(model, folder / WEIGHTS)
    shutil.copy(BOOK_LM_DIR / TOKENIZER, folder / TOKENIZER)
    man = {"name": "book_lm", "preview_of": tag, "config": config.__dict__, "steps": state["step"], "sha256": sha}
    write_atomic(folder / MANIFEST, json.dumps(man, indent=1))
    return folder


def write_data_card(card: dict, tokens: dict, out: Path = BOOK_LM_DIR) -> Path:
    """``DATA_CARD.md``: sources, licences, sizes per split, what was filtered, hashes (from card.json)."""
    from ...data.book_corpus import DEBIAN_PACKAGES, GENSIM_VERSION
    rows = ["| source | package | licence | documents kept | train MB | val MB | test MB | dropped: duplicate | dropped: not prose |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, st in card["sources"].items():
        b = st["bytes"]
        rows.append(f"| {name} ({st['what']}) | {st['package']} | {st['licence']} | {st['kept_docs']:,} | "
                    f"{b['train'] / 1e6:.2f} | {b['val'] / 1e6:.3f} | {b['test'] / 1e6:.3f} | {st['dropped_duplicate']:,} | "
                    f"{st['dropped_not_prose']:,} |")
    files = "\n".join(f"- `{k}`: {v['docs']:,} documents, {v['bytes']:,} bytes, {tokens[k[:-4]]['tokens']:,} tokens, "
                      f"sha256 `{v['sha256']}`" for k, v in card["files"].items())
    text = f"""# Data card: the book LM's pretraining corpus

Built by `genai_helpers/data/book_corpus.py` (corpus version {card['version']}) from Debian packages
({', '.join(DEBIAN_PACKAGES)}) and the test data inside the PyPI wheel of gensim {GENSIM_VERSION}: no web
download, the same bytes on every machine with these package versions. Generated by `make pretrain`.

{chr(10).join(rows)}

**Cleaning.** Markup removed (Wikipedia templates, tables, references and link syntax; the dictionaries'
cross-reference braces; GCIDE's pronunciations, etymologies and source tags; HTML). Whitespace normalised
within paragraphs (NFC). Documents shorter than {card['min_doc_chars']} characters are joined with the next
ones of the same source. Dropped: documents repeated after lower-casing and whitespace normalisation, and
documents with under {card['min_letter_fraction']:.0%} letters and spaces (tables, code, hex dumps). GCIDE
is capped at {card['gcide_cap_bytes'] / 1e6:.0f} MB so that dictionary style does not dominate. Offensive
fortunes (the `off/` collection) and the fortune collections not in `FORTUNE_CATEGORIES` are left out.

**Split.** By document: a stable hash of (source, document) sends {card['held_out']['val']:.0%} of the
documents to validation and {card['held_out']['test']:.0%} to test; the rest is training data.

**Files.**
{files}

**Held-out narrative prose** (`narrative_heldout.txt`): six short stories written for this book
(CC0), in no training source, to measure the model on prose of a different kind.

**Licences of the weights.** The model is trained on GPL (GCIDE, Debian Reference), GFDL (FOLDOC) and
CC BY-SA (Wikipedia) text besides public-domain sources; treat the weights as a derivative of those
texts for redistribution. It is a teaching model: it knows little, makes facts up, and reproduces
the biases of 20th-century dictionaries and Usenet humour.
"""
    path = out / "DATA_CARD.md"
    write_atomic(path, text)
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=tuple(SIZES), default="cpu")
    ap.add_argument("--flops", type=float, default=None, help="training FLOPs (default: BUDGET_FLOPS[size])")
    ap.add_argument("--sweep", action="store_true", help="run the scaling sweep instead")
    ap.add_argument("--only", default=None, help="with --sweep: only these runs, e.g. 1e+12:2x32,4e+12:2x64")
    ap.add_argument("--work", type=Path, default=WORK_DIR)
    ap.add_argument("--out", type=Path, default=BOOK_LM_DIR)
    ap.add_argument("--eval-only", action="store_true", help="skip training (the checkpoint must be complete)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.sweep:
        sweep(args.work, args.out, set(args.only.split(",")) if args.only else None)
        return
    data = prepare(args.work, args.out)
    write_data_card(data["corpus_card"], data["tokens"], args.out)
    budget = args.flops or BUDGET_FLOPS[args.size]
    config = model_config(**SIZES[args.size])
    tag = f"book_lm-{args.size}"
    r = train_run(config, budget, args.work, tag=tag, lr=LRS[args.size])
    tok = BookTokenizer.from_file(args.out / TOKENIZER)
    wname, mname = _names(args.size)
    wpath = args.out / wname
    if args.size == "cpu":
        save_weights(r["model"].cpu(), wpath)
    else:       # the gpu size ships as weight-only int8 (see gpu_sweep.save_int8)
        save_int8({k: v.detach().cpu() for k, v in r["model"].state_dict().items() if k != "lm_head.weight"}, wpath)
    # everything below is measured on the shipped weights, loaded back as a reader loads them
    model = GPT(config)
    model.load_state_dict(_read_weights(wpath), strict=False)
    model.eval()
    print("evaluating ...", flush=True)
    test_ids = load_tokens("test", args.work)
    cdir = book_corpus.corpus_dir()
    test_docs = book_corpus.read_split("test", cdir)
    narrative = narrative_text()
    bpb = {"test": docs_bits_per_byte(model, tok, test_docs), "narrative": bits_per_byte(model, tok, narrative)}
    print(f"bits per byte: {bpb}", flush=True)
    t_ng = time.time()
    ng = ngram_baseline(args.work, tok, {"test": test_docs, "narrative": [narrative]})
    print(f"n-gram baseline: order {ng['order']}, discount {ng['discount']}, {ng['bits_per_byte']}, "
          f"{time.time() - t_ng:.0f} s", flush=True)
    samples = sample_texts(model, tok)
    man = {
        "name": "book_lm", "size": args.size, "config": config.__dict__, "seed": SEED,
        "training": {"budget_flops": budget, "seconds": round(r["seconds"], 1), "steps": r["steps"], "tokens_seen": r["tokens"],
                     "batch_size": BATCH_SIZE, "lr": LRS[args.size], "warmup_steps": min(WARMUP_STEPS, r["steps"] // 10), "min_lr_ratio": MIN_LR_RATIO,
                     "weight_decay": WEIGHT_DECAY, "precision": "fp32" if r["device"] == "cpu" else "bf16 autocast", "tokens_per_s": round(r["tokens_per_s"], 1),
                     "mfu": round(r["mfu"], 4), "peak_gflops_assumed": PEAK_GFLOPS, "flops": r["flops"],
                     "epochs": r["tokens"] / data["tokens"]["train"]["tokens"], "machine": _machine()},
        "params": r["params"], "params_non_embedding": r["params_non_embedding"],
        "data": {"corpus_files": data["corpus_files"], "tokens": data["tokens"], "tokenizer_sha256": data["tokenizer_sha256"]},
        "loss": {"val_nats_per_token": eval_loss(model, load_tokens("val", args.work), 256, seed=1),
                 "test_nats_per_token": eval_loss(model, test_ids, 256, seed=2)},
        "size_from": "pretrain.choose_size on scaling_sweep.json (approach 3 within 4 epochs; chapter 02)",
        "bits_per_byte": bpb, "ngram": ng,
        "samples_top_p_0.9": samples, "weights_dtype": "float16" if args.size == "cpu" else "int8 weight-only", "sha256": _sha256(wpath),
        "bytes": wpath.stat().st_size,
    }
    hist = {"history": r["history"], "evals": r["evals"]}
    write_atomic(args.out / "pretrain_history.json", json.dumps(hist))
    write_atomic(args.out / mname, json.dumps(man, indent=1))
    print(json.dumps({k: man[k] for k in ("params", "loss", "bits_per_byte")}, indent=1))
    print(json.dumps(man["ngram"]["bits_per_byte"]))
    for s in samples:
        print("---", s)


if __name__ == "__main__":
    main()
