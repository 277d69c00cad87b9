"""What changes along a pre-training run: progress measures at every saved checkpoint.

    dynamics_inputs(run_dir, data=None)          -> DynamicsInputs: the fixed crops and photos, made once
    checkpoint_measures(path, inputs, ...)       -> one row of measures for one snapshot
    progress_measures(run_dir, data=None)        -> DataFrame: one row per checkpoint (step)
    plot_dynamics(table, curve, drops)           -> every measure on one step axis, the drops marked
    write_dynamics(run_dir, out)                 -> dynamics.csv, drops.csv, dynamics.png (``rice-lab dynamics``)
    export_series(run_dir, path)                 -> a small .npz: the loss curve and photo features per snapshot
    prototype_usage / code_entropy / sensor_agreement / weight_norm -> the measures, on tensors

A loss curve says *that* something changed, not *what*. Grokking was explained (Nanda et al. 2023)
with continuous measures computed on saved checkpoints, which move long before the loss does; these
are SwAV's. Every checkpoint is measured on the same inputs, made once:

* the **fixed crops**: the run's validation plants cut exactly as its own validation pass cuts them
  (the ``valid-augment`` random stream keyed by batch, the run's batch size, crop recipe, views and
  normalisation), so ``loss_fixed_crops`` at an epoch's end equals the validation loss the run logged
  (without the queue: every checkpoint is scored the same way, before and after the queue starts);
* the **photos**: both whole photos of every labelled training plant, as the probes see them.

Measures (columns of :data:`MEASURES`). From the fixed crops: the SwAV loss; the Sinkhorn codes'
mean entropy (``ln K`` for uniform codes, the plateau value SwAV users report; 0 for one-hot codes);
the entropy of the model's own soft assignment ``softmax(scores / temperature)``; prototype usage
(how many prototypes are ever a large crop's nearest, at most the number of large crops, and the
effective number ``exp(entropy)`` of the mean soft assignment). From the photos' encoder features
(what fine-tuning reads): cross-validated kNN and linear-probe accuracy for the disease and for the
background (a nuisance the synthetic data records; NaN where there is none), each the mean over the
two cameras beside the commonest class's share; effective rank (Roy & Vetterli, uncentred as
RankMe); mini-batch linear CKA to the final checkpoint and to the previous one, with the final one's
permutation baseline. From the SwAV embeddings of a plant's two photos: how often both have the same
nearest prototype (beside the rate two independent draws from the prototypes' usage would give) and
their cosine similarity (beside that of photos of different plants). And the L2 norm of the encoder's
and head's weights.

Everything runs without gradients, in eval mode, batched, on the CPU.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from rice_lab.errors import CheckpointError, ConfigError, DataError
from rice_lab.presets import PretrainConfig, SwAVSettings

TARGETS = ("label", "background")  # the disease, and a nuisance the synthetic data records
PROBES = ("knn", "linear")
CKA_BATCH, CKA_PERMUTATIONS = 256, 10

# Every column of the table, in order, with what it holds.
MEASURES: dict[str, str] = {
    "step": "training step the snapshot was taken at",
    "epoch": "epoch of that step",
    "checkpoint": "the snapshot's file name",
    "loss_fixed_crops": "SwAV loss on the fixed validation crops (no queue)",
    "code_entropy": "mean entropy of the Sinkhorn codes of the fixed large crops, nats (ln K: uniform)",
    "prediction_entropy": "mean entropy of softmax(scores / temperature) of the fixed large crops, nats",
    "prototypes_used": "prototypes that are some fixed large crop's nearest (argmax score)",
    "prototypes_effective": "exp(entropy) of the mean softmax assignment of the fixed large crops",
    "n_prototypes": "K, the number of prototypes",
    "knn_label": "cross-validated kNN accuracy for the disease (mean over the two cameras)",
    "linear_label": "cross-validated linear-probe accuracy for the disease (mean over the two cameras)",
    "majority_label": "share of the commonest disease: what a probe must beat",
    "knn_background": "cross-validated kNN accuracy for the background (NaN without metadata.csv)",
    "linear_background": "cross-validated linear-probe accuracy for the background",
    "majority_background": "share of the commonest background",
    "effective_rank": "effective rank of the encoder features of every photo (uncentred)",
    "cka_final": "mini-batch linear CKA of the encoder features to the final checkpoint's",
    "cka_final_baseline": "the same after shuffling the final checkpoint's rows (mean of 10)",
    "cka_previous": "mini-batch linear CKA to the previous checkpoint's features (NaN at the first)",
    "same_prototype": "share of plants whose two photos have the same nearest prototype",
    "same_prototype_chance": "the same share for independent draws from each camera's prototype usage",
    "cosine_same_plant": "mean cosine similarity of a plant's RGB and RG-NIR SwAV embeddings",
    "cosine_other_plants": "mean cosine similarity of an RGB and an RG-NIR embedding of different plants",
    "weight_norm": "L2 norm of the encoder's and projection head's parameters",
    "seconds": "time taken to measure this checkpoint",
}


@dataclass
class DynamicsInputs:
    """What every checkpoint of a run is measured on, made once (:func:`dynamics_inputs`)."""

    run_dir: Path
    config: PretrainConfig
    checkpoints: list[Path]
    crops: list[list[torch.Tensor]]          # fixed validation crops, batch by batch, crop-major as in training
    plants: pd.DataFrame                     # the labelled training plants the photos show
    photos: dict[str, torch.Tensor]          # camera -> uint8 (plants, 3, H, W)
    targets: dict[str, np.ndarray | None] = field(default_factory=dict)  # target -> class codes (None: absent)


# --- the measures, on tensors ------------------------------------------------------------------------

def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each row of probabilities (0 log 0 = 0)."""
    p = p.double()
    return -(p * torch.log(p.clamp_min(1e-300))).sum(-1)


