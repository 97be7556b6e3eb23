"""Every chapter notebook follows the book's template, and its stored outputs are not stale.

The stale check is the contract behind the published site: the outputs a reader sees come from a
full run of the *current* code and of the data the chapter reads. Change a code cell (or a page
chapter 07 indexes) without re-running `make execute` and
`test_stored_outputs_come_from_a_full_run_of_the_current_code` fails.

Each chapter's full run also records its headline numbers (`record_result`), at least
MIN_RESULTS of them; chapters not yet re-run since that mechanism exists are listed in
PENDING_RESULTS, a list that may only shrink.
"""
import json
import math
import os
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from genai_helpers.notebook import (CHAPTER_DATA, META_KEY, RESULTS_ENV, chapter_data_files, code_sha256,
                                    data_sha256, read_results, record_result, recorded_results, stale_reasons)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPO_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
TOC = (ROOT / "_toc.yml").read_text()


def test_there_is_at_least_one_chapter():
    assert NOTEBOOKS, "notebooks/ holds no chapter"


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.name)
def nb(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_stored_outputs_come_from_a_full_run_of_the_current_code(nb):
    path, notebook = nb
    assert stale_reasons(notebook, path) == [], f"{path.name}: stale outputs"


# Chapters whose stored run predates record_result: each chapter's issue adds its record_result
# calls and re-runs it, then removes it from here. The list may only shrink.
PENDING_RESULTS: set[str] = set()
MIN_RESULTS = 5


def test_pending_results_list_names_only_existing_chapters():
    assert PENDING_RESULTS <= {p.stem for p in NOTEBOOKS}


def test_full_run_records_at_least_five_results(nb):
    path, notebook = nb
    results = notebook.metadata[META_KEY].get("results")
    if path.stem in PENDING_RESULTS:
        assert not results, (f"{path.name} records {len(results)} results: remove it from PENDING_RESULTS "
                             f"so the test holds it to {MIN_RESULTS}")
        return
    assert results is not None, f"{path.name}: stored run predates record_result; re-run `make execute`"
    assert len(results) >= MIN_RESULTS, f"{path.name} records {len(results)} results, fewer than {MIN_RESULTS}"
    for name, value in results.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*", name), name
        assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), name


def test_run_metadata_records_device_time_and_version(nb):
    _, notebook = nb
    meta = notebook.metadata[META_KEY]
    for key in ("mode", "device", "wall_time_s", "package_version", "code_sha256", "executed_at"):
        assert key in meta, key
    assert meta["wall_time_s"] > 0


def test_notebook_is_named_and_listed_in_the_toc(nb):
    path, _ = nb
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)
    assert f"notebooks/{path.stem}" in TOC, f"{path.name} is not in _toc.yml"


def test_first_cells_are_title_colab_badge_and_setup(nb):
    path, notebook = nb
    first_md = notebook.cells[0]
    assert first_md.cell_type == "markdown" and first_md.source.startswith("# Chapter ")
    badge = f"https://colab.research.google.com/github/{REPO_URL.split('github.com/')[1]}/blob/main/notebooks/{path.name}"
    assert badge in first_md.source, f"Colab badge must point at {badge}"
    setup = next(c for c in notebook.cells if c.cell_type == "code")
    assert f'REPO_URL = "{REPO_URL}"' in setup.source, "the install cell must use _config.yml's repository.url"
    assert "find_spec(\"genai_helpers\")" in setup.source


def test_chapter_prints_its_device_and_mode(nb):
    _, notebook = nb
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "runtime.describe(" in code and "runtime.seed_everything(" in code


def test_no_machine_specific_paths_and_outputs_stay_small(nb):
    path, notebook = nb
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert not re.search(r"/(work|home|Users|tmp)/", code), "absolute paths of a machine in code"
    assert path.stat().st_size < 4_000_000, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB"
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, "stored outputs contain an error"


def test_code_hash_changes_when_code_changes_and_only_then():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Chapter 0"),
                                                nbformat.v4.new_code_cell("x = 1")])
    before = code_sha256(notebook)
    notebook.cells[0].source = "# Chapter 0, reworded"
    assert code_sha256(notebook) == before, "prose edits must not invalidate outputs"
    notebook.cells[1].source = "x = 2"
    assert code_sha256(notebook) != before


def test_stale_reasons_flags_missing_smoke_and_edited_runs():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", execution_count=1)])
    assert "no 'genai_book' metadata" in stale_reasons(notebook)[0]
    notebook.metadata[META_KEY] = {"mode": "full", "code_sha256": code_sha256(notebook)}
    assert stale_reasons(notebook) == []
    notebook.metadata[META_KEY]["mode"] = "smoke"
    assert any("not a full run" in r for r in stale_reasons(notebook))
    notebook.metadata[META_KEY]["mode"] = "full"
    notebook.cells[0].source = "x = 3"
    assert any("hash differs" in r for r in stale_reasons(notebook))
    notebook.metadata[META_KEY]["code_sha256"] = code_sha256(notebook)
    notebook.cells[0].execution_count = 5
    assert any("execution counts" in r for r in stale_reasons(notebook))


