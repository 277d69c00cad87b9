"""Checks for assignment 01-data: pair the cameras, split by plant, channel statistics, show a plant.

Each ``check_*`` runs the learner's function on freshly generated cases and compares it with
``rice_lab``'s reference; ``check_*_hidden`` adds the cases used only when the notebook is graded.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from PIL import Image

from autograder import _kit
from rice_lab.data import zindi

CHECKS = ["check_pairing", "check_pairing_hidden", "check_split", "check_split_hidden",
          "check_channel_stats", "check_channel_stats_hidden", "check_show_plant", "check_show_plant_hidden"]
MODULE = "autograder.a01_data"
Q1, Q2, Q3, Q4 = "pair_cameras", "split_by_plant", "channel_stats", "show_plant"


def verify_untouched(loaded: types.ModuleType | None, namespace: dict | None = None) -> None:
    """Fail if the imported copy of this module, or the notebook, holds modified check functions."""
    _kit.verify_untouched(types.SimpleNamespace(**globals()), loaded, CHECKS, namespace)


def _forbidden_stats() -> dict[str, Callable]:
    """The autograder's own statistics reference, as seen here and in the imported module."""
    forbidden = {"the autograder's reference": _reference_stats}
    loaded = sys.modules.get(MODULE)
    if loaded is not None and getattr(loaded, "_reference_stats", _reference_stats) is not _reference_stats:
        forbidden["the autograder's reference (imported)"] = loaded._reference_stats
    return forbidden


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
    given = list(names)
    got = func(given)
    if given != names:
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
    extra = set(got) - set(expected)
    if extra:
        return (f"your pairing returned {len(got)} plants, expected {len(expected)}: plants that lack one "
                f"of the two photos (e.g. {sorted(extra)[0]}) must be left out")
    if any(Path(n).suffix != Path(n).suffix.lower() for n in names):
        return (f"your pairing returned {len(got)} plants, expected {len(expected)}: extensions come in any "
                "case and kind (.jpg, .JPG, .png); compare stems, not full names")
    return (f"your pairing returned {len(got)} plants, expected {len(expected)}: every plant with both an "
            "`id_x.jpg` and an `id_x_rgn.jpg` file must appear once")


PAIR_CAMERAS = _kit.Answer(
    Q1, "pair_cameras", lambda: _forbidden("pair_files", "rice_lab.data.pair_files"),
    hint="do not call rice_lab's pair_files (the reference answer): write the pairing yourself")


def check_pairing(pair_cameras: Callable, seed: int | None = None) -> None:
    """Visible check for question 1 on a fresh random list of image names."""
    pair_cameras, seed = PAIR_CAMERAS.prepare(pair_cameras, seed)
    names = pairing_case(seed)
    n = _compare_pairing(pair_cameras, names, seed)
    _kit.passed(Q1, [f"{n} plants paired from {len(names)} shuffled names",
                     "plants with only one photo are left out", "your input list is left unchanged"])


def check_pairing_hidden(pair_cameras: Callable, seed: int | None = None) -> None:
    """Hidden check for question 1: mixed extensions, an empty list, several fresh cases."""
    pair_cameras, seed = PAIR_CAMERAS.prepare(pair_cameras, seed)
    got = pair_cameras([])
    if got != {}:
        _kit.fail(Q1, {}, got, "no names, no plants: return an empty dict", seed)
    for k in range(3):
        _compare_pairing(pair_cameras, pairing_case(seed + k, mixed_extensions=True), seed + k)
    _kit.passed(Q1 + " (hidden)", ["mixed-case and .png/.jpeg extensions", "empty input"])


# --- question 2: a plant-level, label-stratified split ------------------------------------------------

def split_case(seed: int, tiny_class: bool = False) -> tuple[pd.DataFrame, float]:
    """A Train.csv-like table (two rows per plant, shuffled) and a validation fraction."""
    gen = _kit.rng(seed)
    counts = [int(gen.integers(6, 20)) for _ in zindi.CLASSES]
    if tiny_class:
        counts[int(gen.integers(len(counts)))] = 2
    ids = _random_ids(gen, sum(counts))
    labels = np.repeat(zindi.CLASSES, counts)
    gen.shuffle(labels)
    rows = [(plant_id + camera + ".jpg", label) for plant_id, label in zip(ids, labels)
            for camera in ("", "_rgn")]
    order = gen.permutation(len(rows))
    images = pd.DataFrame([rows[i] for i in order], columns=["Image_id", "Label"])
    return images, float(gen.choice([0.2, 0.25, 0.3]))


