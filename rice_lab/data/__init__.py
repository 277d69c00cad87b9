"""Data layer: the Zindi reader and validator, the synthetic multi-sensor generator, SSL views."""

from rice_lab.data.zindi import (
    ASPECT,
    CAMERAS,
    CLASSES,
    NearDuplicateWarning,
    Problem,
    Report,
    data_fingerprint,
    load_image,
    pair_files,
    read_mask,
    read_test_labels,
    read_zindi,
    scan_zindi,
    split_plants,
)
from rice_lab.data.synthetic import MATERIALS, SynthConfig, ensure_synthetic, lesion_mask, synthesize

__all__ = [
    "ASPECT", "CAMERAS", "CLASSES", "NearDuplicateWarning", "Problem", "Report", "data_fingerprint",
    "load_image", "pair_files", "read_mask", "read_test_labels", "read_zindi", "scan_zindi", "split_plants",
    "MATERIALS", "SynthConfig", "ensure_synthetic", "lesion_mask", "synthesize",
]
