"""``finetune(config)``: a classifier from an encoder, with a fastai Learner, on both cameras.

Read it top to bottom: plants -> encoder -> run directory -> Learner + callbacks -> one-cycle
(per mode) -> the kept epoch (best validation fused log loss) -> TTA decision and temperatures
fitted on the validation plants -> ``calibration.json`` (those decisions, readable) and
``classifier.pt``. ``cached_finetune`` (``--if-needed``) reuses,
resumes or sets aside what is in the run directory; nothing is ever deleted.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import torch
import fastai.callback.schedule  # noqa: F401 - adds Learner.fit_one_cycle
from fastai.callback.core import Callback
from fastai.callback.mixup import MixUp
from fastai.callback.progress import ProgressCallback
from fastai.callback.training import BnFreeze
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import Adam
from fastcore.foundation import L
from torch import nn
from torch.utils.data import ConcatDataset

from rice_lab.data.views import IMAGENET_STATS, PlantImages, load_size
from rice_lab.data.zindi import CAMERAS, CLASSES, data_fingerprint, read_zindi, split_plants
from rice_lab.errors import CheckpointError, ConfigError, DataError, TrainingError
from rice_lab.evaluate.calibration import EPSILON, log_loss
from rice_lab.finetune.config import FinetuneConfig
from rice_lab.finetune.data import (PhotoSamples, assign_roles, augment, camera_list, check_stats,
                                    photo_level_split, photo_loader, prepare, shuffle_training_labels)
from rice_lab.finetune.distill import teacher_targets
from rice_lab.finetune.model import Classifier, body_and_head, encoder_body
from rice_lab.finetune.predictions import calibrate  # TTA and temperature: the same code predict() runs
from rice_lab.models.encoders import create_encoder, load_encoder
from rice_lab.runs import (MetricsLog, atomic_save, atomic_write_text, cache_decision, load_checkpoint,
                           open_run_dir, read_manifest, rng_state, set_rng_state)
from rice_lab.seeding import seed_everything

KIND = "finetune"          # the manifest's kind of run
RESULT = "classifier.pt"   # written last: a run without it is unfinished


# ---------------------------------------------------------------------------------------------
# The encoder a classifier starts from
# ---------------------------------------------------------------------------------------------

def load_start(config: FinetuneConfig, plants: pd.DataFrame) -> tuple[nn.Module, dict, dict]:
    """(encoder, per-camera normalisation, what the manifest records about the start)."""
    if config.encoder == "random":
        # torch seeds its global generator differently in every process: the run seed decides the
        # initial weights, as in pre-training (ImageNet weights, when asked for, overwrite them).
        seed_everything(config.seed)
        encoder = create_encoder(config.arch, pretrained=config.pretrained)
        if config.pretrained:
            stats = {c: IMAGENET_STATS for c in CAMERAS}
        else:  # the training photos' own statistics, as pre-training's "data" normalisation
            train = plants[plants["role"] == "train"]
            stats = PlantImages(train, *load_size(config.photo_height or 128)).stats()
        return encoder, stats, {"source": "imagenet" if config.pretrained else "random", "arch": config.arch}
    run = Path(config.encoder).expanduser()
    if not run.is_dir():
        raise ConfigError(f"--encoder {config.encoder}: not a directory; give a pre-training run directory "
                          "or 'random'")
    manifest = read_manifest(run)
    if manifest.get("kind") != "pretrain":
        raise CheckpointError(f"{run}: a {manifest.get('kind')!r} run, not a pre-training run; --encoder takes "
                              "the run directory `rice-lab pretrain` wrote (or 'random')")
    encoder = load_encoder(run)
    stats = encoder.normalization or {}
    return encoder, stats, {"source": "pretrain-run", "run": str(run.resolve()), "arch": encoder.encoder_name,
                            "photo_height": encoder.photo_height, **pretrained_on(manifest, plants)}


def pretrained_on(manifest: dict, plants: pd.DataFrame) -> dict:
    """Which plants' photos the encoder run pre-trained on, rebuilt from its config on this data.

    Recorded so a reader can see whether the test plants' photos (never their labels) shaped the
    encoder; when the run was made on other data, only its fingerprint is recorded.
    """
    cfg = manifest["config"]
    table = plants.drop(columns=[c for c in ("role", "group") if c in plants.columns])
    marked = split_plants(table, cfg.get("valid_pct", 0.2), cfg.get("seed", 0))
    used = marked if cfg.get("use_test", True) else marked[marked["split"] == "train"]
    info = {"pretrain_fingerprint": manifest.get("data_fingerprint"), "pretrain_views": cfg.get("views")}
    if data_fingerprint(used) != manifest.get("data_fingerprint"):
        return {**info, "pretrained_on": "other data (fingerprints differ)"}
    return {**info, "pretrained_on": {
        "train_plants": sorted(used.loc[(used["split"] == "train") & ~used["is_valid"], "plant_id"]),
        "valid_plants": sorted(used.loc[(used["split"] == "train") & used["is_valid"], "plant_id"]),
        "test_plants": sorted(used.loc[used["split"] == "test", "plant_id"])}}


def build_model(encoder: nn.Module, config: FinetuneConfig) -> Classifier:
    """Body of ``encoder`` + pooling + a head seeded by the run seed."""
    body, n_features = encoder_body(encoder)
    seed_everything(config.seed)  # the head's initial weights
    model = Classifier(body, n_features, len(CLASSES), config.head, config.pool)
    return model.to(memory_format=torch.channels_last) if config.channels_last else model


# ---------------------------------------------------------------------------------------------
# Callbacks: photo batches in, run directory out
# ---------------------------------------------------------------------------------------------

class PhotoInput(Callback):
    """(uint8 photos, cameras) -> normalised float photos; augmented in training."""

    order = -5  # after TrainEvalCallback, before MixUp

    def __init__(self, config: FinetuneConfig, stats: dict, step_offset: int = 0) -> None:
        self.config, self.stats = config, stats
        self.step_offset = step_offset  # steps of earlier phases (discriminative's head-only phase)

    def before_batch(self) -> None:
        images, cameras = self.xb
        c = self.config
        if self.training:
            images = augment(images, c.seed, self.step_offset + self.learn.train_iter, c.flips, c.max_rotation,
                             c.zoom, c.jitter)
        self.learn.xb = (prepare(images, cameras, self.stats, c.channels_last),)


class ClassifierRun(Callback):
    """Logs metrics, keeps the best epoch on validation fused log loss, saves resume states.

    Epochs and steps are counted over the whole run (all phases), so a resumed discriminative run
    re-enters the right phase at the right epoch.
    """

    order = 60  # after the Recorder has the epoch's losses

    def __init__(self, run_dir: Path, photos_per_plant: int, epoch_offset: int, steps_per_epoch: int,
                 state: dict, resume_state: dict | None = None) -> None:
        self.run_dir, self.photos_per_plant = run_dir, photos_per_plant  # in validation
        self.epoch_offset, self.steps_per_epoch = epoch_offset, steps_per_epoch
        self.state, self.resume_state = state, resume_state  # state: best so far, shared across phases
        self.start_epoch = 0

    @property
    def global_epoch(self) -> int:
        return self.epoch_offset + self.epoch

    @property
    def global_step(self) -> int:
        return self.epoch_offset * self.steps_per_epoch + self.learn.train_iter

    def before_fit(self) -> None:
        if self.resume_state is not None:
            done = int(self.resume_state["epochs_done"]) - self.epoch_offset
            # At a phase's first epoch the optimiser starts afresh (unfreezing clears its state).
            self._restore(self.resume_state, with_opt=done > 0)
            self.learn.train_iter = done * self.steps_per_epoch
            self.start_epoch = done
        self.log_file = MetricsLog(self.run_dir / "metrics.csv", keep_until_step=self.global_step)

    def _restore(self, state: dict, with_opt: bool = True) -> None:
        self.learn.model.load_state_dict(state["model"])
        self.state.update(state["best"])
        set_rng_state(state["rng"])
        if not with_opt:
            return
        opt = dict(state["opt"])
        opt["hypers"] = L(dict(h) for h in opt["hypers"])
        self.learn.opt.load_state_dict(opt)
        device = next(self.learn.model.parameters()).device
        for slot in self.learn.opt.state.values():
            for key, value in slot.items():
                if isinstance(value, torch.Tensor):
                    slot[key] = value.to(device)

    def before_epoch(self) -> None:
        self.dls.train.batch_sampler.set_epoch(self.global_epoch)

    def before_validate(self) -> None:
        self.probs, self.targets = [], []

    def after_batch(self) -> None:
        if self.training:
            loss = float(self.learn.loss.detach())
            if not math.isfinite(loss):
                raise TrainingError(f"the training loss became {loss} at step {self.global_step}; the last good "
                                    f"state is in {self.run_dir / 'last.pt'}: lower the learning rate")
            self.log_file.log(self.global_step, self.global_epoch, "train", loss, self.opt.hypers[-1]["lr"])
        else:
            self.probs.append(self.learn.pred.detach().float().softmax(1).cpu())
            self.targets.append(self.learn.yb[0].cpu())

    def after_epoch(self) -> None:
        if self.epoch < self.start_epoch:
            return  # skipped on resume
        probs = torch.cat(self.probs).double().numpy()
        targets = torch.cat(self.targets).numpy()
        per_photo = log_loss(targets, probs)
        fused = probs.reshape(-1, self.photos_per_plant, probs.shape[1]).mean(1)  # plant-major samples
        labels = targets.reshape(-1, self.photos_per_plant)[:, 0]
        fused_loss = log_loss(labels, fused)
        accuracy = float((fused.argmax(1) == labels).mean())
        step, epoch = self.global_step, self.global_epoch
        for kind, value in (("valid", per_photo), ("valid-fused-log-loss", fused_loss),
                            ("valid-fused-accuracy", accuracy)):
            self.log_file.log(step, epoch, kind, value, None)
        if fused_loss < self.state.get("log_loss", float("inf")):
            self.state.update(log_loss=fused_loss, accuracy=accuracy, epoch=epoch + 1)
            atomic_save({"model": self.learn.model.state_dict(), **self.state}, self.run_dir / "best.pt")
        atomic_save({"model": self.learn.model.state_dict(), "opt": self.learn.opt.state_dict(),
                     "epochs_done": epoch + 1, "best": dict(self.state), "rng": rng_state()},
                    self.run_dir / "last.pt")

    def after_fit(self) -> None:
        self.log_file.close()


# ---------------------------------------------------------------------------------------------
# finetune()
# ---------------------------------------------------------------------------------------------

def classifier_plants(config: FinetuneConfig) -> pd.DataFrame:
    """The data's plants with their ``role`` for this config (train / valid / test / unlabelled / excluded)."""
    return assign_roles(read_zindi(config.data), config.valid_pct, config.split_seed,
                        config.labels_fraction, config.seed)


