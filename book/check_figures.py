"""Check that every figure a page declares made it into the built book.

    python book/check_figures.py

A code cell declares its figure in its metadata (``mystnb: figure: caption``); if the cell draws
nothing (a library call that switched matplotlib's backend once made every later figure of a page
vanish), the build still succeeds and the page silently loses its figures. This counts, per page,
the declared figures and the images in the built HTML, and exits 1 naming each page that has fewer
images than figures.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
EXAMPLE = re.compile(r"^````.*?^````", re.MULTILINE | re.DOTALL)  # a page showing a cell's source, not a cell
CELL = re.compile(r"^```\{code-cell\}[^\n]*\n---\n(.*?)\n---\n", re.MULTILINE | re.DOTALL)
IMAGE = re.compile(r"<img\b")


def declared_figures(text: str) -> int:
    """How many code cells of a MyST page declare a figure (``figure:`` in their mystnb options)."""
    text = EXAMPLE.sub("", text)
    return sum(bool(re.search(r"^\s+figure:\s*$", options, re.MULTILINE)) for options in CELL.findall(text))


def missing_figures(book: Path = BOOK) -> list[str]:
    """One line per built page with fewer images than the figures its source declares."""
    problems = []
    for source in sorted(book.glob("*.md")):
        declared = declared_figures(source.read_text(encoding="utf-8"))
        page = book / "_build" / "html" / f"{source.stem}.html"
        if not declared or not page.is_file():
            continue
        shown = len(IMAGE.findall(page.read_text(encoding="utf-8")))
        if shown < declared:
            problems.append(f"{page}: {shown} images for the {declared} figures {source.name} declares")
    return problems


if __name__ == "__main__":
    found = missing_figures()
    for line in found:
        print(f"book: {line}", file=sys.stderr)
    sys.exit(1 if found else 0)
