"""Small synthetic datasets for exercises, cached on disk and safe to create from parallel kernels."""

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
