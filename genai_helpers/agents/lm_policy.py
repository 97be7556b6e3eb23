"""A ReAct policy that a language model drives (chapter 08, §8.5): the book LM fine-tuned on
tool-use traces.

    from genai_helpers.agents.lm_policy import load_policy, make_policy_tasks
    policy = load_policy()                         # offline: shipped fp16 weights, sha256 checked
    agent = ReActAgent(policy, [calculator_tool(), sql_tool(db), search_tool], max_steps=6)

The pieces, in the order the training script (``make finetune-agent``, which runs
``python -m genai_helpers.agents.lm_policy``) uses them:

- :func:`make_policy_tasks`: questions with known routes and answers from phrasing templates.
  Each template has a *kind* (``mul``, ``params``, ``ratio``, ...) and a *split*: ``train``,
  ``dev`` (new phrasings of training kinds, for choosing the checkpoint), ``phrasing`` (other new
  phrasings of training kinds: the held-out test) and ``type`` (three whole kinds of task never
  trained on: a parenthesised expression, a release-year lookup, a difference of two lookups).
- Traces: :class:`~genai_helpers.agents.planners.RulePlanner` runs each training question in the
  :class:`~genai_helpers.agents.react.ReActAgent` loop against the real tools; :func:`trace_segments`
  turns the run into the policy's view (:func:`policy_view`: the question, then ``Thought:`` /
  ``Action:`` / ``Observation:`` lines, observations on one line and cut) split into prompt and
  model turns; :func:`encode_trace` tokenises it with loss targets on the model's own turns only.
- :func:`finetune_policy`: the book's training loop (:func:`genai_helpers.training.train`) with
  :func:`genai_helpers.finetuning.alignment.sft_loss` over padded batches.
- :class:`BookLMPolicy`: ``generate(prompt) -> str`` for the ReAct loop: it reads the agent's
  transcript, builds the same view, decodes (greedy by default) until the turn's
  ``Action:``/``Final Answer:`` line ends, and returns the turn.

The book LM was pretrained on 128-token windows; its RoPE positions extend, and the policy is
fine-tuned on traces up to ``BLOCK_SIZE`` = 256 tokens (a two-lookup question needs up to about 250).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .._checks import check_positive_int
from .planners import ROUTES, RulePlanner
from .react import AgentResult, ReActAgent
from .tools import MODEL_ROWS, format_number, safe_eval

__all__ = ["PolicyTask", "POLICY_TEMPLATES", "SPLITS", "make_policy_tasks", "policy_view", "trace_segments",
           "encode_trace", "collate", "route_of_tools", "BookLMPolicy", "finetune_policy", "save_policy",
           "load_policy", "policy_manifest", "POLICY_WEIGHTS", "POLICY_MANIFEST", "BLOCK_SIZE", "MAX_OBS_CHARS",
           "SEARCH_TERMS", "make_traces", "run_tasks", "main"]

SPLITS = ("train", "dev", "phrasing", "type")
BLOCK_SIZE = 256            # longest trace the policy is fine-tuned on (tokens)
MAX_OBS_CHARS = 90          # observations (and a search answer) as the policy sees them
DATA_DIR = Path(__file__).resolve().parent / "data"
POLICY_WEIGHTS = "react_policy.safetensors"
POLICY_MANIFEST = "react_policy.json"
IGNORE_INDEX = -100

_BY_NAME = {r[0]: r for r in MODEL_ROWS}
_COL = {"params_m": 2, "context": 3, "year": 4}
# Terms from the book's glossary that the search questions ask about (no digits: a digit would
# read as arithmetic to the rules).
SEARCH_TERMS = ["beam search", "top-p sampling", "a KV cache", "perplexity", "LoRA", "spotlighting",
                "a causal mask", "a mixture of experts", "retrieval-augmented generation", "speculative decoding",
                "quantization", "a semantic cache", "teacher forcing", "the softmax temperature",
                "layer normalisation", "a reward model", "classifier-free guidance", "a tokenizer"]


@dataclass(frozen=True)
class PolicyTask:
    question: str
    route: str              # one of ROUTES
    answer: str | None      # exact expected answer (None for search questions: scored on routing)
    template: int           # index into POLICY_TEMPLATES
    kind: str               # what sort of task (mul, params, ratio, ...)
    split: str              # train | dev | phrasing | type


# (kind, route, split, phrasing). Fields: a, b, c (numbers), p, n, s; m, m2 (model names); f (family);
# t (a search term). Phrasings avoid words the rule planner cannot parse, so that every training
# trace it writes is right (checked by make_traces).
POLICY_TEMPLATES: list[tuple[str, str, str, str]] = [
    ("mul", "calculator", "train", "What is {a} * {b}?"),
    ("mul", "calculator", "train", "Calculate {a} times {b}."),
    ("mul", "calculator", "dev", "{a} multiplied by {b} is how much?"),
    ("mul", "calculator", "phrasing", "I have {a} GPUs with {b} GB each; total memory = {a} times {b}?"),
    ("pct", "calculator", "train", "Compute {p}% of {n}."),
    ("pct", "calculator", "train", "What is {p}% of {n}?"),
    ("pct", "calculator", "phrasing", "How much is {p}% of {n}?"),
    ("addsub", "calculator", "train", "What is {a} plus {b} minus {c}?"),
    ("addsub", "calculator", "train", "Calculate {a} + {b} - {c}."),
    ("addsub", "calculator", "phrasing", "{a} plus {b} minus {c} equals what?"),
    ("div", "calculator", "train", "What is {a} divided by {b}?"),
    ("div", "calculator", "train", "Compute {a} / {b}."),
    ("div", "calculator", "phrasing", "how much is {a} divided by {b}"),
    ("sqrt", "calculator", "train", "What is the square root of {s}?"),
    ("sqrt", "calculator", "phrasing", "Find the square root of {s}."),
    ("paren", "calculator", "type", "Calculate ({a} + {b}) / {c}."),
    ("params", "sql", "train", "How many parameters (in millions) does {m} have?"),
    ("params", "sql", "train", "What is the size of {m} in millions of parameters?"),
    ("params", "sql", "dev", "how big is {m}"),
    ("params", "sql", "phrasing", "What is the parameter count of {m}?"),
    ("context", "sql", "train", "What is the context length of {m}?"),
    ("context", "sql", "train", "How many tokens fit in the context window of {m}?"),
    ("context", "sql", "phrasing", "How long is the context window of {m}?"),
    ("year", "sql", "type", "When was {m} released?"),
    ("year", "sql", "type", "In which year was {m} published?"),
    ("count", "sql", "train", "How many {f} models are in the database?"),
    ("count", "sql", "phrasing", "How many models of the {f} family are in the table?"),
    ("pair_params", "sql+calculator", "train", "How many parameters do {m} and {m2} have together?"),
    ("pair_params", "sql+calculator", "phrasing", "What is the total parameter count of {m} and {m2} combined?"),
    ("pair_context", "sql+calculator", "train", "What is the combined context length of {m} and {m2}?"),
    ("pair_context", "sql+calculator", "dev", "What is the sum of the context windows of {m} and {m2}?"),
    ("ratio", "sql+calculator", "train", "How many times larger is {m} than {m2}?"),
    ("ratio", "sql+calculator", "phrasing", "What is the ratio of the parameters of {m} to {m2}?"),
    ("difference", "sql+calculator", "type", "How many more parameters does {m} have than {m2}?"),
    ("difference", "sql+calculator", "type", "What is the difference in parameters between {m} and {m2}?"),
    ("search", "search", "train", "What is {t}?"),
    ("search", "search", "train", "Explain {t}."),
    ("search", "search", "dev", "How does {t} work?"),
    ("search", "search", "phrasing", "Can you tell me about {t}?"),
]


def _answer(kind: str, v: dict) -> str | None:
    a, b, c = v.get("a"), v.get("b"), v.get("c")
    expr = {"mul": f"{a}*{b}", "pct": f"{v.get('p')}/100*{v.get('n')}", "addsub": f"{a}+{b}-{c}",
            "div": f"{a}/{b}", "sqrt": f"sqrt({v.get('s')})", "paren": f"({a}+{b})/{c}"}.get(kind)
    if expr is not None:
        return format_number(safe_eval(expr))
    m, m2 = v.get("m"), v.get("m2")
    if kind in ("params", "context", "year"):
        return str(_BY_NAME[m][_COL["params_m" if kind == "params" else kind]])
    if kind == "count":
        return str(sum(r[1] == v["f"] for r in MODEL_ROWS))
    if kind in ("pair_params", "pair_context", "ratio", "difference"):
        col = _COL["context" if kind == "pair_context" else "params_m"]
        op = {"ratio": "/", "difference": "-"}.get(kind, "+")
        return format_number(safe_eval(f"{_BY_NAME[m][col]}{op}{_BY_NAME[m2][col]}"))
    return None


def _values(kind: str, rng: random.Random) -> dict:
    names = sorted(_BY_NAME)
    if kind == "mul":
        return {"a": rng.randint(2, 99), "b": rng.randint(2, 99)}
    if kind == "pct":
        return {"p": rng.choice([5, 10, 12, 15, 20, 25, 30, 40]), "n": rng.randint(10, 900)}
    if kind == "addsub":
        return {"a": rng.randint(10, 999), "b": rng.randint(10, 999), "c": rng.randint(1, 99)}
    if kind == "div":
        return {"a": rng.randint(100, 999), "b": rng.choice([2, 4, 5, 8, 10])}
    if kind == "sqrt":
        return {"s": rng.randint(2, 40) ** 2}
    if kind == "paren":
        return {"a": rng.randint(10, 99), "b": rng.randint(10, 99), "c": rng.choice([2, 4, 5, 8])}
    if kind in ("params", "context", "year"):
        return {"m": rng.choice(names)}
    if kind == "count":
        return {"f": rng.choice(sorted({r[1] for r in MODEL_ROWS}))}
    if kind in ("pair_params", "pair_context", "ratio", "difference"):
        m, m2 = rng.sample(names, 2)
        if kind == "difference" and _BY_NAME[m][2] < _BY_NAME[m2][2]:
            m, m2 = m2, m
        return {"m": m, "m2": m2}
    return {"t": rng.choice(SEARCH_TERMS)}


def make_policy_tasks(n_per_template: int | dict = 10, seed: int = 0, splits: Sequence[str] = SPLITS) -> list[PolicyTask]:
    """``n_per_template`` questions from every template whose split is in ``splits`` (an int, or a
    dict ``{split: n}``), drawn with ``random.Random(seed)``; one stream per template, so the
    questions of one split do not change when another split's count does."""
    if isinstance(splits, str) or not set(splits) <= set(SPLITS) or not splits:
        raise ValueError(f"splits must be a non-empty sequence of {SPLITS}, got {splits!r}")
    counts = n_per_template if isinstance(n_per_template, dict) else {s: n_per_template for s in splits}
    for s in splits:
        check_positive_int(f"n_per_template[{s!r}]", counts.get(s, 0))
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    tasks = []
    for i, (kind, route, split, fmt) in enumerate(POLICY_TEMPLATES):
        if split not in splits:
            continue
        rng = random.Random(seed * 1000 + i)
        for _ in range(counts[split]):
            v = _values(kind, rng)
            tasks.append(PolicyTask(fmt.format(**v), route, _answer(kind, v), i, kind, split))
    return tasks


