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

With ``keep_prefix_cache=True`` the service keeps the KV cache of the last prompt between
keystrokes: the email only grows, so the next request feeds only the tokens the cache has not
seen (the longest common token prefix is reused; an edit earlier in the text drops the cache
from that point on). Suggestions are the same as without it, to float rounding.

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
from ..models.gpt import GPTStep, KVCache
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
                       first_token_mask: torch.Tensor | None = None, num_return: int | None = None,
                       cache: KVCache | None = None) -> list[Candidate]:
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
    outgrows the model's context. ``cache``: a batch-1 :class:`~genai_helpers.models.gpt.KVCache`
    that already holds the first ``cache.length`` tokens of the cropped prompt (fewer than all of
    them); the search feeds only the rest and writes into it (pass a copy to keep the original).
    Returns :class:`Candidate` objects, best first.
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
    if cache is not None:
        if not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache, got {type(cache).__name__}")
        if not 0 <= cache.length < prompt.numel():
            raise ValueError(f"cache must hold fewer tokens than the (cropped) prompt ({prompt.numel()}), "
                             f"got cache.length={cache.length}")
        if cache.max_len is not None and cache.max_len < prompt.numel() + max_new_tokens:
            raise ValueError(f"cache.max_len must be >= prompt + max_new_tokens = {prompt.numel() + max_new_tokens}, "
                             f"got {cache.max_len}")
    was_training = model.training
    model.eval()
    try:
        step = (model.step_fn(1, max_len=prompt.numel() + max_new_tokens) if cache is None
                else GPTStep(model, 1, cache=cache))
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
    ``min_confidence``; drop empty ones and ones with a blocklisted word. **Duplicates** are
    removed among *all* candidates: beams that differ only in what trimming cut off give the same
    text, and of each text (compared case-insensitively, spacing normalised) only the most
    confident copy goes on to the confidence filter; the others are dropped as ``"duplicate"``.
    Returns every suggestion, kept ones first (``reason == "ok"``) in order of confidence, then the
    dropped ones with their reason (in candidate order).
    """
    if not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    check_positive_int("max_words", max_words)
    blocked = {w.lower() for w in blocklist}
    drafts = []                                     # (text, confidence, tokens kept) per candidate
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
        drafts.append((tidy(trimmed, prefix), conf, n_keep))
    best_copy: dict[str, int] = {}                  # text key -> index of its most confident copy
    for i, (text, conf, _) in enumerate(drafts):
        key = " ".join(text.lower().split())
        if key not in best_copy or conf > drafts[best_copy[key]][1]:
            best_copy[key] = i
    kept, dropped = [], []
    for i, (text, conf, n_keep) in enumerate(drafts):
        if not text:
            reason = "empty"
        elif any(w.lower() in blocked for w in _WORD.findall(text)):
            reason = "blocklisted"
        elif best_copy[" ".join(text.lower().split())] != i:
            reason = "duplicate"
        elif conf < min_confidence:
            reason = "low confidence"
        else:
            reason = "ok"
        s = Suggestion(text, conf, n_keep, reason)
        (kept if reason == "ok" else dropped).append(s)
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

    ``keep_prefix_cache``: keep the KV cache of the last prompt between calls and feed only the
    tokens it has not seen (see the module docstring). ``last_prompt_tokens_fed`` is how many
    prompt tokens the last model call ran through the model.
    """

    def __init__(self, model, tokenizer, trigger: TriggeringService | None = None, *, beam_width: int = 3,
                 max_new_tokens: int = 10, min_confidence: float = 0.3, max_words: int = 6,
                 blocklist: Sequence[str] = DEFAULT_BLOCKLIST, length_penalty: float = 1.0,
                 keep_prefix_cache: bool = False):
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
        if not isinstance(keep_prefix_cache, bool):
            raise TypeError(f"keep_prefix_cache must be a bool, got {type(keep_prefix_cache).__name__}")
        if max_new_tokens >= model.config.block_size:
            raise ValueError(f"max_new_tokens must be < block_size ({model.config.block_size}), got {max_new_tokens}")
        self.keep_prefix_cache = keep_prefix_cache
        self._shown: tuple[str, str] | None = None          # (text when shown, suggestion)
        self._prefix_ids: list[int] = []                   # tokens held by the kept cache
        self._prefix_cache: KVCache | None = None
        self.last_prompt_tokens_fed = 0

    def _cache_for(self, window: list[int]) -> tuple[KVCache, int]:
        """A copy of the kept cache cropped to its longest common prefix with ``window[:-1]``, and
        that length: the search feeds only the rest of the window, in one forward pass."""
        if self._prefix_cache is None:
            p = next(self.model.parameters())
            self._prefix_cache = self.model.new_cache(1, max_len=self.model.config.block_size, device=p.device,
                                                      dtype=p.dtype)
            self._prefix_ids = []
        common = 0
        for a, b in zip(self._prefix_ids, window[:-1]):
            if a != b:
                break
            common += 1
        self._prefix_cache.crop(common)
        self._prefix_ids = self._prefix_ids[:common]
        return self._prefix_cache.copy(max_len=len(window) + self.max_new_tokens), common

    def _keep(self, window: list[int], searched: KVCache, common: int) -> None:
        """After the search: keep the keys/values of ``window[:-1]`` that it computed (every beam
        row shares the prompt's; row 0 is taken) for the next call."""
        n = len(window) - 1
        if n > common:
            for layer in range(len(searched.k)):
                self._prefix_cache.update(layer, searched.k[layer][:1, :, common:n], searched.v[layer][:1, :, common:n])
            self._prefix_cache.length = n
        self._prefix_ids = list(window[:-1])

    def candidates(self, prefix: str) -> list[Candidate]:
        """Raw beams for ``prefix``. A trailing space is removed from the prompt and the first
        token must then start a new word (BPE tokens carry their leading space)."""
        if not isinstance(prefix, str) or not prefix.strip():
            raise ValueError("prefix must be a non-empty string")
        at_boundary = prefix.endswith(" ")
        ids = self.tokenizer.encode(prefix.rstrip(" ") if at_boundary else prefix)
        window = [int(t) for t in ids][-(self.model.config.block_size - self.max_new_tokens):]  # what the search reads
        cache, common = self._cache_for(window) if self.keep_prefix_cache else (None, 0)
        self.last_prompt_tokens_fed = len(window) - common
        out = beam_search_cached(self.model, window, self.beam_width, self.max_new_tokens,
                                 eos_id=self.tokenizer.eos_id, stop_ids=self.stop_ids,
                                 length_penalty=self.length_penalty,
                                 first_token_mask=self.word_start_mask if at_boundary else None, cache=cache)
        if cache is not None:
            self._keep(window, cache, common)
        return out

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
        """Forget the shown suggestion and the kept prefix cache (a new email)."""
        self._shown = None
        self._prefix_ids, self._prefix_cache = [], None


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
