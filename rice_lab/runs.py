"""Run directories: manifest, metrics, checkpoints written atomically, and resume.

Layout of a pre-training run::

    run_dir/
      manifest.json          config, seed, versions, data fingerprint, git commit
      metrics.csv            step, epoch, kind (train/valid), loss, lr
      last.pt                full resume state (model, optimiser, queue, step, RNG states)
      checkpoints/step-000120.pt   encoder snapshots on a schedule, for studying the representation
      encoder.pt             the final encoder (what fine-tuning reads)
"""

from __future__ import annotations

import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rice_lab.errors import CheckpointError

METRICS_FIELDS = ("step", "epoch", "kind", "loss", "lr")


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file beside ``path``, fsync, then rename: a crash leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(text: str, path: str | Path) -> Path:
    """Write text atomically (temp file + rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The current git commit of the rice-lab source tree, or None outside a repository."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a run's numbers depend on."""
    import fastai
    import timm

    from rice_lab import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "fastai": fastai.__version__,
            "timm": timm.__version__, "numpy": np.__version__, "rice_lab": __version__}


def write_manifest(run_dir: Path, config: dict, fingerprint: str, extra: dict | None = None) -> Path:
    """Write ``manifest.json``: what produced this run, enough to rerun it."""
    manifest = {"kind": "pretrain", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "config": config, "seed": config.get("seed"), "data_fingerprint": fingerprint,
                "git_commit": git_commit(), "versions": versions(), "command": sys.argv,
                **(extra or {})}
    return atomic_write_text(json.dumps(manifest, indent=2, default=str) + "\n", run_dir / "manifest.json")