def finetune(config: FinetuneConfig, resume: bool = False, callbacks: list | None = None) -> Path:
    """Fine-tune a classifier; returns the run directory (``classifier.pt`` is the result).

    ``callbacks``: extra fastai callbacks added to every phase (to watch or interrupt training).
    """
    config = config.validate().resolved()
    if config.data is None or config.out is None:
        raise ConfigError("config.data (a Zindi folder) and config.out (a run directory) are required")
    threads = torch.get_num_threads()  # the caller's, given back: a notebook goes on after the run
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _finetune(config, resume, callbacks)
    finally:
        torch.set_num_threads(threads)


def _finetune(config: FinetuneConfig, resume: bool, callbacks: list | None) -> Path:
    run_dir = Path(config.out).expanduser().resolve()
    plants = classifier_plants(config)
    fingerprint = data_fingerprint(plants)
    encoder, stats, start = load_start(config, plants)
    height = config.photo_height or start.get("photo_height") or 128
    cameras = camera_list(config.cameras)
    stats = check_stats(stats, cameras)

    # Data: every photo of a plant is a sample, normalised by its own camera's statistics; a student
    # (self-distillation) learns its teacher's probabilities for more photos instead of the labels.
    extra: dict = {}  # what the manifest adds about the training targets
    if config.teacher:
        taught, soft, teacher = teacher_targets(config.teacher, plants, cameras, fingerprint)
        train = PhotoSamples(taught, cameras, height, soft=soft)
    else:
        labelled, teacher = plants[plants["role"] == "train"], None
        if config.shuffled_labels:  # the data-randomisation check: the same photos, permuted labels
            shuffled = shuffle_training_labels(labelled, config.seed)
            extra["shuffled_labels"] = {"plants": len(labelled),
                                        "relabelled": int((shuffled["label"] != labelled["label"]).sum())}
            labelled = shuffled
        train = PhotoSamples(labelled, cameras, height)
    valid_plants = plants[plants["role"] == "valid"]
    valid = PhotoSamples(valid_plants, cameras, height)
    photos_per_valid_plant = len(cameras)
    if config.photo_split:  # the leakage lesson: a validation plant's other photo trains
        train, epoch_valid = photo_level_split(train, valid_plants, cameras, height, config.seed)
        photos_per_valid_plant = 1
    else:
        epoch_valid = valid
    # Small label sets: each epoch shows every photo `repeats` times, so that the run makes at least
    # min_steps optimiser steps while validating (and choosing its epoch) once per epoch as usual.
    repeats = epoch_repeats(len(train), config.batch_size, config.total_epochs, config.min_steps)
    if repeats > 1:
        train = ConcatDataset([train] * repeats)
    resume_state = _open_run_dir(run_dir, config, fingerprint, resume, plants, start, cameras, height,
                                 {"teacher": teacher, "training_photos": len(train) // repeats,
                                  "epoch_repeats": repeats, **extra})
    device = torch.device("cuda") if torch.cuda.is_available() else None
    dls = DataLoaders(photo_loader(train, config.batch_size, config.seed, True, config.workers),
                      photo_loader(epoch_valid, 128, config.seed, False, config.workers), device=device)
    dls.n_inp = 2
    steps_per_epoch = len(dls.train)
    epochs = config.epochs

    model = build_model(encoder, config)
    # Probability targets need torch's own cross-entropy (fastai's flattens them); MixUp then mixes them.
    loss = (nn.CrossEntropyLoss(label_smoothing=config.label_smoothing) if config.teacher
            else CrossEntropyLossFlat(label_smoothing=config.label_smoothing))
    learn = Learner(dls, model, loss_func=loss,
                    opt_func=Adam, splitter=body_and_head, lr=config.lr, wd=config.wd, moms=config.moms,
                    train_bn=False)  # a frozen body keeps its batch norms frozen too (probe, head phase)
    if not config.progress:
        learn.remove_cb(ProgressCallback)
        learn.logger = lambda *_: None
    mixup = [MixUp(config.mixup)] if config.mixup > 0 else []
    best: dict = {}
    done = 0 if resume_state is None else int(resume_state["epochs_done"])

    def phase(n_epochs: int, lr, offset: int, frozen: bool) -> None:
        """One fit_one_cycle over epochs [offset, offset + n_epochs) of the run."""
        if done >= offset + n_epochs:
            return  # finished before the interruption
        here = resume_state if resume_state is not None and done >= offset else None
        cbs = [PhotoInput(config, stats, offset * steps_per_epoch),
               ClassifierRun(run_dir, photos_per_valid_plant, offset, steps_per_epoch, best, here)] + mixup
        cbs += list(callbacks or [])
        if frozen:
            cbs.append(BnFreeze())
        learn.fit_one_cycle(n_epochs, lr, wd=config.wd, moms=config.moms, pct_start=config.pct_start, cbs=cbs,
                            start_epoch=max(0, done - offset))

    learn.create_opt()
    if config.mode == "full":
        learn.unfreeze()
        phase(epochs, config.lr, 0, frozen=False)
    elif config.mode == "probe":
        learn.freeze()  # body weights and its batch norms (train_bn=False) stay as loaded
        phase(epochs, config.lr, 0, frozen=True)
    else:  # discriminative: the head alone first, then everything with lower rates for the body
        learn.freeze()
        if config.head_epochs:
            phase(config.head_epochs, config.lr, 0, frozen=True)
        learn.unfreeze()
        phase(epochs, slice(config.lr * config.body_lr_mult, config.lr), config.head_epochs, frozen=False)

    # The kept model: the epoch with the best validation fused log loss (never the training loss).
    kept = load_checkpoint(run_dir / "best.pt")
    model.load_state_dict(kept["model"])
    meta = {"arch": start["arch"], "head": config.head, "pool": config.pool, "classes": list(CLASSES),
            "cameras": list(cameras), "normalization": stats, "photo_height": height,
            "channels_last": config.channels_last, "kept_epoch": kept["epoch"],
            "valid_fused_log_loss": kept["log_loss"], "valid_fused_accuracy": kept["accuracy"],
            "epsilon": EPSILON}
    decisions = calibrate(model, meta, valid_plants, valid)
    summary = {k: meta[k] for k in ("kept_epoch", "valid_fused_log_loss", "valid_fused_accuracy", "epsilon")}
    atomic_write_text(json.dumps({**summary, **decisions}, indent=2) + "\n", run_dir / "calibration.json")
    atomic_save({"model": model.state_dict(), **meta, **decisions}, run_dir / RESULT)
    return run_dir