def code_entropy(codes: torch.Tensor) -> float:
    """Mean entropy (nats) of the rows of Sinkhorn codes (batch, prototypes): ln K when uniform."""
    return float(_entropy(codes).mean())


def prototype_usage(scores: torch.Tensor, temperature: float = 0.1) -> tuple[int, float]:
    """(prototypes that are some row's argmax, exp of the entropy of the mean softmax(scores / temperature)).

    Both are K when the rows spread over every prototype and 1 when all rows choose one.
    """
    used = int(torch.unique(scores.argmax(1)).numel())
    mean = F.softmax(scores.double() / temperature, dim=1).mean(0)
    return used, float(torch.exp(_entropy(mean)))


def sensor_agreement(scores_rgb: torch.Tensor, scores_rgnir: torch.Tensor, embeddings_rgb: torch.Tensor,
                     embeddings_rgnir: torch.Tensor) -> dict[str, float]:
    """Do a plant's two photos (row i of each side) get the same nearest prototype, and how close are
    their embeddings? Each beside its baseline: the same-prototype rate of independent draws from each
    camera's prototype usage, and the cosine similarity of photos of different plants."""
    n = len(scores_rgb)
    if n < 2 or len(scores_rgnir) != n or len(embeddings_rgb) != n or len(embeddings_rgnir) != n:
        raise ConfigError(f"sensor agreement needs the same 2+ plants on both sides: got {len(scores_rgb)} and "
                          f"{len(scores_rgnir)} rows")
    top_rgb, top_rgnir = scores_rgb.argmax(1), scores_rgnir.argmax(1)
    k = scores_rgb.shape[1]
    usage_rgb = torch.bincount(top_rgb, minlength=k).double() / n
    usage_rgnir = torch.bincount(top_rgnir, minlength=k).double() / n
    cosine = F.normalize(embeddings_rgb.double(), dim=1) @ F.normalize(embeddings_rgnir.double(), dim=1).T
    same = cosine.diagonal()
    return {"same_prototype": float((top_rgb == top_rgnir).double().mean()),
            "same_prototype_chance": float(usage_rgb @ usage_rgnir),
            "cosine_same_plant": float(same.mean()),
            "cosine_other_plants": float((cosine.sum() - same.sum()) / (n * (n - 1)))}


