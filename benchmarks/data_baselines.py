"""How hard is the synthetic dataset? Colour-histogram logistic regression versus a small CNN.

    python benchmarks/data_baselines.py [--data PATH] [--seconds 60] [--epochs N] [--difficulty D]

Uses the dataset at ``--data`` (default ``$RICE_LAB_DATA`` or ``data/synthetic``), generated with the
default :class:`SynthConfig` (or ``--difficulty``) if it is not there yet. The data card promises:
the histogram model far below the CNN (about <= 0.55 against >= 0.75) and the CNN short of perfect.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rice_lab.data import read_zindi
from rice_lab.data.baselines import colour_histogram_baseline, train_small_cnn
from rice_lab.data.synthetic import SynthConfig, ensure_synthetic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RICE_LAB_DATA", "data/synthetic")))
    parser.add_argument("--seconds", type=float, default=60.0, help="CNN training budget (wall clock)")
    parser.add_argument("--epochs", type=int, default=None, help="train exactly this many epochs instead")
    parser.add_argument("--difficulty", type=float, default=None, help="generate with this difficulty")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    config = SynthConfig() if args.difficulty is None else SynthConfig(difficulty=args.difficulty)
    root = ensure_synthetic(args.data, config)
    plants = read_zindi(root)
    counts = plants.groupby("split").size().to_dict()
    print(f"data_baselines: {root} ({counts.get('train', 0)} train / {counts.get('test', 0)} test plants)")
    start = time.perf_counter()
    histogram = colour_histogram_baseline(plants, seed=args.seed)
    print(f"  colour-histogram logistic regression   accuracy {histogram:.3f}   "
          f"({time.perf_counter() - start:.0f} s)")
    cnn = train_small_cnn(plants, seconds=args.seconds, epochs=args.epochs, seed=args.seed)
    print(f"  small CNN ({cnn.epochs} epochs, {cnn.seconds:.0f} s)          accuracy {cnn.accuracy:.3f}   "
          f"(train {cnn.train_accuracy:.3f})")
    print(f"  CNN - histogram: {cnn.accuracy - histogram:+.3f};  chance: {1 / 3:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
