"""Checks for assignment 01-data: pair the cameras, split by plant, channel statistics, show a plant.

Each ``check_*`` runs the learner's function on freshly generated cases and checks the properties a
right answer has (comparing with ``rice_lab``'s reference where the answer is unique); when one fails,
the reference's known slips pick the hint. ``check_*_hidden`` adds the cases used only when grading.
A check receives the learner's function itself (in the learner's kernel) or a
:class:`autograder.remote.RemoteFunction` (when grading, from a process the learner's code cannot reach).
"""

from __future__ import annotations

import importlib
import math
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from PIL import Image

from autograder import _kit
from autograder.figures import MATERIAL_COLOURS, SAFE_CMAPS
from rice_lab.data import zindi

Q1, Q2, Q3, Q4 = "pair_cameras", "split_by_plant", "channel_stats", "show_plant"


def _forbidden_stats() -> dict[str, Callable]:
    """The autograder's own statistics reference."""
    return {"the autograder's reference": _reference_stats}


def _forbidden(name: str, label: str) -> dict[str, Callable]:
    """The reference function ``name`` of rice_lab.data.zindi, as imported here and by the notebook."""
    found = {f"{label}": getattr(zindi, name)}
    loaded = sys.modules.get("rice_lab.data.zindi") or importlib.import_module("rice_lab.data.zindi")
    if getattr(loaded, name) is not found[label]:
        found[f"{label} (imported)"] = getattr(loaded, name)
    return found


# --- question 1: pair the two cameras ---------------------------------------------------------------

def _random_ids(gen: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))
    ids: set[str] = set()
    while len(ids) < n:
        ids.add("id_" + "".join(gen.choice(letters, size=int(gen.integers(5, 10)))))
    return sorted(ids)


def pairing_case(seed: int, mixed_extensions: bool = False) -> list[str]:
    """Image names of 20-40 complete plants plus a few one-camera orphans, shuffled."""
    gen = _kit.rng(seed)
    ids = _random_ids(gen, int(gen.integers(24, 44)))
    orphans = int(gen.integers(2, 5))
    extensions = [".jpg", ".JPG", ".png", ".jpeg"] if mixed_extensions else [".jpg"]
    names = []
    for k, plant_id in enumerate(ids):
        cameras = ["", "_rgn"] if k >= orphans else [["", "_rgn"][k % 2]]
        names += [plant_id + camera + str(gen.choice(extensions)) for camera in cameras]
    gen.shuffle(names)
    return names


def _compare_pairing(func: Callable, names: list[str], seed: int) -> int:
    expected = zindi.pair_files(names)[0]
    outcome = _kit.call(func, list(names))
    got = outcome.result
    if outcome.args[0] != names:
        _kit.fail(Q1, "the list of names left unchanged", "it was modified",
                  "build a new dict; do not sort, pop from or edit the list you are given", seed)
    if not isinstance(got, dict):
        _kit.fail(Q1, "a dict {plant_id: {'rgb': name, 'rgnir': name}}", type(got).__name__,
                  "return a dict keyed by plant id", seed)
    if set(got) != set(expected):
        _kit.fail(Q1, f"{len(expected)} plants, e.g. {sorted(expected)[:3]}",
                  f"{len(got)} plants, e.g. {sorted(map(str, got))[:3]}", _pairing_hint(got, expected, names),
                  seed)
    for plant_id, cameras in expected.items():
        if got[plant_id] != cameras:
            hint = ("'rgb' is the file without `_rgn`, 'rgnir' the one with it; keep the names exactly "
                    "as given (with their extension)")
            _kit.fail(Q1, {plant_id: cameras}, {plant_id: got[plant_id]}, hint, seed)
    return len(expected)