def weight_norm(net: torch.nn.Module) -> float:
    """L2 norm of a SwAV network's encoder and head parameters (the prototypes are unit rows: left out)."""
    params = [p for part in (net.encoder, net.head) for p in part.parameters()]
    return float(torch.sqrt(sum(p.detach().double().pow(2).sum() for p in params)))


# --- the inputs, made once per run -------------------------------------------------------------------

def run_checkpoints(run_dir: str | Path) -> list[Path]:
    """A pre-training run's snapshots in step order, ``encoder.pt`` last if it is later than all of them.

    CheckpointError (one line) when ``run_dir`` is not a pre-training run or keeps no snapshot.
    """
    from rice_lab.runs import checkpoint_step, list_checkpoints, load_checkpoint, read_manifest
    from rice_lab.ssl.pretrain import KIND

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if manifest.get("kind") != KIND:
        raise CheckpointError(f"{run_dir}: a {manifest.get('kind')!r} run, not a pre-training one; the progress "
                              "measures read the checkpoints of a 'rice-lab pretrain' run")
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir / 'checkpoints'}: no snapshots (step-*.pt) to measure; pre-train with "
                              "--checkpoint-every N to keep a series")
    final = run_dir / "encoder.pt"
    if final.is_file() and int(load_checkpoint(final).get("step", -1)) > checkpoint_step(found[-1]):
        found.append(final)
    return found


def data_root(run_dir: str | Path, stored: str | None, data: str | Path | None = None) -> Path:
    """The run's data folder: ``data`` if given, else the manifest's path (absolute; or relative to the
    working directory or to a folder above the run, where a project keeps ``runs/`` beside ``data/``)."""
    if data is not None:
        candidates = [Path(data)]
    elif stored:
        path = Path(stored)
        candidates = [path] if path.is_absolute() else [Path.cwd() / path] + [
            parent / path for parent in Path(run_dir).resolve().parents]
    else:
        candidates = []
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    shown = data if data is not None else stored
    raise DataError(f"{shown}: the data folder of {run_dir} is not found; pass the Zindi folder it was trained on "
                    "(--data)")


def fixed_crops(images, config: PretrainConfig, stats: dict) -> list[list[torch.Tensor]]:
    """The crops the run's validation pass cuts from ``images`` (a PlantImages of its validation plants):
    batch b of ``config.batch_size`` plants, in order, from the ``valid-augment`` stream keyed by b."""
    from rice_lab.data.views import multi_crop
    from rice_lab.seeding import stream_generator

    batches = []
    for b, start in enumerate(range(0, len(images), config.batch_size)):
        rgb, rgnir = images.rgb[start:start + config.batch_size], images.rgnir[start:start + config.batch_size]
        leaves = None if images.leaves is None else tuple(m[start:start + config.batch_size] for m in images.leaves)
        generator = stream_generator(config.seed, "valid-augment", b, 0)
        batches.append(multi_crop(rgb, rgnir, config.crops, config.views, generator, stats, leaves))
    return batches


