"""Make the stored animation players of chapter notebooks work offline (issue 13).

matplotlib's ``Animation.to_jshtml()`` links Font Awesome 4 from a CDN for its play, pause and
step buttons, so offline (the static site, JupyterLab without network) the buttons are blank.
``genai_helpers.players.offline_notebook_outputs`` removes the link and draws the icons as inline
SVG; ``genai_helpers.notebook.execute`` applies it on every full run. This script applies it to
the outputs already stored, without re-running anything:

    .venv/bin/python tools/offline_players.py notebooks/*.ipynb          # fix in place
    .venv/bin/python tools/offline_players.py --check notebooks/*.ipynb  # exit 1 if any needs it

Only outputs change: code cells and markdown are left as they are, so a notebook's code hash
(the stale-output check of ``genai_helpers.notebook``) stays the same. A notebook is written only
when one of its outputs changed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from genai_helpers.notebook import code_sha256
from genai_helpers.players import offline_notebook_outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="report, do not write; exit 1 if any needs fixing")
    args = parser.parse_args(argv)
    pending = 0
    for path in args.paths:
        nb = nbformat.read(path, as_version=4)
        before = code_sha256(nb)
        changed = offline_notebook_outputs(nb)
        if code_sha256(nb) != before:  # cannot happen: outputs only; guards the stale-output check
            raise RuntimeError(f"{path}: code hash changed, nothing written")
        if changed:
            pending += 1
            if not args.check:
                nbformat.write(nb, path)
        print(f"{path}: {changed} player output(s) {'to fix' if args.check else 'fixed'}" if changed
              else f"{path}: nothing to fix")
    return 1 if args.check and pending else 0


if __name__ == "__main__":
    sys.exit(main())