def _pairing_hint(got: dict, expected: dict, names: list[str]) -> str:
    keys = [str(k) for k in got]
    if any(k.lower().endswith("_rgn") or "_rgn." in k.lower() for k in keys):
        return (f"your pairing returned {len(got)} plants, expected {len(expected)}: RGNIR files must be "
                "matched by stripping `_rgn` from their stem")
    if any("." in k for k in keys):
        return "a plant id is the file name without its extension and without `_rgn` (e.g. 'id_abc')"
    missing = set(expected) - set(got)
    if missing and all(m.rstrip("_rgn") != m for m in missing):
        return (f"your pairing returned {len(got)} plants, expected {len(expected)}: the missing ones end in "
                "r, g or n, and rstrip('_rgn') strips any of those letters, not the suffix: use "
                "removesuffix('_rgn') or cut the last four characters")
    extra = set(got) - set(expected)
    if extra:
        return (f"your pairing returned {len(got)} plants, expected {len(expected)}: plants that lack one "
                f"of the two photos (e.g. {sorted(extra)[0]}) must be left out")
    if any(Path(n).suffix != Path(n).suffix.lower() for n in names):
        return (f"your pairing returned {len(got)} plants, expected {len(expected)}: extensions come in any "
                "case and kind (.jpg, .JPG, .png); compare stems, not full names")
    if not got and expected:
        return (f"no plant was paired, expected {len(expected)}: `id_x_rgn.jpg` is the RGNIR photo of plant "
                "`id_x`; match the two photos of a plant by stripping `_rgn` from the stem")
    return (f"your pairing returned {len(got)} plants, expected {len(expected)}: every plant with both an "
            "`id_x.jpg` and an `id_x_rgn.jpg` file must appear once")


PAIR_CAMERAS = _kit.Answer(
    Q1, "pair_cameras", lambda: _forbidden("pair_files", "rice_lab.data.pair_files"),
    hint="do not call rice_lab's pair_files (the reference answer): write the pairing yourself", module=__name__)


@_kit.check(PAIR_CAMERAS)
def check_pairing(pair_cameras: Callable, seed: int) -> None:
    """Visible check for question 1 on a fresh random list of image names."""
    names = pairing_case(seed)
    n = _compare_pairing(pair_cameras, names, seed)
    _kit.passed(Q1, [f"{n} plants paired from {len(names)} shuffled names",
                     "plants with only one photo are left out", "your input list is left unchanged"])


@_kit.check(PAIR_CAMERAS)
def check_pairing_hidden(pair_cameras: Callable, seed: int) -> None:
    """Hidden check for question 1: mixed extensions, an empty list, several fresh cases."""
    got = pair_cameras([])
    if got != {}:
        _kit.fail(Q1, {}, got, "no names, no plants: return an empty dict", seed)
    for k in range(3):
        _compare_pairing(pair_cameras, pairing_case(seed + k, mixed_extensions=True), seed + k)
    _kit.passed(Q1 + " (hidden)", ["mixed-case and .png/.jpeg extensions", "empty input"])


# --- question 2: a plant-level, label-stratified split ------------------------------------------------

def split_case(seed: int, tiny_class: bool = False, rounding: bool = False) -> tuple[pd.DataFrame, float]:
    """A Train.csv-like table (two rows per plant, shuffled) and a validation fraction; ``rounding``: every
    label's n * valid_pct ends in .75, where rounding and truncating disagree."""
    gen = _kit.rng(seed)
    counts = [int(gen.integers(6, 20)) for _ in zindi.CLASSES]
    if tiny_class:
        counts[int(gen.integers(len(counts)))] = 2
    if rounding:
        counts = [int(n) for n in gen.permutation([7, 11, 15])]
    ids = _random_ids(gen, sum(counts))
    labels = np.repeat(zindi.CLASSES, counts)
    gen.shuffle(labels)
    rows = [(plant_id + camera + ".jpg", label) for plant_id, label in zip(ids, labels)
            for camera in ("", "_rgn")]
    order = gen.permutation(len(rows))
    images = pd.DataFrame([rows[i] for i in order], columns=["Image_id", "Label"])
    return images, 0.25 if rounding else float(gen.choice([0.2, 0.25, 0.3]))


