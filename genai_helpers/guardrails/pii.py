"""Personal data (PII) detection and redaction (chapter 08).

Patterns find candidates; checksums and ranges reject look-alikes, so an order number that
happens to have 16 digits is not a credit card:

- ``EMAIL``        name@domain.tld (Unicode and punycode domains too), and ``name [at] domain [dot] tld``
- ``PHONE``        international ``+CC ...`` or North-American ``(555) 123-4567`` / ``1-555-123-4567``;
                   ``555 123 4567`` (spaces only) after a word such as "call" or "phone"
- ``CREDIT_CARD``  13-19 digits that pass the **Luhn** checksum, bare or separated by spaces or
                   dashes, or by dots, slashes, underscores, en dashes or no-break spaces in card-like
                   groups (``4111.1111.1111.1111``; a decimal number or a version string is not a card)
- ``IBAN``         country code + 2 check digits + up to 30 characters (any case), with the
                   country's registered length and passing **ISO 7064 mod 97**
- ``SSN``          US-style ``AAA-GG-SSSS`` with the ranges the SSA never issues rejected; with spaces,
                   dots, underscores, en dashes or no separator (``123 45 6789``, ``123456789``) only
                   after a word that names it ("SSN", "social security"), because three numbers in a
                   row are common in technical text
- ``IP_ADDRESS``   dotted IPv4 with every octet 0-255 (not right after "v" or "version"), and IPv6
                   (``2001:db8::1``; at least three groups)
"""
from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

__all__ = ["PII_KINDS", "PIIMatch", "IBAN_LENGTHS", "luhn_valid", "iban_valid", "ssn_valid", "ipv4_valid", "find_pii",
           "redact_pii"]

#: The kinds of personal data :func:`find_pii` detects, in the order it checks them.
PII_KINDS = ("EMAIL", "CREDIT_CARD", "IBAN", "SSN", "PHONE", "IP_ADDRESS")


@dataclass(frozen=True)
class PIIMatch:
    kind: str    # one of PII_KINDS
    start: int   # character offsets into the text, end exclusive
    end: int
    text: str


#: Characters that may separate the digit groups of a card number (spaces of several widths, dashes,
#: dots, slashes, underscores).
_CARD_SEPARATORS = " -._/\u2013\u2014\u00a0\u2007\u202f"


def _ascii_digits(text: str) -> str:
    """``text`` with every decimal digit of any script (fullwidth ``１``, Arabic-Indic ``١``) as ASCII and
    fullwidth punctuation folded (NFKC)."""
    return "".join(str(unicodedata.decimal(c)) if unicodedata.decimal(c, None) is not None
                   else unicodedata.normalize("NFKC", c) for c in text)


