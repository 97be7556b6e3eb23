"""The API page (book/api.rst, issue 13 part 6): one automodule per public module of the package,
none for a module that does not exist, grouped by layer, listed in the table of contents."""
import pkgutil
import re
from pathlib import Path

import genai_helpers

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "api.rst"
LAYERS = ("Primitives", "Infrastructure", "Models", "Fine-tuning", "Systems", "Data", "Metrics")


def public_modules() -> set[str]:
    names = {"genai_helpers"}
    for info in pkgutil.walk_packages(genai_helpers.__path__, "genai_helpers."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.add(info.name)
    return names


def documented_modules() -> list[str]:
    return re.findall(r"^\.\. automodule:: *(\S+) *$", PAGE.read_text(), flags=re.M)


def test_api_page_documents_every_public_module_once():
    documented = documented_modules()
    assert len(documented) == len(set(documented)), "a module is documented twice"
    missing = public_modules() - set(documented)
    assert not missing, f"modules missing from book/api.rst: {sorted(missing)}"


def test_api_page_names_no_module_that_does_not_exist():
    extra = set(documented_modules()) - public_modules()
    assert not extra, f"book/api.rst documents modules that do not exist: {sorted(extra)}"


def test_api_page_is_grouped_by_layer_in_order():
    text = PAGE.read_text()
    headings = re.findall(r"^(\S[^\n]*)\n-{3,}$", text, flags=re.M)
    assert headings == list(LAYERS)
    # every top-level module sits in its layer's section, as the package docstring groups it
    sections = dict(zip(LAYERS, re.split(r"^\S[^\n]*\n-{3,}$", text, flags=re.M)[1:]))
    for module in ("attention", "sampling", "positional"):
        assert f"automodule:: genai_helpers.{module}\n" in sections["Primitives"]
    for module in ("runtime", "training", "checkpoint", "viz", "players"):
        assert f"automodule:: genai_helpers.{module}\n" in sections["Infrastructure"]
    for module in ("systems.smart_compose", "systems.chat_pipeline", "rag", "agents", "guardrails", "serving"):
        assert f"automodule:: genai_helpers.{module}\n" in sections["Systems"]


def test_api_page_is_in_the_toc_and_autodoc_is_configured():
    assert "- file: book/api\n" in (ROOT / "_toc.yml").read_text()
    config = (ROOT / "_config.yml").read_text()
    assert "sphinx.ext.autodoc" in config and "sphinx.ext.napoleon" in config


def test_api_page_is_not_in_the_corpus_that_chapters_07_and_08_index():
    """The RAG chapters index book/**/*.md; a page of directives would only add noise (and make
    both chapters stale)."""
    from genai_helpers.rag.ingest import book_files

    assert PAGE not in book_files(ROOT)
