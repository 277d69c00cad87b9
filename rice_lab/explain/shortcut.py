"""The shortcut capstone: plant an artefact, train on it, watch the test score fall, find the artefact
with attributions and confirm it by painting it out and on.

The generator's ``date-stamp`` variant burns an orange date into the bottom-right corner of training
photos only, at class-correlated rates (``SHORTCUT_RATES``: most blast photos, few others), and marks
its pixels in the material masks (code ``MATERIALS["stamp"]``). One function per step:

    make_shortcut_data(root, plants, width)          -> the data folder (reused when it matches)
    train_shortcut(data, encoder, out)               -> a fine-tuning run on it (cached, resumable)
    accuracy_drop(run, data, clean)                  -> accuracy and log loss: validation vs test
    stamp_attributions(run, data, clean) / stamp_table / stamp_verdicts
                                                     -> attribution mass on the stamp vs lesions
    counterfactuals(run, data, clean) / counterfactual_table
                                                     -> the stamp painted out and painted on
    plot_stamp_mass(table), plot_counterfactuals(table)

``clean`` is a classifier trained without the stamp, the control: a classifier of the *clean twin*
(the same generator settings without the shortcut: the same plants, labels, split and photos, no
stamp) never trained on the plants scored here. Validation plants come from the training split, so
they carry stamps at the training rates; the test plants never do. The generator is deterministic
per plant, so :func:`repaint_plant` draws any plant again with or without its stamp: the best
counterfactual there is, the same photo differing only where the stamp is.

Regions are judged on the photos the model sees: a material's *footprint* is every pixel of the
decoded photo that the material reaches when the full-size mask is resized with the photos' own
bilinear filter (at the photos' native size, exactly its pixels). Attribution mass is the share of
a map's positive attribution inside a region (:func:`rice_lab.explain.metrics.relevance_mass_accuracy`);
the region's share of the pixels is what a map that ignores the photo would put there (chance).
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from rice_lab.data.synthetic import (
    CONFIG_FILE,
    GENERATOR_VERSION,
    LESION_CODES,
    MATERIALS,
    SHORTCUT_RATES,
    SynthConfig,
    is_complete,
    make_plant,
    plan_plants,
    synthesize,
)
from rice_lab.data.synthetic.config import settings_as_written
from rice_lab.data.views import load_size
from rice_lab.data.zindi import CAMERAS, CLASSES, read_mask, read_zindi
from rice_lab.errors import CheckpointError, ConfigError, DataError
from rice_lab.evaluate.bootstrap import bootstrap_ci
from rice_lab.evaluate.calibration import EPSILON, as_logits, softmax
from rice_lab.explain.attribution import METHODS, attribute
from rice_lab.explain.baselines import edge_map, random_map
from rice_lab.explain.metrics import interval, relevance_mass_accuracy
from rice_lab.explain.photos import camera_photos, model_inputs
from rice_lab.runs import read_manifest
from rice_lab.seeding import stream_seed

SHORTCUT = "date-stamp"
STAMP = MATERIALS["stamp"]
STAMP_CLASS = max(SHORTCUT_RATES, key=SHORTCUT_RATES.get)  # the class the stamp stands for: blast
DEFAULT_METHODS = ("saliency", "integrated-gradients", "gradient-shap", "occlusion", "grad-cam")
BASELINE_MAPS = ("random-map", "edge-map")  # maps that ignore the model: what a method must beat
MODELS = ("shortcut", "clean")
REGIONS = {"stamp": (STAMP,), "lesion": LESION_CODES}
COUNTERFACTUALS = ("paint-out", "paint-on")
Run = str | Path


# ---------------------------------------------------------------------------------------------
# Step 1: the data
# ---------------------------------------------------------------------------------------------

def shortcut_config(data: str | Path) -> SynthConfig:
    """The generator settings of a shortcut data folder; DataError when it is not one (no stamps, no
    masks, or written by another generator version, whose plants could not be drawn again)."""
    root = Path(data).expanduser()
    try:
        written = json.loads((root / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        raise DataError(f"{root}: no readable {CONFIG_FILE}, so not a synthetic data folder; make one with "
                        "make_shortcut_data(root)") from None
    settings = settings_as_written(written) if isinstance(written, dict) else {}
    if settings.get("shortcut") != SHORTCUT:
        raise DataError(f"{root}: made without the {SHORTCUT} shortcut (shortcut={settings.get('shortcut')!r}); "
                        "make one with make_shortcut_data(root)")
    if not (root / "masks").is_dir():
        raise DataError(f"{root}: no masks/ folder, so the stamp's pixels are unknown; make the data again with "
                        "make_shortcut_data(root)")
    version = settings.pop("generator_version", None)
    if version != GENERATOR_VERSION:
        raise DataError(f"{root}: written by generator version {version}, this rice-lab draws version "
                        f"{GENERATOR_VERSION}; make the data again with make_shortcut_data(root)")
    settings["class_balance"] = tuple(settings.get("class_balance", (1.0, 1.0, 1.0)))
    try:
        return SynthConfig(**settings, workers=1)
    except TypeError as err:
        raise DataError(f"{root / CONFIG_FILE}: settings this rice-lab does not know ({err})") from None


def make_shortcut_data(root: str | Path, plants: int = 600, width: int = 128, seed: int = 0,
                       workers: int | None = None, **settings: Any) -> Path:
    """The date-stamp variant of the synthetic data at ``root`` (other ``SynthConfig`` settings as
    keywords): reused when it was written with these settings, else generated. A folder holding
    anything else (clean data included) is never overwritten."""
    fixed = {"shortcut", "plants", "width", "seed", "workers"}
    known = {f.name for f in dataclasses.fields(SynthConfig)} - fixed
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"setting(s) {', '.join(unknown)}: not generator settings that may vary here "
                          f"(choose from {', '.join(sorted(known))})")
    config = SynthConfig(plants=plants, width=width, seed=seed, shortcut=SHORTCUT, workers=workers, **settings)
    root = Path(root).expanduser().resolve()
    if is_complete(root, config):
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        try:
            written = json.loads((root / CONFIG_FILE).read_text())
        except (OSError, ValueError):
            written = None
        if not isinstance(written, dict) or written.get("shortcut") != SHORTCUT:
            raise DataError(f"{root}: exists and is not a {SHORTCUT} data folder; refusing to overwrite it "
                            "(choose another folder)")
        # Only an interrupted generation with these very settings is continued; other data is kept.
        if settings_as_written(written) != json.loads(json.dumps(config.output_settings())):
            raise DataError(f"{root}: holds {SHORTCUT} data made with other settings; refusing to overwrite it "
                            "(choose another folder)")
    return synthesize(root, config, progress=False)


# ---------------------------------------------------------------------------------------------
# Step 2: train on it, and the drop from validation to test
# ---------------------------------------------------------------------------------------------

def train_shortcut(data: str | Path, encoder: Run, out: str | Path, preset: str = "cpu-tiny",
                   **overrides: Any) -> Path:
    """A classifier fine-tuned from ``encoder`` (a pre-training run, or "random") on the shortcut data
    with fine-tuning preset ``preset`` and ``overrides``; a finished matching run in ``out`` is reused."""
    from rice_lab.finetune.config import get_preset
    from rice_lab.finetune.train import cached_finetune

    shortcut_config(data)
    return cached_finetune(get_preset(preset, data=str(data), out=str(out), encoder=str(encoder), **overrides))


def _roles(run: Run) -> dict[str, set[str]]:
    """A fine-tuning run's plants by role (train, valid, ...) from its manifest."""
    manifest = read_manifest(run)
    if manifest.get("kind") != "finetune":
        raise CheckpointError(f"{run}: a {manifest.get('kind')!r} run, not a fine-tuning run")
    return {role: set(ids) for role, ids in manifest.get("plants", {}).items()}


