"""Speculative decoding: a small draft model guesses, the big target model checks (chapter 09).

Each round the draft proposes ``k`` tokens one at a time (cheap calls); the target scores all of
them in ONE forward pass (the cost of about one decoding step, since decoding is memory-bound).
Draft token ``x_i`` drawn from the draft's ``q_i`` is accepted with probability
``min(1, p_i(x_i) / q_i(x_i))`` where ``p_i`` is the target's distribution at that position; at the
first rejection a replacement is drawn from ``normalise(max(0, p_i - q_i))`` and the round ends; if
all ``k`` are accepted, one bonus token is drawn from the target's next distribution. This rule
(Leviathan et al. 2023; Chen et al. 2023) makes every emitted token distributed *exactly* as if
the target had sampled it alone: the chapter tests that. With ``temperature=0`` both sides are
greedy and the output equals the target's greedy output token for token.

A round emits its accepted prefix plus one token, so with per-token acceptance probability ``α``
it yields ``(1 - α^(k+1)) / (1 - α)`` tokens on average (:func:`expected_tokens_per_round`); ``α``
is measured over the draft tokens the target actually checked (:attr:`SpecStats.acceptance_rate`).

Models are reached through small *sessions* (``extend(tokens) -> logits``, ``truncate(n)``): the
GPT's KV cache (:class:`CachedSession`) or full recomputation for any ``logits_fn``
(:class:`RecomputeSession`), so rejected draft tokens can be rolled back.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .._checks import check_positive_int

__all__ = ["RecomputeSession", "CachedSession", "truncate_cache", "session_for", "accept_reject", "SpecStats",
           "speculative_generate", "autoregressive_generate", "expected_tokens_per_round"]


class RecomputeSession:
    """A session over ``logits_fn(idx (1, T)) -> logits (1, T, V)``, recomputing the whole prefix
    on every call (no cache). ``extend(tokens)`` returns ``(t, V)`` logits after each new token."""

    def __init__(self, logits_fn: Callable[[torch.Tensor], torch.Tensor], block_size: int | None = None):
        self.logits_fn, self.block_size = logits_fn, block_size
        self.tokens: list[int] = []

    @property
    def length(self) -> int:
        return len(self.tokens)

    def extend(self, new_tokens) -> torch.Tensor:
        new_tokens = [int(t) for t in new_tokens]
        self.tokens.extend(new_tokens)
        idx = torch.tensor([self.tokens[-self.block_size:] if self.block_size else self.tokens])
        out = self.logits_fn(idx)
        out = out[0] if isinstance(out, tuple) else out
        return out[0, -len(new_tokens):]

    def truncate(self, length: int) -> None:
        del self.tokens[length:]


class CachedSession:
    """A session over a GPT with a KV cache (``model.new_cache`` / ``model.forward_cached``).

    ``truncate`` rolls the cache back by resetting its length: entries past it are overwritten by
    the next ``extend``. The cache is preallocated for ``max_len`` tokens."""

    def __init__(self, model, max_len: int | None = None):
        self.model = model
        p = next(model.parameters())
        self.cache = model.new_cache(1, max_len=max_len, device=p.device, dtype=p.dtype)

    @property
    def length(self) -> int:
        return int(self.cache.length)

    def extend(self, new_tokens) -> torch.Tensor:
        p = next(self.model.parameters())
        idx = torch.as_tensor([int(t) for t in new_tokens], dtype=torch.long, device=p.device)[None]
        return self.model.forward_cached(idx, self.cache)[0]

    def truncate(self, length: int) -> None:
        if length < self.cache.length:
            truncate_cache(self.cache, length)


def truncate_cache(cache, length: int) -> None:
    """Roll a :class:`~genai_helpers.models.gpt.KVCache` back to its first ``length`` tokens."""
    if hasattr(cache, "truncate"):
        cache.truncate(length)
        return
    if all(k.shape[2] >= length for k in cache.k if k is not None) and _preallocated(cache):
        cache.length = length
    else:                                   # grown caches: slice the stored tensors
        cache.k = [k[:, :, :length] for k in cache.k]
        cache.v = [v[:, :, :length] for v in cache.v]
        cache.length = length


def _preallocated(cache) -> bool:
    return bool(getattr(cache, "max_len", None))


def session_for(model_or_fn, max_len: int | None = None):
    """A :class:`CachedSession` for a model with ``forward_cached``, else a :class:`RecomputeSession`."""
    if hasattr(model_or_fn, "forward_cached"):
        return CachedSession(model_or_fn, max_len)
    if callable(model_or_fn):
        return RecomputeSession(model_or_fn)
    raise TypeError("model_or_fn must be a GPT (with forward_cached) or a callable logits_fn")


def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.softmax(logits.float() / temperature, dim=-1)


def accept_reject(p: torch.Tensor, q: torch.Tensor, draft: list[int], generator: torch.Generator | None = None
                  ) -> tuple[int, int]:
    """The verification rule. ``p``: target probabilities ``(k + 1, V)`` (row ``i`` for draft
    position ``i``, last row for the bonus token); ``q``: draft probabilities ``(k, V)``; ``draft``:
    the ``k`` proposed ids. Returns ``(number accepted n, next token)`` — the replacement drawn from
    ``max(0, p_n - q_n)`` if ``n < k``, else the bonus token drawn from ``p_k``."""
    k = len(draft)
    for i, x in enumerate(draft):
        px, qx = float(p[i, x]), float(q[i, x])
        r = float(torch.rand((), generator=generator))
        if qx > 0 and r < min(1.0, px / qx):
            continue
        residual = (p[i] - q[i]).clamp(min=0)
        total = residual.sum()
        residual = residual / total if total > 0 else p[i]
        return i, int(torch.multinomial(residual, 1, generator=generator))
    return k, int(torch.multinomial(p[k], 1, generator=generator))


@dataclass
class SpecStats:
    """Counts of one :func:`speculative_generate` call.

    A round drafts ``kk <= k`` tokens; the target checks them in order and stops at the first
    rejection, so a round that accepts ``n < kk`` tokens has *checked* ``n + 1`` of them and never
    looked at the other ``kk - n - 1``. ``checked`` counts only the tokens the target judged: the
    per-token acceptance probability ``α`` of :func:`expected_tokens_per_round` is estimated by
    ``accepted / checked`` (the maximum-likelihood estimate when acceptances are independent).
    ``accepted / drafted`` (:attr:`fraction_kept`) also counts the unchecked tail as failures and
    understates ``α`` the more the larger ``k`` is.

    The last rounds of a reply draft fewer than ``k`` tokens (``kk = min(k, tokens still wanted)``);
    to compare with :func:`expected_tokens_per_round` for ``k``, average ``n + 1`` over the rounds
    whose ``drafted_per_round`` is ``k``.
    """
    rounds: int = 0
    drafted: int = 0            # draft tokens proposed (the draft's work)
    checked: int = 0            # draft tokens the target accepted or rejected: n + 1 per round, or kk if all kept
    accepted: int = 0           # draft tokens kept: the accepted prefix of each round
    target_calls: int = 0
    draft_calls: int = 0
    seconds: float = 0.0
    accepted_per_round: list[int] = field(default_factory=list)    # n of each round
    drafted_per_round: list[int] = field(default_factory=list)     # kk of each round

    @property
    def acceptance_rate(self) -> float:
        """Per-token acceptance probability ``α``: ``accepted / checked``, in ``[0, 1]``."""
        return self.accepted / self.checked if self.checked else 0.0

    @property
    def fraction_kept(self) -> float:
        """Share of the draft's proposals that were emitted, ``accepted / drafted`` (a cost figure,
        not ``α``: the tokens after a round's first rejection count as drafted but were never checked)."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_round(self) -> float:
        """The number of tokens emitted per verifying pass, the accepted prefix plus one corrected or
        bonus token per round (before the output is cut to ``max_new_tokens``)."""
        return (self.accepted + self.rounds) / self.rounds if self.rounds else 0.0

    @property
    def tokens_per_target_call(self) -> float:
        """Like ``tokens_per_round``, with the prefill pass of the prompt counted as a call."""
        return (self.accepted + self.rounds) / self.target_calls if self.target_calls else 0.0


