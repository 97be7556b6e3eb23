"""A chat assistant's inference pipeline around a language model (chapter 06).

    user text ─► input safety filter ─► prompt enhancer ─► best-of-n generator ─► output safety check ─► reply
                      │ (unsafe)          ▲ session memory        (reward model)        │ (unsafe)
                      └──────────────► rejection response ◄──────────────────────────────┘

- **Input safety filter** — :func:`check_request`: the prompt-injection and jailbreak rules of
  :mod:`genai_helpers.guardrails` plus :data:`HARM_RULES`, topic rules for harmful requests
  (weapons, violence, theft and fraud, hacking, drugs, arson). Reasons are named (``"harm:weapons"``).
- **Prompt enhancer** — :func:`enhance_prompt`: tidies the text (whitespace, capital letter, end
  punctuation) and resolves follow-ups from the session ("and Spain?" after "What is the capital
  of France?" becomes "What is the capital of Spain?").
- **Response generator** — samples ``n`` candidates and ranks them by a reward model's score.
- **Output safety check** — :func:`check_reply`: :func:`genai_helpers.guardrails.check_output`
  (PII, leaked secrets), the harm rules on the reply, and an optional minimum reward-model
  score; the best candidate that passes is returned.
- **Rejection response** — :func:`rejection_message` explains why a request is declined.
- **Session memory** — :class:`SessionMemory` keeps the last turns of each session.

The model is reached only through two callables, so the pipeline is testable without one:
``generate(prompt, n) -> list[str]`` and ``score(prompt, replies) -> list[float]``.
"""
from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..guardrails import GuardResult, check_input, check_output, normalize_for_rules

__all__ = ["HARM_RULES", "harm_hits", "check_request", "check_reply", "DEFAULT_CAPABILITIES", "rejection_message",
           "Turn", "SessionMemory", "enhance_prompt", "PipelineResult", "ChatPipeline"]

#: ``(reason, pattern)`` topic rules for harmful requests, checked after the guardrails' injection rules.
#: :meta hide-value:
HARM_RULES: list[tuple[str, re.Pattern]] = [(name, re.compile(p)) for name, p in [
    ("harm:weapons", r"\b(bombs?|explosives?|guns?|weapons?|poison( gas)?|poisoning)\b"),
    ("harm:violence", r"\b(hurt|kill|murder|kidnap|attack|bully|stalk|blackmail)\w*\b"),
    ("harm:theft_fraud", r"\b(steal\w*|stolen|rob|robbing|shoplift\w*|forge|forging|fake id|break into|"
                         r"break a car window|cheat on (my |your )?taxes)\b"),
    ("harm:hacking", r"\b(hack\w*|someone'?s password|computer virus|malware|ransomware)\b"),
    ("harm:drugs", r"\b(illegal drugs|cocaine|heroin|meth)\b"),
    ("harm:arson", r"\b(start a fire|set fire|arson)\b"),
]]

_HOW_TO = re.compile(r"\b(to|first|step|here is how|you can|you should)\b")


def harm_hits(text: str) -> list[str]:
    """Names of the harm-topic rules that fire on ``text`` (lower-cased, leetspeak undone)."""
    t = normalize_for_rules(text)
    return [name for name, pattern in HARM_RULES if pattern.search(t)]


def check_request(text: str, *, classifier=None) -> GuardResult:
    """Input filter: injection/jailbreak rules (and ``classifier``, see
    :func:`genai_helpers.guardrails.check_input`) plus the harm-topic rules."""
    result = check_input(text, classifier=classifier)
    reasons = result.reasons + harm_hits(text)
    return GuardResult(allowed=not reasons, reasons=reasons, text=text, score=result.score)


def check_reply(text: str, *, secrets: Sequence[str] = ()) -> GuardResult:
    """Output check: PII and secrets (:func:`genai_helpers.guardrails.check_output`, redacted in
    ``.text``) and harm topics appearing in a reply that gives instructions (a refusal that names
    the topic is fine)."""
    result = check_output(text, secrets=secrets)
    reasons = list(result.reasons)
    if harm_hits(text) and _HOW_TO.search(text.lower()) and not re.search(r"\b(sorry|can't|cannot)\b", text.lower()):
        reasons += [f"reply_{r}" for r in harm_hits(text)]
    return GuardResult(allowed=not reasons, reasons=reasons, text=result.text)


_READABLE = {"harm:weapons": "weapons or poisons", "harm:violence": "hurting or threatening someone",
             "harm:theft_fraud": "theft or fraud", "harm:hacking": "breaking into computers or accounts",
             "harm:drugs": "illegal drugs", "harm:arson": "starting fires"}


