"""A number a chapter's prose states must be one its stored outputs show (genai_helpers.prose_numbers).

The unit tests pin the matching rules on tiny notebooks; the per-chapter test runs the check on
every notebook under notebooks/. When it fails after a re-run, fix the prose to follow the new
outputs; list a number in ``metadata.genai_book_prose.constants`` only when it is a quoted fact
(a data-sheet figure, a data-set size), never a measured one.
"""
from pathlib import Path

import nbformat
import pytest

from genai_helpers.notebook import main as notebook_cli
from genai_helpers.prose_numbers import (PROSE_KEY, numbers_in_prose, prose_constants, prose_text,
                                         unbacked_numbers, unused_constants)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def chapter(prose, output="", code="x = 1", results=None, constants=None):
    cell = nbformat.v4.new_code_cell(code, execution_count=1)
    if output:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=output)]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(prose), cell])
    if results is not None:
        nb.metadata["genai_book"] = {"results": results}
    if constants is not None:
        nb.metadata[PROSE_KEY] = {"constants": constants}
    return nb


def unbacked(prose, output="", **kw):
    return [n.literal for n in unbacked_numbers(chapter(prose, output, **kw), "notebooks/07_demo.ipynb")]


@pytest.mark.parametrize("prose, output", [
    ("BLEU reaches 0.81.", "bleu 0.8123"),                      # rounding to the stated decimals
    ("BLEU reaches 0.81.", "bleu 0.805"),                       # half-way rounds either way
    ("It took 305 s.", "305.4 s"),                              # an integer from a float
    ("It took 305 s.", "elapsed: 304.6s"),
    ("We kept 31,000 verse pairs.", "31077 aligned verse pairs"),   # round thousands, 2 significant digits
    ("We kept 31,077 verse pairs.", "31077 pairs"),             # thousands separator in prose
    ("We kept 31077 pairs.", "31,077 pairs"),                   # ... or in the output
    ("Accuracy is 81 %.", "accuracy 0.812"),                    # a percentage from a fraction
    ("Accuracy is 81%.", "accuracy 81.2%"),
    ("Accuracy is 0.81.", "accuracy 81%"),                      # a fraction from a percentage
    ("The loop is 18x faster.", "speed-up 18.3"),              # multipliers
    ("The loop is 18× faster.", "speed-up 17.6x"),
    ("The gap is 1e-4.", "diff 1.2e-04"),                       # scientific notation
    ("A 860M-parameter U-Net.", "params: 860,012,345"),         # a magnitude suffix
    ("About 1.2 million steps.", "1,204,000 steps"),
    ("A peak of 210 GFLOP/s.", "peak = 210e9"),                 # an SI prefix on a unit
    ("It keeps 12 MiB.", "12582912 bytes"),                     # ... binary

    ("The loss fell by 0.30.", "delta -0.297"),                 # signs are ignored
    ("Train for 2,000 steps.", ""),                             # (setting in the code cell below)
])
def test_numbers_shown_by_an_output_or_code_are_backed(prose, output):
    code = "steps = 2_000" if "2,000" in prose else "x = 1"
    assert unbacked(prose, output, code=code) == []


@pytest.mark.parametrize("prose, output, literal", [
    ("BLEU reaches 0.82.", "bleu 0.8123", "0.82"),
    ("It took 305 s.", "278.0 s", "305"),
    ("It took 860 s.", "864 s", "860"),                          # below 1,000 a round number is exact
    ("We kept 30,000 pairs.", "31077 pairs", "30,000"),
    ("We kept 3,000 pairs.", "3,400 pairs", "3,000"),            # one significant digit: exact
    ("Accuracy is 82 %.", "accuracy 0.812", "82 %"),
    ("Accuracy is 0.81.", "accuracy 81.2", "0.81"),              # no % in the output: not a fraction
    ("The loop is 20× faster.", "speed-up 18.3x", "20×"),
    ("The gap is 1e-4.", "diff 3e-4", "1e-4"),
    ("Recall is 0.41 here.", "", "0.41"),
])
def test_numbers_no_output_shows_are_listed(prose, output, literal):
    assert unbacked(prose, output) == [literal]


