"""Run a learner's code contained: limits on memory, CPU time, processes and file size, no network,
read-only course files, and a way to kill everything it started.

``python -m autograder.sandbox LIMITS_JSON -- CMD ...`` applies the limits to itself, then runs CMD in
its place (``exec``), so CMD and every process it starts inherit them. What is enforced depends on
the platform, and :func:`describe` says which parts are:

- Linux: ``setrlimit`` caps data memory (``RLIMIT_DATA``), CPU seconds, file size and, for a user
  other than root, the number of processes; a fresh network namespace (no interface but a downed
  loopback) removes the network; a mount namespace makes the protected folders read-only, except the
  writable ones inside them. Namespaces need ``unshare`` to be permitted (root, or unprivileged user
  namespaces); a writable ``pids`` cgroup caps processes for root and lets the whole tree be killed.
- macOS and other POSIX systems: CPU seconds, file size and processes (memory caps are not honoured by
  macOS); network and writes are refused by an audit hook inside every Python process started
  (``sitecustomize``), which code that leaves Python (a subprocess, ctypes) can bypass.
- Windows: only the audit hook and the graders' time limits.

The graders check afterwards, by hash, that the course files are unchanged (:mod:`autograder.integrity`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Sequence

GiB, MiB = 2**30, 2**20
SITE_DIR = Path(__file__).resolve().parent / "_sandbox_site"
ENV_VAR = "RICE_LAB_SANDBOX"  # the audit hook's settings (JSON), read by _sandbox_site/sitecustomize.py
PENDING_VAR = ENV_VAR + "_PENDING"  # the same, until the launcher has set everything up (then ENV_VAR)
CGROUP_PREFIX = "rice-lab-"
NO_NAMESPACES_VAR = "RICE_LAB_SANDBOX_NO_NAMESPACES"  # "1": behave as where namespaces are refused (tests)


@dataclass(frozen=True)
class Limits:
    """What one contained process tree may use. ``None`` means no cap."""

    memory: int | None = 4 * GiB           # bytes of data memory per process
    cpu_seconds: int | None = 1800         # CPU time per process (all its threads)
    processes: int | None = 256            # processes and threads in the tree
    file_size: int | None = 256 * MiB      # largest file it may write
    network: bool = False
    protect: tuple[str, ...] = ()          # folders it may read but not change
    writable: tuple[str, ...] = ()         # folders inside the protected ones it may change
    hide: tuple[str, ...] = ()             # folders it may not even see (other submissions' work), except
                                           # the writable ones inside them
    cgroup: str | None = None              # pids cgroup to join (created and removed by the caller)

    def with_paths(self, protect: Sequence[os.PathLike | str] = (), writable: Sequence[os.PathLike | str] = (),
                   hide: Sequence[os.PathLike | str] = ()) -> "Limits":
        """The same limits with more protected, writable and hidden folders (resolved, existing ones only)."""
        def resolved(paths: Sequence) -> tuple[str, ...]:
            return tuple(dict.fromkeys(str(Path(p).resolve()) for p in paths if Path(p).exists()))
        return replace(self, protect=resolved([*self.protect, *protect]), writable=resolved([*self.writable, *writable]),
                       hide=resolved([*self.hide, *hide]))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Limits":
        values = json.loads(text)
        for key in ("protect", "writable", "hide"):
            values[key] = tuple(values.get(key, ()))
        return cls(**values)


def parse_size(text: str | int) -> int:
    """``4GiB``, ``512M``, ``2g`` or a number of bytes -> bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", str(text).lower())
    if not match:
        raise ValueError(f"{text!r}: not a size (use e.g. 4GiB, 512MiB or a number of bytes)")
    number, unit = float(match.group(1)), match.group(2)
    return int(number * {"": 1, "k": 2**10, "m": MiB, "g": GiB, "t": 2**40}[unit])


def format_size(size: int | None) -> str:
    if size is None:
        return "no cap"
    for unit, factor in (("GiB", GiB), ("MiB", MiB)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} bytes"


# --- what this machine can enforce ------------------------------------------------------------------

