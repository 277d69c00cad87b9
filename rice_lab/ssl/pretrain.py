"""``pretrain(config)``: SwAV pre-training with a fastai Learner, from a 2-core CPU to several GPUs.

Read it top to bottom: data -> run directory -> model -> Learner + callbacks -> fit_one_cycle.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch
import fastai.callback.fp16  # noqa: F401 - adds Learner.to_fp16 / to_bf16
import fastai.callback.schedule  # noqa: F401 - adds Learner.fit_one_cycle and lr_find
from fastai.callback.progress import ProgressCallback
from fastai.learner import Learner
from fastai.optimizer import Adam, Lamb

from rice_lab.data.views import IMAGENET_STATS, CropSpec, PlantImages, ssl_dataloaders
from rice_lab.data.zindi import data_fingerprint, read_zindi, split_plants
from rice_lab.errors import CheckpointError, ConfigError, RiceLabError
from rice_lab.models.encoders import create_encoder
from rice_lab.presets import PretrainConfig
from rice_lab.runs import RunDirCallback, atomic_save, load_resume_state, read_manifest, write_manifest
from rice_lab.ssl.callback import SwAVCallback
from rice_lab.ssl.distributed import Dist, barrier, broadcast_object, init_distributed, shutdown
from rice_lab.ssl.model import SwAVModel

# Config fields that may differ between a run and its resumption without changing the result.
RESUME_FREE = {"out", "data", "progress", "workers", "threads"}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: the one seed every component draws from."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def crop_spec(config: PretrainConfig) -> CropSpec:
    """The multi-crop recipe of a config."""
    return CropSpec(size=config.size, n_large=config.n_large, n_small=config.n_small,
                    small_ratio=config.small_ratio, large_scale=config.large_scale,
                    small_scale=config.small_scale, max_rotation=config.max_rotation, jitter=config.jitter)


def pretraining_plants(config: PretrainConfig) -> "pd.DataFrame":  # noqa: F821
    """The plants a run trains and validates on: train split (+ test photos), with ``is_valid``."""
    plants = split_plants(read_zindi(config.data), config.valid_pct, config.seed)
    if not config.use_test:
        plants = plants[plants["split"] == "train"]
    return plants.reset_index(drop=True)


def build_learner(config: PretrainConfig, plants, dist_info: Dist = Dist(),
                  extra_cbs: list | None = None) -> tuple[Learner, SwAVCallback, dict]:
    """A fastai Learner for SwAV on ``plants``: (learner, SwAV callback, encoder metadata)."""
    seed_everything(config.seed)
    dls = ssl_dataloaders(plants, config.photo_size or config.size, config.batch_size, config.seed, dist_info.rank,
                          dist_info.world_size, config.workers)
    train_images: PlantImages = dls.train.dataset
    stats = {c: IMAGENET_STATS for c in ("rgb", "rgnir")} if config.pretrained else train_images.stats()

    seed_everything(config.seed)  # the weights' initialisation comes from the run seed
    encoder = create_encoder(config.encoder, pretrained=config.pretrained, init=config.init)
    model = SwAVModel(encoder, config.hidden, config.dim, config.n_prototypes)
    swav = SwAVCallback(crop_spec(config), config.views, stats, config.freeze_prototypes_steps,
                        config.queue_size, config.queue_start, config.temperature, config.epsilon,
                        config.sinkhorn_iters, config.seed, dist_info.rank)
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
    meta = {"encoder_name": config.encoder, "n_in": 3, "normalization": stats, "size": config.size,
            "photo_size": config.photo_size or config.size, "views": config.views}
    return learn, swav, meta


def find_lr(config: PretrainConfig) -> float:
    """fastai's learning-rate finder on this config's data and model; returns the suggested lr."""
    import tempfile

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
    if config.threads:
        torch.set_num_threads(config.threads)
    dist_info = init_distributed()
    try:
        return _pretrain(config, resume, dist_info)
    finally:
        shutdown(dist_info)


def _pretrain(config: PretrainConfig, resume: bool, dist_info: Dist) -> Path:
    run_dir = Path(config.out).expanduser().resolve()
    plants = pretraining_plants(config)  # a data problem stops here with the validator's message

    # 1. The run directory: a new one, or the one being resumed (its config must match).
    resume_state, problem = None, None
    if dist_info.is_main:
        try:
            resume_state = _prepare_run_dir(run_dir, config, plants, resume)
        except CheckpointError as err:
            problem = err
    # Every process must learn about rank 0's problem, or the others would wait for it forever.
    message = broadcast_object(None if problem is None else str(problem), dist_info)
    if message is not None:
        raise problem if problem is not None else CheckpointError(message)
    if not dist_info.is_main and (run_dir / "last.pt").exists() and resume:
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
        atomic_save(run_cb.encoder_state(), run_dir / "encoder.pt")
    barrier(dist_info)
    return run_dir


def cached_pretrain(config: PretrainConfig) -> Path:
    """``pretrain`` unless ``config.out`` already holds this run: reuse it if finished, resume it if not.

    Under torchrun only rank 0 looks at the folder (and deletes a stale run); every process then
    follows its decision, so several processes never remove the same folder at once.
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
                decision = _cache_decision(run_dir, config)
            except RiceLabError as err:  # the others must hear of it, or they would wait forever
                decision = err
        decision = broadcast_object(decision, dist_info)
        if isinstance(decision, RiceLabError):
            raise decision
        return run_dir if decision == "reuse" else pretrain(config, resume=decision == "resume")
    finally:
        shutdown(dist_info)


