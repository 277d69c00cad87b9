"""Figures everyone can read: a colour-blind-safe palette for material masks, legends, alt text.

- ``MASK_CMAP``, ``show_mask`` and ``mask_legend`` come from ``rice_lab.data.palette`` (the book uses
  them too): the Okabe-Ito palette, checked here with :func:`simulate_cvd` for colour-blind readers.
- ``show(fig, alt=...)`` displays a figure in a notebook with its alt text in the output's metadata
  (nbconvert, nbgrader's feedback and Jupyter Book put it in the ``alt`` of the image).
- Book pages give every figure cell ``mystnb`` metadata (a YAML block at the top of the cell) with an
  ``image: alt:`` text and a ``figure: caption:``; :func:`book_figures_missing_text` finds the cells that
  lack them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from rice_lab.data.palette import (  # noqa: F401  (re-exported for notebooks and checks)
    MASK_CMAP,
    MASK_CMAP_NAME,
    MASK_RANGE,
    MATERIAL_COLOURS,
    NDVI_CMAP,
    mask_legend,
    show_mask,
)

# Colour maps a check accepts for masks and other quantities: ours, and perceptually uniform ones that
# read for every common colour-vision deficiency (no red/green-only contrast).
SAFE_CMAPS = (MASK_CMAP_NAME, "viridis", "cividis", "magma", "inferno", "plasma", "gray", "Greys", "binary")


def show(fig: Any, alt: str) -> None:
    """Display ``fig`` in a notebook with alt text, then close it (so it is not shown a second time)."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    if not alt or not alt.strip():
        raise ValueError("a figure needs alt text: say what it shows and what to see in it")
    import io
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", dpi=100)
    plt.close(fig)
    display(Image(buffer.getvalue(), format="png", alt=alt), metadata={"image/png": {"alt": alt}})


# --- colour-vision deficiency ---------------------------------------------------------------------------

# Machado, Oliveira & Fernandes (2009), severity 1.0, applied to linear RGB.
_CVD = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}


def _linear(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _lab(linear: np.ndarray) -> np.ndarray:
    xyz = linear @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]])
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def simulate_cvd(hex_colour: str, kind: str) -> np.ndarray:
    """The CIELAB colour a viewer with ``kind`` (protanopia, deuteranopia, tritanopia or normal) sees."""
    srgb = np.array([int(hex_colour[k:k + 2], 16) / 255 for k in (1, 3, 5)])
    linear = _linear(srgb)
    if kind != "normal":
        linear = np.clip(_CVD[kind] @ linear, 0, 1)
    return _lab(linear)


def colour_distance(a: str, b: str, kind: str = "normal") -> float:
    """CIE76 colour difference between two hex colours as seen with ``kind`` of colour vision."""
    return float(np.linalg.norm(simulate_cvd(a, kind) - simulate_cvd(b, kind)))


# --- alt text and captions in book pages ------------------------------------------------------------------

_FIGURE_CODE = re.compile(r"plt\.(subplots|figure|imshow|plot|bar|hist|scatter)\b|\.imshow\(|show_\w+\(|\bplot_\w+\(")


def book_figures_missing_text(page: Path) -> list[str]:
    """Figures of a MyST page without alt text or caption: code cells that draw, ``{figure}`` and
    ``{glue:figure}`` directives without ``:alt:``/caption, and Markdown images without alt text."""
    text = page.read_text(encoding="utf-8")
    problems = []
    for match in re.finditer(r"```\{code-cell\}[^\n]*\n(.*?)```", text, flags=re.S):
        body = match.group(1)
        front = re.match(r"---\n(.*?)\n---\n", body, flags=re.S)  # the cell's metadata as a YAML block
        options = (front.group(1) if front else "") + "\n" + \
            "\n".join(line for line in body.splitlines() if line.startswith(":"))
        source = body[front.end():] if front else body
        source = "\n".join(line for line in source.splitlines() if not line.startswith(":"))
        if not _FIGURE_CODE.search(source) or "remove-output" in options:
            continue
        line = text[: match.start()].count("\n") + 1
        if not re.search(r"alt:\s*\S", options):
            problems.append(f"{page.name}:{line}: figure cell without `image: alt:` in its mystnb options")
        if not re.search(r"caption:\s*\S", options):
            problems.append(f"{page.name}:{line}: figure cell without `figure: caption:` in its mystnb options")
    for match in re.finditer(r"```\{(glue:figure|figure)\}[^\n]*\n(.*?)```", text, flags=re.S):
        body = match.group(2)
        line = text[: match.start()].count("\n") + 1
        caption = [l for l in body.splitlines() if l.strip() and not l.startswith(":")]
        if not re.search(r":alt:\s*\S", body):
            problems.append(f"{page.name}:{line}: {{{match.group(1)}}} without :alt:")
        if not caption:
            problems.append(f"{page.name}:{line}: {{{match.group(1)}}} without a caption")
    for match in re.finditer(r"!\[([^\]]*)\]\(([^)]+)\)", text):
        if not match.group(1).strip():
            line = text[: match.start()].count("\n") + 1
            problems.append(f"{page.name}:{line}: image {match.group(2)} without alt text")
    return problems
