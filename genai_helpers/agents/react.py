"""The ReAct loop: thought -> action -> observation, until a final answer or the step limit
(chapter 08).

The policy is any ``generate(prompt: str) -> str`` callable — a transformers text-generation
pipeline, an API client, or one of the planners in :mod:`genai_helpers.agents.planners`. It is
shown the transcript so far and must continue it with::

    Thought: <free text>
    Action: <tool>[<argument>]          or          Final Answer: <answer>

:func:`parse_step` accepts common variants (``tool(arg)``, ``tool: arg``, a JSON object, any
case) and reports anything else as malformed; the loop then feeds an error observation back
instead of crashing, and counts it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .tools import Tool

__all__ = ["Step", "parse_step", "AgentResult", "ReActAgent"]


@dataclass
class Step:
    thought: str = ""
    tool: str | None = None
    arg: str | None = None
    final: str | None = None
    error: str | None = None          # why the policy's text could not be parsed
    observation: str | None = None
    blocked: list[str] = field(default_factory=list)   # guardrail reasons, when a call was refused


# A label line: "Thought:", "Action:", "Action Input:", "Final Answer:" or "Observation:" at the start
# of a line (any case; Markdown bullets/bold around the label allowed). Anchoring at the line start
# is what keeps "transaction: ..." or "... the final answer: ..." inside a sentence from counting.
_LABEL_LINE = re.compile(r"[ \t]*(?:[-*>#]+[ \t]*)?(?:\*\*|__)?(thought|action[ \t_-]*input|action|final[ \t_-]*answer"
                         r"|observation)(?:\*\*|__)?[ \t]*:(?:\*\*|__)?[ \t]*", re.I)
# Fallback for one-line outputs ("Thought: x Action: calc[1]"): a label preceded by a non-word character,
# written as a label is (Title Case or CAPITALS): "... the final answer: later" inside a thought is prose.
_INLINE_LABEL = re.compile(r"(?<![\w-])(?=(?:Action(?:[ \t_-]*[Ii]nput)?|ACTION(?:[ \t_-]*INPUT)?|Final[ \t_-]*[Aa]nswer"
                           r"|FINAL[ \t_-]*ANSWER)[ \t]*:)")
# A second action label inside an action's body: "calculator[1] Action: sql[DROP TABLE models]".
_SECOND_ACTION = re.compile(r"(?<![\w-])action[ \t]*:[ \t]*[`*]*[A-Za-z_]\w*[ \t]*[\[({]", re.I)
_BARE_TOOL = re.compile(r"[A-Za-z_]\w*")
_CALL_FORMS = (re.compile(r"([A-Za-z_]\w*)\s*\[(.*)\]", re.S), re.compile(r"([A-Za-z_]\w*)\s*\((.*)\)", re.S))
_COLON_FORM = re.compile(r"([A-Za-z_]\w*)\s*:\s*(.+)", re.S)


# A line inside an observation, thought or argument that a reader of the transcript would take for a
# label of its own ("Final Answer: 42" in a SQL row, "Question: ..." in a web page): those lines are
# indented when written to the transcript, so no transcript parser (``^Label:``) starts a turn there.
_TRANSCRIPT_LABEL = re.compile(r"[ \t]*(?:[-*>#|]+[ \t]*)?(?:\*\*|__)?(?:thought|action(?:[ \t_-]*input)?|final[ \t_-]*answer"
                               r"|observation|question)(?:\*\*|__)?[ \t]*:", re.I)


def _quote_for_transcript(text: str) -> str:
    r"""``text`` for one labelled entry of the transcript: every kind of line break becomes ``\n``
    (``\r``, ``\v``, ``\f``, ``\x1c``-``\x1e``, ``\x85``, ``\u2028``, ``\u2029`` end lines for
    ``str.splitlines``), and a continuation line that looks like a label is indented by two spaces."""
    lines = text.splitlines()
    return "\n".join([lines[0]] + ["  " + ln if _TRANSCRIPT_LABEL.match(ln) else ln for ln in lines[1:]]) if lines else ""


def _label(raw: str) -> str:
    word = re.sub(r"[\s_-]+", " ", raw.lower())
    aliases = {"final answer": "final", "finalanswer": "final", "action input": "input", "actioninput": "input"}
    return aliases.get(word, word)


def _segments(text: str) -> list[tuple[str, str]]:
    """Split ``text`` into ``(label, body)`` at label lines; text before the first label is dropped.
    A hallucinated ``Observation:`` line (not the first line) ends the policy's turn."""
    segments: list[tuple[str, list[str]]] = []
    for i, line in enumerate(text.splitlines()):
        m = _LABEL_LINE.match(line)
        if m:
            label = _label(m.group(1))
            if label == "observation" and i > 0:
                break
            segments.append((label, [line[m.end():]]))
        elif segments:
            segments[-1][1].append(line)
    return [(label, "\n".join(body).strip()) for label, body in segments]


