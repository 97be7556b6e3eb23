"""Decoding: turning a model's next-token logits into text (chapter 03, "Sampling").

    from genai_helpers.sampling import sample_next_token, generate, beam_search

- :func:`top_k_filter` and :func:`top_p_filter` cut the distribution (dropped entries become
  ``-inf``); :func:`apply_repetition_penalty` discourages tokens already produced.
- :func:`sample_next_token` chains them the way Hugging Face ``generate`` does: repetition
  penalty -> temperature -> top-k -> top-p -> draw. ``temperature=0`` is greedy decoding.
- :func:`generate` runs that step in a loop; :func:`beam_search` keeps the ``beam_width`` best
  partial sequences instead, ranked by length-normalised log-probability. These are the book's
  only decode loop and only beam core: the models' ``generate`` methods, the captioner, the
  translator and Smart Compose's cached beam search all call them with their own step functions.

All of them work on any *step function* ``step_fn(ids) -> logits``: ``ids`` is ``(B, T)`` token
ids, the result ``(B, vocab)`` logits for the next token. For a ``TransformerLM``,
:func:`lm_step_fn` builds one; :meth:`genai_helpers.models.gpt.GPT.step_fn` builds one that
uses the KV cache (and has the ``reorder`` hook beam search needs). Chapter 03 checks every filter against ``transformers``' logits
processors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ._checks import check_positive_int, check_tensor

__all__ = ["StepFn", "top_k_filter", "top_p_filter", "apply_repetition_penalty", "process_logits",
           "sample_next_token", "lm_step_fn", "generate", "Beam", "check_beam_args", "beam_search"]

StepFn = Callable[[torch.Tensor], torch.Tensor]


def _check_logits(logits) -> torch.Tensor:
    check_tensor("logits", logits)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a non-empty last (vocabulary) dimension, got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    return logits


def _check_top_k(k) -> int:
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"k (top_k) must be an int >= 1, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k (top_k) must be an int >= 1, got {k}")
    return k


def _check_top_p(p) -> float:
    if not isinstance(p, (int, float)) or isinstance(p, bool):
        raise TypeError(f"p (top_p) must be a float in (0, 1], got {type(p).__name__}")
    if not 0 < p <= 1:
        raise ValueError(f"p (top_p) must be in (0, 1], got {p}")
    return float(p)


def _check_temperature(temperature) -> float:
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
        raise TypeError(f"temperature must be a float >= 0, got {type(temperature).__name__}")
    if not temperature >= 0 or math.isinf(temperature):
        raise ValueError(f"temperature must be a finite float >= 0 (0 = greedy), got {temperature}")
    return float(temperature)


def _check_penalty(penalty) -> float:
    if not isinstance(penalty, (int, float)) or isinstance(penalty, bool):
        raise TypeError(f"repetition_penalty must be a float > 0, got {type(penalty).__name__}")
    if not penalty > 0 or math.isinf(penalty):
        raise ValueError(f"repetition_penalty must be a finite float > 0 (1 = off), got {penalty}")
    return float(penalty)


def _check_penalty_has_tokens(penalty, previous_tokens) -> float:
    """A repetition penalty needs the tokens it penalises: without them it used to be ignored silently."""
    penalty = _check_penalty(penalty)
    if penalty != 1.0 and previous_tokens is None:
        raise ValueError(f"repetition_penalty={penalty} needs previous_tokens (the ids produced so far); "
                         "pass them, or leave repetition_penalty at 1.0")
    return penalty


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of the last dimension; set the rest to ``-inf``.

    ``logits`` is ``(..., vocab)``; the result has the same shape. ``k >= vocab`` keeps all. Ties
    at the k-th value are all kept (as in ``transformers.TopKLogitsWarper``).
    """
    _check_logits(logits)
    k = min(_check_top_k(k), logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]              # (..., 1) the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose probability reaches ``p``.

    ``logits`` is ``(..., vocab)``; ``p`` in ``(0, 1]``. Token *i* (in order of decreasing
    probability) is kept when the tokens ranked above it hold less than ``p`` of the mass, so the
    most probable token is always kept and the set is never empty. Dropped entries become ``-inf``.
    """
    _check_logits(logits)
    p = _check_top_p(p)
    # Ascending order: a token is dropped when it and every less probable token together hold at
    # most 1 - p, i.e. when the tokens ranked above it already reach p. (The same arithmetic as
    # transformers' TopPLogitsWarper, so the two agree to the last bit at the boundary.)
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
    tail_mass = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
    drop_sorted = tail_mass <= 1 - p
    drop_sorted[..., -1] = False                                      # the most probable token: never empty
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def apply_repetition_penalty(logits: torch.Tensor, previous_tokens: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style repetition penalty on every token id in ``previous_tokens``.

    ``logits`` ``(B, vocab)`` or ``(vocab,)``; ``previous_tokens`` ``(B, T)`` or ``(T,)`` ids.
    A positive logit of a previous token is divided by ``penalty``, a negative one multiplied, so
    ``penalty > 1`` makes repeats less likely and ``penalty < 1`` more. Each id counts once,
    however often it occurred (as in ``transformers.RepetitionPenaltyLogitsProcessor``).
    """
    _check_logits(logits)
    penalty = _check_penalty(penalty)
    check_tensor("previous_tokens", previous_tokens)
    if previous_tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"previous_tokens must hold integer token ids, got {previous_tokens.dtype}")
    squeeze = logits.ndim == 1
    scores = logits[None] if squeeze else logits
    prev = previous_tokens.reshape(1, -1) if previous_tokens.ndim == 1 else previous_tokens
    if scores.ndim != 2 or prev.ndim != 2 or prev.shape[0] not in (1, scores.shape[0]):
        raise ValueError(f"previous_tokens must be (T,) or (B, T) matching logits (B, vocab); got "
                         f"{tuple(previous_tokens.shape)} for logits {tuple(logits.shape)}")
    if prev.numel() and (prev.min() < 0 or prev.max() >= scores.shape[-1]):
        raise ValueError(f"previous_tokens must be ids in [0, {scores.shape[-1]}), got range "
                         f"[{int(prev.min())}, {int(prev.max())}]")
    prev = prev.expand(scores.shape[0], -1).long()
    picked = scores.gather(-1, prev)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    out = scores.scatter(-1, prev, picked)
    return out[0] if squeeze else out


