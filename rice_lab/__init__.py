"""rice-lab: self-supervised multi-sensor rice-leaf models, fine-tuned and explained with rigour.

The main entry points, importable from here (each loads its module, and fastai, only when first used)::

    read_zindi(root)                  -> one row per plant, both cameras   (rice_lab.data)
    synthesize / ensure_synthetic     -> the embedded Zindi-layout dataset (rice_lab.data.synthetic)
    get_preset(name, **overrides)     -> a PretrainConfig                  (rice_lab.presets)
    pretrain / cached_pretrain        -> a SwAV run directory              (rice_lab.ssl.pretrain)
    load_encoder / load_swav_model    -> the encoder, or the whole SwAV net, of a run
    encode, compare_encoders, knn_accuracy, linear_probe_accuracy          (rice_lab.evaluate)
    cached_finetune                   -> a classifier run directory (rice_lab.finetune, a package: its
                                         ``finetune`` function is rice_lab.finetune.finetune)
    predict, evaluate_run             -> per-plant probabilities, and their scores with intervals
    attribute, explain_plants         -> attribution maps of a classifier (rice_lab.explain; its metrics
                                         live in rice_lab.explain.metrics)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_ENTRY_POINTS = {
    "read_zindi": "rice_lab.data.zindi",
    "read_test_labels": "rice_lab.data.zindi",
    "split_plants": "rice_lab.data.zindi",
    "SynthConfig": "rice_lab.data.synthetic",
    "synthesize": "rice_lab.data.synthetic",
    "ensure_synthetic": "rice_lab.data.synthetic",
    "PretrainConfig": "rice_lab.presets",
    "get_preset": "rice_lab.presets",
    "pretrain": "rice_lab.ssl.pretrain",
    "cached_pretrain": "rice_lab.ssl.pretrain",
    "load_encoder": "rice_lab.models",
    "load_swav_model": "rice_lab.ssl",
    "encode": "rice_lab.evaluate",
    "compare_encoders": "rice_lab.evaluate",
    "knn_accuracy": "rice_lab.evaluate",
    "linear_probe_accuracy": "rice_lab.evaluate",
    "FinetuneConfig": "rice_lab.finetune",
    "cached_finetune": "rice_lab.finetune",
    "predict": "rice_lab.finetune",
    "evaluate_run": "rice_lab.finetune",
    "attribute": "rice_lab.explain",
    "explain_plants": "rice_lab.explain",
}
__all__ = sorted(_ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    if name not in _ENTRY_POINTS:
        raise AttributeError(f"module 'rice_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