# ------------------------------------------------------------------ the policy's view of a run
_LINE = re.compile(r"^(Thought|Action|Observation|Final Answer|Question):[ \t]?", re.M)


def _one_line(text: str, max_chars: int) -> str:
    flat = " / ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    return flat if len(flat) <= max_chars else flat[:max_chars].rstrip() + "..."


def _parts(transcript: str) -> list[tuple[str, str]]:
    """``(label, body)`` of every labelled line from the last ``Question:`` on."""
    start = transcript.rfind("\nQuestion:")
    start = start + 1 if start >= 0 else (0 if transcript.startswith("Question:") else -1)
    if start < 0:
        raise ValueError("transcript must contain a 'Question:' line")
    text = transcript[start:]
    marks = list(_LINE.finditer(text))
    return [(m.group(1), text[m.end(): marks[k + 1].start() if k + 1 < len(marks) else len(text)].strip())
            for k, m in enumerate(marks)]


def policy_view(transcript: str, *, max_obs_chars: int = MAX_OBS_CHARS) -> str:
    """What the policy reads: the last question of a ReAct transcript and everything after it, one
    line per label (``Question:``, ``Thought:``, ``Action:``, ``Observation:``, ``Final Answer:``),
    observations joined on one line with `` / `` and cut to ``max_obs_chars`` characters. The
    system header (the same for every question) is left out: the fine-tuned policy learned it."""
    if not isinstance(transcript, str):
        raise TypeError(f"transcript must be a str, got {type(transcript).__name__}")
    check_positive_int("max_obs_chars", max_obs_chars)
    lines = []
    for label, body in _parts(transcript):
        cut = label in ("Observation", "Final Answer")
        lines.append(f"{label}: {_one_line(body, max_obs_chars) if cut else ' '.join(body.split())}")
    return "\n".join(lines) + "\n"