def speculative_generate(target, draft, prompt, max_new_tokens: int, *, k: int = 4, temperature: float = 1.0,
                         generator: torch.Generator | None = None, max_len: int | None = None
                         ) -> tuple[list[int], SpecStats]:
    """Generate ``max_new_tokens`` after ``prompt`` (1-D ids, length >= 1) with draft-and-verify.

    ``target``/``draft``: GPTs (KV-cached) or ``logits_fn`` callables (recomputed). ``k`` draft tokens
    per round; ``temperature=0`` is greedy on both sides. Returns ``(new token ids, stats)``.
    """
    check_positive_int("max_new_tokens", max_new_tokens)
    check_positive_int("k", k)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    prompt = [int(t) for t in (prompt.tolist() if torch.is_tensor(prompt) else prompt)]
    if not prompt:
        raise ValueError("prompt must hold at least one token")
    max_len = max_len or len(prompt) + max_new_tokens + k + 1
    tgt, drf = session_for(target, max_len), session_for(draft, max_len)
    tokens, stats = list(prompt), SpecStats()
    t0 = time.perf_counter()
    with torch.no_grad():
        if len(prompt) > 1:                       # prefill all but the last prompt token
            tgt.extend(prompt[:-1]); drf.extend(prompt[:-1])
            stats.target_calls += 1; stats.draft_calls += 1
        while len(tokens) - len(prompt) < max_new_tokens:
            kk = min(k, max_new_tokens - (len(tokens) - len(prompt)))
            proposal, q_rows = [], []
            logits = drf.extend(tokens[drf.length:])[-1]
            stats.draft_calls += 1
            for i in range(kk):
                if temperature == 0:
                    x = int(logits.argmax())
                    q_rows.append(F.one_hot(torch.tensor(x), logits.shape[-1]).float())
                else:
                    q = _probs(logits, temperature)
                    x = int(torch.multinomial(q, 1, generator=generator))
                    q_rows.append(q)
                proposal.append(x)
                if i < kk - 1:
                    logits = drf.extend([x])[-1]
                    stats.draft_calls += 1
            pending = tokens[tgt.length:]
            rows = tgt.extend(pending + proposal)[len(pending) - 1:]        # (kk + 1, V)
            stats.target_calls += 1
            if temperature == 0:
                best = rows.argmax(-1).tolist()
                n = next((i for i in range(kk) if best[i] != proposal[i]), kk)
                nxt = best[n]
            else:
                n, nxt = accept_reject(_probs(rows, temperature), torch.stack(q_rows), proposal, generator)
            tokens.extend(proposal[:n] + [nxt])
            tgt.truncate(len(tokens) - 1)
            drf.truncate(min(drf.length, len(tokens) - 1))
            stats.rounds += 1; stats.drafted += kk; stats.accepted += n
            stats.checked += min(n + 1, kk)        # the tokens after the first rejection were never checked
            stats.accepted_per_round.append(n); stats.drafted_per_round.append(kk)
    stats.seconds = time.perf_counter() - t0
    return tokens[len(prompt):len(prompt) + max_new_tokens], stats


