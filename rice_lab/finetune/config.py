"""Fine-tuning configuration (a dataclass) and the named presets the book and the CLI use."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from rice_lab.errors import ConfigError

MODES = ("probe", "discriminative", "full")
HEADS = ("original", "linear", "bn-linear")
POOLS = ("concat", "avg")
CAMERA_CHOICES = ("both", "rgb", "rgnir")


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run depends on; a preset is a named instance."""

    # what and where
    data: str | None = None              # Zindi-layout folder (real or synthetic)
    out: str | None = None               # run directory to create (or resume)
    encoder: str = "random"              # a pre-training run directory, or "random"
    arch: str = "xresnet-tiny"           # the network when encoder="random" (a run brings its own)
    pretrained: bool = False             # with encoder="random": timm ImageNet weights (cached only)
    cameras: str = "both"                # which photos train (and predict): both | rgb | rgnir
    valid_pct: float = 0.2               # validation plants, split by plant and stratified by class
    photo_split: bool = False            # the leakage lesson only: validate on one photo of each validation
                                         # plant while its other photo trains (never for a real model)
    split_seed: int = 0                  # which plants validate (fixed across training seeds: paired runs)
    labels_fraction: float = 1.0         # share of the training plants whose labels are used
    teacher: str | None = None           # self-distillation: a classifier run whose soft predictions
                                         # (train, unlabelled and test photos) replace the labels
    shuffled_labels: bool = False        # the data-randomisation sanity check: training plants' labels
                                         # permuted (class counts kept); validation plants keep theirs
    seed: int = 0
    # model and input
    mode: str = "full"                   # probe | discriminative | full
    head: str = "bn-linear"              # original | linear | bn-linear
    pool: str = "concat"                 # concat (max + mean) | avg
    photo_height: int | None = None      # photos decoded this many px high (None: the encoder run's)
    channels_last: bool = True           # about 30 % faster convolutions on CPU
    # optimisation: fastai Adam (decoupled weight decay) + one-cycle
    epochs: int = 30
    min_steps: int = 0                   # small label sets: at least this many steps in all (each epoch
                                         # repeats the photos; validation stays once per epoch)
    head_epochs: int = 3                 # discriminative: head-only epochs before unfreezing
    body_lr_mult: float = 0.1            # discriminative: body lr = lr x this (slice(lr x mult, lr))
    batch_size: int = 32
    lr: float = 3e-3
    wd: float = 1e-2
    pct_start: float = 0.25
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)
    flips: bool = True                   # random horizontal and vertical flips (also the TTA set)
    max_rotation: float = 0.0            # random rotation up to this many degrees (0 = off)
    zoom: float = 0.0                    # random zoom by up to +- this fraction (0 = off)
    jitter: float = 0.0                  # brightness / contrast strength (0 = off)
    label_smoothing: float = 0.0
    mixup: float = 0.0                   # MixUp's alpha (0 = off; the original used 0.4)
    tta: bool = True                     # try flip TTA; kept only if it lowers validation log loss
    # how the run is carried out: none of these changes its result
    workers: int = 0
    threads: int | None = None
    progress: bool = True

    @property
    def total_epochs(self) -> int:
        """Epochs in all (discriminative adds its head-only epochs)."""
        return self.epochs + (self.head_epochs if self.mode == "discriminative" else 0)

    def result_free(self) -> tuple[str, ...]:
        """Settings that cannot change this run's result: ``RESULT_FREE``, and the discriminative
        mode's own settings when the mode is another (so tuning them never sets other runs aside)."""
        return RESULT_FREE + (() if self.mode == "discriminative" else ("head_epochs", "body_lr_mult"))

    def resolved(self) -> "FinetuneConfig":
        """The same config with ``encoder`` as an absolute path, so that ``runs/x`` given from the
        repository and ``/home/me/repo/runs/x`` given from a notebook name the same run (the teacher too)."""
        absolute = lambda run: str(Path(run).expanduser().resolve())  # noqa: E731
        return replace(self, encoder=self.encoder if self.encoder == "random" else absolute(self.encoder),
                       teacher=None if self.teacher is None else absolute(self.teacher))

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self), default=str))

    @classmethod
    def from_dict(cls, values: dict) -> "FinetuneConfig":
        """Inverse of :meth:`to_dict`; unknown keys: ConfigError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        values = dict(values)
        if values.get("moms") is not None:
            values["moms"] = tuple(values["moms"])
        return cls(**values)

    def validate(self) -> "FinetuneConfig":
        """Raise ConfigError naming the first value that cannot work."""
        checks = [
            (self.mode in MODES, f"mode={self.mode!r}: choose one of {', '.join(MODES)}"),
            (self.head in HEADS, f"head={self.head!r}: choose one of {', '.join(HEADS)}"),
            (self.pool in POOLS, f"pool={self.pool!r}: choose one of {', '.join(POOLS)}"),
            (self.cameras in CAMERA_CHOICES, f"cameras={self.cameras!r}: choose one of {', '.join(CAMERA_CHOICES)}"),
            (not (self.photo_split and self.cameras != "both"),
             f"photo_split=True needs cameras='both' (a plant's other photo is what leaks), not {self.cameras!r}"),
            (not (self.photo_split and self.teacher), "photo_split and teacher cannot be combined"),
            (not (self.shuffled_labels and (self.teacher or self.photo_split)),
             "shuffled_labels cannot be combined with teacher or photo_split (their training targets are not "
             "the training plants' labels)"),
            (self.epochs >= 1, f"epochs={self.epochs}: must be at least 1"),
            (self.head_epochs >= 0, f"head_epochs={self.head_epochs}: must be 0 or more"),
            (self.batch_size >= 2, f"batch_size={self.batch_size}: must be at least 2 (batch norm)"),
            (0 < self.valid_pct < 1, f"valid_pct={self.valid_pct}: a fraction strictly between 0 and 1"),
            (0 < self.labels_fraction <= 1, f"labels_fraction={self.labels_fraction}: a fraction in (0, 1]"),
            (self.lr > 0, f"lr={self.lr}: must be positive"),
            (0 <= self.label_smoothing < 1, f"label_smoothing={self.label_smoothing}: in [0, 1)"),
            (self.mixup >= 0, f"mixup={self.mixup}: MixUp's alpha, 0 (off) or more"),
            (self.max_rotation >= 0 and 0 <= self.zoom < 1 and 0 <= self.jitter < 1,
             f"max_rotation={self.max_rotation}, zoom={self.zoom}, jitter={self.jitter}: rotation >= 0, "
             "zoom and jitter in [0, 1)"),
            (self.photo_height is None or self.photo_height >= 16,
             f"photo_height={self.photo_height}: must be at least 16 px"),
            (not (self.pretrained and self.encoder != "random"),
             f"pretrained=True takes ImageNet weights for arch={self.arch!r}; it cannot be combined with "
             f"encoder={self.encoder!r} (a pre-training run brings its own weights)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self


# Settings that change how a run is carried out but not what it computes.
RESULT_FREE = ("data", "out", "workers", "threads", "progress")

PRESETS: dict[str, FinetuneConfig] = {
    # The course's default classifier on two CPU cores: full fine-tuning of the cpu-tiny SwAV encoder
    # on both cameras at the photos' native 102 px height (no upsampling), concat pooling, a
    # BN-dropout-linear head (the original two-layer head sat at chance for 13-16 epochs), fastai
    # Adam at 3e-3 with one-cycle, 40 epochs. The model overfits (training loss ~0.08 by the end), so
    # it regularises: MixUp 0.4 and flips, a 10-degree rotation, 10 % zoom and brightness/contrast
    # jitter 0.2. On the 600-plant synthetic set (seed 0 data), training seeds 0/1/2, fused test
    # accuracy with flips alone was 0.878/0.850/0.822 (log loss after temperature 0.387/0.459/0.500);
    # with MixUp and these augmentations 0.911/0.889/0.900 (0.282/0.377/0.303). Reproduce with
    # `rice-lab finetune DATA --encoder RUN --out OUT --seed S` then `rice-lab evaluate OUT DATA`.
    # Discriminative mode: 3 head-only epochs, then the body at body_lr_mult x the head's rate, chosen
    # on validation plants (seed 0, all labels): validation fused log loss / accuracy 0.973 / 0.548 at
    # 0.1 (fastai's customary tenth), 0.625 / 0.738 at 0.3, 0.423 / 0.833 at 1.0. The cpu-tiny SwAV
    # features are weak (its probe is near chance), so holding the body back hurts: 1.0 it is.
    "cpu-tiny": FinetuneConfig(arch="xresnet-tiny", photo_height=102, head="bn-linear", pool="concat",
                               epochs=40, batch_size=32, lr=3e-3, wd=1e-2, mixup=0.4, max_rotation=10.0,
                               zoom=0.1, jitter=0.2, body_lr_mult=1.0),
    # A wider CPU encoder (cpu-small pre-training), at the 128 px it pre-trained on, regularised as
    # cpu-tiny (not measured yet).
    "cpu-small": FinetuneConfig(arch="xresnet-small", photo_height=128, head="bn-linear", pool="concat",
                                epochs=40, batch_size=32, lr=2e-3, wd=1e-2, mixup=0.4, max_rotation=10.0,
                                zoom=0.1, jitter=0.2),
    # The original classifier at its scale: xresnet34 at 224 px, concat pooling and its two-layer
    # head, batch 128, one-cycle at 1e-4 with wd 1e-2. Selection on log loss, not the smoothed loss;
    # label smoothing and MixUp stay options (they cap how low log loss can go).
    "gpu-paper": FinetuneConfig(arch="xresnet34", photo_height=224, head="original", pool="concat",
                                epochs=60, batch_size=128, lr=1e-4, wd=1e-2, workers=2),
    # The author's final encoder, res2next50 (timm), with gpu-paper's recipe.
    "gpu-res2next50": FinetuneConfig(arch="res2next50", photo_height=224, head="original", pool="concat",
                                     epochs=60, batch_size=64, lr=1e-4, wd=1e-2, workers=2),
}


def get_preset(name: str, **overrides) -> FinetuneConfig:
    """A copy of fine-tuning preset ``name`` with ``overrides`` applied (None values are ignored)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown fine-tuning preset {name!r}; choose one of {', '.join(PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    try:
        return replace(PRESETS[name], **changes)
    except TypeError as err:
        raise ConfigError(f"preset {name!r}: {err}") from err


__all__ = ["CAMERA_CHOICES", "HEADS", "MODES", "POOLS", "PRESETS", "RESULT_FREE", "FinetuneConfig", "get_preset"]