def trace_segments(result: AgentResult, *, max_obs_chars: int = MAX_OBS_CHARS) -> list[tuple[bool, str]]:
    """A finished run as ``(is_model_turn, text)`` segments of the policy's view: the question and
    each observation are prompt; each ``Thought:`` + ``Action:`` (or ``Final Answer:``) pair is a
    model turn. Raises ValueError for runs that did not end with a final answer or hold a
    malformed step (they are not worth imitating)."""
    if not isinstance(result, AgentResult):
        raise TypeError(f"result must be an AgentResult, got {type(result).__name__}")
    if result.stopped != "final" or result.n_malformed:
        raise ValueError(f"only clean runs make traces; this one stopped with {result.stopped!r} and "
                         f"{result.n_malformed} malformed steps")
    view = policy_view(result.transcript, max_obs_chars=max_obs_chars)
    segments: list[tuple[bool, str]] = []
    for line in view.splitlines(keepends=True):
        model = line.startswith(("Thought:", "Action:", "Final Answer:"))
        if segments and segments[-1][0] == model:
            segments[-1] = (model, segments[-1][1] + line)
        else:
            segments.append((model, line))
    return segments


def encode_trace(tokenizer, segments: Sequence[tuple[bool, str]], *, max_len: int = BLOCK_SIZE) -> tuple[list[int], list[int]]:
    """``(input_ids, targets)`` of one trace: ``<|endoftext|>`` + every segment, shifted by one;
    targets are ``-100`` on prompt tokens, so only the model's own turns (and the end-of-text
    token after its final answer) are learned. Raises ValueError if longer than ``max_len``."""
    check_positive_int("max_len", max_len, minimum=2)
    if not segments or not any(m for m, _ in segments):
        raise ValueError("segments must hold at least one model turn")
    ids, learn = [tokenizer.eot_id], [False]
    for model, text in segments:
        if not isinstance(text, str) or not text:
            raise ValueError("every segment must be a non-empty str")
        piece = tokenizer.encode(text)
        ids += piece
        learn += [bool(model)] * len(piece)
    ids.append(tokenizer.eot_id)
    learn.append(True)
    if len(ids) - 1 > max_len:
        raise ValueError(f"trace has {len(ids) - 1} tokens, more than max_len={max_len}")
    targets = [t if ok else IGNORE_INDEX for t, ok in zip(ids[1:], learn[1:])]
    return ids[:-1], targets


