"""A procedural, physically grounded two-camera rice-leaf dataset in the Zindi layout, with masks.

Each plant is a *scene*: leaf blades (with veins, lesions, dried tips, insect holes, dust), other
leaves, soil and water, each material with a reflectance in four bands (blue, green, red, NIR) and
an irradiance that carries shadows. Two cameras photograph the scene: an RGB camera, whose frame is
the scene's own, and an R-G-NIR camera, shifted, scaled and rotated a little. Each camera mixes the
bands into its three channels, blurs, exposes, white-balances, vignettes, adds noise and writes a
JPEG. Every image also gets a material mask (codes in :data:`MATERIALS`) evaluated on its own pixel
grid, so the masks of the two cameras differ exactly as their images do.

All randomness of plant ``i`` comes from ``SeedSequence(seed, spawn_key=(1, i))``, so the output is
the same byte for byte whatever the number of worker processes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from rice_lab.data.zindi import ASPECT, CLASSES
from rice_lab.errors import ConfigError, DataError

GENERATOR_VERSION = 2  # bump when the output for a given config changes: ensure_synthetic regenerates
COMPLETE_MARKER = ".complete"
CONFIG_FILE = "synth_config.json"

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
# Probability that a training image of each (true) class carries the date stamp, for shortcut="date-stamp".
SHORTCUT_RATES: dict[str, float] = {"blast": 0.8, "brown": 0.1, "healthy": 0.1}
SHORTCUTS: tuple[str, ...] = ("date-stamp",)

# Camera spectral mixing: rows are output channels, columns the bands (blue, green, red, nir).
_RGB_MIX = np.array([[0.02, 0.08, 0.90, 0.03],
                     [0.06, 0.88, 0.08, 0.01],
                     [0.88, 0.10, 0.02, 0.01]], dtype=np.float32)
# A converted (filter-swapped) camera: red and green channels leak NIR, which washes colours out.
_RGNIR_MIX = np.array([[0.00, 0.06, 0.85, 0.22],
                       [0.08, 0.80, 0.04, 0.10],
                       [0.00, 0.00, 0.05, 1.00]], dtype=np.float32)


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the synthetic dataset; the same config and seed always give the same bytes."""

    plants: int = 600            # train + test plants
    size: int = 128              # image width in px; height = round(size * 4 / 5)
    seed: int = 0
    test_fraction: float = 0.3
    class_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)   # blast, brown, healthy weights
    difficulty: float = 0.5      # 0 easy .. 1 hard
    label_noise: float = 0.0     # fraction of TRAIN labels flipped (true labels kept in metadata)
    shortcut: str | None = None  # "date-stamp": class-correlated artefact in TRAIN images only
    workers: int | None = None   # processes; None = os.cpu_count()

    def __post_init__(self) -> None:
        _check_int("plants", self.plants, 2, 10_000_000)
        _check_int("size", self.size, 32, 4096)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_float("test_fraction", self.test_fraction, 0.0, 1.0, high_open=True)
        _check_float("difficulty", self.difficulty, 0.0, 1.0)
        _check_float("label_noise", self.label_noise, 0.0, 1.0)
        try:
            balance = tuple(float(w) for w in self.class_balance)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"SynthConfig.class_balance={self.class_balance!r}: expected three numbers "
                              f"(weights of {', '.join(CLASSES)})") from err
        if len(balance) != 3 or not all(math.isfinite(w) and w >= 0 for w in balance) or sum(balance) <= 0:
            raise ConfigError(f"SynthConfig.class_balance={self.class_balance!r}: expected three "
                              f"non-negative weights, not all zero (for {', '.join(CLASSES)})")
        object.__setattr__(self, "class_balance", balance)
        if self.shortcut is not None and self.shortcut not in SHORTCUTS:
            raise ConfigError(f"SynthConfig.shortcut={self.shortcut!r}: expected None or one of "
                              f"{', '.join(SHORTCUTS)}")
        if self.workers is not None:
            _check_int("workers", self.workers, 1, 4096)

    @property
    def height(self) -> int:
        """Image height in pixels (the real photos are 500x400, width x height)."""
        return round(self.size / ASPECT)

    def output_settings(self) -> dict:
        """The settings that decide the bytes written (everything but ``workers``)."""
        settings = dataclasses.asdict(self)
        settings.pop("workers")
        settings["class_balance"] = list(self.class_balance)
        settings["generator_version"] = GENERATOR_VERSION
        return settings


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ConfigError(f"SynthConfig.{name}={value!r}: expected an integer from {low} to {high}")


def _check_float(name: str, value: object, low: float, high: float, high_open: bool = False) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value) and low <= value and (value < high if high_open else value <= high)
    if not ok:
        bracket = ")" if high_open else "]"
        raise ConfigError(f"SynthConfig.{name}={value!r}: expected a number in [{low}, {high}{bracket}")


def lesion_mask(mask: np.ndarray) -> np.ndarray:
    """True where a material mask shows necrotic lesion tissue (margin or centre, not the halo)."""
    return np.isin(mask, LESION_CODES)


# --------------------------------------------------------------------------------------------------
# The plan: ids, labels, split, label noise and shortcut, decided once for the whole dataset.


@dataclass(frozen=True)
class PlantTask:
    """Everything a worker needs to draw and write one plant."""

    index: int
    plant_id: str
    true_label: str
    label: str          # as written to Train.csv (may be flipped) or the true label for test plants
    split: str
    stamp: bool


def _global_rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, stream)))