def luhn_valid(number: str) -> bool:
    """True when the digits of ``number`` (spaces, dashes, dots, slashes and underscores ignored) pass
    the Luhn checksum."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 2 or any(not (c.isdigit() or c in _CARD_SEPARATORS) for c in number):
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


#: IBAN length by country code (ISO 13616 registry, plus countries that issue IBANs outside it).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
    # outside the registry (French overseas territories use FR's format; the rest issue national IBANs)
    "AO": 25, "BF": 28, "BJ": 28, "CF": 27, "CG": 27, "CI": 28, "CM": 27, "CV": 25, "DZ": 26, "GA": 27, "GQ": 27,
    "GW": 25, "IR": 26, "KM": 27, "MA": 28, "MG": 27, "ML": 28, "MZ": 25, "NE": 28, "SN": 28, "TD": 27, "TG": 28,
    "GF": 27, "GP": 27, "MQ": 27, "RE": 27, "PF": 27, "TF": 27, "YT": 27, "NC": 27, "PM": 27, "WF": 27, "BL": 27,
    "MF": 27,
}


def iban_valid(iban: str) -> bool:
    """True when ``iban`` (spaces and dashes ignored, any case) has its country's length
    (:data:`IBAN_LENGTHS`) and passes the ISO 13616 / ISO 7064 mod-97 check."""
    s = re.sub(r"[ \-\u00a0]", "", iban).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", s) or IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def ssn_valid(ssn: str) -> bool:
    """True for ``AAA-GG-SSSS`` (or one space or dot as both separators) with area not
    000/666/9xx, group not 00, serial not 0000."""
    m = re.fullmatch(r"(\d{3})([-. ])(\d{2})\2(\d{4})", ssn)
    if not m or not ssn.isascii():
        return False
    area, _, group, serial = m.groups()
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def ipv4_valid(ip: str) -> bool:
    parts = ip.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) <= 255 and (p == "0" or not p.startswith("0")) for p in parts)


def _card_shape_valid(span: str) -> bool:
    """Luhn, plus — unless the groups are separated by single spaces or single dashes — a card's
    grouping: one kind of separator, at least three groups, all but the last of 4-6 digits
    (``4111.1111.1111.1111``, ``4111/1111/1111/1111``, ``4111 - 1111 - 1111 - 1111``,
    ``3782.822463.10005``); so a decimal number or a version string is not a card."""
    if not luhn_valid(span):
        return False
    seps = re.findall(r"\D+", span)
    if all(sep in (" ", "-") for sep in seps) and len(set(seps)) <= 1:
        return True
    if len(set(seps)) != 1:
        return False
    groups = re.split(r"\D+", span)
    return (len(groups) >= 3 and all(4 <= len(g) <= 6 for g in groups[:-1]) and 1 <= len(groups[-1]) <= 6)


def _ssn_loose_valid(span: str) -> bool:
    """An SSN written after a word that names it: 9 digits of any script, in 3-2-4 groups with one
    kind of separator (dash, dot, space, underscore, en dash; spaces around it allowed) or none."""
    m = re.fullmatch(r"(\d{3})(\s*[-.\u2013\u2014_]?\s*)(\d{2})(\s*[-.\u2013\u2014_]?\s*)(\d{4})", _ascii_digits(span))
    if not m or m.group(2).strip() != m.group(4).strip() or bool(m.group(2)) != bool(m.group(4)):
        return False
    area, group, serial = m.group(1), m.group(3), m.group(5)
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _ipv6_valid(span: str) -> bool:
    """A full IPv6 address with at least three non-empty groups, one of 3-4 hex digits (so ``a::b``
    or a ratio ``1:2:3:4:5:6:7:8`` is not one)."""
    try:
        ipaddress.IPv6Address(span)
    except ValueError:
        return False
    groups = span.split(":")
    return sum(bool(g) for g in groups) >= 3 and any(len(g) >= 3 for g in groups)


# a word naming the number must come shortly before an SSN written with spaces or dots
_SSN_CONTEXT = re.compile(r"(?i)\b(ssn|ss#|s\.s\.n\.?|ss ?(?:number|no\.?|#)|social[ -]security(?: (?:number|no\.?|#))?"
                          r"|soc\.? ?sec\.?)\W{0,3}(?:\w+\W{1,3}){0,3}$")
# a word naming a phone number must come shortly before one written with spaces only (555 123 4567)
_PHONE_CONTEXT = re.compile(r"(?i)\b(phone|tel|telephone|mobile|cell|fax|call|ring|text|sms|whatsapp|dial)\b"
                            r"\W{0,3}(?:\w+\W{1,3}){0,3}$")
# a dotted quad right after "v" or "version" is a version string, not an IP address
_VERSION_CONTEXT = re.compile(r"(?i)(?:\bv|\bversion|\bver\.?|\brelease|\brelease[sd]?)\s*$")
_SP = "[ \u00a0\u2007\u202f]"

# (kind, pattern, validator of the span, test of the text before the span)
_PATTERNS: list[tuple[str, re.Pattern, Callable[[str], bool] | None, Callable[[str], bool] | None]] = [
    # the local part starts where no local-part character precedes it, so a long run without "@"
    # is scanned once (a leading \b made "a.a.a.a..." quadratic); Unicode names and domains
    # (bób@example.com, bob@例子.公司) and punycode top-level domains (xn--...) count; "q@k.transpose("
    # is code, not an address
    ("EMAIL", re.compile(r"(?<![\w.%+-])[\w.%+-]+@(?:[\w-]+\.)+(?:xn--[\w-]+|[^\W\d_]{2,})(?![\w-]|\()"), None, None),
    # written out to dodge filters: bob [at] example [dot] com, bob(at)example(dot)com
    ("EMAIL", re.compile(r"(?i)(?<![\w.%+-])[\w.%+-]+\s*[\[({]\s*at\s*[\])}]\s*[\w-]+"
                         r"(?:\s*(?:[\[({]\s*dot\s*[\])}]|\.)\s*[\w-]+)+"), None, None),
    ("IBAN", re.compile(r"(?:(?<![A-Za-z0-9])|(?<=[Ii][Bb][Aa][Nn]))[A-Za-z]{2} ?\d{2}(?:[ -]?[A-Za-z0-9]{4}){2,7}"
                        r"(?:[ -]?[A-Za-z0-9]{1,4})?\b"), iban_valid, None),
    ("CREDIT_CARD", re.compile(rf"(?<![\d.-])\d(?:(?:{_SP}{{0,2}}[-./_\u2013\u2014]{_SP}{{0,2}}|{_SP}{{1,2}})?\d){{12,18}}"
                               r"(?![\d-]|\.\d)"), _card_shape_valid, None),
    ("SSN", re.compile(r"(?<![\d-])\d{3}[-\uff0d]\d{2}[-\uff0d]\d{4}(?![\d-])"), lambda s: ssn_valid(_ascii_digits(s)), None),
    ("SSN", re.compile(r"(?<![\d.-])\d{3}\s{0,2}[-.\u2013\u2014_ ]?\s{0,2}\d{2}\s{0,2}[-.\u2013\u2014_ ]?\s{0,2}\d{4}"
                       r"(?![\d-]|\.\d)"), _ssn_loose_valid, lambda before: _SSN_CONTEXT.search(before[-40:]) is not None),
    ("IP_ADDRESS", re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\.?\d)"), ipv4_valid,
     lambda before: _VERSION_CONTEXT.search(before[-12:]) is None),
    ("IP_ADDRESS", re.compile(r"(?<![\w:.])[0-9A-Fa-f:]{6,39}(?![\w:.])"), _ipv6_valid, None),
    ("PHONE", re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(?\d{1,4}\)?[ .-]?){2,4}\d{2,4}"
                         r"|(?:\b1[ .-])?\(\d{3}\) ?\d{3}-\d{4}|(?:\b1[ .-])?\b\d{3}[.-]\d{3}[.-]\d{4})(?![\d-])"), None, None),
    ("PHONE", re.compile(r"(?<![\w+])(?:1 )?\d{3} \d{3} \d{4}(?![\d-])"), None,
     lambda before: _PHONE_CONTEXT.search(before[-40:]) is not None),
]


def find_pii(text: str) -> list[PIIMatch]:
    """Every PII span in ``text``, left to right, non-overlapping (earlier kinds in
    :data:`PII_KINDS` win an overlap: an IBAN's digits are not also reported as a card)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    found: list[PIIMatch] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern, validator, context in _PATTERNS:
        for m in pattern.finditer(text):
            span = m.group(0).strip()
            start = m.start() + (len(m.group(0)) - len(m.group(0).lstrip()))
            end = start + len(span)
            if validator is not None and not validator(span):
                continue
            if context is not None and not context(text[max(0, start - 60):start]):
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