def test_package_hash_is_recorded_and_compared():
    from genai_helpers.notebook import package_changed, package_sha256

    notebook = nbformat.v4.new_notebook()
    assert package_sha256() == package_sha256() and len(package_sha256()) == 64
    notebook.metadata[META_KEY] = {"package_sha256": package_sha256()}
    assert not package_changed(notebook)
    notebook.metadata[META_KEY]["package_sha256"] = "0" * 64
    assert package_changed(notebook)


# ---- results recorded by the run -------------------------------------------------------------

def test_record_result_returns_the_value_and_keeps_it(monkeypatch):
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    assert record_result("test.ppl", 1.875) == 1.875
    assert record_result("bleu.beam4", 22) == 22
    assert recorded_results()["test.ppl"] == 1.875 and recorded_results()["bleu.beam4"] == 22
    torch = pytest.importorskip("torch")
    record_result("test.loss", torch.tensor(0.5))
    assert recorded_results()["test.loss"] == 0.5 and type(recorded_results()["test.loss"]) is float


@pytest.mark.parametrize("name, value, error, word", [
    (3, 1.0, TypeError, "name"), ("Test PPL", 1.0, ValueError, "name"), ("", 1.0, ValueError, "name"),
    ("a" * 65, 1.0, ValueError, "name"), ("ppl.", 1.0, ValueError, "name"),
    ("ppl", "1.0", TypeError, "value"), ("ppl", True, TypeError, "value"), ("ppl", [1.0], TypeError, "value"),
    ("ppl", float("nan"), ValueError, "value"), ("ppl", float("inf"), ValueError, "value"),
])
def test_record_result_rejects_bad_names_and_values(name, value, error, word, monkeypatch):
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    with pytest.raises(error, match=word):
        record_result(name, value)


def test_record_result_writes_the_run_file_atomically(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    monkeypatch.setenv(RESULTS_ENV, str(target))
    record_result("fid.ddim50", 0.76)
    first = json.loads(target.read_text())
    assert first["fid.ddim50"] == 0.76
    record_result("fid.ddim50", 0.75)
    assert read_results(target)["fid.ddim50"] == 0.75
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"], "no temporary file left behind"
    assert read_results(tmp_path / "missing.json") == {}
    target.write_text(json.dumps({"ok": 1.0, "bad": float("nan")}))
    with pytest.raises(ValueError, match="finite"):
        read_results(target)


def test_execute_stores_results_recorded_in_the_kernel(tmp_path):
    """A real (smoke) run: the kernel is another process; its results reach the metadata."""
    pytest.importorskip("nbclient")
    (tmp_path / "notebooks").mkdir()
    path = tmp_path / "notebooks" / "99_demo.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Chapter 99"),
        nbformat.v4.new_code_cell("from genai_helpers import record_result\n"
                                  "print(record_result('test_ppl', 1.88), record_result('bleu.beam4', 2.2))")])
    notebook.metadata["genai_book_prose"] = {"constants": {"31,000": "a data-set size, from its documentation"}}
    nbformat.write(notebook, path)
    from genai_helpers.notebook import execute

    env_before = os.environ.get(RESULTS_ENV)
    meta = execute(path, mode="smoke", timeout=120)
    assert meta["results"] == {"bleu.beam4": 2.2, "test_ppl": 1.88}
    stored = nbformat.read(path, as_version=4)
    assert stored.metadata[META_KEY]["results"] == {"bleu.beam4": 2.2, "test_ppl": 1.88}
    assert stored.metadata["genai_book_prose"]["constants"] == {"31,000": "a data-set size, from its documentation"}
    assert "1.88 2.2" in stored.cells[1].outputs[0]["text"]
    assert "data_sha256" not in meta, "chapter 99 reads no repository data"
    assert os.environ.get(RESULTS_ENV) == env_before


# ---- staleness covers the data a chapter reads ----------------------------------------------

def test_chapters_07_and_08_hash_exactly_the_files_the_book_index_reads():
    from genai_helpers.rag.ingest import book_files

    book = {f.resolve() for f in book_files(ROOT)}
    for stem in ("07_rag", "08_agents_and_guardrails"):
        declared = {f.resolve() for f in chapter_data_files(stem, ROOT)}
        assert book <= declared, f"{stem}: book files missing from CHAPTER_DATA"
        extra = {f.relative_to(ROOT).as_posix() for f in declared - book}
        assert all(e.startswith("genai_helpers/") for e in extra), extra
    assert (ROOT / "book" / "glossary.md").resolve() in book, "chapter 07's entity graph reads the glossary"
    assert all((ROOT / "notebooks" / f"{stem}.ipynb").is_file() for stem in CHAPTER_DATA)
    for stem, globs in CHAPTER_DATA.items():
        for g in globs:
            assert list(ROOT.glob(g)), f"{stem}: {g} matches no file"


