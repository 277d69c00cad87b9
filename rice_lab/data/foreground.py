"""Leaf (foreground) masks estimated from the photos alone, and how well they match the synthetic truth.

A later pre-training recipe randomises the background of each photo; on the real data there are no
masks, so the leaf must be found from the pixels: healthy tissue reflects little red and much NIR
(``../shared/reference/LEAVES.md``), so a vegetation index (NDVI for the R-G-NIR photo, excess green
for the RGB one) above a per-camera threshold marks the leaf, and a small closing keeps the lesions
(whose index is low) inside their blade.

No label leak: :func:`vegetation_index`, :func:`leaf_mask` and :func:`estimate_folder` see photos only.
Material masks enter through :func:`blade_mask`, for evaluation (:func:`foreground_report`) and for
fitting the thresholds once (:func:`fit_threshold`), never while estimating.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.ndimage import binary_closing

from rice_lab.data.synthetic.materials import MATERIALS, lesion_mask
from rice_lab.data.zindi import CAMERAS, IMAGE_EXTENSIONS, load_image, plant_id_of, read_mask
from rice_lab.errors import ConfigError, DataError

# Default thresholds: fitted once with fit_threshold (which applies the closing below) on two synthetic
# folders made with seeds the tests and the book do not use: 200 plants at 64 px (seed 7) and 200 at
# 128 px (seed 8), 400 images per camera (fit_folder_thresholds, about 4 minutes on one core). Mean blade
# IoU there: rgb 0.552, rgnir 0.605; the bare threshold (no closing), refitted the same way, reaches
# rgb 0.541 (at 0.13), rgnir 0.598 (at 0.10). The IoU is capped by the neighbouring plants' leaves,
# the same tissue as the blades (see VEGETATION_CODES and foreground_report's vegetation_iou).
THRESHOLDS: dict[str, float] = {"rgb": 0.15, "rgnir": 0.11}
# Closing radius as a fraction of the image width (1 px at 64 px, 3 px at 128 px, 10 px at 500 px), so
# the clean-up spans the same part of a leaf at any resolution. Chosen on the fitting set above among
# radii 0-2 px at 64 px and 0-4 px at 128 px: the best were 1 px and 3 px respectively.
CLOSING_FRACTION = 1 / 48
# Candidate thresholds for fit_threshold: both indices live in [-1, 2]; the 0.01 step is far finer
# than the spread of a leaf's index (about 0.1), so a finer grid would not change the IoU.
FIT_GRID = np.round(np.arange(-0.5, 1.0 + 1e-9, 0.01), 2)

# Codes on a photographed blade: its tissue (leaf), the symptoms drawn on it (halo, lesion margin and
# centre) and the nuisances the generator puts on blades: dried tips and insect holes (main blades
# only: rendering re-codes other blades' dry tips as other_leaf; the hole code covers the hole and its
# rim, inside the blade's outline) and dust (specks on leafy pixels, under half a pixel at 64 px).
# Not on the blade: soil (background), paddy water, the leaves of neighbouring plants (other_leaf) and
# the planted date stamp, an artefact printed over the picture.
BLADE_CODES: tuple[int, ...] = tuple(MATERIALS[name] for name in (
    "leaf", "halo", "lesion_margin", "lesion_centre", "dry_tip", "dust", "insect_hole"))
# All vegetation in view: the blades and the neighbouring plants' leaves, which a colour index cannot
# tell apart (same tissue); reported beside the blade IoU to show what that costs.
VEGETATION_CODES: tuple[int, ...] = BLADE_CODES + (MATERIALS["other_leaf"],)


# --------------------------------------------------------------------------------------------------
# Estimation: photos only.


def _check_camera(camera: str) -> str:
    if camera not in CAMERAS:
        raise ConfigError(f"camera={camera!r}: expected one of {', '.join(CAMERAS)}")
    return camera


def _unit_float(image: np.ndarray) -> np.ndarray:
    """An HxWx3 photo as float32 in [0, 1]; ConfigError for any other shape, dtype or range."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        shape = getattr(image, "shape", type(image).__name__)
        raise ConfigError(f"image shape {shape}: expected a (height, width, 3) array")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255)
    if not np.issubdtype(image.dtype, np.floating):
        raise ConfigError(f"image dtype {image.dtype}: expected uint8 (0-255) or float in [0, 1]")
    low, high = float(np.min(image)), float(np.max(image))
    if not (0.0 <= low and high <= 1.0):  # also catches NaN
        raise ConfigError(f"image values in [{low:g}, {high:g}]: a float image must lie in [0, 1] "
                          "(pass uint8 for 0-255)")
    return image.astype(np.float32)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (a black pixel carries no colour)."""
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def vegetation_index(image: np.ndarray, camera: str) -> np.ndarray:
    """Per-pixel HxW float32 index: NDVI (rgnir, in [-1, 1]) or excess green 2g - r - b (rgb, in [-1, 2]).

    ``image`` is an HxWx3 uint8 array (0-255) or a float array in [0, 1], channels (R, G, B) for
    "rgb" and (R, G, NIR) for "rgnir", as the JPEGs store them (no gamma removed: both indices are
    ratios of the encoded values, and a threshold is fitted on the same values).
    """
    _check_camera(camera)
    pixels = _unit_float(image)
    red, green, third = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    if camera == "rgnir":
        return _ratio(third - red, third + red)
    # Chromatic coordinates r, g, b = R/S, G/S, B/S: brightness (exposure, shadows) cancels out.
    return _ratio(2 * green - red - third, red + green + third)


def closing_radius(width: int) -> int:
    """Radius in pixels of the clean-up's disk for an image ``width`` pixels wide (at least 1)."""
    return max(1, int(round(width * CLOSING_FRACTION)))


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return xx**2 + yy**2 <= radius**2


