"""Controls around an agent's tool calls: allow-list, argument validation, rate limit, audit log
(chapter 08).

    policy = ToolPolicy({"calculator": {"expression": ArgSpec(str, max_len=200)}})
    policy.check("calculator", {"expression": "2+2"})      # -> [] (no problems)
    limiter = RateLimiter(rate_per_s=2, burst=5)            # token bucket per key
    log = AuditLog()                                       # hash-chained records
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["ArgSpec", "ToolPolicy", "RateLimiter", "AuditLog"]


@dataclass(frozen=True)
class ArgSpec:
    """What one tool argument may be: its type, length/range limits, an optional regex it must
    match in full, and an optional regex it must *not* contain anywhere."""

    type: type = str
    required: bool = True
    max_len: int | None = None
    min_value: float | None = None
    max_value: float | None = None
    pattern: str | None = None
    forbid: str | None = None


class ToolPolicy:
    """Allow-list of tools, each with an argument schema ``{arg_name: ArgSpec}``.

    :meth:`check` returns a list of human-readable problems (empty when the call is allowed):
    tools not on the list, unknown or missing arguments, wrong types, values out of range.
    """

    def __init__(self, allowed: dict[str, dict[str, ArgSpec]]):
        if not isinstance(allowed, dict) or not all(isinstance(v, dict) for v in allowed.values()):
            raise TypeError("allowed must be a dict {tool_name: {arg_name: ArgSpec}}")
        self.allowed = allowed

    def check(self, tool: str, args: dict[str, Any]) -> list[str]:
        if tool not in self.allowed:
            return [f"tool_not_allowed:{tool}"]
        if not isinstance(args, dict):
            return [f"args_not_a_dict:{type(args).__name__}"]
        schema, problems = self.allowed[tool], []
        for name in args:
            if name not in schema:
                problems.append(f"unknown_argument:{name}")
        for name, spec in schema.items():
            if name not in args:
                if spec.required:
                    problems.append(f"missing_argument:{name}")
                continue
            value = args[name]
            if not isinstance(value, spec.type) or (spec.type in (int, float) and isinstance(value, bool)):
                problems.append(f"wrong_type:{name}")
                continue
            if spec.max_len is not None and len(value) > spec.max_len:
                problems.append(f"too_long:{name}")
            if spec.min_value is not None and value < spec.min_value:
                problems.append(f"below_min:{name}")
            if spec.max_value is not None and value > spec.max_value:
                problems.append(f"above_max:{name}")
            if spec.pattern is not None and not re.fullmatch(spec.pattern, value, flags=re.S | re.I):
                problems.append(f"bad_format:{name}")
            if spec.forbid is not None and re.search(spec.forbid, value, flags=re.S | re.I):
                problems.append(f"forbidden_content:{name}")
        return problems


class RateLimiter:
    """Token bucket per key: ``burst`` calls at once, refilled at ``rate_per_s`` calls per second.

    ``clock`` is injectable (a function returning seconds) so tests and simulations need not sleep.
    """

    def __init__(self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic):
        if not isinstance(rate_per_s, (int, float)) or not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        if not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an int >= 1, got {burst}")
        self.rate, self.burst, self.clock = float(rate_per_s), burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str = "default") -> bool:
        """Take one token for ``key``; False (and nothing taken) when the bucket is empty."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return True
        self._buckets[key] = (tokens, now)
        return False


@dataclass
class AuditLog:
    """Append-only log of what the agent and its guardrails did. Each record carries the SHA-256
    of the previous one, so editing or deleting a past record breaks :meth:`verify`."""

    records: list[dict] = field(default_factory=list)
    clock: Callable[[], float] = time.time

    def append(self, event: str, **details) -> dict:
        if not isinstance(event, str) or not event:
            raise ValueError("event must be a non-empty str")
        prev = self.records[-1]["hash"] if self.records else "0" * 64
        record = {"seq": len(self.records), "time": self.clock(), "event": event,
                  "details": json.loads(json.dumps(details, default=str)), "prev": prev}
        record["hash"] = _record_hash(record)
        self.records.append(record)
        return record

    def verify(self) -> bool:
        """True when every record's hash and chain link are intact."""
        prev = "0" * 64
        for i, record in enumerate(self.records):
            if record["seq"] != i or record["prev"] != prev or record["hash"] != _record_hash(record):
                return False
            prev = record["hash"]
        return True

    def count(self, event: str) -> int:
        return sum(r["event"] == event for r in self.records)

    def to_jsonl(self) -> str:
        return "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records)


def _record_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
