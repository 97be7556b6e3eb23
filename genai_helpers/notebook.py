"""Run metadata for chapter notebooks, and the check that stored outputs are not stale.

``make execute NB=notebooks/01_attention.ipynb`` runs a chapter top to bottom in *full* mode,
stores its outputs, and writes into the notebook's metadata (key ``genai_book``)::

    {"mode": "full", "device": "cpu", "wall_time_s": 312.4, "package_version": "0.1.0",
     "code_sha256": "...", "executed_at": "2026-11-23T07:12:00Z", "torch": "2.13.0+cpu", ...}

``tests/test_notebook_conventions.py`` recomputes the hash of the code cells and fails if it differs:
a change to a chapter's code must come with a fresh full run, so the site never shows outputs
that the current code did not produce.

Two more things make the stored outputs trustworthy:

- **Results recorded by the run.** A chapter calls :func:`record_result` (``from genai_helpers
  import record_result``) for its headline numbers. Under :func:`execute` the kernel is a separate
  process, so ``execute`` passes it a file path in ``GENAI_RESULTS_PATH``; ``record_result`` rewrites
  that file atomically on each call and ``execute`` stores its contents in
  ``metadata.genai_book.results`` (name -> number). Nobody types these numbers.
- **Data the chapter reads.** :data:`CHAPTER_DATA` lists, per chapter, the repository files it reads
  besides the package (chapter 07 indexes the book's pages and the notebooks' prose). ``execute``
  records their hash as ``data_sha256``, and :func:`stale_reasons` reports the chapter stale when
  they change. Only what the chapter reads is hashed: of a notebook, its Markdown cells.
  :data:`CHAPTER_RESULTS` names the chapters whose *recorded results* a chapter prints (the design
  chapter, 17); those results are hashed too.

``metadata.genai_book`` is rewritten as a whole by each run; what must survive a re-run (the
constants that the prose check of :mod:`genai_helpers.prose_numbers` accepts) lives under its own
key, ``metadata.genai_book_prose``.

Command line::

    python -m genai_helpers.notebook execute notebooks/01_attention.ipynb [--mode full]
    python -m genai_helpers.notebook check notebooks/*.ipynb
    python -m genai_helpers.notebook prose notebooks/*.ipynb    # prose numbers no output shows
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import numbers
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["META_KEY", "RESULTS_ENV", "REPO_ROOT", "BOOK_CORPUS", "BOOK_LM_FILES", "CHAPTER_DATA", "CHAPTER_RESULTS", "code_sha256", "package_sha256",
           "package_changed", "record_result", "recorded_results", "read_results", "chapter_data_files",
           "data_sha256", "stale_reasons", "execute", "main"]

META_KEY = "genai_book"
RESULTS_ENV = "GENAI_RESULTS_PATH"
REPO_ROOT = Path(__file__).resolve().parents[1]

# Repository files each chapter reads at run time, besides the package's Python sources (covered by
# package_sha256). Globs relative to the repository root, keyed by the notebook's stem; a notebook
# contributes only its Markdown cells. Chapters 07 and 08 index what
# genai_helpers.rag.ingest.book_files lists (tests/test_notebook_conventions.py checks the two agree).
BOOK_CORPUS = ("book/**/*.md", "notebooks/*.ipynb")
#: The book LM's shipped files (the manifest holds the weights' sha256), read by the text chapters:
#: those of the chapters' model, not the gpu size (``*-gpu.*``, ``gpu_sweep.json``), which none reads.
BOOK_LM_FILES = tuple(f"genai_helpers/models/book_lm/{name}" for name in (
    "manifest.json", "pretrain_history.json", "scaling_sweep.json", "tokenizer.json", "*.txt"))
#: The repository files each chapter reads besides the package, as globs keyed by the notebook's
#: stem (see the module docstring).
CHAPTER_DATA: dict[str, tuple[str, ...]] = {
    "01_attention": BOOK_LM_FILES,
    "02_training_at_scale": BOOK_LM_FILES,
    "03_sampling_and_evaluation": BOOK_LM_FILES,
    "07_rag": BOOK_CORPUS + ("genai_helpers/rag/book_questions.json", "genai_helpers/rag/book_lm_reader.json",
                                   "genai_helpers/rag/cross_encoder.json") + BOOK_LM_FILES,
    "08_agents_and_guardrails": BOOK_CORPUS + ("genai_helpers/agents/data/paraphrases.json",
                                               "genai_helpers/guardrails/data/attacks.jsonl"),
    "09_serving": tuple(f"benchmarks/results/{name}.json" for name in ("gpt", "kv_cache", "serving")),
}
#: Chapters that print other chapters' recorded results (``metadata.genai_book.results``), keyed by
#: the reader's stem: a re-run of a listed chapter that changes its results makes the reader stale.
CHAPTER_RESULTS: dict[str, tuple[str, ...]] = {
    "17_system_design": ("01_attention", "02_training_at_scale", "03_sampling_and_evaluation", "07_rag",
                         "08_agents_and_guardrails"),
}


def code_sha256(nb) -> str:
    """SHA-256 of the notebook's code cells (sources only, trailing whitespace ignored)."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.rstrip().encode("utf-8"))
            h.update(b"\n\x00cell\x00\n")
    return h.hexdigest()


