"""A course everyone can read: colour maps safe for colour-blind readers, figures with alt text and a
caption, check output that is plain text. (Solution figures are checked on their executed outputs in
tests/test_course_notebooks.py.)"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from autograder import CheckFailed
from autograder.figures import MATERIAL_COLOURS, NDVI_CMAP, SAFE_CMAPS, book_figures_missing_text, colour_distance
from autograder.notebooks import REPO

DEFICIENCIES = ("normal", "protanopia", "deuteranopia", "tritanopia")
CODES = {name: code for code, (name, _) in MATERIAL_COLOURS.items()}
# Pairs a reader must tell apart to see the disease: leaf against each symptom, and the symptoms apart.
MUST_DIFFER = [("leaf", "halo"), ("leaf", "lesion_margin"), ("leaf", "lesion_centre"), ("halo", "lesion_margin"),
               ("halo", "lesion_centre"), ("lesion_margin", "lesion_centre"), ("background", "leaf")]
MIN_DIFFERENCE = 15  # CIE76: clearly different at a glance


@pytest.mark.parametrize("kind", DEFICIENCIES)
def test_mask_palette_keeps_the_disease_visible_for_colour_blind_readers(kind: str) -> None:
    for a, b in MUST_DIFFER:
        difference = colour_distance(MATERIAL_COLOURS[CODES[a]][1], MATERIAL_COLOURS[CODES[b]][1], kind)
        assert difference >= MIN_DIFFERENCE, f"{a} vs {b} under {kind}: {difference:.1f}"


def test_the_palette_names_every_material_of_the_generator() -> None:
    from rice_lab.data.synthetic import MATERIAL_NAMES

    assert {code: name for code, (name, _) in MATERIAL_COLOURS.items()} == MATERIAL_NAMES


def test_the_measure_rejects_a_red_green_palette() -> None:
    """tab10's green and red, which the masks used before, collapse for deuteranopes: the test would fail them."""
    assert colour_distance("#2ca02c", "#d62728", "deuteranopia") < MIN_DIFFERENCE


def test_safe_colour_maps_exist_and_ndvi_is_one_of_them() -> None:
    import matplotlib

    for name in SAFE_CMAPS:
        assert name in matplotlib.colormaps
    assert NDVI_CMAP in SAFE_CMAPS


PAGES = sorted((REPO / "book").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_book_figure_has_alt_text_and_a_caption(page: Path) -> None:
    assert book_figures_missing_text(page) == []


def test_the_book_figure_finder_finds_what_it_should(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```{code-cell} ipython3\nfig, ax = plt.subplots()\n```\n\n"
                    "```{code-cell} ipython3\n---\nmystnb:\n  image:\n    alt: A bar chart of accuracy per camera\n"
                    "  figure:\n    caption: Accuracy per camera.\n---\nfig, ax = plt.subplots()\n```\n\n"
                    "![](plot.png)\n\n```{figure} x.png\n:alt: x\n\nA caption.\n```\n")
    problems = book_figures_missing_text(page)
    assert len(problems) == 3 and all("page.md" in p for p in problems), problems
    assert "alt" in problems[0] and "caption" in problems[1] and "plot.png" in problems[2]


def _messages() -> list[str]:
    """What checks print when they pass and when they fail (a mutant of each assignment)."""
    import io
    from contextlib import redirect_stdout

    sys.path.insert(0, str(REPO / "tests"))
    from notebook_answers import solution_answers
    import autograder.checks.a01_data as checks

    header = "from pathlib import Path\nimport numpy as np\nfrom rice_lab.data.zindi import load_image, read_mask\n" \
             "import matplotlib.pyplot as plt\nfrom autograder.figures import MASK_CMAP, mask_legend, show, show_mask\n"
    answers = solution_answers("01-data", header)
    printed = io.StringIO()
    with redirect_stdout(printed):
        checks.check_pairing(answers.pair_cameras, seed=1)
        checks.check_show_plant(answers.show_plant, seed=1)
    texts = [printed.getvalue()]
    for wrong in (lambda names: {}, lambda names: {"x.jpg": {"rgb": "x.jpg"}}):
        try:
            checks.check_pairing(wrong, seed=1)
        except CheckFailed as failed:
            texts.append(str(failed))
    return texts


def test_check_output_is_plain_text() -> None:
    """No colour codes, no markup, no characters a plain terminal (or a Windows console) cannot show."""
    for text in _messages():
        assert text and not re.search(r"\x1b\[|<[a-z]+[ >]", text), text
        text.encode("ascii")