@lru_cache(maxsize=None)
def namespaces_available() -> bool:
    """Whether a child process may create network and mount namespaces here (Linux only)."""
    if not sys.platform.startswith("linux") or os.environ.get(NO_NAMESPACES_VAR) == "1":
        return False
    probe = subprocess.run([sys.executable, "-c", "import autograder.sandbox as s, sys; "
                            "sys.exit(0 if s._unshare(probe=True) else 1)"],
                           env={**os.environ, "PYTHONPATH": _pythonpath()}, capture_output=True, timeout=60)
    return probe.returncode == 0


@lru_cache(maxsize=None)
def pids_cgroup_root() -> Path | None:
    """A cgroup folder with a ``pids`` controller where this user may create children, if any."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    candidates = []
    for line in own:
        hierarchy, controllers, path = line.split(":", 2)
        for mount in mounts:
            fields = mount.split()
            fstype = fields[fields.index("-") + 1]
            options = fields[-1].split(",")
            if hierarchy == "0" and fstype == "cgroup2":
                candidates.append(Path(fields[4]) / path.lstrip("/"))
            elif fstype == "cgroup" and "pids" in controllers.split(",") and "pids" in options:
                candidates.append(Path(fields[4]) / path.lstrip("/"))
    for folder in candidates:
        probe = folder / f"{CGROUP_PREFIX}probe-{os.getpid()}"
        try:
            probe.mkdir()
        except OSError:
            continue
        usable = (probe / "pids.max").exists()
        probe.rmdir()
        if usable:
            return folder
    return None


def describe(limits: Limits) -> list[str]:
    """One line per protection: what is enforced on this machine, and what is not."""
    linux, windows = sys.platform.startswith("linux"), sys.platform == "win32"
    ns = namespaces_available()
    lines = []
    if windows:
        lines.append("memory, CPU time, processes and file size: not capped on Windows (time limits only)")
    else:
        memory = ("not capped on this platform" if not linux else format_size(limits.memory) + " of data per process")
        lines.append(f"memory: {memory}")
        lines.append(f"CPU time: {limits.cpu_seconds or 'no cap'} s per process")
        capped = pids_cgroup_root() is not None or (hasattr(os, "geteuid") and os.geteuid() != 0)
        lines.append(f"processes: {limits.processes} at once" if capped else
                     "processes: not capped (running as root without a writable pids cgroup)")
        lines.append(f"file size: {format_size(limits.file_size)} per file written")
    if limits.network:
        lines.append("network: allowed")
    else:
        lines.append("network: none (network namespace)" if ns else
                     "network: refused to Python's sockets only (a subprocess or C code can bypass it)")
    if limits.protect:
        lines.append("course files: read-only (mount namespace), checked by hash afterwards" if ns else
                     "course files: writes from Python refused, checked by hash and restored afterwards")
    return lines


# --- the launcher ------------------------------------------------------------------------------------

def contained_command(cmd: Sequence[str], limits: Limits) -> list[str]:
    """``cmd`` prefixed by the launcher (unchanged on Windows, where nothing can be applied before exec)."""
    if sys.platform == "win32":
        return list(cmd)
    return [sys.executable, "-m", "autograder.sandbox", limits.to_json(), "--", *cmd]


def contained_env(env: dict[str, str], limits: Limits, home: Path) -> dict[str, str]:
    """Environment for a contained process: private home and temp folder, the audit hook enabled."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(exist_ok=True)
    env = dict(env)
    env.update({"HOME": str(home), "TMPDIR": str(home / "tmp"), "TEMP": str(home / "tmp"), "TMP": str(home / "tmp"),
                "MPLCONFIGDIR": str(home / "matplotlib"), "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONPATH": _pythonpath(env.get("PYTHONPATH", ""), site=True)})
    hook = {"network": limits.network, "protect": list(limits.protect) + list(limits.hide),
            "writable": list(limits.writable) + [str(home)]}
    # On Windows nothing runs before the command itself, so the hook is armed at once.
    env[ENV_VAR if sys.platform == "win32" else PENDING_VAR] = json.dumps(hook)
    return env


def _pythonpath(existing: str | None = None, site: bool = False) -> str:
    """PYTHONPATH with this repository (and, if asked, the sandbox's sitecustomize) first."""
    existing = os.environ.get("PYTHONPATH", "") if existing is None else existing
    parts = ([str(SITE_DIR)] if site else []) + [str(Path(__file__).resolve().parent.parent)] + \
        [p for p in existing.split(os.pathsep) if p and p != str(SITE_DIR)]
    return os.pathsep.join(dict.fromkeys(parts))


