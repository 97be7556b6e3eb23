"""Static vs continuous batching under a simulated request stream (chapter 09).

Both schedulers run the real model through :class:`~genai_helpers.serving.engine.BatchEngine`;
they differ only in *when* requests join and leave the batch:

- **static**: when the server is free it takes up to ``max_batch`` waiting requests and runs them
  to completion together, like one call of ``generate`` on a padded batch. Rows that finish early
  keep computing (their tokens are thrown away) and newcomers wait for the whole batch.
- **continuous** (iteration-level scheduling, as in Orca and vLLM): after *every* decoding step,
  finished requests leave and waiting ones are prefilled into the free slots.
- **chunked prefill** (continuous with ``prefill_chunk=C``, as in Sarathi-Serve and vLLM): a new
  prompt is prefilled at most ``C`` tokens per iteration, between decoding steps, so a long prompt
  no longer stalls every running request for its whole prefill; the price is a later first token
  for the long prompt itself.

Time is simulated on a clock that advances by the measured duration of each prefill and decoding
step (or by ``step_cost`` if given, for deterministic tests), and jumps to the next arrival when the
server is idle. Per request we record the time to first token (TTFT, arrival -> first token) and
latency (arrival -> last token); throughput is generated tokens per second of simulated time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .._checks import check_positive_int
from .engine import BatchEngine
from .workload import Request

__all__ = ["POLICIES", "ServeReport", "serve", "measure_step_seconds"]

POLICIES = ("static", "continuous")


@dataclass
class ServeReport:
    policy: str
    max_batch: int
    ttft: np.ndarray                 # seconds, per request (in request order)
    latency: np.ndarray              # seconds, per request
    tokens: np.ndarray               # generated tokens, per request
    makespan: float                  # first arrival -> last token, seconds
    busy_seconds: float              # time spent computing
    wasted_row_steps: int            # static: decoding rows spent on already-finished requests
    timeline: list[tuple[float, int]] = field(default_factory=list)   # (time, active rows) after each step
    outputs: list[list[int]] = field(default_factory=list)
    max_gap: np.ndarray | None = None  # seconds, per request: longest wait between two of its tokens

    @property
    def tpot(self) -> np.ndarray:
        """Time per output token after the first, per request (NaN for one-token requests)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.tokens > 1, (self.latency - self.ttft) / np.maximum(self.tokens - 1, 1), np.nan)

    @property
    def throughput(self) -> float:
        """Generated tokens per second of simulated time."""
        return float(self.tokens.sum() / self.makespan) if self.makespan > 0 else 0.0

    def percentiles(self, values: str = "latency", qs=(50, 95, 99)) -> dict[str, float]:
        arr = getattr(self, values)
        return {f"p{q}": float(np.percentile(arr, q)) for q in qs}

    def summary(self) -> dict:
        lat, tt = self.percentiles("latency"), self.percentiles("ttft")
        tpot = self.tpot[~np.isnan(self.tpot)]
        tp = {f"tpot_{k}_s": (float(np.percentile(tpot, q)) if tpot.size else float("nan"))
              for k, q in (("p50", 50), ("p95", 95), ("p99", 99))}
        return {"policy": self.policy, "max_batch": self.max_batch, "requests": len(self.tokens),
                "tokens": int(self.tokens.sum()), "makespan_s": self.makespan, "throughput_tok_s": self.throughput,
                "ttft_p50_s": tt["p50"], "ttft_p95_s": tt["p95"], "ttft_p99_s": tt["p99"],
                "latency_p50_s": lat["p50"], "latency_p95_s": lat["p95"], "latency_p99_s": lat["p99"],
                "busy_s": self.busy_seconds, "wasted_row_steps": self.wasted_row_steps, **tp}


def _pick(logits: torch.Tensor, temperature: float, generator) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).reshape(probs.shape[:-1])