def epoch_repeats(photos: int, batch_size: int, epochs: int, min_steps: int = 0) -> int:
    """How many times an epoch shows each training photo: enough for one full batch, and for
    ``min_steps`` steps over ``epochs`` epochs (the last short batch of an epoch is dropped)."""
    if photos == 0:
        raise DataError("no training photos: the label fraction or the split left none")
    per_epoch = math.ceil(min_steps / epochs) if min_steps else 1
    return max(1, math.ceil(per_epoch * batch_size / photos))


def _open_run_dir(run_dir: Path, config: FinetuneConfig, fingerprint: str, resume: bool, plants: pd.DataFrame,
                  start: dict, cameras: tuple[str, ...], height: int, training: dict) -> dict | None:
    """Create ``run_dir`` (or check it matches ``config`` when resuming); return the resume state."""
    by_role = {role: sorted(plants.loc[plants["role"] == role, "plant_id"]) for role in
               ("train", "valid", "test", "unlabelled", "excluded")}
    return open_run_dir(run_dir, KIND, config.to_dict(), fingerprint, config.result_free(), resume,
                        {"encoder_start": start, **training, "plants": by_role, "classes": list(CLASSES),
                         "cameras": list(cameras), "photo_height": height, "epsilon": EPSILON})


def cached_finetune(config: FinetuneConfig) -> Path:
    """``finetune`` unless ``config.out`` already holds this run: reuse it if finished, resume it if not.

    A run made with another config (``config.result_free()`` settings aside), other data or an older rice-lab
    is moved to ``<out>.stale-<UTC time>`` beside it (reported on stderr), never deleted.
    """
    config = config.validate().resolved()
    if config.data is None or config.out is None:
        raise ConfigError("config.data (a Zindi folder) and config.out (a run directory) are required")
    run_dir = Path(config.out).expanduser().resolve()
    fingerprint = data_fingerprint(classifier_plants(config))
    decision, note = cache_decision(run_dir, KIND, config.to_dict(), fingerprint, config.result_free(),
                                    result=RESULT)
    if note:
        print(f"rice-lab: {note}", file=sys.stderr)
    return run_dir if decision == "reuse" else finetune(config, resume=decision == "resume")


__all__ = ["KIND", "RESULT", "build_model", "cached_finetune", "classifier_plants", "finetune", "load_start"]
