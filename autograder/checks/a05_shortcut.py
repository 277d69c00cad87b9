"""Checks for assignment 05-shortcut, the capstone: the accuracy drop from stamped validation plants to
clean test plants, the stamp's share of attribution against its share of the pixels, the stamp painted
onto photos of other classes, and a verdict per attribution method.

Each ``check_*`` runs the learner's function on freshly generated cases: plant tables and per-photo
probabilities, material masks and signed maps, photos with a stamp to paint and a small classifier whose
blast logit rises with the stamp's orange, tables of per-photo stamp masses. The answers are unique, so
they are compared with ``rice_lab``'s (``relevance_mass_accuracy``, ``stamp_verdicts``, the fusion of
``plant_views``) or with the check's own few lines where ``rice_lab`` works on run directories; every
case is drawn so that the typical slips give other numbers, and those slips are used only to name the
mistake. Verdicts read bootstrap intervals, so their cases keep every decision clear of the boundary
(the mean at least 4 standard errors from 0, or within 1): any resampling order, and a t interval, decide
alike. ``check_*_hidden`` adds the cases used only when grading.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from autograder import _kit
from autograder.checks.a01_data import _random_ids
from rice_lab.data.synthetic import LESION_CODES, MATERIALS, SHORTCUT_RATES
from rice_lab.data.synthetic.artefacts import stamp_bitmap
from rice_lab.data.zindi import CLASSES

Q1, Q2, Q3, Q4 = "accuracy_drop", "stamp_share", "paint_on_effect", "stamp_verdicts"
STAMP = MATERIALS["stamp"]
BLAST = CLASSES.index("blast")
STAMP_COLOUR = (255 / 255, 150 / 255, 40 / 255)  # what the generator burns in (artefacts.draw_stamp)
VERDICTS = ("finds it", "misses it", "follows the photo")
# rice_lab's explain and fine-tuning modules (captum, fastai) are imported when a reference is needed: a
# grader checking a notebook whose answers are not written yet never pays for them.
REFERENCE_MODULES = {"shortcut": "rice_lab.explain.shortcut", "metrics": "rice_lab.explain.metrics",
                     "predictions": "rice_lab.finetune.predictions"}


def _module(key: str) -> Any:
    import importlib

    return importlib.import_module(REFERENCE_MODULES[key])


def _forbidden(*names: str) -> dict[str, Callable]:
    """Reference functions an answer must not call: ``module:function`` with module one of shortcut,
    metrics, predictions."""
    return _kit.references(*((_module(key), name) for key, name in (item.split(":") for item in names)))


def _close(a: float, b: float, tol: float = 1e-9) -> bool:
    return bool(np.isclose(a, b, rtol=tol, atol=tol)) or (math.isnan(a) and math.isnan(b))


# --- question 1: the drop from validation to test --------------------------------------------------------

KEYS = ("validation", "test", "drop")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def drop_case(seed: int, alphabetical: bool = False, extra_columns: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A plant table (one row per plant, shuffled, a non-default index) and per-photo probabilities of a
    classifier that learned its training plants and the stamp: stamped plants lean to blast, training
    plants to their own class, the two photos of a plant often disagree. Redrawn until every typical slip
    gives other numbers. ``alphabetical``: the class columns in CLASSES order (else shuffled)."""
    for attempt in range(200):
        gen = _kit.rng(seed * 1000 + attempt)
        counts = {"train": int(gen.integers(8, 15)), "valid": int(gen.integers(6, 12)),
                  "test": int(gen.integers(6, 12))}
        ids = _random_ids(gen, sum(counts.values()))
        roles = np.repeat(list(counts), list(counts.values()))
        gen.shuffle(roles)
        rows, photos = [], []
        for plant_id, role in zip(ids, roles):
            label = str(gen.choice(CLASSES))
            stamped = role != "test" and gen.random() < SHORTCUT_RATES[label]
            base = gen.normal(0, 0.8, len(CLASSES))
            base[CLASSES.index(label)] += 2.5 if role == "train" else 0.6
            if stamped:
                base[BLAST] += 2.0
            rows.append({"plant_id": plant_id, "split": "test" if role == "test" else "train", "role": str(role),
                         "label": None if role == "test" else label, "test_label": label if role == "test" else None,
                         "stamped": bool(stamped)})
            for camera in ("rgb", "rgnir"):
                photos.append({"plant_id": plant_id, "camera": camera,
                               **dict(zip(CLASSES, _softmax(base + gen.normal(0, 1.3, len(CLASSES)))))})
        plants = pd.DataFrame(rows)
        plants["rgb"] = [f"/course/images/{p}.jpg" for p in plants["plant_id"]]
        plants["rgnir"] = [f"/course/images/{p}_rgn.jpg" for p in plants["plant_id"]]
        plants.index = gen.permutation(len(plants)) + 100
        order = list(CLASSES)
        while not alphabetical and order == list(CLASSES):
            order = [str(c) for c in gen.permutation(CLASSES)]
        photo_probs = pd.DataFrame(photos).iloc[gen.permutation(len(photos))].reset_index(drop=True)
        photo_probs = photo_probs[["plant_id", "camera", *order]]
        if extra_columns:
            photo_probs.insert(0, "Image_id", [p + ("" if c == "rgb" else "_rgn") + ".jpg"
                                               for p, c in zip(photo_probs["plant_id"], photo_probs["camera"])])
        if _distinct(plants, photo_probs, alphabetical):
            return plants, photo_probs
    raise RuntimeError(f"no distinguishing drop case for seed {seed}")


def _truth(plants: pd.DataFrame) -> pd.Series:
    return plants["test_label"].where(plants["split"] == "test", plants["label"])


def _fused(plants: pd.DataFrame, photo_probs: pd.DataFrame) -> np.ndarray:
    """Each plant's fused probabilities (plants, classes) in CLASSES order, as rice_lab fuses them."""
    table = photo_probs.set_index(["plant_id", "camera"])[list(CLASSES)]
    per_photo = np.stack([table.loc[[(p, c) for p in plants["plant_id"]]].to_numpy(float) for c in ("rgb", "rgnir")],
                         axis=1)
    predictions = _module("predictions")
    return predictions.plant_views(per_photo, ["rgb", "rgnir"])[predictions.FUSED]


def _accuracy(plants: pd.DataFrame, photo_probs: pd.DataFrame) -> float:
    if len(plants) == 0:
        return float("nan")
    predicted = np.array(CLASSES)[_fused(plants, photo_probs).argmax(axis=1)]
    return float((predicted == _truth(plants).to_numpy()).mean())


