"""Smart Compose: suggest how the sentence goes on while the user types (chapter 04).

    from genai_helpers.systems.smart_compose import SmartCompose, TriggeringService

    sc = SmartCompose(model, tokenizer)              # a trained GPT and its BPETokenizer
    sc.suggest("Hi Anna,\\n\\nCould you please send me ")  # -> Suggestion(text="the slides by Friday?", ...)
    sc.on_keystroke(text_so_far, idle_ms=180.0)      # what the editor calls on every key press

The service is a pipeline of small, separately testable pieces:

1. :class:`TriggeringService` decides *whether* to ask the model at all: only at a word
   boundary, only after a few words, and only when the user pauses (debounce), because most
   keystrokes come too fast for a suggestion to be read.
2. :func:`beam_search_cached` is the phrase generator: beam search over a :class:`~genai_helpers.models.gpt.GPT`
   that feeds one token per beam per step through the KV cache. It *is*
   :func:`genai_helpers.sampling.beam_search` (the one beam core), run over the model's cached
   step function with a hook that reorders the cache after each step.
3. :func:`postprocess` cleans and filters candidates: cut to a word boundary and to one
   sentence, drop long and low-confidence phrases, fix casing and spacing, drop duplicates and
   phrases with blocklisted words.

``confidence`` is the model's probability that the user types exactly the suggested tokens next
(``exp`` of the summed log-probabilities), so a threshold on it trades how often a suggestion is
shown against how often it is right.
"""
from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from .._checks import check_positive_int, check_tensor
from ..sampling import beam_search, check_beam_args

__all__ = ["DEFAULT_BLOCKLIST", "TriggeringService", "Candidate", "beam_search_cached", "Suggestion",
           "trim_to_word_boundary", "tidy", "postprocess", "KeystrokeResult", "SmartCompose", "typing_session",
           "percentile"]

# Gmail's Smart Compose stopped suggesting gendered pronouns, because a model trained on past mail
# guesses people's gender from their job titles; a blocklist is the blunt, reliable fix.
DEFAULT_BLOCKLIST = ("he", "she", "him", "her", "his", "hers", "himself", "herself", "password")