DEFAULT_CAPABILITIES = "arithmetic, unit conversions, sorting, facts and rewriting"


def _check_capabilities(capabilities) -> str:
    if not isinstance(capabilities, str) or not capabilities.strip():
        raise ValueError(f"capabilities must be a non-empty string, got {capabilities!r}")
    return capabilities.strip()


def rejection_message(stage: str, reasons: Sequence[str], capabilities: str = DEFAULT_CAPABILITIES) -> str:
    """A polite refusal that says why: ``stage`` is ``"input"`` or ``"output"``. A refused harmful
    request is told what the assistant *can* do (``capabilities``, a phrase such as "capitals and
    opposites"; the default lists every task family of :mod:`genai_helpers.data.chat`)."""
    if stage not in ("input", "output"):
        raise ValueError(f"stage must be 'input' or 'output', got {stage!r}")
    capabilities = _check_capabilities(capabilities)
    if stage == "output":
        return ("Sorry, I could not produce an answer I am confident is safe and correct. "
                "Could you rephrase the question?")
    harms = [_READABLE[r] for r in reasons if r in _READABLE]
    if harms:
        return (f"Sorry, I can't help with that: it asks about {' and '.join(dict.fromkeys(harms))}. "
                f"I can help with {capabilities}.")
    return "Sorry, I can't follow instructions that try to change how I work. Please ask your question directly."


@dataclass
class Turn:
    """One exchange kept in session memory."""

    user: str          # what the user typed
    prompt: str        # the enhanced prompt the model saw ("" when rejected before the model)
    reply: str
    status: str