def clean_mask(estimate: np.ndarray) -> np.ndarray:
    """Binary closing of an estimated HxW mask with a small disk, so lesions inside a blade stay leaf."""
    radius = closing_radius(estimate.shape[1])
    # Padding with the edge values first: scipy's closing treats the outside as background, which
    # would erode every blade that leaves the frame (most do) along the border.
    padded = np.pad(estimate, radius, mode="edge")
    closed = binary_closing(padded, structure=_disk(radius))
    return closed[radius:-radius, radius:-radius]


def _threshold_of(camera: str, threshold: float | None) -> float:
    if threshold is None:
        return THRESHOLDS[camera]
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not np.isfinite(threshold):
        raise ConfigError(f"threshold={threshold!r}: expected a finite number or None (the fitted default)")
    return float(threshold)


def leaf_mask(image: np.ndarray, camera: str, threshold: float | None = None, clean: bool = True) -> np.ndarray:
    """Boolean HxW leaf mask of one photo: vegetation index above ``threshold``, then :func:`clean_mask`."""
    level = _threshold_of(_check_camera(camera), threshold)
    mask = vegetation_index(image, camera) > level
    return clean_mask(mask) if clean else mask


def leaf_masks(images, camera: str) -> "torch.Tensor":  # noqa: F821
    """:func:`leaf_mask` of each decoded photo: uint8 (N, 3, H, W) tensor -> uint8 (N, 1, H, W) of 0 / 1.

    What the pre-training views read to tell leaf from ground: the photos and nothing else.
    """
    import torch

    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ConfigError(f"images {tuple(images.shape)} {images.dtype}: expected uint8 (photos, 3, height, width)")
    out = torch.zeros(images.shape[0], 1, *images.shape[2:], dtype=torch.uint8)
    for i, photo in enumerate(images.permute(0, 2, 3, 1).numpy()):
        out[i, 0] = torch.from_numpy(leaf_mask(photo, camera).astype(np.uint8))
    return out