# --------------------------------------------------------------------------------------------
# 1. Triggering
# --------------------------------------------------------------------------------------------
@dataclass
class TriggeringService:
    """When to ask for a suggestion.

    ``min_words``: words already typed in the current paragraph/email body before the first
    suggestion; ``debounce_ms``: the user must pause at least this long after the keystroke
    (faster typists never see a flickering suggestion, and the server is not asked on every
    key); ``word_boundary``: only after a space, never inside a word.
    """

    min_words: int = 3
    debounce_ms: float = 100.0
    word_boundary: bool = True

    def __post_init__(self):
        check_positive_int("min_words", self.min_words, minimum=0)
        if not isinstance(self.debounce_ms, (int, float)) or self.debounce_ms < 0:
            raise ValueError(f"debounce_ms must be a number >= 0, got {self.debounce_ms!r}")

    def decide(self, text: str, idle_ms: float = math.inf) -> tuple[bool, str]:
        """``(trigger?, reason)`` for the text typed so far and the pause after the last key."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text.strip():
            return False, "empty"
        if self.word_boundary and not text.endswith(" "):
            return False, "mid-word"
        if len(text.split()) < self.min_words:
            return False, "too short"
        if idle_ms < self.debounce_ms:
            return False, "typing fast"
        return True, "trigger"


# --------------------------------------------------------------------------------------------
# 2. Phrase generator: beam search with a KV cache
# --------------------------------------------------------------------------------------------
@dataclass
class Candidate:
    """One beam: generated ``tokens`` (prompt excluded) with the log-probability of each."""

    tokens: list[int]
    token_logprobs: list[float]
    finished: bool                 # ended with a stop/eos token (a natural end) rather than max length

    @property
    def log_prob(self) -> float:
        return float(sum(self.token_logprobs))

    def score(self, length_penalty: float = 1.0) -> float:
        return self.log_prob / max(len(self.tokens), 1) ** length_penalty


@torch.no_grad()
def beam_search_cached(model, prompt: Sequence[int] | torch.Tensor, beam_width: int, max_new_tokens: int, *,
                       eos_id: int | None = None, stop_ids: Sequence[int] = (), length_penalty: float = 1.0,
                       first_token_mask: torch.Tensor | None = None, num_return: int | None = None) -> list[Candidate]:
    """Beam search over a GPT, one new token per beam per step through its KV cache.

    The package's one beam core, :func:`genai_helpers.sampling.beam_search`, run over the
    model's cached step function (:meth:`~genai_helpers.models.gpt.GPT.step_fn`) with its
    ``reorder`` hook: after each step the cache rows follow the surviving beams
    (:meth:`~genai_helpers.models.gpt.KVCache.reorder`) and only each beam's new token is fed.
    Same rules as the recomputing search: each step extends every live beam by every token and
    keeps the ``beam_width`` best by total log-probability; a beam ending in ``eos_id`` or any of
    ``stop_ids`` is finished; search stops when ``beam_width`` beams are finished and no live one
    can beat them, or after ``max_new_tokens``. Hypotheses are ranked by
    ``log_prob / length ** length_penalty``. ``first_token_mask`` ``(vocab,)`` bool restricts the
    first token (Smart Compose: after a typed space, only tokens that start a new word).

    The prompt is cropped to its last ``block_size - max_new_tokens`` tokens so the cache never
    outgrows the model's context. Returns :class:`Candidate` objects, best first.
    """
    num_return = check_beam_args(beam_width, max_new_tokens, length_penalty, num_return)
    block = model.config.block_size
    if max_new_tokens >= block:
        raise ValueError(f"max_new_tokens must be < block_size ({block}), got {max_new_tokens}")
    prompt = torch.as_tensor(prompt, dtype=torch.long)
    if prompt.ndim == 2 and prompt.shape[0] == 1:
        prompt = prompt[0]
    if prompt.ndim != 1 or prompt.numel() == 0:
        raise ValueError(f"prompt must be a non-empty 1-D sequence of ids, got shape {tuple(prompt.shape)}")
    V = model.config.vocab_size
    if first_token_mask is not None:
        check_tensor("first_token_mask", first_token_mask, ndim=1)
        if first_token_mask.shape[0] != V or first_token_mask.dtype != torch.bool:
            raise ValueError(f"first_token_mask must be a bool tensor of shape ({V},)")
    device = next(model.parameters()).device
    prompt = prompt[-(block - max_new_tokens):].to(device)
    was_training = model.training
    model.eval()
    try:
        step = model.step_fn(1, max_len=prompt.numel() + max_new_tokens)
        beams = beam_search(step, prompt, beam_width, max_new_tokens, eos_id=eos_id, stop_ids=stop_ids,
                            length_penalty=length_penalty, num_return=num_return,
                            first_token_mask=first_token_mask, reorder=step.reorder)
    finally:
        model.train(was_training)
    return [Candidate(b.tokens, b.token_logprobs, b.finished) for b in beams]


# --------------------------------------------------------------------------------------------
# 3. Post-processing and filtering
# --------------------------------------------------------------------------------------------
@dataclass
class Suggestion:
    """A phrase to show in grey after the cursor; ``confidence`` in [0, 1]."""

    text: str
    confidence: float
    n_tokens: int
    reason: str = "ok"             # why it was kept or dropped (see :func:`postprocess`)


_WORD = re.compile(r"[A-Za-z']+")


def trim_to_word_boundary(text: str, complete: bool) -> str:
    """Cut ``text`` to whole words and to the first sentence or line.

    ``complete=False`` means generation stopped at the length limit, so the last word may be
    unfinished (the next token could have continued it): drop everything after the last space.
    """
    m = re.search(r"[.!?](?=\s|$)|\n", text)
    if m:                                           # one sentence at most; never across a line
        return text[:m.end()].rstrip("\n").rstrip()
    if not complete:
        cut = text.rfind(" ")
        text = text[:cut] if cut > 0 else ""
    return text.rstrip()


def tidy(text: str, prefix: str) -> str:
    """Spacing and casing: one space between words, none before punctuation; a capital letter
    when the prefix ends a sentence (or a line)."""
    text = re.sub(r"[ \t]+", " ", text).strip(" ")
    text = re.sub(r" ([,.;:!?])", r"\1", text)
    if text and re.search(r"(^|[.!?\n])\s*$", prefix):
        text = text[0].upper() + text[1:]
    return text


def postprocess(candidates: Sequence[Candidate], token_texts: Sequence[str], prefix: str, *, min_confidence: float = 0.3,
                max_words: int = 6, blocklist: Sequence[str] = DEFAULT_BLOCKLIST) -> list[Suggestion]:
    """Turn beams into clean suggestions, best first, with the reason each was dropped.

    For each candidate: decode its tokens (``token_texts[id]`` is the text of a token); cut it at
    the first sentence end and, if unfinished, at the last whole word (:func:`trim_to_word_boundary`);
    **long filter**: keep at most ``max_words`` words (the confidence is recomputed for the tokens
    kept); **low-confidence filter**: drop it if the probability of its tokens is below
    ``min_confidence``; drop empty ones, ones with a blocklisted word, and duplicates
    (case-insensitive). Returns every suggestion, kept ones first (``reason == "ok"``) in order of
    confidence, then the dropped ones with their reason.
    """
    if not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    check_positive_int("max_words", max_words)
    blocked = {w.lower() for w in blocklist}
    kept, dropped, seen = [], [], set()
    for c in candidates:
        pieces = [token_texts[t] for t in c.tokens]
        text = "".join(pieces)
        trimmed = trim_to_word_boundary(text, c.finished)
        words = trimmed.split()
        if len(words) > max_words:
            trimmed = " ".join(words[:max_words])
        # confidence of the tokens that survive trimming: the shortest token prefix covering `trimmed`
        n_keep, acc = 0, ""
        core = trimmed.strip()
        while n_keep < len(pieces) and len(acc.strip()) < len(core):
            acc += pieces[n_keep]
            n_keep += 1
        conf = math.exp(sum(c.token_logprobs[:n_keep])) if n_keep else 0.0
        text = tidy(trimmed, prefix)
        if not text:
            reason = "empty"
        elif any(w.lower() in blocked for w in _WORD.findall(text)):
            reason = "blocklisted"
        elif text.lower() in seen:
            reason = "duplicate"
        elif conf < min_confidence:
            reason = "low confidence"
        else:
            reason = "ok"
        s = Suggestion(text, conf, n_keep, reason)
        if reason == "ok":
            seen.add(text.lower())
            kept.append(s)
        else:
            dropped.append(s)
    kept.sort(key=lambda s: s.confidence, reverse=True)
    return kept + dropped


# --------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------
@dataclass
class KeystrokeResult:
    suggestion: Suggestion | None
    action: str                    # "model", "reuse" (typed what was suggested), or the trigger's reason
    latency_ms: float


class SmartCompose:
    """Triggering -> beam search (KV cache) -> post-processing, on a GPT and a BPE tokenizer.

    ``tokenizer`` needs ``encode``, ``token_texts()`` and ``eos_id`` (see
    :class:`genai_helpers.data.bpe.BPETokenizer`). Tokens whose text contains ``.``, ``!``,
    ``?`` or a newline end a phrase.
    """

    def __init__(self, model, tokenizer, trigger: TriggeringService | None = None, *, beam_width: int = 3,
                 max_new_tokens: int = 10, min_confidence: float = 0.3, max_words: int = 6,
                 blocklist: Sequence[str] = DEFAULT_BLOCKLIST, length_penalty: float = 1.0):
        self.model, self.tokenizer = model, tokenizer
        self.trigger = trigger or TriggeringService()
        self.beam_width = check_positive_int("beam_width", beam_width)
        self.max_new_tokens = check_positive_int("max_new_tokens", max_new_tokens)
        if not 0 <= min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        self.min_confidence, self.max_words = min_confidence, check_positive_int("max_words", max_words)
        self.blocklist, self.length_penalty = tuple(blocklist), length_penalty
        self.token_texts = tokenizer.token_texts()
        self.stop_ids = [i for i, t in enumerate(self.token_texts) if re.search(r"[.!?]\s*$|\n", t)]
        word_start = [t.startswith(" ") and len(t.strip()) > 0 for t in self.token_texts]
        self.word_start_mask = torch.tensor(word_start, dtype=torch.bool)
        self._shown: tuple[str, str] | None = None          # (text when shown, suggestion)

    def candidates(self, prefix: str) -> list[Candidate]:
        """Raw beams for ``prefix``. A trailing space is removed from the prompt and the first
        token must then start a new word (BPE tokens carry their leading space)."""
        if not isinstance(prefix, str) or not prefix.strip():
            raise ValueError("prefix must be a non-empty string")
        at_boundary = prefix.endswith(" ")
        ids = self.tokenizer.encode(prefix.rstrip(" ") if at_boundary else prefix)
        return beam_search_cached(self.model, ids, self.beam_width, self.max_new_tokens,
                                  eos_id=self.tokenizer.eos_id, stop_ids=self.stop_ids,
                                  length_penalty=self.length_penalty,
                                  first_token_mask=self.word_start_mask if at_boundary else None)

    def suggestions(self, prefix: str, **overrides) -> list[Suggestion]:
        """Every post-processed candidate (kept first, then dropped with reasons)."""
        kw = dict(min_confidence=self.min_confidence, max_words=self.max_words, blocklist=self.blocklist)
        kw.update(overrides)
        return postprocess(self.candidates(prefix), self.token_texts, prefix, **kw)

    def suggest(self, prefix: str, **overrides) -> Suggestion | None:
        """The suggestion to show after ``prefix``, or ``None`` when every candidate was filtered."""
        best = self.suggestions(prefix, **overrides)
        return best[0] if best and best[0].reason == "ok" else None

    def on_keystroke(self, text: str, idle_ms: float = math.inf) -> KeystrokeResult:
        """Called after every key press with everything typed so far and the pause after the key.

        If the user is typing exactly what is shown, the rest of the shown suggestion is kept with
        no model call. Otherwise the trigger decides whether to run the model.
        """
        t0 = time.perf_counter()
        if self._shown is not None:
            shown_at, sugg = self._shown
            full = shown_at + sugg.text
            if text.startswith(shown_at) and full.startswith(text) and len(text) < len(full):
                rest = full[len(text):]
                if rest.strip():
                    return KeystrokeResult(Suggestion(rest, sugg.confidence, sugg.n_tokens, "ok"), "reuse",
                                           (time.perf_counter() - t0) * 1e3)
            self._shown = None
        fire, reason = self.trigger.decide(text, idle_ms)
        if not fire:
            return KeystrokeResult(None, reason, (time.perf_counter() - t0) * 1e3)
        s = self.suggest(text)
        if s is not None:
            self._shown = (text, s)
        return KeystrokeResult(s, "model", (time.perf_counter() - t0) * 1e3)

    def reset(self) -> None:
        self._shown = None


def typing_session(text: str, start: int = 0, seed: int = 0, mean_gap_ms: float = 180.0) -> list[tuple[str, float]]:
    """A simulated typist: every prefix of ``text`` longer than ``start`` characters, each with the
    pause (ms) before the next key. Gaps are log-normal around ``mean_gap_ms`` (about 65 words per
    minute at 180 ms), longer after spaces and punctuation, where people think."""
    if not isinstance(text, str) or not 0 <= start < len(text):
        raise ValueError(f"start must be in [0, len(text)={len(text)}), got {start}")
    rng = random.Random(seed)
    out = []
    for i in range(start + 1, len(text) + 1):
        gap = rng.lognormvariate(math.log(mean_gap_ms) - 0.18, 0.6)
        if text[i - 1] in " \n":
            gap *= 1.6
        if text[i - 1] in ".,!?":
            gap *= 2.5
        out.append((text[:i], gap if i < len(text) else math.inf))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100, linear interpolation, as numpy's default)."""
    if not len(values):
        raise ValueError("values must be non-empty")
    v = sorted(values)
    pos = (len(v) - 1) * q / 100
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)