def _expected_valid(images: pd.DataFrame, valid_pct: float, seed: int) -> pd.Series:
    """Valid plants per label according to rice_lab's split_plants."""
    plants = images.assign(plant_id=[zindi.plant_id_of(i)[0] for i in images["Image_id"]])
    plants = plants.drop_duplicates("plant_id").rename(columns={"Label": "label"}).assign(split="train")
    split = zindi.split_plants(plants[["plant_id", "label", "split"]], valid_pct=valid_pct, seed=seed)
    return split[split["is_valid"]].groupby("label").size().reindex(zindi.CLASSES, fill_value=0)


def _compare_split(func: Callable, images: pd.DataFrame, valid_pct: float, seed: int, case: int) -> None:
    given = images.copy()
    got = func(given, valid_pct=valid_pct, seed=seed)
    if not given.equals(images):
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
        _kit.fail(Q2, f"plant_id {plant_ids[bad]!r} for {images['Image_id'].iloc[bad]!r}",
                  repr(got["plant_id"].iloc[bad]), "the plant id is the Image_id without extension and `_rgn`",
                  case)
    if got["is_valid"].dtype != bool:
        _kit.fail(Q2, "is_valid of dtype bool", str(got["is_valid"].dtype), "use True/False values", case)
    sides = got.groupby("plant_id")["is_valid"].nunique()
    if (sides > 1).any():
        _kit.fail(Q2, "both photos of each plant on the same side",
                  f"{int((sides > 1).sum())} plants split across train and validation",
                  "choose validation *plants*, then mark all their photos; otherwise the model sees the "
                  "validation plant in training (leakage)", case)
    expected = _expected_valid(images, valid_pct, seed)
    per_plant = got.drop_duplicates("plant_id")
    counts = per_plant[per_plant["is_valid"]].groupby("Label").size().reindex(zindi.CLASSES, fill_value=0)
    if not counts.equals(expected):
        _kit.fail(Q2, f"validation plants per label {dict(expected)}", f"{dict(counts)}",
                  f"stratify by label: in each label take round(n_plants * valid_pct) plants "
                  f"(valid_pct={valid_pct}), at least 1 and at most n_plants - 1", case)
    again = func(images.copy(), valid_pct=valid_pct, seed=seed)
    if not isinstance(again, pd.DataFrame) or "is_valid" not in again or \
            list(again["is_valid"]) != list(got["is_valid"]):
        _kit.fail(Q2, "the same split for the same seed", "a different split",
                  "draw the random choice from np.random.default_rng(seed), not from global randomness", case)
    other = func(images.copy(), valid_pct=valid_pct, seed=seed + 1)
    if list(other["is_valid"]) == list(got["is_valid"]):
        _kit.fail(Q2, "a different split for a different seed", "the same split",
                  "the seed must drive which plants are chosen", case)


SPLIT_BY_PLANT = _kit.Answer(
    Q2, "split_by_plant", lambda: _forbidden("split_plants", "rice_lab.data.split_plants"),
    hint="do not call rice_lab's split_plants (the reference answer): write the split yourself")


def check_split(split_by_plant: Callable, seed: int | None = None) -> None:
    """Visible check for question 2 on a fresh random Train.csv-like table."""
    split_by_plant, seed = SPLIT_BY_PLANT.prepare(split_by_plant, seed)
    images, valid_pct = split_case(seed)
    _compare_split(split_by_plant, images, valid_pct, seed, seed)
    _kit.passed(Q2, [f"{len(images) // 2} plants, valid_pct={valid_pct}: both photos of a plant on one side",
                     "validation plants per label as expected", "same seed, same split; new seed, new split"])


def check_split_hidden(split_by_plant: Callable, seed: int | None = None) -> None:
    """Hidden check for question 2: a two-plant class, a shuffled index, several fresh cases."""
    split_by_plant, seed = SPLIT_BY_PLANT.prepare(split_by_plant, seed)
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


def _compare_stats(func: Callable, paths: list[Any], seed: int) -> None:
    mean, std = _reference_stats(paths)
    got = func(paths)
    if not isinstance(got, tuple) or len(got) != 2:
        _kit.fail(Q3, "a tuple (mean, std)", type(got).__name__, "return two arrays: `return mean, std`", seed)
    got_mean, got_std = (np.asarray(v, dtype=np.float64) for v in got)
    if got_mean.shape != (3,) or got_std.shape != (3,):
        _kit.fail(Q3, "two arrays of shape (3,)", f"shapes {got_mean.shape} and {got_std.shape}",
                  "one value per channel: reshape the pixels to (n_pixels, 3) and reduce over axis 0", seed)
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
    hint="compute the statistics yourself; do not call the autograder's reference")


