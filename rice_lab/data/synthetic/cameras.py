"""The two cameras of the rig: where each looks relative to the RGB frame, and how it records light."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from rice_lab.data.synthetic.scene import Scene

# Camera spectral mixing: rows are output channels, columns the bands (blue, green, red, nir).
_RGB_MIX = np.array([[0.02, 0.08, 0.90, 0.03],
                     [0.06, 0.88, 0.08, 0.01],
                     [0.88, 0.10, 0.02, 0.01]], dtype=np.float32)
# A converted (filter-swapped) camera: red and green channels leak NIR, which washes colours out.
_RGNIR_MIX = np.array([[0.00, 0.06, 0.85, 0.22],
                       [0.08, 0.80, 0.04, 0.10],
                       [0.00, 0.00, 0.05, 1.00]], dtype=np.float32)


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
    blur: float          # defocus, in pixels at this width
    vignette: float
    saturation: float
    shot_noise: float
    read_noise: float
    jpeg_quality: int


def draw_cameras(rng: np.random.Generator, width: int, knobs: dict[str, float]) -> tuple[Camera, Camera]:
    """The RGB camera defines the frame; the R-G-NIR one sits beside it, a little off."""
    cams = []
    for name in ("rgb", "rgnir"):
        offset = name == "rgnir"
        cams.append(Camera(
            name=name,
            dx=float(rng.uniform(-0.06, 0.06) * width) if offset else 0.0,
            dy=float(rng.uniform(-0.05, 0.05) * width) if offset else 0.0,
            scale=float(rng.uniform(0.95, 1.06)) if offset else 1.0,
            rotation_deg=float(rng.uniform(-3, 3)) if offset else 0.0,
            gains=tuple(float(g) for g in np.exp(rng.normal(0, 0.07, 3))),
            exposure=float(np.exp(rng.normal(0, 0.15))),
            blur=float(rng.uniform(0.3, 0.9) * width / 128),
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


def photograph(scene: Scene, camera: Camera, rendered: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
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

