"""The glossary (book/glossary.md) links the book: every entry points at the chapter section that
runs the idea, and every link lands on a heading that exists.

Checked without building the book, offline, in well under a second (the last test imports the
package, and with it PyTorch):

- the page has at least 150 entries (``Term`` on one line, ``: definition`` on the next), in
  alphabetical order, each with a definition of at most three sentences and at least one link;
- every link's target file exists, and its ``#anchor`` is the slug MyST gives one of that page's
  headings. MyST makes those anchors because ``_config.yml`` sets ``myst_heading_anchors``; the
  slugs here come from myst_parser's own parser and ``compute_unique_slug``, on the Markdown cells
  of a notebook in order, exactly as the build computes them (``jupyter-book build -W -n`` also
  fails on an unknown anchor);
- the term is named in the section it links to (the heading's text down to the next heading of the
  same or a higher level, Markdown and code cells). The rule, :func:`term_names`: a term
  ``Full name (ABBR)`` may be found as written, as ``Full name``, or as ``ABBR``; a term that lists
  several names (``Precision, recall and F1``) as any one of them. Matching ignores case, Markdown
  and LaTeX marks (`` ` * $ \\ ``), treats hyphens, underscores and spaces alike, needs whole words
  and allows a plural ``s``;
- chapter 7 reads this page: its labelled questions that cite the glossary still find their
  evidence phrase here, and ingestion does not flag the page as a prompt injection.
"""
from __future__ import annotations

import functools
import json
import re
import unicodedata
from pathlib import Path

import pytest
import yaml
from markdown_it.renderer import RendererHTML
from markdown_it.tree import SyntaxTreeNode
from myst_parser.config.main import MdParserConfig
from myst_parser.mdit_to_docutils.base import compute_unique_slug
from myst_parser.parsers.mdit import create_md_parser

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "book" / "glossary.md"
MIN_ENTRIES = 150
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


# ---- the glossary ----------------------------------------------------------------------------

def parse_glossary(text: str) -> list[tuple[str, str]]:
    """``(term, definition)`` pairs of a MyST definition list: a term line followed by a line
    starting with ``: ``; the definition runs on over indented lines until a blank line."""
    lines = text.splitlines()
    entries = []
    for i, line in enumerate(lines[:-1]):
        if line.strip() and not line.startswith((" ", ":", "#")) and lines[i + 1].startswith(": "):
            body = [lines[i + 1][2:]]
            for more in lines[i + 2:]:
                if not more.startswith("  ") or not more.strip():
                    break
                body.append(more.strip())
            entries.append((line.strip(), " ".join(body)))
    return entries


@functools.lru_cache(maxsize=None)
def entries() -> tuple[tuple[str, str], ...]:
    return tuple(parse_glossary(GLOSSARY.read_text(encoding="utf-8")))


def sort_key(term: str) -> str:
    """Alphabetical order: case, accents and punctuation ignored, a hyphen read as a space."""
    plain = unicodedata.normalize("NFKD", term.lower().replace("-", " "))
    return re.sub(r"[^a-z0-9 ]", "", plain)


def term_names(term: str) -> set[str]:
    """The names a term may be found under: as written, without its parenthesised part, the
    parenthesised part, and each name of a list (split at commas, ``and``, ``or``)."""
    bare = re.sub(r"\s*\([^)]*\)", "", term).strip()
    names = {term, bare, *re.findall(r"\(([^)]*)\)", term)}
    for name in list(names):
        names.update(re.split(r",\s*|\s+and\s+|\s+or\s+", name))
    return {n.strip() for n in names if len(n.strip()) > 1}


def normalise(text: str) -> str:
    """Lower case, Markdown/LaTeX marks dropped, hyphens, underscores and whitespace as one space."""
    text = re.sub(r"[`*$\\]", "", text.lower())
    return re.sub(r"[\s\-_\u2010-\u2014]+", " ", text)


def named_in(name: str, text: str) -> bool:
    pattern = r"(?<![a-z0-9])" + re.escape(normalise(name).strip()) + r"(?:s|es)?(?![a-z0-9])"
    return re.search(pattern, text) is not None


# ---- the pages it links to -------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def myst_config() -> MdParserConfig:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    anchors = config["sphinx"]["config"].get("myst_heading_anchors", 0)
    return MdParserConfig(enable_extensions=set(config["parse"]["myst_enable_extensions"]),
                          heading_anchors=anchors)


