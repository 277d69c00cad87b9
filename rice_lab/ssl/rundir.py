"""The fastai callback that keeps a SwAV run directory up to date and restores a resumed run.

The files themselves are written by :mod:`rice_lab.runs` (plain I/O); this callback decides what
goes into them and when: the metrics of every step, snapshots of the encoder, head and prototypes,
and resume states holding everything the next step depends on (weights, optimiser, grad scaler,
step, each process's random states and queue).
"""

from __future__ import annotations

from pathlib import Path

import torch
from fastai.callback.core import Callback
from fastcore.foundation import L

from rice_lab.runs import MetricsLog, atomic_save, rng_state, set_rng_state
from rice_lab.ssl.distributed import gather_floats, gather_objects, rank


def swav_snapshot(net: torch.nn.Module, step: int, epoch: int, meta: dict) -> dict:
    """What a snapshot or ``encoder.pt`` holds: the SwAV weights plus what is needed to rebuild them."""
    return {"encoder": net.encoder.state_dict(), "head": net.head.state_dict(),
            "prototypes": net.prototypes.weight.detach().cpu(), "step": step, "epoch": epoch, **meta}


class RunDirCallback(Callback):
    """Logs metrics, saves snapshots and resume states, and restores a resumed run.

    Only the main process writes; every process takes part in collecting what differs per process
    (its random states and its SwAV queue) and in averaging the loss that is logged, so a
    multi-process run logs the loss of its whole batch, as a single process would.
    """

    order = -5  # after TrainEvalCallback (-10) zeroes the counters, before the SwAV callback

    def __init__(self, run_dir: str | Path, checkpoint_every: int = 0, resume_every: int = 0,
                 resume_state: dict | None = None, stateful: dict | None = None,
                 meta: dict | None = None, is_main: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.checkpoint_every, self.resume_every = checkpoint_every, resume_every
        self.resume_state, self.stateful = resume_state, stateful or {}
        self.meta, self.is_main = meta or {}, is_main
        self.start_epoch, self.pending_scaler = 0, None

    @property
    def net(self) -> torch.nn.Module:
        return getattr(self.learn.model, "module", self.learn.model)

    def before_fit(self) -> None:
        self.steps_per_epoch = len(self.dls.train)
        resume_step = 0
        if self.resume_state is not None:
            resume_step = self._restore(self.resume_state)
        self.start_epoch = resume_step // self.steps_per_epoch
        if self.is_main:
            self.metrics_log = MetricsLog(self.run_dir / "metrics.csv", keep_until_step=resume_step)
            if resume_step == 0:
                self.snapshot()  # step 0: the random (or ImageNet) starting point, for comparisons

    def _restore(self, state: dict) -> int:
        self.net.load_state_dict(state["model"])
        opt = dict(state["opt"])
        opt["hypers"] = L(dict(h) for h in opt["hypers"])
        self.learn.opt.load_state_dict(opt)
        device = next(self.net.parameters()).device
        for slot in self.learn.opt.state.values():  # saved on the CPU; put it beside the weights
            for key, value in slot.items():
                if isinstance(value, torch.Tensor):
                    slot[key] = value.to(device)
        self.learn.train_iter = int(state["step"])
        mine = _own(state["per_process"])
        set_rng_state(mine["rng"])
        for name, obj in self.stateful.items():
            if name in mine["stateful"]:
                obj.load_state_dict(mine["stateful"][name])
        # The grad scaler is made by MixedPrecision's before_fit, which runs after this one.
        self.pending_scaler = state.get("scaler")
        return int(state["step"])

    def before_train(self) -> None:
        scaler = getattr(self.learn, "scaler", None)
        if self.pending_scaler and scaler is not None:
            scaler.load_state_dict(self.pending_scaler)
        self.pending_scaler = None

    def before_validate(self) -> None:
        self.valid_losses = []

    def after_batch(self) -> None:
        loss = float(self.learn.loss.detach())
        if not self.training:
            self.valid_losses.append(loss)
            return
        step = self.learn.train_iter  # steps completed (TrainEvalCallback already counted this one)
        losses = gather_floats(loss, self.learn.loss.device)  # the whole batch's loss, on every process
        if self.is_main:
            self.metrics_log.log(step, self.epoch, "train", sum(losses) / len(losses), self.opt.hypers[-1]["lr"])
        if self.checkpoint_every and step % self.checkpoint_every == 0:
            self.snapshot()
        # At an epoch's last batch the state is saved after validation instead (after_epoch).
        if self.resume_every and step % self.resume_every == 0 and step % self.steps_per_epoch:
            self.save_resume()

    def after_epoch(self) -> None:
        if self.epoch < self.start_epoch:
            return  # an epoch skipped on resume
        valid, device = getattr(self, "valid_losses", None) or [], next(self.net.parameters()).device
        totals = gather_floats(sum(valid), device), gather_floats(len(valid), device)
        if self.is_main and sum(totals[1]):
            self.metrics_log.log(self.learn.train_iter, self.epoch, "valid", sum(totals[0]) / sum(totals[1]), None)
        self.save_resume()

    def after_fit(self) -> None:
        if self.is_main:
            self.metrics_log.close()

    def snapshot(self) -> None:
        """Save the encoder, head and prototypes at this step under ``checkpoints/``."""
        if not self.is_main:
            return
        step = self.learn.train_iter
        atomic_save(self.result(), self.run_dir / "checkpoints" / f"step-{step:06d}.pt")

    def result(self) -> dict:
        """What a snapshot or ``encoder.pt`` holds at this step."""
        return swav_snapshot(self.net, self.learn.train_iter, self.epoch, self.meta)

    def save_resume(self) -> None:
        """Write ``last.pt``: everything needed to continue bit-for-bit from this step."""
        mine = {"rng": rng_state(), "stateful": {name: obj.state_dict() for name, obj in self.stateful.items()}}
        per_process = gather_objects(mine)
        if not self.is_main:
            return
        scaler = getattr(self.learn, "scaler", None)
        state = {"model": self.net.state_dict(), "opt": self.learn.opt.state_dict(),
                 "step": self.learn.train_iter, "epoch": self.epoch, "per_process": per_process,
                 "scaler": scaler.state_dict() if scaler is not None else None, "meta": self.meta}
        atomic_save(state, self.run_dir / "last.pt")


def _own(per_process: list) -> dict:
    """This process's entry of a per-process list (the first one when the job size changed)."""
    here = rank()
    return per_process[here] if here < len(per_process) else per_process[0]
