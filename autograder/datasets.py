"""Small synthetic datasets for exercises, cached on disk and safe to create from parallel kernels."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from rice_lab.data.synthetic import SynthConfig, ensure_synthetic

CACHE_ENV = "RICE_LAB_COURSE_DATA"


def cache_dir() -> Path:
    """Where exercise datasets live: $RICE_LAB_COURSE_DATA, else a folder in the system temp dir."""
    default = Path(tempfile.gettempdir()) / "rice-lab-course"
    return Path(os.environ.get(CACHE_ENV) or default).expanduser()


def course_dataset(plants: int = 40, size: int = 64, seed: int = 0) -> Path:
    """A synthetic Zindi-layout folder for exercises (made once, then reused; one writer at a time)."""
    root = cache_dir() / f"synth-{plants}p-{size}px-seed{seed}"
    root.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(root.parent / f".{root.name}.lock"):  # graders run kernels in parallel
        return ensure_synthetic(root, SynthConfig(plants=plants, width=size, seed=seed, workers=1))


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (POSIX); elsewhere, where no parallel grading runs, no-op."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