def dynamics_inputs(run_dir: str | Path, data: str | Path | None = None, max_plants: int | None = None,
                    seed: int = 0) -> DynamicsInputs:
    """Everything the checkpoints of a pre-training run are measured on: its checkpoints, the fixed
    validation crops, and both photos of its labelled training plants (at most ``max_plants``, a draw
    stratified by disease with ``seed``), with their disease and (synthetic data) background codes.

    The data must be the run's own (its fingerprint is checked): ``data`` overrides the manifest's path.
    """
    from rice_lab.data.views import PlantImages, load_size
    from rice_lab.data.zindi import data_fingerprint
    from rice_lab.evaluate.encode import plant_photos
    from rice_lab.evaluate.probes import probe_plants, target_codes
    from rice_lab.explain.embeddings import with_metadata
    from rice_lab.runs import load_checkpoint, read_manifest
    from rice_lab.ssl.pretrain import pretraining_plants

    run_dir = Path(run_dir)
    checkpoints = run_checkpoints(run_dir)
    manifest = read_manifest(run_dir)
    config = PretrainConfig.from_dict(manifest["config"])
    root = data_root(run_dir, config.data, data)
    config = replace(config, data=str(root))
    plants = pretraining_plants(config)
    if manifest.get("data_fingerprint") not in (None, data_fingerprint(plants)):
        raise DataError(f"{root}: not the data {run_dir} was trained on (its fingerprint differs from the "
                        f"manifest's {manifest['data_fingerprint']}); pass the run's own data with --data")
    stats = load_checkpoint(checkpoints[0]).get("normalization")
    if stats is None:
        raise CheckpointError(f"{checkpoints[0]}: no normalization stored; made by an older rice-lab")
    valid = plants[plants["is_valid"]]
    if valid.empty:
        raise DataError(f"{root}: the run has no validation plants to cut the fixed crops from")
    crops = fixed_crops(PlantImages(valid, *load_size(config.decoded_height), config.crops.needs_leaves),
                        config, stats)

    labelled = probe_plants(plants, "train", "label")
    if (root / "metadata.csv").is_file():
        labelled = with_metadata(labelled, root)
    if max_plants is not None and len(labelled) > max_plants:
        share = max_plants / len(labelled)
        labelled = labelled.groupby("label", group_keys=False).sample(frac=share, random_state=seed)
    labelled = labelled.reset_index(drop=True)
    targets = {}
    for target in TARGETS:
        known = target in labelled and labelled[target].notna().all()
        targets[target] = target_codes(labelled[target], target) if known else None
    photos = {camera: plant_photos(labelled, camera, config.decoded_height) for camera in ("rgb", "rgnir")}
    return DynamicsInputs(run_dir, config, checkpoints, crops, labelled, photos, targets)


# --- one checkpoint ----------------------------------------------------------------------------------

