"""SwAV pre-training throughput of the ``cpu-tiny`` preset: rice_lab vs a minimal loop vs lightly.

    python benchmarks/bench_ssl.py [--data DIR] [--steps 60] [--rounds 3] [--preset cpu-tiny]

All variants train the same encoder, projection head size and prototypes with the same crop recipe
(2 large + 2 small, paired cameras), the same loss and the same optimiser (fastai's Lamb):

* ``rice_lab``: ``rice_lab.ssl.pretrain.build_learner`` + ``fit_one_cycle`` (the library as used);
* ``minimal``:  a hand-written loop over the same DataLoader, ``multi_crop`` and ``swav_loss``;
* ``lightly``:  lightly's ``SwaVProjectionHead``, ``SwaVPrototypes``, ``SwaVLoss`` and its
  ``SwaVTransform`` crops (PIL, per image, in the main process), one transform per camera: lightly
  as its documentation uses it, so the ratio is mostly about the data pipeline;
* ``lightly-batched``: the same lightly head, prototypes and loss, fed rice_lab's batched crops
  (``multi_crop`` over the same DataLoader): the ratio compares the two libraries' model and loss code;
* ``loader``: rice_lab's data path alone (crops, no model).

Each variant runs in its own process (so peak memory is its own), ``--rounds`` times in turn;
the best round counts, because on a shared machine noise only ever slows a run down.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from timing import default_data, training_clock

VARIANTS = ("rice_lab", "minimal", "lightly", "lightly-batched", "loader")


def _config(args):
    from rice_lab.presets import get_preset

    return get_preset(args.preset, data=str(args.data), progress=False, threads=args.threads)


def _peak_memory() -> dict:
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _rate(times: list[float], warmup: int, steps: int, batch: int) -> float:
    return steps * batch / (times[warmup + steps] - times[warmup])


def run_rice_lab(config, plants, warmup: int, steps: int) -> float:
    from fastai.callback.core import CancelFitException

    from rice_lab.ssl.pretrain import build_learner

    times: list[float] = []
    clock = training_clock(times, warmup + steps, CancelFitException)
    learn, _, _ = build_learner(config, plants, extra_cbs=[clock])
    learn.fit_one_cycle(config.epochs, config.lr, wd=config.wd, moms=config.moms, pct_start=config.pct_start)
    return _rate(times, warmup, steps, config.batch_size)


def _training_parts(config, plants):
    import torch

    from rice_lab.data.views import PlantImages, load_size, plant_loader
    from rice_lab.models import create_encoder
    from rice_lab.seeding import seed_everything

    height, width = load_size(config.decoded_height)
    images = PlantImages(plants[~plants["is_valid"]], height, width)
    loader = plant_loader(images, config.batch_size, config.seed, True, True)
    seed_everything(config.seed)
    encoder = create_encoder(config.encoder)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return images, loader, encoder, device


def _one_cycle_lr(config, step: int, total: int) -> float:
    import math

    pct, top = step / total, config.lr
    if pct < config.pct_start:
        p = pct / config.pct_start
        return top / 25 + (top - top / 25) * (1 - math.cos(math.pi * p)) / 2
    p = (pct - config.pct_start) / (1 - config.pct_start)
    return top / 1e5 + (top - top / 1e5) * (1 + math.cos(math.pi * p)) / 2


def run_minimal(config, plants, warmup: int, steps: int) -> float:
    """The least code that trains the same thing: no Learner, no callbacks, no run directory."""
    import torch
    from fastai.optimizer import Lamb

    from rice_lab.data.views import multi_crop
    from rice_lab.seeding import stream_generator
    from rice_lab.ssl import SwAVModel, normalize_prototypes_, swav_loss

    images, loader, encoder, device = _training_parts(config, plants)
    stats, spec, swav = images.stats(), config.crops, config.swav
    model = SwAVModel(encoder, swav.hidden, swav.dim, swav.n_prototypes).to(device)
    opt = Lamb(list(model.parameters()), lr=config.lr, wd=config.wd)
    total = config.epochs * len(loader)
    times, step = [time.perf_counter()], 0
    while step <= warmup + steps:
        for rgb, rgnir in loader:
            rgb, rgnir = rgb.to(device), rgnir.to(device)
            normalize_prototypes_(model.prototypes.weight)
            crops = multi_crop(rgb, rgnir, spec, config.views, stream_generator(config.seed, "augment", step), stats)
            _, scores = model(crops)
            loss = swav_loss(list(scores.chunk(spec.n_crops)), spec.n_large, swav.temperature)
            loss.backward()
            if step < swav.freeze_prototypes_steps:
                model.prototypes.weight.grad = None
            opt.set_hyper("lr", _one_cycle_lr(config, step, total))
            opt.step()
            opt.zero_grad()
            step += 1
            times.append(time.perf_counter())
            if step > warmup + steps:
                break
    return _rate(times, warmup, steps, config.batch_size)


class _LightlyPairs:
    """Plants as lightly would see them: PIL photos, lightly's SwaV transforms, one per camera."""

    def __init__(self, images, config, stats):
        from PIL import Image
        from lightly.transforms.swav_transform import SwaVTransform

        self.rgb = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images.rgb]
        self.rgnir = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images.rgnir]
        crops = config.crops

        def transform(camera: str):
            # same recipe as rice_lab's crops: flip, rotation <= 10 deg, brightness/contrast only
            return SwaVTransform(crop_sizes=(crops.size, crops.small_size), crop_counts=(1, crops.n_small // 2),
                                 crop_min_scales=(crops.large_scale[0], crops.small_scale[0]),
                                 crop_max_scales=(crops.large_scale[1], crops.small_scale[1]),
                                 hf_prob=0.5, rr_prob=1.0, rr_degrees=crops.max_rotation, cj_prob=1.0,
                                 cj_bright=crops.jitter, cj_contrast=crops.jitter, cj_sat=0.0,
                                 cj_hue=0.0, random_gray_scale=0.0, gaussian_blur=0.0,
                                 normalize={"mean": stats[camera][0], "std": stats[camera][1]})

        self.t_rgb, self.t_rgnir = transform("rgb"), transform("rgnir")

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, i: int):
        a, b = self.t_rgb(self.rgb[i]), self.t_rgnir(self.rgnir[i])
        return [a[0], b[0]] + [crop for pair in zip(a[1:], b[1:]) for crop in pair]  # large, then small