def check_channel_stats(channel_stats: Callable, seed: int | None = None) -> None:
    """Visible check for question 3 on freshly written random images."""
    channel_stats, seed = CHANNEL_STATS.prepare(channel_stats, seed)
    with tempfile.TemporaryDirectory() as folder:
        paths = stats_case(seed, Path(folder))
        _compare_stats(channel_stats, paths, seed)
    _kit.passed(Q3, [f"mean and std of {len(paths)} images of different sizes, per channel, in [0, 1]"])


def check_channel_stats_hidden(channel_stats: Callable, seed: int | None = None) -> None:
    """Hidden check for question 3: grayscale and RGBA files, Path objects, a pandas Series of paths."""
    channel_stats, seed = CHANNEL_STATS.prepare(channel_stats, seed)
    with tempfile.TemporaryDirectory() as folder:
        paths = stats_case(seed, Path(folder), odd_modes=True)
        _compare_stats(channel_stats, paths, seed)
        _compare_stats(channel_stats, [Path(p) for p in paths], seed)
        _compare_stats(channel_stats, pd.Series(paths[::-1], index=range(10, 10 + len(paths))), seed)
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
        mask = gen.integers(0, 5, size=(height, width), dtype=np.uint8)
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
            _kit.fail(Q4, "a matplotlib Figure", type(fig).__name__,
                      "create it with `fig, axes = plt.subplots(1, 3)` and `return fig`", seed)
        panels = [ax for ax in fig.axes if ax.get_images()]
        if len(panels) != 3:
            _kit.fail(Q4, "3 panels showing an image each (RGB, RGNIR, mask)", f"{len(panels)} panels with images",
                      "one imshow per axes: axes[0] the RGB photo, axes[1] the RGNIR photo, axes[2] the mask",
                      seed)
        wanted = [("RGB photo", "rgb", np.asarray(zindi.load_image(row["rgb"]))),
                  ("RGNIR photo", "rgnir", np.asarray(zindi.load_image(row["rgnir"]))),
                  ("mask", "mask", zindi.read_mask(row["mask_rgb"]))]
        for k, (ax, (what, word, pixels)) in enumerate(zip(panels, wanted)):
            shown = _as_uint8(ax.get_images()[-1].get_array())
            if shown.shape != pixels.shape or not np.array_equal(shown, pixels):
                source = {"rgb": "load_image(row['rgb'])", "rgnir": "load_image(row['rgnir'])",
                          "mask": "read_mask(row['mask_rgb']) with a colormap, e.g. cmap='tab10'"}[word]
                _kit.fail(Q4, f"panel {k + 1} showing the {what} (shape {pixels.shape})",
                          f"an image of shape {shown.shape} with other values", f"show {source} there", seed)
            title = ax.get_title().lower()
            if word not in title or (word == "rgb" and "rgnir" in title):
                _kit.fail(Q4, f"panel {k + 1} titled with '{word.upper() if word != 'mask' else 'mask'}'",
                          repr(ax.get_title()), "name each panel with ax.set_title(...)", seed)
        suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
        if row["plant_id"] not in suptitle or row["label"] not in suptitle:
            _kit.fail(Q4, f"a figure title naming {row['plant_id']} and {row['label']}", repr(suptitle),
                      "fig.suptitle(f\"{row['plant_id']} ({row['label']})\")", seed)
    finally:
        if isinstance(fig, Figure):
            plt.close(fig)


SHOW_PLANT = _kit.Answer(Q4, "show_plant")


def check_show_plant(show_plant: Callable, seed: int | None = None) -> None:
    """Visible check for question 4 on a freshly drawn random plant."""
    show_plant, seed = SHOW_PLANT.prepare(show_plant, seed)
    with tempfile.TemporaryDirectory() as folder:
        _compare_figure(show_plant, plant_case(seed, Path(folder)), seed)
    _kit.passed(Q4, ["a Figure with three titled panels: RGB photo, RGNIR photo, mask",
                     "the pixels shown are the plant's own", "the title names the plant and its label"])


def check_show_plant_hidden(show_plant: Callable, seed: int | None = None) -> None:
    """Hidden check for question 4: several plants of other sizes, one figure each."""
    show_plant, seed = SHOW_PLANT.prepare(show_plant, seed)
    with tempfile.TemporaryDirectory() as folder:
        for k in range(3):
            _compare_figure(show_plant, plant_case(seed + k, Path(folder)), seed + k)
    _kit.passed(Q4 + " (hidden)", ["three more plants of other sizes"])