def autoregressive_generate(model, prompt, max_new_tokens: int, *, temperature: float = 1.0,
                            generator: torch.Generator | None = None, max_len: int | None = None
                            ) -> tuple[list[int], float]:
    """The baseline: one model call per token through the same session machinery. Returns
    ``(new token ids, seconds)``."""
    check_positive_int("max_new_tokens", max_new_tokens)
    prompt = [int(t) for t in (prompt.tolist() if torch.is_tensor(prompt) else prompt)]
    sess = session_for(model, max_len or len(prompt) + max_new_tokens + 1)
    out: list[int] = []
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = sess.extend(prompt)[-1]
        for _ in range(max_new_tokens):
            if temperature == 0:
                x = int(logits.argmax())
            else:
                x = int(torch.multinomial(_probs(logits, temperature), 1, generator=generator))
            out.append(x)
            if len(out) < max_new_tokens:
                logits = sess.extend([x])[-1]
    return out, time.perf_counter() - t0


def expected_tokens_per_round(alpha: float, k: int) -> float:
    """Tokens emitted per target call when each draft token is accepted independently with
    probability ``alpha``: ``(1 - alpha^(k+1)) / (1 - alpha)`` (Leviathan et al., eq. 1), i.e.
    ``1 + alpha + ... + alpha^k`` (the accepted prefix plus one corrected or bonus token).

    Estimate ``alpha`` from a run with :attr:`SpecStats.acceptance_rate` (``accepted / checked``),
    not ``accepted / drafted``, which counts unchecked draft tokens as rejections."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    check_positive_int("k", k)
    return float(k + 1) if alpha == 1 else (1 - alpha ** (k + 1)) / (1 - alpha)
