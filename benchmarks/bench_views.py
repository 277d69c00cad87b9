"""What the leaf recipes cost: SwAV training throughput of ``cpu-tiny`` per views arm, as a ratio to today's.

    python benchmarks/bench_views.py [--data DIR] [--steps 60] [--rounds 3] [--threads 2]

Each arm of ``rice_lab.ssl.views_experiment.ARMS`` trains through ``build_learner`` + ``fit_one_cycle``
(the library as used, its leaf masks estimated once when the photos are decoded, not timed), in its
own process, the arms in turn each round; the best round counts, because on a shared machine noise
only ever slows a run down. Target: every arm at least 0.8x today's throughput (at most 1.25x the
wall time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace

from bench_ssl import run_rice_lab
from timing import default_data

TARGET = 0.8


def _child(args) -> None:
    import torch

    from rice_lab.ssl.pretrain import pretraining_plants
    from rice_lab.ssl.views_experiment import arm_config

    config = replace(arm_config(args.data, "unused", args.arm, 0, threads=args.threads), out=None)
    if args.threads:
        torch.set_num_threads(args.threads)
    rate = run_rice_lab(config, pretraining_plants(config), args.warmup, args.steps)
    print(json.dumps({"arm": args.arm, "images_per_s": rate}))


def main() -> None:
    from rice_lab.ssl.views_experiment import ARMS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="Zindi folder (default: $RICE_LAB_DATA or synthetic)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per arm (fewer are noisy)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        return _child(args)
    args.data = str(default_data(args.data))
    rates: dict[str, float] = {}
    for _ in range(args.rounds):
        for arm in ARMS:
            command = [sys.executable, "-W", "ignore", __file__, "--arm", arm, "--data", args.data,
                       "--steps", str(args.steps), "--warmup", str(args.warmup)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            rate = json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]
            rates[arm] = max(rates.get(arm, 0.0), rate)
    print(f"SwAV pre-training, cpu-tiny, {args.steps} steps after {args.warmup} warm-up, best of "
          f"{args.rounds} rounds, torch threads {args.threads or 'default'}")
    today = rates["today"]
    for arm, rate in rates.items():
        ratio = rate / today
        print(f"{arm:<14} {rate:8.1f} images/s  {ratio:5.2f}x today's  "
              f"(target >= {TARGET}x: {'ok' if ratio >= TARGET else 'MISSED'})")


if __name__ == "__main__":
    main()
