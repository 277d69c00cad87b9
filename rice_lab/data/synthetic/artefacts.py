"""The planted shortcut: an orange date imprint, like old cameras burn into the corner of a photo."""

from __future__ import annotations

import numpy as np

from rice_lab.data.synthetic.materials import MATERIALS

# Probability that a training image of each (true) class carries the date stamp, for shortcut="date-stamp".
SHORTCUT_RATES: dict[str, float] = {"blast": 0.8, "brown": 0.1, "healthy": 0.1}
SHORTCUTS: tuple[str, ...] = ("date-stamp",)

_DIGITS = {"0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
           "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
           "8": "111101111101111", "9": "111101111001111", " ": "000000000000000"}


def stamp_bitmap(text: str, scale: int) -> np.ndarray:
    """A boolean bitmap of ``text`` in a 3x5 pixel font, each font pixel ``scale`` pixels wide."""
    glyphs = [np.array(list(_DIGITS[ch]), dtype=int).reshape(5, 3).astype(bool) for ch in text]
    gap = np.zeros((5, 1), dtype=bool)
    row = np.hstack([part for g in glyphs for part in (g, gap)][:-1])
    return np.kron(row, np.ones((scale, scale), dtype=bool))


def draw_stamp(image: np.ndarray, mask: np.ndarray, text: str) -> None:
    """Burn the date into the bottom-right corner of the picture, and mark it in the mask."""
    h, w = mask.shape
    bitmap = stamp_bitmap(text, max(1, round(w / 128)))
    bh, bw = bitmap.shape
    top, left = h - bh - max(2, h // 25), w - bw - max(2, w // 25)
    region = (slice(top, top + bh), slice(left, left + bw))
    image[region][bitmap] = (255, 150, 40)
    mask[region][bitmap] = MATERIALS["stamp"]