def read_manifest(run_dir: str | Path) -> dict:
    """The manifest of a run directory; CheckpointError if there is none."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; is {run_dir} a rice-lab run directory?")
    return json.loads(path.read_text())


def read_metrics(run_dir: str | Path):
    """``metrics.csv`` as a DataFrame (columns step, epoch, kind, loss, lr)."""
    import pandas as pd

    return pd.read_csv(Path(run_dir) / "metrics.csv")


class MetricsLog:
    """Appends rows to ``metrics.csv``, flushing each so a killed run keeps what it logged."""

    def __init__(self, path: Path, keep_until_step: int | None = None) -> None:
        self.path = path
        if keep_until_step is not None and path.exists():
            self._truncate(keep_until_step)
        new = not path.exists() or path.stat().st_size == 0
        self.handle = open(path, "a", newline="")
        self.writer = csv.writer(self.handle)
        if new:
            self.writer.writerow(METRICS_FIELDS)
            self.handle.flush()

    def _truncate(self, step: int) -> None:
        """Keep complete rows up to ``step``: rows after the resume point are redone by the resumed run.

        A state saved at an epoch's end is saved after validation, so its valid row is kept too.
        """
        with open(self.path, newline="") as handle:
            lines = handle.read().splitlines()
        kept = lines[:1]
        for line in lines[1:]:
            parts = line.split(",")
            if len(parts) != len(METRICS_FIELDS):
                continue  # a row cut short by the kill
            try:
                row_step = int(parts[0])
            except ValueError:
                continue
            if row_step <= step:
                kept.append(line)
        atomic_write_text("\n".join(kept) + "\n", self.path)

    def log(self, step: int, epoch: int, kind: str, loss: float, lr: float | None) -> None:
        self.writer.writerow([step, epoch, kind, f"{loss:.6f}", "" if lr is None else f"{lr:.6g}"])
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def rng_state() -> dict:
    """Python, NumPy and torch (CPU and CUDA) random states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_resume_state(run_dir: str | Path) -> dict | None:
    """The last good resume state of a run (``last.pt``), or None if it never saved one."""
    path = Path(run_dir) / "last.pt"
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - atomic writes make this rare; say what to do
        raise CheckpointError(f"{path}: unreadable resume state ({err}); delete it to restart the "
                              "run from scratch") from err


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Encoder snapshots of a run, in step order (for studying how the representation changes)."""
    return sorted((Path(run_dir) / "checkpoints").glob("step-*.pt"))


def checkpoint_step(path: str | Path) -> int:
    """The training step a snapshot was taken at, from its name ``step-000120.pt``."""
    return int(Path(path).stem.split("-")[1])


# --------------------------------------------------------------------------------------------
# The fastai callback that keeps a run directory up to date and restores it on resume.

from fastai.callback.core import Callback  # noqa: E402 - kept next to its only user


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class RunDirCallback(Callback):
    """Logs metrics, saves encoder snapshots and resume states, and restores a resumed run.

    Only the main process writes; every process takes part in collecting per-process state
    (the SwAV queue) so that a resumed multi-process run gets each process's own queue back.
    """

    order = -5  # after TrainEvalCallback (-10) zeroes the counters, before the SwAV callback

    def __init__(self, run_dir: str | Path, checkpoint_every: int = 0, resume_every: int = 0,
                 resume_state: dict | None = None, stateful: dict | None = None,
                 meta: dict | None = None, is_main: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.checkpoint_every, self.resume_every = checkpoint_every, resume_every
        self.resume_state, self.stateful = resume_state, stateful or {}
        self.meta, self.is_main = meta or {}, is_main
        self.start_epoch = 0

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
        self.learn.opt.load_state_dict(state["opt"])
        device = next(self.net.parameters()).device
        for slot in self.learn.opt.state.values():  # saved on the CPU; put it beside the weights
            for key, value in slot.items():
                if isinstance(value, torch.Tensor):
                    slot[key] = value.to(device)
        self.learn.train_iter = int(state["step"])
        set_rng_state(state["rng"])
        per_rank = state.get("stateful", [{}])
        import torch.distributed as dist

        mine = per_rank[dist.get_rank()] if _distributed() and len(per_rank) == dist.get_world_size() \
            else per_rank[0]
        for name, obj in self.stateful.items():
            if name in mine:
                obj.load_state_dict(mine[name])
        return int(state["step"])

    def before_validate(self) -> None:
        self.valid_losses = []

    def after_batch(self) -> None:
        if not self.training:
            self.valid_losses.append(float(self.learn.loss.detach()))
            return
        step = self.learn.train_iter  # steps completed (TrainEvalCallback already counted this one)
        if self.is_main:
            self.metrics_log.log(step, self.epoch, "train", float(self.learn.loss.detach()), self.opt.hypers[-1]["lr"])
        if self.checkpoint_every and step % self.checkpoint_every == 0:
            self.snapshot()
        # At an epoch's last batch the state is saved after validation instead (after_epoch).
        if self.resume_every and step % self.resume_every == 0 and step % self.steps_per_epoch:
            self.save_resume()

    def after_epoch(self) -> None:
        if self.epoch < self.start_epoch:
            return  # an epoch skipped on resume
        if self.is_main and getattr(self, "valid_losses", None):
            mean = sum(self.valid_losses) / len(self.valid_losses)
            self.metrics_log.log(self.learn.train_iter, self.epoch, "valid", mean, None)
        self.save_resume()

    def after_fit(self) -> None:
        if self.is_main:
            self.metrics_log.close()

    def snapshot(self) -> None:
        """Save the encoder (and head, prototypes) at this step under ``checkpoints/``."""
        if not self.is_main:
            return
        step = self.learn.train_iter
        atomic_save(self.encoder_state(), self.run_dir / "checkpoints" / f"step-{step:06d}.pt")

    def encoder_state(self) -> dict:
        """What a snapshot or ``encoder.pt`` holds: weights plus what is needed to rebuild them."""
        net = self.net
        return {"encoder": net.encoder.state_dict(), "head": net.head.state_dict(),
                "prototypes": net.prototypes.weight.detach().cpu(), "step": self.learn.train_iter,
                "epoch": self.epoch, **self.meta}

    def save_resume(self) -> None:
        """Write ``last.pt``: everything needed to continue bit-for-bit from this step."""
        stateful = {name: obj.state_dict() for name, obj in self.stateful.items()}
        per_rank = [stateful]
        if _distributed():
            import torch.distributed as dist

            per_rank = [None] * dist.get_world_size()
            dist.all_gather_object(per_rank, stateful)
        if not self.is_main:
            return
        state = {"model": self.net.state_dict(), "opt": self.learn.opt.state_dict(),
                 "step": self.learn.train_iter, "epoch": self.epoch, "rng": rng_state(),
                 "stateful": per_rank, "meta": self.meta}
        atomic_save(state, self.run_dir / "last.pt")