def allowed_valid_counts(n: int, valid_pct: float) -> set[int]:
    """Validation plants a label of ``n`` plants may get: n * valid_pct rounded to the nearest integer
    (either way on a tie: Python's round, numpy's and round-half-up are all right), at least 1 and
    at most n - 1."""
    exact = n * valid_pct
    low, high = math.floor(exact), math.ceil(exact)
    if abs(exact - low - 0.5) < 1e-9:
        nearest = {low, high}
    else:
        nearest = {low if exact - low < 0.5 else high}
    return {min(max(k, 1), n - 1) for k in nearest}


def _plants_per_label(images: pd.DataFrame) -> pd.Series:
    plant_ids = [zindi.plant_id_of(i)[0] for i in images["Image_id"]]
    plants = images.assign(plant_id=plant_ids).drop_duplicates("plant_id")
    return plants.groupby("Label").size().reindex(zindi.CLASSES, fill_value=0)


def _count_hint(counts: pd.Series, allowed: dict[str, set[int]], per_label: pd.Series, valid_pct: float) -> str:
    truncated = {label: min(max(int(n * valid_pct), 1), max(n - 1, 1)) for label, n in per_label.items()}
    if all(int(counts[label]) == truncated[label] for label in per_label.index):
        return (f"round n_plants * valid_pct to the nearest integer: int() truncates (int({per_label.iloc[0]} * "
                f"{valid_pct}) is {int(per_label.iloc[0] * valid_pct)}); take round(n_plants * valid_pct) plants")
    total_ok = any(abs(int(counts.sum()) - k) <= 1 for k in [round(int(per_label.sum()) * valid_pct)])
    for label, n in per_label.items():
        if counts[label] == 0 and min(allowed[label]) >= 1:
            return f"every label needs at least 1 validation plant ({label!r} has {n} plants and got none)"
        if counts[label] == n and n > 1:
            return f"leave at least one plant of each label in training ({label!r}: all {n} plants are in validation)"
    if total_ok:
        return (f"stratify by label: in each label take round(n_plants * valid_pct) plants (valid_pct={valid_pct}), "
                "not a fraction of all plants together")
    return (f"in each label take round(n_plants * valid_pct) plants (valid_pct={valid_pct}), at least 1 and at most "
            "n_plants - 1; count plants, not photos (every plant has two photos)")


def _split_of(outcome: Any) -> list | None:
    got = outcome.result if hasattr(outcome, "result") else outcome
    if not isinstance(got, pd.DataFrame) or "is_valid" not in got:
        return None
    return [bool(v) for v in got["is_valid"]]