def reference_drop(plants: pd.DataFrame, photo_probs: pd.DataFrame) -> dict[str, float]:
    """Fused accuracy on the run's validation plants and on the test plants, and validation - test."""
    valid = _accuracy(plants[plants["role"] == "valid"], photo_probs)
    test = _accuracy(plants[plants["split"] == "test"], photo_probs)
    return {"validation": valid, "test": test, "drop": valid - test}


def _photo_accuracy(plants: pd.DataFrame, photo_probs: pd.DataFrame, cameras=("rgb", "rgnir"), vote=False) -> float:
    truth = dict(zip(plants["plant_id"], _truth(plants)))
    rows = photo_probs[photo_probs["plant_id"].isin(truth) & photo_probs["camera"].isin(cameras)]
    right = np.array(CLASSES)[rows[list(CLASSES)].to_numpy(float).argmax(axis=1)] == rows["plant_id"].map(truth)
    if vote:
        return float(right.groupby(rows["plant_id"].to_numpy()).any().mean())
    return float(right.mean())


def _slips(plants: pd.DataFrame, photo_probs: pd.DataFrame) -> dict[str, dict[str, float]]:
    """What the typical slips give on this case, each with the hint that names it."""
    right = reference_drop(plants, photo_probs)
    valid, test = plants[plants["role"] == "valid"], plants[plants["split"] == "test"]
    labelled = plants[plants["split"] == "train"]
    both = lambda v, t: {"validation": v, "test": t, "drop": v - t}  # noqa: E731
    def per_photo(**how: Any) -> dict[str, float]:
        return both(_photo_accuracy(valid, photo_probs, **how), _photo_accuracy(test, photo_probs, **how))
    columns = [c for c in photo_probs.columns if c in CLASSES]
    by_position = photo_probs.rename(columns=dict(zip(columns, CLASSES)))
    return {
        "the validation side holds the run's training plants too: score role == 'valid' only (the training "
        "plants were learned, so they flatter the model)":
            both(_accuracy(labelled, photo_probs), right["test"]),
        "score every validation plant (role == 'valid'), stamped or not: the validation set is drawn like the "
        "training set, stamps included, and that is what flatters it":
            both(_accuracy(valid[valid["stamped"]], photo_probs), right["test"]),
        "the test plants' true classes are in test_label (their label is None, as in the challenge)":
            both(right["validation"], 0.0),
        "score plants, not photos: fuse each plant's two photos (the mean of their probabilities), then take "
        "the argmax":
            per_photo(),
        "fuse both cameras (the mean of the rgb and rgnir photos' probabilities), not the rgb photo alone":
            per_photo(cameras=("rgb",)),
        "fuse both cameras (the mean of the rgb and rgnir photos' probabilities), not the rgnir photo alone":
            per_photo(cameras=("rgnir",)),
        "fuse the probabilities, then take one argmax per plant: a plant is not right because one of its photos "
        "is":
            per_photo(vote=True),
        "match the class columns by name (photo_probs[list(CLASSES)]): they come in another order than CLASSES":
            reference_drop(plants, by_position),
        "the drop is validation - test (positive when the test plants score worse)":
            {**right, "drop": -right["drop"]},
    }


def _distinct(plants: pd.DataFrame, photo_probs: pd.DataFrame, alphabetical: bool) -> bool:
    right = reference_drop(plants, photo_probs)
    if abs(right["drop"]) < 0.05 or not all(np.isfinite(list(right.values()))):
        return False
    for hint, slip in _slips(plants, photo_probs).items():
        if alphabetical and hint.startswith("match the class columns"):
            continue
        if all(_close(slip[k], right[k]) for k in KEYS):
            return False
    return True


def _as_drop(result: Any) -> dict[str, float] | None:
    if isinstance(result, pd.Series):
        result = result.to_dict()
    if not isinstance(result, dict) or not set(KEYS) <= set(result):
        return None
    try:
        return {k: float(np.asarray(result[k], dtype=np.float64)) for k in KEYS}
    except (TypeError, ValueError):
        return None


def _compare_drop(func: Callable, plants: pd.DataFrame, photo_probs: pd.DataFrame, seed: int, case: str) -> dict:
    with _kit.named_errors(Q1, "plants has the columns plant_id, split, role, label, test_label and stamped (one "
                           "row per plant); photo_probs has plant_id, camera and one column per class (one row "
                           "per photo)" + case, seed):
        outcome = _kit.call(func, plants.copy(), photo_probs.copy())
    if not (outcome.args[0].equals(plants) and outcome.args[1].equals(photo_probs)):
        _kit.fail(Q1, "both tables unchanged", "a table was modified",
                  "work on copies (plants[plants['role'] == 'valid'] makes one); do not add columns to the tables "
                  "you are given" + case, seed)
    got = _as_drop(outcome.result)
    expected = reference_drop(plants, photo_probs)
    if got is None:
        _kit.fail(Q1, "a dict {'validation': float, 'test': float, 'drop': float}",
                  _kit._short(outcome.result, 120), "return the three numbers in a dict with those keys" + case, seed)
    if not all(np.isfinite(list(got.values()))):
        _kit.fail(Q1, {k: round(v, 4) for k, v in expected.items()}, got,
                  "an accuracy is NaN: every plant of a side needs its true class (label for the validation "
                  "plants, test_label for the test plants) and its two photos" + case, seed)
    if all(_close(got[k], expected[k]) for k in KEYS):
        return got
    for hint, slip in _slips(plants, photo_probs).items():
        if all(_close(got[k], slip[k]) for k in KEYS):
            break
    else:
        hint = ("for each side: one fused prediction per plant (the mean of its two photos' probabilities, "
                "argmax), compared with its true class; validation = role 'valid', test = split 'test'")
    _kit.fail(Q1, {k: round(v, 6) for k, v in expected.items()}, {k: round(v, 6) for k, v in got.items()},
              hint + case, seed)


ACCURACY_DROP = _kit.Answer(
    Q1, "accuracy_drop", lambda: {**_forbidden("shortcut:accuracy_drop", "predictions:plant_views"),
                                  "the autograder's reference": reference_drop},
    hint="fuse and score the plants yourself; do not call rice_lab's accuracy_drop or plant_views (the references)",
    module=__name__)


def _describe(plants: pd.DataFrame) -> str:
    valid = plants[plants["role"] == "valid"]
    return (f" (case: {int((plants['role'] == 'train').sum())} training, {len(valid)} validation "
            f"({int(valid['stamped'].sum())} stamped) and {int((plants['split'] == 'test').sum())} test plants)")