def _labelled(data: str | Path, run: Run) -> pd.DataFrame:
    """The data's plants with their true class and the shortcut run's role (train, valid or test),
    and whether each carries the stamp; DataError when the run was not trained on this data."""
    shortcut_config(data)
    plants = read_zindi(data, check_images=False, test_labels=True)
    roles = _roles(run)
    missing = (roles.get("train", set()) | roles.get("valid", set())) - set(plants["plant_id"])
    if missing:
        raise DataError(f"{run} was not trained on {data}: {len(missing)} of its plants are not there")
    role = {p: r for r in ("train", "valid", "test") for p in roles.get(r, ())}
    try:
        meta = pd.read_csv(Path(data) / "metadata.csv")
    except (OSError, ValueError) as err:
        raise DataError(f"{Path(data) / 'metadata.csv'}: unreadable ({err}); it says which photos carry the stamp, "
                        "make the data again with make_shortcut_data(root)") from None
    if not {"camera", "plant_id", "shortcut"} <= set(meta.columns):
        raise DataError(f"{Path(data) / 'metadata.csv'}: no camera, plant_id and shortcut columns; make the data "
                        "again with make_shortcut_data(root)")
    stamped = meta[meta["camera"] == "rgb"].set_index("plant_id")["shortcut"].astype(bool)
    truth = plants["test_label"].where(plants["split"] == "test", plants["label"])
    return plants.assign(true_label=truth, role=plants["plant_id"].map(role).fillna("other"),
                         stamped=plants["plant_id"].map(stamped).fillna(False).astype(bool)).reset_index(drop=True)


