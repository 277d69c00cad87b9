"""Fine-tuning throughput of a preset (``cpu-tiny``): rice_lab's ``finetune`` vs a minimal hand-written loop.

    python benchmarks/bench_finetune.py [--data DIR] [--steps 60] [--rounds 3] [--threads 2]

Both variants train the same classifier (the preset's encoder, random init, head and pooling) on the
same batches (``PhotoSamples`` + ``photo_loader``: both cameras, plant split), with the same
augmentation (``augment``, then per-camera normalisation), MixUp at the preset's alpha, fastai's Adam
and a one-cycle schedule:

* ``rice_lab``: ``rice_lab.finetune.finetune`` as a user calls it (fastai Learner, its callbacks, the
  run directory, metrics and checkpoints), timed by a callback that leaves out validation passes;
* ``minimal``: the least code that does the same training steps (no Learner, no callbacks, no files).

Each variant runs in its own process, ``--rounds`` times in turn; the best round counts (on a shared
machine noise only slows a run down). Target: rice_lab >= 0.9x the minimal loop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import default_data, training_clock

VARIANTS = ("rice_lab", "minimal")


class _Done(Exception):
    """Raised by the timer once enough steps are timed (finetune() lets it through)."""


def _config(args, out: str):
    from rice_lab.finetune.config import get_preset

    return get_preset(args.preset, data=args.data, out=out, encoder="random", progress=False,
                      threads=args.threads, epochs=1000)  # long enough: the timer stops it


def run_rice_lab(args) -> float:
    from rice_lab.finetune.train import finetune

    times: list[float] = []
    clock = training_clock(times, args.warmup + args.steps, lambda: _Done("timed enough steps"))

    with tempfile.TemporaryDirectory() as tmp:
        config = _config(args, str(Path(tmp) / "run"))
        try:
            finetune(config, callbacks=[clock])
        except _Done:
            pass
    return args.steps * config.batch_size / (times[args.warmup + args.steps] - times[args.warmup])


def run_minimal(args) -> float:
    import math

    import numpy as np
    import torch
    import torch.nn.functional as F
    from fastai.optimizer import Adam

    from rice_lab.finetune.data import PhotoSamples, augment, camera_list, check_stats, photo_loader, prepare
    from rice_lab.finetune.train import build_model, classifier_plants, load_start
    from rice_lab.seeding import seed_everything

    config = _config(args, "unused")
    plants = classifier_plants(config)
    encoder, stats, start = load_start(config, plants)
    cameras = camera_list(config.cameras)
    stats = check_stats(stats, cameras)
    train = PhotoSamples(plants[plants["role"] == "train"], cameras, config.photo_height or 128)
    loader = photo_loader(train, config.batch_size, config.seed, True)
    seed_everything(config.seed)
    model = build_model(encoder, config)
    opt = Adam(list(model.parameters()), lr=config.lr, wd=config.wd)
    total, beta = config.epochs * len(loader), np.random.default_rng(config.seed)
    times, step, epoch = [time.perf_counter()], 0, 0
    while step <= args.warmup + args.steps:
        loader.batch_sampler.set_epoch(epoch)
        for images, cams, labels in loader:
            model.train()
            x = augment(images, config.seed, step, config.flips, config.max_rotation, config.zoom, config.jitter)
            x = prepare(x, cams, stats, config.channels_last)
            pct = step / total  # one-cycle: cosine warm-up to lr, cosine down; momentum the other way
            phase = pct / config.pct_start if pct < config.pct_start else (pct - config.pct_start) / (1 - config.pct_start)
            warm = pct < config.pct_start
            lo, hi = (config.lr / 25, config.lr) if warm else (config.lr, config.lr / 1e5)
            opt.set_hyper("lr", hi + (lo - hi) * (1 + math.cos(math.pi * phase)) / 2)
            opt.set_hyper("mom", config.moms[1] if not warm else config.moms[0] + (config.moms[1] - config.moms[0]) *
                          (1 - math.cos(math.pi * phase)) / 2)
            if config.mixup > 0:
                lam = float(beta.beta(config.mixup, config.mixup))
                lam = max(lam, 1 - lam)
                perm = torch.randperm(len(x))
                out = model(torch.lerp(x[perm], x, lam))
                loss = lam * F.cross_entropy(out, labels) + (1 - lam) * F.cross_entropy(out, labels[perm])
            else:
                loss = F.cross_entropy(model(x), labels)
            loss.backward()
            opt.step()
            opt.zero_grad()
            step += 1
            times.append(time.perf_counter())
            if step > args.warmup + args.steps:
                break
        epoch += 1
    return args.steps * config.batch_size / (times[args.warmup + args.steps] - times[args.warmup])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="Zindi folder (default: $RICE_LAB_DATA or synthetic)")
    parser.add_argument("--preset", default="cpu-tiny")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per variant (fewer are noisy)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        rate = {"rice_lab": run_rice_lab, "minimal": run_minimal}[args.variant](args)
        print(json.dumps({"variant": args.variant, "images_per_s": rate}))
        return
    args.data = str(default_data(args.data))
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            command = [sys.executable, "-W", "ignore", __file__, "--variant", variant, "--data", args.data,
                       "--preset", args.preset, "--steps", str(args.steps), "--warmup", str(args.warmup)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"])
    best = {v: max(r) for v, r in results.items()}
    print(f"fine-tuning, preset {args.preset}, {args.steps} steps after {args.warmup} warm-up, best of "
          f"{args.rounds} rounds, torch threads {args.threads or 'default'}")
    for v in VARIANTS:
        print(f"{v:<10} {best[v]:>8.1f} images/s   (rounds: {', '.join(f'{r:.1f}' for r in results[v])})")
    ratio = best["rice_lab"] / best["minimal"]
    print(f"rice_lab / minimal {ratio:.2f}x  (target >= 0.9x: {'ok' if ratio >= 0.9 else 'MISSED'})")


if __name__ == "__main__":
    main()
