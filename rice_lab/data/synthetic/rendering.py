"""Evaluating a scene on a pixel grid: material codes, reflectance (4 bands) and irradiance per pixel."""

from __future__ import annotations

import math

import numpy as np

from rice_lab.data.synthetic.materials import MATERIALS
from rice_lab.data.synthetic.scene import NOISE_GRID, Blade, Scene


def _noise(scene: Scene, channel: int, x: np.ndarray, y: np.ndarray, freq: float) -> np.ndarray:
    """Smooth value noise (std about 0.6) at normalised coordinates, ``freq`` grid cells per unit."""
    grid = scene.noise[channel].ravel()
    gx = x * np.float32(freq) + np.float32(3.7 * channel)  # offsets keep one grid's scales apart
    gy = y * np.float32(freq) + np.float32(5.3 * channel)
    fx, fy = np.floor(gx), np.floor(gy)
    tx, ty = gx - fx, gy - fy
    wrap = NOISE_GRID - 1  # the grid size is a power of two: "& wrap" is a cheap periodic modulo
    ix, iy = fx.astype(np.int32) & wrap, fy.astype(np.int32) & wrap
    jx, jy = (ix + 1) & wrap, (iy + 1) & wrap
    row0, row1 = iy * NOISE_GRID, jy * NOISE_GRID
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


def render_scene(scene: Scene, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
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
    centre_material = np.array([l.centre_material for l in les])[nearest]
    w_halo = (1 - _smoothstep(0.8, 1.0, r / halo)) * strength
    w_lesion = (1 - _smoothstep(0.85, 1.05, r)) * contrast
    w_centre = (1 - _smoothstep(0.8, 1.2, r / np.maximum(centre, 1e-3))) * (centre > 0) * contrast
    centre_refl = np.where((centre_material == "necrotic_grey")[None], m["necrotic_grey"][:, None],
                           m["necrotic_tan"][:, None])
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