def _compare_split(func: Callable, images: pd.DataFrame, valid_pct: float, seed: int, case: int) -> None:
    outcome = _kit.call(func, images.copy(), valid_pct=valid_pct, seed=seed)
    got = outcome.result
    if not outcome.args[0].equals(images):
        _kit.fail(Q2, "the input table unchanged", "it was modified",
                  "work on a copy: `images = images.copy()` before adding columns", case)
    if not isinstance(got, pd.DataFrame):
        _kit.fail(Q2, "a DataFrame", type(got).__name__, "return the table with two new columns", case)
    missing = [c for c in ("plant_id", "is_valid") if c not in got.columns]
    if missing:
        _kit.fail(Q2, "columns Image_id, Label, plant_id, is_valid", list(got.columns),
                  f"add the column(s) {missing}", case)
    if len(got) != len(images) or not got.index.equals(images.index) or \
            list(got["Image_id"]) != list(images["Image_id"]):
        _kit.fail(Q2, f"{len(images)} rows in the input's order and index", f"{len(got)} rows",
                  "keep every image row, in the order (and with the index) it came in", case)
    plant_ids = [zindi.plant_id_of(i)[0] for i in images["Image_id"]]
    if list(got["plant_id"]) != plant_ids:
        bad = next(k for k, (a, b) in enumerate(zip(got["plant_id"], plant_ids)) if a != b)
        hint = "the plant id is the Image_id without extension and `_rgn`"
        if str(got["plant_id"].iloc[bad]).endswith("_rgn"):
            hint = "strip `_rgn` too: both photos of a plant must get the same plant_id"
        _kit.fail(Q2, f"plant_id {plant_ids[bad]!r} for {images['Image_id'].iloc[bad]!r}",
                  repr(got["plant_id"].iloc[bad]), hint, case)
    if got["is_valid"].dtype != bool:
        _kit.fail(Q2, "is_valid of dtype bool", str(got["is_valid"].dtype), "use True/False values", case)
    sides = got.groupby("plant_id")["is_valid"].nunique()
    if (sides > 1).any():
        _kit.fail(Q2, "both photos of each plant on the same side",
                  f"{int((sides > 1).sum())} plants split across train and validation",
                  "choose validation *plants*, then mark all their photos; splitting photos puts the "
                  "validation plant in training too (leakage)", case)
    per_label = _plants_per_label(images)
    allowed = {label: allowed_valid_counts(int(n), valid_pct) for label, n in per_label.items()}
    plants = got.drop_duplicates("plant_id")
    counts = plants[plants["is_valid"]].groupby("Label").size().reindex(zindi.CLASSES, fill_value=0)
    if any(int(counts[label]) not in allowed[label] for label in zindi.CLASSES):
        expected = {label: sorted(allowed[label]) if len(allowed[label]) > 1 else min(allowed[label])
                    for label in zindi.CLASSES}
        _kit.fail(Q2, f"validation plants per label {expected}", f"{ {k: int(v) for k, v in counts.items()} }",
                  _count_hint(counts, allowed, per_label, valid_pct), case)
    again = _split_of(_kit.call(func, images.copy(), valid_pct=valid_pct, seed=seed))
    if again != [bool(v) for v in got["is_valid"]]:
        _kit.fail(Q2, "the same split for the same seed", "a different split",
                  "draw the random choice from np.random.default_rng(seed), not from global randomness", case)
    # Another seed may pick the same plants by chance when labels are small: only fail if three do.
    others = [_split_of(_kit.call(func, images.copy(), valid_pct=valid_pct, seed=seed + k)) for k in (1, 2, 3)]
    if all(other == again for other in others):
        _kit.fail(Q2, "a different split for a different seed", "the same split for seeds "
                  f"{seed}, {seed + 1}, {seed + 2} and {seed + 3}", "the seed must drive which plants are chosen", case)


SPLIT_BY_PLANT = _kit.Answer(
    Q2, "split_by_plant", lambda: _forbidden("split_plants", "rice_lab.data.split_plants"),
    hint="do not call rice_lab's split_plants (the reference answer): write the split yourself", module=__name__)


@_kit.check(SPLIT_BY_PLANT)
def check_split(split_by_plant: Callable, seed: int) -> None:
    """Visible check for question 2 on a fresh random Train.csv-like table."""
    images, valid_pct = split_case(seed)
    _compare_split(split_by_plant, images, valid_pct, seed, seed)
    _compare_split(split_by_plant, *split_case(seed, rounding=True), seed, seed)
    _kit.passed(Q2, [f"{len(images) // 2} plants, valid_pct={valid_pct}: both photos of a plant on one side",
                     "validation plants per label as expected (rounded to the nearest, e.g. 7 x 0.25 -> 2)",
                     "same seed, same split; new seed, new split"])


@_kit.check(SPLIT_BY_PLANT)
def check_split_hidden(split_by_plant: Callable, seed: int) -> None:
    """Hidden check for question 2: a two-plant class, a shuffled index, several fresh cases."""
    for k in range(2):
        images, valid_pct = split_case(seed + k, tiny_class=True)
        images.index = _kit.rng(seed + k).permutation(len(images)) + 100
        _compare_split(split_by_plant, images, valid_pct, seed + k, seed + k)
    _kit.passed(Q2 + " (hidden)", ["a class of two plants", "a non-default index"])


# --- question 3: per-channel statistics ------------------------------------------------------------

