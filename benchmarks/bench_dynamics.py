"""Progress measures per checkpoint (rice_lab.explain.dynamics): seconds, and each measure's share.

    python benchmarks/bench_dynamics.py [--run runs/cpu-tiny-paired] [--data DIR] [--checkpoints 5]
                                        [--max-plants N] [--threads 2] [--rounds 2] [--no-side-by-side]

Measures ``--checkpoints`` snapshots of a pre-training run, evenly spaced (the first and the last
included), exactly as ``rice-lab dynamics`` does, and prints the one-time preparation (decoding the
photos, cutting the fixed crops), the seconds per checkpoint, and the share of each group of measures.
The run is only read.

Side by side (on the last snapshot, best of ``--rounds``), the three choices the module makes for
speed, each against the plain call:

* the photos' forward pass in channels-last memory (as SwAVModel runs its crops) against
  :func:`rice_lab.evaluate.encode.encode` on the encoder as it is;
* the cross-validated linear probes on one BLAS thread against the default thread count;
* mini-batch CKA (with its permutation baseline) and effective rank on one torch thread against the
  default thread count.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from timing import best_time


def spaced(items: list, count: int) -> list:
    """``count`` items evenly spaced over ``items``, the first and the last included."""
    if count >= len(items):
        return list(items)
    return [items[i] for i in sorted({round(i) for i in np.linspace(0, len(items) - 1, count)})]


def side_by_side(inputs, rounds: int) -> list[tuple[str, float, float]]:
    from threadpoolctl import threadpool_limits

    from rice_lab.evaluate.encode import encode
    from rice_lab.evaluate.probes import cross_val_correct
    from rice_lab.explain import dynamics
    from rice_lab.explain.similarity import cka, effective_rank
    from rice_lab.ssl.model import load_swav_model

    net = load_swav_model(inputs.checkpoints[-1])
    height = inputs.config.decoded_height
    photos = inputs.photos

    def plain_forward():
        with torch.no_grad():
            return [encode(net.encoder, images, camera, stats=net.normalization[camera], height=height)
                    for camera, images in photos.items()]

    ours_forward = best_time(lambda: dynamics.photo_outputs(net, photos, height), rounds)
    plain = best_time(plain_forward, rounds)
    features = plain_forward()
    codes = inputs.targets["label"]

    def probes():
        return [cross_val_correct(x, codes, "linear", 5, 0) for x in features]

    def one_blas_thread():
        with threadpool_limits(1):
            return probes()

    stacked = torch.cat(features)
    shifted = stacked + 0.1 * torch.randn(stacked.shape, generator=torch.Generator().manual_seed(0))

    def similarity():
        return cka(stacked, shifted, "minibatch", dynamics.CKA_BATCH, dynamics.CKA_PERMUTATIONS), \
            effective_rank(stacked)

    def one_torch_thread():
        with dynamics._one_torch_thread():
            return similarity()

    return [("photos' forward pass (channels-last vs as is)", ours_forward, plain),
            ("linear probes, 2 cameras x 5 folds (1 BLAS thread vs default)", best_time(one_blas_thread, rounds),
             best_time(probes, rounds)),
            ("CKA + effective rank (1 torch thread vs default)", best_time(one_torch_thread, rounds),
             best_time(similarity, rounds))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/cpu-tiny-paired", help="a pre-training run with a checkpoint series")
    parser.add_argument("--data", default=None, help="its data folder (default: the path in its manifest)")
    parser.add_argument("--checkpoints", type=int, default=5, help="snapshots to measure, evenly spaced")
    parser.add_argument("--max-plants", type=int, default=None, help="probe at most this many plants")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each side-by-side timing (best counts)")
    parser.add_argument("--no-side-by-side", action="store_true", help="skip the side-by-side timings")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from rice_lab.explain.dynamics import dynamics_inputs, progress_measures

    start = time.perf_counter()
    inputs = dynamics_inputs(args.run, args.data, args.max_plants)
    prepared = time.perf_counter() - start
    inputs.checkpoints = spaced(inputs.checkpoints, args.checkpoints)
    crops = sum(len(batch[0]) for batch in inputs.crops)
    print(f"run {args.run}: {len(inputs.plants)} labelled plants x 2 photos ({inputs.config.decoded_height} px high), "
          f"{crops} validation plants x {inputs.config.crops.n_crops} fixed crops; torch threads {args.threads}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"preparation (once per run): {prepared:.1f} s")

    timings: dict[str, float] = {}
    start = time.perf_counter()
    table = progress_measures(inputs, progress=False, timings=timings)
    total = time.perf_counter() - start
    n = len(table)
    print(f"\n{n} checkpoints (steps {', '.join(map(str, table['step']))}): {total:.1f} s, "
          f"{total / n:.2f} s per checkpoint (fastest {table['seconds'].min():.2f}, slowest "
          f"{table['seconds'].max():.2f})\n")
    print(f"| measures | s per checkpoint | share |\n| --- | --- | --- |")
    for name, seconds in sorted(timings.items(), key=lambda item: -item[1]):
        print(f"| {name} | {seconds / n:.3f} | {seconds / sum(timings.values()):.1%} |")

    if not args.no_side_by_side:
        print("\n| choice | ours s | plain s | plain / ours |\n| --- | --- | --- | --- |")
        for name, ours, plain in side_by_side(inputs, args.rounds):
            print(f"| {name} | {ours:.3f} | {plain:.3f} | {plain / ours:.2f}x |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
