"""Parsing and ingestion: turn files into :class:`Document` objects, and say what was skipped.

Chapter 07 ("Retrieval-augmented generation") reads the book itself: every Markdown page under
``book/`` and the Markdown cells of every notebook under ``notebooks/``. Ingestion has to survive
what real folders contain — empty files, binaries, huge dumps, text in the wrong encoding — and
it reports each skip with its reason instead of failing or silently dropping a file.

It also screens every document for *indirect prompt injection*: text that addresses the model
("ignore previous instructions and ...") rather than the reader. The rules are chapter 08's, in
:mod:`genai_helpers.guardrails.injection` (one list for the whole package; see
:func:`~genai_helpers.guardrails.injection.screen_document`). What happens to a match:

- a phrase that addresses the model is **flagged**: it goes into ``Document.flags``, the chunk
  that holds it carries the flag, :mod:`genai_helpers.rag.retriever` keeps flagged chunks out of
  the index by default, and :mod:`genai_helpers.rag.generation` withholds any flagged text that
  reaches a prompt;
- a phrase **quoted** as an example (in a code span, a code block or quotation marks) in prose
  that is about attacks — chapter 08 explaining injection — is only **noted** in the report
  (``IngestReport.notes``); its chunks stay searchable, so the book can answer questions about
  its own safety chapter. Every passage is still spotlighted as data when it reaches a prompt.

Size limits: ``max_bytes`` applies to the *prose* that is indexed (a notebook's Markdown cells,
not its stored images); ``max_file_bytes`` bounds what is read from disk at all.

OCR (:func:`ocr_image`) uses the ``tesseract`` command when it is installed (Debian:
``apt-get install tesseract-ocr tesseract-ocr-eng``); :func:`tesseract_available` says whether it is.
"""
from __future__ import annotations

import bisect
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..guardrails.injection import screen_document

__all__ = ["MAX_BYTES", "MAX_FILE_BYTES", "BINARY_SNIFF_BYTES", "Document", "IngestReport", "detect_injection",
           "decode_bytes", "clean_markdown", "notebook_markdown", "ingest_files", "book_files", "load_book",
           "tesseract_available", "render_text_page", "ocr_image"]

MAX_BYTES = 2_000_000          # documents whose prose (UTF-8) is larger are skipped as "too large"
MAX_FILE_BYTES = 50_000_000    # files larger than this are not read at all (a safety bound)
BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Document:
    """One unit of text and where it came from.

    ``source`` is the repo-relative path (``notebooks/01_attention.ipynb``); ``kind`` is
    ``"markdown"``, ``"notebook"`` (Markdown cells joined), ``"text"`` or ``"ocr"``;
    ``flags`` lists injection phrases found in ``text``.
    """

    text: str
    source: str
    kind: str = "text"
    title: str = ""
    flags: tuple[str, ...] = ()


@dataclass
class IngestReport:
    """What ingestion produced: documents, skipped files with reasons, notes and flagged documents."""

    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)      # (path, reason)
    notes: list[tuple[str, str]] = field(default_factory=list)        # (path, what was done)

    @property
    def flagged(self) -> list[Document]:
        return [d for d in self.documents if d.flags]

    def summary(self) -> str:
        words = sum(len(d.text.split()) for d in self.documents)
        lines = [f"ingested {len(self.documents)} documents ({words:,} words); "
                 f"skipped {len(self.skipped)}; flagged {len(self.flagged)}"]
        lines += [f"  skipped {p}: {r}" for p, r in self.skipped]
        lines += [f"  note    {p}: {r}" for p, r in self.notes]
        lines += [f"  FLAGGED {d.source}: {', '.join(repr(f) for f in d.flags)}" for d in self.flagged]
        return "\n".join(lines)