def process_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, repetition_penalty: float = 1.0,
                   previous_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """The distribution :func:`sample_next_token` draws from, as logits (``-inf`` = never drawn).

    Order: repetition penalty, temperature, top-k, top-p. ``temperature`` must be ``> 0`` here
    (greedy decoding has no distribution). ``repetition_penalty != 1`` needs ``previous_tokens``
    (a ``ValueError`` otherwise, rather than a penalty silently not applied). Chapter 03 plots
    ``softmax`` of this under sliders.
    """
    _check_logits(logits)
    temperature = _check_temperature(temperature)
    if temperature == 0:
        raise ValueError("temperature must be > 0 to define a distribution (0 means greedy: use argmax)")
    penalty = _check_penalty_has_tokens(repetition_penalty, previous_tokens)
    if penalty != 1.0:
        logits = apply_repetition_penalty(logits, previous_tokens, penalty)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, repetition_penalty: float = 1.0,
                      previous_tokens: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick the next token id from ``logits`` ``(B, vocab)`` (or ``(vocab,)``); returns ``(B,)`` (or ``()``).

    ``temperature=0`` is greedy (argmax after the repetition penalty; top-k/top-p then change
    nothing). ``temperature`` < 1 sharpens, > 1 flattens. ``top_k`` (int >= 1) and ``top_p`` (in
    (0, 1]) cut the tail; ``repetition_penalty`` (> 0; 1 = off) needs ``previous_tokens`` (a
    ``ValueError`` without them).
    ``generator`` makes draws reproducible.
    """
    _check_logits(logits)
    temperature = _check_temperature(temperature)
    penalty = _check_penalty_has_tokens(repetition_penalty, previous_tokens)
    if top_k is not None:
        _check_top_k(top_k)
    if top_p is not None:
        _check_top_p(top_p)
    if temperature == 0:
        if penalty != 1.0:
            logits = apply_repetition_penalty(logits, previous_tokens, penalty)
        return logits.argmax(-1)
    filtered = process_logits(logits, temperature, top_k, top_p, penalty, previous_tokens)
    probs = torch.softmax(filtered.float(), dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    draw = torch.multinomial(flat, 1, generator=generator).squeeze(-1)
    return draw.reshape(probs.shape[:-1])


def lm_step_fn(model: torch.nn.Module, block_size: int | None = None,
               suppress_tokens: Sequence[int] = ()) -> StepFn:
    """A step function for a model that maps ``(B, T)`` ids to ``(B, T, vocab)`` logits.

    Crops the context to the last ``block_size`` tokens (default ``model.config.block_size``) and
    sets ``suppress_tokens`` (e.g. ``<unk>``) to ``-inf``. Runs under ``torch.no_grad``.
    """
    if block_size is None:
        block_size = getattr(getattr(model, "config", None), "block_size", None)
    if block_size is not None:
        check_positive_int("block_size", block_size)
    suppress = list(suppress_tokens)

    @torch.no_grad()
    def step(ids: torch.Tensor) -> torch.Tensor:
        context = ids if block_size is None else ids[:, -block_size:]
        logits = model(context)[:, -1, :].float()
        if suppress:
            logits[:, suppress] = float("-inf")
        return logits

    return step


def generate(step_fn: StepFn, prompt: torch.Tensor, max_new_tokens: int, *, eos_id: int | None = None,
             generator: torch.Generator | None = None, **settings) -> torch.Tensor:
    """Append up to ``max_new_tokens`` tokens to ``prompt`` ``(B, T)`` with :func:`sample_next_token`.

    The book's one decode loop: :meth:`genai_helpers.models.gpt.GPT.generate` (with or without its
    KV cache) and :meth:`genai_helpers.models.transformer_lm.TransformerLM.generate` call it with
    their own step functions. ``step_fn(ids)`` gets the whole sequence so far ``(B, T + i)``; a
    step function with a cache feeds only the tokens it has not seen yet.

    ``settings`` are :func:`sample_next_token`'s keyword arguments (``temperature``, ``top_k``,
    ``top_p``, ``repetition_penalty``); the repetition penalty sees the prompt and everything
    generated. Rows that produced ``eos_id`` keep emitting it; the loop stops early when every row
    has. Returns ``(B, T + new)`` ids of the prompt's dtype.
    """
    check_tensor("prompt", prompt, ndim=2)
    check_positive_int("max_new_tokens", max_new_tokens, minimum=0)
    if eos_id is not None:
        check_positive_int("eos_id", eos_id, minimum=0)
    unknown = set(settings) - {"temperature", "top_k", "top_p", "repetition_penalty"}
    if unknown:
        raise TypeError(f"generate got unexpected settings {sorted(unknown)}")
    ids = prompt
    finished = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    for _ in range(max_new_tokens):
        nxt = sample_next_token(step_fn(ids), previous_tokens=ids, generator=generator, **settings)
        if eos_id is not None:
            nxt = torch.where(finished, torch.full_like(nxt, eos_id), nxt)
            finished |= nxt == eos_id
        ids = torch.cat([ids, nxt[:, None].to(ids.dtype)], dim=1)
        if eos_id is not None and bool(finished.all()):
            break
    return ids


@dataclass
class Beam:
    """One finished hypothesis of :func:`beam_search`."""

    tokens: list[int]          # generated ids (prompt excluded; ends with the stop id if it stopped)
    log_prob: float            # sum of log-probabilities of the generated tokens (nats)
    score: float               # log_prob / len(tokens) ** length_penalty: what beams are ranked by
    token_logprobs: list[float] = field(default_factory=list)   # log-probability of each token (nats)
    finished: bool = False     # ended with eos_id / a stop id (a natural end) rather than at max length


def check_beam_args(beam_width, max_new_tokens, length_penalty, num_return):
    """Validate beam-search arguments (used by :func:`beam_search` and its callers); returns
    ``num_return`` (default ``beam_width``)."""
    check_positive_int("beam_width", beam_width)
    check_positive_int("max_new_tokens", max_new_tokens)
    if not isinstance(length_penalty, (int, float)) or isinstance(length_penalty, bool) or not length_penalty >= 0:
        raise ValueError(f"length_penalty must be a float >= 0, got {length_penalty!r}")
    num_return = beam_width if num_return is None else check_positive_int("num_return", num_return)
    if num_return > beam_width:
        raise ValueError(f"num_return must be <= beam_width ({beam_width}), got {num_return}")
    return num_return


@torch.no_grad()
def beam_search(step_fn: StepFn, prompt: torch.Tensor | Sequence[int], beam_width: int, max_new_tokens: int, *,
                eos_id: int | None = None, stop_ids: Sequence[int] = (), length_penalty: float = 1.0,
                num_return: int | None = None, first_token_mask: torch.Tensor | None = None,
                reorder: Callable[[torch.Tensor], None] | None = None) -> list[Beam]:
    """Beam search over any step function; returns the best hypotheses, best first.

    The book's one beam core: the captioner, the translator and Smart Compose's cached search
    (:func:`genai_helpers.systems.smart_compose.beam_search_cached`) all run it. ``prompt`` is a 1-D sequence
    of ids (or ``(1, T)``). At each step every live beam is extended by every token, and the
    ``beam_width`` best extensions by total log-probability survive. A beam that emits ``eos_id``
    or any of ``stop_ids`` is finished; search stops when ``beam_width`` beams have finished and
    none of the live ones can still beat them, or after ``max_new_tokens``. Hypotheses are ranked
    by **length-normalised** log-probability ``log_prob / length ** length_penalty``
    (``length_penalty=0``: raw sum, which favours short outputs; 1: per-token average).
    ``first_token_mask`` ``(vocab,)`` bool restricts the first generated token to the ``True`` ids.

    ``step_fn(ids)`` gets every live beam in full, ``(beams, T + i)``, and returns next-token
    logits ``(beams, vocab)``. ``reorder(parents)``, when given, is called before each step after
    the first with the ``(beams,)`` indices (into the previous step's beams) of the surviving
    beams' parents: the hook for a step function that keeps per-beam state, such as a KV cache
    (:meth:`genai_helpers.models.gpt.KVCache.reorder`), and then feeds only each beam's new token.
    Runs under ``torch.no_grad``. Returns ``num_return`` (default ``beam_width``) :class:`Beam`
    objects with their per-token log-probabilities.
    """
    num_return = check_beam_args(beam_width, max_new_tokens, length_penalty, num_return)
    prompt = torch.as_tensor(prompt)
    if prompt.ndim == 2 and prompt.shape[0] == 1:
        prompt = prompt[0]
    if prompt.ndim != 1 or prompt.numel() == 0:
        raise ValueError(f"prompt must be a non-empty 1-D sequence of ids (or (1, T)), got shape {tuple(prompt.shape)}")
    stops = {int(s) for s in stop_ids} | ({int(eos_id)} if eos_id is not None else set())
    if first_token_mask is not None:
        check_tensor("first_token_mask", first_token_mask, ndim=1)
        if first_token_mask.dtype != torch.bool:
            raise ValueError(f"first_token_mask must be a bool tensor (vocab,), got {first_token_mask.dtype}")
    if reorder is not None and not callable(reorder):
        raise TypeError(f"reorder must be callable (parents) -> None, got {type(reorder).__name__}")

    def norm(lp: float, length: int) -> float:
        return lp / max(length, 1) ** length_penalty

    live = prompt[None].long()                                  # (beams, T)
    live_lp = torch.zeros(1, dtype=torch.float64)               # total log-prob of each live beam
    live_token_lps: list[list[float]] = [[]]
    parents = None
    finished: list[Beam] = []
    T0 = prompt.numel()
    for step in range(max_new_tokens):
        if parents is not None and reorder is not None:
            reorder(parents)
        logp = torch.log_softmax(step_fn(live.to(prompt.device)).double().cpu(), dim=-1)   # (beams, V)
        V = logp.shape[-1]
        if step == 0 and first_token_mask is not None:
            if first_token_mask.shape[0] != V:
                raise ValueError(f"first_token_mask must have shape ({V},) (the vocabulary), got {tuple(first_token_mask.shape)}")
            logp = logp.masked_fill(~first_token_mask.cpu(), float("-inf"))
        cand = (live_lp[:, None] + logp).reshape(-1)            # every (beam, token) extension
        n_cand = min(2 * beam_width, int(torch.isfinite(cand).sum()))
        if n_cand == 0:
            break
        top_lp, top_idx = cand.topk(n_cand)
        new_live, new_lp, new_token_lps, new_parents = [], [], [], []
        for lp, idx in zip(top_lp.tolist(), top_idx.tolist()):
            b, tok = divmod(idx, V)
            seq, token_lps = live[b].tolist() + [tok], live_token_lps[b] + [float(logp[b, tok])]
            if tok in stops:
                finished.append(Beam(seq[T0:], lp, norm(lp, len(seq) - T0), token_lps, True))
            else:
                new_live.append(seq)
                new_lp.append(lp)
                new_token_lps.append(token_lps)
                new_parents.append(b)
            if len(new_live) == beam_width:
                break
        if not new_live:                                        # every survivor finished: nothing is live
            live_token_lps = []
            break
        live = torch.tensor(new_live, dtype=torch.long)
        live_lp = torch.tensor(new_lp, dtype=torch.float64)
        live_token_lps, parents = new_token_lps, torch.tensor(new_parents, dtype=torch.long)
        if len(finished) >= beam_width:
            # A live beam's log-prob can only fall; with length_penalty > 0 its score is at most
            # lp / max_len ** length_penalty (lp < 0), the best it could ever reach.
            best_possible = max(norm(lp, max_new_tokens) if length_penalty > 0 else lp for lp in new_lp)
            worst_kept = sorted((f.score for f in finished), reverse=True)[beam_width - 1]
            if best_possible <= worst_kept:
                break
    for seq, lp, token_lps in zip(live.tolist(), live_lp.tolist(), live_token_lps):
        finished.append(Beam(seq[T0:], lp, norm(lp, len(seq) - T0), token_lps, False))
    finished.sort(key=lambda b: b.score, reverse=True)
    return finished[:num_return]
