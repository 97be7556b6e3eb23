"""Chunking: cut documents into passages small enough to embed and to quote (chapter 07).

Three strategies, each returning :class:`Chunk` objects that remember their source and offsets:

- :func:`split_by_length` — fixed-size windows of characters with overlap, cut at whitespace (the
  classic "recursive character splitter" baseline);
- :func:`split_by_regex` — units separated by a pattern (paragraphs, sentences), packed greedily up
  to a size: cuts fall on logical breaks;
- :func:`split_markdown` — structure-aware: sections under headings, fenced code blocks never cut,
  each chunk carrying its heading trail (``section``) so "## 1.8 Mixture of experts" travels with
  every passage of that section; :func:`split_python` does the same for code (top-level
  ``def``/``class``).

:func:`split_semantic` cuts where the meaning changes (a drop in embedding similarity between
consecutive sentences). :func:`chunk_documents` applies a strategy to many documents and
propagates injection flags to the chunks that contain the flagged phrase.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from .ingest import Document, detect_injection

__all__ = ["Chunk", "length_spans", "split_by_length", "regex_units", "split_by_regex", "markdown_sections",
           "split_markdown", "split_python", "sentence_spans", "split_semantic", "METHODS", "chunk_documents",
           "with_parents"]


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: ``text`` is ``document.text[start:end]`` (for markdown chunks the
    text may be a re-joined section); ``section`` is the heading trail; ``parent`` the index of
    a larger parent chunk (parent-document retrieval), or -1."""

    text: str
    source: str
    start: int
    end: int
    section: str = ""
    parent: int = -1
    flags: tuple[str, ...] = ()

    @property
    def embed_text(self) -> str:
        """What gets embedded and indexed (the heading trail, then the passage)."""
        return f"{self.section}\n{self.text}" if self.section else self.text


def _check_size(size: int, overlap: int = 0) -> None:
    if not isinstance(size, int) or size < 20:
        raise ValueError(f"size must be an int >= 20 characters, got {size!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < size // 2 + 1:
        raise ValueError(f"overlap must be an int in [0, size // 2], got {overlap!r}")


def length_spans(text: str, size: int = 800, overlap: int = 150) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of at most ``size`` characters, consecutive spans sharing
    about ``overlap`` characters; ends are moved back to the last whitespace when there is one in
    the second half of the window, so words are not cut."""
    _check_size(size, overlap)
    spans, start, n = [], 0, len(text)
    while start < n:
        end = min(start + size, n)
        if end < n:
            cut = text.rfind(" ", start + size // 2, end)
            cut = max(cut, text.rfind("\n", start + size // 2, end))
            end = cut if cut > start else end
        spans.append((start, end))
        if end >= n:
            break
        nxt = end - overlap
        if overlap:                                 # start the next window on a word boundary
            ws = text.find(" ", nxt, end)
            nxt = ws + 1 if ws != -1 else nxt
        start = max(nxt, start + 1)
    return [(s, e) for s, e in spans if text[s:e].strip()]


def split_by_length(doc: Document, size: int = 800, overlap: int = 150) -> list[Chunk]:
    """Fixed-size character windows with overlap (see :func:`length_spans`)."""
    return [Chunk(doc.text[s:e].strip(), doc.source, s, e) for s, e in length_spans(doc.text, size, overlap)]


def _pack(units: list[tuple[int, int]], text: str, size: int) -> list[tuple[int, int]]:
    """Greedily join consecutive ``(start, end)`` units while the joined span fits in ``size``;
    a unit longer than ``size`` is split by length."""
    out: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    for s, e in units:
        if e - s > size:
            if cur:
                out.append(cur)
                cur = None
            out += [(s + a, s + b) for a, b in length_spans(text[s:e], size, 0)]
        elif cur is None:
            cur = (s, e)
        elif e - cur[0] <= size:
            cur = (cur[0], e)
        else:
            out.append(cur)
            cur = (s, e)
    if cur:
        out.append(cur)
    return out


def regex_units(text: str, pattern: str = r"\n\s*\n") -> list[tuple[int, int]]:
    """Spans of ``text`` between matches of ``pattern`` (blank lines by default), empty ones dropped."""
    units, pos = [], 0
    for m in re.finditer(pattern, text):
        units.append((pos, m.start()))
        pos = m.end()
    units.append((pos, len(text)))
    return [(s, e) for s, e in units if text[s:e].strip()]


def split_by_regex(doc: Document, pattern: str = r"\n\s*\n", size: int = 800) -> list[Chunk]:
    """Units separated by ``pattern`` (paragraphs by default) packed up to ``size`` characters."""
    _check_size(size)
    return [Chunk(doc.text[s:e].strip(), doc.source, s, e) for s, e in _pack(regex_units(doc.text, pattern), doc.text, size)]


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def markdown_sections(text: str) -> list[tuple[str, int, int]]:
    """``(heading trail, start, end)`` for each section of a Markdown text; ``#`` lines inside
    fenced code blocks are not headings. The trail joins the enclosing headings with " > "."""
    sections, trail, start, in_fence = [], [""] * 6, 0, False
    pos = 0
    current = ""
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line)
        if m:
            if text[start:pos].strip():
                sections.append((current, start, pos))
            level = len(m.group(1))
            trail = trail[:level - 1] + [m.group(2)] + [""] * (6 - level)
            current = " > ".join(t for t in trail if t)
            start = pos
        pos += len(line)
    if text[start:].strip():
        sections.append((current, start, len(text)))
    return sections


def _fence_aware_units(text: str, s0: int, e0: int) -> list[tuple[int, int]]:
    """Paragraph spans within ``[s0, e0)`` where a fenced code block stays one unit."""
    units, in_fence, unit_start, pos = [], False, s0, s0
    for line in text[s0:e0].splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        if not in_fence and not stripped and text[unit_start:pos].strip():
            units.append((unit_start, pos))
            unit_start = pos + len(line)
        elif not in_fence and not stripped:
            unit_start = pos + len(line)
        pos += len(line)
    if text[unit_start:e0].strip():
        units.append((unit_start, e0))
    return units


def split_markdown(doc: Document, size: int = 1000) -> list[Chunk]:
    """Structure-aware chunks: one per section when it fits in ``size`` characters, otherwise the
    section's paragraphs packed up to ``size``; a fenced code block is never split (unless it alone
    exceeds ``size``). Each chunk's ``section`` is its heading trail."""
    _check_size(size)
    chunks = []
    for trail, s, e in markdown_sections(doc.text):
        for a, b in _pack(_fence_aware_units(doc.text, s, e), doc.text, size):
            body = doc.text[a:b].strip()
            if _HEADING.match(body) and len(body.splitlines()) == 1:
                continue                              # a heading alone: it already lives in `section`
            chunks.append(Chunk(body, doc.source, a, b, trail))
    return chunks


