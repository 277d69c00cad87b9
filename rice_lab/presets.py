"""Pre-training configuration (a dataclass nesting the crop recipe and the SwAV settings) and the
named presets the book and the CLI use."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace

from rice_lab.data.backgrounds import BACKGROUNDS
from rice_lab.data.views import VIEWS, CropSpec
from rice_lab.errors import ConfigError

QUEUE_FILLS = ("large-crops", "crop-0")
NORMALIZATIONS = ("auto", "imagenet", "data")


@dataclass(frozen=True)
class SwAVSettings:
    """SwAV's head, prototypes, codes and queue."""

    hidden: int = 2048                   # projection head: encoder features -> hidden -> dim
    dim: int = 128
    n_prototypes: int = 3000
    temperature: float = 0.1
    epsilon: float = 0.05                # Sinkhorn's entropy weight
    sinkhorn_iters: int = 3
    freeze_prototypes_steps: int = 313   # SwAV's default: about one ImageNet-epoch's worth at batch 4096
    queue_factor: int = 64               # queue length = batch x queue_factor (0 = no queue)
    queue_start: float = 0.5             # fraction of training from which the queue is in use
    # "large-crops" (the SwAV reference code): one queue per large crop, filled from queue_start on
    # and used once full. "crop-0" (the library the published notebook used): one queue of crop 0's
    # embeddings, started as random unit vectors, filled from the first step and used by every
    # large crop once training is past queue_start.
    queue_fill: str = "large-crops"