def _check_unseen(clean: Run, plant_ids: Sequence[str]) -> None:
    seen = _roles(clean).get("train", set()) & set(plant_ids)
    if seen:
        raise DataError(f"the clean classifier {clean} trained on {len(seen)} of the plants scored here; give one "
                        "trained on the clean twin of this data (same settings without the shortcut) or on other "
                        "plants")


def _fused(model: torch.nn.Module, meta: dict, photos: Mapping[str, torch.Tensor], calibrated: bool) -> np.ndarray:
    """Fused class probabilities (plants, classes) of uint8 photos {camera: (plants, 3, H, W)}, as
    ``rice_lab.finetune.predict`` makes them (the run's TTA choice, its fused temperature)."""
    from rice_lab.finetune.predictions import FUSED, photo_probs

    per_camera = [photo_probs(model, meta, photos[c], torch.full((len(photos[c]),), CAMERAS.index(c)), meta["tta"])
                  for c in meta["cameras"]]
    fused = np.mean(per_camera, axis=0)
    return softmax(as_logits(fused), meta["temperatures"][FUSED] if calibrated else 1.0)


def _load(run: Run) -> tuple[torch.nn.Module, dict]:
    from rice_lab.finetune.predictions import load_classifier

    return load_classifier(run)


def _plant_scores(run: Run, plants: pd.DataFrame, calibrated: bool) -> pd.DataFrame:
    model, meta = _load(run)
    probs = _fused(model, meta, camera_photos(plants, meta), calibrated)
    labels = np.array([CLASSES.index(c) for c in plants["true_label"]])
    p_true = np.clip(probs[np.arange(len(labels)), labels], EPSILON, 1 - EPSILON)
    return pd.DataFrame({"plant_id": plants["plant_id"].to_numpy(),
                         "correct": (probs.argmax(1) == labels).astype(float), "log_loss": -np.log(p_true)})


def _difference(a: np.ndarray, b: np.ndarray, level: float, resamples: int, seed: int) -> tuple[float, float, float]:
    """mean(b) - mean(a) of two independent samples, with its percentile-bootstrap interval
    (each sample resampled on its own)."""
    rng = np.random.default_rng(seed)
    draws = [b[rng.integers(0, len(b), len(b))].mean() - a[rng.integers(0, len(a), len(a))].mean()
             for _ in range(resamples)]
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(b.mean() - a.mean()), float(low), float(high)