class SessionMemory:
    """The last ``max_turns`` turns of each session (a bounded deque per session id); at most
    ``max_sessions`` sessions are kept, the least recently used one is dropped first."""

    def __init__(self, max_turns: int = 4, max_sessions: int = 1000):
        for name, v in (("max_turns", max_turns), ("max_sessions", max_sessions)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.max_turns, self.max_sessions = max_turns, max_sessions
        self._sessions: OrderedDict[str, deque] = OrderedDict()

    def add(self, session: str, turn: Turn) -> None:
        if session not in self._sessions:
            self._sessions[session] = deque(maxlen=self.max_turns)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(session)
        self._sessions[session].append(turn)

    def history(self, session: str) -> list[Turn]:
        return list(self._sessions.get(session, ()))

    def clear(self, session: str) -> None:
        self._sessions.pop(session, None)

    def __len__(self) -> int:
        return len(self._sessions)


_FOLLOW_UP = re.compile(r"^(?:and|what about|how about)\s+(.+?)\s*[?.!]*$", re.I)
_QUESTION_WORDS = ("what", "which", "who", "how", "why", "when", "where", "is", "are", "can", "do", "does", "name")


def enhance_prompt(text: str, history: Sequence[Turn] = ()) -> tuple[str, list[str]]:
    """Rewrite a user message into the form the model was trained on; returns ``(prompt, notes)``.

    - whitespace collapsed, first letter capitalised, a missing ``?`` or ``.`` added;
    - a follow-up ("and Spain?", "what about 7 km?") reuses the last answered prompt with its
      last entity replaced: a number by a number, a capitalised word by the new word.

    ``notes`` lists what was changed (empty when nothing was).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    notes = []
    prompt = re.sub(r"\s+", " ", text).strip()
    if prompt != text:
        notes.append("whitespace")
    m = _FOLLOW_UP.match(prompt)
    previous = next((t.prompt for t in reversed(history) if t.status == "answered" and t.prompt), None)
    if m and previous:
        new = m.group(1)
        num = re.match(r"^(\d+)\b(.*)$", new)
        if num:
            olds = list(re.finditer(r"\b\d+\b", previous))
            if olds:
                old = olds[0]
                prompt = previous[:old.start()] + num.group(1) + previous[old.end():]
        else:
            olds = [w for w in re.finditer(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)*\b", previous) if w.start() > 0]
            if olds:
                old = olds[-1]
                prompt = previous[:old.start()] + new[:1].upper() + new[1:] + previous[old.end():]
        if prompt != m.string:
            notes.append(f"follow-up resolved from: {previous!r}")
    if prompt and prompt[0].islower():
        prompt = prompt[0].upper() + prompt[1:]
        notes.append("capitalised")
    if prompt and prompt[-1] not in "?.!:":
        is_question = prompt.split(" ", 1)[0].lower() in _QUESTION_WORDS
        prompt += "?" if is_question else "."
        notes.append("punctuation")
    return prompt, notes


@dataclass
class PipelineResult:
    status: str                      # "answered", "rejected_input" or "rejected_output"
    reply: str
    prompt: str = ""                 # the enhanced prompt the model saw
    reasons: list[str] = field(default_factory=list)
    candidates: list[tuple[str, float]] = field(default_factory=list)   # (reply, reward score), best first
    notes: list[str] = field(default_factory=list)                      # what the enhancer changed


class ChatPipeline:
    """``ChatPipeline(generate, score, n_candidates=4)``; ``pipeline.respond(text, session)``.

    ``generate(prompt, n) -> list[str]`` returns ``n`` candidate replies; ``score(prompt, replies)
    -> list[float]`` a reward-model score per reply. A candidate is returned only when it passes
    :func:`check_reply` and scores at least ``min_score`` (``None`` = no threshold).
    ``capabilities`` is what a refusal says the assistant can help with (see :func:`rejection_message`).

    Session memory reaches the model in one of two ways. By default the enhancer rewrites a follow-up
    ("and Spain?") into a full question from the last answered turn. With ``history_to_model=True``
    the model reads the conversation itself: ``generate(prompt, n, history)`` receives the session's
    answered turns as ``(prompt, reply)`` pairs, oldest first, and the enhancer only tidies.
    """

    def __init__(self, generate: Callable[..., list[str]], score: Callable[[str, list[str]], list[float]], *,
                 n_candidates: int = 4, min_score: float | None = None, memory: SessionMemory | None = None,
                 secrets: Sequence[str] = (), input_classifier=None, capabilities: str = DEFAULT_CAPABILITIES,
                 history_to_model: bool = False):
        if not callable(generate) or not callable(score):
            raise TypeError("generate and score must be callables")
        if not isinstance(n_candidates, int) or n_candidates < 1:
            raise ValueError(f"n_candidates must be an int >= 1, got {n_candidates!r}")
        self.generate, self.score, self.n_candidates, self.min_score = generate, score, n_candidates, min_score
        self.memory = memory if memory is not None else SessionMemory()
        self.secrets, self.input_classifier = tuple(secrets), input_classifier
        self.capabilities = _check_capabilities(capabilities)
        if not isinstance(history_to_model, bool):
            raise TypeError(f"history_to_model must be a bool, got {type(history_to_model).__name__}")
        self.history_to_model = history_to_model

    def respond(self, text: str, session: str = "default") -> PipelineResult:
        history = self.memory.history(session)
        verdict = check_request(text, classifier=self.input_classifier)
        if not verdict.allowed:
            result = PipelineResult("rejected_input", rejection_message("input", verdict.reasons, self.capabilities), reasons=verdict.reasons)
            self.memory.add(session, Turn(text, "", result.reply, result.status))
            return result
        # With history_to_model the model reads the earlier turns itself; the enhancer only tidies.
        prompt, notes = enhance_prompt(text, () if self.history_to_model else history)
        if prompt != text.strip():                          # the rewrite must pass the filter too
            verdict = check_request(prompt, classifier=self.input_classifier)
            if not verdict.allowed:
                result = PipelineResult("rejected_input", rejection_message("input", verdict.reasons, self.capabilities), prompt,
                                        verdict.reasons, notes=notes)
                self.memory.add(session, Turn(text, prompt, result.reply, result.status))
                return result
        if self.history_to_model:
            turns = [(t.prompt, t.reply) for t in history if t.status == "answered"]
            replies = list(self.generate(prompt, self.n_candidates, turns))
        else:
            replies = list(self.generate(prompt, self.n_candidates))
        scores = [float(s) for s in self.score(prompt, replies)]
        if len(scores) != len(replies):
            raise ValueError(f"score returned {len(scores)} scores for {len(replies)} replies")
        ranked = sorted(zip(replies, scores), key=lambda rs: -rs[1])
        reasons: list[str] = []
        for reply, s in ranked:
            check = check_reply(reply, secrets=self.secrets)
            if self.min_score is not None and s < self.min_score:
                reasons.append("low_reward")
                continue
            if check.allowed:
                result = PipelineResult("answered", reply, prompt, [], ranked, notes)
                break
            reasons.extend(check.reasons)
        else:
            result = PipelineResult("rejected_output", rejection_message("output", reasons), prompt,
                                    sorted(set(reasons)), ranked, notes)
        self.memory.add(session, Turn(text, prompt, result.reply, result.status))
        return result
