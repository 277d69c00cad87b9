"""``pretrain(config)``: SwAV pre-training with a fastai Learner, from a 2-core CPU to several GPUs.

Read it top to bottom: data -> run directory -> model -> Learner + callbacks -> fit_one_cycle.
``cached_pretrain(config)`` (the CLI's ``--if-needed``) reuses, resumes or sets aside what is
already in the run directory; no run is ever deleted.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import fastai.callback.fp16  # noqa: F401 - adds Learner.to_fp16 / to_bf16
import fastai.callback.schedule  # noqa: F401 - adds Learner.fit_one_cycle and lr_find
from fastai.callback.progress import ProgressCallback
from fastai.learner import Learner
from fastai.optimizer import Adam, Lamb

from rice_lab.data.views import IMAGENET_STATS, PlantImages, ssl_dataloaders
from rice_lab.data.zindi import CAMERAS, data_fingerprint, read_zindi, split_plants
from rice_lab.errors import CheckpointError, ConfigError, RiceLabError
from rice_lab.models.encoders import create_encoder
from rice_lab.presets import RESULT_FREE, PretrainConfig
from rice_lab.runs import atomic_save, cache_decision, load_resume_state, open_run_dir
from rice_lab.seeding import seed_everything
from rice_lab.ssl.callback import SwAVCallback
from rice_lab.ssl.distributed import Dist, barrier, broadcast_object, init_distributed, shutdown
from rice_lab.ssl.model import SwAVModel
from rice_lab.ssl.rundir import RunDirCallback

KIND = "pretrain"  # the manifest's kind of run


def pretraining_plants(config: PretrainConfig) -> "pd.DataFrame":  # noqa: F821
    """The plants a run trains and validates on: train split (+ test photos), with ``is_valid``."""
    plants = split_plants(read_zindi(config.data), config.valid_pct, config.seed)
    if not config.use_test:
        plants = plants[plants["split"] == "train"]
    return plants.reset_index(drop=True)


def input_stats(config: PretrainConfig, images: PlantImages) -> dict:
    """Per-camera (mean, std) the crops are normalised with: ImageNet's, or the training photos' own."""
    if config.normalization == "imagenet" or (config.normalization == "auto" and config.pretrained):
        return {camera: IMAGENET_STATS for camera in CAMERAS}
    return images.stats()


def build_learner(config: PretrainConfig, plants, dist_info: Dist = Dist(),
                  extra_cbs: list | None = None) -> tuple[Learner, SwAVCallback, dict]:
    """A fastai Learner for SwAV on ``plants``: (learner, SwAV callback, snapshot metadata)."""
    seed_everything(config.seed)
    dls = ssl_dataloaders(plants, config.decoded_height, config.batch_size, config.seed, dist_info.rank,
                          dist_info.world_size, config.workers, leaves=config.crops.needs_leaves)
    stats = input_stats(config, dls.train.dataset)

    seed_everything(config.seed)  # the weights' initialisation comes from the run seed
    encoder = create_encoder(config.encoder, pretrained=config.pretrained, init=config.init)
    model = SwAVModel(encoder, config.swav.hidden, config.swav.dim, config.swav.n_prototypes)
    swav = SwAVCallback(config.crops, config.swav, config.queue_length, config.views, stats, config.seed,
                        dist_info.rank)
    if dist_info.world_size > 1:
        device = torch.device("cuda", dist_info.local_rank) if torch.cuda.is_available() else None
        model = model.to(device) if device else model
        if device is not None:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist_info.local_rank] if device else None)
    learn = Learner(dls, model, loss_func=swav.loss, opt_func=Lamb if config.optimizer == "lamb" else Adam,
                    lr=config.lr, wd=config.wd, moms=config.moms, cbs=[swav] + list(extra_cbs or []))
    if not config.progress or not dist_info.is_main:
        learn.remove_cb(ProgressCallback)
    if not dist_info.is_main:
        learn.logger = lambda *_: None
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"
    if torch.cuda.is_available() and precision == "fp16":
        learn = learn.to_fp16()
    elif torch.cuda.is_available() and precision == "bf16":
        learn = learn.to_bf16()
    meta = {"encoder_name": config.encoder, "n_in": 3, "normalization": stats, "crop_size": config.crops.size,
            "photo_height": config.decoded_height, "views": config.views}
    return learn, swav, meta


def find_lr(config: PretrainConfig) -> float:
    """fastai's learning-rate finder on this config's data and model; returns the suggested lr.

    The sweep uses the loss of training's first step throughout (no queue, prototypes free).
    """
    config.validate()
    learn, _, _ = build_learner(config, pretraining_plants(config))
    with tempfile.TemporaryDirectory() as tmp:
        learn.path = Path(tmp)
        suggestion = learn.lr_find(show_plot=False)
    return float(suggestion.valley)


def pretrain(config: PretrainConfig, resume: bool = False) -> Path:
    """Pre-train an encoder with SwAV; returns the run directory (``encoder.pt`` is the result)."""
    config.validate()
    if config.data is None or config.out is None:
        raise ConfigError("config.data (a Zindi folder) and config.out (a run directory) are required")
    threads = torch.get_num_threads()  # the caller's, given back: a notebook goes on after the run
    if config.threads:
        torch.set_num_threads(config.threads)
    dist_info = init_distributed()
    try:
        return _pretrain(config, resume, dist_info)
    finally:
        shutdown(dist_info)
        torch.set_num_threads(threads)


def _pretrain(config: PretrainConfig, resume: bool, dist_info: Dist) -> Path:
    run_dir = Path(config.out).expanduser().resolve()
    plants = pretraining_plants(config)  # a data problem stops here with the validator's message

    # 1. The run directory: a new one, or the one being resumed (its config must match).
    resume_state, problem = None, None
    if dist_info.is_main:
        try:
            resume_state = _open_run_dir(run_dir, config, plants, resume)
        except CheckpointError as err:
            problem = err
    # Every process must learn about rank 0's problem, or the others would wait for it forever.
    message = broadcast_object(None if problem is None else str(problem), dist_info)
    if message is not None:
        raise problem if problem is not None else CheckpointError(message)
    if not dist_info.is_main and resume:
        resume_state = load_resume_state(run_dir)

    # 2. Model, data and callbacks in one fastai Learner.
    learn, swav, meta = build_learner(config, plants, dist_info)
    run_cb = RunDirCallback(run_dir, config.checkpoint_every, config.resume_every, resume_state,
                            stateful={"swav": swav}, meta=meta, is_main=dist_info.is_main)
    learn.add_cb(run_cb)
    start_epoch = 0 if resume_state is None else int(resume_state["step"]) // len(learn.dls.train)

    # 3. The original recipe: one-cycle (warm-up then cosine) with Lamb.
    learn.fit_one_cycle(config.epochs, config.lr, wd=config.wd, moms=config.moms,
                        pct_start=config.pct_start, start_epoch=start_epoch)

    # 4. The result fine-tuning reads.
    if dist_info.is_main:
        atomic_save(run_cb.result(), run_dir / "encoder.pt")
    barrier(dist_info)
    return run_dir


def _open_run_dir(run_dir: Path, config: PretrainConfig, plants, resume: bool) -> dict | None:
    """Create ``run_dir`` (or check it matches ``config`` when resuming); return the resume state."""
    return open_run_dir(run_dir, KIND, config.to_dict(), data_fingerprint(plants), RESULT_FREE, resume,
                        {"plants": len(plants)}, defaults=PretrainConfig().to_dict())


def cached_pretrain(config: PretrainConfig) -> Path:
    """``pretrain`` unless ``config.out`` already holds this run: reuse it if finished, resume it if not.

    A run made with another config (settings in ``RESULT_FREE`` aside), other data or an older
    rice-lab is never deleted: it is moved to ``<out>.stale-<UTC time>`` beside it, the move is
    reported on stderr, and a new run starts. Under torchrun only rank 0 looks at the folder;
    every process then follows its decision.
    """
    config.validate()
    if config.data is None or config.out is None:
        raise ConfigError("config.data (a Zindi folder) and config.out (a run directory) are required")
    run_dir = Path(config.out).expanduser().resolve()
    dist_info = init_distributed()
    try:
        decision = None
        if dist_info.is_main:
            try:
                fingerprint = data_fingerprint(pretraining_plants(config))
                # A setting added since a run was made takes its default: what runs did before it existed.
                decision, note = cache_decision(run_dir, KIND, config.to_dict(), fingerprint, RESULT_FREE,
                                                defaults=PretrainConfig().to_dict())
                if note:
                    print(f"rice-lab: {note}", file=sys.stderr)
            except RiceLabError as err:  # the others must hear of it, or they would wait forever
                decision = err
        decision = broadcast_object(decision, dist_info)
        if isinstance(decision, RiceLabError):
            raise decision
        return run_dir if decision == "reuse" else pretrain(config, resume=decision == "resume")
    finally:
        shutdown(dist_info)


__all__ = ["build_learner", "cached_pretrain", "find_lr", "input_stats", "pretrain", "pretraining_plants"]
