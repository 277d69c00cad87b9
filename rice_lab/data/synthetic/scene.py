"""A plant's scene: leaf blades, lesions, holes, dust and shadows drawn once, in normalised units, no pixels.

Coordinates are fractions of the RGB frame's width (x in [0, 1], y in [0, height / width]), so the
same scene can be evaluated on any camera's pixel grid (:mod:`rice_lab.data.synthetic.rendering`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rice_lab.data.synthetic.materials import REFLECTANCE


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
    centre_material: str  # REFLECTANCE key of the centre: necrotic_grey (blast), necrotic_tan (brown)


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


NOISE_GRID = 64  # cells of each periodic random grid behind the smooth textures


def _jitter(rng: np.random.Generator, base: tuple[float, ...], spread: float) -> np.ndarray:
    return np.asarray(base, dtype=np.float32) * np.exp(rng.normal(0, spread, 4)).astype(np.float32)


def draw_scene(rng: np.random.Generator, label: str, frame_h: float, knobs: dict[str, float],
               shared_colours: np.random.Generator | None = None) -> Scene:
    """Draw the plant: its leaves, their lesions and the nuisances, all in normalised units.

    With ``shared_colours`` (a generator of its own, so nothing else about the plant changes), every
    lesion's colours are redrawn from one recipe for both diseases: see :func:`share_lesion_colours`.
    """
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
    if shared_colours is not None:
        for lesion in lesions:
            share_lesion_colours(lesion, shared_colours, stage)
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
                 noise=rng.standard_normal((4, NOISE_GRID, NOISE_GRID)).astype(np.float32), stage=stage)


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
            spot_scale = scale * (0.55 if stage == "early" else 1.0)
            contrast = rng.uniform(knobs["lesion_contrast_min"], 1.0) * (0.8 if stage == "early" else 1.0)
            if label == "blast":
                a = rng.uniform(0.03, 0.07) * spot_scale
                lesions.append(Lesion(b, "blast", u, v, a, a * rng.uniform(0.22, 0.38),
                                      centre=rng.uniform(0.4, 0.65) if stage != "early" else 0.0,
                                      halo=rng.uniform(1.1, 1.5), halo_strength=rng.uniform(0.0, 0.6),
                                      contrast=contrast, centre_material="necrotic_grey"))
                if rng.random() < 0.25:  # a neighbour along the same vein: the two spots merge
                    a2 = a * rng.uniform(0.6, 1.0)
                    lesions.append(Lesion(b, "blast", u + rng.choice([-1, 1]) * (a + a2) * 0.8,
                                          v + rng.normal(0, 0.1) * blade.half_width, a2,
                                          a2 * rng.uniform(0.22, 0.38), rng.uniform(0.4, 0.65),
                                          rng.uniform(1.1, 1.5), rng.uniform(0.0, 0.6), contrast, "necrotic_grey"))
            else:
                a = rng.uniform(0.008, 0.02) * spot_scale
                lesions.append(Lesion(b, "brown", u, v, a, a * rng.uniform(0.55, 0.85),
                                      centre=rng.uniform(0.3, 0.5) if rng.random() < 0.35 else 0.0,
                                      halo=rng.uniform(1.6, 2.3), halo_strength=rng.uniform(0.5, 1.0),
                                      contrast=contrast, centre_material="necrotic_tan"))
    return lesions


def share_lesion_colours(lesion: Lesion, rng: np.random.Generator, stage: str) -> None:
    """Redraw a lesion's colours from one recipe for both diseases, leaving its shape, size and place.

    By default blast centres are grey, brown-spot centres tan, blast halos faint and narrow and brown
    spot halos strong and wide. Here every lesion picks a grey or tan centre (present in about two
    spots of three, never in early ones), a halo strength and a halo width from the union of both
    ranges, so only the spots' shapes, sizes and numbers still tell the diseases apart.
    """
    lesion.centre_material = str(rng.choice(["necrotic_grey", "necrotic_tan"]))
    present = rng.random() < 2 / 3 and stage != "early"
    lesion.centre = float(rng.uniform(0.3, 0.65)) if present else 0.0
    lesion.halo = float(rng.uniform(1.1, 2.3))
    lesion.halo_strength = float(rng.uniform(0.0, 1.0))


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
