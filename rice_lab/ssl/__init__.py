"""SwAV self-supervised pre-training: pure functions on tensors, fastai callbacks, ``pretrain()``.

The pieces, each usable and tested alone::

    sinkhorn(scores, n_iters=3, epsilon=0.05)        -> balanced codes (batch, prototypes)
    swav_loss(scores_per_crop, n_large=2, temperature=0.1, queue_scores=None)
    Prototypes, normalize_prototypes_, freeze_prototypes_grad_
    EmbeddingQueue (per large crop, or .random_start for one crop-0 queue), queue_active
    SwAVModel(encoder, hidden, dim, n_prototypes)     -> (embeddings, scores) for a list of crops
    load_swav_model(run_dir or snapshot)              -> the whole SwAVModel a run saved, eval mode
    SwAVCallback(crops, swav, queue_length, views, stats, seed, rank)
                                                      (rice_lab.ssl.callback; wires them into a Learner)
    RunDirCallback                                    (rice_lab.ssl.rundir; metrics, snapshots, resume)
    pretrain(config, resume=False) -> run_dir         (rice_lab.ssl.pretrain; imports fastai)
    cached_pretrain(config) -> run_dir                (reuse / resume / set a stale run aside; CLI --if-needed)
    build_learner(config, plants) / find_lr(config)   (the same Learner, for notebooks and lr_find)

The configuration (``rice_lab.presets``): ``PretrainConfig(crops=CropSpec(...), swav=SwAVSettings(...))``.
Probes of an encoder (``knn_accuracy``, ``linear_probe_accuracy``, ``compare_encoders``) live in ``rice_lab.evaluate``.
"""

from rice_lab.ssl.loss import swav_codes, swav_loss
from rice_lab.ssl.model import SwAVModel, load_swav_model
from rice_lab.ssl.prototypes import Prototypes, freeze_prototypes_grad_, normalize_prototypes_
from rice_lab.ssl.queue import EmbeddingQueue, queue_active
from rice_lab.ssl.sinkhorn import sinkhorn

__all__ = [
    "EmbeddingQueue", "Prototypes", "SwAVModel", "freeze_prototypes_grad_", "load_swav_model",
    "normalize_prototypes_", "queue_active", "sinkhorn", "swav_codes", "swav_loss",
]
