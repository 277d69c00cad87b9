"""Course data for the exercises: small synthetic datasets, cached on disk and safe to create from
parallel kernels, and the committed files under ``autograder/data/`` (see its README)."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator

from rice_lab.data.synthetic import SynthConfig, ensure_synthetic, is_complete

CACHE_ENV = "RICE_LAB_COURSE_DATA"
COURSE_FILES = Path(__file__).resolve().parent / "data"  # committed, read-only while grading


def cache_dir() -> Path:
    """Where exercise datasets live: $RICE_LAB_COURSE_DATA, else a folder in the system temp dir."""
    default = Path(tempfile.gettempdir()) / "rice-lab-course"
    return Path(os.environ.get(CACHE_ENV) or default).expanduser().resolve()


def course_dataset(plants: int = 40, size: int = 64, seed: int = 0) -> Path:
    """A synthetic Zindi-layout folder for exercises (made once, then reused; one writer at a time).

    While grading, the cache is read-only: a complete dataset is used as it is, a missing one is made
    in this process's own temporary folder.
    """
    config = SynthConfig(plants=plants, width=size, seed=seed, workers=1)
    root = cache_dir() / f"synth-{plants}p-{size}px-seed{seed}"
    if is_complete(root, config):
        return root
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(root.parent / f".{root.name}.lock"):  # graders run kernels in parallel
            return ensure_synthetic(root, config)
    except OSError as err:
        if not isinstance(err, PermissionError) and err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        private = Path(tempfile.mkdtemp(prefix="rice-lab-course-")) / root.name
        return ensure_synthetic(private, config)


def dynamics_series() -> Path:
    """The checkpoint series of assignment 06 (``autograder/data/dynamics-series.npz``, written by
    ``rice_lab.explain.dynamics.export_series``): read it with ``np.load``, no pickle needed."""
    path = COURSE_FILES / "dynamics-series.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the course's checkpoint series is missing; autograder/data/README.md "
                                "says how to make it")
    return path


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``: fcntl on POSIX, msvcrt on Windows."""
    with open(path, "a+") as lock:
        _lock(lock)
        try:
            yield
        finally:
            _unlock(lock)


def _lock(handle: IO) -> None:
    if sys.platform == "win32":
        import msvcrt
        handle.seek(0)
        while True:
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)  # retries for 10 s, then raises
                return
            except OSError:
                continue
    import fcntl
    fcntl.flock(handle, fcntl.LOCK_EX)


def _unlock(handle: IO) -> None:
    if sys.platform == "win32":
        import msvcrt
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl
    fcntl.flock(handle, fcntl.LOCK_UN)
