"""A fastai callback that wires SwAV's pieces (crops, sinkhorn, loss, queue, prototypes) into a Learner."""

from __future__ import annotations

import math

import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.schedule import LRFinder

from rice_lab.data.views import CropSpec, multi_crop
from rice_lab.errors import TrainingError
from rice_lab.presets import SwAVSettings
from rice_lab.seeding import stream_generator
from rice_lab.ssl.distributed import gather_floats
from rice_lab.ssl.loss import swav_loss
from rice_lab.ssl.prototypes import freeze_prototypes_grad_, normalize_prototypes_
from rice_lab.ssl.queue import EmbeddingQueue, queue_active


class SwAVCallback(Callback):
    """Turns each batch of plants into crops and computes the SwAV loss; the loop stays fastai's.

    The learner's step counter (``train_iter``) drives everything random or scheduled here, so a
    run resumed at step s continues exactly as if it had never stopped. Under ``lr_find`` the
    sweep sees the objective of training's first step throughout: no queue, and the prototypes
    free to move (their freezing is a start-up measure, not part of the objective).
    """

    order = 0  # before ParamScheduler (60), so the schedule sees the corrected pct_train

    def __init__(self, crops: CropSpec, swav: SwAVSettings, queue_length: int, views: str = "paired",
                 stats: dict | None = None, seed: int = 0, rank: int = 0) -> None:
        self.crops, self.swav, self.queue_length = crops, swav, queue_length
        self.views, self.stats, self.seed, self.rank = views, stats, seed, rank
        self.queue: EmbeddingQueue | None = None
        self.restored = False  # set when a resume state gave the queue back

    @property
    def net(self) -> torch.nn.Module:
        """The SwAV model, unwrapped from DistributedDataParallel when running on several processes."""
        return getattr(self.learn.model, "module", self.learn.model)

    def before_fit(self) -> None:
        self.total_steps = self.n_epoch * len(self.dls.train)
        self.sweeping = any(isinstance(cb, LRFinder) for cb in self.learn.cbs)
        if not self.restored:  # a new fit starts with a new queue; a resumed one keeps its own
            self.queue = self.new_queue()
        self.restored = False
        self.learn.loss_func = self.loss

    def new_queue(self) -> EmbeddingQueue:
        """An empty queue per large crop, or (``queue_fill="crop-0"``) one of random unit vectors."""
        dim = self.net.prototypes.weight.shape[1]
        if self.swav.queue_fill == "crop-0":
            return EmbeddingQueue.random_start(self.queue_length, dim,
                                               stream_generator(self.seed, "queue-init", self.rank))
        return EmbeddingQueue(self.crops.n_large, self.queue_length, dim)

    def before_epoch(self) -> None:
        # Order fixed by (seed, epoch); a resumed run re-enters mid-epoch at the right batch.
        start = self.learn.train_iter - self.epoch * len(self.dls.train)
        self.dls.train.batch_sampler.set_epoch(self.epoch, start=max(0, start))

    def before_batch(self) -> None:
        rgb, rgnir, *leaves = self.xb  # the photos' own leaf masks, when the recipe reads them
        if self.training:
            if not self.sweeping:
                self.learn.pct_train = self.learn.train_iter / self.total_steps
            generator = stream_generator(self.seed, "augment", self.learn.train_iter, self.rank)
        else:  # the same validation crops every epoch, so validation losses are comparable
            generator = stream_generator(self.seed, "valid-augment", self.iter, self.rank)
        crops = multi_crop(rgb, rgnir, self.crops, self.views, generator, self.stats, tuple(leaves) or None)
        self.learn.xb = (crops,)
        # Self-supervision has no target; fastai computes a loss only when yb is non-empty.
        self.learn.yb = (torch.zeros(len(rgb), device=rgb.device),)

    def loss(self, pred: tuple[torch.Tensor, torch.Tensor], *_) -> torch.Tensor:
        """SwAV loss of one batch, its codes balanced over the queue too once the queue is in use."""
        embeddings, scores = pred
        n_crops, n_large = self.crops.n_crops, self.crops.n_large
        queue_scores, push_after = None, None
        if self.queue.size > 0 and not self.sweeping:
            step, prototypes = self.learn.train_iter, self.net.prototypes.weight.detach()
            large = list(embeddings.detach().chunk(n_crops)[:n_large])
            if self.swav.queue_fill == "crop-0":
                # As the library did: crop 0 enters the queue before the codes are computed, and
                # the queue counts from the first step (validation uses it too, never fills it).
                if self.training:
                    self.queue.push(large[:1])
                if step / self.total_steps > self.swav.queue_start:
                    queue_scores = self.queue.scores(prototypes) * n_large
            elif self.training and queue_active(step, self.total_steps, self.swav.queue_start):
                queue_scores, push_after = self.queue.scores(prototypes), large  # None until full
        loss = swav_loss(list(scores.chunk(n_crops)), n_large, self.swav.temperature, queue_scores,
                         self.swav.sinkhorn_iters, self.swav.epsilon)
        if push_after is not None:
            self.queue.push(push_after)
        return loss

    def before_backward(self) -> None:
        # Every process checks every process's loss, so all of them stop together, with one message.
        losses = gather_floats(float(self.learn.loss.detach()), self.learn.loss.device)
        bad = [(r, value) for r, value in enumerate(losses) if not math.isfinite(value)]
        if not bad:
            return
        if self.sweeping:
            raise CancelFitException()  # the sweep has gone past any usable learning rate
        where = f" on process {bad[0][0]} of {len(losses)}" if len(losses) > 1 else ""
        raise TrainingError(f"loss became {bad[0][1]} at step {self.learn.train_iter} (epoch {self.epoch})"
                            f"{where}; stopped. The last good checkpoint is kept: lower the learning "
                            "rate or use --precision fp32, then --resume")

    def after_backward(self) -> None:
        if not self.sweeping:
            freeze_prototypes_grad_(self.net.prototypes, self.learn.train_iter, self.swav.freeze_prototypes_steps)

    def after_step(self) -> None:
        # Back on the unit sphere after every update, so snapshots and validation read unit prototypes.
        normalize_prototypes_(self.net.prototypes.weight)

    def state_dict(self) -> dict:
        return {"queue": None if self.queue is None else self.queue.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("queue") is not None:
            self.queue = EmbeddingQueue(1, 0, 1)
            self.queue.load_state_dict(state["queue"])
            self.restored = True