def detect_injection(text: str) -> tuple[str, ...]:
    """The injection phrases in ``text`` that address the model (lower-cased, in order of
    appearance; empty if none): the ``flagged`` half of
    :func:`genai_helpers.guardrails.injection.screen_document`. Quoted examples in prose about
    attacks are not returned (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return screen_document(text)[0]


def decode_bytes(data: bytes) -> tuple[str | None, str]:
    """Decode file bytes to text, or say why not: ``(text, note)`` or ``(None, reason)``.

    Empty (or whitespace-only) and binary data (a NUL byte, or many control bytes, in the first
    8 KB) are refused; UTF-8 is tried first, then Windows-1252 (the usual culprit of "badly
    encoded" text), which is reported in the note.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if not data.strip():
        return None, "empty"
    head = bytes(data[:BINARY_SNIFF_BYTES])
    control = sum(b < 9 or 13 < b < 32 for b in head)
    if b"\x00" in head or control > 0.05 * len(head):
        return None, "binary (NUL or control bytes)"
    try:
        return bytes(data).decode("utf-8-sig"), ""
    except UnicodeDecodeError as err:
        first_bad = err.start
    try:
        return bytes(data).decode("cp1252"), f"not valid UTF-8 (first bad byte at offset {first_bad}); decoded as cp1252"
    except UnicodeDecodeError:
        return None, f"undecodable: neither UTF-8 nor cp1252 (first bad byte at offset {first_bad})"


_ROLE_RE = re.compile(r"\{(?:doc|ref|numref)\}`([^`<]+)(?:<[^`]*>)?`")
_ADMONITION_OPEN = re.compile(r"```\{admonition\}[ \t]*(.*)")
_FENCE_CLOSE = re.compile(r"```[ \t]*")


def clean_markdown(text: str) -> str:
    """Drop MyST/Sphinx markup a reader never sees: ``{doc}`Chapter 1 <...>``` becomes ``Chapter 1``.

    Runs in time linear in the text (line by line for admonitions), so a hostile page of
    unclosed fences cannot stall ingestion."""
    text = _ROLE_RE.sub(lambda m: m.group(1).rstrip() or m.group(1), text)
    # an admonition block: keep its title and body, drop both of its fences and its options
    lines = text.split("\n")
    closes = [i for i, line in enumerate(lines) if _FENCE_CLOSE.fullmatch(line)]
    out, i = [], 0
    while i < len(lines):
        m = _ADMONITION_OPEN.fullmatch(lines[i])
        k = bisect.bisect_right(closes, i) if m else len(closes)
        if m and k < len(closes):
            j = closes[k]
            out += [m.group(1)] + lines[i + 1:j] + [""]
            i = j + 1
        else:
            out.append(lines[i])
            i += 1
    text = "\n".join(out)
    text = re.sub(r"^:class:.*$\n?", "", text, flags=re.M)
    return text


def notebook_markdown(data: str | bytes) -> list[str]:
    """The Markdown cells of a notebook's JSON, in order (code cells and outputs are left out).

    Raises ValueError for anything that is not a notebook: broken or too deeply nested JSON, no
    ``cells`` list, a cell that is not an object, a ``source`` that is not text or a list of text.
    """
    try:
        nb = json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("not a Jupyter notebook (no 'cells' list)")
    cells = []
    for i, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict):
            raise ValueError(f"cell {i} is not a JSON object")
        if cell.get("cell_type") == "markdown":
            src = cell.get("source", "")
            if isinstance(src, list) and all(isinstance(line, str) for line in src):
                src = "".join(src)
            if not isinstance(src, str):
                raise ValueError(f"cell {i}: source must be text or a list of text, got {type(src).__name__}")
            cells.append(src)
    return cells


def _title(text: str, fallback: str) -> str:
    m = re.search(r"^#\s+(.+)$", text, flags=re.M)
    return m.group(1).strip() if m else fallback