def _strip_quotes(arg: str) -> str:
    arg = arg.strip().strip("`").strip()
    if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "'\"" and arg[0] not in arg[1:-1]:
        arg = arg[1:-1].strip()
    return arg


def parse_step(text: str, *, max_chars: int = 20_000) -> Step:
    """Parse one policy output into a :class:`Step` (``error`` set when it is malformed).

    Labels count only at the start of a line (``Thought:``, ``Action:``, ``Action Input:``,
    ``Final Answer:``, any case): a sentence that contains "transaction:" or "the final answer:"
    is text, not a label. **The first ``Action:`` or ``Final Answer:`` line decides** the step;
    only when no line starts with either are labels inside a line accepted, written as labels are
    (``Action:``, ``Final Answer:`` or in capitals; one-line outputs
    such as ``Thought: x Action: calculator[2+3]``). Actions may be written ``tool[arg]``,
    ``tool(arg)``, ``tool: arg``, a JSON object ``{"tool": ..., "input": ...}``, or
    ``Action: tool`` followed by an ``Action Input: arg`` line. An ``Observation:`` line after the
    first line ends the output: a model that writes its own observations is hallucinating them.
    Outputs longer than ``max_chars`` characters are reported as malformed, not parsed.
    A second ``Action: tool[...]`` inside the action (two actions in one step) is malformed.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"max_chars must be an int >= 1, got {max_chars!r}")
    step = Step()
    if len(text) > max_chars:
        step.error = f"output is longer than max_chars={max_chars} characters ({len(text)})"
        return step
    segments = _segments(text)
    if not any(label in ("action", "final") for label, _ in segments):
        segments = _segments(_INLINE_LABEL.sub("\n", text))
    step.thought = next((body for label, body in segments if label == "thought"), "")
    decider = next((i for i, (label, _) in enumerate(segments) if label in ("action", "final")), None)
    if decider is None:
        step.error = "no 'Action:' or 'Final Answer:' found"
        return step
    label, body = segments[decider]
    if label == "final":
        step.final = body
        if not body:
            step.error = "empty final answer"
        return step
    body = re.sub(r"^(?:`+|\*\*)\s*(.*?)\s*(?:`+|\*\*)$", r"\1", body, flags=re.S)   # `tool[arg]`, **tool[arg]**
    if _SECOND_ACTION.search(body):
        step.error = "more than one action in one step; write one 'Action: tool[argument]' per turn"
        return step
    follower = segments[decider + 1] if decider + 1 < len(segments) else None
    if _BARE_TOOL.fullmatch(body) and follower is not None and follower[0] == "input":
        step.tool, step.arg = body.lower(), _strip_quotes(follower[1])
        return step
    if body.startswith("{"):
        try:
            obj = json.loads(body[: body.rfind("}") + 1])
            if not isinstance(obj, dict):
                raise TypeError("not an object")
            tool = obj.get("tool") or obj.get("name") or obj.get("action")
            if not isinstance(tool, str) or not _BARE_TOOL.fullmatch(tool.strip()) or len(tool) > 64:
                step.error = "action JSON has no 'tool' name"
                return step
            step.tool = tool.strip().lower()
            arg = obj.get("input", obj.get("args", obj.get("argument", "")))
            step.arg = arg if isinstance(arg, str) else json.dumps(arg)
        except (ValueError, TypeError, RecursionError) as exc:     # JSONDecodeError is a ValueError
            step.error = f"action JSON does not parse: {str(exc)[:80]}"
        return step
    first_line = body.splitlines()[0].strip() if body else ""
    for pattern in _CALL_FORMS:
        m = pattern.fullmatch(body) or pattern.fullmatch(first_line)
        if m:
            step.tool, step.arg = m.group(1).lower(), m.group(2).strip().strip("`").strip()
            return step
    m = _COLON_FORM.fullmatch(first_line)
    if m:
        step.tool, step.arg = m.group(1).lower(), _strip_quotes(m.group(2))
        return step
    step.error = f"action does not look like tool[argument]: {body[:60]!r}"
    return step


@dataclass
class AgentResult:
    question: str
    answer: str | None
    steps: list[Step]
    stopped: str                      # "final" | "max_steps" | "blocked_input" | "blocked_output" | "rate_limited"
    transcript: str = ""

    @property
    def n_malformed(self) -> int:
        return sum(s.error is not None for s in self.steps)

    @property
    def n_tool_calls(self) -> int:
        return sum(s.tool is not None and s.observation is not None and not s.blocked for s in self.steps)

    @property
    def tools_used(self) -> list[str]:
        return [s.tool for s in self.steps if s.tool is not None and not s.blocked]


class ReActAgent:
    """Run a policy in the ReAct loop over ``tools``, at most ``max_steps`` policy calls.

    Optional guardrails (chapter 08 §8.5), each a plain callable or object:

    - ``input_guard(text) -> GuardResult``: screens the question; a refusal ends the run;
    - ``observation_filter(tool, text) -> str``: applied to every tool result before the policy
      sees it (spotlighting, injection scan of retrieved documents);
    - ``tool_policy``: a :class:`~genai_helpers.guardrails.policy.ToolPolicy`; calls it refuses become
      an error observation;
    - ``rate_limiter``: a :class:`~genai_helpers.guardrails.policy.RateLimiter` keyed by ``user``
      for tool calls;
    - ``question_limiter``: a second ``RateLimiter`` keyed by ``user`` for questions: a question
      over the limit is refused (``stopped="rate_limited"``) before any guard or model runs;
    - ``output_guard(text) -> GuardResult``: screens (and redacts) the final answer;
    - ``audit``: an :class:`~genai_helpers.guardrails.policy.AuditLog` that records every event.

    Every observation is cut to ``max_observation_chars`` characters, so one tool result cannot
    flood the transcript; a policy that returns something other than a str counts as malformed.
    Lines of an observation, thought or argument that look like labels (``Final Answer:``,
    ``Question:``, ...) are indented in the transcript, so a tool result cannot start a turn there.
    """

    def __init__(self, policy: Callable[[str], str], tools: Sequence[Tool], *, max_steps: int = 6,
                 system: str = "Answer the question. Use a tool when it helps.", input_guard=None,
                 observation_filter=None, tool_policy=None, rate_limiter=None, output_guard=None, audit=None,
                 max_observation_chars: int = 4000, question_limiter=None):
        if not callable(policy):
            raise TypeError("policy must be callable: generate(prompt: str) -> str")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be an int >= 1, got {max_steps}")
        if not isinstance(max_observation_chars, int) or max_observation_chars < 1:
            raise ValueError(f"max_observation_chars must be an int >= 1, got {max_observation_chars!r}")
        self.max_observation_chars = max_observation_chars
        self.policy, self.max_steps, self.system = policy, max_steps, system
        self.tools = {t.name: t for t in tools}
        self.input_guard, self.observation_filter = input_guard, observation_filter
        self.tool_policy, self.rate_limiter = tool_policy, rate_limiter
        self.output_guard, self.audit = output_guard, audit
        self.question_limiter = question_limiter

    def header(self, question: str) -> str:
        lines = [self.system, "Tools:"] + [f"- {t.name}: {t.description}" for t in self.tools.values()]
        lines += ["Reply with 'Thought: ...' then 'Action: tool[argument]' or 'Final Answer: ...'.",
                  f"Question: {question}"]
        return "\n".join(lines) + "\n"

    def _log(self, event: str, **details):
        if self.audit is not None:
            self.audit.append(event, **details)

    def run(self, question: str, *, user: str = "anonymous") -> AgentResult:
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty str")
        self._log("question", user=user, text=question)
        if self.question_limiter is not None and not self.question_limiter.allow(user):
            self._log("question_rate_limited", user=user)
            return AgentResult(question, None, [], "rate_limited", self.header(question))
        if self.input_guard is not None:
            verdict = self.input_guard(question)
            if not verdict.allowed:
                self._log("input_blocked", user=user, reasons=verdict.reasons)
                return AgentResult(question, None, [], "blocked_input", self.header(question))
        transcript, steps = self.header(question), []
        for _ in range(self.max_steps):
            raw = self.policy(transcript)
            if isinstance(raw, str):
                step = parse_step(raw)
            else:
                step = Step(error=f"policy returned {type(raw).__name__}, not str")
            steps.append(step)
            if step.thought:
                transcript += f"Thought: {_quote_for_transcript(step.thought)}\n"
            if step.error:
                step.observation = f"Error: {step.error}. Use 'Action: tool[argument]' or 'Final Answer: ...'."
                self._log("malformed_action", user=user, error=step.error)
            elif step.final is not None:
                transcript += f"Final Answer: {_quote_for_transcript(step.final)}\n"
                return self._finish(question, step.final, steps, transcript, user)
            else:
                step.observation = self._call_tool(step, user)
                transcript += f"Action: {step.tool}[{_quote_for_transcript(step.arg)}]\n"
            if len(step.observation) > self.max_observation_chars:
                step.observation = (step.observation[: self.max_observation_chars]
                                    + f" ... (cut at max_observation_chars={self.max_observation_chars})")
            transcript += f"Observation: {_quote_for_transcript(step.observation)}\n"
        self._log("step_limit", user=user, max_steps=self.max_steps)
        return AgentResult(question, None, steps, "max_steps", transcript)

    def _call_tool(self, step: Step, user: str) -> str:
        if self.tool_policy is not None:
            problems = self.tool_policy.check(step.tool, {"input": step.arg})
            if problems:
                step.blocked = problems
                self._log("tool_blocked", user=user, tool=step.tool, reasons=problems)
                return f"Error: call refused by policy ({', '.join(problems)})"
        if step.tool not in self.tools:
            self._log("unknown_tool", user=user, tool=step.tool)
            return f"Error: unknown tool {step.tool!r}; available: {', '.join(self.tools)}"
        if self.rate_limiter is not None and not self.rate_limiter.allow(user):
            step.blocked = ["rate_limited"]
            self._log("rate_limited", user=user, tool=step.tool)
            return "Error: rate limit reached; try again later"
        result = self.tools[step.tool](step.arg)
        self._log("tool_call", user=user, tool=step.tool, arg=step.arg, ok=not result.startswith("Error"))
        if self.observation_filter is not None:
            result = self.observation_filter(step.tool, result)
        return result

    def _finish(self, question, answer, steps, transcript, user) -> AgentResult:
        if self.output_guard is not None:
            verdict = self.output_guard(answer)
            if not verdict.allowed:
                self._log("output_flagged", user=user, reasons=verdict.reasons)
                return AgentResult(question, verdict.text, steps, "blocked_output", transcript)
        self._log("answer", user=user, text=answer)
        return AgentResult(question, answer, steps, "final", transcript)