def _image_files(root: Path) -> list[Path]:
    images = root / "images"
    if not images.is_dir():
        raise DataError(f"{images}: not found (expected the Zindi layout: images/id_<x>.jpg)")
    return [p for p in sorted(images.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]


def _first_plants(plant_ids: Sequence[str], max_plants: int | None) -> set[str]:
    if max_plants is not None and (isinstance(max_plants, bool) or not isinstance(max_plants, int)
                                   or max_plants < 1):
        raise ConfigError(f"max_plants={max_plants!r}: expected a positive whole number or None (all)")
    unique = list(dict.fromkeys(plant_ids))
    return set(unique if max_plants is None else unique[:max_plants])


def estimate_folder(root: str | Path, max_plants: int | None = None) -> dict[str, np.ndarray]:
    """Estimated leaf mask of each photo in ``root/images`` by file name (first ``max_plants`` plants by name)."""
    files = _image_files(Path(root))
    keep = _first_plants([plant_id_of(p.name)[0] for p in files], max_plants)
    return {path.name: _estimate_file(path) for path in files if plant_id_of(path.name)[0] in keep}


def _estimate_file(path: Path) -> np.ndarray:
    """The leaf mask of one photo file; the camera comes from its name (``_rgn``), nothing else is read."""
    return leaf_mask(np.asarray(load_image(path)), plant_id_of(path.name)[1])


# --------------------------------------------------------------------------------------------------
# Evaluation and fitting: material masks allowed.


def blade_mask(material_mask: np.ndarray) -> np.ndarray:
    """True on the photographed blades: codes in :data:`BLADE_CODES` (tissue, symptoms, blade nuisances)."""
    return np.isin(material_mask, BLADE_CODES)


def mask_iou(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks of one shape (1.0 when both are empty)."""
    estimate, truth = np.asarray(estimate, dtype=bool), np.asarray(truth, dtype=bool)
    if estimate.shape != truth.shape:
        raise ConfigError(f"mask shapes {estimate.shape} and {truth.shape}: expected the same shape")
    union = int(np.count_nonzero(estimate | truth))
    return 1.0 if union == 0 else int(np.count_nonzero(estimate & truth)) / union


def _plateau_middle(candidates: np.ndarray, scores: np.ndarray) -> float:
    """The middle of the run of best-scoring candidates around the first best one (robust to ties)."""
    best = scores.max()
    first = int(np.argmax(scores))
    last = first
    while last + 1 < len(scores) and scores[last + 1] >= best - 1e-12:
        last += 1
    return float(candidates[(first + last) // 2])


def fit_threshold(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], camera: str,
                  candidates: Sequence[float] | None = None, clean: bool = True) -> float:
    """The candidate threshold maximising the mean IoU of :func:`leaf_mask` against ``masks``.

    ``masks`` are boolean truth masks (for the synthetic data: :func:`blade_mask` of the material
    masks), one per image; ``candidates`` default to :data:`FIT_GRID`; ``clean=False`` fits the bare
    threshold (no closing). Ties resolve to the middle of the best run, so a gap between the two
    classes' index values gives a threshold in the middle of the gap.
    """
    _check_camera(camera)
    if len(images) == 0 or len(images) != len(masks):
        raise ConfigError(f"fit_threshold: {len(images)} images and {len(masks)} masks; expected the same "
                          "number, at least one")
    grid = np.asarray(FIT_GRID if candidates is None else candidates, dtype=np.float64)
    scores = np.zeros(len(grid))
    for image, truth in zip(images, masks):
        index = vegetation_index(image, camera)
        truth = np.asarray(truth, dtype=bool)
        scores += [mask_iou(clean_mask(index > t) if clean else index > t, truth) for t in grid]
    return _plateau_middle(grid, scores / len(images))


def _folder_truth(roots: Sequence[str | Path]) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """Every photo of the folders with its blade mask, by camera."""
    out: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {camera: ([], []) for camera in CAMERAS}
    for root in map(Path, roots):
        for path in _image_files(root):
            images, masks = out[plant_id_of(path.name)[1]]
            images.append(np.asarray(load_image(path)))
            masks.append(blade_mask(read_mask(root / "masks" / f"{path.stem}.png")))
    return out


def fit_folder_thresholds(roots: Sequence[str | Path]) -> dict[str, float]:
    """:func:`fit_threshold` per camera on all photos of synthetic folders (how :data:`THRESHOLDS` were made)."""
    return {camera: fit_threshold(images, masks, camera)
            for camera, (images, masks) in _folder_truth(roots).items()}


def _metadata(root: Path) -> pd.DataFrame:
    path = root / "metadata.csv"
    if not path.is_file():
        raise DataError(f"{path}: not found; the foreground report needs a synthetic folder (with "
                        "metadata.csv and masks/)")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _image_row(root: Path, row: pd.Series) -> dict:
    """One image's scores: blade IoU, the all-foreground baseline, vegetation IoU, lesion recall."""
    stem = Path(row["Image_id"]).stem
    estimate = _estimate_file(root / "images" / row["Image_id"])  # the same path as estimate_folder
    codes = read_mask(root / "masks" / f"{stem}.png")
    truth = blade_mask(codes)
    lesions = lesion_mask(codes)
    return {
        "image_id": row["Image_id"], "plant_id": row["plant_id"], "camera": row["camera"],
        "background": row["background"], "label": row["true_label"], "split": row["split"],
        "iou": mask_iou(estimate, truth),
        "baseline_iou": float(truth.mean()),  # IoU of the all-foreground mask = the blade's area fraction
        "vegetation_iou": mask_iou(estimate, np.isin(codes, VEGETATION_CODES)),
        "lesion_pixels": int(lesions.sum()),
        "lesion_recall": float(estimate[lesions].mean()) if lesions.any() else np.nan,
    }


def foreground_report(root: str | Path, max_plants: int | None = None) -> pd.DataFrame:
    """One row per image of a synthetic folder (first ``max_plants`` plants of metadata.csv): IoU and baselines.

    Columns: image_id, plant_id, camera, background, label (true label), split, iou (against
    :func:`blade_mask`), baseline_iou (the all-foreground mask's IoU, i.e. the blade's area
    fraction), vegetation_iou (against blades and other plants' leaves), lesion_pixels, lesion_recall
    (fraction of lesion pixels inside the estimate). :func:`foreground_summary` groups it.
    """
    root = Path(root).expanduser().resolve()
    meta = _metadata(root)
    keep = _first_plants(meta["plant_id"].tolist(), max_plants)
    rows = [_image_row(root, row) for _, row in meta.iterrows() if row["plant_id"] in keep]
    return pd.DataFrame(rows)


def foreground_summary(report: pd.DataFrame) -> pd.DataFrame:
    """Mean IoU, baseline, vegetation IoU, pooled lesion recall and n per camera and background type."""
    grouped = report.groupby(["camera", "background"], sort=True)
    summary = grouped.agg(n=("iou", "size"), mean_iou=("iou", "mean"), baseline_iou=("baseline_iou", "mean"),
                          vegetation_iou=("vegetation_iou", "mean"))
    # Pooled over pixels: per-image recall of a 2-pixel lesion would weigh as much as a large spot's.
    weights = report["lesion_recall"].fillna(0) * report["lesion_pixels"]
    pooled = weights.groupby([report["camera"], report["background"]]).sum()
    summary["lesion_recall"] = pooled / grouped["lesion_pixels"].sum().replace(0, np.nan)
    return summary.reset_index()