@dataclass
class PretrainConfig:
    """Everything a SwAV pre-training run depends on; a preset is a named instance."""

    # what and where
    data: str | None = None              # Zindi-layout folder (real or synthetic)
    out: str | None = None               # run directory to create (or resume)
    views: str = "paired"                # which camera each crop comes from: paired | rgb | rgnir | mixed
    use_test: bool = True                # pre-train on test photos too (no labels are used)
    valid_pct: float = 0.2
    seed: int = 0
    # encoder, input and SwAV
    encoder: str = "xresnet34"
    pretrained: bool = False
    init: str | None = None              # local checkpoint to start the encoder from
    photo_height: int | None = None      # photos are decoded this many px high (None: crops.size)
    normalization: str = "auto"          # auto (ImageNet if pretrained, else the data's) | imagenet | data
    crops: CropSpec = field(default_factory=CropSpec)
    swav: SwAVSettings = field(default_factory=SwAVSettings)
    # optimisation (the original: Lamb + one-cycle)
    epochs: int = 600
    batch_size: int = 32
    lr: float = 1e-4
    wd: float = 1e-6
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)
    pct_start: float = 0.25
    optimizer: str = "lamb"              # lamb | adam
    precision: str = "auto"              # auto (fp16 on GPU) | fp16 | bf16 | fp32
    # how the run is carried out: none of these changes its result
    checkpoint_every: int = 500          # steps between kept snapshots (0 = epoch ends only)
    resume_every: int = 100              # steps between full resume states (last.pt)
    workers: int = 0                     # DataLoader worker processes (images are in memory)
    threads: int | None = None           # torch CPU threads (None = torch's default)
    progress: bool = True

    @property
    def queue_length(self) -> int:
        """Embeddings the queue holds (per process): batch size x ``swav.queue_factor``."""
        return self.batch_size * self.swav.queue_factor

    @property
    def decoded_height(self) -> int:
        """The height photos are decoded to: ``photo_height``, or the crop size when unset."""
        return self.photo_height or self.crops.size

    def to_dict(self) -> dict:
        """Plain JSON-able dict, nested as the dataclass is (tuples become lists, Paths strings)."""
        return json.loads(json.dumps(asdict(self), default=str))

    @classmethod
    def from_dict(cls, values: dict) -> "PretrainConfig":
        """Inverse of :meth:`to_dict`; an older manifest's flat config is mapped. Unknown keys: ConfigError."""
        values = dict(values)
        if not {"crops", "swav"} & set(values) and (FLAT_CROPS | FLAT_SWAV | {"size", "photo_size"}) & set(values):
            values = _from_flat(values)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        nested = {"crops": CropSpec, "swav": SwAVSettings}
        for name, kind in nested.items():
            if name in values and isinstance(values[name], dict):
                values[name] = _dataclass_from(kind, values[name], name)
        if values.get("moms") is not None:
            values["moms"] = tuple(values["moms"])
        return cls(**values)

    def validate(self) -> "PretrainConfig":
        """Raise ConfigError naming the first value that cannot work."""
        crops, swav = self.crops, self.swav
        probabilities = {"rotation_p": crops.rotation_p, "color_jitter_p": crops.color_jitter_p,
                         "grayscale_p": crops.grayscale_p, "blur_p": crops.blur_p, "background_p": crops.background_p}
        checks = [
            (self.views in VIEWS, f"views={self.views!r}: choose one of {', '.join(VIEWS)}"),
            (self.epochs >= 1, f"epochs={self.epochs}: must be at least 1"),
            (self.batch_size >= 2, f"batch_size={self.batch_size}: SwAV needs at least 2"),
            (crops.n_large >= 1 and crops.n_crops >= 2,
             f"crops.n_large={crops.n_large}, crops.n_small={crops.n_small}: need 1+ large and 2+ crops in all"),
            (crops.size >= 16, f"crops.size={crops.size}: must be at least 16 px"),
            (self.photo_height is None or self.photo_height >= 16,
             f"photo_height={self.photo_height}: must be at least 16 px"),
            *[(0 <= p <= 1, f"crops.{name}={p}: a probability in [0, 1]") for name, p in probabilities.items()],
            (0 <= swav.queue_start <= 1, f"swav.queue_start={swav.queue_start}: a fraction in [0, 1]"),
            (crops.background in BACKGROUNDS,
             f"crops.background={crops.background!r}: choose one of {', '.join(BACKGROUNDS)}"),
            (swav.queue_fill in QUEUE_FILLS, f"swav.queue_fill={swav.queue_fill!r}: choose {' or '.join(QUEUE_FILLS)}"),
            (self.normalization in NORMALIZATIONS,
             f"normalization={self.normalization!r}: choose one of {', '.join(NORMALIZATIONS)}"),
            (self.precision in ("auto", "fp16", "bf16", "fp32"),
             f"precision={self.precision!r}: choose auto, fp16, bf16 or fp32"),
            (self.optimizer in ("lamb", "adam"), f"optimizer={self.optimizer!r}: choose lamb or adam"),
            (self.lr > 0, f"lr={self.lr}: must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self


# Settings that change how a run is carried out but not what it computes: a run made with other
# values of these is still the same run (for --resume and --if-needed).
RESULT_FREE = ("data", "out", "checkpoint_every", "resume_every", "workers", "threads", "progress")

# The flat config of manifests written before the crop recipe and SwAV settings were nested.
FLAT_CROPS = {"n_large", "n_small", "small_ratio", "large_scale", "small_scale", "max_rotation", "jitter"}
FLAT_SWAV = {"hidden", "dim", "n_prototypes", "temperature", "epsilon", "sinkhorn_iters",
             "freeze_prototypes_steps", "queue_factor", "queue_start"}


def _from_flat(values: dict) -> dict:
    crops = {k: values.pop(k) for k in list(values) if k in FLAT_CROPS}
    swav = {k: values.pop(k) for k in list(values) if k in FLAT_SWAV}
    if "size" in values:
        crops["size"] = values.pop("size")
    if "photo_size" in values:
        values["photo_height"] = values.pop("photo_size")
    return {**values, "crops": crops, "swav": swav}


def _dataclass_from(kind: type, values: dict, prefix: str):
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(f'{prefix}.{k}' for k in unknown)}")
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


PRESETS: dict[str, PretrainConfig] = {
    # Book and exercises: an encoder that beats its random start on the disease, in about seven
    # minutes on two CPU cores. Photos decoded 128 px high, no smaller than the synthetic ones: at
    # 64 px the lesions (a few px) blur away and even a supervised CNN drops to near chance. 64 px
    # crops still leave a 2x2 final map. 100 epochs (~1,600 steps), because the disease shows in the
    # probes only after ~600-900 steps; 16 epochs (~1.5 min) learned the background alone.
    "cpu-tiny": PretrainConfig(
        encoder="xresnet-tiny", photo_height=128, crops=CropSpec(size=64, n_small=2, jitter=0.3),
        swav=SwAVSettings(hidden=256, dim=64, n_prototypes=64, freeze_prototypes_steps=20,
                          queue_factor=4, queue_start=0.5),
        batch_size=32, epochs=100, lr=3e-3, wd=1e-4, checkpoint_every=100, resume_every=50),
    # A longer CPU run: a wider encoder, bigger crops from the same 128 px photos, all six small crops.
    "cpu-small": PretrainConfig(
        encoder="xresnet-small", photo_height=128, crops=CropSpec(size=96, n_small=6),
        swav=SwAVSettings(hidden=512, dim=128, n_prototypes=300, freeze_prototypes_steps=50, queue_factor=8),
        batch_size=32, epochs=30, lr=2e-3, wd=1e-5, checkpoint_every=100, resume_every=50),
    # rice-lab's recipe at the original run's scale: the author's idea, the RGB and RG-NIR photos of a
    # plant as the two views (views="paired"), with the described model and schedule (xresnet34 at
    # 128 px, batch 32, Lamb, one-cycle at 1e-4, fp16, 600 epochs, a queue of 64 batches from 50 %).
    # Not what the published notebook ran: see gpu-paper-as-published.
    "gpu-paper": PretrainConfig(
        encoder="xresnet34", crops=CropSpec(size=128), swav=SwAVSettings(queue_factor=64, queue_start=0.5),
        batch_size=32, epochs=600, lr=1e-4, wd=1e-6, moms=(0.95, 0.85, 0.95), precision="fp16",
        checkpoint_every=500, resume_every=200, workers=2),
    # The published SwAV notebook as its code ran (for studying its bump): fastai fed the RGB photo
    # as the only input, so every crop is RGB (views="rgb"). Its library's pipelines: 2 x 128 px +
    # 6 x 96 px crops, flips, rotation up to 10 degrees on 30 % of the crops, colour jitter
    # (strength 0.6), grayscale and blur on 30 % each, ImageNet statistics; one queue of
    # 32 x 64 crop-0 embeddings that starts as random unit vectors and is used once pct_train > 0.5;
    # no prototype freezing. Temperature 0.1 as SwAV's paper (the notebook's value is not recorded).
    "gpu-paper-as-published": PretrainConfig(
        encoder="xresnet34", views="rgb", normalization="imagenet",
        crops=CropSpec(size=128, n_large=2, n_small=6, small_ratio=0.75, max_rotation=10.0, rotation_p=0.3,
                       jitter=0.0, color_jitter=0.6, color_jitter_p=0.3, grayscale_p=0.3, blur_p=0.3),
        swav=SwAVSettings(freeze_prototypes_steps=0, queue_factor=64, queue_start=0.5, queue_fill="crop-0"),
        batch_size=32, epochs=600, lr=1e-4, wd=1e-6, moms=(0.95, 0.85, 0.95), precision="fp16",
        checkpoint_every=500, resume_every=200, workers=2),
    # The author's final encoder: res2next50 (timm), with gpu-paper's recipe (paired views).
    "gpu-res2next50": PretrainConfig(
        encoder="res2next50", crops=CropSpec(size=128), swav=SwAVSettings(queue_factor=64, queue_start=0.5),
        batch_size=32, epochs=600, lr=1e-4, wd=1e-6, moms=(0.95, 0.85, 0.95), precision="fp16",
        checkpoint_every=500, resume_every=200, workers=2),
}


def get_preset(name: str, **overrides) -> PretrainConfig:
    """A copy of preset ``name`` with ``overrides`` applied (None values are ignored).

    ``crops`` and ``swav`` take a CropSpec / SwAVSettings, or a dict of the fields to change:
    ``get_preset("cpu-tiny", epochs=2, crops={"size": 32})``.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    changes = {k: v for k, v in overrides.items() if v is not None}
    try:
        for nested in ("crops", "swav"):
            if isinstance(changes.get(nested), dict):
                changes[nested] = replace(getattr(preset, nested), **changes[nested])
        return replace(preset, **changes)
    except TypeError as err:
        raise ConfigError(f"preset {name!r}: {err}") from err


__all__ = ["PRESETS", "RESULT_FREE", "PretrainConfig", "SwAVSettings", "get_preset"]