@_kit.check(ACCURACY_DROP)
def check_accuracy_drop(accuracy_drop: Callable, seed: int) -> None:
    """Visible check for question 1: a fresh plant table, class columns out of CLASSES order."""
    plants, photo_probs = drop_case(seed)
    got = _compare_drop(accuracy_drop, plants, photo_probs, seed, _describe(plants))
    _kit.passed(Q1, [f"validation {got['validation']:.3f} on the run's validation plants, test {got['test']:.3f} on "
                     f"the test plants (their test_label), drop {got['drop']:+.3f}",
                     "one fused prediction per plant (the mean of its two photos' probabilities), class columns "
                     "matched by name"])


@_kit.check(ACCURACY_DROP)
def check_accuracy_drop_hidden(accuracy_drop: Callable, seed: int) -> None:
    """Hidden check for question 1: the class columns in CLASSES order, an Image_id column, two more tables."""
    for k, (alphabetical, extra) in enumerate(((True, True), (False, False))):
        plants, photo_probs = drop_case(seed + 1 + k, alphabetical=alphabetical, extra_columns=extra)
        _compare_drop(accuracy_drop, plants, photo_probs, seed + 1 + k, _describe(plants))
    _kit.passed(Q1 + " (hidden)", ["class columns in CLASSES order, an extra Image_id column", "another table"])


# --- question 2: the stamp's share of positive attribution ------------------------------------------------

