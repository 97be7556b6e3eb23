"""Parsing and ingestion: turn files into :class:`Document` objects, and say what was skipped.

Chapter 07 ("Retrieval-augmented generation") reads the book itself: every Markdown page under
``book/`` and the Markdown cells of every notebook under ``notebooks/``. Ingestion has to survive
what real folders contain — empty files, binaries, huge dumps, text in the wrong encoding — and
it reports each skip with its reason instead of failing or silently dropping a file.

It also screens every document for *indirect prompt injection*: text that addresses the model
("ignore previous instructions and ...") rather than the reader. Matches are flagged here;
:mod:`genai_helpers.rag.retriever` keeps flagged chunks out of the index by default and
:mod:`genai_helpers.rag.generation` spotlights any flagged text that reaches a prompt.

OCR (:func:`ocr_image`) uses the ``tesseract`` command when it is installed (Debian:
``apt-get install tesseract-ocr tesseract-ocr-eng``); :func:`tesseract_available` says whether it is.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["MAX_BYTES", "BINARY_SNIFF_BYTES", "INJECTION_PATTERNS", "Document", "IngestReport", "detect_injection",
           "decode_bytes", "clean_markdown", "notebook_markdown", "ingest_files", "book_files", "load_book",
           "tesseract_available", "render_text_page", "ocr_image"]

MAX_BYTES = 2_000_000          # files larger than this are skipped as "too large"
BINARY_SNIFF_BYTES = 8192

# Phrases that talk to the model rather than the reader. Deliberately simple and readable: a
# screen, not a proof (chapter 08 measures attack success rates against stronger filters).
INJECTION_PATTERNS = (
    r"ignore (all |any )?(the )?(previous|prior|above|earlier) (instructions|prompts?|messages?|rules)",
    r"disregard (all |any )?(the )?(previous|prior|above|earlier|your) (instructions|prompts?|rules)",
    r"forget (all |everything )?(you were told|your instructions|previous instructions)",
    r"you are now (?:in )?(?:developer|dan|jailbreak|unrestricted)",
    r"(reveal|print|show|repeat) (your|the) (system prompt|hidden instructions|instructions)",
    r"new instructions?:",
    r"do not (tell|inform) the user",
)
_INJECTION_RE = re.compile("|".join(f"(?:{p})" for p in INJECTION_PATTERNS), re.IGNORECASE)


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
    """The injection phrases found in ``text`` (lower-cased, in order of appearance; empty if none)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return tuple(dict.fromkeys(m.group(0).lower() for m in _INJECTION_RE.finditer(text)))


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


_ROLE_RE = re.compile(r"\{(?:doc|ref|numref)\}`([^`<]+?)\s*(?:<[^`]*>)?`")


def clean_markdown(text: str) -> str:
    """Drop MyST/Sphinx markup a reader never sees: ``{doc}`Chapter 1 <...>``` becomes ``Chapter 1``."""
    text = _ROLE_RE.sub(r"\1", text)
    # an admonition block: keep its title and body, drop both of its fences and its options
    text = re.sub(r"^```\{admonition\}[ \t]*(.*?)\n(.*?)^```[ \t]*$", r"\1\n\2", text, flags=re.M | re.S)
    text = re.sub(r"^:class:.*$\n?", "", text, flags=re.M)
    return text


def notebook_markdown(data: str | bytes) -> list[str]:
    """The Markdown cells of a notebook's JSON, in order (code cells and outputs are left out)."""
    nb = json.loads(data)
    if not isinstance(nb, dict) or "cells" not in nb:
        raise ValueError("not a Jupyter notebook (no 'cells')")
    cells = []
    for cell in nb["cells"]:
        if cell.get("cell_type") == "markdown":
            src = cell.get("source", "")
            cells.append("".join(src) if isinstance(src, list) else str(src))
    return cells


def _title(text: str, fallback: str) -> str:
    m = re.search(r"^#\s+(.+)$", text, flags=re.M)
    return m.group(1).strip() if m else fallback


def ingest_files(paths: Iterable[str | os.PathLike], root: str | os.PathLike = ".", *,
                 max_bytes: int = MAX_BYTES) -> IngestReport:
    """Read files into documents; never raises on a bad file, records it in the report instead.

    ``.ipynb`` files contribute their Markdown cells (joined by blank lines), ``.md`` files their
    text with MyST roles cleaned, anything else its decoded text. ``source`` is the path relative
    to ``root`` (POSIX separators). ``max_bytes`` (> 0) skips larger files as "too large".
    """
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    root = Path(root)
    report = IngestReport()
    for p in paths:
        path = Path(p)
        try:
            source = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            source = path.as_posix()
        try:
            size = path.stat().st_size
        except OSError as err:
            report.skipped.append((source, f"unreadable ({err.strerror or err})"))
            continue
        if size > max_bytes:
            report.skipped.append((source, f"too large ({size:,} bytes > max_bytes={max_bytes:,})"))
            continue
        text, note = decode_bytes(path.read_bytes())
        if text is None:
            report.skipped.append((source, note))
            continue
        if note:
            report.notes.append((source, note))
        kind = "text"
        if path.suffix == ".ipynb":
            try:
                text = "\n\n".join(notebook_markdown(text))
            except (ValueError, json.JSONDecodeError) as err:
                report.skipped.append((source, f"broken notebook JSON ({err})"))
                continue
            kind = "notebook"
        if path.suffix in (".md", ".ipynb"):
            text = clean_markdown(text)
            kind = "markdown" if kind == "text" else kind
        if not text.strip():
            report.skipped.append((source, "no text after parsing"))
            continue
        report.documents.append(Document(text, source, kind, _title(text, path.stem), detect_injection(text)))
    return report


def book_files(root: str | os.PathLike = ".") -> list[Path]:
    """The book's sources under ``root``: ``book/**/*.md`` then ``notebooks/*.ipynb``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root must be a directory, got {str(root)!r}")
    files = sorted((root / "book").rglob("*.md")) + sorted((root / "notebooks").glob("*.ipynb"))
    return [f for f in files if ".ipynb_checkpoints" not in f.parts]


def load_book(root: str | os.PathLike = ".", *, max_bytes: int = MAX_BYTES) -> IngestReport:
    """Ingest the book under ``root`` (see :func:`book_files`); raises if nothing is found."""
    files = book_files(root)
    if not files:
        raise FileNotFoundError(f"no book/*.md or notebooks/*.ipynb under {str(root)!r}")
    return ingest_files(files, root, max_bytes=max_bytes)


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