def test_chapters_that_read_repository_files_declare_them(nb):
    """A code cell (after the setup cell) that opens a path above notebooks/ reads the repository:
    its chapter must be in CHAPTER_DATA, or a change to those files would not make it stale."""
    path, notebook = nb
    code = [c.source for c in notebook.cells if c.cell_type == "code"][1:]
    reads_repo = [s for s in code if re.search(r"[\"']\.\.[/\"']|BOOK_ROOT", s)]
    if reads_repo:
        assert path.stem in CHAPTER_DATA, f"{path.name} reads repository files but CHAPTER_DATA does not list them"


def _tiny_repo(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "genai_helpers" / "rag").mkdir(parents=True)
    (tmp_path / "book" / "intro.md").write_text("# Intro\n\nAttention is a softmax.\n")
    (tmp_path / "genai_helpers" / "rag" / "book_questions.json").write_text("[]")
    chapter = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Chapter 7"),
                                              nbformat.v4.new_code_cell("x = 1", execution_count=1)])
    path = tmp_path / "notebooks" / "07_rag.ipynb"
    nbformat.write(chapter, path)
    return path


def test_data_hash_covers_pages_and_prose_but_not_outputs(tmp_path):
    path = _tiny_repo(tmp_path)
    before = data_sha256("07_rag", tmp_path)
    assert data_sha256("10_image_captioning", tmp_path) is None, "chapter 10 reads no repository data"
    chapter = nbformat.read(path, as_version=4)
    chapter.cells[1].outputs = [nbformat.v4.new_output("stream", text="fresh output\n")]
    chapter.cells[1].source = "x = 2"
    chapter.metadata[META_KEY] = {"mode": "full", "results": {"a": 1.0}}
    nbformat.write(chapter, path)
    assert data_sha256("07_rag", tmp_path) == before, "outputs, code and metadata of a notebook are not read"
    chapter.cells[0].source = "# Chapter 7, reworded"
    nbformat.write(chapter, path)
    after_prose = data_sha256("07_rag", tmp_path)
    assert after_prose != before
    (tmp_path / "book" / "glossary.md").write_text("attention\n: a weighted average\n")
    after_new_page = data_sha256("07_rag", tmp_path)
    assert after_new_page != after_prose, "a new page changes the corpus"
    (tmp_path / "genai_helpers" / "rag" / "book_questions.json").write_text('[{"q": 1}]')
    assert data_sha256("07_rag", tmp_path) != after_new_page


def test_stale_reasons_flags_changed_or_unrecorded_data(tmp_path):
    path = _tiny_repo(tmp_path)
    chapter = nbformat.read(path, as_version=4)
    chapter.metadata[META_KEY] = {"mode": "full", "code_sha256": code_sha256(chapter)}
    assert stale_reasons(chapter) == [], "without a path only the code is checked"
    assert any("no data hash recorded" in r for r in stale_reasons(chapter, path))
    chapter.metadata[META_KEY]["data_sha256"] = data_sha256("07_rag", tmp_path)
    assert stale_reasons(chapter, path) == []
    (tmp_path / "book" / "intro.md").write_text("# Intro\n\nAttention is a weighted average.\n")
    reasons = stale_reasons(chapter, path)
    assert len(reasons) == 1 and "data changed" in reasons[0] and "book/**/*.md" in reasons[0]


def test_a_chapter_that_prints_other_chapters_results_goes_stale_when_they_change(tmp_path):
    from genai_helpers.notebook import CHAPTER_RESULTS
    stems = {p.stem for p in NOTEBOOKS}
    for reader, sources in CHAPTER_RESULTS.items():
        assert reader in stems and set(sources) <= stems, reader
    reader, sources = next(iter(CHAPTER_RESULTS.items()))
    (tmp_path / "notebooks").mkdir()
    def write(results):
        nb = nbformat.v4.new_notebook()
        nb.metadata["genai_book"] = {"results": results}
        nbformat.write(nb, tmp_path / "notebooks" / f"{sources[0]}.ipynb")
    write({"a": 1.0})
    before = data_sha256(reader, tmp_path)
    write({"a": 1.0})
    assert data_sha256(reader, tmp_path) == before          # same results: still fresh
    write({"a": 2.0})
    assert data_sha256(reader, tmp_path) != before          # a re-run that changed them: stale
