"""A colour-blind-safe palette for material masks: one colour per code of ``MATERIALS``, with legends.

The Okabe-Ito colours (plus greys) keep leaf, halo and lesion apart for the three common colour-vision
deficiencies (``tests/test_course_accessibility.py`` measures it); ``mask_legend`` names each material
a panel shows, so colour is never the only signal. ``NDVI_CMAP`` is for vegetation indices: uniform
lightness and no red/green opposition, always drawn with a colorbar.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Material code -> (name, colour); names follow rice_lab.data.synthetic.MATERIALS.
MATERIAL_COLOURS: dict[int, tuple[str, str]] = {
    0: ("background", "#3d3d3d"),     # dark grey
    1: ("leaf", "#009E73"),           # bluish green
    2: ("halo", "#F0E442"),           # yellow
    3: ("lesion_margin", "#D55E00"),  # vermillion
    4: ("lesion_centre", "#CC79A7"),  # reddish purple
    5: ("dry_tip", "#E69F00"),        # orange
    6: ("dust", "#FFFFFF"),           # white
    7: ("insect_hole", "#000000"),    # black
    8: ("water", "#0072B2"),          # blue
    9: ("other_leaf", "#56B4E9"),     # sky blue
    10: ("stamp", "#B0B0B0"),         # light grey
}
MASK_CMAP_NAME = "rice-lab-materials"
NDVI_CMAP = "cividis"  # NDVI in [-1, 1]: uniform lightness, no red/green opposition; always with a colorbar


def _register() -> Any:
    import matplotlib
    from matplotlib.colors import ListedColormap

    if MASK_CMAP_NAME not in matplotlib.colormaps:
        colours = [MATERIAL_COLOURS[k][1] for k in sorted(MATERIAL_COLOURS)]
        matplotlib.colormaps.register(ListedColormap(colours, name=MASK_CMAP_NAME))
    return matplotlib.colormaps[MASK_CMAP_NAME]


MASK_CMAP = _register()
MASK_RANGE = {"vmin": -0.5, "vmax": len(MATERIAL_COLOURS) - 0.5}  # one colour per integer code


def show_mask(ax: Any, mask: np.ndarray) -> Any:
    """Draw a material mask with the course palette and a legend of the materials it holds."""
    image = ax.imshow(mask, cmap=MASK_CMAP, interpolation="nearest", **MASK_RANGE)
    mask_legend(ax, mask)
    return image


def mask_legend(ax: Any, mask: np.ndarray, **kwargs: Any) -> Any:
    """A legend on ``ax`` naming (with its colour) every material code present in ``mask``."""
    from matplotlib.patches import Patch

    codes = [int(c) for c in np.unique(np.asarray(mask)) if int(c) in MATERIAL_COLOURS]
    handles = [Patch(facecolor=MATERIAL_COLOURS[c][1], edgecolor="black", label=MATERIAL_COLOURS[c][0])
               for c in codes]
    options = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "fontsize": 7, "frameon": False, **kwargs}
    return ax.legend(handles=handles, **options)