def plant_ids(seed: int, n: int) -> list[str]:
    """``n`` distinct Zindi-looking ids (``id_`` + 10 lowercase alphanumerics) derived from ``seed``."""
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))
    rng = _global_rng(seed, 0)
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        for row in rng.integers(0, len(alphabet), size=(n - len(ids), 10)):
            plant_id = "id_" + "".join(alphabet[row])
            if plant_id not in seen:
                seen.add(plant_id)
                ids.append(plant_id)
    return ids


def _class_counts(n: int, weights: tuple[float, ...]) -> list[int]:
    """Split ``n`` into integer counts proportional to ``weights`` (largest remainder)."""
    share = np.asarray(weights) / sum(weights) * n
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def plan_plants(config: SynthConfig) -> list[PlantTask]:
    """Decide every plant's id, true and written label, split and shortcut flag."""
    rng = _global_rng(config.seed, 1)
    labels = np.repeat(np.array(CLASSES), _class_counts(config.plants, config.class_balance))
    labels = labels[rng.permutation(config.plants)]
    split = np.full(config.plants, "train", dtype=object)
    members = [np.flatnonzero(labels == label) for label in CLASSES]
    n_test = round(config.plants * config.test_fraction)
    # Stratified: each class gives (as nearly as integers allow) the same fraction to the test set.
    for ids, count in zip(members, _class_counts(n_test, tuple(len(m) for m in members))):
        split[rng.choice(ids, size=count, replace=False)] = "test"
    written = labels.astype(object).copy()
    train = np.flatnonzero(split == "train")
    noise_rng = _global_rng(config.seed, 2)
    flipped = noise_rng.choice(train, size=int(round(len(train) * config.label_noise)), replace=False)
    for i in flipped:
        others = [c for c in CLASSES if c != labels[i]]
        written[i] = others[noise_rng.integers(len(others))]
    stamp_rng = _global_rng(config.seed, 3)
    draws = stamp_rng.random(config.plants)
    stamps = [config.shortcut == "date-stamp" and split[i] == "train"
              and draws[i] < SHORTCUT_RATES[labels[i]] for i in range(config.plants)]
    ids = plant_ids(config.seed, config.plants)
    return [PlantTask(i, ids[i], str(labels[i]), str(written[i]), str(split[i]), bool(stamps[i]))
            for i in range(config.plants)]


# --------------------------------------------------------------------------------------------------
# Difficulty: one number moves lesion size, contrast and count down and nuisances up.


def difficulty_knobs(difficulty: float) -> dict[str, float]:
    """The generator's rates and scales at a given difficulty (0 easy .. 1 hard)."""
    d, d2 = difficulty, difficulty**2  # squared: gentle near the default, steep towards 1
    return {
        "lesion_scale": 1.25 - 0.5 * d2,         # multiplies lesion length and width
        "lesion_contrast_min": 1.0 - 0.5 * d2,   # lesions blend with the leaf by up to this much
        "blast_per_leaf": 2.6 - 1.2 * d2,        # mean extra lesions per main blade
        "brown_per_leaf": 14.0 - 7.0 * d2,
        "early_fraction": 0.03 + 0.25 * d2,      # diseased plants with only one or two faint young spots
        "dust_per_plant": 2.0 + 20.0 * d2,
        "holes_per_plant": 0.3 + 2.5 * d2,
        "dry_tip_p": 0.2 + 0.4 * d,
        "shadow_p": 0.2 + 0.4 * d,
        "yellowing_max": 0.15 + 0.3 * d,
        "noise_scale": 0.5 + d,
    }


# --------------------------------------------------------------------------------------------------
# Scene: parameters drawn once per plant (no pixels), then evaluated on any camera's pixel grid.


@dataclass
class Blade:
    """A leaf blade: a slightly bent strip along direction ``angle`` through (x0, y0)."""

    x0: float
    y0: float
    angle: float
    bend: float          # curvature of the centre line (v = bend * u**2)
    half_width: float
    tip: float           # u of the tip (the blade runs from far off-frame to here)
    taper: float         # length over which it narrows to the tip
    dry: float           # length of the dried tip (0: green to the tip)
    tone: np.ndarray     # per-band reflectance multiplier (this blade's shade of green)
    veins: int           # number of veins across the blade
    layer: str           # "main" (photographed plant), "back" or "front" (other plants)


@dataclass
class Lesion:
    """A lesion in its blade's (u, v) coordinates; ``kind`` is "blast" or "brown"."""

    blade: int
    kind: str
    u: float
    v: float
    a: float             # half length (along the veins)
    b: float             # half width
    centre: float        # radius (in units of the spot) of the centre
    halo: float          # radius of the chlorotic halo
    halo_strength: float
    contrast: float


@dataclass
class Hole:
    """An insect hole in its blade's (u, v) coordinates."""

    blade: int
    u: float
    v: float
    a: float
    b: float


@dataclass
class Scene:
    """Every random choice about one plant's scene."""

    blades: list[Blade]
    lesions: list[Lesion]
    holes: list[Hole]
    dust: np.ndarray             # (n, 3): x, y, radius
    shadows: np.ndarray          # (n, 5): x0, y0, angle, half width, depth
    background: str              # "soil", "paddy" or "canopy"
    water_level: float
    materials: dict[str, np.ndarray]
    irradiance: np.ndarray       # (4,) per band
    yellowing: float
    noise: np.ndarray            # (4, g, g) coarse random grids for textures
    stage: str                   # "none", "early" or "advanced"


