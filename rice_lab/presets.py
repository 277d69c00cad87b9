"""Pre-training configuration as one dataclass, and the named presets the book and CLI use."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from rice_lab.errors import ConfigError


@dataclass
class PretrainConfig:
    """Everything a SwAV pre-training run depends on; a preset is a named instance."""

    # what and where
    data: str | None = None              # Zindi-layout folder (real or synthetic)
    out: str | None = None               # run directory to create (or resume)
    views: str = "paired"                # paired | rgb | rgnir | mixed
    use_test: bool = True                # pre-train on test photos too (no labels are used)
    valid_pct: float = 0.2
    seed: int = 0
    # encoder and SwAV head
    encoder: str = "xresnet34"
    pretrained: bool = False
    init: str | None = None              # local checkpoint to start the encoder from
    hidden: int = 2048
    dim: int = 128
    n_prototypes: int = 3000
    temperature: float = 0.1
    epsilon: float = 0.05
    sinkhorn_iters: int = 3
    freeze_prototypes_steps: int = 313   # SwAV's default: about one ImageNet-epoch's worth at batch 4096
    queue_factor: int = 64               # queue length = batch x queue_factor (0 = no queue)
    queue_start: float = 0.5             # fraction of training at which the queue starts filling
    # crops (the original multi-crop recipe; sizes scale with the preset)
    size: int = 128                      # large crops are size x size px
    photo_size: int | None = None        # height photos are decoded to (None: size); crops come from these
    n_large: int = 2
    n_small: int = 6
    small_ratio: float = 0.75
    large_scale: tuple[float, float] = (0.25, 1.0)
    small_scale: tuple[float, float] = (0.05, 0.3)
    max_rotation: float = 10.0
    jitter: float = 0.3
    # optimisation (the original: Lamb + one-cycle)
    epochs: int = 600
    batch_size: int = 32
    lr: float = 1e-4
    wd: float = 1e-6
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)
    pct_start: float = 0.25
    optimizer: str = "lamb"              # lamb | adam
    precision: str = "auto"              # auto (fp16 on GPU) | fp16 | bf16 | fp32
    # run directory
    checkpoint_every: int = 500          # steps between kept encoder snapshots (0 = epoch ends only)
    resume_every: int = 100              # steps between full resume states (last.pt)
    workers: int = 0                     # DataLoader worker processes (images are in memory)
    threads: int | None = None           # torch CPU threads (None = torch's default)
    progress: bool = True

    @property
    def queue_size(self) -> int:
        return self.batch_size * self.queue_factor

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "PretrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        tuples = {f.name for f in fields(cls) if "tuple" in str(f.type)}
        return cls(**{k: tuple(v) if k in tuples and v is not None else v for k, v in values.items()})

    def validate(self) -> "PretrainConfig":
        """Raise ConfigError naming the first value that cannot work."""
        from rice_lab.data.views import VIEWS

        checks = [
            (self.views in VIEWS, f"views={self.views!r}: choose one of {', '.join(VIEWS)}"),
            (self.epochs >= 1, f"epochs={self.epochs}: must be at least 1"),
            (self.batch_size >= 2, f"batch_size={self.batch_size}: SwAV needs at least 2"),
            (self.n_large >= 1 and self.n_large + self.n_small >= 2,
             f"n_large={self.n_large}, n_small={self.n_small}: need 1+ large and 2+ crops in all"),
            (self.size >= 16, f"size={self.size}: must be at least 16 px"),
            (0 <= self.queue_start <= 1, f"queue_start={self.queue_start}: a fraction in [0, 1]"),
            (self.precision in ("auto", "fp16", "bf16", "fp32"),
             f"precision={self.precision!r}: choose auto, fp16, bf16 or fp32"),
            (self.optimizer in ("lamb", "adam"), f"optimizer={self.optimizer!r}: choose lamb or adam"),
            (self.lr > 0, f"lr={self.lr}: must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self


PRESETS: dict[str, PretrainConfig] = {
    # Book and exercises: an encoder that beats its random start on the disease, in about seven
    # minutes on two CPU cores. Photos decoded 128 px high, no smaller than the synthetic ones: at
    # 64 px the lesions (a few px) blur away and even a supervised CNN drops to near chance. 64 px
    # crops still leave a 2x2 final map. 100 epochs (~1,600 steps), because the disease shows in the
    # probes only after ~600-900 steps; 16 epochs (~1.5 min) learned the background alone.
    "cpu-tiny": PretrainConfig(encoder="xresnet-tiny", size=64, photo_size=128, n_small=2, small_ratio=0.75,
                               hidden=256, dim=64, n_prototypes=64, batch_size=32, epochs=100,
                               lr=3e-3, wd=1e-4, freeze_prototypes_steps=20, queue_factor=4,
                               queue_start=0.5, checkpoint_every=100, resume_every=50, jitter=0.3),
    # A longer CPU run: a wider encoder, bigger crops from the same 128 px photos, all six small crops.
    "cpu-small": PretrainConfig(encoder="xresnet-small", size=96, photo_size=128, n_small=6, hidden=512,
                                dim=128, n_prototypes=300, batch_size=32, epochs=30, lr=2e-3, wd=1e-5,
                                freeze_prototypes_steps=50, queue_factor=8, checkpoint_every=100,
                                resume_every=50),
    # The original run: xresnet34 at 128 px, batch 32, Lamb, one-cycle 1e-4, fp16, queue from 50%.
    "gpu-paper": PretrainConfig(encoder="xresnet34", size=128, batch_size=32, epochs=600, lr=1e-4,
                                wd=1e-6, moms=(0.95, 0.85, 0.95), hidden=2048, dim=128,
                                n_prototypes=3000, queue_factor=64, queue_start=0.5,
                                precision="fp16", checkpoint_every=500, resume_every=200, workers=2),
    # The winning encoder family: res2next50 (timm), same recipe.
    "gpu-res2next50": PretrainConfig(encoder="res2next50", size=128, batch_size=32, epochs=600,
                                     lr=1e-4, wd=1e-6, moms=(0.95, 0.85, 0.95), hidden=2048, dim=128,
                                     n_prototypes=3000, queue_factor=64, queue_start=0.5,
                                     precision="fp16", checkpoint_every=500, resume_every=200,
                                     workers=2),
}


def get_preset(name: str, **overrides) -> PretrainConfig:
    """A copy of preset ``name`` with ``overrides`` applied (None values are ignored)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    try:
        return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    except TypeError as err:
        raise ConfigError(f"preset {name!r}: {err}") from err


__all__ = ["PRESETS", "PretrainConfig", "get_preset"]
