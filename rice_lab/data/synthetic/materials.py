"""The materials of a scene: their mask codes and their reflectance in four bands."""

from __future__ import annotations

import numpy as np

MATERIALS: dict[str, int] = {
    "background": 0,     # soil (dry or wet)
    "leaf": 1,           # healthy tissue of a photographed blade
    "halo": 2,           # chlorotic (yellow) ring around a lesion
    "lesion_margin": 3,  # dark brown necrotic rim (the whole spot for most brown-spot lesions)
    "lesion_centre": 4,  # grey-white (blast) or tan (old brown spot) necrotic centre
    "dry_tip": 5,        # leaf tip dried to straw colour (nuisance)
    "dust": 6,           # dust speck on a leaf (nuisance)
    "insect_hole": 7,    # hole eaten through a blade and its browned rim (nuisance)
    "water": 8,          # paddy water
    "other_leaf": 9,     # leaves of neighbouring plants, in front of or behind the photographed ones
    "stamp": 10,         # the planted date-stamp shortcut (training images only, when asked for)
}
MATERIAL_NAMES: dict[int, str] = {code: name for name, code in MATERIALS.items()}
LESION_CODES: tuple[int, ...] = (MATERIALS["lesion_margin"], MATERIALS["lesion_centre"])
SYMPTOM_CODES: tuple[int, ...] = (MATERIALS["halo"],) + LESION_CODES
NUISANCE_CODES: tuple[int, ...] = (MATERIALS["dry_tip"], MATERIALS["dust"], MATERIALS["insect_hole"])

BANDS: tuple[str, ...] = ("blue", "green", "red", "nir")
# Mid-range textbook reflectances (fraction of light reflected) per band; see book/data.md.
REFLECTANCE: dict[str, tuple[float, float, float, float]] = {
    "leaf": (0.05, 0.125, 0.055, 0.47),
    "chlorotic": (0.07, 0.21, 0.16, 0.40),
    "necrotic_dark": (0.045, 0.06, 0.10, 0.26),   # brown lesion margin
    "necrotic_grey": (0.17, 0.19, 0.21, 0.30),    # blast centre
    "necrotic_tan": (0.10, 0.14, 0.22, 0.30),     # older brown-spot centre
    "straw": (0.15, 0.23, 0.28, 0.40),            # dried leaf tip
    "soil": (0.12, 0.17, 0.25, 0.32),
    "water": (0.065, 0.05, 0.03, 0.01),
    "dust": (0.16, 0.19, 0.23, 0.31),
}


def lesion_mask(mask: np.ndarray) -> np.ndarray:
    """True where a material mask shows necrotic lesion tissue (margin or centre, not the halo)."""
    return np.isin(mask, LESION_CODES)
