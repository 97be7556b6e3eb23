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


_FINAL = re.compile(r"final\s*answer\s*:\s*(.*)", re.I | re.S)
_ACTION = re.compile(r"action\s*:\s*(.*)", re.I | re.S)
_THOUGHT = re.compile(r"thought\s*:\s*(.*?)(?=\n\s*(action|final\s*answer)\s*:|\Z)", re.I | re.S)


def parse_step(text: str) -> Step:
    """Parse one policy output into a :class:`Step` (``error`` set when it is malformed).

    Anything after a line starting with ``Observation:`` is dropped: a model that writes its own
    observations is hallucinating them.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = re.split(r"\n\s*observation\s*:", text, maxsplit=1, flags=re.I)[0].strip()
    step = Step()
    m = _THOUGHT.search(text)
    if m:
        step.thought = m.group(1).strip()
    action = _ACTION.search(text)
    final = _FINAL.search(text)
    if final and (not action or final.start() < action.start()):
        step.final = final.group(1).strip()
        if not step.final:
            step.error = "empty final answer"
        return step
    if not action:
        step.error = "no 'Action:' or 'Final Answer:' found"
        return step
    body = action.group(1).strip()
    if body.startswith("{"):
        try:
            obj = json.loads(body[: body.rfind("}") + 1])
            step.tool = str(obj.get("tool") or obj.get("name") or obj.get("action"))
            arg = obj.get("input", obj.get("args", obj.get("argument", "")))
            step.arg = arg if isinstance(arg, str) else json.dumps(arg)
        except (json.JSONDecodeError, AttributeError) as exc:
            step.error = f"action JSON does not parse: {exc}"
        return step
    for pattern in (r"([A-Za-z_]\w*)\s*\[(.*)\]", r"([A-Za-z_]\w*)\s*\((.*)\)", r"([A-Za-z_]\w*)\s*:\s*(.+)"):
        m = re.fullmatch(pattern, body.splitlines()[0].strip() if pattern.endswith("(.+)") else body, re.S)
        if m:
            step.tool, step.arg = m.group(1).lower(), m.group(2).strip().strip("`").strip()
            return step
    step.error = f"action does not look like tool[argument]: {body[:60]!r}"
    return step


@dataclass
class AgentResult:
    question: str
    answer: str | None
    steps: list[Step]
    stopped: str                      # "final" | "max_steps" | "blocked_input" | "blocked_output"
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
    - ``rate_limiter``: a :class:`~genai_helpers.guardrails.policy.RateLimiter` keyed by ``user``;
    - ``output_guard(text) -> GuardResult``: screens (and redacts) the final answer;
    - ``audit``: an :class:`~genai_helpers.guardrails.policy.AuditLog` that records every event.
    """

    def __init__(self, policy: Callable[[str], str], tools: Sequence[Tool], *, max_steps: int = 6,
                 system: str = "Answer the question. Use a tool when it helps.", input_guard=None,
                 observation_filter=None, tool_policy=None, rate_limiter=None, output_guard=None, audit=None):
        if not callable(policy):
            raise TypeError("policy must be callable: generate(prompt: str) -> str")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be an int >= 1, got {max_steps}")
        self.policy, self.max_steps, self.system = policy, max_steps, system
        self.tools = {t.name: t for t in tools}
        self.input_guard, self.observation_filter = input_guard, observation_filter
        self.tool_policy, self.rate_limiter = tool_policy, rate_limiter
        self.output_guard, self.audit = output_guard, audit

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
        if self.input_guard is not None:
            verdict = self.input_guard(question)
            if not verdict.allowed:
                self._log("input_blocked", user=user, reasons=verdict.reasons)
                return AgentResult(question, None, [], "blocked_input", self.header(question))
        transcript, steps = self.header(question), []
        for _ in range(self.max_steps):
            raw = self.policy(transcript)
            step = parse_step(raw)
            steps.append(step)
            if step.thought:
                transcript += f"Thought: {step.thought}\n"
            if step.error:
                step.observation = f"Error: {step.error}. Use 'Action: tool[argument]' or 'Final Answer: ...'."
                self._log("malformed_action", user=user, error=step.error)
            elif step.final is not None:
                transcript += f"Final Answer: {step.final}\n"
                return self._finish(question, step.final, steps, transcript, user)
            else:
                step.observation = self._call_tool(step, user)
                transcript += f"Action: {step.tool}[{step.arg}]\n"
            transcript += f"Observation: {step.observation}\n"
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