def apply(limits: Limits) -> list[str]:
    """Apply ``limits`` to this process (before it execs the contained command); return what failed."""
    problems = []
    if limits.cgroup:
        try:
            Path(limits.cgroup, "cgroup.procs").write_text(str(os.getpid()))
        except OSError as err:
            problems.append(f"cgroup: {err}")
    try:
        import resource
    except ImportError:
        return problems + ["resource limits: not available on this platform"]
    caps = [("RLIMIT_CPU", limits.cpu_seconds), ("RLIMIT_FSIZE", limits.file_size), ("RLIMIT_CORE", 0)]
    if sys.platform.startswith("linux"):
        caps.append(("RLIMIT_DATA", limits.memory))
    if limits.processes and not limits.cgroup and os.geteuid() != 0:
        caps.append(("RLIMIT_NPROC", _tasks_of_this_user() + limits.processes))
    for name, value in caps:
        if value is None or not hasattr(resource, name):
            continue
        kind = getattr(resource, name)
        soft, hard = resource.getrlimit(kind)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            # The hard CPU limit sits a little above the soft one: SIGXCPU first, then SIGKILL.
            resource.setrlimit(kind, (value, value + 5 if name == "RLIMIT_CPU" and hard == resource.RLIM_INFINITY
                                      else value))
        except (ValueError, OSError) as err:
            problems.append(f"{name}: {err}")
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # too big a file: the write fails, the process lives
    if sys.platform.startswith("linux") and os.environ.get(NO_NAMESPACES_VAR) != "1" and \
            (not limits.network or limits.protect or limits.hide):
        if not _unshare(network=not limits.network):
            problems.append("namespaces: unshare not permitted")
        elif limits.protect or limits.hide:
            problems += _protect(limits.protect, limits.writable, limits.hide)
    return problems


def _tasks_of_this_user() -> int:
    """Processes and threads this user runs now (RLIMIT_NPROC counts them all, not just the tree's)."""
    try:
        import psutil
    except ImportError:
        return 0
    uid, total = os.getuid(), 0
    for process in psutil.process_iter(["uids", "num_threads"]):
        try:
            if process.info["uids"] and process.info["uids"].real == uid:
                total += process.info["num_threads"] or 1
        except psutil.Error:
            continue
    return total


_CLONE_NEWNS, _CLONE_NEWNET, _CLONE_NEWUSER = 0x00020000, 0x40000000, 0x10000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_MS_NOATIME, _MS_NODIRATIME, _MS_BIND, _MS_REC, _MS_PRIVATE, _MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21


def _libc():
    import ctypes
    import ctypes.util
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _unshare(network: bool = True, probe: bool = False) -> bool:
    """Enter new mount (and network) namespaces, in a user namespace when not root; False if refused."""
    libc = _libc()
    flags = _CLONE_NEWNS | (_CLONE_NEWNET if network or probe else 0)
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(flags | (0 if root else _CLONE_NEWUSER)) != 0:
        return False
    if not root:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            try:
                Path(f"/proc/self/{name}").write_text(text)
            except OSError:
                return False
    # Our mounts stay ours: nothing done in this namespace propagates back to the host.
    return libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) == 0


def _protect(protect: Sequence[str], writable: Sequence[str], hide: Sequence[str] = ()) -> list[str]:
    """Hide folders under empty tmpfs mounts, keep the writable folders writable (and visible), and bind
    the protected folders read-only over themselves."""
    import ctypes
    libc, problems = _libc(), []

    def mount(source: str | None, target: str, flags: int, fstype: bytes | None = None, data: bytes | None = None) -> bool:
        if libc.mount(source.encode() if source else None, target.encode(), fstype, flags, data) == 0:
            return True
        problems.append(f"mount {target}: {os.strerror(ctypes.get_errno())}")
        return False

    # Handles on the writable folders, taken before anything is mounted over the folders above them.
    handles = {folder: os.open(folder, getattr(os, "O_PATH", os.O_RDONLY)) for folder in writable
               if os.path.isdir(folder)}
    for folder in hide:
        if os.path.isdir(folder):
            mount("tmpfs", folder, _MS_NOSUID | _MS_NODEV, b"tmpfs", b"mode=755,size=1m")
    # Writable folders get a mount of their own (re-created inside a hidden folder if they were in one),
    # which the recursive read-only binds below carry along.
    for folder, handle in handles.items():
        os.makedirs(folder, exist_ok=True)
        mount(f"/proc/self/fd/{handle}", folder, _MS_BIND | _MS_REC)
        os.close(handle)
    for folder in protect:
        if not os.path.isdir(folder) or not mount(folder, folder, _MS_BIND | _MS_REC):
            continue
        mount(None, folder, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _locked_flags(folder))
    return problems