def _reference_stats(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per channel over every pixel of every image, in [0, 1] (the reference answer)."""
    pixels = np.concatenate([np.asarray(zindi.load_image(p), dtype=np.float64).reshape(-1, 3) / 255.0
                             for p in paths])
    return pixels.mean(axis=0), pixels.std(axis=0)


def stats_case(seed: int, folder: Path, odd_modes: bool = False) -> list[str]:
    """Write 3-5 random images of different sizes (and, if asked, grayscale/RGBA ones); return paths."""
    gen = _kit.rng(seed)
    paths = []
    for k in range(int(gen.integers(3, 6))):
        height, width = (int(v) for v in gen.integers(6, 30, size=2))
        centre = gen.uniform(0.2, 0.8, size=3)
        pixels = np.clip(gen.normal(centre, 0.15, size=(height, width, 3)), 0, 1)
        image = Image.fromarray((pixels * 255).astype(np.uint8), "RGB")
        if odd_modes and k == 0:
            image = image.convert("L")
        if odd_modes and k == 1:
            image = image.convert("RGBA")
        path = folder / f"img_{seed}_{k}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def _compare_stats(func: Callable, paths: list[Any], seed: int, hint: str | None = None) -> None:
    mean, std = _reference_stats(paths)
    if hint is None:
        got = func(paths)
    else:
        with _kit.named_errors(Q3, hint, seed):
            got = func(paths)
    if not isinstance(got, tuple) or len(got) != 2:
        _kit.fail(Q3, "a tuple (mean, std)", type(got).__name__, "return two arrays: `return mean, std`", seed)
    try:
        got_mean, got_std = (np.asarray(v, dtype=np.float64) for v in got)
    except (TypeError, ValueError):
        _kit.fail(Q3, "two arrays of numbers", [type(v).__name__ for v in got], "return `mean, std` as arrays", seed)
    if got_mean.shape != (3,) or got_std.shape != (3,):
        hint = "one value per channel: reshape the pixels to (n_pixels, 3) and reduce over axis 0"
        if got_mean.shape == () or got_std.shape == ():
            hint = "a mean over all channels together is one number: keep the channels apart (axis=0 on (n_pixels, 3))"
        elif got_mean.shape == (4,):
            hint = "RGBA files have 4 channels: open images with load_image, which converts them to RGB"
        _kit.fail(Q3, "two arrays of shape (3,)", f"shapes {got_mean.shape} and {got_std.shape}", hint, seed)
    if got_mean.max() > 1.5:
        _kit.fail(Q3, np.round(mean, 4), np.round(got_mean, 4),
                  "scale pixel values to [0, 1] by dividing by 255 first", seed)
    if np.allclose(got_mean, mean[::-1], atol=2e-3) and not np.allclose(got_mean, mean, atol=2e-3):
        _kit.fail(Q3, np.round(mean, 4), np.round(got_mean, 4), "keep the channel order (R, G, B / R, G, NIR)",
                  seed)
    per_image = [_reference_stats([p]) for p in paths]
    if not np.allclose(got_mean, mean, atol=2e-3):
        naive = np.mean([m for m, _ in per_image], axis=0)
        hint = ("images differ in size: pool all pixels of all images, do not average per-image means"
                if np.allclose(got_mean, naive, atol=2e-3) else
                "open each image with load_image (it converts grayscale/RGBA to RGB), divide by 255, "
                "then average over all pixels")
        _kit.fail(Q3, np.round(mean, 4), np.round(got_mean, 4), hint, seed)
    if not np.allclose(got_std, std, atol=2e-3):
        naive = np.mean([s for _, s in per_image], axis=0)
        hint = ("pool all pixels first, then take one std per channel: averaging per-image stds misses the "
                "spread between images" if np.allclose(got_std, naive, atol=2e-3) else
                "the std is taken over all pixels of all images, per channel (np.std(..., axis=0))")
        _kit.fail(Q3, np.round(std, 4), np.round(got_std, 4), hint, seed)


CHANNEL_STATS = _kit.Answer(
    Q3, "channel_stats", _forbidden_stats,
    hint="compute the statistics yourself; do not call the autograder's reference", module=__name__)


@_kit.check(CHANNEL_STATS)
def check_channel_stats(channel_stats: Callable, seed: int) -> None:
    """Visible check for question 3 on freshly written random images."""
    with tempfile.TemporaryDirectory() as folder:
        paths = stats_case(seed, Path(folder))
        _compare_stats(channel_stats, paths, seed)
    _kit.passed(Q3, [f"mean and std of {len(paths)} images of different sizes, per channel, in [0, 1]"])


@_kit.check(CHANNEL_STATS)
def check_channel_stats_hidden(channel_stats: Callable, seed: int) -> None:
    """Hidden check for question 3: grayscale and RGBA files, Path objects, a pandas Series of paths."""
    with tempfile.TemporaryDirectory() as folder:
        paths = stats_case(seed, Path(folder), odd_modes=True)
        _compare_stats(channel_stats, paths, seed, "grayscale and RGBA files are here: open every image with "
                       "load_image, which converts it to RGB (Image.open keeps 1 or 4 channels)")
        _compare_stats(channel_stats, [Path(p) for p in paths], seed, "paths may be Path objects, not only strings")
        _compare_stats(channel_stats, pd.Series(paths[::-1], index=range(10, 10 + len(paths))), seed,
                       "iterate over the paths themselves (`for p in paths`): a pandas Series is indexed by its "
                       "labels, not by 0, 1, 2")
    _kit.passed(Q3 + " (hidden)", ["grayscale and RGBA files", "Path objects and a pandas Series"])


# --- question 4: show a plant from both cameras with its mask -----------------------------------------

def plant_case(seed: int, folder: Path) -> pd.Series:
    """A random plant: RGB and RGNIR photos and material masks written to ``folder``, as a table row."""
    gen = _kit.rng(seed)
    height, width = (int(v) for v in gen.integers(12, 40, size=2))
    plant_id = _random_ids(gen, 1)[0]
    row = {"plant_id": plant_id, "label": str(gen.choice(zindi.CLASSES)), "split": "train"}
    for camera, suffix in (("rgb", ""), ("rgnir", "_rgn")):
        pixels = gen.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        path = folder / f"{plant_id}{suffix}.png"
        Image.fromarray(pixels, "RGB").save(path)
        mask = gen.integers(0, 10, size=(height, width), dtype=np.uint8)
        mask_path = folder / f"mask_{plant_id}{suffix}.png"
        Image.fromarray(mask, "L").save(mask_path)
        row[camera], row[f"mask_{camera}"] = str(path), str(mask_path)
    return pd.Series(row, name=int(gen.integers(1000)))


def _as_uint8(array: Any) -> np.ndarray:
    """An imshow'd array back as uint8 0-255 (floats in [0, 1] are scaled)."""
    array = np.ma.getdata(array)
    if array.dtype.kind == "f" and array.size and array.max() <= 1.0:
        array = np.round(array * 255)
    return np.asarray(array)


def _compare_figure(func: Callable, row: pd.Series, seed: int) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    fig = func(row.copy())
    try:
        if not isinstance(fig, Figure):
            hint = "create it with `fig, axes = plt.subplots(1, 3)` and `return fig`"
            if fig is None:
                hint = "your function returns nothing: end it with `return fig`"
            _kit.fail(Q4, "a matplotlib Figure", type(fig).__name__, hint, seed)
        panels = [ax for ax in fig.axes if ax.get_images()]
        if len(panels) != 3:
            _kit.fail(Q4, "3 panels showing an image each (RGB, RGNIR, mask)", f"{len(panels)} panels with images",
                      "one imshow per axes: axes[0] the RGB photo, axes[1] the RGNIR photo, axes[2] the mask",
                      seed)
        mask = zindi.read_mask(row["mask_rgb"])
        wanted = [("RGB photo", "rgb", np.asarray(zindi.load_image(row["rgb"]))),
                  ("RGNIR photo", "rgnir", np.asarray(zindi.load_image(row["rgnir"]))),
                  ("mask", "mask", mask)]
        for k, (ax, (what, word, pixels)) in enumerate(zip(panels, wanted)):
            shown = _as_uint8(ax.get_images()[-1].get_array())
            if shown.shape != pixels.shape or not np.array_equal(shown, pixels):
                _kit.fail(Q4, f"panel {k + 1} showing the {what} (shape {pixels.shape})",
                          f"an image of shape {shown.shape} with other values", _panel_hint(k, shown, wanted), seed)
            title = ax.get_title().lower()
            if word not in title or (word == "rgb" and "rgnir" in title):
                _kit.fail(Q4, f"panel {k + 1} titled with '{word.upper() if word != 'mask' else 'mask'}'",
                          repr(ax.get_title()), "name each panel with ax.set_title(...)", seed)
        cmap = panels[2].get_images()[-1].get_cmap().name
        if cmap not in SAFE_CMAPS:
            _kit.fail(Q4, f"a colour map readable with colour-blindness ({', '.join(SAFE_CMAPS[:3])}, ...)",
                      f"cmap={cmap!r}", "show the mask with show_mask(axes[2], mask) (or cmap=MASK_CMAP): "
                      "maps like tab10 or RdYlGn tell materials apart by red against green only", seed)
        names = {name for name, _ in MATERIAL_COLOURS.values()}
        legends = [panels[2].get_legend()] + list(fig.legends)
        labels = {t.get_text() for legend in legends if legend is not None for t in legend.get_texts()}
        colorbar = any(getattr(ax, "_colorbar", None) for ax in fig.axes)
        present = {MATERIAL_COLOURS[int(c)][0] for c in np.unique(mask) if int(c) in MATERIAL_COLOURS}
        if not colorbar and not (present & labels):
            _kit.fail(Q4, f"a legend naming the materials shown, e.g. {sorted(present)[:3]}",
                      f"legend labels {sorted(labels) if labels else 'none'}",
                      "colour alone does not say which material is which: add a legend (show_mask(axes[2], mask) "
                      "does it, or mask_legend(axes[2], mask))", seed)
        suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
        if row["plant_id"] not in suptitle or row["label"] not in suptitle:
            _kit.fail(Q4, f"a figure title naming {row['plant_id']} and {row['label']}", repr(suptitle),
                      "fig.suptitle(f\"{row['plant_id']} ({row['label']})\")", seed)
    finally:
        if isinstance(fig, Figure):
            plt.close(fig)


def _panel_hint(k: int, shown: np.ndarray, wanted: list[tuple[str, str, np.ndarray]]) -> str:
    """Name the slip: panels swapped, the mask of the other camera, a resized or converted image."""
    sources = {"rgb": "load_image(plant['rgb'])", "rgnir": "load_image(plant['rgnir'])",
               "mask": "read_mask(plant['mask_rgb']) with show_mask (or imshow with cmap=MASK_CMAP)"}
    what, word, _ = wanted[k]
    for j, (other, _, pixels) in enumerate(wanted):
        if j != k and shown.shape == pixels.shape and np.array_equal(shown, pixels):
            return f"panel {k + 1} shows the {other}: the panels go RGB photo, RGNIR photo, mask"
    if word == "mask" and shown.ndim == 3:
        return "read the mask with read_mask (an array of material codes), not load_image (an RGB picture)"
    if shown.shape[:2] != wanted[k][2].shape[:2]:
        return f"show the {what} at its own size: no resizing or cropping"
    return f"show {sources[word]} there, as it is"


SHOW_PLANT = _kit.Answer(Q4, "show_plant", module=__name__)


@_kit.check(SHOW_PLANT)
def check_show_plant(show_plant: Callable, seed: int) -> None:
    """Visible check for question 4 on a freshly drawn random plant."""
    with tempfile.TemporaryDirectory() as folder:
        _compare_figure(show_plant, plant_case(seed, Path(folder)), seed)
    _kit.passed(Q4, ["a Figure with three titled panels: RGB photo, RGNIR photo, mask",
                     "the pixels shown are the plant's own", "the mask in a colour-blind-safe map, with a legend",
                     "the title names the plant and its label"])


@_kit.check(SHOW_PLANT)
def check_show_plant_hidden(show_plant: Callable, seed: int) -> None:
    """Hidden check for question 4: several plants of other sizes, one figure each."""
    with tempfile.TemporaryDirectory() as folder:
        for k in range(3):
            _compare_figure(show_plant, plant_case(seed + k, Path(folder)), seed + k)
    _kit.passed(Q4 + " (hidden)", ["three more plants of other sizes"])