def split_python(doc: Document, size: int = 1500) -> list[Chunk]:
    """Code-aware chunks: top-level ``def``/``class``/decorated blocks stay whole (split by length
    only when one alone exceeds ``size``); module-level code between them forms its own chunks."""
    _check_size(size)
    text = doc.text
    cuts = {0, len(text)}
    for m in re.finditer(r"^(?:def |class |async def )", text, flags=re.M):
        start = m.start()
        while True:                        # keep the decorators above a def with it
            prev_nl = text.rfind("\n", 0, max(start - 1, 0))
            prev_line = text[prev_nl + 1:start - 1] if start > 0 else ""
            if start > 0 and prev_line.startswith("@"):
                start = prev_nl + 1
            else:
                break
        cuts.add(start)
    cuts = sorted(cuts)
    merged = [(a, b) for a, b in zip(cuts, cuts[1:]) if text[a:b].strip()]
    out = []
    for a, b in merged:
        spans = [(a, b)] if b - a <= size else [(a + x, a + y) for x, y in length_spans(doc.text[a:b], size, 0)]
        out += [Chunk(doc.text[x:y].strip("\n"), doc.source, x, y) for x, y in spans]
    return out


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentence spans: a cut after ``.``, ``!`` or ``?`` followed by whitespace, or at a blank line."""
    return regex_units(text, r"(?<=[.!?])\s+|\n\s*\n")


def split_semantic(doc: Document, embed: Callable[[Sequence[str]], np.ndarray], *, threshold: float = 0.35,
                   size: int = 1200) -> list[Chunk]:
    """Cut between consecutive sentences whose embeddings' cosine similarity is below ``threshold``
    (in [-1, 1]): a change of topic. ``embed`` maps texts to L2-normalised rows. Pieces longer than
    ``size`` characters are packed down to it."""
    _check_size(size)
    if not -1 <= threshold <= 1:
        raise ValueError(f"threshold must be in [-1, 1], got {threshold}")
    spans = sentence_spans(doc.text)
    if len(spans) <= 1:
        return [Chunk(doc.text[s:e].strip(), doc.source, s, e) for s, e in spans]
    vecs = np.asarray(embed([doc.text[s:e] for s, e in spans]), dtype=np.float32)
    sims = (vecs[:-1] * vecs[1:]).sum(1)
    groups, cur = [], [spans[0]]
    for sim, span in zip(sims, spans[1:]):
        if sim < threshold:
            groups.append((cur[0][0], cur[-1][1]))
            cur = []
        cur.append(span)
    groups.append((cur[0][0], cur[-1][1]))
    packed = []
    for s, e in groups:
        packed += [(s, e)] if e - s <= size else [(s + a, s + b) for a, b in length_spans(doc.text[s:e], size, 0)]
    return [Chunk(doc.text[s:e].strip(), doc.source, s, e) for s, e in packed]


#: The chunking methods :func:`chunk_documents` accepts.
METHODS = ("length", "regex", "markdown", "python")


def chunk_documents(docs: Sequence[Document], method: str = "markdown", *, size: int = 1000,
                    overlap: int = 150) -> list[Chunk]:
    """Chunk every document with ``method`` (one of :data:`METHODS`; ``overlap`` is used by
    ``"length"`` only). Chunks whose own text contains an injection phrase carry it in ``flags``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    out: list[Chunk] = []
    for doc in docs:
        if method == "length":
            chunks = split_by_length(doc, size, overlap)
        elif method == "regex":
            chunks = split_by_regex(doc, size=size)
        elif method == "python" or (method == "markdown" and doc.source.endswith(".py")):
            chunks = split_python(doc, size)
        else:
            chunks = split_markdown(doc, size)
        for c in chunks:
            flags = detect_injection(c.embed_text) if doc.flags else ()
            out.append(replace(c, flags=flags) if flags else c)
    return [c for c in out if c.text.strip()]


def with_parents(small: Sequence[Chunk], large: Sequence[Chunk]) -> list[Chunk]:
    """Link each small chunk to the large chunk (same source) that overlaps it most: the map that
    parent-document retrieval uses to return the larger passage for a small matching one."""
    by_source: dict[str, list[tuple[int, Chunk]]] = {}
    for i, c in enumerate(large):
        by_source.setdefault(c.source, []).append((i, c))
    out = []
    for c in small:
        best, best_overlap = -1, 0
        for i, p in by_source.get(c.source, []):
            ov = min(c.end, p.end) - max(c.start, p.start)
            if ov > best_overlap:
                best, best_overlap = i, ov
        out.append(replace(c, parent=best))
    return out
