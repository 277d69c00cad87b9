"""Run directories as plain I/O: manifest, metrics, atomic saves, checkpoints, resume state, run cache.

Nothing here knows fastai or what a stage trains; a stage (pre-training, fine-tuning) passes its
own config dict and its own list of settings that do not change the result. Layout::

    run_dir/
      manifest.json          kind, config, seed, versions, data fingerprint, git commit, format
      metrics.csv            step, epoch, kind (train/valid), loss, lr
      last.pt                full resume state (written by the stage's training callback)
      checkpoints/step-000120.pt   snapshots on a schedule, for studying how the model changes
      encoder.pt             the stage's result (its name is the stage's choice)

Every ``.pt`` file holds plain dicts, lists, numbers, strings and tensors, so it loads with
``torch.load(..., weights_only=True)``: opening a run never runs code stored in it.

A run is never deleted here. A run that no longer matches its config is moved aside by
:func:`set_aside` to ``<run_dir>.stale-<UTC time>`` beside it.
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
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from rice_lab.errors import CheckpointError

METRICS_FIELDS = ("step", "epoch", "kind", "loss", "lr")
# Version of what a run directory holds. 2: nested configs and named random streams
# (rice_lab.seeding); a run of an older format cannot be continued bit-for-bit by this code.
RUN_FORMAT = 2


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file beside ``path``, fsync, then rename: a crash leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(plain(obj), handle)
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


def plain(obj: Any) -> Any:
    """``obj`` with numpy values and list-like containers turned into what ``weights_only`` loads.

    numpy arrays become tensors, numpy scalars Python numbers, other sequences (fastcore's ``L``)
    lists; dicts, lists, tuples, tensors, numbers, strings and None stay as they are.
    """
    if isinstance(obj, np.generic):  # before the Python types: np.float64 is also a float
        return obj.item()
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):
        return {key: plain(value) for key, value in obj.items()}
    if isinstance(obj, tuple):
        return tuple(plain(value) for value in obj)
    if isinstance(obj, (list,)) or hasattr(obj, "__iter__") and hasattr(obj, "__len__"):
        return [plain(value) for value in obj]
    return obj


def load_checkpoint(path: str | Path) -> dict:
    """A rice-lab ``.pt`` file, loaded with ``weights_only=True``; CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: say which
        raise CheckpointError(f"{path}: cannot read checkpoint ({str(err).splitlines()[0]})") from err


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
    """Versions of Python and the libraries a run's numbers depend on (read, not imported)."""
    from rice_lab import __version__

    found = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
             "rice_lab": __version__}
    for name in ("fastai", "timm"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def stored_form(config: dict) -> dict:
    """``config`` as ``manifest.json`` stores it: Paths become strings, tuples lists."""
    return json.loads(json.dumps(config, default=str))


def write_manifest(run_dir: Path, kind: str, config: dict, fingerprint: str,
                   extra: dict | None = None) -> Path:
    """Write ``manifest.json``: what produced this run (a ``kind`` of stage), enough to rerun it."""
    manifest = {"kind": kind, "format": RUN_FORMAT,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "config": stored_form(config), "seed": config.get("seed"), "data_fingerprint": fingerprint,
                "git_commit": git_commit(), "versions": versions(), "command": sys.argv, **(extra or {})}
    return atomic_write_text(json.dumps(manifest, indent=2, default=str) + "\n", Path(run_dir) / "manifest.json")


def read_manifest(run_dir: str | Path) -> dict:
    """The manifest of a run directory; CheckpointError if it is missing or unreadable."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; is {run_dir} a rice-lab run directory?")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable manifest ({err})") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise CheckpointError(f"{path}: not a rice-lab manifest (no config)")
    return manifest


def _flatten(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_difference(stored: dict, new: dict, result_free: Iterable[str] = (),
                      defaults: dict | None = None) -> list[str]:
    """Settings that differ between two configs, as ``"name: old -> new"``, compared as stored.

    Both are compared in their JSON form (a Path equals its string), nested settings by dotted
    name (``crops.size``). Names in ``result_free`` (or below them) never count: they change how
    a run is carried out, not what it computes. A setting the stored config lacks (added to
    rice-lab since) takes its value in ``defaults`` (a config of the settings' defaults, which
    must be what runs did before the setting existed), else counts as unchanged when the new config
    leaves it off (None or False).
    """
    free = tuple(result_free)
    old, now = _flatten(stored_form(stored)), _flatten(stored_form(new))
    if defaults:
        old.update({key: value for key, value in _flatten(stored_form(defaults)).items() if key not in old})
    # A setting added to rice-lab after the run was made, and left off (None or False), is what the run did.
    old.update({key: value for key, value in now.items() if key not in old and (value is None or value is False)})
    changed = sorted(key for key in set(old) | set(now) if old.get(key, "<unset>") != now.get(key, "<unset>")
                     and not any(key == name or key.startswith(name + ".") for name in free))
    return [f"{key}: {old.get(key, '<unset>')!r} -> {now.get(key, '<unset>')!r}" for key in changed]


def run_mismatch(run_dir: str | Path, kind: str, config: dict, fingerprint: str,
                 result_free: Iterable[str] = (), defaults: dict | None = None) -> str | None:
    """Why the run in ``run_dir`` is not a ``kind`` run of ``config`` on data ``fingerprint`` (None if it is)."""
    manifest = read_manifest(run_dir)
    if manifest.get("format") != RUN_FORMAT:
        return (f"{run_dir}: made by an older rice-lab (run format {manifest.get('format', 1)}, this one "
                f"writes {RUN_FORMAT}); it cannot be continued or reused as this config's run")
    if manifest.get("kind") != kind:
        return f"{run_dir}: a {manifest.get('kind')!r} run, not a {kind!r} one"
    changed = config_difference(manifest["config"], config, result_free, defaults)
    if changed:
        return f"{run_dir}: made with another config ({'; '.join(changed)})"
    if manifest.get("data_fingerprint") != fingerprint:
        return (f"{run_dir}: the data changed since this run started "
                f"(fingerprint {manifest.get('data_fingerprint')} -> {fingerprint})")
    return None


def set_aside(run_dir: str | Path) -> Path:
    """Move ``run_dir`` to ``<run_dir>.stale-<UTC time>`` beside it (never over an existing path)."""
    run_dir = Path(run_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = run_dir.with_name(f"{run_dir.name}.stale-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.stale-{stamp}-{n}")
    run_dir.rename(target)
    return target


def cache_decision(run_dir: str | Path, kind: str, config: dict, fingerprint: str,
                   result_free: Iterable[str] = (), result: str = "encoder.pt",
                   defaults: dict | None = None) -> tuple[str, str | None]:
    """What to do with ``run_dir`` for this config: ("reuse" | "resume" | "new", note or None).

    "reuse": a finished matching run (its ``result`` file exists); "resume": a matching unfinished
    one; "new": nothing usable there. A folder in the way (another config or data, an older format,
    an unreadable manifest, or files without a manifest) is moved aside first with
    :func:`set_aside`, and the note says where and why. Nothing is deleted.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return "new", None
    if not (run_dir / "manifest.json").is_file():
        problem = f"{run_dir}: holds files but no manifest.json"
    else:
        try:
            problem = run_mismatch(run_dir, kind, config, fingerprint, result_free, defaults)
        except CheckpointError as err:
            problem = str(err)
    if problem is None:
        return ("reuse" if (run_dir / result).is_file() else "resume"), None
    moved = set_aside(run_dir)
    return "new", f"{problem}; moved it to {moved} and starting a new run"


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
    """This process's Python, NumPy and torch (CPU and CUDA) random states, as plain values."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["key"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def open_run_dir(run_dir: Path, kind: str, config: dict, fingerprint: str, result_free: Iterable[str],
                 resume: bool, extra: dict | None = None, defaults: dict | None = None) -> dict | None:
    """Make ``run_dir`` ready for a run; return the resume state when continuing one.

    A folder with a manifest is continued only when ``resume`` is asked for and its config and data
    match (else a one-line CheckpointError says why); a folder with other files is refused; otherwise
    the folder is created with a fresh manifest (``extra`` added to it) and None is returned.
    """
    if (run_dir / "manifest.json").exists():
        if not resume:
            raise CheckpointError(f"{run_dir}: a run already exists here; pass --resume to continue it, "
                                  "--if-needed to reuse it (or set it aside if it is stale), or choose "
                                  "another --out")
        problem = run_mismatch(run_dir, kind, config, fingerprint, result_free, defaults)
        if problem is not None:
            raise CheckpointError(f"cannot resume: {problem}")
        return load_resume_state(run_dir)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise CheckpointError(f"{run_dir}: holds files but no manifest.json, so it is no rice-lab run; "
                              "choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(run_dir, kind, config, fingerprint, extra or {})
    return None


def load_resume_state(run_dir: str | Path) -> dict | None:
    """The last good resume state of a run (``last.pt``), or None if it never saved one."""
    path = Path(run_dir) / "last.pt"
    if not path.exists():
        return None
    try:
        return load_checkpoint(path)
    except CheckpointError as err:  # atomic writes make this rare; say what to do
        raise CheckpointError(f"{err}; move {path} away to restart the run from scratch") from err


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Snapshots of a run, in step order (for studying how the representation changes)."""
    return sorted((Path(run_dir) / "checkpoints").glob("step-*.pt"))


def checkpoint_step(path: str | Path) -> int:
    """The training step a snapshot was taken at, from its name ``step-000120.pt``."""
    return int(Path(path).stem.split("-")[1])