def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def stamp_masks(gen: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Material masks (n, h, w) uint8 like the generator's: a leaf across the photo, lesions with their
    halo on it, dust, and a date stamp (a random short date in the 3x5 font) near the bottom-right corner."""
    masks = np.zeros((n, h, w), dtype=np.uint8)
    y, x = np.mgrid[:h, :w]
    for mask in masks:
        centre, slope, half = gen.uniform(0.3, 0.6) * h, gen.uniform(-0.3, 0.3), gen.uniform(0.15, 0.3) * h
        mask[np.abs(y - (centre + slope * (x - w / 2))) < half] = MATERIALS["leaf"]
        for _ in range(int(gen.integers(1, 4))):
            cy, cx = gen.uniform(0.2, 0.7) * h, gen.uniform(0.1, 0.6) * w
            ry, rx = gen.uniform(1.5, 4), gen.uniform(2, 6)
            leaf = mask == MATERIALS["leaf"]
            mask[_ellipse(h, w, cy, cx, ry + 1.5, rx + 1.5) & leaf] = MATERIALS["halo"]
            mask[_ellipse(h, w, cy, cx, ry, rx)] = LESION_CODES[0]
            mask[_ellipse(h, w, cy, cx, ry / 2, rx / 2)] = LESION_CODES[1]
        for _ in range(int(gen.integers(0, 4))):
            mask[int(gen.integers(0, h)), int(gen.integers(0, w))] = MATERIALS["dust"]
        digits = int(gen.integers(2, max(3, (w - 6) // 4) + 1))
        text = "".join(str(d) for d in gen.integers(0, 10, digits))
        bitmap = stamp_bitmap(text, 1)
        bh, bw = bitmap.shape
        top, left = h - bh - int(gen.integers(2, 4)), w - bw - int(gen.integers(2, 4))
        mask[top:top + bh, left:left + bw][bitmap] = STAMP
    return masks


def share_case(seed: int, as_numpy: bool = False, dead_map: bool = False) -> tuple[Any, np.ndarray]:
    """Signed maps (n, h, w) float32 (a tensor, or an array with ``as_numpy``) and material masks of the same
    size: noise that is mostly negative, some images with extra attribution on the stamp, some on the
    lesions. ``dead_map``: one map has no positive value at all (its share is undefined: NaN)."""
    for attempt in range(100):
        gen = _kit.rng(seed * 1000 + attempt)
        n, h = int(gen.integers(4, 8)), int(gen.integers(24, 40))
        w = int(round(h * 1.25))
        masks = stamp_masks(gen, n, h, w)
        maps = gen.normal(-0.3, 1.0, (n, h, w)) * gen.uniform(0.5, 2.0, (n, 1, 1))
        maps += (masks == STAMP) * gen.uniform(0.0, 3.0, (n, 1, 1))
        maps += np.isin(masks, LESION_CODES) * gen.uniform(0.0, 2.0, (n, 1, 1))
        if dead_map:
            maps[int(gen.integers(n))] = -np.abs(maps[0]) - 0.01
        maps = maps.astype(np.float32)
        if _share_distinct(maps, masks):
            return (maps if as_numpy else torch.from_numpy(maps)), masks
    raise RuntimeError(f"no distinguishing share case for seed {seed}")


def reference_share(maps: Any, masks: np.ndarray) -> pd.DataFrame:
    """rice_lab's share of positive attribution on the stamp (NaN without any), and its pixel share."""
    stamp = np.asarray(masks) == STAMP
    return pd.DataFrame({"stamp_mass": _module("metrics").relevance_mass_accuracy(maps, stamp),
                         "stamp_pixels": stamp.mean(axis=(1, 2))})


def _mass(maps: np.ndarray, region: np.ndarray, kind: str = "positive") -> np.ndarray:
    values = {"positive": np.clip(maps, 0, None), "abs": np.abs(maps)}[kind]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (values * region).sum(axis=(1, 2)) / values.sum(axis=(1, 2))


def _share_slips(maps: Any, masks: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(stamp_mass, stamp_pixels) of the typical slips, each with the hint that names it."""
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks)
    stamp = masks == STAMP
    right = reference_share(maps, masks)
    mass, pixels = right["stamp_mass"].to_numpy(), right["stamp_pixels"].to_numpy()
    positive = np.clip(maps, 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (positive * stamp).sum() / positive.sum()
        return {
            "take the positive part of the map (np.clip(map, 0, None)), not its absolute value: negative "
            "attribution speaks against the class, it is not evidence on the stamp":
                (_mass(maps, stamp, "abs"), pixels),
            "divide by the map's total positive attribution (the whole image), so the mass is a share between 0 "
            "and 1": ((positive * stamp).sum(axis=(1, 2)), pixels),
            "divide by the total *positive* attribution, not by the signed sum of the map (which can be near 0 "
            "or negative)": ((positive * stamp).sum(axis=(1, 2)) / maps.sum(axis=(1, 2)), pixels),
            "the stamp's pixels are mask == MATERIALS['stamp'] (10), not the lesions (codes 3 and 4)":
                (_mass(maps, np.isin(masks, LESION_CODES)), np.isin(masks, LESION_CODES).mean(axis=(1, 2))),
            "the stamp's pixels are mask == MATERIALS['stamp'] (10), not every material but the background":
                (_mass(maps, masks > 0), (masks > 0).mean(axis=(1, 2))),
            "one share per image: the positive attribution on each image's stamp over that image's total, not "
            "pooled over the batch": (np.full(len(maps), pooled), pixels),
            "the pixel share is the stamp's pixels over all pixels of the image (h * w), not over the leaf or "
            "the non-background": (mass, stamp.sum(axis=(1, 2)) / np.maximum((masks > 0).sum(axis=(1, 2)), 1)),
            "return shares between 0 and 1, not percentages": (mass * 100, pixels * 100),
            "an image whose map has no positive attribution has no share to give: NaN (0 / 0), not 0":
                (np.nan_to_num(mass), pixels),
        }


def _share_distinct(maps: np.ndarray, masks: np.ndarray) -> bool:
    right = reference_share(maps, masks)
    for hint, (mass, pixels) in _share_slips(maps, masks).items():
        if hint.startswith("an image whose map") and not right["stamp_mass"].isna().any():
            continue
        if _same_share(mass, pixels, right):
            return False
    return True


def _same_share(mass: np.ndarray, pixels: np.ndarray, right: pd.DataFrame, tol: float = 1e-6) -> bool:
    return bool(np.allclose(mass, right["stamp_mass"], rtol=tol, atol=tol, equal_nan=True)
                and np.allclose(pixels, right["stamp_pixels"], rtol=tol, atol=tol, equal_nan=True))


def _column(frame: pd.DataFrame, name: str) -> np.ndarray | None:
    try:
        return np.asarray(frame[name], dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _compare_share(func: Callable, maps: Any, masks: np.ndarray, seed: int, case: str) -> pd.DataFrame:
    before = (maps.detach().numpy() if torch.is_tensor(maps) else np.asarray(maps)).astype(np.float32)  # a copy
    with np.errstate(all="ignore"), _kit.named_errors(
            Q2, "maps is (images, H, W) (a tensor or an array), masks (images, H, W) material codes of the same "
            "size: work per image with sums over the last two axes" + case, seed):
        outcome = _kit.call(func, maps.clone() if torch.is_tensor(maps) else maps.copy(), masks.copy())
    after_maps, after_masks = outcome.args
    if not (np.array_equal(np.asarray(after_maps), before) and np.array_equal(after_masks, masks)):
        _kit.fail(Q2, "maps and masks unchanged", "they were modified in place",
                  "clip a copy (np.clip(maps, 0, None) or maps.clamp(min=0) make one); not clamp_ or out=" + case,
                  seed)
    got = outcome.result
    expected = reference_share(maps, masks)
    if not isinstance(got, pd.DataFrame) or not {"stamp_mass", "stamp_pixels"} <= set(got.columns):
        _kit.fail(Q2, "a DataFrame with columns stamp_mass and stamp_pixels", _kit._short(got, 120),
                  "return pd.DataFrame({'stamp_mass': ..., 'stamp_pixels': ...}), one row per image" + case, seed)
    if len(got) != len(expected):
        _kit.fail(Q2, f"{len(expected)} rows, one per image", f"{len(got)} rows",
                  "one share per image: sum over each image's pixels (axis=(1, 2)), not over the batch" + case, seed)
    mass, pixels = _column(got, "stamp_mass"), _column(got, "stamp_pixels")
    if mass is None or pixels is None:
        _kit.fail(Q2, "numbers in stamp_mass and stamp_pixels", got.dtypes.to_dict(),
                  "put floats in both columns (tensor.numpy() or float(...))" + case, seed)
    if _same_share(mass, pixels, expected):
        return got
    for hint, (slip_mass, slip_pixels) in _share_slips(maps, masks).items():
        if _same_share(mass, pixels, pd.DataFrame({"stamp_mass": slip_mass, "stamp_pixels": slip_pixels})):
            break
    else:
        hint = ("per image: stamp_mass = (positive part of the map on mask == MATERIALS['stamp']).sum() / (positive "
                "part of the map).sum(); stamp_pixels = the share of the image's pixels that are stamp")
        if np.ptp(pixels) < 1e-12 < np.ptp(expected["stamp_pixels"]):
            hint = ("use each mask's stamp pixels (mask == MATERIALS['stamp']), not a box around the corner: your "
                    "pixel share is the same for every image, the stamps' are not (a box holds leaf and background "
                    "too)")
    wrong = int(np.argmax(~np.isclose(mass, expected["stamp_mass"], rtol=1e-6, atol=1e-6, equal_nan=True)
                          | ~np.isclose(pixels, expected["stamp_pixels"], rtol=1e-6, atol=1e-6)))
    _kit.fail(Q2, f"image {wrong}: stamp_mass {expected['stamp_mass'].iloc[wrong]:.6f}, stamp_pixels "
              f"{expected['stamp_pixels'].iloc[wrong]:.6f}",
              f"stamp_mass {mass[wrong]:.6f}, stamp_pixels {pixels[wrong]:.6f}", hint + case, seed)


STAMP_SHARE = _kit.Answer(
    Q2, "stamp_share", lambda: _forbidden("metrics:relevance_mass_accuracy", "shortcut:stamp_attributions"),
    hint="compute the shares yourself; do not call rice_lab's relevance_mass_accuracy (the reference)",
    module=__name__)


@_kit.check(STAMP_SHARE)
def check_stamp_share(stamp_share: Callable, seed: int) -> None:
    """Visible check for question 2: signed maps (a tensor) and masks with stamp, lesions, halo, dust."""
    maps, masks = share_case(seed)
    case = f" (case: {len(masks)} maps of {masks.shape[1]} x {masks.shape[2]} px, mostly negative values)"
    got = _compare_share(stamp_share, maps, masks, seed, case)
    _kit.passed(Q2, [f"{len(got)} images: the stamp's share of positive attribution "
                     f"({got['stamp_mass'].min():.3f} to {got['stamp_mass'].max():.3f}) as rice_lab's "
                     "relevance_mass_accuracy on mask == MATERIALS['stamp']",
                     f"its share of the pixels ({got['stamp_pixels'].mean():.4f} on average): what a map that "
                     "ignores the photo would put there"])


@_kit.check(STAMP_SHARE)
def check_stamp_share_hidden(stamp_share: Callable, seed: int) -> None:
    """Hidden check for question 2: NumPy arrays, and a map with no positive attribution."""
    _compare_share(stamp_share, *share_case(seed + 1, as_numpy=True), seed + 1, " (case: NumPy arrays)")
    _compare_share(stamp_share, *share_case(seed + 2, dead_map=True), seed + 2,
                   " (case: one map without any positive value)")
    _kit.passed(Q2 + " (hidden)", ["NumPy arrays", "a map without positive attribution gives NaN"])


# --- question 3: paint the stamp onto photos of other classes -----------------------------------------------

class StampReader(nn.Module):
    """A small classifier of photos in [0, 1] whose blast logit rises with the share of orange pixels
    (the stamp's colour): a 1x1 convolution reads four colour features (orange, green, brown, brightness),
    averaged over the photo, and a linear layer turns them into three logits."""

    def __init__(self, head: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.colours = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4, len(CLASSES))
        with torch.no_grad():
            self.colours.weight.copy_(torch.tensor([[1.0, 0.0, -1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, 0.0],
                                                    [0.5, 0.5, 0.5]]).view(4, 3, 1, 1))
            self.colours.bias.copy_(torch.tensor([-0.6, 0.0, -0.05, -0.3]))
            self.head.weight.copy_(head)
            self.head.bias.copy_(bias)

    def forward(self, photos: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.colours(photos)).mean(dim=(2, 3)))


def _photo(gen: np.random.Generator, h: int, w: int, label: str) -> np.ndarray:
    """A leaf photo (3, h, w) in [0, 1]: a green leaf on a background, brown spots for the diseases."""
    y, x = np.mgrid[:h, :w]
    image = np.empty((3, h, w))
    image[:] = np.array(gen.uniform([0.25, 0.2, 0.15], [0.45, 0.35, 0.3]))[:, None, None]
    leaf = np.abs(y - gen.uniform(0.3, 0.7) * h - gen.uniform(-0.3, 0.3) * (x - w / 2)) < gen.uniform(0.2, 0.35) * h
    image[:, leaf] = np.array(gen.uniform([0.15, 0.4, 0.1], [0.3, 0.6, 0.2]))[:, None]
    for _ in range(int(gen.integers(2, 6)) if label != "healthy" else 0):
        spot = _ellipse(h, w, gen.uniform(0.2, 0.8) * h, gen.uniform(0.1, 0.7) * w, gen.uniform(1, 3),
                        gen.uniform(1, 4))
        image[:, spot & leaf] = np.array([0.5, 0.35, 0.2] if label == "brown" else [0.6, 0.55, 0.45])[:, None]
    return np.clip(image + gen.normal(0, 0.03, image.shape), 0, 1)


def paint_case(seed: int, as_numpy_labels: bool = False) -> tuple[nn.Module, torch.Tensor, Any, torch.Tensor,
                                                                   torch.Tensor]:
    """(model, photos, labels, stamp_photo, stamp_mask): a StampReader with random weights but for a strong
    orange-to-blast weight; clean photos of every class (at least two blast and three others); a stamped
    photo whose stamp pixels are the generator's orange with noise, on a dark corner, and the stamp's mask."""
    gen = _kit.rng(seed)
    h = int(gen.integers(24, 40))
    w = int(round(h * 1.25))
    n = int(gen.integers(7, 12))
    labels = ["blast", "blast"] + [str(c) for c in gen.choice(["brown", "healthy"], size=3)] + \
        [str(c) for c in gen.choice(CLASSES, size=n - 5)]
    gen.shuffle(labels)
    photos = torch.tensor(np.stack([_photo(gen, h, w, label) for label in labels]), dtype=torch.float32)
    donor = _photo(gen, h, w, "healthy")
    digits = int(gen.integers(3, max(4, (w - 6) // 4) + 1))
    bitmap = stamp_bitmap("".join(str(d) for d in gen.integers(0, 10, digits)), 1)
    bh, bw = bitmap.shape
    top, left = h - bh - 2, w - bw - 2
    donor[:, top - 2:, left - 2:] = gen.uniform(0.02, 0.08)  # a dark corner: pasting the box would show it
    mask = np.zeros((h, w), dtype=bool)
    mask[top:top + bh, left:left + bw] = bitmap
    donor[:, mask] = np.clip(np.array(STAMP_COLOUR)[:, None] + gen.normal(0, 0.04, (3, int(mask.sum()))), 0, 1)
    head = torch.tensor(gen.normal(0, 3, (len(CLASSES), 4)), dtype=torch.float32)
    head[BLAST, 0] = float(gen.uniform(250, 400))
    head[[c for c in range(len(CLASSES)) if c != BLAST], 0] = 0.0
    bias = torch.tensor(gen.normal(0, 0.5, len(CLASSES)), dtype=torch.float32)
    model = StampReader(head, bias).eval()
    return (model, photos, np.array(labels) if as_numpy_labels else labels,
            torch.tensor(donor, dtype=torch.float32), torch.from_numpy(mask))


@torch.no_grad()
def reference_paint(model: nn.Module, photos: torch.Tensor, labels: Any, stamp_photo: torch.Tensor,
                    stamp_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """P(blast) of the photos of other classes, before and after the stamp's pixels are copied onto them."""
    keep = torch.tensor([str(label) != "blast" for label in labels])
    clean = photos[keep]
    painted = torch.where(stamp_mask, stamp_photo, clean)
    return model(clean).softmax(dim=1)[:, BLAST], model(painted).softmax(dim=1)[:, BLAST]


def _as_vector(value: Any) -> np.ndarray | None:
    if torch.is_tensor(value):
        value = value.detach().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.ndim == 1 else None


@torch.no_grad()
def _paint_slips(model: nn.Module, photos: torch.Tensor, labels: Any, stamp_photo: torch.Tensor,
                 stamp_mask: torch.Tensor) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(before, after) of the typical slips, each with the hint that names it."""
    labels = [str(label) for label in labels]
    others = torch.tensor([label != "blast" for label in labels])
    clean = photos[others]

    def painted(images: torch.Tensor, mask: torch.Tensor = stamp_mask, source: torch.Tensor = stamp_photo):
        return torch.where(mask, source, images)

    ys, xs = torch.nonzero(stamp_mask, as_tuple=True)
    box = torch.zeros_like(stamp_mask)
    box[int(ys.min()):int(ys.max()) + 1, int(xs.min()):int(xs.max()) + 1] = True
    colour = torch.tensor(STAMP_COLOUR, dtype=photos.dtype).view(3, 1, 1).expand_as(stamp_photo)
    p = lambda x, dim=1, c=BLAST: model(x).softmax(dim=dim)[:, c].numpy()  # noqa: E731
    before = p(clean)
    return {
        "the softmax runs over the classes of each photo (dim=1), not over the photos (dim=0)":
            (p(clean, 0), p(painted(clean), 0)),
        "compare probabilities: softmax(logits, dim=1)[:, CLASSES.index('blast')], not the logits":
            (model(clean)[:, BLAST].numpy(), model(painted(clean))[:, BLAST].numpy()),
        "blast is column CLASSES.index('blast') (0) of the softmax": (p(clean, c=1), p(painted(clean), c=1)),
        "paint the stamp onto the photos of the *other* classes (labels != 'blast') and return only those: a "
        "blast photo's P(blast) says nothing about the stamp": (p(photos), p(painted(photos))),
        "paint the stamp onto the photos of the other classes, not onto the blast photos":
            (p(photos[~others]), p(painted(photos[~others]))),
        "the same photos before and after: paint a copy (torch.where(stamp_mask, stamp_photo, photos) makes "
        "one); painting in place makes 'before' the painted photo": (p(painted(clean)), p(painted(clean))),
        "compare the same photos before and after: P(blast) before is that of the photos you paint, not of "
        "every photo": (p(photos), p(painted(clean))),
        "copy only the stamp's pixels (where stamp_mask is True), not the box around them: the box brings the "
        "stamp photo's background along": (before, p(painted(clean, box))),
        "copy the stamp's pixels from stamp_photo (its orange, as the camera saw it), not a colour of your own":
            (before, p(painted(clean, source=colour))),
    }


def _compare_paint(func: Callable, case_args: tuple, seed: int, case: str) -> tuple[np.ndarray, np.ndarray]:
    model, photos, labels, stamp_photo, stamp_mask = case_args
    before, after = (t.numpy().astype(np.float64) for t in reference_paint(*case_args))
    with _kit.named_errors(Q3, "model(photos) takes floats (N, 3, H, W) and returns logits (N, 3); labels are "
                           "class names; stamp_photo is (3, H, W), stamp_mask (H, W) booleans" + case, seed):
        outcome = _kit.call(func, model, photos.clone(), labels.copy() if hasattr(labels, "copy") else list(labels),
                            stamp_photo.clone(), stamp_mask.clone())
    if not torch.equal(outcome.args[1], photos) or not torch.equal(outcome.args[3], stamp_photo):
        _kit.fail(Q3, "the photos unchanged", "they were painted in place",
                  "the same photos before and after: paint a copy (torch.where(stamp_mask, stamp_photo, photos) "
                  "makes one); never write into `photos`" + case, seed)
    got = outcome.result
    pair = [_as_vector(v) for v in got] if isinstance(got, (tuple, list)) and len(got) == 2 else None
    if pair is None or any(v is None for v in pair):
        _kit.fail(Q3, "a pair (p_before, p_after) of 1-D tensors", _kit._short(got, 120),
                  "return the blast probabilities before and after: `return p_before, p_after`" + case, seed)
    got_before, got_after = pair
    slips = _paint_slips(*case_args)
    if got_before.shape == before.shape and got_after.shape == after.shape and \
            np.allclose(got_before, before, atol=1e-5) and np.allclose(got_after, after, atol=1e-5):
        return got_before, got_after
    for hint, (slip_before, slip_after) in slips.items():
        if slip_before.shape == got_before.shape and slip_after.shape == got_after.shape and \
                np.allclose(got_before, slip_before, atol=1e-5) and np.allclose(got_after, slip_after, atol=1e-5):
            break
    else:
        if got_before.shape != before.shape or got_after.shape != after.shape:
            hint = (f"one value per photo of another class ({len(before)} of the {len(photos)} photos are not "
                    "blast), in their order")
        else:
            hint = ("for the photos whose label is not 'blast': P(blast) = softmax(model(x), dim=1)[:, 0] on the "
                    "photos as they are, then on copies with stamp_photo's pixels where stamp_mask is True")
    shown = lambda v: np.round(v[:4], 4).tolist()  # noqa: E731
    _kit.fail(Q3, f"p_before {shown(before)}..., p_after {shown(after)}... ({len(before)} photos)",
              f"p_before {shown(got_before)}..., p_after {shown(got_after)}... ({len(got_before)} photos)",
              hint + case, seed)


PAINT_ON_EFFECT = _kit.Answer(
    Q3, "paint_on_effect", lambda: {**_forbidden("shortcut:counterfactuals", "shortcut:repainted_photos"),
                                    "the autograder's reference": reference_paint},
    hint="paint and compare yourself; do not call the autograder's reference or rice_lab's counterfactuals",
    module=__name__)


def _paint_case_text(case_args: tuple) -> str:
    _, photos, labels, _, mask = case_args
    others = sum(str(label) != "blast" for label in labels)
    return (f" (case: {len(photos)} photos of {photos.shape[2]} x {photos.shape[3]} px, {others} of them not "
            f"blast; a stamp of {int(mask.sum())} pixels)")


@_kit.check(PAINT_ON_EFFECT)
def check_paint_on_effect(paint_on_effect: Callable, seed: int) -> None:
    """Visible check for question 3: a small classifier that reads orange as blast, photos of every class."""
    case_args = paint_case(seed)
    with _kit.one_thread():
        before, after = _compare_paint(paint_on_effect, case_args, seed, _paint_case_text(case_args))
    _kit.passed(Q3, [f"{len(before)} photos of other classes, the same ones before and after, the input untouched",
                     f"mean P(blast) {before.mean():.3f} -> {after.mean():.3f} with the stamp's pixels copied on "
                     "(softmax over the classes)"])


@_kit.check(PAINT_ON_EFFECT)
def check_paint_on_effect_hidden(paint_on_effect: Callable, seed: int) -> None:
    """Hidden check for question 3: labels as a NumPy array, two more cases."""
    for k, as_numpy in enumerate((True, False)):
        case_args = paint_case(seed + 1 + k, as_numpy_labels=as_numpy)
        with _kit.one_thread():
            _compare_paint(paint_on_effect, case_args, seed + 1 + k, _paint_case_text(case_args))
    _kit.passed(Q3 + " (hidden)", ["labels as a NumPy array", "another classifier and photos"])


# --- question 4: which methods find the stamp ----------------------------------------------------------------

# Per scenario: the range the mean / standard error of the shortcut model's excess over chance (mass -
# pixels) is drawn in and how much it varies from photo to photo; the same for the paired difference from
# the clean model; and the verdict that follows.
SCENARIOS = {
    "finds": ((5.0, 10.0), 0.05, (5.0, 9.0), 0.01, "finds it"),
    "follows": ((5.0, 10.0), 0.05, (0.2, 0.9), 0.01, "follows the photo"),  # the mean difference > 0, not its low
    "misses-positive": ((0.2, 0.9), 0.006, (-0.9, 0.9), 0.002, "misses it"),  # the mean excess > 0, not its low
    "misses-below": ((-8.0, -4.0), 0.004, (-0.9, 0.9), 0.002, "misses it"),
    "misses-clean-higher": ((0.2, 0.9), 0.006, (-10.0, -5.0), 0.006, "misses it"),  # the clean model marks it more
}
METHOD_POOL = ("saliency", "integrated-gradients", "gradient-shap", "smoothgrad", "occlusion", "grad-cam",
               "edge-map", "random-map", "vargrad")
CLEAR_BELOW, CLEAR_ABOVE = 1.0, 3.5  # mean / standard error: an interval's lower end is surely < 0, surely > 0


def _with_ratio(gen: np.random.Generator, n: int, ratio: tuple[float, float], spread: float) -> np.ndarray:
    """n values varying by ``spread`` whose mean / standard error lies in ``ratio``."""
    noise = gen.normal(0, 1, n)
    noise = (noise - noise.mean()) / noise.std(ddof=1) * spread
    return noise + gen.uniform(*ratio) * spread / math.sqrt(n)


def verdict_case(seed: int, n: int | None = None) -> pd.DataFrame:
    """Per-photo stamp masses of five methods (one per scenario, names drawn from METHOD_POOL) for the
    shortcut and the clean model on the same photos; one NaN mass; rows shuffled (the two models' rows in
    different orders, so pairing by position pairs the wrong photos). Redrawn until every decision, and
    every typical slip's, is clear of the boundary and each slip gives another table."""
    for attempt in range(200):
        gen = _kit.rng(seed * 1000 + attempt)
        count = n or int(gen.integers(12, 21))
        ids = _random_ids(gen, count)
        pixels = gen.uniform(0.012, 0.03, count)
        methods = [str(m) for m in gen.choice(METHOD_POOL, size=len(SCENARIOS), replace=False)]
        rows = []
        for method, (excess, excess_spread, difference, difference_spread, _) in zip(methods, SCENARIOS.values()):
            shortcut = np.clip(pixels + _with_ratio(gen, count, excess, excess_spread), 5e-4, 1)
            clean = np.clip(shortcut - _with_ratio(gen, count, difference, difference_spread), 5e-4, 1)
            for model, masses in (("shortcut", shortcut), ("clean", clean)):
                rows += [{"model": model, "method": method, "plant_id": p, "stamp_mass": float(m), "stamp_pixels": px}
                         for p, m, px in zip(ids, masses, pixels)]
        table = pd.DataFrame(rows)
        table.loc[int(gen.integers(len(table))), "stamp_mass"] = np.nan
        table = table.iloc[gen.permutation(len(table))].reset_index(drop=True)
        if _verdicts_clear(table, methods):
            return table
    raise RuntimeError(f"no clear verdict case for seed {seed}")


def _ratio(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean() / (values.std(ddof=1) / math.sqrt(len(values))))


def _paired(table: pd.DataFrame, method: str) -> pd.DataFrame:
    """One row per photo of ``method``: the two models' masses side by side, and the pixel share."""
    part = table[table["method"] == method]
    return part.pivot(index="plant_id", columns="model", values="stamp_mass").join(
        part[part["model"] == "shortcut"].set_index("plant_id")["stamp_pixels"])


def _positional(part: pd.DataFrame) -> np.ndarray:
    """Shortcut minus clean masses paired by row position (the slip)."""
    return (part[part["model"] == "shortcut"]["stamp_mass"].to_numpy()
            - part[part["model"] == "clean"]["stamp_mass"].to_numpy())


def _verdicts_clear(table: pd.DataFrame, methods: list[str]) -> bool:
    """Every quantity a decision reads (the right ones and the slips') has mean / standard error at most
    CLEAR_BELOW or at least CLEAR_ABOVE, the verdicts are the scenarios', and every slip changes the table."""
    for method, scenario in zip(methods, SCENARIOS.values()):
        part, paired = table[table["method"] == method], _paired(table, method)
        quantities = [paired["shortcut"] - paired["stamp_pixels"], paired["shortcut"] - paired["clean"],
                      paired["clean"] - paired["shortcut"], paired["shortcut"], _positional(part),
                      part["stamp_mass"] - part["stamp_pixels"]]
        if not all(r <= CLEAR_BELOW or r >= CLEAR_ABOVE for r in map(_ratio, quantities)):
            return False
        above, beats = _ratio(quantities[0]) >= CLEAR_ABOVE, _ratio(quantities[1]) >= CLEAR_ABOVE
        if _decide(above, beats) != scenario[-1]:
            return False
    slips = _slip_verdicts(table, with_right=True)
    right = slips.pop("right")
    return all(not _same_verdicts(slip, right) for slip in slips.values())


def reference_verdicts(scores: pd.DataFrame) -> pd.DataFrame:
    """rice_lab's stamp_verdicts (bootstrap intervals, NaN left out, paired by plant), in this question's
    shape: indexed by method, columns above_chance, beats_clean, verdict. 500 resamples instead of 2000:
    the cases keep every decision clear of the boundary, so both decide alike, four times faster."""
    full = scores.assign(camera="rgb", lesion_mass=np.nan, lesion_pixels=np.nan)
    found = _module("shortcut").stamp_verdicts(full, resamples=500).set_index("method")
    beats = (found["low"] > 0).fillna(False).astype(bool)
    verdict = [VERDICTS[0] if v == "finds it" else VERDICTS[1] if v == "misses it" else VERDICTS[2]
               for v in found["verdict"]]
    return pd.DataFrame({"above_chance": found["shortcut"].astype(bool), "beats_clean": beats, "verdict": verdict},
                        index=found.index.rename("method"))


def _decide(above: bool, beats: bool) -> str:
    return VERDICTS[1] if not above else VERDICTS[0] if beats else VERDICTS[2]


def _slip_verdicts(scores: pd.DataFrame, with_right: bool = False) -> dict[str, pd.DataFrame]:
    """The verdict tables of the typical slips, each with the hint that names it (a lower end of mean - 2.1
    standard errors stands in for the bootstrap interval: the cases keep every decision clear of the
    boundary). ``with_right``: the right table by the same stand-in too, under "right"."""
    def above(values: Any) -> bool:
        return _ratio(values) > 2.1

    parts = {method: (scores[scores["method"] == method], _paired(scores, method))
             for method in dict.fromkeys(scores["method"])}

    def table(rule: Callable[[pd.DataFrame, pd.DataFrame], tuple[bool, bool, str | None]]) -> pd.DataFrame:
        rows = {}
        for method, (part, paired) in parts.items():
            over, beats, verdict = rule(part, paired)
            rows[method] = {"above_chance": over, "beats_clean": beats, "verdict": verdict or _decide(over, beats)}
        return pd.DataFrame.from_dict(rows, orient="index")

    def excess(paired: pd.DataFrame) -> pd.Series:
        return paired["shortcut"] - paired["stamp_pixels"]

    def diff(paired: pd.DataFrame) -> pd.Series:
        return paired["shortcut"] - paired["clean"]

    right = {"right": table(lambda part, p: (above(excess(p)), above(diff(p)), None))} if with_right else {}
    return {**right,
        "read each interval's lower end, not the mean: a method is above chance when the interval of the "
        "excess (mass - pixels) lies above 0 (low > 0), and beats the clean model when the interval of the "
        "difference does":
            table(lambda part, p: (bool(np.nanmean(excess(p)) > 0), bool(np.nanmean(diff(p)) > 0), None)),
        "compare the stamp mass with the stamp's pixel share (chance): the interval of mass - pixels, not of "
        "the mass alone (any map puts some mass on the stamp)":
            table(lambda part, p: (above(p["shortcut"]), above(diff(p)), None)),
        "compare with the clean model too: a method that marks the stamp as much for a model that never saw "
        "one follows the photo (its edges, its colour), not the shortcut":
            table(lambda part, p: (above(excess(p)), above(diff(p)), VERDICTS[0] if above(excess(p)) else VERDICTS[1])),
        "pair the two models by plant_id (the same photo), not by row position: the rows come in different "
        "orders":
            table(lambda part, p: (above(excess(p)), above(_positional(part)), None)),
        "the excess over chance is the shortcut model's (scores['model'] == 'shortcut'), not both models' rows "
        "pooled":
            table(lambda part, p: (above(part["stamp_mass"] - part["stamp_pixels"]), above(diff(p)), None)),
        "the difference is shortcut - clean (the shortcut model's mass above the clean model's)":
            table(lambda part, p: (above(excess(p)), above(-diff(p)), None)),
        "a method whose excess is not above chance misses it, whatever the clean model does; 'follows the "
        "photo' is for a method above chance that does not beat the clean model":
            table(lambda part, p: (above(excess(p)), above(diff(p)),
                                   VERDICTS[0] if above(excess(p)) and above(diff(p)) else
                                   VERDICTS[2] if not above(diff(p)) else VERDICTS[1])),
    }


def _as_verdicts(result: Any) -> pd.DataFrame | None:
    if not isinstance(result, pd.DataFrame):
        return None
    frame = result.set_index("method") if "method" in result.columns else result
    if not {"above_chance", "beats_clean", "verdict"} <= set(frame.columns):
        return None
    return frame


def _same_verdicts(got: pd.DataFrame, expected: pd.DataFrame) -> bool:
    if sorted(map(str, got.index)) != sorted(map(str, expected.index)):
        return False
    got = got.set_axis([str(i) for i in got.index]).loc[list(expected.index)]
    return all(bool(got[c].iloc[i]) == bool(expected[c].iloc[i]) for c in ("above_chance", "beats_clean")
               for i in range(len(expected))) and [str(v) for v in got["verdict"]] == list(expected["verdict"])


def _compare_verdicts(func: Callable, scores: pd.DataFrame, seed: int, case: str) -> pd.DataFrame:
    with _kit.named_errors(Q4, "scores has the columns model ('shortcut' or 'clean'), method, plant_id, stamp_mass "
                           "and stamp_pixels, one row per model, method and photo" + case, seed):
        outcome = _kit.call(func, scores.copy())
    if not outcome.args[0].equals(scores):
        _kit.fail(Q4, "the scores table unchanged", "it was modified",
                  "work on copies (scores[scores['model'] == 'shortcut'] makes one)" + case, seed)
    got = _as_verdicts(outcome.result)
    expected = reference_verdicts(scores)
    if got is None:
        _kit.fail(Q4, "a DataFrame indexed by method with columns above_chance, beats_clean, verdict",
                  _kit._short(outcome.result, 160), "one row per method: pd.DataFrame(rows).set_index('method')" + case,
                  seed)
    unknown = sorted({str(v) for v in got["verdict"]} - set(VERDICTS))
    if unknown:
        _kit.fail(Q4, f"verdicts among {list(VERDICTS)}", unknown, "spell each verdict as one of those three" + case,
                  seed)
    if _same_verdicts(got, expected):
        return got
    for hint, slip in _slip_verdicts(scores).items():
        if _same_verdicts(got, slip):
            break
    else:
        hint = ("per method: above_chance = the lower end of interval(mass - pixels) over the shortcut model's "
                "photos > 0; beats_clean = the lower end of interval(shortcut mass - clean mass), paired by "
                "plant_id, > 0; then the verdict")
    if sorted(map(str, got.index)) != sorted(expected.index):
        _kit.fail(Q4, f"one row per method: {sorted(expected.index)}", sorted(map(str, got.index)), hint + case, seed)
    aligned = got.set_axis([str(i) for i in got.index]).loc[list(expected.index)]
    method = next(m for m in expected.index if not (
        bool(aligned.loc[m, "above_chance"]) == bool(expected.loc[m, "above_chance"])
        and bool(aligned.loc[m, "beats_clean"]) == bool(expected.loc[m, "beats_clean"])
        and str(aligned.loc[m, "verdict"]) == expected.loc[m, "verdict"]))
    row = lambda frame: {c: (bool(frame.loc[method, c]) if c != "verdict" else str(frame.loc[method, c]))  # noqa: E731
                         for c in ("above_chance", "beats_clean", "verdict")}
    _kit.fail(Q4, f"{method}: {row(expected)}", f"{method}: {row(aligned)}", hint + case, seed)


STAMP_VERDICTS = _kit.Answer(
    Q4, "stamp_verdicts", lambda: _forbidden("shortcut:stamp_verdicts", "shortcut:stamp_table"),
    hint="decide from the numbers yourself; do not call rice_lab's stamp_verdicts or stamp_table (the references)",
    module=__name__)


@_kit.check(STAMP_VERDICTS)
def check_stamp_verdicts(stamp_verdicts: Callable, seed: int) -> None:
    """Visible check for question 4: five methods, one of each kind, rows shuffled, one NaN mass."""
    scores = verdict_case(seed)
    plants = scores["plant_id"].nunique()
    got = _compare_verdicts(stamp_verdicts, scores, seed, f" (case: {scores['method'].nunique()} methods, {plants} "
                            "photos per model, rows shuffled, one NaN mass)")
    counts = pd.Series([str(v) for v in got["verdict"]]).value_counts().to_dict()
    _kit.passed(Q4, [f"verdicts as rice_lab's stamp_verdicts: {counts}",
                     "above chance and above the clean model read from the intervals' lower ends, the two models "
                     "paired by plant_id, NaN left out"])


@_kit.check(STAMP_VERDICTS)
def check_stamp_verdicts_hidden(stamp_verdicts: Callable, seed: int) -> None:
    """Hidden check for question 4: ten photos per model, and another table."""
    _compare_verdicts(stamp_verdicts, verdict_case(seed + 1, n=10), seed + 1, " (case: 10 photos per model)")
    _compare_verdicts(stamp_verdicts, verdict_case(seed + 2), seed + 2, " (case: another table)")
    _kit.passed(Q4 + " (hidden)", ["ten photos per model", "another table"])
