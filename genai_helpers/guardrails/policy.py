"""Controls around an agent's tool calls: allow-list, argument validation, rate limit, audit log
(chapter 08).

    policy = ToolPolicy({"calculator": {"expression": ArgSpec(str, max_len=200)}})
    policy.check("calculator", {"expression": "2+2"})      # -> [] (no problems)
    limiter = RateLimiter(rate_per_s=2, burst=5)            # token bucket per key
    log = AuditLog()                                       # hash-chained records
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import math
import re
import time
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["ArgSpec", "ToolPolicy", "RateLimiter", "AuditLog", "fold_for_secrets", "find_secret_spans"]


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
            if spec.max_len is not None and hasattr(value, "__len__") and len(value) > spec.max_len:
                problems.append(f"too_long:{name}")
                continue              # never run the patterns over a value already refused (a 10 MB argument)
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
    A clock that goes backwards or returns a non-finite value refills nothing (it never grants
    extra calls). Buckets that have refilled to ``burst`` are dropped once more than ``max_keys``
    keys are held (a full bucket and a missing one allow the same), so a flood of new keys cannot
    grow memory without bound (what remains is the keys created within ``burst / rate_per_s``
    seconds). Each new key starts with a full bucket: a caller who can invent
    keys (user names) gets ``burst`` calls per key — key on an identity the caller cannot choose.
    """

    def __init__(self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000):
        if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, (int, float)) or not 0 < rate_per_s < math.inf:
            raise ValueError(f"rate_per_s must be a finite number > 0, got {rate_per_s}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an int >= 1, got {burst}")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be an int >= 1, got {max_keys}")
        if not callable(clock):
            raise TypeError("clock must be callable: clock() -> seconds")
        self.rate, self.burst, self.clock, self.max_keys = float(rate_per_s), burst, clock, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._prune_at = max_keys         # doubles when a prune frees little: pruning stays amortised O(1)

    def _prune(self, now: float) -> None:
        """Drop the buckets that have refilled to ``burst`` by ``now``."""
        self._buckets = {k: (t, last) for k, (t, last) in self._buckets.items()
                         if not t + max(0.0, now - last) * self.rate >= self.burst}

    def allow(self, key: str = "default") -> bool:
        """Take one token for ``key``; False (and nothing taken) when the bucket is empty."""
        now = self.clock()
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            now = math.nan
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        elapsed = now - last
        if not elapsed > 0:                   # a clock that went back, or NaN: no refill
            elapsed, now = 0.0, last if math.isfinite(last) else now
        tokens = min(self.burst, tokens + elapsed * self.rate)
        if key not in self._buckets and len(self._buckets) >= self._prune_at:
            self._prune(now)
            self._prune_at = max(self.max_keys, 2 * len(self._buckets))
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


# ---------------------------------------------------------------- secrets in outputs (used by check_output)
# Latin look-alikes from Cyrillic and Greek (after case folding): "САNАRY" written with Cyrillic С and А
# is read as "canary". One character for one, so offsets into the text are kept.
_CONFUSABLES = str.maketrans("авеꙇіјкмнорсѕтухԁԛԝѵαβεζηικμνορτυχ", "abeiijkmhopcstyxdqwvabezhikmnoptyx")
_LEET = str.maketrans("0134578", "oieastb")
_ROT13 = str.maketrans("abcdefghijklmnopqrstuvwxyz", "nopqrstuvwxyzabcdefghijklm")
# a token that may be an encoding of a secret: base64 (standard or URL-safe) or hex, or one with
# percent- or HTML-entity escapes
_B64 = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){8,}")


def fold_for_secrets(text: str) -> tuple[str, list[int]]:
    """Letters and digits of ``text``, NFKC-normalised, case-folded and with Cyrillic/Greek
    look-alikes read as Latin, with the offset in ``text`` each one came from:
    ``"C A-n"`` -> ``("can", [0, 2, 4])``; zero-width and combining characters drop out."""
    chars, offsets = [], []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKC", ch).casefold().translate(_CONFUSABLES):
            if c.isalnum():
                chars.append(c)
                offsets.append(i)
    return "".join(chars), offsets


def _decodings(token: str) -> list[str]:
    """What ``token`` may decode to: percent-escapes, HTML entities, base64 and hex (best effort)."""
    out = []
    if "%" in token:
        out.append(urllib.parse.unquote(token))
    if "&" in token:
        out.append(html.unescape(token))
    core = token.strip(".,;:!?\"'()[]<>`*")
    if _B64.fullmatch(core):
        body = core.rstrip("=")
        for alt in (b"+/", b"-_"):
            try:
                out.append(base64.b64decode(body + "=" * (-len(body) % 4), altchars=alt).decode("utf-8", "ignore"))
            except (ValueError, binascii.Error):
                pass
    if _HEX.fullmatch(core):
        out.append(bytes.fromhex(core).decode("utf-8", "ignore"))
    return out


def find_secret_spans(text: str, secret: str, *, min_fuzzy_chars: int = 8,
                      folded: tuple[str, list[int]] | None = None) -> list[tuple[int, int]]:
    """Where ``secret`` leaks in ``text``, as ``(start, end)`` spans to redact.

    Always: the secret as written, any case. For secrets of at least ``min_fuzzy_chars`` letters and
    digits also, on :func:`fold_for_secrets` of both sides (spacing, punctuation, case, zero-width
    characters, NFKC forms such as fullwidth or circled letters, Cyrillic/Greek homoglyphs):
    the secret itself, reversed, in leetspeak (``C4N4RY``) and in ROT13; any contiguous 60 % of it
    (a half-leaked secret); and inside a token that is base64, hex, percent- or entity-encoded.
    What no single text shows is out of reach: a secret split over two answers, or translated.
    """
    spans = [m.span() for m in re.finditer(re.escape(secret), text, flags=re.I)]
    key, _ = fold_for_secrets(secret)
    if len(key) < min_fuzzy_chars:
        return spans
    flat, offsets = folded or fold_for_secrets(text)

    def find_all(haystack: str, needle: str) -> None:
        start = haystack.find(needle)
        while start >= 0:
            spans.append((offsets[start], offsets[start + len(needle) - 1] + 1))
            start = haystack.find(needle, start + 1)

    for variant, table in ((key, None), (key[::-1], None), (key.translate(_LEET), _LEET),
                           (key.translate(_ROT13), None)):
        find_all(flat if table is None else flat.translate(table), variant)
    window = max(min_fuzzy_chars, math.ceil(0.6 * len(key)))
    for i in range(len(key) - window + 1):
        find_all(flat, key[i:i + window])
    for m in re.finditer(r"\S{12,}", text):
        for decoded in _decodings(m.group(0)):
            plain = fold_for_secrets(decoded)[0]
            if key in plain or key[::-1] in plain:
                spans.append(m.span())
                break
    return spans
