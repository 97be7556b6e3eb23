"""The book LM's pretraining corpus: the largest clean English prose this machine has offline.

Every source is a Debian package or a file inside a PyPI package, so ``make pretrain`` rebuilds the
same corpus byte for byte on any machine that can reach the package registries:

- ``wikipedia``: 106 English Wikipedia articles, from the test data in the PyPI ``gensim`` wheel (CC BY-SA 3.0);
- ``news``: 300 Australian news articles, ``lee_background.cor`` from the same wheel (the research
  corpus of Lee, Pincombe and Welsh 2005);
- ``fortunes``: quotations, jokes and short prose, Debian ``fortunes`` (BSD / public domain);
- ``bible``: the World English Bible, one chapter a document, Debian ``sword-text-web`` (public domain);
- ``jargon``: the Jargon File 4.4.7, Debian ``dict-jargon`` (public domain);
- ``devil``: Bierce's *The Devil's Dictionary*, Debian ``dict-devil`` (public domain);
- ``foldoc``: the Free On-line Dictionary of Computing, Debian ``dict-foldoc`` (GFDL 1.1 or later);
- ``gcide``: the GNU Collaborative International Dictionary of English, Debian ``dict-gcide`` (GPL 3 or
  later), capped;
- ``debref``: the Debian Reference, one section a document, Debian ``debian-reference-en`` (GPL 2 or later).

Cleaning: markup is removed (wiki templates, tables and references; dictd cross-reference braces;
GCIDE's pronunciations, etymologies and ``[1913 Webster]`` tags; HTML tags), whitespace is
normalised within paragraphs, documents under 200 characters are joined with their neighbours
from the same source, documents repeated after normalisation are dropped, and documents with under
70 % letters and spaces (tables, code listings, hex dumps) are filtered. The split is by document:
a stable hash of (source, document) puts 2 % in validation and 2 % in test.

``build_corpus(out_dir)`` writes ``train.txt``, ``val.txt``, ``test.txt`` (documents separated by the
:data:`DOC_SEP` line) and ``card.json`` (sizes per source and split, what was filtered, sha256 of
each file). :func:`corpus_dir` finds or builds it in the cache.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["SOURCES", "DOC_SEP", "CACHE_ENV", "corpus_dir", "build_corpus", "read_split", "iter_source"]

#: The line between documents in the split files (an ASCII record separator between newlines).
DOC_SEP = "\n\x1e\n"
CACHE_ENV = "GENAI_BOOK_CORPUS_DIR"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genai_helpers" / "book_corpus"
DICTD = Path("/usr/share/dictd")
GENSIM_VERSION = "4.4.0"
GCIDE_CAP_BYTES = 5_000_000     # GCIDE alone would be half the corpus and teach dictionary style
MIN_DOC_CHARS = 200
MIN_LETTER_FRACTION = 0.70
HELD_OUT = {"val": 0.02, "test": 0.02}
CORPUS_VERSION = 1

#: Each source's package, licence and a description, by name.
SOURCES = {
    "wikipedia": ("PyPI gensim (test data)", "CC BY-SA 3.0", "English Wikipedia articles (sample)"),
    "news": ("PyPI gensim (test data)", "research corpus (Lee, Pincombe & Welsh 2005)", "Australian news articles"),
    "fortunes": ("Debian fortunes", "BSD / public domain", "quotations, jokes and short prose"),
    "bible": ("Debian sword-text-web", "public domain", "World English Bible, a chapter per document"),
    "jargon": ("Debian dict-jargon", "public domain", "The Jargon File 4.4.7"),
    "devil": ("Debian dict-devil", "public domain", "Ambrose Bierce, The Devil's Dictionary"),
    "foldoc": ("Debian dict-foldoc", "GFDL 1.1 or later", "Free On-line Dictionary of Computing"),
    "gcide": ("Debian dict-gcide", "GPL 3 or later", "GNU Collaborative International Dictionary of English"),
    "debref": ("Debian debian-reference-en", "GPL 2 or later", "Debian Reference (HTML)"),
}
DEBIAN_PACKAGES = ("fortunes", "sword-text-web", "libsword-utils", "dict-jargon", "dict-devil", "dict-foldoc",
                   "dict-gcide", "debian-reference-en")


def _ws(text: str) -> str:
    """NFC-normalise and collapse whitespace inside paragraphs; keep blank lines between them."""
    text = unicodedata.normalize("NFC", text).replace("\r", "")
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paras if p)


# ------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------
def _gensim_wheel() -> Path:
    """The gensim wheel from the package registry (cached); its test data holds two of the sources."""
    cache = DEFAULT_CACHE.parent / "wheels"
    found = sorted(cache.glob(f"gensim-{GENSIM_VERSION}-*.whl"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
           "-d", str(cache), f"gensim=={GENSIM_VERSION}"]
    subprocess.run(cmd, check=True, capture_output=True)
    found = sorted(cache.glob(f"gensim-{GENSIM_VERSION}-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download gensim=={GENSIM_VERSION} left no wheel in {cache}")
    return found[0]


def _wheel_file(name: str) -> bytes:
    with zipfile.ZipFile(_gensim_wheel()) as z:
        return z.read(f"gensim/test/test_data/{name}")


def _strip_wiki(text: str) -> str:
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"<ref[^>/]*/>", " ", text)
    text = re.sub(r"<ref.*?</ref>", " ", text, flags=re.S)
    for _ in range(4):                                    # nested templates, innermost first
        text = re.sub(r"\{\{[^{}]*\}\}", " ", text)
    text = re.sub(r"\{\|.*?\|\}", " ", text, flags=re.S)  # tables
    text = re.sub(r"\[\[(?:File|Image|Category|[a-z\-]{2,12}):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", " ", text)
    text = re.sub(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", text)
    text = re.sub(r"\[https?://\S+\]", " ", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"<[^>]+>", " ", text)
    text = html.unescape(text)
    text = re.sub(r"\(\s*[;,]+(?:\s*[;,]+)*\s*", "(", text)   # "( ; , Akhilleus, )" -> "(Akhilleus)"
    text = re.sub(r"\s*[;,]+\s*\)", ")", text)
    text = re.sub(r"\s*\(\s*\)", "", text)
    lines = []
    for line in text.split("\n"):
        s = line.strip()
        if not s or s.startswith(("*", "#", ":", ";", "|", "!", "{", "}")):
            lines.append("")
            continue
        m = re.fullmatch(r"=+\s*(.*?)\s*=+", s)
        if m:
            if m.group(1).lower() in {"references", "external links", "see also", "notes", "further reading",
                                      "bibliography", "sources"}:
                break                                   # the rest is lists of links
            lines.append("")
            continue
        lines.append(s)
    return "\n".join(lines)


def _wikipedia() -> Iterator[str]:
    xml = bz2.decompress(_wheel_file("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"))
    xml = xml.decode("utf-8", errors="replace")
    for page in re.findall(r"<page>(.*?)</page>", xml, flags=re.S):
        if re.search(r"<ns>(?!0<)", page) or "<redirect" in page:
            continue
        m = re.search(r"<text[^>]*>(.*?)</text>", page, flags=re.S)
        if m:
            yield _strip_wiki(html.unescape(m.group(1)))


def _news() -> Iterator[str]:
    for line in _wheel_file("lee_background.cor").decode("utf-8", errors="replace").splitlines():
        if line.strip():
            yield line


def _fortunes() -> Iterator[str]:
    from .text import FORTUNE_CATEGORIES, find_fortunes_dir
    folder = find_fortunes_dir()
    for cat in FORTUNE_CATEGORIES:
        text = (folder / cat).read_text(encoding="utf-8", errors="replace")
        for entry in re.split(r"^%\s*$", text, flags=re.M):
            yield entry


def _bible() -> Iterator[str]:
    from .translation import export_bible
    verses = export_bible("engWEB2015eb")
    chapters: dict[str, list[str]] = {}
    for ref, text in verses.items():
        chapters.setdefault(ref.rsplit(":", 1)[0], []).append(text)
    for verses_of_chapter in chapters.values():
        yield " ".join(verses_of_chapter)


def _dictd_entries(name: str) -> Iterator[tuple[str, str]]:
    """(headword, body) of every entry of a dictd dictionary, read through its index."""
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    decode = lambda s: sum(b64.index(c) * 64 ** i for i, c in enumerate(reversed(s)))  # noqa: E731
    dict_path, index_path = DICTD / f"{name}.dict.dz", DICTD / f"{name}.index"
    if not dict_path.is_file():
        raise FileNotFoundError(f"{dict_path} is missing: install the Debian package dict-{name} "
                                f"(bash tools/system_deps.sh installs every package the corpus needs)")
    data = gzip.decompress(dict_path.read_bytes())
    seen = set()
    for line in index_path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database"):
            continue
        off, length = decode(parts[1]), decode(parts[2])
        if off in seen:
            continue
        seen.add(off)
        yield parts[0], data[off:off + length].decode("utf-8", errors="replace")


def _dict_clean(body: str) -> str:
    body = re.sub(r"\{([^{}]*)\}", r"\1", body)        # cross-references {like this}
    return body


def _jargon() -> Iterator[str]:
    for _, body in _dictd_entries("jargon"):
        yield _dict_clean(body)


def _devil() -> Iterator[str]:
    for _, body in _dictd_entries("devil"):
        yield _dict_clean(body)


def _foldoc() -> Iterator[str]:
    for _, body in _dictd_entries("foldoc"):
        body = re.sub(r"^\s*\(\d{4}-\d{2}-\d{2}\)\s*$", "", _dict_clean(body), flags=re.M)
        yield re.sub(r"<[a-z, ]+>\s*", "", body)


def _gcide() -> Iterator[str]:
    for _, body in _dictd_entries("gcide"):
        body = re.sub(r"\[(?:1913 Webster|Webster 1913 Suppl\.|PJC|Century Dict\.|WordNet 1\.5|RHD|"
                      r"Chambers 1881|Note:?)\]", "", body)
        body = re.sub(r"\\[^\\\n]*\\", "", body)          # pronunciations \Af*fect"\
        body = re.sub(r"\[(?:[^\[\]]|\[[^\]]*\])*\]", "", body)  # etymologies and usage labels
        body = re.sub(r"^\s*(?:Syn\.|Note:)\s*", "", body, flags=re.M)
        body = re.sub(r"--[A-Z][A-Za-z. ]*\.?", "", body)  # --Milton.
        body = _dict_clean(body).replace("*", "")
        yield body


def _debref() -> Iterator[str]:
    folder = Path("/usr/share/debian-reference")
    files = sorted(folder.glob("ch*.en.html"))
    if not files:
        raise FileNotFoundError(f"no ch*.en.html in {folder}: apt-get install debian-reference-en")
    for f in files:
        page = f.read_text(encoding="utf-8", errors="replace")
        page = re.sub(r"<(pre|table|script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
        for section in re.split(r"<h[1-4][^>]*>", page):
            paras = re.findall(r"<p[^>]*>(.*?)</p>", section, flags=re.S | re.I)
            text = "\n\n".join(html.unescape(re.sub(r"<[^>]+>", "", p)) for p in paras)
            yield text


_READERS: dict[str, Callable[[], Iterator[str]]] = {
    "wikipedia": _wikipedia, "news": _news, "fortunes": _fortunes, "bible": _bible, "jargon": _jargon,
    "devil": _devil, "foldoc": _foldoc, "gcide": _gcide, "debref": _debref}


def iter_source(name: str) -> Iterator[str]:
    """The raw documents of source ``name`` (one of :data:`SOURCES`), markup removed, not yet filtered."""
    if name not in _READERS:
        raise ValueError(f"name must be one of {tuple(_READERS)}, got {name!r}")
    return _READERS[name]()


# ------------------------------------------------------------------------------------------------
# Build
# ------------------------------------------------------------------------------------------------
def _letter_fraction(text: str) -> float:
    return sum(c.isalpha() or c == " " for c in text) / max(1, len(text))


def _bucket(source: str, doc: str) -> str:
    h = int.from_bytes(hashlib.sha256(f"{source}\0{doc}".encode()).digest()[:8], "big") / 2 ** 64
    if h < HELD_OUT["val"]:
        return "val"
    if h < HELD_OUT["val"] + HELD_OUT["test"]:
        return "test"
    return "train"


def build_corpus(out_dir: str | os.PathLike, sources=tuple(SOURCES), verbose: bool = True) -> Path:
    """Clean, deduplicate and split every source into ``out_dir``; return ``out_dir``. Atomic."""
    out_dir = Path(out_dir)
    bad = [s for s in sources if s not in SOURCES]
    if bad:
        raise ValueError(f"sources must be among {tuple(SOURCES)}, got {bad}")
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    card: dict = {"version": CORPUS_VERSION, "doc_separator": repr(DOC_SEP), "min_doc_chars": MIN_DOC_CHARS,
                  "min_letter_fraction": MIN_LETTER_FRACTION, "held_out": HELD_OUT,
                  "gcide_cap_bytes": GCIDE_CAP_BYTES, "sources": {}}
    seen: set[str] = set()
    for name in sources:
        stats = {"package": SOURCES[name][0], "licence": SOURCES[name][1], "what": SOURCES[name][2],
                 "raw_docs": 0, "dropped_duplicate": 0, "dropped_not_prose": 0, "kept_docs": 0,
                 "bytes": {"train": 0, "val": 0, "test": 0}}
        pending, total = "", 0
        for raw in iter_source(name):
            stats["raw_docs"] += 1
            doc = _ws(raw)
            if not doc:
                continue
            if _letter_fraction(doc) < MIN_LETTER_FRACTION:
                stats["dropped_not_prose"] += 1
                continue
            key = hashlib.sha256(" ".join(doc.lower().split()).encode()).hexdigest()
            if key in seen:
                stats["dropped_duplicate"] += 1
                continue
            seen.add(key)
            pending = f"{pending}\n\n{doc}" if pending else doc
            if len(pending) < MIN_DOC_CHARS:
                continue
            if name == "gcide" and total >= GCIDE_CAP_BYTES:
                break
            split = _bucket(name, pending)
            splits[split].append(pending)
            nbytes = len(pending.encode())
            stats["bytes"][split] += nbytes
            stats["kept_docs"] += 1
            total += nbytes
            pending = ""
        card["sources"][name] = stats
        if verbose:
            print(f"{name:10s} {stats['kept_docs']:7d} docs {total / 1e6:7.2f} MB "
                  f"(dup {stats['dropped_duplicate']}, not prose {stats['dropped_not_prose']})", flush=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=".corpus-"))
    card["files"] = {}
    for split, docs in splits.items():
        text = DOC_SEP.join(docs)
        (tmp / f"{split}.txt").write_text(text, encoding="utf-8")
        card["files"][f"{split}.txt"] = {"docs": len(docs), "bytes": len(text.encode()),
                                         "sha256": hashlib.sha256(text.encode()).hexdigest()}
    (tmp / "card.json").write_text(json.dumps(card, indent=1))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def corpus_dir(build: bool = True) -> Path:
    """The built corpus: ``$GENAI_BOOK_CORPUS_DIR`` or the cache; built there on first use."""
    d = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE / f"v{CORPUS_VERSION}")
    if not (d / "card.json").is_file():
        if not build:
            raise FileNotFoundError(f"no book corpus in {d}: run `make pretrain` (or build_corpus({str(d)!r}))")
        build_corpus(d)
    return d


def read_split(split: str, root: str | os.PathLike | None = None) -> list[str]:
    """The documents of ``split`` ("train" | "val" | "test")."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    d = Path(root) if root is not None else corpus_dir()
    return (d / f"{split}.txt").read_text(encoding="utf-8").split(DOC_SEP)
