"""One plant, end to end: draw its scene, photograph it with both cameras, describe each photo."""

from __future__ import annotations

import numpy as np

from rice_lab.data.synthetic.artefacts import draw_stamp
from rice_lab.data.synthetic.cameras import Camera, camera_grid, draw_cameras, photograph
from rice_lab.data.synthetic.config import SynthConfig, difficulty_knobs
from rice_lab.data.synthetic.materials import MATERIALS, lesion_mask
from rice_lab.data.synthetic.plan import PlantTask
from rice_lab.data.synthetic.rendering import render_scene
from rice_lab.data.synthetic.scene import Scene, draw_scene


def make_plant(task: PlantTask, config: SynthConfig) -> dict[str, dict]:
    """Draw one plant and photograph it with both cameras: {camera: {"image", "mask", "meta"}}."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1, task.index)))
    knobs = difficulty_knobs(config.difficulty)
    width, height = config.width, config.height
    # A stream of its own, so that the variant differs from the default data in lesion colours only.
    shared_colours = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2, task.index))) \
        if config.same_lesion_colours else None
    scene = draw_scene(rng, task.true_label, height / width, knobs, shared_colours)
    cameras = draw_cameras(rng, width, knobs)
    stamp_text = f"{rng.integers(18, 21):02d} {rng.integers(1, 13):2d} {rng.integers(1, 29):2d}"
    out = {}
    for camera in cameras:
        x, y = camera_grid(camera, width, height)
        rendered = render_scene(scene, x, y)
        image = photograph(scene, camera, rendered, rng)
        mask = rendered["code"]
        if task.stamp:
            draw_stamp(image, mask, stamp_text)
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
