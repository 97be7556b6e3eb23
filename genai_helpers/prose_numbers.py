"""The prose check: a number a chapter's prose states must be one that its stored outputs show.

A chapter's Markdown says "held-out BLEU 1.0" next to a cell that printed it; when the chapter is
re-run and the number moves, the sentence goes stale silently. :func:`unbacked_numbers` lists the
numbers in a notebook's Markdown cells that nothing in the notebook backs. A number is *backed* by

- a stored output (stream text, ``text/plain``, HTML, Markdown, JSON, a widget's saved state),
  with rounding: ``0.81`` is backed by ``0.8123``, ``305`` by ``304.6``, ``2,300`` by ``2,304``
  (a round number from 1,000 up keeps at least two significant digits), ``81 %`` by ``0.81`` or ``81.2%``,
  ``18x`` by ``18.3``, ``1e-4`` by ``1.2e-04``, ``860M`` by ``860,000,000``, ``210 GFLOP/s`` by
  ``210e9``, ``12 MiB`` by ``12,582,912``; signs are ignored
  (prose says "down 0.3" for an output of ``-0.3``);
- a code cell (a setting the prose repeats: "lr 5e-4", "2,000 steps");
- a result the run recorded (``metadata.genai_book.results``, see
  :func:`genai_helpers.notebook.record_result`);
- a listed constant: ``metadata.genai_book_prose.constants`` maps a literal as the prose writes it
  (``"312"``, ``"31,000"``) to why it needs no output (``"A100 dense bf16 TFLOP/s, NVIDIA data
  sheet"``). Only quoted facts belong there (data-sheet figures, data-set sizes), never measured
  numbers. The key survives re-runs: :func:`genai_helpers.notebook.execute` rewrites only
  ``metadata.genai_book``.

Not checked: numbers in ``$math$``, code spans and fenced code, headings, link targets, HTML tags,
MyST roles; references ("chapter 13", "§7.8", "exercises 3 and 4", and ``N.M`` for the chapter's
own section numbers); version strings (``3.11.2``); numbers glued to a name (``GPT-2``, ``fp32``,
``all-MiniLM-L6-v2``); ordinals; integers up to 12 and years 1900-2100. A listed number is a place
to look, not a verdict; prose that contradicts a figure without quoting a number is not caught.

Command line: ``python -m genai_helpers.notebook prose notebooks/*.ipynb``; the test is
``tests/test_prose_numbers.py``.
"""
from __future__ import annotations

import bisect
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PROSE_KEY", "SMALL_INT", "ProseNumber", "prose_text", "numbers_in_prose", "backing_numbers",
           "prose_constants", "is_backed", "unbacked_numbers", "unused_constants"]

PROSE_KEY = "genai_book_prose"
SMALL_INT = 12                       # integers up to this are counts in prose ("three layers", "8 heads")

_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
_WORD_MULT = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}

# a prose number: 31,000 | 0.81 | 2 | 1e-4 | 1.5E+06, then optional dotted parts (a version string)
_PROSE_NUM = re.compile(r"(?<![\w.,])(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?"
                        r"(?:[eE](?P<exp>[-+]?\d+))?(?P<more>(?:\.\d+)+)?")
# an output / code number: as above, plus Python's 2_000
_OUT_NUM = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+(?![\d,])|\d(?:_?\d)*)(\.\d+)?(?:[eE]([-+]?\d+))?(\s?%)?")
_REFERENCE = re.compile(
    r"(?:\b(?:[Cc]hapters?|[Cc]h\.|[Ss]ections?|[Ee]xercises?|[Ff]igs?\.|[Ff]igures?|[Tt]ables?|"
    r"[Pp]arts?|[Cc]ells?|[Ll]ines?|[Ii]ssues?)|§|#)\s*"
    r"\d+(?:\.\d+)*[a-z]?(?:\s*(?:,|and|or|&|to|–|-)\s*§?\d+(?:\.\d+)*[a-z]?)*")
_BASE64 = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+|[A-Za-z0-9+/=]{60,}")


@dataclass(frozen=True)
class ProseNumber:
    """One number stated in a Markdown cell: ``cell`` (index in the notebook), ``literal`` as
    written ("31,000", "81 %", "18×"), its magnitude ``value`` (sign dropped), ``tolerance`` (half a
    unit of its last stated digit), ``percent``, the ``multipliers`` a suffix allows ("860M": 1 and
    1e6), and ``context`` (the text around it)."""

    cell: int
    literal: str
    value: float
    tolerance: float
    percent: bool = False
    multipliers: tuple[float, ...] = (1.0,)
    context: str = ""

    @property
    def key(self) -> str:
        """The literal as a constants key (the number as written, no sign, unit or suffix)."""
        return _constant_key(self.literal)

    def __str__(self) -> str:
        return f"cell {self.cell}: {self.literal!r} is in no output, code cell or recorded result: ...{self.context}..."