def _locked_flags(folder: str) -> int:
    """Mount flags a remount must keep (nosuid, nodev, ...: a user namespace may not drop them)."""
    flags = os.statvfs(folder).f_flag
    kept = 0
    for stat_flag, mount_flag in ((os.ST_NOSUID, _MS_NOSUID), (os.ST_NODEV, _MS_NODEV),
                                  (getattr(os, "ST_NOEXEC", 8), _MS_NOEXEC),
                                  (getattr(os, "ST_NOATIME", 1024), _MS_NOATIME),
                                  (getattr(os, "ST_NODIRATIME", 2048), _MS_NODIRATIME),
                                  (getattr(os, "ST_RELATIME", 4096), _MS_RELATIME)):
        if flags & stat_flag:
            kept |= mount_flag
    return kept


# --- process groups and cgroups: killing everything a submission started --------------------------------

@dataclass
class Containment:
    """The cgroup (where available) of one contained process tree; ``kill`` ends every process in it."""

    limits: Limits
    folder: Path | None = field(default=None)

    @classmethod
    def create(cls, limits: Limits) -> "Containment":
        root = pids_cgroup_root()
        if root is None or not limits.processes:
            return cls(limits)
        folder = root / f"{CGROUP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            folder.mkdir()
            (folder / "pids.max").write_text(str(limits.processes))
        except OSError:
            return cls(limits)
        return cls(replace(limits, cgroup=str(folder)), folder)

    def pids(self) -> list[int]:
        if self.folder is None:
            return []
        try:
            return [int(p) for p in (self.folder / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (repeatedly: a fork storm refills it), then remove it."""
        if self.folder is None:
            return
        freeze = self.folder / "cgroup.freeze"
        for _ in range(200):
            pids = self.pids()
            if not pids:
                break
            _write(freeze, "1")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            _write(freeze, "0")
            time.sleep(0.01)  # a killed process leaves the cgroup only once the kernel has finished it
        for _ in range(100):
            try:
                self.folder.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


def _write(path: Path, text: str) -> None:
    if path.exists():
        try:
            path.write_text(text)
        except OSError:
            pass


def kill_cgroups_of(pid: int) -> None:
    """Kill what is left in the cgroups a (now dead) process created, and remove them."""
    root = pids_cgroup_root()
    if root is None:
        return
    for folder in root.glob(f"{CGROUP_PREFIX}{pid}-*"):
        Containment(Limits(), folder).kill()


def kill_tree(pid: int) -> None:
    """Kill a process, its process group and every descendant still attached to it."""
    try:
        import psutil
        parent = psutil.Process(pid)
        family = parent.children(recursive=True) + [parent]
    except Exception:  # psutil missing or the process already gone
        family = []
    if hasattr(os, "killpg"):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    for process in family:
        try:
            process.kill()
        except Exception:
            pass


def main(argv: list[str]) -> int:
    """``python -m autograder.sandbox LIMITS_JSON -- CMD ...``: apply the limits, then exec CMD."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m autograder.sandbox LIMITS_JSON -- CMD ...", file=sys.stderr)
        return 2
    limits = Limits.from_json(argv[0])
    for problem in apply(limits):
        print(f"rice-lab sandbox: {problem}", file=sys.stderr)
    if PENDING_VAR in os.environ:  # arm the audit hook for the command (not for this launcher)
        os.environ[ENV_VAR] = os.environ.pop(PENDING_VAR)
    os.execvp(argv[2], argv[2:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