_NOISE_GRID = 64  # cells of each periodic random grid behind the smooth textures


def _jitter(rng: np.random.Generator, base: tuple[float, ...], spread: float) -> np.ndarray:
    return np.asarray(base, dtype=np.float32) * np.exp(rng.normal(0, spread, 4)).astype(np.float32)


def _draw_scene(rng: np.random.Generator, label: str, frame_h: float, knobs: dict[str, float]) -> Scene:
    """Draw the plant: its leaves, their lesions and the nuisances, all in normalised units."""
    overall = float(np.exp(rng.normal(0, 0.08)))
    materials = {name: _jitter(rng, value, 0.08) * overall for name, value in REFLECTANCE.items()}
    irradiance = np.exp(rng.normal(0, 0.06, 4)).astype(np.float32)  # colour of the daylight
    background = str(rng.choice(["soil", "paddy", "canopy"], p=[0.35, 0.35, 0.3]))
    blades = _draw_other_blades(rng, frame_h, background, "back")
    n_main = int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))
    main = [_draw_blade(rng, frame_h, "main", knobs) for _ in range(n_main)]
    main_ids = list(range(len(blades), len(blades) + n_main))
    blades += main
    if rng.random() < 0.2:
        blades += _draw_other_blades(rng, frame_h, background, "front")[:1]
    stage = "none" if label == "healthy" else ("early" if rng.random() < knobs["early_fraction"] else "advanced")
    lesions = _draw_lesions(rng, label, stage, blades, main_ids, frame_h, knobs)
    holes = _draw_holes(rng, blades, main_ids, frame_h, knobs)
    n_dust = rng.poisson(knobs["dust_per_plant"])
    dust = np.column_stack([rng.uniform(0, 1, n_dust), rng.uniform(0, frame_h, n_dust),
                            rng.uniform(0.002, 0.006, n_dust)])
    n_shadows = rng.integers(1, 3) if rng.random() < knobs["shadow_p"] else 0
    shadows = np.column_stack([rng.uniform(0, 1, n_shadows), rng.uniform(0, frame_h, n_shadows),
                               rng.uniform(0, np.pi, n_shadows), rng.uniform(0.03, 0.15, n_shadows),
                               rng.uniform(0.3, 0.6, n_shadows)])
    return Scene(blades=blades, lesions=lesions, holes=holes, dust=dust, shadows=shadows,
                 background=background, water_level=float(rng.uniform(-0.2, 0.3)),
                 materials=materials, irradiance=irradiance,
                 yellowing=float(rng.uniform(0, knobs["yellowing_max"])),
                 noise=rng.standard_normal((4, _NOISE_GRID, _NOISE_GRID)).astype(np.float32), stage=stage)


def _draw_blade(rng: np.random.Generator, frame_h: float, layer: str, knobs: dict[str, float]) -> Blade:
    """A photographed blade crossing the frame, mostly diagonally, sometimes showing its tip."""
    tone = np.exp(rng.normal(0, [0.10, 0.12, 0.12, 0.06])).astype(np.float32)
    half_width = rng.uniform(0.055, 0.095)
    tip = rng.uniform(0.15, 1.2)
    dry = rng.uniform(0.05, 0.25) if rng.random() < knobs["dry_tip_p"] else 0.0
    return Blade(x0=rng.uniform(0.25, 0.75), y0=rng.uniform(0.2, frame_h - 0.2),
                 angle=rng.uniform(-np.pi, np.pi), bend=rng.normal(0, 0.25), half_width=half_width,
                 tip=tip, taper=rng.uniform(0.15, 0.35), dry=dry, tone=tone,
                 veins=int(rng.integers(6, 10)), layer=layer)


def _draw_other_blades(rng: np.random.Generator, frame_h: float, background: str, layer: str) -> list[Blade]:
    """Leaves of neighbouring plants: many behind in a dense canopy, a few elsewhere."""
    mean = {"soil": 1.0, "paddy": 2.0, "canopy": 6.0}[background] if layer == "back" else 1.0
    blades = []
    for _ in range(rng.poisson(mean)):
        tone = np.exp(rng.normal(0, [0.12, 0.12, 0.12, 0.08])).astype(np.float32) * rng.uniform(0.45, 0.9)
        blades.append(Blade(x0=rng.uniform(0, 1), y0=rng.uniform(0, frame_h), angle=rng.uniform(-np.pi, np.pi),
                            bend=rng.normal(0, 0.3), half_width=rng.uniform(0.03, 0.08),
                            tip=rng.uniform(0.0, 1.0), taper=rng.uniform(0.1, 0.3),
                            dry=rng.uniform(0.05, 0.2) if rng.random() < 0.2 else 0.0, tone=tone,
                            veins=int(rng.integers(5, 9)), layer=layer))
    return blades


