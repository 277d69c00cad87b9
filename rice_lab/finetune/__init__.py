"""Fine-tuning an encoder into a classifier, predicting for both cameras, and the submission file.

The names below load their module on first use, so ``rice_lab.finetune.submission`` stays light
(no fastai import) for the checker and the assignments.
"""

from importlib import import_module

_WHERE = {
    "FinetuneConfig": "config", "PRESETS": "config", "get_preset": "config",
    "finetune": "train", "cached_finetune": "train", "classifier_plants": "train",
    "Predictions": "predictions", "predict": "predictions", "load_classifier": "predictions", "photo_probs": "predictions",
    "plant_views": "predictions", "FUSED": "predictions", "FUSED_LOGITS": "predictions",
    "evaluate_run": "judge",
    "assign_roles": "data",
    "label_efficiency": "experiments", "sensors": "experiments", "self_distillation": "experiments",
    "leakage": "experiments",
    "check_submission": "submission", "read_sample": "submission", "write_submission": "submission",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"rice_lab.finetune.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'rice_lab.finetune' has no attribute {name!r}")


__all__ = sorted(_WHERE)
