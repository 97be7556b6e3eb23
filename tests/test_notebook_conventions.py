"""Every chapter notebook follows the book's template, and its stored outputs are not stale.

The stale check is the contract behind the published site: the outputs a reader sees come from a
full run of the *current* code. Change a code cell without re-running `make execute` and
`test_stored_outputs_come_from_a_full_run_of_the_current_code` fails.
"""
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from genai_helpers.notebook import META_KEY, code_sha256, stale_reasons

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
    assert stale_reasons(notebook) == [], f"{path.name}: stale outputs"


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