def package_sha256() -> str:
    """SHA-256 of the genai_helpers sources: recorded at each full run, reported (not enforced)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def package_changed(nb) -> bool:
    """True when the package sources differ from those of the notebook's last full run.

    Not a failure: re-running every chapter for each package change would cost hours. Chapters
    check their results against the package inline, so a behaviour change still shows in tests.
    """
    meta = nb.metadata.get(META_KEY) or {}
    return meta.get("package_sha256") not in (None, package_sha256())


# ---------------------------------------------------------------------------------------------
# Results recorded by the run

_RESULT_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*")
_RESULT_NAME_MAX = 64
_results: dict[str, float] = {}


def _check_result(name, value):
    if not isinstance(name, str):
        raise TypeError(f"name must be a str such as 'test_ppl' or 'bleu.beam4', got {type(name).__name__}")
    if len(name) > _RESULT_NAME_MAX or not _RESULT_NAME.fullmatch(name):
        raise ValueError(f"name must be a short key of lower-case letters, digits and '_', parts joined by "
                         f"'.' (such as 'test_ppl' or 'bleu.beam4'), at most {_RESULT_NAME_MAX} "
                         f"characters; got {name!r}")
    number = value
    if getattr(number, "ndim", None) == 0 and hasattr(number, "item"):   # 0-d tensor or array
        number = number.item()
    if isinstance(number, bool) or not isinstance(number, numbers.Real):
        raise TypeError(f"value must be a real number (int, float, or a 0-d tensor/array); got "
                        f"{type(value).__name__} for {name!r}")
    number = int(number) if isinstance(number, numbers.Integral) else float(number)
    if not math.isfinite(number):
        raise ValueError(f"value must be finite, got {number!r} for {name!r}")
    return number


def record_result(name: str, value):
    """Record one of the chapter's headline numbers and return ``value`` unchanged (to print it).

    ``name``: a short key, lower-case letters, digits and ``_``, parts joined by ``.`` (``test_ppl``,
    ``bleu.beam4``), at most 64 characters. ``value``: a finite real number (int, float, numpy
    scalar, or a 0-d tensor). Recording the same name again replaces it. Under :func:`execute`
    (``GENAI_RESULTS_PATH`` set) every call rewrites that JSON file atomically, and the run stores
    the results in ``metadata.genai_book.results``; elsewhere they stay in memory
    (:func:`recorded_results`).
    """
    _results[name] = _check_result(name, value)
    target = os.environ.get(RESULTS_ENV)
    if target:
        _write_json_atomically(Path(target), _results)
    return value


def recorded_results() -> dict[str, float]:
    """A copy of the results recorded in this process so far (name -> number)."""
    return dict(_results)


def _write_json_atomically(path: Path, data) -> None:
    from .checkpoint import write_atomic
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True))


def read_results(path: str | os.PathLike) -> dict[str, float]:
    """The results a run wrote to ``path`` (validated again); ``{}`` when the run recorded none."""
    path = Path(path)
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: results must be a JSON object of name -> number")
    return {name: _check_result(name, value) for name, value in sorted(raw.items())}


# ---------------------------------------------------------------------------------------------
# Data a chapter reads

def _root_of(notebook_path: str | os.PathLike) -> Path:
    """The repository root of a chapter: the folder above ``notebooks/``."""
    return Path(notebook_path).resolve().parent.parent

def chapter_data_files(stem: str, root: str | os.PathLike = REPO_ROOT) -> list[Path] | None:
    """The repository files chapter ``stem`` reads (see :data:`CHAPTER_DATA`), sorted; ``None`` when
    the chapter reads none."""
    globs = CHAPTER_DATA.get(stem)
    if globs is None:
        return None
    root = Path(root)
    files = {f for g in globs for f in root.glob(g) if f.is_file() and ".ipynb_checkpoints" not in f.parts}
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def data_sha256(stem: str, root: str | os.PathLike = REPO_ROOT) -> str | None:
    """SHA-256 of what chapter ``stem`` reads from the repository, or ``None`` if it reads nothing.

    Each file counts with its path; a notebook counts only its Markdown cell sources, never its code
    or outputs (a chapter that indexes its own prose stays fresh after its own re-run).
    """
    files = chapter_data_files(stem, root)
    if files is None and stem not in CHAPTER_RESULTS:
        return None
    files = files or []
    root = Path(root)
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        if f.suffix == ".ipynb":
            cells = json.loads(f.read_text(encoding="utf-8")).get("cells", [])
            for cell in cells:
                if cell.get("cell_type") == "markdown":
                    src = cell.get("source", "")
                    h.update(("".join(src) if isinstance(src, list) else src).encode("utf-8") + b"\0md\0")
        else:
            h.update(f.read_bytes())
        h.update(b"\0file\0")
    for other in CHAPTER_RESULTS.get(stem, ()):
        path = root / "notebooks" / f"{other}.ipynb"
        results = {}
        if path.is_file():
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get(META_KEY) or {}
            results = meta.get("results") or {}
        h.update(f"results:{other}:".encode() + json.dumps(results, sort_keys=True).encode() + b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# The stale-output check

def stale_reasons(nb, path: str | os.PathLike | None = None, root: str | os.PathLike | None = None) -> list[str]:
    """Why the stored outputs of ``nb`` cannot be trusted; an empty list means they are fresh.

    With ``path`` (the notebook's file, ``notebooks/NN_name.ipynb``), the data the chapter reads
    (:data:`CHAPTER_DATA`, under ``root``: by default the folder above ``notebooks/``) must also hash
    as it did at the last full run.
    """
    meta = nb.metadata.get(META_KEY)
    if not meta:
        return [f"no '{META_KEY}' metadata: run `make execute NB=...` to produce stored outputs"]
    problems = []
    if meta.get("mode") != "full":
        problems.append(f"stored outputs come from mode={meta.get('mode')!r}, not a full run")
    if meta.get("code_sha256") != code_sha256(nb):
        problems.append("code cells changed since the last full run (hash differs): re-run `make execute`")
    counts = [c.get("execution_count") for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    if counts != list(range(1, len(counts) + 1)):
        problems.append(f"execution counts are not 1..{len(counts)} in order (cells run by hand?)")
    if path is not None:
        expected = data_sha256(Path(path).stem, _root_of(path) if root is None else root)
        if expected is not None and meta.get("data_sha256") != expected:
            stem = Path(path).stem
            what = ", ".join(CHAPTER_DATA.get(stem, ())
                             + tuple(f"the results of {o}" for o in CHAPTER_RESULTS.get(stem, ())))
            problems.append(("no data hash recorded by the last full run" if meta.get("data_sha256") is None
                             else "data changed since the last full run")
                            + f" (the chapter reads {what}): re-run `make execute`")
    return problems


def execute(path: str | os.PathLike, mode: str = "full", timeout: int = 3600) -> dict:
    """Execute a notebook in place in ``mode`` and record the run metadata; return the metadata."""
    import nbformat
    import torch
    from nbclient import NotebookClient

    from . import __version__
    from .runtime import MODE_ENV, VALID_MODES, get_device

    if mode not in VALID_MODES:
        raise ValueError(f"mode must be one of {VALID_MODES}, got {mode!r}")
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    os.environ[MODE_ENV] = mode
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    marks = {"t": time.perf_counter(), "i": 0}

    def progress(cell, cell_index, execute_reply=None, **_):
        if cell.cell_type == "code":
            marks["i"] += 1
            now = time.perf_counter()
            print(f"  {path.name}: code cell {marks['i']}/{n_code} done in {now - marks['t']:.1f} s", flush=True)
            marks["t"] = now

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", on_cell_executed=progress,
                            resources={"metadata": {"path": str(path.parent)}}, store_widget_state=True)
    data_hash = data_sha256(path.stem, _root_of(path))      # what the run reads, hashed before it runs
    results_dir = tempfile.mkdtemp(prefix="genai_results_")
    results_path = Path(results_dir) / "results.json"
    previous = os.environ.get(RESULTS_ENV)
    os.environ[RESULTS_ENV] = str(results_path)              # the kernel inherits it: record_result writes there
    start = time.perf_counter()
    try:
        client.execute()
        wall = time.perf_counter() - start
        results = read_results(results_path)
    finally:
        if previous is None:
            os.environ.pop(RESULTS_ENV, None)
        else:
            os.environ[RESULTS_ENV] = previous
        shutil.rmtree(results_dir, ignore_errors=True)
    device = get_device()
    meta = {
        "mode": mode,
        "device": str(device) + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
        "cpu_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "wall_time_s": round(wall, 1),
        "package_version": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "code_sha256": code_sha256(nb),
        "package_sha256": package_sha256(),
        "executed_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "results": results,
    }
    if data_hash is not None:
        meta["data_sha256"] = data_hash
    nb.metadata[META_KEY] = meta
    from .players import offline_notebook_outputs
    offline_notebook_outputs(nb)  # players draw their own buttons: no Font Awesome from a CDN (players)
    nbformat.write(nb, path)
    return meta


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(prog="python -m genai_helpers.notebook")
    sub = parser.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("execute", help="run notebooks and store outputs + metadata")
    ex.add_argument("paths", nargs="+")
    ex.add_argument("--mode", default="full", choices=("smoke", "full"))
    ck = sub.add_parser("check", help="fail if stored outputs are stale")
    ck.add_argument("paths", nargs="+")
    pr = sub.add_parser("prose", help="fail if the prose states a number no output shows")
    pr.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    status = 0
    for p in args.paths:
        if args.cmd == "prose":
            from .prose_numbers import unbacked_numbers

            suspects = unbacked_numbers(nbformat.read(p, as_version=4), p)
            for s in suspects:
                print(f"{p}: {s}")
            status |= bool(suspects)
        elif args.cmd == "execute":
            meta = execute(p, args.mode)
            print(f"{p}: {meta['mode']} run on {meta['device']} in {meta['wall_time_s']} s")
        else:
            nb = nbformat.read(p, as_version=4)
            problems = stale_reasons(nb, p)
            for msg in problems:
                print(f"{p}: {msg}")
            if not problems and package_changed(nb):
                print(f"{p}: note: genai_helpers changed since the last full run (outputs may differ slightly)")
            status |= bool(problems)
    return status


if __name__ == "__main__":
    sys.exit(main())