@contextmanager
def _timed(timings: dict | None, name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """One torch thread for many small products: on a loaded 2-core machine two threads wait for each
    other on every one (benchmarks/README.md, bench_cka.py: 20x slower at times)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def crop_measures(net: torch.nn.Module, crops: list[list[torch.Tensor]], swav: SwAVSettings,
                  n_large: int) -> dict[str, float]:
    """SwAV loss (mean over batches, as the run's validation averages it), code and prediction entropy,
    and prototype usage on the fixed crops."""
    from rice_lab.ssl.loss import swav_codes, swav_loss

    losses, codes, large = [], [], []
    for batch in crops:
        _, scores = net(batch)
        per_crop = list(scores.float().cpu().chunk(len(batch)))
        losses.append(float(swav_loss(per_crop, n_large, swav.temperature, None, swav.sinkhorn_iters, swav.epsilon)))
        for i in range(n_large):
            codes.append(swav_codes(per_crop[i], None, swav.sinkhorn_iters, swav.epsilon))
            large.append(per_crop[i])
    large_scores = torch.cat(large)
    used, effective = prototype_usage(large_scores, swav.temperature)
    return {"loss_fixed_crops": float(np.mean(losses)), "code_entropy": code_entropy(torch.cat(codes)),
            "prediction_entropy": float(_entropy(F.softmax(large_scores.double() / swav.temperature, 1)).mean()),
            "prototypes_used": used, "prototypes_effective": effective}


class _ChannelsLast(torch.nn.Module):
    """Runs an encoder on channels-last inputs, as SwAVModel does: oneDNN's convolutions are faster so."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.contiguous(memory_format=torch.channels_last))


@torch.no_grad()
def photo_outputs(net: torch.nn.Module, photos: dict[str, torch.Tensor], height: int | None = None,
                  batch_size: int = 128) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per camera: (encoder features, unit SwAV embeddings, prototype scores) of whole photos, each camera
    normalised as the run normalised it."""
    from rice_lab.evaluate.encode import encode

    out, encoder = {}, _ChannelsLast(net.encoder)
    for camera, images in photos.items():
        features = encode(encoder, images, camera, stats=net.normalization[camera],
                          height=height or net.photo_height, batch_size=batch_size)
        embeddings = F.normalize(net.head(features), dim=1)
        out[camera] = (features, embeddings.float().cpu(), net.prototypes(embeddings).float().cpu())
    return out


def probe_measures(features: dict[str, torch.Tensor], targets: dict[str, np.ndarray | None], folds: int = 5,
                   seed: int = 0) -> dict[str, float]:
    """Cross-validated kNN and linear-probe accuracy per target (mean over cameras; the same folds for
    every checkpoint), and each target's majority share. NaN where a target is absent or too rare."""
    from threadpoolctl import threadpool_limits

    from rice_lab.evaluate.probes import cross_val_correct

    out = {}
    for target in TARGETS:
        codes = targets.get(target)
        counts = np.bincount(codes) if codes is not None else np.zeros(0, int)
        counts = counts[counts > 0]
        usable = len(counts) >= 2 and counts.min() >= 2
        out[f"majority_{target}"] = counts.max() / counts.sum() if len(counts) else math.nan
        for probe in PROBES:
            if not usable:
                out[f"{probe}_{target}"] = math.nan
                continue
            # One BLAS thread: these fits are small, and on a busy 2-core machine two threads made the
            # logistic regression 16x slower (1.2 s against 0.07 s per fit, measured).
            with threadpool_limits(1):
                per_camera = [cross_val_correct(x, codes, probe, min(folds, int(counts.min())), seed).mean()
                              for x in features.values()]
            out[f"{probe}_{target}"] = float(np.mean(per_camera))
    return out


def _cka(x: torch.Tensor, y: torch.Tensor | None, permutations: int = 0) -> tuple[float, float]:
    from rice_lab.explain.similarity import cka

    if y is None:
        return math.nan, math.nan
    result = cka(x, y, "minibatch", CKA_BATCH, permutations, seed=0)
    return result.cka, result.baseline


def checkpoint_measures(path: str | Path, inputs: DynamicsInputs, final_features: torch.Tensor | None = None,
                        previous_features: torch.Tensor | None = None,
                        timings: dict | None = None) -> tuple[dict, torch.Tensor]:
    """One row of :data:`MEASURES` for the snapshot at ``path``, and its photos' encoder features (both
    cameras stacked) for the next row's CKA. ``final_features``: the final checkpoint's (None: this one
    is the final). ``timings`` (a dict) gains the seconds spent per group of measures."""
    from rice_lab.ssl.model import load_swav_model

    start = time.perf_counter()
    with _timed(timings, "load"):
        net = load_swav_model(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    row = {"step": int(state.get("step", -1)), "epoch": int(state.get("epoch", -1)), "checkpoint": Path(path).name}
    config = inputs.config
    with _timed(timings, "fixed crops"):
        row.update(crop_measures(net, inputs.crops, config.swav, config.crops.n_large))
    row["n_prototypes"] = int(net.prototypes.weight.shape[0])
    with _timed(timings, "photos"):
        outputs = photo_outputs(net, inputs.photos, config.decoded_height)
    features = torch.cat([outputs[camera][0] for camera in outputs])
    with _timed(timings, "probes"):
        row.update(probe_measures({camera: out[0] for camera, out in outputs.items()}, inputs.targets))
    with _timed(timings, "effective rank"), _one_torch_thread():
        from rice_lab.explain.similarity import effective_rank

        row["effective_rank"] = effective_rank(features)
    with _timed(timings, "cka"), _one_torch_thread():
        row["cka_final"], row["cka_final_baseline"] = _cka(features, features if final_features is None
                                                           else final_features, CKA_PERMUTATIONS)
        row["cka_previous"] = _cka(features, previous_features)[0]
    with _timed(timings, "cross-sensor"):
        row.update(sensor_agreement(outputs["rgb"][2], outputs["rgnir"][2], outputs["rgb"][1], outputs["rgnir"][1]))
    with _timed(timings, "weight norm"):
        row["weight_norm"] = weight_norm(net)
    row["seconds"] = time.perf_counter() - start
    return row, features


def progress_measures(run_dir: str | Path | DynamicsInputs, data: str | Path | None = None, every: int = 1,
                      max_plants: int | None = None, progress: bool = True,
                      timings: dict | None = None) -> pd.DataFrame:
    """:data:`MEASURES` at every ``every``-th checkpoint of a pre-training run (the first and the final
    always), one row per checkpoint in step order. ``run_dir`` may be prepared :class:`DynamicsInputs`."""
    from fastprogress.fastprogress import progress_bar

    if every < 1:
        raise ConfigError(f"every={every}: must be 1 or more")
    inputs = run_dir if isinstance(run_dir, DynamicsInputs) else dynamics_inputs(run_dir, data, max_plants)
    chosen = inputs.checkpoints[::every]
    if chosen[-1] != inputs.checkpoints[-1]:
        chosen.append(inputs.checkpoints[-1])
    order = [chosen[-1], *chosen[:-1]]  # the final first: every other row's CKA is to its features
    bar = progress_bar(order, leave=False) if progress else order
    rows, final_row, final_features, previous = [], None, None, None
    for path in bar:
        if progress:
            bar.comment = path.name
        if final_row is None:
            final_row, final_features = checkpoint_measures(path, inputs, timings=timings)
            continue
        row, previous = checkpoint_measures(path, inputs, final_features, previous, timings)
        rows.append(row)
    with _one_torch_thread():
        final_row["cka_previous"] = _cka(final_features, previous)[0]
    rows.append(final_row)
    return pd.DataFrame(rows, columns=list(MEASURES))


# --- the figure --------------------------------------------------------------------------------------

# Each panel: (title, y label, [(column, label, colour, line style, marker)], [(column, label, colour)]
# of constant reference lines, drawn dotted without markers). Colours are Okabe-Ito; within a panel no
# two series share a line style and marker, so colour is never the only signal.
BLUE, ORANGE, GREEN, PURPLE, SKY, VERMILLION, BLACK = "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", \
    "#D55E00", "#000000"
PANELS = [
    ("Probes (cross-validated)", "accuracy",
     [("knn_label", "disease, kNN", PURPLE, "-", "o"), ("linear_label", "disease, linear", PURPLE, "--", "s"),
      ("knn_background", "background, kNN", BLUE, "-", "^"),
      ("linear_background", "background, linear", BLUE, "--", "D")],
     [("majority_label", "disease, commonest class", PURPLE), ("majority_background", "background, commonest class",
                                                                  BLUE)]),
    ("Sinkhorn codes and the model's assignment", "entropy (nats)",
     [("code_entropy", "codes", ORANGE, "-", "o"), ("prediction_entropy", "softmax(scores / T)", SKY, "--", "s")],
     [("ln_k", "ln K (uniform codes)", "#888888")]),
    ("Prototype usage (fixed large crops)", "prototypes",
     [("prototypes_used", "ever the nearest", GREEN, "-", "o"),
      ("prototypes_effective", "effective number", PURPLE, "--", "^")], [("n_prototypes", "K", "#888888")]),
    ("Effective rank of the encoder features", "effective rank",
     [("effective_rank", "effective rank", BLUE, "-", "o")], []),
    ("Cross-sensor agreement (a plant's two photos)", "share / cosine",
     [("same_prototype", "same nearest prototype", VERMILLION, "-", "o"),
      ("same_prototype_chance", "same prototype by chance", VERMILLION, ":", "x"),
      ("cosine_same_plant", "cosine, same plant", BLUE, "-", "s"),
      ("cosine_other_plants", "cosine, other plants", BLUE, ":", "+")], []),
    ("Linear CKA of the encoder features", "CKA",
     [("cka_final", "to the final checkpoint", BLACK, "-", "o"),
      ("cka_previous", "to the previous one", ORANGE, "--", "s"),
      ("cka_final_baseline", "to the final, rows shuffled", "#888888", ":", "x")], []),
    ("Weight norm (encoder and head)", "L2 norm", [("weight_norm", "weight norm", GREEN, "-", "o")], []),
]


def plot_dynamics(table: pd.DataFrame, curve: pd.DataFrame | None = None, drops=(), window: int | None = None):
    """Every measure of ``table`` (:func:`progress_measures`) on one step axis, in small multiples; the
    first panel holds the loss: ``curve`` (columns step, loss: the per-step training loss, drawn raw and
    under a running median of ``window`` steps) and the fixed-crop loss. Each drop of ``drops``
    (:func:`rice_lab.explain.changepoints.find_drops`) is a vertical line in every panel. Returns the figure."""
    import matplotlib.pyplot as plt

    from rice_lab.explain.changepoints import default_window, rolling_median

    missing = [c for c in ("step", "loss_fixed_crops", "n_prototypes") if c not in table]
    if missing:
        raise ConfigError(f"the table has no column {', '.join(missing)}: pass progress_measures' table")
    data = table.sort_values("step").assign(ln_k=np.log(table["n_prototypes"].astype(float)))
    fig, axes = plt.subplots(4, 2, figsize=(12, 12), sharex=True)
    axes = axes.ravel()
    ax = axes[0]
    if curve is not None and len(curve):
        curve = curve.sort_values("step")
        ax.plot(curve["step"], curve["loss"], color="#BBBBBB", linewidth=0.5, label="training loss, each step")
        smooth = rolling_median(curve["loss"], window or default_window(len(curve)))
        ax.plot(curve["step"], smooth, color=BLACK, linewidth=1.2, label="training loss, running median")
    ax.plot(data["step"], data["loss_fixed_crops"], color=BLUE, linestyle="--", marker="o", markersize=4,
            label="fixed validation crops")
    ax.axhline(float(data["ln_k"].iloc[0]), color="#888888", linestyle=":", linewidth=1, label="ln K (uniform codes)")
    ax.set_title("SwAV loss")
    ax.set_ylabel("loss")
    for ax, (title, ylabel, series, references) in zip(axes[1:], PANELS):
        for column, label, colour, style, marker in series:
            if column in data and data[column].notna().any():
                ax.plot(data["step"], data[column], color=colour, linestyle=style, marker=marker, markersize=4,
                        label=label)
        for column, label, colour in references:
            if column in data and data[column].notna().any():
                ax.axhline(float(data[column].iloc[0]), color=colour, linestyle=":", linewidth=1, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
    for ax in axes:
        for i, drop in enumerate(drops):
            ax.axvline(drop.step, color=BLACK, linestyle=(0, (4, 2)), linewidth=1,
                       label=f"drop at step {drop.step:g} (-{drop.size:.2f})" if ax is axes[0] else None)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    for ax in axes[-2:]:
        ax.set_xlabel("training step")
    found = ", ".join(f"{d.step:g}" for d in drops) if len(drops) else "none"
    fig.suptitle(f"Progress measures at {len(data)} checkpoints; sudden drops in the training loss: {found}")
    fig.tight_layout()
    return fig


def training_curve(run_dir: str | Path) -> pd.DataFrame | None:
    """The per-step training loss a run logged (columns step, loss), or None if it logged none."""
    from rice_lab.runs import read_metrics

    if not (Path(run_dir) / "metrics.csv").is_file():
        return None
    metrics = read_metrics(run_dir)
    curve = metrics[metrics["kind"] == "train"][["step", "loss"]]
    return curve if len(curve) else None


def write_dynamics(run_dir: str | Path, out: str | Path, data: str | Path | None = None, every: int = 1,
                   max_plants: int | None = None, progress: bool = True) -> dict:
    """Measure a pre-training run's checkpoints and write ``dynamics.csv`` (:func:`progress_measures`),
    ``drops.csv`` (the training loss's sudden drops, :func:`rice_lab.explain.changepoints.find_drops`)
    and ``dynamics.png`` (:func:`plot_dynamics`) into ``out``. Earlier measures found in ``out`` are moved
    to ``<out>.stale-<UTC time>``, never written over. Returns {"table", "drops", "files", "set_aside"}."""
    import matplotlib.pyplot as plt

    from rice_lab.explain.changepoints import drops_table, find_drops
    from rice_lab.runs import set_aside

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose another --out")
    earlier = out.is_dir() and any(out.iterdir())
    if earlier and not (out / "dynamics.csv").is_file():
        raise ConfigError(f"--out {out}: a folder that holds other files; give a new or empty folder (earlier "
                          "measures there are moved aside, never written over)")
    table = progress_measures(run_dir, data, every, max_plants, progress)
    curve = training_curve(run_dir)
    drops = find_drops(curve["step"], curve["loss"]) if curve is not None else []
    moved = set_aside(out) if earlier else None
    out.mkdir(parents=True, exist_ok=True)
    files = {"table": out / "dynamics.csv", "drops": out / "drops.csv", "figure": out / "dynamics.png"}
    table.to_csv(files["table"], index=False)
    drops_table(drops).to_csv(files["drops"], index=False)
    fig = plot_dynamics(table, curve, drops)
    fig.savefig(files["figure"], dpi=120)
    plt.close(fig)
    return {"table": table, "drops": drops, "files": files, "set_aside": moved}


@torch.no_grad()
def export_series(run_dir: str | Path, path: str | Path, data: str | Path | None = None, max_plants: int = 90,
                  camera: str = "rgb", seed: int = 0) -> Path:
    """Write what a run's checkpoint series shows, small enough to hand out: ``steps`` (one per snapshot),
    ``features`` (snapshots x photos x features, float16: the encoder features of one camera's photos of
    ``max_plants`` labelled training plants), ``loss_fixed_crops`` per snapshot, the per-step training
    curve (``curve_step``, ``curve_loss``), the photos' ``label`` and ``background`` names (empty where
    unknown), ``n_prototypes`` and ``queue_start_step`` (the step the queue starts filling; -1: no
    queue). An earlier file at ``path`` is moved aside."""
    from rice_lab.runs import set_aside
    from rice_lab.ssl.model import load_swav_model

    inputs = dynamics_inputs(run_dir, data, max_plants, seed)
    config, steps, features, losses = inputs.config, [], [], []
    with _one_torch_thread():
        for checkpoint in inputs.checkpoints:
            net = load_swav_model(checkpoint)
            steps.append(int(torch.load(checkpoint, map_location="cpu", weights_only=True).get("step", -1)))
            losses.append(crop_measures(net, inputs.crops, config.swav, config.crops.n_large)["loss_fixed_crops"])
            photos = {camera: inputs.photos[camera]}
            features.append(photo_outputs(net, photos, config.decoded_height)[camera][0].numpy())
    curve = training_curve(run_dir)
    total = int(curve["step"].max())  # the last logged step: the run's length
    queue_start = int(config.swav.queue_start * total) if config.swav.queue_factor else -1
    names = {target: inputs.plants[target].astype(str).to_numpy(dtype="U") if target in inputs.plants else np.array([], "U1")
             for target in TARGETS}
    path = Path(path)
    if path.exists():
        set_aside(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, steps=np.array(steps), features=np.stack(features).astype(np.float16),
                        loss_fixed_crops=np.array(losses), curve_step=curve["step"].to_numpy(),
                        curve_loss=curve["loss"].to_numpy(np.float32), label=names["label"],
                        background=names["background"], n_prototypes=config.swav.n_prototypes,
                        queue_start_step=queue_start)
    return path


__all__ = ["MEASURES", "DynamicsInputs", "checkpoint_measures", "code_entropy", "crop_measures", "data_root",
           "dynamics_inputs", "export_series", "fixed_crops", "photo_outputs", "plot_dynamics", "probe_measures", "progress_measures",
           "prototype_usage", "run_checkpoints", "sensor_agreement", "training_curve", "weight_norm", "write_dynamics"]