def test_base64_images_and_widget_frames_back_nothing():
    frame = "data:image/png;base64,iVBORw0KGgo305AAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    nb = chapter("It took 305 s.")
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"text/html": f'<img src="{frame}">',
                                                                          "image/png": "305305305"})]
    assert [n.literal for n in unbacked_numbers(nb)] == ["305"]


def test_widget_state_and_recorded_results_back_numbers():
    nb = chapter("FID 0.76 and an accuracy of 93.5 %.", results={"fid.ddim50": 0.7612})
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"m": {"value": 0.935}}}}
    assert unbacked_numbers(nb) == []


@pytest.mark.parametrize("prose", [
    "The softmax of $QK^T / \\sqrt{512}$ is a weighted average.",      # inline math
    "$$\\mathrm{ppl} = e^{3.14159}$$",                                  # display math
    "Call `top_p_filter(logits, 0.937)` here.",                         # code span
    "```python\nx = 305.5\n```",                                        # fenced code
    "## 7.8 Results at 4096 tokens",                                    # a heading
    "See [the table](https://example.org/run/2024/305.html).",           # a link target
    '<img src="a.png" width="640">',                                     # an HTML tag
    "See chapter 13 and chapters 14, 15 and 16, §7.8, exercise 14.",      # references
    "Section 7.3 and, in this chapter, 7.4.",                           # own section numbers
    "Python 3.11.2 and jupyter-book 1.0.4.",                            # version strings
    "GPT-2, all-MiniLM-L6-v2, Windows-1252, bf16, fp32 and H100.",      # numbers glued to a name
    "The 13th step, 8 heads and 12 layers in 2026.",                    # ordinals, small ints, years
    "{doc}`Chapter 14 <../notebooks/14_personalization>`",              # a MyST role
])
def test_numbers_outside_running_prose_are_skipped(prose):
    assert numbers_in_prose(prose, chapter=7) == []


def test_directive_bodies_are_prose_but_their_fences_and_options_are_not():
    md = "```{admonition} Note\n:class: tip 2048\nThe run took 305 s.\n```"
    assert [n.literal for n in numbers_in_prose(md)] == ["305"]
    assert len(prose_text(md)) == len(md), "blanking keeps positions"


def test_other_chapters_section_numbers_are_checked():
    assert [n.literal for n in numbers_in_prose("It took 13.4 s.", chapter=7)] == ["13.4"]
    assert numbers_in_prose("As in 13.4, we", chapter=13) == []


def test_listed_constants_back_only_their_literal_and_need_a_reason():
    nb = chapter("The data sheet gives 312 TFLOP/s; we measured 180.",
                 constants={"312": "A100 dense bf16 tensor-core TFLOP/s (NVIDIA data sheet)"})
    assert [n.literal for n in unbacked_numbers(nb)] == ["180"]
    assert unused_constants(nb) == []
    nb.metadata[PROSE_KEY]["constants"]["70,000"] = "Fashion-MNIST: 60,000 training + 10,000 test images"
    assert unused_constants(nb) == ["70000"]
    nb.metadata[PROSE_KEY]["constants"]["989"] = ""
    with pytest.raises(ValueError, match="constants"):
        prose_constants(nb)
    nb.metadata[PROSE_KEY]["constants"] = {"many": "not a number at all, so not a constant"}
    with pytest.raises(ValueError, match="constant"):
        prose_constants(nb)


def test_prose_text_rejects_non_text():
    with pytest.raises(TypeError, match="markdown"):
        prose_text(None)


def test_cli_lists_suspects_and_fails(tmp_path, capsys):
    path = tmp_path / "07_demo.ipynb"
    nbformat.write(chapter("It took 305 s.", "278.0 s"), path)
    assert notebook_cli(["prose", str(path)]) == 1
    assert "'305'" in capsys.readouterr().out
    nbformat.write(chapter("It took 278 s.", "278.0 s"), path)
    assert notebook_cli(["prose", str(path)]) == 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_prose_states_only_numbers_its_outputs_show(path):
    nb = nbformat.read(path, as_version=4)
    suspects = unbacked_numbers(nb, path)
    assert not suspects, f"{path.name}: numbers in prose that no output shows:\n" + "\n".join(map(str, suspects))
    assert unused_constants(nb, path) == [], f"{path.name}: constants listed but no longer in the prose"