def run_lightly(config, plants, warmup: int, steps: int) -> float:
    import torch
    from fastai.optimizer import Lamb
    from lightly.loss import SwaVLoss
    from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes
    from torch.utils.data import DataLoader

    images, _, encoder, device = _training_parts(config, plants)
    dataset = _LightlyPairs(images, config, images.stats())
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(config.seed))
    return _train_lightly(config, encoder, device, loader, lambda crops, step: crops, warmup, steps)


def run_lightly_batched(config, plants, warmup: int, steps: int) -> float:
    """lightly's head, prototypes and loss on rice_lab's batched crops: the libraries' model code side by side."""
    from rice_lab.data.views import multi_crop
    from rice_lab.seeding import stream_generator

    images, loader, encoder, device = _training_parts(config, plants)
    stats = images.stats()

    def crops_of(batch, step):
        rgb, rgnir = batch
        return multi_crop(rgb.to(device), rgnir.to(device), config.crops, config.views,
                          stream_generator(config.seed, "augment", step), stats)

    return _train_lightly(config, encoder, device, loader, crops_of, warmup, steps)


def _train_lightly(config, encoder, device, loader, crops_of, warmup: int, steps: int) -> float:
    """The training loop of both lightly variants: ``crops_of(batch, step)`` -> list of crop batches."""
    import torch
    from fastai.optimizer import Lamb
    from lightly.loss import SwaVLoss
    from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes

    swav, n_large, n_small = config.swav, config.crops.n_large, config.crops.n_small
    head = SwaVProjectionHead(encoder.num_features, swav.hidden, swav.dim)
    prototypes = SwaVPrototypes(swav.dim, swav.n_prototypes, swav.freeze_prototypes_steps)
    model = torch.nn.ModuleDict({"encoder": encoder, "head": head, "prototypes": prototypes}).to(device)
    criterion = SwaVLoss(temperature=swav.temperature)
    opt = Lamb(list(model.parameters()), lr=config.lr, wd=config.wd)
    total = config.epochs * len(loader)
    times, step = [time.perf_counter()], 0
    while step <= warmup + steps:
        for batch in loader:
            crops = crops_of(batch, step)
            prototypes.normalize()
            large = torch.cat(crops[:n_large]).to(device)
            small = torch.cat(crops[n_large:]).to(device)
            # the same channels-last layout SwAVModel uses, so the ratio compares libraries, not layouts
            z = [torch.nn.functional.normalize(head(encoder(x.contiguous(memory_format=torch.channels_last))), dim=1)
                 for x in (large, small)]
            scores = [prototypes(x, step) for x in z]
            loss = criterion(list(scores[0].chunk(n_large)), list(scores[1].chunk(n_small)))
            loss.backward()
            opt.set_hyper("lr", _one_cycle_lr(config, step, total))
            opt.step()
            opt.zero_grad()
            step += 1
            times.append(time.perf_counter())
            if step > warmup + steps:
                break
    return _rate(times, warmup, steps, config.batch_size)