def _constant_key(literal: str) -> str:
    m = re.search(r"\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?", literal)
    if not m:
        raise ValueError(f"constant must be a number as the prose writes it (such as '31,000'), got {literal!r}")
    return m.group(0).replace(",", "")


def _blank(text: str, pattern: str | re.Pattern, flags: int = 0) -> str:
    """Replace each match by spaces (newlines kept) so positions stay those of the source."""
    return re.sub(pattern, lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=flags)


def prose_text(markdown: str) -> str:
    """``markdown`` with everything that is not running prose blanked out (same length).

    Blanked: fenced code (a MyST directive keeps its body, loses its fences and ``:option:`` lines),
    display and inline math, code spans (MyST roles included), headings, link targets and URLs,
    HTML tags and comments, and references such as "chapter 13" or "§7.8".
    """
    if not isinstance(markdown, str):
        raise TypeError(f"markdown must be a str, got {type(markdown).__name__}")
    text = markdown
    text = _blank(text, r"^(`{3,}|~{3,})(?!\{)[^\n]*\n.*?^\1[ \t]*$", re.M | re.S)       # code fences
    text = _blank(text, r"^(`{3,}|~{3,})\{[^\n]*$|^(`{3,}|~{3,})[ \t]*$", re.M)          # directive fences
    text = _blank(text, r"^:[\w-]+:.*$", re.M)                                           # directive options
    text = _blank(text, r"\$\$.*?\$\$|\\\[.*?\\\]", re.S)
    text = _blank(text, r"(?<!\\)\$[^$\n]+?(?<!\\)\$|\\\(.*?\\\)")
    text = _blank(text, r"\{[\w:-]+\}`[^`]*`|``[^`]+``|`[^`\n]+`")
    text = _blank(text, r"^ {0,3}#{1,6} .*$", re.M)
    text = _blank(text, r"<!--.*?-->|</?[A-Za-z][^>\n]*>", re.S)
    text = _blank(text, r"\]\([^)\s]*(?:\s+\"[^\"]*\")?\)|\]\[[^\]]*\]|^\s*\[[^\]]+\]:.*$|https?://\S+", re.M)
    text = _blank(text, _REFERENCE)
    return text


def numbers_in_prose(markdown: str, cell: int = 0, chapter: int | None = None) -> list[ProseNumber]:
    """The numbers stated in one Markdown cell that the check looks at (see the module's skip rules).

    ``chapter``: the notebook's chapter number, so that its own section numbers ("7.8" in chapter 7)
    are skipped.
    """
    text = prose_text(markdown)
    found = []
    for m in _PROSE_NUM.finditer(text):
        if m.group("more"):                                       # 3.11.2: a version
            continue
        start, end = m.span()
        before, after = text[max(0, start - 2):start], text[end:end + 12]
        if re.search(r"[A-Za-z]-$", before):
            continue                                              # a name: GPT-2, Windows-1252
        if re.match(r"(?:st|nd|rd|th)\b", after):
            continue                                              # 13th
        literal_num = m.group(0)
        int_part, frac, exp = m.group("int").replace(",", ""), m.group("frac") or "", m.group("exp")
        value = float(int_part + frac + (f"e{exp}" if exp else ""))
        decimals = len(frac) - 1 if frac else 0
        if chapter is not None and frac and not exp and int(int_part) == chapter and re.fullmatch(r"\.\d{1,2}", frac):
            continue                                              # "9.7" in chapter 9: a section
        percent = bool(re.match(r"\s?(?:%|percent\b|per cent\b)", after))
        times = re.match(r"\s?[x×](?!\w)", after)                  # "18x", "18 ×": a ratio
        suffix = re.match(r"([kKMBGT])(?![A-Za-z])", after)
        unit = re.match(r"\s?([kKMGTP])(i?)(?=B\b|B/s|FLOP|bit|byte|Hz|param|token)", after)
        word = re.match(r"\s(thousand|million|billion|trillion)\b", after)
        if not percent and not exp and not frac and (value <= SMALL_INT or 1900 <= value <= 2100):
            continue
        if exp:
            tol = 0.5 * 10 ** (int(exp) - decimals)
        elif decimals:
            tol = 0.5 * 10 ** -decimals
        else:
            digits = int_part.lstrip("0") or "0"
            zeros = len(digits) - len(digits.rstrip("0"))
            significant = len(digits) - zeros
            tol = 0.5 * 10 ** zeros if significant >= 2 and zeros and value >= 1000 else 0.5
        multipliers = (1.0,)
        if suffix:
            multipliers = (1.0, _SUFFIX[suffix.group(1)])
        elif unit:
            power = "kMGTP".index(unit.group(1).replace("K", "k")) + 1
            multipliers = (1.0, float(1024 ** power if unit.group(2) else 1000 ** power))
        elif word:
            multipliers = (1.0, _WORD_MULT[word.group(1)])
        literal = literal_num
        tail = re.match(r"\s?(?:%|[x×])", after)
        if tail and (percent or times):
            literal += tail.group(0)
        ctx = " ".join(markdown[max(0, start - 60):end + 30].split())
        found.append(ProseNumber(cell, literal, value, tol, percent, multipliers, ctx))
    return found