@functools.lru_cache(maxsize=None)
def page_sections(path: Path) -> dict[str, str]:
    """``{slug: section text}`` for every heading MyST gives an anchor on the page at ``path``.

    A notebook is its cells in order: Markdown cells parsed like MyST-NB parses them (one slug
    set for the whole page, so a repeated title gets ``-1``), code cells kept as text."""
    if path.suffix == ".ipynb":
        cells = [("".join(c["source"]), c["cell_type"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]]
    else:
        cells = [(path.read_text(encoding="utf-8"), "markdown")]
    config = myst_config()
    md = create_md_parser(config, RendererHTML)
    slugs: set[str] = set()
    blocks: list[tuple[int | None, str | None, str]] = []      # (level, slug, text); level None: no heading
    for source, kind in cells:
        heads = []
        if kind == "markdown":
            heads = [(node.map[0], int(node.tag[1]), node) for node in SyntaxTreeNode(md.parse(source)).walk()
                     if node.type == "heading"]
        if not heads:
            blocks.append((None, None, source))
            continue
        lines = source.splitlines()
        blocks.append((None, None, "\n".join(lines[:heads[0][0]])))
        for k, (line, level, node) in enumerate(heads):
            slug = None
            if level <= config.heading_anchors:
                slug = compute_unique_slug(node, slugs, config.heading_slug_func)
                slugs.add(slug)
            end = heads[k + 1][0] if k + 1 < len(heads) else len(lines)
            blocks.append((level, slug, "\n".join(lines[line:end])))
    sections = {}
    for i, (level, slug, _) in enumerate(blocks):
        if slug is None:
            continue
        text = []
        for other_level, _, other_text in blocks[i:]:
            if other_level is not None and other_level <= level and text:
                break
            text.append(other_text)
        sections[slug] = normalise("\n".join(text))
    return sections


def links() -> list[tuple[str, str, str]]:
    """``(term, link text, target)`` for every link of every definition."""
    return [(term, label, target) for term, definition in entries() for label, target in LINK.findall(definition)]


# ---- tests -----------------------------------------------------------------------------------

def test_the_glossary_has_enough_entries_in_alphabetical_order():
    terms = [term for term, _ in entries()]
    assert len(terms) >= MIN_ENTRIES, f"{len(terms)} entries, want at least {MIN_ENTRIES}"
    assert len(set(map(str.lower, terms))) == len(terms), "a term is defined twice"
    keys = [sort_key(t) for t in terms]
    misplaced = [t for t, a, b in zip(terms[1:], keys, keys[1:]) if b < a]
    assert not misplaced, f"not in alphabetical order: {misplaced}"
    assert "written so far" not in GLOSSARY.read_text(encoding="utf-8")


def test_every_entry_is_short_and_links_a_section():
    for term, definition in entries():
        prose, see, refs = definition.rpartition(" See [")
        assert see and definition.endswith(")."), f"{term}: the definition must end with 'See [Chapter ...](...).'"
        assert not LINK.search(prose), f"{term}: links belong in the closing 'See ...'"
        plain = re.sub(r"\$[^$]*\$|\b(?:e\.g|i\.e|et al|vs)\.", "", prose)
        sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(*$`\"])", plain) if s.strip()]
        assert 1 <= len(sentences) <= 3, f"{term}: {len(sentences)} sentences, want 1 to 3"
        targets = [target for _, target in LINK.findall("[" + refs)]
        assert targets and all("#" in t for t in targets), f"{term}: every link names a section: {targets}"
        assert "{doc}" not in definition, f"{term}: a {{doc}} link names no section"


def test_anchor_rule_matches_myst_on_known_headings():
    """The slugs computed here are the ones the build writes (GitHub style, as myst_parser makes them)."""
    sections = page_sections(ROOT / "notebooks" / "02_training_at_scale.ipynb")
    assert "26-data-parallelism-with-torchdistributed" in sections
    assert "210-zero-and-fsdp" in sections
    assert "exercises" in sections
    assert "why-divide-by-" in page_sections(ROOT / "notebooks" / "01_attention.ipynb"), "inline math drops out"


@pytest.mark.parametrize("term, label, target", links(), ids=[f"{t} -> {g.rpartition('/')[2]}" for t, _, g in links()])
def test_link_lands_on_a_section_that_names_the_term(term, label, target):
    assert not target.startswith(("http:", "https:")), f"{term}: links outside the book: {target}"
    file_part, _, anchor = target.partition("#")
    page = (GLOSSARY.parent / file_part).resolve()
    assert page.is_file(), f"{term}: {file_part} does not exist"
    sections = page_sections(page)
    assert anchor in sections, (f"{term}: #{anchor} is not a heading anchor of {page.name}; "
                                f"anchors are {sorted(sections)}")
    names = term_names(term)
    assert any(named_in(n, sections[anchor]) for n in names), (
        f"{term}: none of {sorted(names)} occurs in {page.name}#{anchor}")
    chapter = re.match(r"notebooks/(\d\d)_", file_part.removeprefix("../"))
    if chapter:
        assert label.startswith(f"Chapter {int(chapter.group(1))},"), f"{term}: link text {label!r} names another chapter"


def test_chapter_7_can_still_use_the_glossary():
    """Chapter 7's question set quotes evidence phrases from this page, and its ingestion screen
    must not quarantine the page (whose entries on prompt injection describe attacks)."""
    from genai_helpers.rag.evaluation import QUESTIONS_PATH, normalise as rag_normalise
    from genai_helpers.rag.ingest import ingest_files

    (document,) = ingest_files([GLOSSARY], ROOT).documents
    assert not document.flags, f"the glossary reads as an injection: {document.flags}"
    text = rag_normalise(document.text)
    cited = [q for q in json.loads(QUESTIONS_PATH.read_text(encoding="utf-8"))["questions"]
             if q["sources"][0] == "book/glossary.md"]
    assert cited, "no labelled question cites the glossary first"
    lost = [(q["id"], q["evidence"]) for q in cited if rag_normalise(q["evidence"]) not in text]
    assert not lost, f"evidence phrases chapter 7's questions quote from the glossary are gone: {lost}"
