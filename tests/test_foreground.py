"""Leaf masks estimated from photos alone (rice_lab.data.foreground): formulas, fit, quality, no label leak."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rice_lab.data import foreground as fg
from rice_lab.data.synthetic import MATERIALS
from rice_lab.data.zindi import load_image, read_mask
from rice_lab.errors import ConfigError

ESTIMATORS = (fg.vegetation_index, fg.leaf_mask, fg.clean_mask, fg.estimate_folder)


@pytest.fixture(scope="module")
def report(synth_root: Path) -> pd.DataFrame:
    return fg.foreground_report(synth_root)


def _photos(root: Path, camera: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every photo of one camera in a synthetic folder with its true blade mask."""
    suffix = "_rgn" if camera == "rgnir" else ""
    paths = sorted(p for p in (root / "images").glob("*.jpg") if p.stem.endswith("_rgn") == bool(suffix))
    images = [np.asarray(load_image(p)) for p in paths]
    masks = [fg.blade_mask(read_mask(root / "masks" / f"{p.stem}.png")) for p in paths]
    return images, masks


def _ndvi_image(values: np.ndarray) -> np.ndarray:
    """A float (R, G, NIR) image whose NDVI is ``values`` (at most 0.9): R = 0.05, NIR = R (1 + v) / (1 - v)."""
    red = np.full(values.shape, 0.05)
    return np.stack([red, np.full(values.shape, 0.3), red * (1 + values) / (1 - values)], axis=-1)


# --------------------------------------------------------------------------------------------------
# Formulas.


def test_ndvi_and_excess_green_of_hand_made_pixels_follow_the_formulas() -> None:
    rgn = np.array([[[50, 90, 200], [0, 0, 0]]], dtype=np.uint8)
    ndvi = fg.vegetation_index(rgn, "rgnir")
    assert ndvi.shape == (1, 2)
    assert ndvi[0, 0] == pytest.approx((200 - 50) / (200 + 50), abs=1e-6)
    assert ndvi[0, 1] == 0.0  # black: no colour, neither leaf nor soil
    rgb = np.array([[[0.2, 0.5, 0.3], [0.6, 0.2, 0.2]]])
    exg = fg.vegetation_index(rgb, "rgb")
    assert exg[0, 0] == pytest.approx(2 * 0.5 - 0.2 - 0.3, abs=1e-6)  # r, g, b already sum to 1
    assert exg[0, 1] == pytest.approx((0.4 - 0.8) / 1.0, abs=1e-6)
    # uint8 and the same picture as float in [0, 1] give the same index; brightness cancels out.
    assert np.allclose(fg.vegetation_index(rgn.astype(np.float64) / 255, "rgnir"), ndvi, atol=1e-6)
    assert np.allclose(fg.vegetation_index(rgb * 0.5, "rgb"), exg, atol=1e-6)


def test_closing_keeps_blades_that_leave_the_frame_and_fills_a_small_lesion() -> None:
    values = np.full((51, 64), 0.6)
    values[20:22, 30:32] = -0.1  # a 2 x 2 px lesion: low index inside the leaf
    mask = fg.leaf_mask(_ndvi_image(values), "rgnir")
    assert mask.all()  # no erosion along the border, the lesion filled
    assert not fg.leaf_mask(_ndvi_image(values), "rgnir", clean=False)[20:22, 30:32].any()


# --------------------------------------------------------------------------------------------------
# Fitting.


@pytest.mark.parametrize("gap", [(0.1, 0.3), (0.45, 0.75)])
@pytest.mark.parametrize("clean", [False, True])
def test_fit_threshold_recovers_a_known_separating_threshold(gap: tuple[float, float], clean: bool) -> None:
    rng = np.random.default_rng(0)
    images, masks = [], []
    for _ in range(4):
        truth = np.zeros((40, 48), dtype=bool)
        top, left = rng.integers(0, 20, 2)
        truth[top:top + 15, left:left + 20] = True  # a rectangle: convex, so the closing leaves it alone
        values = np.where(truth, rng.uniform(gap[1], 0.9, truth.shape), rng.uniform(-0.5, gap[0], truth.shape))
        images.append(_ndvi_image(values))
        masks.append(truth)
    fitted = fg.fit_threshold(images, masks, "rgnir", clean=clean)
    assert gap[0] <= fitted < gap[1]
    assert fitted == pytest.approx(sum(gap) / 2, abs=0.02)  # ties resolve to the middle of the gap
    assert all(fg.mask_iou(fg.leaf_mask(i, "rgnir", fitted, clean), m) == 1.0 for i, m in zip(images, masks))