def collate(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``(input_ids, targets)`` pairs into ``(B, T)`` tensors (targets padded with -100)."""
    if not pairs:
        raise ValueError("pairs must not be empty")
    T = max(len(x) for x, _ in pairs)
    x = torch.full((len(pairs), T), pad_id, dtype=torch.long)
    y = torch.full((len(pairs), T), IGNORE_INDEX, dtype=torch.long)
    for i, (a, b) in enumerate(pairs):
        x[i, :len(a)] = torch.tensor(a)
        y[i, :len(b)] = torch.tensor(b)
    return x, y


def route_of_tools(tools_used: Sequence[str]) -> str:
    """The route a run took, from the tools it called: ``calculator``, ``sql``, ``sql+calculator``,
    ``search``, or ``other`` (no tool, or another sequence)."""
    seq = [t for t in tools_used if t]
    if seq == ["calculator"]:
        return "calculator"
    if seq == ["search"]:
        return "search"
    if seq and set(seq) == {"sql"} and len(seq) == 1:
        return "sql"
    if len(seq) == 3 and seq[:2] == ["sql", "sql"] and seq[2] == "calculator":
        return "sql+calculator"
    return "other"


def make_traces(tasks: Sequence[PolicyTask], tools, *, max_obs_chars: int = MAX_OBS_CHARS):
    """Run :class:`~genai_helpers.agents.planners.RulePlanner` on ``tasks`` with ``tools``; returns ``(traces, skipped)``:
    ``traces`` the ``(task, segments)`` of runs that ended with the task's answer (search: any
    answer after one search), ``skipped`` the tasks whose rule run was wrong (not imitated)."""
    agent = ReActAgent(RulePlanner(), tools, max_steps=6)
    traces, skipped = [], []
    for t in tasks:
        res = agent.run(t.question)
        ok = (res.stopped == "final" and res.n_malformed == 0 and route_of_tools(res.tools_used) == t.route
              and (t.answer is None or res.answer == t.answer))
        if ok:
            traces.append((t, trace_segments(res, max_obs_chars=max_obs_chars)))
        else:
            skipped.append(t)
    return traces, skipped


# ------------------------------------------------------------------ the policy
class BookLMPolicy:
    """``generate(prompt) -> str`` for :class:`~genai_helpers.agents.react.ReActAgent`, driven by a
    GPT: builds :func:`policy_view` of the transcript, decodes up to ``max_new_tokens`` tokens and
    stops after the first complete ``Action:`` or ``Final Answer:`` line (or at ``<|endoftext|>``).
    ``temperature=0`` (default) is greedy; otherwise tokens are sampled with ``generator``
    (seeded: the same seed gives the same run). ``calls`` and ``tokens`` count the work done."""

    name = "book-LM policy"

    def __init__(self, model, tokenizer, *, max_new_tokens: int = 96, temperature: float = 0.0,
                 top_p: float | None = None, seed: int | None = None, max_obs_chars: int = MAX_OBS_CHARS):
        from ..models.gpt import GPT
        if not isinstance(model, GPT):
            raise TypeError(f"model must be a GPT, got {type(model).__name__}")
        check_positive_int("max_new_tokens", max_new_tokens)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
            raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
        self.model, self.tok = model.eval(), tokenizer
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, float(temperature), top_p
        self.max_obs_chars = max_obs_chars
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(int(seed))
        self.calls = self.tokens = 0

    @torch.no_grad()
    def __call__(self, prompt: str) -> str:
        from ..sampling import sample_next_token
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        view = policy_view(prompt, max_obs_chars=self.max_obs_chars)
        ids = torch.tensor([[self.tok.eot_id] + self.tok.encode(view)])
        step = self.model.step_fn(1, use_cache=True)
        out: list[int] = []
        text = ""
        for _ in range(self.max_new_tokens):
            logits = step(ids)
            if self.temperature == 0:
                nxt = int(logits[0].argmax())
            else:
                nxt = int(sample_next_token(logits, temperature=self.temperature, top_p=self.top_p,
                                            generator=self.generator)[0])
            if nxt == self.tok.eot_id:
                break
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
            text = self.tok.decode(out)
            if text.endswith("\n") and re.search(r"^(Action|Final Answer):.*\n", text, re.M):
                break
        self.calls += 1
        self.tokens += len(out)
        return text


# ------------------------------------------------------------------ fine-tuning and shipping
def finetune_policy(model, pairs: Sequence[tuple[list[int], list[int]]], *, steps: int, batch_size: int = 16,
                    lr: float = 1e-3, seed: int = 0, pad_id: int = 0, log_every: int = 10, time_budget_s=None,
                    eval_fn=None, eval_every: int = 0):
    """Fine-tune ``model`` (a GPT, all weights) on encoded traces with the book's training loop:
    AdamW, warm-up + cosine rate, batches of ``batch_size`` traces drawn with ``seed``, loss
    :func:`~genai_helpers.finetuning.alignment.sft_loss` (model turns only). Returns the
    :class:`~genai_helpers.training.TrainHistory`."""
    from ..finetuning.alignment import sft_loss
    from ..training import TrainConfig, train
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    if not pairs:
        raise ValueError("pairs must not be empty")
    g = torch.Generator().manual_seed(seed)
    order: list[int] = []

    def batch_fn(i):
        nonlocal order
        if len(order) < batch_size:
            order += torch.randperm(len(pairs), generator=g).tolist()
        chosen, order = order[:batch_size], order[batch_size:]
        return collate([pairs[j] for j in chosen], pad_id)

    def loss_fn(m, batch):
        x, y = batch
        logits, _ = m(x)
        return sft_loss(logits, y)

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.95))
    cfg = TrainConfig(steps=steps, log_every=log_every, progress=False, live_plot=False, lr_schedule="cosine",
                      warmup_steps=max(1, steps // 20), min_lr_ratio=0.1, time_budget_s=time_budget_s,
                      eval_every=eval_every)
    history = train(model, opt, batch_fn, cfg, loss_fn=loss_fn, eval_fn=eval_fn, device=torch.device("cpu"))
    model.eval()
    return history


def save_policy(model, folder: str | os.PathLike, manifest: dict) -> Path:
    """Write ``react_policy.safetensors`` (fp16) and ``react_policy.json`` (``manifest`` plus the
    config and the weights' sha256) into ``folder``, each atomically. Returns the weights' path."""
    from safetensors.torch import save
    from ..checkpoint import file_sha256, write_atomic
    if not isinstance(manifest, dict):
        raise TypeError(f"manifest must be a dict, got {type(manifest).__name__}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
             if not (model.config.tie_weights and k == "lm_head.weight")}
    path = write_atomic(folder / POLICY_WEIGHTS, save(state, metadata={"format": "fp16"}))
    man = dict(manifest, config=dict(vars(model.config)), sha256=file_sha256(path))
    write_atomic(folder / POLICY_MANIFEST, json.dumps(man, indent=1) + "\n")
    return path


def policy_manifest(folder: str | os.PathLike | None = None) -> dict:
    """The shipped policy's manifest (data hash, steps, losses, dev accuracy, seed, machine)."""
    path = Path(folder or DATA_DIR) / POLICY_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; `make finetune-agent` writes it")
    return json.loads(path.read_text())


def load_policy(folder: str | os.PathLike | None = None, **policy_kwargs) -> BookLMPolicy:
    """The shipped fine-tuned policy (offline; the weights' sha256 must match the manifest) as a
    :class:`BookLMPolicy`; ``policy_kwargs`` go to it (``temperature``, ``seed``, ...)."""
    from safetensors.torch import load_file
    from ..checkpoint import file_sha256
    from ..models.book_lm import load_tokenizer
    from ..models.gpt import GPT, GPTConfig
    folder = Path(folder or DATA_DIR)
    man = policy_manifest(folder)
    path = folder / POLICY_WEIGHTS
    if file_sha256(path) != man["sha256"]:
        raise ValueError(f"{path} does not match the sha256 in {POLICY_MANIFEST}; re-run `make finetune-agent`")
    model = GPT(GPTConfig(**man["config"]))
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()}, strict=False)
    if [k for k in missing if k != "lm_head.weight"] or unexpected:
        raise ValueError(f"weights do not fit the manifest's config: missing {missing}, unexpected {unexpected}")
    return BookLMPolicy(model.eval(), load_tokenizer(), **policy_kwargs)


