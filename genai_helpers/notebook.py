"""Run metadata for chapter notebooks, and the check that stored outputs are not stale.

``make execute NB=notebooks/01_attention.ipynb`` runs a chapter top to bottom in *full* mode,
stores its outputs, and writes into the notebook's metadata (key ``genai_book``)::

    {"mode": "full", "device": "cpu", "wall_time_s": 312.4, "package_version": "0.1.0",
     "code_sha256": "...", "executed_at": "2026-11-23T07:12:00Z", "torch": "2.13.0+cpu", ...}

``tests/test_notebooks_fresh.py`` recomputes the hash of the code cells and fails if it differs:
a change to a chapter's code must come with a fresh full run, so the site never shows outputs
that the current code did not produce.

Command line::

    python -m genai_helpers.notebook execute notebooks/01_attention.ipynb [--mode full]
    python -m genai_helpers.notebook check notebooks/*.ipynb
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

META_KEY = "genai_book"


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


def stale_reasons(nb) -> list[str]:
    """Why the stored outputs of ``nb`` cannot be trusted; an empty list means they are fresh."""
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
    start = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - start
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
    }
    nb.metadata[META_KEY] = meta
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
    args = parser.parse_args(argv)
    status = 0
    for p in args.paths:
        if args.cmd == "execute":
            meta = execute(p, args.mode)
            print(f"{p}: {meta['mode']} run on {meta['device']} in {meta['wall_time_s']} s")
        else:
            nb = nbformat.read(p, as_version=4)
            problems = stale_reasons(nb)
            for msg in problems:
                print(f"{p}: {msg}")
            if not problems and package_changed(nb):
                print(f"{p}: note: genai_helpers changed since the last full run (outputs may differ slightly)")
            status |= bool(problems)
    return status


if __name__ == "__main__":
    sys.exit(main())
