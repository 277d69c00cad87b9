"""Attribution metrics: rice_lab.explain.metrics against Quantus (and ROAD against pytorch-grad-cam).

    python benchmarks/bench_explain_metrics.py [--images 64] [--height 48] [--rounds 3] [--threads 2]

Same inputs on both sides: ``--images`` photos of ``--height`` x 1.25 ``--height`` px (the challenge's
5:4 shape; 48 x 60 by default), seeded random normalised photos, maps and rectangular lesion masks,
and a ``cpu-tiny`` classifier (xresnet-tiny, random weights: the speed does not depend on them).
Each side gets its own native inputs (numpy for Quantus and pytorch-grad-cam, torch where rice_lab
takes torch), prepared outside the clock. Timed, best of ``--rounds`` (noise on a shared machine
only slows a run down):

* localisation: pointing game, relevance mass accuracy, relevance rank accuracy, AUC (Quantus's
  classes with ``normalise=False``, the settings the tests show give the same numbers);
* deletion, 12 steps: ``deletion_curve`` against Quantus's ``PixelFlipping`` (features_in_step =
  one step of whole pixels, ``perturb_baseline=0.0``); H x W must be divisible by 3 x the pixels per
  step for Quantus, hence 12 steps;
* ROAD, most relevant first, 9 percentages: ``road_curve`` against pytorch-grad-cam's
  ``ROADMostRelevantFirstAverage`` (Quantus's ROAD returns 0 at every percentage, issue 333).

Ratios are the peer's time over ours: above 1 means rice_lab is faster. Target: at least 2x.
"""

from __future__ import annotations

import argparse
from typing import Callable

import numpy as np
import torch
from timing import best_time


def inputs(n: int, height: int, seed: int = 0):
    from rice_lab.data.views import load_size

    height, width = load_size(height)
    rng = np.random.default_rng(seed)
    photos = rng.normal(size=(n, 3, height, width)).astype(np.float32)
    maps = rng.random((n, height, width)).astype(np.float32)
    masks = np.zeros((n, height, width), dtype=bool)
    for i in range(n):
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        masks[i, top:top + rng.integers(2, height // 3), left:left + rng.integers(2, width // 3)] = True
    return photos, maps, masks


def classifier() -> torch.nn.Module:
    from rice_lab.finetune.model import Classifier, encoder_body
    from rice_lab.models.encoders import create_encoder

    torch.manual_seed(0)
    body, n_features = encoder_body(create_encoder("xresnet-tiny"))
    return Classifier(body, n_features, 3).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import quantus
    from pytorch_grad_cam.metrics.road import ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    from rice_lab.explain import metrics

    photos, maps, masks = inputs(args.images, args.height)
    model = classifier()
    x = torch.from_numpy(photos)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    labels = predicted.numpy()
    steps = 12
    pixels = photos.shape[-2] * photos.shape[-1]
    if pixels % (3 * pixels // steps):
        raise SystemExit(f"--height {args.height}: H x W = {pixels} is not divisible into Quantus's 12 steps")

    def quantus_localisation(name: str) -> Callable[[], object]:
        metric = getattr(quantus, name)(normalise=False, disable_warnings=True)
        return lambda: metric(model=None, x_batch=photos, y_batch=labels, a_batch=maps[:, None],
                              s_batch=masks[:, None].astype(np.float32))

    pixel_flipping = quantus.PixelFlipping(features_in_step=3 * pixels // steps, perturb_baseline=0.0,
                                           disable_warnings=True)
    road_reference = ROADMostRelevantFirstAverage([10, 20, 30, 40, 50, 60, 70, 80, 90])
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in predicted]
    cases = [
        ("pointing game", "Quantus", lambda: metrics.pointing_game(maps, masks), quantus_localisation("PointingGame")),
        ("relevance mass accuracy", "Quantus", lambda: metrics.relevance_mass_accuracy(maps, masks),
         quantus_localisation("RelevanceMassAccuracy")),
        ("relevance rank accuracy", "Quantus", lambda: metrics.relevance_rank_accuracy(maps, masks),
         quantus_localisation("RelevanceRankAccuracy")),
        ("AUC", "Quantus", lambda: metrics.mask_auc(maps, masks), quantus_localisation("AUC")),
        ("deletion, 12 steps", "Quantus", lambda: metrics.deletion_curve(model, x, maps, steps=steps),
         lambda: pixel_flipping(model=model, x_batch=photos, y_batch=labels, a_batch=maps[:, None], softmax=True,
                                device="cpu")),
        ("ROAD MoRF, 9 percentages", "pytorch-grad-cam", lambda: metrics.road_curve(model, x, maps),
         lambda: road_reference(x, maps.astype(np.float64), targets, model)),
    ]
    print(f"{args.images} images of {photos.shape[-2]} x {photos.shape[-1]} px, best of {args.rounds} rounds, "
          f"{args.threads} threads")
    print(f"| metric | rice_lab s | peer | peer s | peer / rice_lab |\n| --- | --- | --- | --- | --- |")
    for name, peer, ours, theirs in cases:
        ours(), theirs()  # warm-up (imports, first-call allocations)
        ours_s, theirs_s = best_time(ours, args.rounds), best_time(theirs, args.rounds)
        print(f"| {name} | {ours_s:.4f} | {peer} | {theirs_s:.4f} | {theirs_s / ours_s:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