def _blade_point(blade: Blade, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image coordinates of blade-local points (u along, v across)."""
    across = v + blade.bend * u**2
    c, s = math.cos(blade.angle), math.sin(blade.angle)
    return blade.x0 + u * c - across * s, blade.y0 + u * s + across * c


def _on_frame_points(rng: np.random.Generator, blade: Blade, n: int, frame_h: float,
                     v_spread: float, margin: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` random blade-local points that fall inside the RGB frame (rejection sampling)."""
    u = rng.uniform(-1.3, blade.tip - blade.taper * 0.6 - blade.dry, 8 * n + 16)
    v = rng.uniform(-v_spread, v_spread, u.size) * blade.half_width
    x, y = _blade_point(blade, u, v)
    keep = (x > margin) & (x < 1 - margin) & (y > margin) & (y < frame_h - margin)
    return u[keep][:n], v[keep][:n]


def _draw_lesions(rng: np.random.Generator, label: str, stage: str, blades: list[Blade], main: list[int],
                  frame_h: float, knobs: dict[str, float]) -> list[Lesion]:
    """Blast: a few spindles along the veins, sometimes merging; brown spot: many small ovals."""
    if label == "healthy":
        return []
    lesions: list[Lesion] = []
    scale = knobs["lesion_scale"]
    for order, b in enumerate(main):
        blade = blades[b]
        top = order == len(main) - 1  # the top-most main blade always carries at least one lesion
        if stage == "early":
            n = int(top) * rng.integers(1, 3)
        else:
            mean = knobs["blast_per_leaf"] if label == "blast" else knobs["brown_per_leaf"]
            n = rng.poisson(mean) + int(top)
        us, vs = _on_frame_points(rng, blade, n, frame_h, 0.55)
        for u, v in zip(us, vs):
            size = scale * (0.55 if stage == "early" else 1.0)
            contrast = rng.uniform(knobs["lesion_contrast_min"], 1.0) * (0.8 if stage == "early" else 1.0)
            if label == "blast":
                a = rng.uniform(0.03, 0.07) * size
                lesions.append(Lesion(b, "blast", u, v, a, a * rng.uniform(0.22, 0.38),
                                      centre=rng.uniform(0.4, 0.65) if stage != "early" else 0.0,
                                      halo=rng.uniform(1.1, 1.5), halo_strength=rng.uniform(0.0, 0.6),
                                      contrast=contrast))
                if rng.random() < 0.25:  # a neighbour along the same vein: the two spots merge
                    a2 = a * rng.uniform(0.6, 1.0)
                    lesions.append(Lesion(b, "blast", u + rng.choice([-1, 1]) * (a + a2) * 0.8,
                                          v + rng.normal(0, 0.1) * blade.half_width, a2,
                                          a2 * rng.uniform(0.22, 0.38), rng.uniform(0.4, 0.65),
                                          rng.uniform(1.1, 1.5), rng.uniform(0.0, 0.6), contrast))
            else:
                a = rng.uniform(0.008, 0.02) * size
                lesions.append(Lesion(b, "brown", u, v, a, a * rng.uniform(0.55, 0.85),
                                      centre=rng.uniform(0.3, 0.5) if rng.random() < 0.35 else 0.0,
                                      halo=rng.uniform(1.6, 2.3), halo_strength=rng.uniform(0.5, 1.0),
                                      contrast=contrast))
    return lesions


def _draw_holes(rng: np.random.Generator, blades: list[Blade], main: list[int], frame_h: float,
                knobs: dict[str, float]) -> list[Hole]:
    holes = []
    for _ in range(rng.poisson(knobs["holes_per_plant"])):
        b = int(rng.choice(main))
        us, vs = _on_frame_points(rng, blades[b], 1, frame_h, 0.6)
        if len(us):
            a = rng.uniform(0.006, 0.016)
            holes.append(Hole(b, float(us[0]), float(vs[0]), a, a * rng.uniform(0.5, 0.9)))
    return holes


# --------------------------------------------------------------------------------------------------
# Evaluating the scene on a pixel grid: material codes, reflectance and irradiance per pixel.


def _noise(scene: Scene, channel: int, x: np.ndarray, y: np.ndarray, freq: float) -> np.ndarray:
    """Smooth value noise (std about 0.6) at normalised coordinates, ``freq`` grid cells per unit."""
    grid = scene.noise[channel].ravel()
    gx = x * np.float32(freq) + np.float32(3.7 * channel)  # offsets keep one grid's scales apart
    gy = y * np.float32(freq) + np.float32(5.3 * channel)
    fx, fy = np.floor(gx), np.floor(gy)
    tx, ty = gx - fx, gy - fy
    wrap = _NOISE_GRID - 1  # the grid size is a power of two: "& wrap" is a cheap periodic modulo
    ix, iy = fx.astype(np.int32) & wrap, fy.astype(np.int32) & wrap
    jx, jy = (ix + 1) & wrap, (iy + 1) & wrap
    row0, row1 = iy * _NOISE_GRID, jy * _NOISE_GRID
    a, b = grid.take(row0 + ix), grid.take(row0 + jx)
    c, d = grid.take(row1 + ix), grid.take(row1 + jx)
    top = a + (b - a) * tx  # bilinear, periodic
    bottom = c + (d - c) * tx
    return top + (bottom - top) * ty


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _blade_coords(blade: Blade, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, inside) of every pixel for one blade."""
    c, s = math.cos(blade.angle), math.sin(blade.angle)
    dx, dy = x - blade.x0, y - blade.y0
    u = dx * c + dy * s
    v = -dx * s + dy * c - blade.bend * u**2
    half = blade.half_width * np.clip((blade.tip - u) / blade.taper, 0.0, 1.0) ** 0.6
    return u, v, np.abs(v) < half


def _spindle_radius(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Radius whose level sets are spindles (pointed at both ends): 1 on the boundary of half-size a x b."""
    p, q = np.abs(v) / b, (u / a) ** 2
    return (p + np.sqrt(p * p + 4 * q)) / 2


def _render_scene(scene: Scene, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Material codes, reflectance (4, h, w), irradiance (h, w) and lesion ids at points (x, y)."""
    m = scene.materials
    code = np.zeros(x.shape, dtype=np.uint8)
    refl = _background(scene, x, y, code)
    lesion_id = np.full(x.shape, -1, dtype=np.int32)
    texture = 1 + 0.05 * _noise(scene, 0, x, y, 40)
    yellow = scene.yellowing * _smoothstep(0.0, 1.5, _noise(scene, 1, x, y, 5))
    for b, blade in enumerate(scene.blades):
        u, v, inside = _blade_coords(blade, x, y)
        if not inside.any():
            continue
        idx = np.nonzero(inside)
        ub, vb = u[idx], v[idx]
        # Healthy tissue: this blade's green, veins along its length, yellowing, rounded cross-section.
        leaf = m["leaf"][:, None] * blade.tone[:, None]
        leaf = leaf + (m["chlorotic"][:, None] - leaf) * yellow[idx]
        veins = 1 + 0.07 * np.cos(2 * np.pi * vb * blade.veins / (2 * blade.half_width))
        midrib = 1 + 0.08 * (np.abs(vb) < 0.06 * blade.half_width)
        cross = 0.85 + 0.15 * (1 - (vb / blade.half_width) ** 2)
        pixel = leaf * (veins * midrib * cross * texture[idx])
        pixel_code = np.full(ub.shape, MATERIALS["leaf" if blade.layer == "main" else "other_leaf"], np.uint8)
        if blade.dry > 0:
            edge = blade.tip - blade.dry * (1 + 0.25 * _noise(scene, 2, x[idx], y[idx], 25))
            dry = _smoothstep(-0.01, 0.01, ub - edge)
            pixel = pixel + (m["straw"][:, None] * texture[idx] - pixel) * dry
            pixel_code[dry > 0.5] = MATERIALS["dry_tip"]
        if blade.layer != "main":
            pixel_code[pixel_code == MATERIALS["dry_tip"]] = MATERIALS["other_leaf"]
        lesion_here = _apply_lesions(scene, b, ub, vb, x[idx], y[idx], pixel, pixel_code)
        _apply_holes(scene, b, ub, vb, refl[:, idx[0], idx[1]], pixel, pixel_code)
        refl[:, idx[0], idx[1]] = pixel
        code[idx] = pixel_code
        lesion_id[idx] = lesion_here
    _apply_dust(scene, x, y, refl, code, lesion_id)
    return {"code": code, "reflectance": refl, "irradiance": _irradiance(scene, x, y), "lesion_id": lesion_id}


def _background(scene: Scene, x: np.ndarray, y: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Soil with clods and wet patches; in paddies, water with sky glints where the field is flooded."""
    m = scene.materials
    moisture = _noise(scene, 3, x, y, 8)
    wet = _smoothstep(-0.5, 1.0, moisture)
    clods = 1 + 0.25 * _noise(scene, 0, x, y, 60)
    soil = m["soil"][:, None, None] * (clods * (1 - 0.55 * wet))[None]
    if scene.background == "canopy":
        soil = soil * 0.5  # deep in the canopy the ground is in shade
    if scene.background != "paddy":
        return soil.astype(np.float32)
    water = moisture > scene.water_level
    glint = np.clip(_noise(scene, 2, x, y, 12) - 1.2, 0, None) * 0.25
    flooded = m["water"][:, None, None] + glint[None] * np.array([1.0, 0.9, 0.8, 0.5], np.float32)[:, None, None]
    code[water] = MATERIALS["water"]
    return np.where(water[None], flooded, soil).astype(np.float32)


def _apply_lesions(scene: Scene, b: int, u: np.ndarray, v: np.ndarray, x: np.ndarray, y: np.ndarray,
                   pixel: np.ndarray, pixel_code: np.ndarray) -> np.ndarray:
    """Paint this blade's lesions (halo, margin, centre) in place; return the lesion id per pixel."""
    ids = [i for i, lesion in enumerate(scene.lesions) if lesion.blade == b]
    lesion_id = np.full(u.shape, -1, dtype=np.int32)
    if not ids or u.size == 0:
        return lesion_id
    les = [scene.lesions[i] for i in ids]
    lu, lv = np.array([l.u for l in les])[:, None], np.array([l.v for l in les])[:, None]
    la, lb = np.array([l.a for l in les])[:, None], np.array([l.b for l in les])[:, None]
    du, dv = u[None] - lu, v[None] - lv
    blast = np.array([l.kind == "blast" for l in les])[:, None]
    radius = np.where(blast, _spindle_radius(du, dv, la, lb), np.sqrt((du / la) ** 2 + (dv / lb) ** 2))
    radius = radius * (1 + 0.12 * _noise(scene, 2, x, y, 90))[None]  # ragged edges
    nearest = np.argmin(radius, axis=0)
    r = radius[nearest, np.arange(u.size)]
    m = scene.materials
    centre, halo, strength, contrast = (np.array([getattr(l, attr) for l in les], dtype=np.float32)[nearest]
                                        for attr in ("centre", "halo", "halo_strength", "contrast"))
    is_blast = np.array([l.kind == "blast" for l in les])[nearest]
    w_halo = (1 - _smoothstep(0.8, 1.0, r / halo)) * strength
    w_lesion = (1 - _smoothstep(0.85, 1.05, r)) * contrast
    w_centre = (1 - _smoothstep(0.8, 1.2, r / np.maximum(centre, 1e-3))) * (centre > 0) * contrast
    centre_refl = np.where(is_blast[None], m["necrotic_grey"][:, None], m["necrotic_tan"][:, None])
    pixel += (m["chlorotic"][:, None] - pixel) * w_halo
    pixel += (m["necrotic_dark"][:, None] - pixel) * w_lesion
    pixel += (centre_refl - pixel) * w_centre
    visible_halo = (r < halo) & (strength > 0.3)
    in_lesion = r < 1.0
    pixel_code[visible_halo] = MATERIALS["halo"]
    pixel_code[in_lesion] = MATERIALS["lesion_margin"]
    pixel_code[in_lesion & (r < centre)] = MATERIALS["lesion_centre"]
    lesion_id[in_lesion] = np.asarray(ids)[nearest[in_lesion]]
    return lesion_id


def _apply_holes(scene: Scene, b: int, u: np.ndarray, v: np.ndarray, behind: np.ndarray,
                 pixel: np.ndarray, pixel_code: np.ndarray) -> None:
    """Cut insect holes: the ground shows through (in the leaf's shade), rimmed by browned tissue."""
    for hole in (h for h in scene.holes if h.blade == b):
        r = np.sqrt(((u - hole.u) / hole.a) ** 2 + ((v - hole.v) / hole.b) ** 2)
        rim, through = r < 1.35, r < 1.0
        pixel[:, rim] += (scene.materials["necrotic_dark"][:, None] - pixel[:, rim]) * 0.7
        pixel[:, through] = behind[:, through] * 0.5
        pixel_code[rim] = MATERIALS["insect_hole"]


def _apply_dust(scene: Scene, x: np.ndarray, y: np.ndarray, refl: np.ndarray, code: np.ndarray,
                lesion_id: np.ndarray) -> None:
    """Brownish-grey dust specks lying on leaves (not on water or soil, where they would not show)."""
    if not len(scene.dust):
        return
    leafy = np.nonzero(np.isin(code, (MATERIALS["leaf"], MATERIALS["other_leaf"], MATERIALS["dry_tip"],
                                      MATERIALS["halo"], MATERIALS["lesion_margin"],
                                      MATERIALS["lesion_centre"])))
    px, py = x[leafy].astype(np.float32), y[leafy].astype(np.float32)
    sx, sy, radius = (scene.dust[:, i, None].astype(np.float32) for i in range(3))
    speck = (((px[None] - sx) ** 2 + (py[None] - sy) ** 2) < radius**2).any(axis=0)
    hit = tuple(axis[speck] for axis in leafy)
    refl[(slice(None), *hit)] = scene.materials["dust"][:, None]
    code[hit] = MATERIALS["dust"]
    lesion_id[hit] = -1


def _irradiance(scene: Scene, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Light reaching each point: a gentle gradient, darkened in the soft shadows of unseen leaves."""
    light = 1 + 0.12 * _noise(scene, 1, x, y, 2)
    for x0, y0, angle, half, depth in scene.shadows:
        dist = np.abs(-(x - x0) * math.sin(angle) + (y - y0) * math.cos(angle))
        light = light * (1 - (1 - depth) * (1 - _smoothstep(half * 0.7, half * 1.3, dist)))
    return light.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Cameras.


@dataclass(frozen=True)
class Camera:
    """One camera of the rig: where it looks relative to the RGB frame, and how it records light."""

    name: str            # "rgb" or "rgnir"
    dx: float            # pixels: a scene point at RGB pixel p shows at c + scale * R(rotation)(p - c) + (dx, dy)
    dy: float
    scale: float
    rotation_deg: float
    gains: tuple[float, float, float]
    exposure: float      # multiplies the auto-exposure
    blur: float          # defocus, in pixels at this size
    vignette: float
    saturation: float
    shot_noise: float
    read_noise: float
    jpeg_quality: int


def _draw_cameras(rng: np.random.Generator, size: int, knobs: dict[str, float]) -> tuple[Camera, Camera]:
    """The RGB camera defines the frame; the R-G-NIR one sits beside it, a little off."""
    cams = []
    for name in ("rgb", "rgnir"):
        offset = name == "rgnir"
        cams.append(Camera(
            name=name,
            dx=float(rng.uniform(-0.06, 0.06) * size) if offset else 0.0,
            dy=float(rng.uniform(-0.05, 0.05) * size) if offset else 0.0,
            scale=float(rng.uniform(0.95, 1.06)) if offset else 1.0,
            rotation_deg=float(rng.uniform(-3, 3)) if offset else 0.0,
            gains=tuple(float(g) for g in np.exp(rng.normal(0, 0.07, 3))),
            exposure=float(np.exp(rng.normal(0, 0.15))),
            blur=float(rng.uniform(0.3, 0.9) * size / 128),
            vignette=float(rng.uniform(0.1, 0.35)),
            saturation=float(rng.uniform(1.5, 2.0)),
            shot_noise=float(rng.uniform(0.0005, 0.0015) * knobs["noise_scale"]),
            read_noise=float(rng.uniform(0.001, 0.004) * knobs["noise_scale"]),
            jpeg_quality=int(rng.integers(72, 96) if not offset else rng.integers(62, 92)),
        ))
    return cams[0], cams[1]


def camera_grid(camera: Camera, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised scene coordinates (x, y) seen by each pixel centre of this camera."""
    qy, qx = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    cx, cy = width / 2, height / 2
    theta = math.radians(camera.rotation_deg)
    c, s = math.cos(theta), math.sin(theta)
    rx, ry = qx - cx - camera.dx, qy - cy - camera.dy
    px = cx + (c * rx + s * ry) / camera.scale   # inverse rotation, then inverse scale
    py = cy + (-s * rx + c * ry) / camera.scale
    return (px / width).astype(np.float32), (py / width).astype(np.float32)


def _photograph(scene: Scene, camera: Camera, rendered: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Turn reflectance and light into an 8-bit picture through this camera's optics and sensor."""
    shade_blue = 1 + 0.25 * (1 - rendered["irradiance"])  # shadows are lit by the blue sky
    radiance = rendered["reflectance"] * rendered["irradiance"][None] * scene.irradiance[:, None, None]
    radiance[0] *= shade_blue
    mix = _RGB_MIX if camera.name == "rgb" else _RGNIR_MIX
    # White balance is set so that a white card under nominal daylight comes out neutral.
    balance = np.asarray(camera.gains, np.float32) / (mix @ np.ones(4, np.float32))
    if camera.name == "rgnir":
        balance = balance * np.array([1.0, 1.0, 0.8], np.float32)  # the usual washed-out NIR look
    linear = np.tensordot(mix, radiance, axes=1) * balance[:, None, None]
    if camera.name == "rgb":  # consumer cameras boost saturation; the converted camera does not
        grey = linear.mean(axis=0, keepdims=True)
        linear = np.clip(grey + camera.saturation * (linear - grey), 0, None)
    if camera.blur > 0.05:
        linear = gaussian_filter(linear, sigma=(0, camera.blur, camera.blur), mode="nearest")
    linear *= 0.22 / max(float(linear.mean()), 1e-4) * camera.exposure  # auto-exposure on mean grey
    h, w = linear.shape[1:]
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx + 0.5 - w / 2) ** 2 + (yy + 0.5 - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    linear *= (1 - camera.vignette * r2)[None]
    sigma = np.sqrt(camera.shot_noise * np.clip(linear, 0, None) + camera.read_noise**2)
    linear = linear + sigma * rng.standard_normal(linear.shape).astype(np.float32)
    encoded = np.clip(linear, 0, 1) ** (1 / 2.2)
    return np.round(encoded.transpose(1, 2, 0) * 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# The planted shortcut: an orange date imprint, like old cameras burn into the corner of a photo.

_DIGITS = {"0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
           "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
           "8": "111101111101111", "9": "111101111001111", " ": "000000000000000"}


def _stamp_bitmap(text: str, scale: int) -> np.ndarray:
    """A boolean bitmap of ``text`` in a 3x5 pixel font, each font pixel ``scale`` pixels wide."""
    glyphs = [np.array(list(_DIGITS[ch]), dtype=int).reshape(5, 3).astype(bool) for ch in text]
    gap = np.zeros((5, 1), dtype=bool)
    row = np.hstack([part for g in glyphs for part in (g, gap)][:-1])
    return np.kron(row, np.ones((scale, scale), dtype=bool))


def _draw_stamp(image: np.ndarray, mask: np.ndarray, text: str) -> None:
    """Burn the date into the bottom-right corner of the picture, and mark it in the mask."""
    h, w = mask.shape
    bitmap = _stamp_bitmap(text, max(1, round(w / 128)))
    bh, bw = bitmap.shape
    top, left = h - bh - max(2, h // 25), w - bw - max(2, w // 25)
    region = (slice(top, top + bh), slice(left, left + bw))
    image[region][bitmap] = (255, 150, 40)
    mask[region][bitmap] = MATERIALS["stamp"]


# --------------------------------------------------------------------------------------------------
# One plant, end to end (runs in worker processes).


def make_plant(task: PlantTask, config: SynthConfig) -> dict[str, dict]:
    """Draw one plant and photograph it with both cameras: {camera: {"image", "mask", "meta"}}."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1, task.index)))
    knobs = difficulty_knobs(config.difficulty)
    width, height = config.size, config.height
    scene = _draw_scene(rng, task.true_label, height / width, knobs)
    cameras = _draw_cameras(rng, width, knobs)
    stamp_text = f"{rng.integers(18, 21):02d} {rng.integers(1, 13):2d} {rng.integers(1, 29):2d}"
    out = {}
    for camera in cameras:
        x, y = camera_grid(camera, width, height)
        rendered = _render_scene(scene, x, y)
        image = _photograph(scene, camera, rendered, rng)
        mask = rendered["code"]
        if task.stamp:
            _draw_stamp(image, mask, stamp_text)
        out[camera.name] = {"image": image, "mask": mask,
                            "meta": _image_metadata(task, scene, camera, rendered, mask)}
    return out


def _image_metadata(task: PlantTask, scene: Scene, camera: Camera, rendered: dict[str, np.ndarray],
                    mask: np.ndarray) -> dict:
    """One metadata row: labels, what the mask shows, camera settings and the nuisances present."""
    suffix = "" if camera.name == "rgb" else "_rgn"
    lesion = lesion_mask(mask)
    visible_lesions = np.unique(rendered["lesion_id"][lesion])
    present = set(np.unique(mask).tolist())
    nuisances = [name for name in ("dry_tip", "dust", "insect_hole", "other_leaf", "water")
                 if MATERIALS[name] in present]
    if len(scene.shadows):
        nuisances.append("shadow")
    return {
        "Image_id": f"{task.plant_id}{suffix}.jpg", "plant_id": task.plant_id, "camera": camera.name,
        "split": task.split, "label": task.label, "true_label": task.true_label,
        "label_flipped": task.label != task.true_label, "stage": scene.stage,
        "lesion_count": int((visible_lesions >= 0).sum()),
        "lesion_area_fraction": round(float(lesion.mean()), 6),
        "halo_area_fraction": round(float((mask == MATERIALS["halo"]).mean()), 6),
        "leaf_area_fraction": round(float((mask == MATERIALS["leaf"]).mean()), 6),
        "camera_offset_dx": round(camera.dx, 4), "camera_offset_dy": round(camera.dy, 4),
        "camera_scale": round(camera.scale, 5), "camera_rotation_deg": round(camera.rotation_deg, 4),
        "exposure": round(camera.exposure, 4), "blur_px": round(camera.blur, 4),
        "jpeg_quality": camera.jpeg_quality, "background": scene.background,
        "dust_specks": len(scene.dust),
        "insect_holes": len(scene.holes), "shadows": len(scene.shadows),
        "nuisances": ";".join(nuisances), "shortcut": task.stamp,
    }


def _write_plant(args: tuple[PlantTask, SynthConfig, str]) -> list[dict]:
    """Worker: make one plant and write its two JPEGs and two masks; return its metadata rows."""
    task, config, root = args
    plant = make_plant(task, config)
    rows = []
    for camera, suffix in (("rgb", ""), ("rgnir", "_rgn")):
        stem = f"{task.plant_id}{suffix}"
        shot = plant[camera]
        # Full-resolution chroma (4:4:4): our small images stand for downscaled 500 px photos, whose
        # colour detail survives; 4:2:0 at 128 px would wipe out small spots in the NIR channel.
        Image.fromarray(shot["image"], "RGB").save(Path(root, "images", f"{stem}.jpg"),
                                                   quality=shot["meta"]["jpeg_quality"], subsampling=0)
        Image.fromarray(shot["mask"], "L").save(Path(root, "masks", f"{stem}.png"))
        rows.append(shot["meta"])
    return rows


# --------------------------------------------------------------------------------------------------
# The whole dataset.


def synthesize(root: str | Path, config: SynthConfig, progress: bool | None = None) -> Path:
    """Write the whole synthetic dataset to ``root`` (atomically: a temp folder renamed at the end)."""
    root = Path(root).expanduser().resolve()
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not (root / CONFIG_FILE).exists())):
        raise DataError(f"{root}: exists and is not a synthetic dataset folder; refusing to overwrite it "
                        f"(choose another path or delete it)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "masks").mkdir()
    tasks = plan_plants(config)
    show = sys.stderr.isatty() if progress is None else progress
    try:
        rows = _run_tasks(tasks, config, tmp, show)
        _write_tables(tmp, tasks, rows)
        (tmp / CONFIG_FILE).write_text(json.dumps(config.output_settings(), indent=2, sort_keys=True) + "\n")
        (tmp / COMPLETE_MARKER).write_text("complete\n")
    except BaseException:  # interrupted or failed: leave no half-written folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return root


def _run_tasks(tasks: list[PlantTask], config: SynthConfig, tmp: Path, show: bool) -> list[dict]:
    """Make every plant, in worker processes when asked; rows come back in plant order."""
    workers = min(config.workers or os.cpu_count() or 1, len(tasks))
    jobs = [(task, config, str(tmp)) for task in tasks]
    rows: list[dict] = []
    if workers <= 1:
        results = map(_write_plant, jobs)
        executor = None
    else:
        executor = ProcessPoolExecutor(max_workers=workers)
        results = executor.map(_write_plant, jobs, chunksize=max(1, len(jobs) // (workers * 16)))
    try:
        for done, plant_rows in enumerate(results, 1):
            rows.extend(plant_rows)
            if show and (done % 50 == 0 or done == len(jobs)):
                print(f"\rsynth: {done}/{len(jobs)} plants", end="" if done < len(jobs) else "\n",
                      file=sys.stderr, flush=True)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return rows


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_tables(root: Path, tasks: list[PlantTask], rows: list[dict]) -> None:
    """Train.csv, Test.csv, SampleSubmission.csv, TestLabels.csv and metadata.csv."""
    train = [t for t in tasks if t.split == "train"]
    test = [t for t in tasks if t.split == "test"]
    def pair(task: PlantTask) -> tuple[str, str]:
        return f"{task.plant_id}.jpg", f"{task.plant_id}_rgn.jpg"

    _write_csv(root / "Train.csv", ["Image_id", "Label"], [[i, t.label] for t in train for i in pair(t)])
    _write_csv(root / "Test.csv", ["Image_id"], [[i] for t in test for i in pair(t)])
    _write_csv(root / "TestLabels.csv", ["Image_id", "Label"], [[i, t.true_label] for t in test for i in pair(t)])
    third = repr(1 / 3)
    _write_csv(root / "SampleSubmission.csv", ["Image_id", *CLASSES],
               [[f"{t.plant_id}.jpg", third, third, third] for t in test])
    header = list(rows[0]) if rows else ["Image_id"]
    _write_csv(root / "metadata.csv", header, [[row[k] for k in header] for row in rows])


def is_complete(root: str | Path, config: SynthConfig) -> bool:
    """True when ``root`` holds a finished dataset written with the same settings as ``config``."""
    root = Path(root)
    try:
        written = json.loads((root / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (root / COMPLETE_MARKER).is_file() and written == json.loads(json.dumps(config.output_settings()))


def ensure_synthetic(root: str | Path, config: SynthConfig | None = None) -> Path:
    """Reuse the dataset at ``root`` if it was written with this config, else (re)generate it."""
    config = config or SynthConfig()
    root = Path(root).expanduser().resolve()
    if is_complete(root, config):
        return root
    return synthesize(root, config)
