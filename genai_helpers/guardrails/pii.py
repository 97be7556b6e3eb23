"""Personal data (PII) detection and redaction (chapter 08).

Patterns find candidates; checksums and ranges reject look-alikes, so an order number that
happens to have 16 digits is not a credit card:

- ``EMAIL``        name@domain.tld
- ``PHONE``        international ``+CC ...`` or North-American ``(555) 123-4567`` / ``555-123-4567``
- ``CREDIT_CARD``  13-19 digits (spaces/dashes allowed) that pass the **Luhn** checksum
- ``IBAN``         country code + 2 check digits + up to 30 characters, passing **ISO 7064 mod 97**
- ``SSN``          US-style ``AAA-GG-SSSS`` with the ranges the SSA never issues rejected
- ``IP_ADDRESS``   dotted IPv4 with every octet 0-255
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PII_KINDS", "PIIMatch", "luhn_valid", "iban_valid", "ssn_valid", "ipv4_valid", "find_pii", "redact_pii"]

#: The kinds of personal data :func:`find_pii` detects, in the order it checks them.
PII_KINDS = ("EMAIL", "CREDIT_CARD", "IBAN", "SSN", "PHONE", "IP_ADDRESS")


@dataclass(frozen=True)
class PIIMatch:
    kind: str    # one of PII_KINDS
    start: int   # character offsets into the text, end exclusive
    end: int
    text: str


def luhn_valid(number: str) -> bool:
    """True when the digits of ``number`` (spaces and dashes ignored) pass the Luhn checksum."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 2 or any(not (c.isdigit() or c in " -") for c in number):
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """True when ``iban`` (spaces ignored) passes the ISO 13616 / ISO 7064 mod-97 check."""
    s = iban.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", s):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def ssn_valid(ssn: str) -> bool:
    """True for ``AAA-GG-SSSS`` with area not 000/666/9xx, group not 00, serial not 0000."""
    m = re.fullmatch(r"(\d{3})-(\d{2})-(\d{4})", ssn)
    if not m:
        return False
    area, group, serial = m.groups()
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def ipv4_valid(ip: str) -> bool:
    parts = ip.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) <= 255 and (p == "0" or not p.startswith("0")) for p in parts)


_PATTERNS: list[tuple[str, re.Pattern, object]] = [
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), None),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), iban_valid),
    ("CREDIT_CARD", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), luhn_valid),
    ("SSN", re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"), ssn_valid),
    ("IP_ADDRESS", re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\.?\d)"), ipv4_valid),
    ("PHONE", re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(?\d{1,4}\)?[ .-]?){2,4}\d{2,4}"
                         r"|\(\d{3}\) ?\d{3}-\d{4}|\b\d{3}[.-]\d{3}[.-]\d{4})(?![\d-])"), None),
]


def find_pii(text: str) -> list[PIIMatch]:
    """Every PII span in ``text``, left to right, non-overlapping (earlier kinds in
    :data:`PII_KINDS` win an overlap: an IBAN's digits are not also reported as a card)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    found: list[PIIMatch] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern, validator in _PATTERNS:
        for m in pattern.finditer(text):
            span = m.group(0).strip()
            start = m.start() + (len(m.group(0)) - len(m.group(0).lstrip()))
            end = start + len(span)
            if validator is not None and not validator(span):
                continue
            if kind == "PHONE" and sum(c.isdigit() for c in span) < 7:
                continue
            if any(start < e and s < end for s, e in taken):
                continue
            found.append(PIIMatch(kind, start, end, span))
            taken.append((start, end))
    return sorted(found, key=lambda p: p.start)


def redact_pii(text: str, *, kinds: tuple[str, ...] = PII_KINDS) -> str:
    """``text`` with each PII span of the given ``kinds`` replaced by ``[KIND]``
    (e.g. ``"mail bob@x.org"`` -> ``"mail [EMAIL]"``)."""
    bad = [k for k in kinds if k not in PII_KINDS]
    if bad:
        raise ValueError(f"kinds must be drawn from {PII_KINDS}, got {bad}")
    out, last = [], 0
    for match in find_pii(text):
        if match.kind in kinds:
            out.append(text[last:match.start])
            out.append(f"[{match.kind}]")
            last = match.end
    out.append(text[last:])
    return "".join(out)
