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

The modules, in the order a plant is made:

    config     SynthConfig (the settings), difficulty_knobs (the rates one difficulty sets)
    plan       plan_plants: ids, labels, split, label noise, which plants carry the shortcut
    materials  MATERIALS (mask codes), REFLECTANCE (four bands), lesion_mask
    scene      draw_scene: blades, lesions, holes, dust, shadows, in normalised units
    rendering  render_scene: a scene on a pixel grid (codes, reflectance, irradiance)
    cameras    draw_cameras, camera_grid, photograph: the two cameras and their sensors
    artefacts  draw_stamp: the planted date-stamp shortcut
    plant      make_plant: one plant, both photos, masks and metadata
    writer     synthesize, ensure_synthetic: the whole folder, atomically
"""

from rice_lab.data.synthetic.artefacts import SHORTCUT_RATES, SHORTCUTS, draw_stamp
from rice_lab.data.synthetic.cameras import Camera, camera_grid, draw_cameras, photograph
from rice_lab.data.synthetic.config import GENERATOR_VERSION, SynthConfig, difficulty_knobs
from rice_lab.data.synthetic.materials import (
    BANDS,
    LESION_CODES,
    MATERIAL_NAMES,
    MATERIALS,
    NUISANCE_CODES,
    REFLECTANCE,
    SYMPTOM_CODES,
    lesion_mask,
)
from rice_lab.data.synthetic.plan import PlantTask, plan_plants, plant_ids
from rice_lab.data.synthetic.plant import make_plant
from rice_lab.data.synthetic.rendering import render_scene
from rice_lab.data.synthetic.scene import Blade, Hole, Lesion, Scene, draw_scene
from rice_lab.data.synthetic.writer import COMPLETE_MARKER, CONFIG_FILE, ensure_synthetic, is_complete, synthesize

__all__ = [
    "BANDS", "Blade", "COMPLETE_MARKER", "CONFIG_FILE", "Camera", "GENERATOR_VERSION", "Hole", "LESION_CODES",
    "Lesion", "MATERIALS", "MATERIAL_NAMES", "NUISANCE_CODES", "PlantTask", "REFLECTANCE", "SHORTCUTS",
    "SHORTCUT_RATES", "SYMPTOM_CODES", "Scene", "SynthConfig", "camera_grid", "difficulty_knobs", "draw_cameras",
    "draw_scene", "draw_stamp", "ensure_synthetic", "is_complete", "lesion_mask", "make_plant", "photograph",
    "plan_plants", "plant_ids", "render_scene", "synthesize",
]