def test_default_thresholds_are_as_good_as_a_refit_on_other_data(synth_root: Path) -> None:
    # The defaults were fitted on other seeds; a refit on this folder moves them a little (measured: to
    # 0.17 for rgb), but the IoU curve is flat near its top: the defaults lose under 0.005 here, and
    # 0.02 is lost by moving rgnir's threshold 0.04 off.
    for camera in fg.CAMERAS:
        images, masks = _photos(synth_root, camera)
        refit = fg.fit_threshold(images, masks, camera, candidates=np.round(np.arange(0.0, 0.31, 0.01), 2))
        def mean_iou(threshold: float) -> float:
            scores = [fg.mask_iou(fg.leaf_mask(i, camera, threshold), m) for i, m in zip(images, masks)]
            return float(np.mean(scores))
        assert mean_iou(fg.THRESHOLDS[camera]) >= mean_iou(refit) - 0.02, camera


# --------------------------------------------------------------------------------------------------
# Quality on the synthetic folder (measured on it: IoU rgb 0.52, rgnir 0.55; baselines 0.26; vegetation
# IoU 0.86 and 0.93; pooled lesion recall 0.75 and 0.85, 0.34 and 0.66 without the closing).


def test_estimated_masks_beat_the_all_foreground_baseline_by_a_wide_margin(report: pd.DataFrame) -> None:
    # Margin 0.15: measured gaps are 0.26 (rgb) and 0.30 (rgnir), and the standard error of a mean IoU
    # over 48 images is about 0.03, so 0.15 fails only if the estimate lost about half of its skill.
    for camera, rows in report.groupby("camera"):
        assert rows["iou"].mean() >= rows["baseline_iou"].mean() + 0.15, camera
        assert (rows["iou"] > rows["baseline_iou"]).mean() >= 0.8, camera
        # Against all vegetation (blades and other plants' leaves, the same tissue) the index is sharp.
        assert rows["vegetation_iou"].mean() >= 0.75, camera


def test_most_lesion_pixels_stay_inside_the_estimated_leaf(synth_root: Path, report: pd.DataFrame) -> None:
    pixels = report.groupby("camera")["lesion_pixels"].sum()
    inside = report["lesion_recall"].fillna(0) * report["lesion_pixels"]
    recall = inside.groupby(report["camera"]).sum() / pixels
    assert (pixels > 100).all()
    assert (recall > 0.6).all(), recall.to_dict()
    # ... thanks to the closing: lesions have a low index, and the bare threshold loses many of them.
    for camera in fg.CAMERAS:
        images, _ = _photos(synth_root, camera)
        suffix = "_rgn" if camera == "rgnir" else ""
        lesions = [read_mask(p) for p in sorted((synth_root / "masks").glob("*.png"))
                   if p.stem.endswith("_rgn") == bool(suffix)]
        lesions = [np.isin(codes, (MATERIALS["lesion_margin"], MATERIALS["lesion_centre"])) for codes in lesions]
        bare = sum(int(fg.leaf_mask(i, camera, clean=False)[m].sum()) for i, m in zip(images, lesions))
        closed = sum(int(fg.leaf_mask(i, camera)[m].sum()) for i, m in zip(images, lesions))
        assert closed >= bare + 0.1 * sum(int(m.sum()) for m in lesions), camera


def test_report_has_one_row_per_image_and_a_summary_per_camera_and_background(synth_root: Path,
                                                                              report: pd.DataFrame) -> None:
    meta = pd.read_csv(synth_root / "metadata.csv")
    assert len(report) == len(meta) == 96
    assert {"camera", "background", "label", "iou", "baseline_iou"} <= set(report.columns)
    assert report["iou"].between(0, 1).all()
    summary = fg.foreground_summary(report)
    assert summary["n"].sum() == len(report)
    assert set(summary["camera"]) == set(fg.CAMERAS)
    assert set(summary["background"]) == set(meta["background"])
    assert len(fg.foreground_report(synth_root, max_plants=3)) == 6


# --------------------------------------------------------------------------------------------------
# Truth masks and IoU.


def test_blade_mask_counts_exactly_the_materials_on_a_blade() -> None:
    on_blade = {"leaf", "halo", "lesion_margin", "lesion_centre", "dry_tip", "dust", "insect_hole"}
    off_blade = {"background", "water", "other_leaf", "stamp"}
    assert on_blade | off_blade == set(MATERIALS)  # a new material must be put on one side
    codes = np.array([list(MATERIALS.values())], dtype=np.uint8)
    got = {name for name, code in MATERIALS.items() if fg.blade_mask(codes)[0, list(MATERIALS).index(name)]}
    assert got == on_blade