# ------------------------------------------------------------------ evaluation helper
def run_tasks(agent: ReActAgent, tasks: Sequence[PolicyTask]) -> list[dict]:
    """Run ``agent`` on ``tasks``: per task ``route`` (from the tools called), ``correct`` (exact
    answer; for search: routed to search and answered), ``steps``, ``malformed``, ``stopped``."""
    rows = []
    for t in tasks:
        res = agent.run(t.question)
        route = route_of_tools(res.tools_used)
        correct = (res.answer is not None and route == "search") if t.answer is None else res.answer == t.answer
        rows.append({"route": route, "correct": bool(correct), "route_ok": route == t.route, "answer": res.answer,
                     "steps": len(res.steps), "malformed": res.n_malformed, "stopped": res.stopped})
    return rows



# ------------------------------------------------------------------ the training script
def _machine() -> dict:
    return {"device": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__}


def main(argv: Sequence[str] | None = None) -> None:
    """``make finetune-agent``: traces from the rule planner on the training split, fine-tune the
    book LM, keep the checkpoint with the best dev accuracy, ship fp16 weights + manifest."""
    import argparse
    import tempfile
    from ..models.book_lm import load_book_lm, manifest as book_manifest
    from ..rag import HashingEmbedder, build_book_index
    from .tools import build_models_database, calculator_tool, retrieval_tool, sql_tool
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--n-train", type=int, default=150, help="questions per training template")
    ap.add_argument("--n-dev", type=int, default=6, help="questions per dev template")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=300)
    ap.add_argument("--out", default=str(DATA_DIR))
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    root = Path(__file__).resolve().parents[2]
    work = Path(tempfile.mkdtemp(prefix="react_policy_"))
    db = build_models_database(work / "models.db")
    book = build_book_index(root, embedder=HashingEmbedder(), method="bm25")
    tools = [calculator_tool(), sql_tool(db), retrieval_tool(book, k=2, max_chars=240)]
    train_tasks = make_policy_tasks({"train": args.n_train}, seed=args.seed, splits=("train",))
    dev_tasks = make_policy_tasks({"dev": args.n_dev}, seed=args.seed + 1, splits=("dev",))
    traces, skipped = make_traces(train_tasks, tools)
    model, tok = load_book_lm()
    model.config.block_size = BLOCK_SIZE
    pairs = [encode_trace(tok, seg) for _, seg in traces]
    data_hash = hashlib.sha256(json.dumps([seg for _, seg in traces]).encode()).hexdigest()
    print(f"{len(traces)} traces ({len(skipped)} rule runs skipped), {sum(len(x) for x, _ in pairs)} tokens, "
          f"longest {max(len(x) for x, _ in pairs)}; data sha256 {data_hash[:12]}", flush=True)
    dev_agent_tools = tools
    best = {"acc": -1.0, "step": 0, "state": None}
    dev_log = []

    def eval_fn(m):
        m.eval()
        pol = BookLMPolicy(m, tok)
        rows = run_tasks(ReActAgent(pol, dev_agent_tools, max_steps=6), dev_tasks)
        acc = sum(r["correct"] for r in rows) / len(rows)
        step = len(dev_log) * args.eval_every + args.eval_every
        dev_log.append({"step": min(step, args.steps), "dev_acc": acc})
        if acc > best["acc"]:
            best.update(acc=acc, step=min(step, args.steps),
                        state={k: v.detach().clone() for k, v in m.state_dict().items()})
        print(f"  dev accuracy {acc:.3f} ({len(rows)} questions) at step {dev_log[-1]['step']}", flush=True)
        m.train()
        return {"dev_acc": acc}

    t0 = time.perf_counter()
    hist = finetune_policy(model, pairs, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           pad_id=tok.eot_id, eval_fn=eval_fn, eval_every=args.eval_every)
    seconds = time.perf_counter() - t0
    model.load_state_dict(best["state"])
    man = {"name": "react_policy", "base": {"model": "book_lm", "sha256": book_manifest()["sha256"]},
           "seed": args.seed, "data": {"sha256": data_hash, "traces": len(traces), "skipped": len(skipped),
                                       "tokens": sum(len(x) for x, _ in pairs),
                                       "train_templates": sorted({t.template for t, _ in traces}),
                                       "n_per_train_template": args.n_train, "n_per_dev_template": args.n_dev,
                                       "search_index": "book index, HashingEmbedder + bm25"},
           "training": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seconds": round(seconds, 1),
                        "block_size": BLOCK_SIZE, "loss": "sft_loss on the model's turns", "optimizer": "AdamW, cosine",
                        "machine": _machine()},
           "history": {"step": hist.step, "loss": [round(x, 4) for x in hist.loss]},
           "dev": {"log": dev_log, "best_step": best["step"], "best_acc": best["acc"], "n": len(dev_tasks)}}
    path = save_policy(model, args.out, man)
    print(f"kept step {best['step']} (dev accuracy {best['acc']:.3f}); trained {seconds:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