def ingest_files(paths: Iterable[str | os.PathLike], root: str | os.PathLike = ".", *,
                 max_bytes: int = MAX_BYTES, max_file_bytes: int = MAX_FILE_BYTES) -> IngestReport:
    """Read files into documents; never raises on a bad file, records it in the report instead.

    ``.ipynb`` files contribute their Markdown cells (joined by blank lines), ``.md`` files their
    text with MyST roles cleaned, anything else its decoded text. ``source`` is the path relative
    to ``root`` (POSIX separators). Documents whose extracted prose is longer than ``max_bytes``
    (UTF-8 bytes, > 0) are skipped as "too large" — the limit is on the text that would be
    indexed, so a notebook's stored images do not count; files over ``max_file_bytes`` are not
    read at all, and neither is anything that is not a regular file (a FIFO, a device).
    Injection phrases are flagged or, when quoted as examples in prose about attacks, noted
    (module docstring).
    """
    for name, value in (("max_bytes", max_bytes), ("max_file_bytes", max_file_bytes)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    root = Path(root)
    report = IngestReport()
    for p in paths:
        path = Path(p)
        try:
            source = path.resolve().relative_to(root.resolve()).as_posix()
        except (ValueError, OSError, RuntimeError):
            source = path.as_posix()
        try:
            if not path.is_file():
                report.skipped.append((source, "not a regular file" if path.exists() else "unreadable (no such file)"))
                continue
            size = path.stat().st_size
            if size > max_file_bytes:
                report.skipped.append((source, f"too large ({size:,} bytes > max_file_bytes={max_file_bytes:,})"))
                continue
            with path.open("rb") as fh:
                data = fh.read(max_file_bytes + 1)        # the file may have grown since stat()
        except OSError as err:
            report.skipped.append((source, f"unreadable ({err.strerror or err})"))
            continue
        if len(data) > max_file_bytes:
            report.skipped.append((source, f"too large (more than max_file_bytes={max_file_bytes:,} bytes)"))
            continue
        text, note = decode_bytes(data)
        if text is None:
            report.skipped.append((source, note))
            continue
        if note:
            report.notes.append((source, note))
        kind = "text"
        if path.suffix == ".ipynb":
            try:
                text = "\n\n".join(notebook_markdown(text))
            except ValueError as err:                     # json.JSONDecodeError is a ValueError
                report.skipped.append((source, f"broken notebook JSON ({str(err)[:200]})"))
                continue
            kind = "notebook"
        # the limit is on the prose; checked before and after cleaning, which only removes markup,
        # so the cleaning regexes never run on more than a few times max_bytes
        if len(text) > max_bytes:
            size = len(text.encode("utf-8"))
            report.skipped.append((source, f"too large ({size:,} bytes > max_bytes={max_bytes:,})"))
            continue
        if path.suffix in (".md", ".ipynb"):
            text = clean_markdown(text)
            kind = "markdown" if kind == "text" else kind
        size = len(text.encode("utf-8"))
        if size > max_bytes:
            report.skipped.append((source, f"too large ({size:,} bytes > max_bytes={max_bytes:,})"))
            continue
        if not text.strip():
            report.skipped.append((source, "no text after parsing"))
            continue
        flagged, mentioned = screen_document(text)
        if mentioned:
            report.notes.append((source, "quotes injection examples in prose about attacks (noted, not flagged): "
                                         + ", ".join(repr(m) for m in mentioned)))
        report.documents.append(Document(text, source, kind, _title(text, path.stem), flagged))
    return report


def book_files(root: str | os.PathLike = ".") -> list[Path]:
    """The book's sources under ``root``: ``book/**/*.md`` then ``notebooks/*.ipynb``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root must be a directory, got {str(root)!r}")
    files = sorted((root / "book").rglob("*.md")) + sorted((root / "notebooks").glob("*.ipynb"))
    return [f for f in files if ".ipynb_checkpoints" not in f.parts]


def load_book(root: str | os.PathLike = ".", *, max_bytes: int = MAX_BYTES,
              max_file_bytes: int = MAX_FILE_BYTES) -> IngestReport:
    """Ingest the book under ``root`` (see :func:`book_files`); raises if nothing is found."""
    files = book_files(root)
    if not files:
        raise FileNotFoundError(f"no book/*.md or notebooks/*.ipynb under {str(root)!r}")
    return ingest_files(files, root, max_bytes=max_bytes, max_file_bytes=max_file_bytes)


# ---------------------------------------------------------------------------------------------
# OCR of a rendered page

def tesseract_available() -> bool:
    """True when the ``tesseract`` command is on ``PATH``."""
    return shutil.which("tesseract") is not None


def render_text_page(lines: Sequence[str], path: str | os.PathLike, *, dpi: int = 150,
                     width_in: float = 7.0, fontsize: int = 11) -> Path:
    """Draw ``lines`` of text on a white page with matplotlib and save it as a PNG at ``path``.

    This stands in for a scanned page: the chapter OCRs it and compares with the original.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lines = list(lines)
    if not lines:
        raise ValueError("lines must hold at least one line of text")
    if not 50 <= dpi <= 600:
        raise ValueError(f"dpi must be in [50, 600], got {dpi}")
    height = 0.6 + 0.22 * len(lines) * fontsize / 11
    fig = Figure(figsize=(width_in, height), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    for i, line in enumerate(lines):
        fig.text(0.04, 1 - (0.3 + 0.22 * (i + 0.8) * fontsize / 11) / height, line,
                 fontsize=fontsize, family="DejaVu Sans", color="black")
    path = Path(path)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


def ocr_image(path: str | os.PathLike, *, lang: str = "eng", timeout: float = 60.0) -> str:
    """Text that tesseract reads from the image at ``path`` (``psm 6``: a uniform block of text).

    Raises ``RuntimeError`` when tesseract is not installed (check :func:`tesseract_available`).
    """
    if not tesseract_available():
        raise RuntimeError("tesseract is not installed (Debian: apt-get install tesseract-ocr tesseract-ocr-eng)")
    if not Path(path).is_file():
        raise ValueError(f"path must be an existing image file, got {str(path)!r}")
    out = subprocess.run(["tesseract", str(path), "stdout", "-l", lang, "--psm", "6"],
                         capture_output=True, text=True, timeout=timeout, check=True)
    return out.stdout
