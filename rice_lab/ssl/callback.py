"""A fastai callback that wires SwAV's pieces (crops, sinkhorn, loss, queue, prototypes) into a Learner."""

from __future__ import annotations

import math

import torch
from fastai.callback.core import Callback

from rice_lab.data.views import CropSpec, generator_for, multi_crop
from rice_lab.errors import TrainingError
from rice_lab.ssl.loss import swav_loss
from rice_lab.ssl.prototypes import freeze_prototypes_grad_, normalize_prototypes_
from rice_lab.ssl.queue import EmbeddingQueue, queue_active

AUGMENT, VALID_AUGMENT = 2, 3  # keys that separate the random streams derived from the seed


class SwAVCallback(Callback):
    """Turns each batch of plants into crops and computes the SwAV loss; the loop stays fastai's.

    The learner's step counter (``train_iter``) drives everything random or scheduled here, so a
    run resumed at step s continues exactly as if it had never stopped.
    """

    order = 0  # before ParamScheduler (60), so the schedule sees the corrected pct_train

    def __init__(self, crops: CropSpec, views: str = "paired", stats: dict | None = None,
                 n_prototypes_frozen_steps: int = 0, queue_size: int = 0, queue_start: float = 0.5,
                 temperature: float = 0.1, epsilon: float = 0.05, sinkhorn_iters: int = 3,
                 seed: int = 0, rank: int = 0) -> None:
        self.crops, self.views, self.stats = crops, views, stats
        self.frozen_steps, self.queue_start = n_prototypes_frozen_steps, queue_start
        self.temperature, self.epsilon, self.sinkhorn_iters = temperature, epsilon, sinkhorn_iters
        self.seed, self.rank = seed, rank
        self.queue: EmbeddingQueue | None = None
        self.queue_size = queue_size

    @property
    def net(self) -> torch.nn.Module:
        """The SwAV model, unwrapped from DistributedDataParallel when running on several processes."""
        return getattr(self.learn.model, "module", self.learn.model)

    def before_fit(self) -> None:
        self.total_steps = self.n_epoch * len(self.dls.train)
        if self.queue is None:
            self.queue = EmbeddingQueue(self.crops.n_large, self.queue_size, self.net.prototypes.weight.shape[1])
        self.learn.loss_func = self.loss

    def before_epoch(self) -> None:
        # Order fixed by (seed, epoch); a resumed run re-enters mid-epoch at the right batch.
        start = self.learn.train_iter - self.epoch * len(self.dls.train)
        self.dls.train.batch_sampler.set_epoch(self.epoch, start=max(0, start))

    def before_batch(self) -> None:
        rgb, rgnir = self.xb
        if self.training:
            self.learn.pct_train = self.learn.train_iter / self.total_steps
            normalize_prototypes_(self.net.prototypes.weight)
            generator = generator_for(self.seed, AUGMENT, self.learn.train_iter, self.rank)
        else:  # the same validation crops every epoch, so validation losses are comparable
            generator = generator_for(self.seed, VALID_AUGMENT, self.iter, self.rank)
        crops = multi_crop(rgb, rgnir, self.crops, self.views, generator, self.stats)
        self.learn.xb = (crops,)
        # Self-supervision has no target; fastai computes a loss only when yb is non-empty.
        self.learn.yb = (torch.zeros(len(rgb), device=rgb.device),)

    def loss(self, pred: tuple[torch.Tensor, torch.Tensor], *_) -> torch.Tensor:
        """SwAV loss of one batch; in training, also feeds the queue once it is active."""
        embeddings, scores = pred
        n_crops = self.crops.n_crops
        per_crop = list(scores.chunk(n_crops))
        use_queue = self.training and self.queue.size > 0 and \
            queue_active(self.learn.train_iter, self.total_steps, self.queue_start)
        queue_scores = self.queue.scores(self.net.prototypes.weight.detach()) if use_queue else None
        loss = swav_loss(per_crop, self.crops.n_large, self.temperature, queue_scores,
                         self.sinkhorn_iters, self.epsilon)
        if use_queue:
            self.queue.push(list(embeddings.detach().chunk(n_crops)[: self.crops.n_large]))
        return loss

    def after_loss(self) -> None:
        if not math.isfinite(float(self.learn.loss.detach())):
            raise TrainingError(f"loss became {float(self.learn.loss.detach())} at step {self.learn.train_iter} "
                                f"(epoch {self.epoch}); stopped. The last good checkpoint is kept: "
                                "lower the learning rate or use --precision fp32, then --resume")

    def after_backward(self) -> None:
        freeze_prototypes_grad_(self.net.prototypes, self.learn.train_iter, self.frozen_steps)

    def state_dict(self) -> dict:
        return {"queue": None if self.queue is None else self.queue.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("queue") is not None:
            self.queue = EmbeddingQueue(self.crops.n_large, 0, 1)
            self.queue.load_state_dict(state["queue"])