def serve(model, requests: Sequence[Request], *, policy: str = "continuous", max_batch: int = 8,
          temperature: float = 0.0, eos_id: int | None = None, generator: torch.Generator | None = None,
          step_cost: Callable[[str, int], float] | None = None, max_len: int | None = None,
          prefill_chunk: int | None = None, prefix_cache=None) -> ServeReport:
    """Serve ``requests`` with ``policy`` ("static" or "continuous") and at most ``max_batch`` at once.

    ``prefill_chunk`` (continuous only): prefill new prompts at most this many tokens per iteration,
    interleaved with the decoding steps of the running requests (chunked prefill).
    ``prefix_cache`` (a :class:`~genai_helpers.serving.prefix_cache.PrefixKVCache`): reuse the keys
    and values of cached prompt prefixes; the prefill cost counts only the tokens computed.

    Each request generates ``max_new_tokens`` tokens (fewer if it emits ``eos_id``), greedily when
    ``temperature=0``. ``step_cost(kind, n)`` (``kind`` "prefill" with ``n`` prompt tokens, or
    "decode" with ``n`` rows) replaces measured times with a cost model. Returns a :class:`ServeReport`.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    check_positive_int("max_batch", max_batch)
    if prefill_chunk is not None:
        check_positive_int("prefill_chunk", prefill_chunk)
        if policy != "continuous":
            raise ValueError(f"prefill_chunk needs policy='continuous', got policy={policy!r}")
    if not requests:
        raise ValueError("requests must not be empty")
    max_len = max_len or model.config.block_size
    for r in requests:
        if r.prompt_len + r.max_new_tokens > max_len:
            raise ValueError(f"request {r.id}: prompt {r.prompt_len} + max_new_tokens {r.max_new_tokens} "
                             f"exceeds max_len {max_len}")
    was_training = model.training
    model.eval()
    engine = BatchEngine(model, max_batch, max_len)
    order = sorted(range(len(requests)), key=lambda i: (requests[i].arrival, i))
    n = len(requests)
    first = np.full(n, np.nan); done = np.full(n, np.nan); ntok = np.zeros(n, dtype=np.int64)
    last = np.full(n, np.nan); max_gap = np.zeros(n)
    prefilling: list[list] = []           # chunked prefill: [request, its own KV cache, tokens done]
    outputs: list[list[int]] = [[] for _ in range(n)]
    slot_req: list[int] = []              # request index held by each active slot
    finished_in_batch: set[int] = set()   # static: rows done but still computing
    next_tok: list[int] = []              # token each active slot feeds next
    clock, busy, wasted, nxt_arrival = 0.0, 0.0, 0, 0
    waiting: list[int] = []
    timeline: list[tuple[float, int]] = []

    def timed(kind: str, size, fn):
        """Run ``fn`` and advance the clock; ``size`` may be a callable read after ``fn`` ran."""
        nonlocal clock, busy
        t0 = time.perf_counter()
        out = fn()
        if step_cost is not None:
            dt = step_cost(kind, size() if callable(size) else size)
        else:
            dt = time.perf_counter() - t0
        clock += dt; busy += dt
        return out

    def emit(i: int, tok: int) -> bool:
        """Record a token for request i; True when the request is complete."""
        if np.isnan(first[i]):
            first[i] = clock
        else:
            max_gap[i] = max(max_gap[i], clock - last[i])
        last[i] = clock
        outputs[i].append(tok); ntok[i] += 1
        if ntok[i] >= requests[i].max_new_tokens or (eos_id is not None and tok == eos_id):
            done[i] = clock
            return True
        return False

    def admit(i: int) -> None:
        slot, logits = timed("prefill", lambda: engine.last_computed,
                             lambda: engine.add(requests[i].prompt, prefix_cache))
        start(i, logits)

    def start(i: int, logits: torch.Tensor) -> None:
        tok = int(_pick(logits, temperature, generator))
        slot_req.append(i); next_tok.append(tok)
        if emit(i, tok):
            finished_in_batch.add(i)

    def prefill_chunks() -> None:
        """Chunked prefill: spend at most ``prefill_chunk`` prompt tokens this iteration, oldest first."""
        budget = prefill_chunk
        while prefilling and budget > 0:
            i, cache, done_tok = prefilling[0]
            prompt = requests[i].prompt.reshape(-1).to(engine.lengths.device)
            c = min(budget, requests[i].prompt_len - done_tok)
            logits = timed("prefill", c, lambda: model.forward_cached(prompt[done_tok:done_tok + c][None], cache)[0, -1])
            prefilling[0][2] += c
            budget -= c
            if prefilling[0][2] == requests[i].prompt_len:
                prefilling.pop(0)
                if prefix_cache is not None:
                    prefix_cache.insert(prompt.tolist(), [k[0] for k in cache.k], [v[0] for v in cache.v])
                engine.add_cache(cache)
                start(i, logits)
                if i in finished_in_batch:                        # a one-token request ends at prefill
                    finished_in_batch.discard(i); drop(engine.active - 1)

    def drop(pos: int) -> None:
        moved = engine.remove(pos)
        if moved is not None:
            slot_req[pos], next_tok[pos] = slot_req[moved], next_tok[moved]
        slot_req.pop(); next_tok.pop()

    with torch.no_grad():
        while True:
            while nxt_arrival < n and requests[order[nxt_arrival]].arrival <= clock:
                waiting.append(order[nxt_arrival]); nxt_arrival += 1
            if policy == "continuous" and prefill_chunk is not None:
                while waiting and engine.active + len(prefilling) < max_batch:
                    i = waiting.pop(0)
                    cache = engine.start_cache(requests[i].prompt.reshape(-1).to(engine.lengths.device), prefix_cache)
                    prefilling.append([i, cache, cache.length])
                prefill_chunks()
            elif policy == "continuous":
                while waiting and engine.active < max_batch:
                    i = waiting.pop(0)
                    admit(i)
                    if i in finished_in_batch:                    # a one-token request ends at prefill
                        finished_in_batch.discard(i); drop(engine.active - 1)
            elif engine.active == 0 and waiting:
                batch, waiting = waiting[:max_batch], waiting[max_batch:]
                for i in batch:
                    admit(i)
            if engine.active == 0 or (policy == "static" and len(finished_in_batch) == engine.active):
                for pos in range(len(slot_req) - 1, -1, -1):
                    drop(pos)
                finished_in_batch.clear()
                if prefilling:                                    # chunked prefill still has work
                    continue
                if nxt_arrival >= n and not waiting:
                    break
                if not waiting:
                    clock = max(clock, requests[order[nxt_arrival]].arrival)
                continue
            rows = engine.active
            logits = timed("decode", rows, lambda: engine.step(torch.tensor(next_tok)))
            toks = _pick(logits, temperature, generator).tolist()
            timeline.append((clock, rows))
            for pos in range(rows):
                i = slot_req[pos]
                if i in finished_in_batch:       # static: a finished row still computed (padding)
                    wasted += 1
                    engine.lengths[pos] = min(int(engine.lengths[pos]), max_len - 1)
                    continue
                next_tok[pos] = toks[pos]
                if emit(i, toks[pos]):
                    finished_in_batch.add(i)
            if policy == "continuous":
                for pos in range(len(slot_req) - 1, -1, -1):
                    if slot_req[pos] in finished_in_batch:
                        finished_in_batch.discard(slot_req[pos]); drop(pos)
    model.train(was_training)
    arrivals = np.array([r.arrival for r in requests])
    return ServeReport(policy=policy, max_batch=max_batch, ttft=first - arrivals, latency=done - arrivals, tokens=ntok,
                       makespan=float(np.nanmax(done) - arrivals.min()), busy_seconds=busy, wasted_row_steps=wasted,
                       timeline=timeline, outputs=outputs, max_gap=max_gap)


def measure_step_seconds(model, max_batch: int, *, prompt_len: int = 16, steps: int = 20) -> tuple[float, float]:
    """Median seconds of one prefill (``prompt_len`` tokens) and of one decoding step with
    ``max_batch`` rows, measured with the engine :func:`serve` uses. Used to size a request stream
    against what the server can do: ``max_batch / decode_s`` tokens per second at full batches."""
    check_positive_int("max_batch", max_batch)
    check_positive_int("steps", steps)
    engine = BatchEngine(model, max_batch, min(model.config.block_size, prompt_len + steps + 2))
    device = model.transformer.wte.weight.device
    prefill, decode = [], []
    with torch.no_grad():
        for _ in range(max_batch):
            t0 = time.perf_counter()
            engine.add(torch.zeros(prompt_len, dtype=torch.long, device=device))
            prefill.append(time.perf_counter() - t0)
        tokens = torch.zeros(max_batch, dtype=torch.long, device=device)
        for _ in range(steps):
            t0 = time.perf_counter()
            engine.step(tokens)
            decode.append(time.perf_counter() - t0)
    return float(np.median(prefill)), float(np.median(decode))
