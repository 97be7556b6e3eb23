"""The book LM as a grounded reader: RAFT-style fine-tuning of the 1.1 M-parameter book LM (chapter 07).

::

    from genai_helpers.rag import build_book_assistant
    assistant = build_book_assistant(".", generator="book-lm")     # the shipped fine-tuned weights
    reply = assistant.ask("Which command builds the website?")
    reply.text, reply.citations, reply.abstained

The book LM (:func:`genai_helpers.models.book_lm.load_book_lm`) was pretrained on a 128-token
context, too short for four retrieved passages, and it is far too small to read several at once.
So this reader reads **one passage window at a time** (RoPE lets the fine-tune stretch the
context to :data:`BLOCK_SIZE` tokens)::

    <|endoftext|>Question: {question}
    Passage [{n}]: {window of passage n}
    Answer: {a sentence of the window, copied} [{n}]<|endoftext|>
    ... or:  Answer: I don't know from the book.<|endoftext|>

- :func:`passage_windows` cuts a passage into windows of whole sentences (links shortened to their
  text) of at most ``max_tokens`` tokens.
- :func:`make_reader_data` builds the RAFT-style training data from the book's chunks: a
  *synthetic* question per chosen sentence (its rarest words in a question template, a glossary
  term's "What is X?", or a section heading), the window that holds the sentence as the oracle,
  and for about ``p_no_oracle`` of the questions a *distractor* window instead (retrieved by BM25
  for the question from another passage, or another window of the same passage), whose target is
  the abstention ``genai_helpers.rag.generation.ABSTAIN``. No labelled question is used.
- :class:`BookLMReader` answers ``(question, hits)``: it scores every window of every passage by
  the model's own probability of abstaining, reads the window least likely to be abstained on,
  abstains when even that one's probability is above ``abstain_threshold``, and otherwise writes
  the answer greedily (the citation ``[n]`` is the model's; one is appended, and counted in
  ``added_citations``, when it writes none).
- :func:`train_reader` fine-tunes with the book's loop (:func:`genai_helpers.training.train`,
  loss :func:`~genai_helpers.finetuning.alignment.sft_loss` on the answer tokens only, resumable),
  and :func:`main` (``make pretrain-reader``) writes ``book_lm_reader.safetensors`` (fp16) and
  ``book_lm_reader.json`` (config, data hash, seed, steps, loss history, machine, sha256)
  atomically into this folder. :func:`load_book_lm_reader` loads them offline.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .assistant import STOP_WORDS, answer_units
from .generation import ABSTAIN, Answer
from .indexes import bm25_tokens

__all__ = ["READER_DIR", "WEIGHTS", "MANIFEST", "BLOCK_SIZE", "WINDOW_TOKENS", "ANSWER_TOKENS", "SEED", "MODES",
           "reader_prompt", "shorten_links", "passage_windows", "synthetic_question", "make_reader_data",
           "encode_example", "data_hash", "ReaderBatches", "BookLMReader", "load_book_lm_reader", "untrained_reader", "reader_manifest",
           "train_reader", "main"]

READER_DIR = Path(__file__).resolve().parent
WEIGHTS = "book_lm_reader.safetensors"
MANIFEST = "book_lm_reader.json"
#: Context of the fine-tuned reader (the pretrained book LM saw 128 tokens; RoPE has no table to grow).
BLOCK_SIZE = 384
#: Longest passage window, question and answer, in tokens.
WINDOW_TOKENS, QUESTION_TOKENS, ANSWER_TOKENS = 224, 40, 48
#: How :class:`BookLMReader` answers: ``"write"`` generates freely (greedy); ``"quote"`` returns the
#: window sentence the model itself scores highest as the answer (decoding constrained to a quote).
MODES = ("write", "quote")
#: The question that asks nothing in particular (the baseline of ``pmi`` scoring).
NULL_QUESTION = "What does the passage say?"
#: The one seed of the fine-tune (data, order of batches, initial state).
SEED = 1234

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_'+-]*[A-Za-z0-9_]|[A-Za-z]")
_TEMPLATES = ("What does the book say about {w}?", "What is {w}?", "How does {w} work?", "Which {w}?",
              "Why {w}?", "How do I {w}?", "What {w}?", "When {w}?", "What are {w}?", "How many {w}?",
              "Where is {w}?", "What happens with {w}?")


def _check_str(name: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def reader_prompt(question: str, window: str, n: int = 1) -> str:
    """The reader's prompt for one passage window (the model's text starts after ``Answer:``)."""
    _check_str("question", question)
    if not isinstance(window, str):
        raise TypeError(f"window must be a str, got {type(window).__name__}")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 99:
        raise ValueError(f"n must be an int in [1, 99], got {n!r}")
    return f"Question: {' '.join(question.split())}\nPassage [{n}]: {window}\nAnswer:"


def shorten_links(text: str) -> str:
    """Markdown links and images replaced by their text (``[Chapter 2](../x.ipynb#y)`` -> ``Chapter 2``)."""
    return _LINK.sub(r"\1", text)


def _truncate(tok, text: str, max_tokens: int) -> str:
    ids = tok.encode(text)
    if len(ids) <= max_tokens:
        return text
    cut = tok.decode(ids[:max_tokens])
    return cut.rsplit(" ", 1)[0] if " " in cut else cut


def passage_windows(text: str, tokenizer, max_tokens: int = WINDOW_TOKENS) -> list[str]:
    """The passage as windows of whole answer units (:func:`~genai_helpers.rag.assistant.answer_units`,
    links shortened), each at most ``max_tokens`` tokens; a unit longer than that is cut. A
    passage with no unit gives one window of its (cut) text, or none when it is blank."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 16 <= max_tokens <= 4096:
        raise ValueError(f"max_tokens must be an int in [16, 4096], got {max_tokens!r}")
    units = [shorten_links(u) for u in answer_units(text)]
    if not units:
        flat = " ".join(shorten_links(text).split())
        return [_truncate(tokenizer, flat, max_tokens)] if flat else []
    windows, cur, cur_len = [], [], 0
    for u in units:
        n = len(tokenizer.encode(" " + u))
        if n > max_tokens:
            u, n = _truncate(tokenizer, u, max_tokens), max_tokens
        if cur and cur_len + n > max_tokens:
            windows.append(" ".join(cur))
            cur, cur_len = [], 0
        cur.append(u)
        cur_len += n
    if cur:
        windows.append(" ".join(cur))
    return windows


def synthetic_question(unit: str, idf: dict, rng: np.random.Generator, heading: str = "") -> str:
    """A question that ``unit`` answers, made without a model: a glossary term gives "What is X?",
    a section ``heading`` (when given, half the time) gives itself as the question, otherwise two
    to four of the unit's rarest words (by ``idf``, kept in their order) fill a question template."""
    _check_str("unit", unit)
    term, sep, rest = unit.partition(": ")
    if sep and 1 <= len(term.split()) <= 6 and not term.rstrip().endswith(".") and rng.random() < 0.7:
        return str(rng.choice(["What is {t}?", "What does {t} mean?", "Define {t}.", "{t}?"])).format(t=term.strip())
    if heading and rng.random() < 0.5:
        return heading.strip().rstrip("?.:") + "?"
    words = []
    for w in _WORD.findall(unit):
        key = (bm25_tokens(w) or [""])[0]
        if len(key) > 2 and key not in STOP_WORDS and idf.get(key, 9.0) > 1.5 and w.lower() not in {x.lower() for x in words}:
            words.append(w)
    if not words:
        return NULL_QUESTION
    ranked = sorted(words, key=lambda w: -idf.get((bm25_tokens(w) or [""])[0], 0.0))
    n = int(rng.integers(2, 5))
    top = ranked[:min(len(ranked), n + 1)]
    chosen = set(rng.choice(top, size=min(n, len(top)), replace=False).tolist())
    picked = [w for w in words if w in chosen]
    if rng.random() < 0.3:
        picked = [picked[i] for i in rng.permutation(len(picked))]
    phrase = " ".join(w if w.isupper() or "_" in w else w.lower() for w in picked)
    return str(rng.choice(_TEMPLATES)).format(w=phrase)


def _content(text: str) -> set[str]:
    return {w for w in bm25_tokens(text) if w not in STOP_WORDS and len(w) > 1}


def make_reader_data(chunks: Sequence, tokenizer, *, p_no_oracle: float = 0.3, max_per_window: int = 2,
                     n_distractors: int = 5, seed: int = SEED) -> list[tuple[str, str]]:
    """RAFT-style ``(prompt, answer)`` pairs from the book's ``chunks`` (objects with ``.text``,
    ``.source``, ``.section``; flagged ones skipped). See the module docstring. For each window,
    up to ``max_per_window`` of its sentences become questions; with probability ``p_no_oracle`` (in
    [0, 1]) the question is paired with a distractor window (one of the ``n_distractors`` BM25
    hits of other passages, or a window of its own passage without the sentence) and the answer is
    ``ABSTAIN``. The passage number ``n`` is drawn from 1..4. Deterministic given ``seed``."""
    from .indexes import BM25Index

    if not 0 <= p_no_oracle <= 1:
        raise ValueError(f"p_no_oracle must be in [0, 1], got {p_no_oracle}")
    if not isinstance(max_per_window, int) or isinstance(max_per_window, bool) or not 1 <= max_per_window <= 10:
        raise ValueError(f"max_per_window must be an int in [1, 10], got {max_per_window!r}")
    chunks = [c for c in chunks if not getattr(c, "flags", ())]
    if not chunks:
        raise ValueError("chunks must hold at least one unflagged chunk")
    rng = np.random.default_rng(seed)
    bm25 = BM25Index([c.text for c in chunks])
    df = Counter(w for toks in bm25.tokens for w in set(toks))
    idf = {w: math.log(1 + len(chunks) / (1 + d)) for w, d in df.items()}
    windows = [passage_windows(c.text, tokenizer) for c in chunks]
    out = []
    for ci, c in enumerate(chunks):
        heading = c.section.split(" > ")[-1] if getattr(c, "section", "") else ""
        for wi, window in enumerate(windows[ci]):
            units = [u for u in (shorten_links(u) for u in answer_units(window))
                     if len(u.split()) >= 5 and not u.startswith(("See ", "Chapter "))]
            if not units:
                continue
            take = rng.choice(len(units), size=min(max_per_window, len(units)), replace=False)
            for j in sorted(int(t) for t in take):
                unit = units[j]
                question = _truncate(tokenizer, synthetic_question(unit, idf, rng, heading if j == 0 and wi == 0 else ""),
                                     QUESTION_TOKENS)
                n = int(rng.integers(1, 5))
                if rng.random() < p_no_oracle:
                    words = _content(unit)
                    pool = [w for k, w in enumerate(windows[ci]) if k != wi]
                    for other in bm25.search(question, n_distractors + 3)[1]:
                        if int(other) != ci:
                            pool += windows[int(other)][:3]
                    pool = [w for w in pool if len(words - _content(w)) > 0.2 * len(words)]
                    if not pool:
                        continue
                    out.append((reader_prompt(question, pool[int(rng.integers(len(pool)))], n), ABSTAIN))
                else:
                    answer = _truncate(tokenizer, unit, ANSWER_TOKENS).rstrip(" .:;,")
                    out.append((reader_prompt(question, window, n), f"{answer}. [{n}]"))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def encode_example(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """``(input ids, target ids)`` of one example: ``<|endoftext|> prompt answer <|endoftext|>``, the
    targets ``-100`` on the prompt (the loss is on the answer only; :func:`~genai_helpers.finetuning.alignment.sft_example`)."""
    from ..finetuning.alignment import sft_example

    prompt_ids = [tokenizer.eot_id] + tokenizer.encode(prompt)
    return sft_example(prompt_ids, tokenizer.encode(" " + answer) + [tokenizer.eot_id])


class ReaderBatches:
    """``batch_fn(i)`` for :func:`genai_helpers.training.train`: ``(x, y)`` of ``batch_size``
    examples drawn with a generator seeded by ``(seed, i)`` (a pure function of ``i``, so a resumed
    run is exact), right-padded with ``<|endoftext|>`` / ``-100`` to the longest in the batch."""

    def __init__(self, encoded: Sequence[tuple[list[int], list[int]]], pad_id: int, batch_size: int = 16,
                 seed: int = SEED, max_len: int = BLOCK_SIZE):
        if not encoded:
            raise ValueError("encoded must hold at least one example")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.encoded = [(x[:max_len], y[:max_len]) for x, y in encoded]
        self.pad_id, self.batch_size, self.seed = pad_id, batch_size, seed

    def __call__(self, i: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
        idx = torch.randint(len(self.encoded), (self.batch_size,), generator=g).tolist()
        T = max(len(self.encoded[j][0]) for j in idx)
        x = torch.full((len(idx), T), self.pad_id, dtype=torch.long)
        y = torch.full((len(idx), T), -100, dtype=torch.long)
        for r, j in enumerate(idx):
            xi, yi = self.encoded[j]
            x[r, :len(xi)], y[r, :len(yi)] = torch.tensor(xi), torch.tensor(yi)
        return x, y


def _sft_loss(model, batch):
    from ..finetuning.alignment import sft_loss

    x, y = batch
    logits, _ = model(x)
    return sft_loss(logits, y)


class BookLMReader:
    """A generator ``(question, hits) -> Answer`` written by a book LM (see the module docstring).

    ``abstain_threshold`` (in (0, 1]): abstain when the model's probability of the abstention on
    every window is at least this. ``max_windows``: windows read per passage (the first ones).
    ``max_new_tokens``: the longest answer. ``mode``: one of :data:`MODES`; in ``"quote"`` mode the
    sentences of the ``quote_windows`` windows least likely to be abstained on are scored, with
    ``pmi`` each score minus the same sentence's under :data:`NULL_QUESTION`. ``name`` labels the answers.
    """

    def __init__(self, model, tokenizer, *, mode: str = "write", pmi: bool = True, quote_windows: int = 3,
                 abstain_threshold: float = 0.5, max_windows: int = 3,
                 max_new_tokens: int = ANSWER_TOKENS + 8, name: str = "book LM reader (fine-tuned, RAFT-style)"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(abstain_threshold, (int, float)) or isinstance(abstain_threshold, bool) \
                or not 0 < abstain_threshold <= 1:
            raise ValueError(f"abstain_threshold must be a number in (0, 1], got {abstain_threshold!r}")
        if not isinstance(max_windows, int) or isinstance(max_windows, bool) or not 1 <= max_windows <= 20:
            raise ValueError(f"max_windows must be an int in [1, 20], got {max_windows!r}")
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or not 1 <= max_new_tokens <= 256:
            raise ValueError(f"max_new_tokens must be an int in [1, 256], got {max_new_tokens!r}")
        if not isinstance(quote_windows, int) or isinstance(quote_windows, bool) or not 1 <= quote_windows <= 20:
            raise ValueError(f"quote_windows must be an int in [1, 20], got {quote_windows!r}")
        self.model, self.tok, self.mode, self.pmi, self.quote_windows = model.eval(), tokenizer, mode, bool(pmi), quote_windows
        self.abstain_threshold, self.max_windows, self.max_new_tokens, self.name = \
            float(abstain_threshold), max_windows, max_new_tokens, name
        self._abstain_ids = tokenizer.encode(" " + ABSTAIN)
        self.added_citations = 0

    def windows(self, question: str, hits: Sequence) -> list[tuple[int, str, list[int]]]:
        """``(passage number from 1, window text, prompt ids)`` for every window read; flagged
        passages (injection) are skipped."""
        out = []
        for n, h in enumerate(hits, 1):
            if getattr(h, "flags", ()):
                continue
            for w in passage_windows(h.text, self.tok)[:self.max_windows]:
                out.append((n, w, [self.tok.eot_id] + self.tok.encode(reader_prompt(question, w, n))))
        return out

    @torch.no_grad()
    def continuation_logprobs(self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
                              batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """``(sum, count)``: the log-probability of each continuation's ids after its prompt's ids
        (batched, right-padded forward passes) and the number of tokens it has."""
        if len(prompts) != len(continuations):
            raise ValueError(f"prompts and continuations must have the same length, got {len(prompts)} and {len(continuations)}")
        dev = next(self.model.parameters()).device
        sums, counts = np.zeros(len(prompts)), np.array([len(c) for c in continuations], dtype=float)
        for b in range(0, len(prompts), batch_size):
            seqs = [list(p) + list(c) for p, c in zip(prompts[b:b + batch_size], continuations[b:b + batch_size])]
            T = max(len(x) for x in seqs)
            x = torch.full((len(seqs), T), self.tok.eot_id, dtype=torch.long)
            for r, sq in enumerate(seqs):
                x[r, :len(sq)] = torch.tensor(sq)
            logp = torch.log_softmax(self.model(x.to(dev))[0].float(), -1).cpu()
            for r in range(len(seqs)):
                p, c = prompts[b + r], continuations[b + r]
                pos = torch.arange(len(p) - 1, len(p) - 1 + len(c))
                sums[b + r] = float(logp[r, pos, torch.tensor(list(c), dtype=torch.long)].sum())
        return sums, counts

    def abstain_logprobs(self, prompts: Sequence[Sequence[int]]) -> np.ndarray:
        """log P(the abstention | prompt) for each prompt's ids."""
        if not len(prompts):
            return np.zeros(0)
        return self.continuation_logprobs(prompts, [self._abstain_ids] * len(prompts))[0]

    @torch.no_grad()
    def write(self, prompt_ids: Sequence[int]) -> str:
        """The model's greedy answer after ``prompt_ids`` (up to ``max_new_tokens``, to ``<|endoftext|>``)."""
        dev = next(self.model.parameters()).device
        x = torch.tensor([list(prompt_ids)], device=dev)
        out = self.model.generate(x, self.max_new_tokens, temperature=0, eos_token_id=self.tok.eot_id)[0, x.shape[1]:]
        ids = out.tolist()
        ended = self.tok.eot_id in ids
        text = self.tok.decode(ids[:ids.index(self.tok.eot_id)] if ended else ids)
        if not ended and " " in text.strip():                       # cut at the last whole word
            text = text.rstrip().rsplit(" ", 1)[0]
        return " ".join(text.split())

    def quote(self, question: str, wins: Sequence[tuple[int, str, list[int]]]) -> tuple[int, str, float]:
        """``(window index, sentence, score)``: the window sentence (with its ``[n]``) to which the
        model gives the highest mean log-probability per token as the answer."""
        cands = [(w, u) for w, (n, text, _) in enumerate(wins) for u in answer_units(text) if len(u.split()) >= 3]
        if not cands:
            return -1, "", -np.inf
        conts = [self.tok.encode(" " + _truncate(self.tok, u, ANSWER_TOKENS).rstrip(" .:;,") + f". [{wins[w][0]}]")
                 + [self.tok.eot_id] for w, u in cands]
        sums, counts = self.continuation_logprobs([wins[w][2] for w, _ in cands], conts)
        score = sums / counts
        if self.pmi:           # minus the same sentence's score under a question that asks nothing
            null = {w: [self.tok.eot_id] + self.tok.encode(reader_prompt(NULL_QUESTION, wins[w][1], wins[w][0]))
                    for w in {w for w, _ in cands}}
            base, _ = self.continuation_logprobs([null[w] for w, _ in cands], conts)
            score = score - base / counts
        j = int(np.argmax(score))
        w, u = cands[j]
        return w, _truncate(self.tok, u, ANSWER_TOKENS).rstrip(" .:;,"), float(score[j])

    def __call__(self, question: str, hits: Sequence) -> Answer:
        _check_str("question", question)
        wins = self.windows(question, hits)
        if not wins:
            return Answer(ABSTAIN, abstained=True, generator=self.name)
        lp = self.abstain_logprobs([p for _, _, p in wins])
        best = int(np.argmin(lp))
        p_abstain = float(np.exp(lp[best]))
        if p_abstain >= self.abstain_threshold:
            return Answer(ABSTAIN, abstained=True, support=1 - p_abstain, generator=self.name)
        if self.mode == "quote":               # only the windows the model is least likely to abstain on
            top = [wins[j] for j in np.argsort(lp, kind="stable")[:self.quote_windows]]
            w, sentence, _ = self.quote(question, top)
            if w < 0:
                return Answer(ABSTAIN, abstained=True, support=1 - p_abstain, generator=self.name)
            n = top[w][0]
            return Answer(f"{sentence}. [{n}]", {n: hits[n - 1].source}, False, 1 - p_abstain, self.name)
        n, _, prompt = wins[best]
        text = self.write(prompt)
        if not text or text.startswith("I don't know"):
            return Answer(ABSTAIN, abstained=True, support=1 - p_abstain, generator=self.name)
        marks = [int(m) for m in re.findall(r"\[(\d+)\]", text) if 1 <= int(m) <= len(hits)]
        if not marks:
            text = f"{text.rstrip(' .')}. [{n}]"
            marks = [n]
            self.added_citations += 1
        cites = {m: hits[m - 1].source for m in marks}
        return Answer(text, cites, False, 1 - p_abstain, self.name)


def reader_manifest(folder: str | os.PathLike | None = None) -> dict:
    """The shipped reader's manifest (config, data, training, loss history, sha256)."""
    path = Path(folder or READER_DIR) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; `make pretrain-reader` writes it")
    return json.loads(path.read_text())


def load_book_lm_reader(folder: str | os.PathLike | None = None, *, check_hash: bool = True,
                        **reader_options) -> BookLMReader:
    """The fine-tuned reader shipped in ``folder`` (default: this package folder), offline, as a
    :class:`BookLMReader` (``reader_options`` go to it). The weights' sha256 must match the manifest."""
    from ..checkpoint import file_sha256
    from ..models.book_lm import _read_weights, load_tokenizer
    from ..models.gpt import GPT, GPTConfig

    folder = Path(folder or READER_DIR)
    man = reader_manifest(folder)
    path = folder / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; `make pretrain-reader` writes it")
    if check_hash and file_sha256(path) != man["sha256"]:
        raise ValueError(f"{path} does not match the sha256 in {MANIFEST}; re-run `make pretrain-reader`")
    model = GPT(GPTConfig(**man["config"]))
    missing, unexpected = model.load_state_dict(_read_weights(path), strict=False)
    if [k for k in missing if k != "lm_head.weight"] or unexpected:
        raise ValueError(f"weights do not fit the manifest's config: missing {missing}, unexpected {unexpected}")
    return BookLMReader(model.eval(), load_tokenizer(), **reader_options)


def untrained_reader(**reader_options) -> BookLMReader:
    """The pretrained book LM, not fine-tuned, behind the same prompt (the baseline)."""
    from ..models.book_lm import load_book_lm

    model, tok = load_book_lm()
    model.config.block_size = BLOCK_SIZE
    return BookLMReader(model, tok, name="book LM, not fine-tuned (same prompt)", **reader_options)


def _machine() -> dict:
    return {"device": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def train_reader(examples: Sequence[tuple[str, str]], *, steps: int = 400, batch_size: int = 16, lr: float = 1e-3,
                 seed: int = SEED, checkpoint_path: str | None = None, progress: bool = False):
    """Fine-tune the shipped book LM on ``(prompt, answer)`` examples; returns ``(model, tokenizer,
    history)``. AdamW at ``lr`` with 5 % warm-up and cosine decay, ``sft_loss`` on answer tokens."""
    from ..models.book_lm import load_book_lm
    from ..training import TrainConfig, train

    if not examples:
        raise ValueError("examples must be non-empty")
    torch.manual_seed(seed)
    model, tok = load_book_lm()
    model.config.block_size = BLOCK_SIZE
    model.train()
    encoded = [encode_example(tok, p, a) for p, a in examples]
    batches = ReaderBatches(encoded, tok.eot_id, batch_size=batch_size, seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    cfg = TrainConfig(steps=steps, log_every=10, progress=progress, live_plot=False, precision="fp32",
                      lr_schedule="cosine", warmup_steps=max(1, steps // 20), min_lr_ratio=0.1,
                      checkpoint_path=checkpoint_path, checkpoint_every=50 if checkpoint_path else 0)
    history = train(model, opt, batches, cfg, loss_fn=_sft_loss)
    model.eval()
    return model, tok, history


def data_hash(examples) -> str:
    """sha256 of ``(prompt, answer)`` examples (the manifest's ``examples_sha256``)."""
    h = hashlib.sha256()
    for p, a in examples:
        h.update(p.encode() + b"\0" + a.encode() + b"\0")
    return h.hexdigest()


def main(argv=None) -> None:
    """``make pretrain-reader``: book chunks -> RAFT-style data -> fine-tune -> weights + manifest."""
    from ..models.book_lm import manifest as base_manifest
    from ..models.book_lm.pretrain import save_weights
    from ..checkpoint import write_atomic
    from .chunking import chunk_documents
    from .ingest import load_book

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=READER_DIR)
    ap.add_argument("--work", type=Path, default=Path("checkpoints/book_lm_reader"))
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    from ..models.book_lm import load_tokenizer

    report = load_book(args.root)
    chunks = chunk_documents(report.documents, "markdown", size=1000, overlap=150)   # as build_book_index
    examples = make_reader_data(chunks, load_tokenizer(), seed=SEED)
    dhash = data_hash(examples)
    args.work.mkdir(parents=True, exist_ok=True)
    ckpt = args.work / f"run-{dhash[:12]}-{args.steps}.safetensors"
    n_abstain = sum(a == ABSTAIN for _, a in examples)
    print(f"{len(chunks)} chunks -> {len(examples)} examples ({n_abstain} without the oracle); data {dhash[:12]}")
    t0 = time.time()
    model, tok, hist = train_reader(examples, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                    checkpoint_path=str(ckpt), progress=True)
    args.out.mkdir(parents=True, exist_ok=True)
    sha = save_weights(model, args.out / WEIGHTS)
    man = {"name": "book_lm_reader", "base": {"name": "book_lm", "sha256": base_manifest()["sha256"]},
           "config": dict(model.config.__dict__), "seed": SEED,
           "prompt": reader_prompt("{question}", "{window}", 1).replace("[1]", "[{n}]"),
           "abstention": ABSTAIN,
           "data": {"chunks": len(chunks), "examples": len(examples), "without_oracle": n_abstain,
                    "examples_sha256": dhash,
                    "chunks_sha256": hashlib.sha256("\0".join(c.source + "\0" + c.text for c in chunks).encode()).hexdigest(),
                    "labelled_questions_used": 0, "window_tokens": WINDOW_TOKENS, "answer_tokens": ANSWER_TOKENS},
           "training": {"steps": hist.steps_done, "batch_size": args.batch_size, "lr": args.lr, "schedule": "cosine, 5% warm-up",
                        "optimizer": "AdamW(0.9, 0.98), weight decay 0.01", "loss": "cross-entropy on answer tokens",
                        "seconds": round(hist.seconds, 1), "wall_seconds_this_call": round(time.time() - t0, 1),
                        "machine": _machine(), "resumed_from": hist.resumed_from},
           "history": {"step": hist.step, "loss": [round(x, 4) for x in hist.loss], "lr": hist.lr},
           "weights_dtype": "float16", "sha256": sha}
    write_atomic(args.out / MANIFEST, json.dumps(man, indent=1))
    print(f"wrote {args.out / WEIGHTS} and {args.out / MANIFEST}: {hist.steps_done} steps, "
          f"final loss {hist.loss[-1]:.3f}, {hist.seconds:.0f} s")


if __name__ == "__main__":
    main()