def test_mask_iou_of_hand_made_masks() -> None:
    a = np.array([[1, 1, 0, 0]], dtype=bool)
    b = np.array([[0, 1, 1, 0]], dtype=bool)
    assert fg.mask_iou(a, b) == pytest.approx(1 / 3)
    assert fg.mask_iou(a, a) == 1.0
    assert fg.mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0


# --------------------------------------------------------------------------------------------------
# No label leak.


def test_estimation_takes_no_mask_or_label_argument() -> None:
    for function in ESTIMATORS:
        for name in inspect.signature(function).parameters:
            assert not any(word in name for word in ("mask", "label", "lesion", "material", "truth")), \
                (function.__name__, name)
    source = inspect.getsource(fg._estimate_file) + "".join(inspect.getsource(f) for f in ESTIMATORS)
    for forbidden in ("read_mask", "lesion_mask", "blade_mask", "metadata", ".csv"):
        assert forbidden not in source


def test_leaf_masks_do_not_change_with_or_without_masks_and_labels(synth_root: Path, tmp_path: Path) -> None:
    names = sorted(p.name for p in (synth_root / "images").iterdir())[:6]  # three plants, both cameras
    bare, labelled = tmp_path / "bare", tmp_path / "labelled"
    for folder in (bare, labelled):
        (folder / "images").mkdir(parents=True)
        for name in names:
            shutil.copy(synth_root / "images" / name, folder / "images" / name)
    # The labelled copy carries masks that say "all lesion" and labels, besides the same photos.
    (labelled / "masks").mkdir()
    for name in names:
        shape = np.asarray(load_image(synth_root / "images" / name)).shape[:2]
        lesion = np.full(shape, MATERIALS["lesion_margin"], np.uint8)
        Image.fromarray(lesion, "L").save(labelled / "masks" / f"{Path(name).stem}.png")
    shutil.copy(synth_root / "metadata.csv", labelled / "metadata.csv")
    shutil.copy(synth_root / "Train.csv", labelled / "Train.csv")
    without, with_masks = fg.estimate_folder(bare), fg.estimate_folder(labelled)
    full = fg.estimate_folder(synth_root, max_plants=3)
    assert sorted(without) == sorted(with_masks) == sorted(full) == names
    for name in names:
        assert without[name].dtype == bool
        assert np.array_equal(without[name], with_masks[name])
        assert np.array_equal(without[name], full[name])


# --------------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("call, named", [
    (lambda: fg.vegetation_index(np.zeros((4, 4), np.uint8), "rgb"), "(4, 4)"),
    (lambda: fg.leaf_mask(np.zeros((4, 4, 4), np.uint8), "rgnir"), "(4, 4, 4)"),
    (lambda: fg.leaf_mask(np.zeros((4, 4, 3), np.uint8), "nir"), "'nir'"),
    (lambda: fg.vegetation_index(np.zeros((4, 4, 3), np.uint8), "RGB"), "'RGB'"),
    (lambda: fg.vegetation_index(np.full((4, 4, 3), 200.0), "rgb"), "200"),
    (lambda: fg.vegetation_index(np.zeros((4, 4, 3), np.int16), "rgb"), "int16"),
    (lambda: fg.leaf_mask(np.zeros((4, 4, 3), np.uint8), "rgb", threshold=float("nan")), "nan"),
    (lambda: fg.mask_iou(np.zeros((2, 3), bool), np.zeros((3, 2), bool)), "(2, 3)"),
    (lambda: fg.fit_threshold([], [], "rgb"), "0 images"),
    (lambda: fg.fit_threshold([np.zeros((4, 4, 3), np.uint8)], [np.zeros((4, 4), bool)], "ndvi"), "'ndvi'"),
], ids=["2d", "4-channels", "camera-nir", "camera-RGB", "float-255", "int16", "nan-threshold", "iou-shapes",
        "fit-empty", "fit-camera"])
def test_bad_input_raises_config_error_naming_the_value(call, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        call()
    message = str(err.value)
    assert named in message and "\n" not in message


def test_bad_max_plants_raises_config_error(synth_root: Path) -> None:
    with pytest.raises(ConfigError, match="max_plants=0"):
        fg.estimate_folder(synth_root, max_plants=0)
