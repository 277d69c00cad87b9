"""What a synthetic dataset is made of: :class:`SynthConfig`, and the generator's rates per difficulty."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from rice_lab.data.synthetic.artefacts import SHORTCUTS
from rice_lab.data.zindi import ASPECT, CLASSES
from rice_lab.errors import ConfigError

GENERATOR_VERSION = 2  # bump when the output for a given config changes: ensure_synthetic regenerates


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the synthetic dataset; the same config and seed always give the same bytes."""

    plants: int = 600            # train + test plants
    width: int = 128             # image width in px; height = round(width * 4 / 5), the photos' 5:4
    seed: int = 0
    test_fraction: float = 0.3
    class_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)   # blast, brown, healthy weights
    difficulty: float = 0.5      # 0 easy .. 1 hard
    label_noise: float = 0.0     # fraction of TRAIN labels flipped (true labels kept in metadata)
    shortcut: str | None = None  # "date-stamp": class-correlated artefact in TRAIN images only
    same_lesion_colours: bool = False  # blast and brown spot drawn with one lesion colour recipe
    workers: int | None = None   # processes; None = os.cpu_count()

    def __post_init__(self) -> None:
        _check_int("plants", self.plants, 2, 10_000_000)
        _check_int("width", self.width, 32, 4096)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_float("test_fraction", self.test_fraction, 0.0, 1.0, high_open=True)
        _check_float("difficulty", self.difficulty, 0.0, 1.0)
        _check_float("label_noise", self.label_noise, 0.0, 1.0)
        try:
            balance = tuple(float(w) for w in self.class_balance)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"SynthConfig.class_balance={self.class_balance!r}: expected three numbers "
                              f"(weights of {', '.join(CLASSES)})") from err
        if len(balance) != 3 or not all(math.isfinite(w) and w >= 0 for w in balance) or sum(balance) <= 0:
            raise ConfigError(f"SynthConfig.class_balance={self.class_balance!r}: expected three "
                              f"non-negative weights, not all zero (for {', '.join(CLASSES)})")
        object.__setattr__(self, "class_balance", balance)
        if self.shortcut is not None and self.shortcut not in SHORTCUTS:
            raise ConfigError(f"SynthConfig.shortcut={self.shortcut!r}: expected None or one of "
                              f"{', '.join(SHORTCUTS)}")
        if not isinstance(self.same_lesion_colours, (bool, np.bool_)):
            raise ConfigError(f"SynthConfig.same_lesion_colours={self.same_lesion_colours!r}: expected True or False")
        object.__setattr__(self, "same_lesion_colours", bool(self.same_lesion_colours))
        if self.workers is not None:
            _check_int("workers", self.workers, 1, 4096)

    @property
    def height(self) -> int:
        """Image height in pixels (the real photos are 500x400, width x height)."""
        return round(self.width / ASPECT)

    def output_settings(self) -> dict:
        """The settings that decide the bytes written (everything but ``workers``)."""
        settings = dataclasses.asdict(self)
        settings.pop("workers")
        settings["class_balance"] = list(self.class_balance)
        settings["generator_version"] = GENERATOR_VERSION
        return settings


def settings_as_written(written: dict) -> dict:
    """Settings read back from a dataset's config file, in today's names.

    Folders written before ``width`` had its name store it as ``size``, and have no
    ``same_lesion_colours`` (they were all drawn without it); their bytes are what today's generator
    writes for the same settings, so they count as complete rather than being generated again.
    """
    settings = dict(written)
    if "size" in settings and "width" not in settings:
        settings["width"] = settings.pop("size")
    settings.setdefault("same_lesion_colours", False)
    return settings


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ConfigError(f"SynthConfig.{name}={value!r}: expected an integer from {low} to {high}")


def _check_float(name: str, value: object, low: float, high: float, high_open: bool = False) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value) and low <= value and (value < high if high_open else value <= high)
    if not ok:
        bracket = ")" if high_open else "]"
        raise ConfigError(f"SynthConfig.{name}={value!r}: expected a number in [{low}, {high}{bracket}")


# --------------------------------------------------------------------------------------------------
# Difficulty: one number moves lesion size, contrast and count down and nuisances up.


def difficulty_knobs(difficulty: float) -> dict[str, float]:
    """The generator's rates and scales at a given difficulty (0 easy .. 1 hard)."""
    d, d2 = difficulty, difficulty**2  # squared: gentle near the default, steep towards 1
    return {
        "lesion_scale": 1.25 - 0.5 * d2,         # multiplies lesion length and width
        "lesion_contrast_min": 1.0 - 0.5 * d2,   # lesions blend with the leaf by up to this much
        "blast_per_leaf": 2.6 - 1.2 * d2,        # mean extra lesions per main blade
        "brown_per_leaf": 14.0 - 7.0 * d2,
        "early_fraction": 0.03 + 0.25 * d2,      # diseased plants with only one or two faint young spots
        "dust_per_plant": 2.0 + 20.0 * d2,
        "holes_per_plant": 0.3 + 2.5 * d2,
        "dry_tip_p": 0.2 + 0.4 * d,
        "shadow_p": 0.2 + 0.4 * d,
        "yellowing_max": 0.15 + 0.3 * d,
        "noise_scale": 0.5 + d,
    }