def accuracy_drop(run: Run, data: str | Path, clean: Run | None = None, calibrated: bool = True,
                  level: float = 0.95, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Fused accuracy and log loss of the shortcut run (and ``clean``) on the shortcut run's validation
    plants (stamped at the training rates) and on the test plants (never stamped), and the change,
    test minus validation, each with a bootstrap interval over plants.

    Columns: model, split ("validation", "test", "test - validation"), metric ("accuracy",
    "log_loss"), mean, low, high, plants.
    """
    plants = _labelled(data, run)
    groups = {"validation": plants[plants["role"] == "valid"], "test": plants[plants["split"] == "test"]}
    if min(len(g) for g in groups.values()) < 2:
        counts = ", ".join(f"{split} {len(group)}" for split, group in groups.items())
        raise DataError(f"{data}: too few validation or test plants to score ({counts}); make more plants")
    models = {"shortcut": run}
    if clean is not None:
        _check_unseen(clean, pd.concat(groups.values())["plant_id"])
        models["clean"] = clean
    rows = []
    for name, model_run in models.items():
        scores = {split: _plant_scores(model_run, group, calibrated) for split, group in groups.items()}
        for metric in ("accuracy", "log_loss"):
            column = "correct" if metric == "accuracy" else "log_loss"
            values = {split: frame[column].to_numpy() for split, frame in scores.items()}
            for split, v in values.items():
                ci = bootstrap_ci(v, np.mean, level, resamples, seed)
                rows.append({"model": name, "split": split, "metric": metric, "mean": ci.estimate, "low": ci.low,
                             "high": ci.high, "plants": len(v)})
            mean, low, high = _difference(values["validation"], values["test"], level, resamples, seed)
            rows.append({"model": name, "split": "test - validation", "metric": metric, "mean": mean, "low": low,
                         "high": high, "plants": len(values["validation"]) + len(values["test"])})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Step 3: find the stamp with attributions
# ---------------------------------------------------------------------------------------------

def footprint(plants: pd.DataFrame, camera: str, height: int, codes: Sequence[int]) -> np.ndarray:
    """Where materials ``codes`` reach each plant's ``camera`` photo decoded ``height`` px high,
    (plants, H, W) booleans: the full-size mask resized with the photos' bilinear filter, > 0."""
    column = f"mask_{camera}"
    if column not in plants.columns:
        raise DataError(f"these plants have no {column} column: the data folder has no masks/")
    size_hw = load_size(height)
    out = np.zeros((len(plants), *size_hw), dtype=bool)
    for i, path in enumerate(plants[column]):
        inside = Image.fromarray(np.isin(read_mask(path), codes).astype(np.uint8) * 255)
        out[i] = np.asarray(inside.resize(size_hw[::-1], Image.BILINEAR)) > 0
    return out


def _sample(plants: pd.DataFrame, count: int, seed: int, key: int) -> pd.DataFrame:
    """``count`` of ``plants`` (all when fewer), drawn from ``seed`` whatever the table's order."""
    ordered = plants.sort_values("plant_id").reset_index(drop=True)
    rng = np.random.default_rng(stream_seed(seed, "explain-sample", key))
    keep = np.sort(rng.permutation(len(ordered))[:count])
    return ordered.iloc[keep].reset_index(drop=True)


def stamped_plants(run: Run, data: str | Path, count: int = 16, roles: Sequence[str] = ("valid",),
                   seed: int = 0) -> pd.DataFrame:
    """Up to ``count`` plants whose photos carry the stamp, among the shortcut run's plants of ``roles``
    ("valid": never trained on; "train" adds its training plants), drawn from ``seed``."""
    plants = _labelled(data, run)
    chosen = plants[plants["stamped"] & plants["role"].isin(list(roles))]
    if chosen.empty:
        raise DataError(f"{data}: no stamped plants among the run's {' or '.join(roles)} plants; pass "
                        "roles=('valid', 'train') or make more plants")
    return _sample(chosen, count, seed, 0)


@dataclass
class StampedMaps:
    """One model's maps of one ``camera``'s stamped photos: ``photos`` uint8 (N, 3, H, W) as the model
    sees them, ``maps`` {method: (N, H, W)}, the ``stamp`` and ``lesion`` footprints (N, H, W), and
    the ``plants`` explained (rows of ``stamped_plants``)."""

    camera: str
    photos: torch.Tensor
    maps: dict[str, torch.Tensor]
    stamp: np.ndarray
    lesion: np.ndarray
    plants: pd.DataFrame


def _check_methods(methods: Sequence[str]) -> None:
    unknown = [m for m in methods if m not in METHODS and m not in BASELINE_MAPS]
    if unknown or not methods:
        raise ConfigError(f"methods={list(methods)!r}: choose from {', '.join([*METHODS, *BASELINE_MAPS])}")


def explain_stamped(run: Run, plants: pd.DataFrame, camera: str = "rgb", methods: Sequence[str] = DEFAULT_METHODS,
                    target: str | None = STAMP_CLASS, seed: int = 0,
                    options: Mapping[str, Mapping[str, Any]] | None = None) -> StampedMaps:
    """Maps of the classifier ``run`` for the ``camera`` photos of ``plants`` (from
    :func:`stamped_plants`), each method explaining ``target`` (None: the predicted class);
    ``options`` {method: options of ``attribute``}. Methods may include the baselines
    ``random-map`` and ``edge-map``."""
    _check_methods(methods)
    if camera not in CAMERAS:
        raise ConfigError(f"camera={camera!r}: choose one of {', '.join(CAMERAS)}")
    if target is not None and target not in CLASSES:
        raise ConfigError(f"target={target!r}: choose one of {', '.join(CLASSES)}, or None for the predicted class")
    model, meta = _load(run)
    photos = camera_photos(plants, meta)[camera]
    inputs = model_inputs(photos, camera, meta)
    index = None if target is None else CLASSES.index(target)
    maps = {}
    for method in methods:
        if method == "random-map":
            maps[method] = random_map(inputs, seed)
        elif method == "edge-map":
            maps[method] = edge_map(inputs)
        else:
            maps[method] = attribute(model, inputs, method, index, seed=seed, **dict((options or {}).get(method, {})))
    height = meta["photo_height"]
    return StampedMaps(camera, photos, maps, footprint(plants, camera, height, REGIONS["stamp"]),
                       footprint(plants, camera, height, REGIONS["lesion"]), plants)


def stamp_attributions(run: Run, data: str | Path, clean: Run | None = None,
                       methods: Sequence[str] = DEFAULT_METHODS, images: int = 16, cameras: Sequence[str] = ("rgb",),
                       target: str | None = STAMP_CLASS, roles: Sequence[str] = ("valid",), seed: int = 0,
                       baselines: bool = True, options: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Per image, method and model: the share of positive attribution on the stamp and on the lesions,
    and each region's share of the pixels (chance), for up to ``images`` stamped photos
    (:func:`stamped_plants`) of each camera, through the shortcut run and ``clean`` (the control).

    Columns: model, camera, method, plant_id, label, role, seen_in_training (the model trained on
    the plant), stamp_mass, stamp_pixels, lesion_mass, lesion_pixels (NaN without lesions).
    """
    _check_methods(methods)
    plants = stamped_plants(run, data, images, roles, seed)
    methods = [*methods, *(b for b in BASELINE_MAPS if baselines and b not in methods)]
    models = {"shortcut": run, **({"clean": clean} if clean is not None else {})}
    frames = []
    for name, model_run in models.items():
        trained_on = _roles(model_run).get("train", set())
        for camera in cameras:
            found = explain_stamped(model_run, plants, camera, methods, target, seed, options)
            for method, maps in found.maps.items():
                frames.append(pd.DataFrame({
                    "model": name, "camera": camera, "method": method, "plant_id": plants["plant_id"].to_numpy(),
                    "label": plants["true_label"].to_numpy(), "role": plants["role"].to_numpy(),
                    "seen_in_training": plants["plant_id"].isin(trained_on).to_numpy(),
                    "stamp_mass": relevance_mass_accuracy(maps, found.stamp),
                    "stamp_pixels": found.stamp.mean(axis=(1, 2)),
                    "lesion_mass": relevance_mass_accuracy(maps, found.lesion),
                    "lesion_pixels": np.where(found.lesion.any(axis=(1, 2)), found.lesion.mean(axis=(1, 2)), np.nan)}))
    return pd.concat(frames, ignore_index=True)


def stamp_table(scores: pd.DataFrame, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean attribution mass on each region per model, camera and method, with its bootstrap interval
    over images, beside the region's mean pixel share (``chance``); ``above_chance``: the interval of
    the per-image excess (mass minus pixel share) lies above 0.

    Columns: model, camera, method, region ("stamp", "lesion"), mean, low, high, chance, images, above_chance.
    """
    rows = []
    for (model, camera, method), group in scores.groupby(["model", "camera", "method"], sort=False):
        for region in REGIONS:
            mass, pixels = group[f"{region}_mass"].to_numpy(float), group[f"{region}_pixels"].to_numpy(float)
            keep = np.isfinite(mass) & np.isfinite(pixels)
            row = {"model": model, "camera": camera, "method": method, "region": region, "mean": np.nan, "low": np.nan,
                   "high": np.nan, "chance": float(pixels[keep].mean()) if keep.any() else np.nan,
                   "images": int(keep.sum()), "above_chance": False}
            if keep.sum() >= 2:
                ci = interval(mass[keep], level, resamples, seed)
                excess = interval(mass[keep] - pixels[keep], level, resamples, seed)
                row.update(mean=ci.estimate, low=ci.low, high=ci.high, above_chance=bool(excess.low > 0))
            rows.append(row)
    return pd.DataFrame(rows)


def stamp_verdicts(scores: pd.DataFrame, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Which methods find the stamp, from :func:`stamp_attributions`' scores: a method *finds* it when
    its stamp mass on the shortcut model lies above the stamp's pixel share (``stamp_table``'s rule)
    and, with a clean control, above the clean model's mass on the same photos (the interval of the
    paired difference above 0): a method that marks the stamp as much for a model that never saw one
    follows the photo (its edges, its colour), not the shortcut.

    Columns: camera, method, shortcut, clean (above chance, booleans; clean NaN without a control),
    difference, low, high (stamp mass, shortcut minus clean, paired by photo), images, verdict.
    """
    table = stamp_table(scores, level, resamples, seed)
    above = table[table["region"] == "stamp"].set_index(["model", "camera", "method"])["above_chance"]
    rows = []
    for (camera, method), group in scores.groupby(["camera", "method"], sort=False):
        mass = group.pivot(index="plant_id", columns="model", values="stamp_mass")
        shortcut = bool(above.get(("shortcut", camera, method), False))
        row = {"camera": camera, "method": method, "shortcut": shortcut, "clean": np.nan, "difference": np.nan,
               "low": np.nan, "high": np.nan, "images": int(mass["shortcut"].notna().sum())}
        more = True
        if "clean" in mass.columns:
            row["clean"] = bool(above.get(("clean", camera, method), False))
            paired = (mass["shortcut"] - mass["clean"]).dropna().to_numpy(float)
            row["images"] = len(paired)
            if len(paired) >= 2:
                ci = interval(paired, level, resamples, seed)
                row.update(difference=ci.estimate, low=ci.low, high=ci.high)
            more = bool(row["low"] > 0)
        row["verdict"] = ("misses it" if not shortcut else "finds it" if more
                          else "marks it no more than for the clean model: follows the photo, not the shortcut")
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Step 4: paint the stamp out and on
# ---------------------------------------------------------------------------------------------

def repaint_plant(data: str | Path, plant_id: str, stamp: bool) -> dict[str, dict]:
    """Plant ``plant_id`` of the shortcut data drawn again by the generator with (``stamp=True``) or
    without its date stamp: {camera: {"image", "mask", "meta"}} at full size, before the JPEG;
    everything but the stamp's pixels is what the generator drew for it."""
    config = shortcut_config(data)
    tasks = {task.plant_id: task for task in plan_plants(config)}
    if plant_id not in tasks:
        raise DataError(f"{data}: no plant {plant_id!r}")
    return make_plant(dataclasses.replace(tasks[plant_id], stamp=stamp), config)


def _as_written(shot: dict) -> Image.Image:
    """A photo through the JPEG the writer saves it with (its quality, 4:4:4 chroma), decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(shot["image"], "RGB").save(buffer, format="JPEG", quality=shot["meta"]["jpeg_quality"],
                                               subsampling=0)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.convert("RGB")


def repainted_photos(data: str | Path, plants: pd.DataFrame, stamp: bool, height: int,
                     cameras: Sequence[str] = CAMERAS) -> dict[str, torch.Tensor]:
    """Each plant's photos drawn again with or without the stamp, saved as the generator saves them and
    decoded ``height`` px high as fine-tuning decodes photos: {camera: uint8 (plants, 3, H, W)}."""
    config = shortcut_config(data)
    tasks = {task.plant_id: task for task in plan_plants(config)}
    height, width = load_size(height)
    out = {camera: torch.empty(len(plants), 3, height, width, dtype=torch.uint8) for camera in cameras}
    for i, plant_id in enumerate(plants["plant_id"]):
        if plant_id not in tasks:
            raise DataError(f"{data}: no plant {plant_id!r}")
        drawn = make_plant(dataclasses.replace(tasks[plant_id], stamp=stamp), config)
        for camera in cameras:
            image = _as_written(drawn[camera]).resize((width, height), Image.BILINEAR)
            out[camera][i] = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    return out


def counterfactuals(run: Run, data: str | Path, clean: Run | None = None, images: int = 16,
                    roles: Sequence[str] = ("valid",), calibrated: bool = True, seed: int = 0) -> pd.DataFrame:
    """The stamp painted out of up to ``images`` stamped plants (:func:`stamped_plants`) and painted
    onto up to ``images`` test plants of the other classes, both photos of each plant drawn again by
    the generator; each plant's fused probability of the stamp's class (blast) and predicted class
    before and after, through the shortcut run and ``clean``.

    Columns: model, counterfactual ("paint-out", "paint-on"), plant_id, label, seen_in_training,
    p_before, p_after, predicted_before, predicted_after.
    """
    plants = _labelled(data, run)
    chosen = {"paint-out": stamped_plants(run, data, images, roles, seed),
              "paint-on": _sample(plants[(plants["split"] == "test") & (plants["true_label"] != STAMP_CLASS)],
                                  images, seed, 1)}
    if chosen["paint-on"].empty:
        raise DataError(f"{data}: no test plants of a class other than {STAMP_CLASS} to paint the stamp on")
    models = {"shortcut": run, **({"clean": clean} if clean is not None else {})}
    blast = CLASSES.index(STAMP_CLASS)
    frames = []
    for name, model_run in models.items():
        model, meta = _load(model_run)
        trained_on = _roles(model_run).get("train", set())
        for kind, group in chosen.items():
            before = camera_photos(group, meta)
            after = repainted_photos(data, group, kind == "paint-on", meta["photo_height"], meta["cameras"])
            p_before, p_after = (_fused(model, meta, photos, calibrated) for photos in (before, after))
            frames.append(pd.DataFrame({
                "model": name, "counterfactual": kind, "plant_id": group["plant_id"].to_numpy(),
                "label": group["true_label"].to_numpy(),
                "seen_in_training": group["plant_id"].isin(trained_on).to_numpy(),
                "p_before": p_before[:, blast], "p_after": p_after[:, blast],
                "predicted_before": np.array(CLASSES)[p_before.argmax(1)],
                "predicted_after": np.array(CLASSES)[p_after.argmax(1)]}))
    return pd.concat(frames, ignore_index=True)


def counterfactual_table(effects: pd.DataFrame, level: float = 0.95, resamples: int = 2000,
                         seed: int = 0) -> pd.DataFrame:
    """Per model and counterfactual: the mean probability of blast before and after, its change (after
    minus before, paired by plant), the share of plants predicted blast before and after and the share
    whose predicted class changed, each with a bootstrap interval over plants; with both models, the
    shortcut model's change minus the clean one's (model "shortcut - clean", paired by plant).

    Columns: model, counterfactual, measure, mean, low, high, plants.
    """
    rows = []

    def add(model: str, kind: str, measure: str, values: np.ndarray) -> None:
        ci = bootstrap_ci(values, np.mean, level, resamples, seed) if len(values) >= 2 else None
        rows.append({"model": model, "counterfactual": kind, "measure": measure,
                     "mean": float(values.mean()) if len(values) else np.nan,
                     "low": ci.low if ci else np.nan, "high": ci.high if ci else np.nan, "plants": len(values)})

    for (model, kind), g in effects.groupby(["model", "counterfactual"], sort=False):
        add(model, kind, "p_blast_before", g["p_before"].to_numpy(float))
        add(model, kind, "p_blast_after", g["p_after"].to_numpy(float))
        add(model, kind, "p_blast_change", (g["p_after"] - g["p_before"]).to_numpy(float))
        add(model, kind, "blast_share_before", (g["predicted_before"] == STAMP_CLASS).to_numpy(float))
        add(model, kind, "blast_share_after", (g["predicted_after"] == STAMP_CLASS).to_numpy(float))
        add(model, kind, "label_changed", (g["predicted_before"] != g["predicted_after"]).to_numpy(float))
    if set(MODELS) <= set(effects["model"]):
        for kind in dict.fromkeys(effects["counterfactual"]):
            change = {m: effects[(effects["model"] == m) & (effects["counterfactual"] == kind)]
                      .set_index("plant_id").eval("p_after - p_before") for m in MODELS}
            add("shortcut - clean", kind, "p_blast_change", (change["shortcut"] - change["clean"]).to_numpy(float))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

MODEL_STYLES = {"shortcut": ("#D55E00", "o", "trained with the stamp"), "clean": ("#0072B2", "s", "trained clean")}


def plot_stamp_mass(table: pd.DataFrame, camera: str | None = None):
    """Each method's attribution mass on the stamp and on the lesions (dots with 95 % intervals, one
    colour and marker per model) beside the region's pixel share (grey bars: chance), log scale;
    one camera (the table's first unless named). Returns the figure."""
    import matplotlib.pyplot as plt

    camera = camera or table["camera"].iloc[0]
    part = table[table["camera"] == camera]
    methods = list(dict.fromkeys(part["method"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(methods) + 1.6), sharey=True)
    for ax, region in zip(axes, REGIONS):
        rows = part[part["region"] == region]
        chance = rows.groupby("method", sort=False)["chance"].mean().reindex(methods)
        ax.barh(np.arange(len(methods)), chance, height=0.6, color="#DDDDDD", label="pixel share (chance)")
        models = [m for m in MODEL_STYLES if m in set(rows["model"])]
        for k, model in enumerate(models):
            colour, marker, label = MODEL_STYLES[model]
            r = rows[rows["model"] == model].set_index("method").reindex(methods)
            y = np.arange(len(methods)) + (k - (len(models) - 1) / 2) * 0.25
            ax.errorbar(r["mean"], y, xerr=np.nan_to_num([r["mean"] - r["low"], r["high"] - r["mean"]]), fmt=marker,
                        color=colour, capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_title(f"on the {region}{'s' if region == 'lesion' else ''}", fontsize=10)
        ax.set_xlabel("share of positive attribution (log scale)")
    axes[0].set_yticks(np.arange(len(methods)), methods)
    axes[0].invert_yaxis()
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Where the attribution for blast goes on stamped {camera} photos (mean, 95 % interval)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_stamp_maps(found: StampedMaps, rows: int = 3):
    """The first ``rows`` stamped photos of :func:`explain_stamped` and each method's map over them
    (|map| scaled to its own maximum), the stamp outlined. Returns the figure."""
    from rice_lab.explain.report import plot_maps

    figure = plot_maps(found.photos, found.maps, found.stamp, list(found.plants["plant_id"]), found.camera, rows)
    figure.suptitle(f"{found.camera} photos: |map| scaled to each map's maximum; the stamp outlined in blue",
                    fontsize=9)
    return figure


def plot_counterfactuals(table: pd.DataFrame):
    """Probability of blast before and after each counterfactual (open and filled markers joined by an
    arrow, 95 % intervals), one panel per counterfactual, one colour and marker per model. Returns the figure."""
    import matplotlib.pyplot as plt

    kinds = [k for k in COUNTERFACTUALS if k in set(table["counterfactual"])]
    titles = {"paint-out": "stamp painted out of stamped photos", "paint-on": "stamp painted onto clean photos"}
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.6 * len(kinds), 3.6), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        part = table[table["counterfactual"] == kind].set_index(["model", "measure"])
        models = [m for m in MODEL_STYLES if (m, "p_blast_before") in part.index]
        for x, model in enumerate(models):
            colour, marker, label = MODEL_STYLES[model]
            before, after = part.loc[(model, "p_blast_before")], part.loc[(model, "p_blast_after")]
            for dx, row, face in ((-0.12, before, "white"), (0.12, after, colour)):
                ax.errorbar(x + dx, row["mean"], yerr=[[row["mean"] - row["low"]], [row["high"] - row["mean"]]],
                            fmt=marker, color=colour, markerfacecolor=face, capsize=3)
            ax.annotate("", (x + 0.12, after["mean"]), (x - 0.12, before["mean"]),
                        arrowprops={"arrowstyle": "->", "color": colour})
        ax.set_xticks(range(len(models)), [MODEL_STYLES[m][2] for m in models])
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.set_ylim(0, 1)
        ax.set_title(titles[kind], fontsize=10)
    axes[0, 0].set_ylabel("probability of blast (open: before, filled: after)")
    fig.tight_layout()
    return fig


__all__ = ["BASELINE_MAPS", "COUNTERFACTUALS", "DEFAULT_METHODS", "MODELS", "REGIONS", "SHORTCUT", "STAMP",
           "STAMP_CLASS", "StampedMaps", "accuracy_drop", "counterfactual_table", "counterfactuals", "explain_stamped",
           "footprint", "make_shortcut_data", "plot_counterfactuals", "plot_stamp_maps", "plot_stamp_mass", "repaint_plant",
           "repainted_photos", "shortcut_config", "stamp_attributions", "stamp_table", "stamp_verdicts",
           "stamped_plants", "train_shortcut"]
