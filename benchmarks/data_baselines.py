"""How hard is the synthetic dataset, and why? Three baselines, on the default data and its variant.

    python benchmarks/data_baselines.py [--data PATH] [--epochs 45] [--seeds 0] [--skip-variant]

Trains a colour-histogram logistic regression, a shape-blind per-pixel MLP and a small CNN
(rice_lab.evaluate) on the training plants of the default dataset (``--data``, default
``$RICE_LAB_DATA`` or ``data/synthetic``; generated with the default :class:`SynthConfig` if it is
not there yet) and scores them on its labelled test split. Then the same on the variant whose blast
and brown-spot lesions share one colour recipe (``same_lesion_colours=True``), generated beside it.
The data card promises: histograms far below both networks, the CNN ahead of the shape-blind MLP,
and on the variant a larger lead, since colour there no longer tells the two diseases apart.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rice_lab.data import read_zindi
from rice_lab.data.synthetic import SynthConfig, ensure_synthetic
from rice_lab.evaluate import colour_histogram_baseline, train_pixel_mlp, train_small_cnn

VARIANT_SUFFIX = "-same-lesion-colours"


def run(root: Path, epochs: int, seeds: list[int]) -> dict[str, list[float]]:
    """Test accuracy of each baseline, one entry per seed; prints a line per run."""
    plants = read_zindi(root, test_labels=True)
    counts = plants.groupby("split").size().to_dict()
    print(f"{root} ({counts.get('train', 0)} train / {counts.get('test', 0)} test plants, "
          f"{epochs} epochs, one thread)")
    scores: dict[str, list[float]] = {}
    for seed in seeds:
        for result in (colour_histogram_baseline(plants, on="test", seed=seed),
                       train_pixel_mlp(plants, on="test", epochs=epochs, seed=seed),
                       train_small_cnn(plants, on="test", epochs=epochs, seed=seed)):
            scores.setdefault(result.model, []).append(result.accuracy)
            print(f"  seed {seed}  {result.model:<18} test {result.accuracy:.3f}  (train "
                  f"{result.train_accuracy:.3f}, {result.seconds:4.0f} s)", flush=True)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RICE_LAB_DATA", "data/synthetic")))
    parser.add_argument("--epochs", type=int, default=45, help="training epochs of both networks")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (the data stays)")
    parser.add_argument("--skip-variant", action="store_true", help="the default data only")
    args = parser.parse_args(argv)

    datasets = {"default": ensure_synthetic(args.data, SynthConfig())}
    if not args.skip_variant:
        variant = args.data.with_name(args.data.name + VARIANT_SUFFIX)
        datasets["same lesion colours"] = ensure_synthetic(variant, SynthConfig(same_lesion_colours=True))
    table = {name: run(root, args.epochs, args.seeds) for name, root in datasets.items()}
    print(f"\ntest accuracy, mean over {len(args.seeds)} seed(s); chance {1 / 3:.3f}")
    print(f"  {'model':<18}" + "".join(f"{name:>22}" for name in table))
    for model in next(iter(table.values())):
        print(f"  {model:<18}" + "".join(f"{sum(s[model]) / len(s[model]):>22.3f}" for s in table.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