def _cache_decision(run_dir: Path, config: PretrainConfig) -> str:
    """"reuse", "resume" or "new" for the run in ``run_dir``; a stale run is deleted first."""
    if not (run_dir / "manifest.json").is_file():
        return "new"  # no run there yet; a folder without a manifest is never deleted
    try:
        problem = run_mismatch(run_dir, config, data_fingerprint(pretraining_plants(config)))
    except (CheckpointError, ValueError) as err:  # an unreadable manifest is no cache worth keeping
        problem = str(err)
    if problem is None:
        return "reuse" if (run_dir / "encoder.pt").is_file() else "resume"
    # A run of another config or dataset: a stale cache, so start again rather than mix the two.
    shutil.rmtree(run_dir)
    return "new"


def run_mismatch(run_dir: Path, config: PretrainConfig, fingerprint: str) -> str | None:
    """Why the run in ``run_dir`` is not ``config`` on data ``fingerprint`` (None when it is)."""
    manifest = read_manifest(run_dir)
    old = {k: v for k, v in manifest["config"].items() if k not in RESUME_FREE}
    new = {k: v for k, v in config.to_dict().items() if k not in RESUME_FREE}
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        return (f"{run_dir}: cannot resume with a different config "
                f"({', '.join(f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in changed)})")
    if manifest.get("data_fingerprint") != fingerprint:
        return (f"{run_dir}: the data changed since this run started "
                f"(fingerprint {manifest.get('data_fingerprint')} -> {fingerprint})")
    return None


def _prepare_run_dir(run_dir: Path, config: PretrainConfig, plants, resume: bool) -> dict | None:
    """Create ``run_dir`` (or check it matches ``config`` when resuming); return the resume state."""
    fingerprint = data_fingerprint(plants)
    if (run_dir / "manifest.json").exists():
        if not resume:
            raise CheckpointError(f"{run_dir}: a run already exists here; pass --resume to continue it "
                                  "or choose another --out")
        problem = run_mismatch(run_dir, config, fingerprint)
        if problem is not None:
            raise CheckpointError(problem)
        return load_resume_state(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(run_dir, config.to_dict(), fingerprint, {"plants": len(plants)})
    return None
