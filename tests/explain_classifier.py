"""The real classifier the explanation tests run on: a 1-epoch SwAV run fine-tuned for 1 epoch (seconds)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from rice_lab.data.zindi import read_zindi
from rice_lab.finetune.config import get_preset
from rice_lab.finetune.predictions import load_classifier
from rice_lab.finetune.train import finetune
from rice_lab.presets import get_preset as pretrain_preset
from rice_lab.ssl.pretrain import pretrain


def train_tiny_swav(synth_root: Path, out: Path) -> Path:
    """A pre-training run directory: tiny SwAV, one epoch of 32 px crops of 32 px photos."""
    return pretrain(pretrain_preset("cpu-tiny", data=str(synth_root), out=str(out), epochs=1, batch_size=8,
                                    photo_height=32, crops={"size": 32}, progress=False, threads=1,
                                    checkpoint_every=0, resume_every=0))


def train_tiny_classifier(synth_root: Path, out: Path, encoder: Path | None = None, name: str = "classifier",
                          **overrides) -> Path:
    """A classifier run directory ``out / name``: tiny SwAV (in ``out / "swav"`` unless ``encoder``
    names a run) then one epoch of full fine-tuning (``overrides``: other fine-tuning settings)."""
    encoder = encoder or train_tiny_swav(synth_root, out / "swav")
    return finetune(get_preset("cpu-tiny", data=str(synth_root), out=str(out / name), encoder=str(encoder),
                               **{**dict(epochs=1, batch_size=8, photo_height=32, progress=False, threads=1),
                                  **overrides}))


def diseased_plants(synth_root: Path, count: int) -> pd.DataFrame:
    """The first ``count`` blast or brown-spot plants (their photos have lesions to point at)."""
    plants = read_zindi(synth_root)
    return plants[plants["label"].isin(["blast", "brown"])].head(count).reset_index(drop=True)


def classifier(run_dir: Path) -> tuple[torch.nn.Module, dict]:
    return load_classifier(run_dir)