def run_loader(config, plants, warmup: int, steps: int) -> float:
    """rice_lab's data path alone: batches of plants turned into normalised crops, no model."""
    import torch

    from rice_lab.data.views import multi_crop
    from rice_lab.seeding import stream_generator

    images, loader, _, device = _training_parts(config, plants)
    stats, spec = images.stats(), config.crops
    times, step = [time.perf_counter()], 0
    while step <= warmup + steps:
        for rgb, rgnir in loader:
            crops = multi_crop(rgb.to(device), rgnir.to(device), spec, config.views,
                               stream_generator(config.seed, "augment", step), stats)
            if device.type == "cuda":
                torch.cuda.synchronize()
            step += 1
            times.append(time.perf_counter())
            if step > warmup + steps:
                break
    return _rate(times, warmup, steps, config.batch_size)


def _child(args) -> None:
    import torch

    from rice_lab.ssl.pretrain import pretraining_plants

    config = _config(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    plants = pretraining_plants(config)
    runner = {"rice_lab": run_rice_lab, "minimal": run_minimal, "lightly": run_lightly,
              "lightly-batched": run_lightly_batched, "loader": run_loader}[args.variant]
    rate = runner(config, plants, args.warmup, args.steps)
    print(json.dumps({"variant": args.variant, "images_per_s": rate, **_peak_memory()}))


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
        return _child(args)
    args.data = str(default_data(args.data))
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            command = [sys.executable, "-W", "ignore", __file__, "--variant", variant, "--data", args.data,
                       "--preset", args.preset, "--steps", str(args.steps), "--warmup", str(args.warmup)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = {v: max(r, key=lambda x: x["images_per_s"]) for v, r in results.items()}
    print(f"SwAV pre-training, preset {args.preset}, {args.steps} steps after {args.warmup} warm-up, "
          f"best of {args.rounds} rounds, torch threads {args.threads or 'default'}")
    print(f"{'variant':<16} {'images/s':>10} {'peak RSS MB':>12}" + (" peak GPU MB" if "peak_gpu_mb" in best["rice_lab"] else ""))
    for v in VARIANTS:
        gpu = f" {best[v]['peak_gpu_mb']:>11.0f}" if "peak_gpu_mb" in best[v] else ""
        print(f"{v:<16} {best[v]['images_per_s']:>10.1f} {best[v]['peak_rss_mb']:>12.0f}{gpu}")
    ours = best["rice_lab"]["images_per_s"]
    ratios = {"rice_lab / minimal": (ours / best["minimal"]["images_per_s"], 0.9),
              "rice_lab / lightly (its PIL crops)": (ours / best["lightly"]["images_per_s"], 1.0),
              "rice_lab / lightly-batched (same crops)": (ours / best["lightly-batched"]["images_per_s"], 0.9),
              "loader / rice_lab": (best["loader"]["images_per_s"] / ours, 2.0)}
    for name, (ratio, target) in ratios.items():
        print(f"{name:<40} {ratio:6.2f}x  (target >= {target}x: {'ok' if ratio >= target else 'MISSED'})")


if __name__ == "__main__":
    main()