def _numbers_in_output(text: str) -> list[float]:
    values = []
    for m in _OUT_NUM.finditer(_BASE64.sub(" ", text)):
        whole, frac, exp, pct = m.groups()
        parts = [whole.replace(",", "").replace("_", "")]
        if "," in whole:                                          # "1,234" may also be two numbers
            parts += whole.split(",")
        for p in parts:
            try:
                v = abs(float(p + (frac or "") + (f"e{exp}" if exp else "")))
            except ValueError:
                continue
            if math.isfinite(v):
                values.append(v)
                if pct:
                    values.append(v / 100)
    return values


def _output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            t = out["text"]
            parts.append("".join(t) if isinstance(t, list) else str(t))
        for mime, data in (out.get("data") or {}).items():
            if mime.startswith("image/"):
                continue
            if isinstance(data, list):
                data = "".join(data)
            parts.append(data if isinstance(data, str) else json.dumps(data))
    return "\n".join(parts)


def backing_numbers(nb) -> list[float]:
    """Sorted magnitudes of every number in the notebook's outputs, code cells, saved widget state
    and recorded results (``metadata.genai_book.results``): what a prose number may quote."""
    values = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            values += _numbers_in_output(cell.source)
            values += _numbers_in_output(_output_text(cell))
    widgets = nb.metadata.get("widgets")
    if widgets:
        values += _numbers_in_output(json.dumps(widgets))
    results = (nb.metadata.get("genai_book") or {}).get("results") or {}
    values += [abs(float(v)) for v in results.values()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return sorted(set(values))


def prose_constants(nb) -> dict[str, str]:
    """``metadata.genai_book_prose.constants``: quoted literal -> why no output needs to show it.

    Raises ``ValueError`` when a key is not a number or a reason is empty.
    """
    raw = (nb.metadata.get(PROSE_KEY) or {}).get("constants") or {}
    if not isinstance(raw, dict):
        raise ValueError(f"metadata.{PROSE_KEY}.constants must map a literal to a reason, got {type(raw).__name__}")
    out = {}
    for literal, why in raw.items():
        if not isinstance(why, str) or len(why.strip()) < 10:
            raise ValueError(f"metadata.{PROSE_KEY}.constants[{literal!r}] must say where the number comes "
                             f"from (a sentence of 10+ characters), got {why!r}")
        out[_constant_key(literal)] = why
    return out


def is_backed(number: ProseNumber, pool: list[float]) -> bool:
    """True when some value in the sorted ``pool`` rounds to ``number`` (see the module docstring)."""
    targets = [number.value * m for m in number.multipliers]
    if number.percent:
        targets += [t / 100 for t in targets]
    for target in targets:
        scale = target / number.value if number.value else 1.0
        tol = number.tolerance * scale * (1 + 1e-9) + 1e-12
        i = bisect.bisect_left(pool, target - tol)
        if i < len(pool) and pool[i] <= target + tol:
            return True
    return False


def _chapter_of(path) -> int | None:
    m = re.match(r"(\d+)_", Path(path).name) if path is not None else None
    return int(m.group(1)) if m else None


def unbacked_numbers(nb, path: str | os.PathLike | None = None) -> list[ProseNumber]:
    """The numbers in ``nb``'s Markdown cells that no output, code cell, recorded result or listed
    constant backs, in cell order. ``path`` (``notebooks/NN_name.ipynb``) gives the chapter number
    whose section references ("7.8") are skipped."""
    pool = backing_numbers(nb)
    constants = prose_constants(nb)
    chapter = _chapter_of(path)
    suspects = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for number in numbers_in_prose(cell.source, i, chapter):
            if number.key in constants or is_backed(number, pool):
                continue
            suspects.append(number)
    return suspects


def unused_constants(nb, path: str | os.PathLike | None = None) -> list[str]:
    """Constants listed in the metadata that no prose number of ``nb`` uses (stale entries)."""
    chapter = _chapter_of(path)
    used = {n.key for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
            for n in numbers_in_prose(c.source, i, chapter)}
    return sorted(set(prose_constants(nb)) - used)
