"""The sandbox graders run learners' code in: each limit, measured on a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder import sandbox

LINUX = sys.platform.startswith("linux")
needs_namespaces = pytest.mark.skipif(not sandbox.namespaces_available(),
                                      reason="network and mount namespaces are not permitted here")


def _run(code: str, limits: sandbox.Limits, tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    containment = sandbox.Containment.create(limits)
    try:
        env = sandbox.contained_env(os.environ, containment.limits, tmp_path / "home")
        return subprocess.run(sandbox.contained_command([sys.executable, "-c", code], containment.limits), env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
    finally:
        containment.kill()


def test_sizes_and_limits_round_trip() -> None:
    assert sandbox.parse_size("4GiB") == 4 * 2**30 == sandbox.parse_size("4g")
    assert sandbox.parse_size("512MiB") == 512 * 2**20 and sandbox.parse_size(123) == 123
    with pytest.raises(ValueError, match="not a size"):
        sandbox.parse_size("lots")
    limits = sandbox.Limits(memory=2**30, protect=("/a",), writable=("/a/b",), hide=("/c",))
    assert sandbox.Limits.from_json(limits.to_json()) == limits


@pytest.mark.skipif(not LINUX, reason="RLIMIT_DATA is a Linux limit")
def test_memory_cap_makes_a_large_allocation_fail(tmp_path: Path) -> None:
    run = _run("import numpy\ntry:\n    a = numpy.ones(3 * 2**30 // 8)\nexcept MemoryError:\n    print('MemoryError')",
               sandbox.Limits(memory=2**30), tmp_path)
    assert run.stdout.strip() == "MemoryError", run.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="no CPU-time limit on Windows")
def test_cpu_time_cap_stops_a_busy_loop(tmp_path: Path) -> None:
    start = time.monotonic()
    run = _run("while True:\n    pass", sandbox.Limits(cpu_seconds=2), tmp_path)
    assert run.returncode != 0 and time.monotonic() - start < 30


@pytest.mark.skipif(sys.platform == "win32", reason="no process limit on Windows")
def test_process_cap_stops_a_fork_storm(tmp_path: Path) -> None:
    if os.geteuid() == 0 and sandbox.pids_cgroup_root() is None:
        pytest.skip("root without a writable pids cgroup: processes are not capped (describe() says so)")
    code = ("import os\nn = 0\ntry:\n    while n < 10000:\n        if os.fork() == 0:\n            os._exit(0)\n"
            "        n += 1\nexcept OSError:\n    print('stopped at', n)")
    run = _run(code, sandbox.Limits(processes=40), tmp_path)
    assert run.stdout.startswith("stopped at"), run.stdout + run.stderr
    assert int(run.stdout.split()[-1]) <= 40


def test_file_size_cap(tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("no file-size limit on Windows")
    run = _run("open('big', 'wb').write(b'x' * (3 * 2**20))", sandbox.Limits(file_size=2**20), tmp_path)
    assert "File too large" in run.stderr and (tmp_path / "big").stat().st_size <= 2**20


def test_no_network(tmp_path: Path) -> None:
    code = ("import socket\nfor target in (('1.1.1.1', 80), ('example.com', 80)):\n    try:\n"
            "        socket.create_connection(target, timeout=3)\n        print('connected')\n"
            "    except OSError as err:\n        print('refused', type(err).__name__)")
    run = _run(code, sandbox.Limits(), tmp_path)
    assert run.stdout.count("refused") == 2 and "connected" not in run.stdout, run.stdout + run.stderr


@needs_namespaces
def test_protected_folders_are_read_only_and_hidden_ones_invisible(tmp_path: Path) -> None:
    course, jobs = tmp_path / "course", tmp_path / "jobs"
    (course / "solutions").mkdir(parents=True)
    (course / "solutions" / "a.ipynb").write_text("{}")
    (jobs / "mine").mkdir(parents=True)
    (jobs / "other").mkdir()
    (jobs / "other" / "secret").write_text("key")
    code = (f"import os, subprocess\nprint(sorted(os.listdir({str(jobs)!r})))\n"
            f"open({str(jobs / 'mine' / 'out')!r}, 'w').write('ok')\n"
            # a shell bypasses Python's audit hook: only the mount namespace stops it
            f"print(subprocess.run(['sh', '-c', 'echo x >> {course / 'solutions' / 'a.ipynb'}'],"
            f" capture_output=True, text=True).returncode)")
    limits = sandbox.Limits().with_paths(protect=[course], writable=[jobs / "mine"], hide=[jobs])
    run = _run(code, limits, jobs / "mine")
    assert run.stdout.splitlines()[0] == "['mine']", run.stdout + run.stderr
    assert run.stdout.splitlines()[1] != "0"
    assert (course / "solutions" / "a.ipynb").read_text() == "{}" and (jobs / "mine" / "out").read_text() == "ok"


def test_python_hook_refuses_writes_and_connections_without_the_launcher(tmp_path: Path) -> None:
    """The portable layer (macOS, Windows, or no namespaces): an audit hook in every Python process."""
    protected, writable = tmp_path / "course", tmp_path / "course" / "mine"
    writable.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=sandbox._pythonpath(os.environ.get("PYTHONPATH", ""), site=True))
    env[sandbox.ENV_VAR] = json.dumps({"network": False, "protect": [str(protected)], "writable": [str(writable)]})
    code = (f"import socket, os\nopen({str(writable / 'ok')!r}, 'w').write('ok')\n"
            f"for act in (lambda: open({str(protected / 'x')!r}, 'w'), lambda: os.remove({str(writable / 'ok')!r} + 'x'),"
            f" lambda: socket.create_connection(('1.1.1.1', 80), timeout=2)):\n"
            f"    try:\n        act()\n    except PermissionError as err:\n        print('refused')\n"
            f"    except OSError:\n        print('other')")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["refused", "other", "refused"], run.stdout + run.stderr
    assert "refused a write to" in run.stderr and "refused a network connection" in run.stderr
    assert not (protected / "x").exists() and (writable / "ok").exists()


@pytest.mark.skipif(sandbox.pids_cgroup_root() is None, reason="no writable pids cgroup here")
def test_kill_ends_processes_that_left_the_process_group(tmp_path: Path) -> None:
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    open('child', 'w').write(str(os.getpid()))\n"
            "    time.sleep(300)\nelse:\n    time.sleep(1)")
    containment = sandbox.Containment.create(sandbox.Limits(processes=16))
    subprocess.run(sandbox.contained_command([sys.executable, "-c", code], containment.limits), cwd=tmp_path,
                   timeout=60, env=sandbox.contained_env(os.environ, containment.limits, tmp_path / "home"))
    child = int((tmp_path / "child").read_text())
    containment.kill()
    time.sleep(0.2)
    try:
        state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    assert state in ("gone", "Z", "X"), state  # killed (a zombie until its new parent reaps it)


def test_describe_says_what_is_and_is_not_enforced() -> None:
    lines = sandbox.describe(sandbox.Limits(protect=("/x",)))
    text = "\n".join(lines)
    assert "network:" in text and "course files:" in text and "memory:" in text
    if not sandbox.namespaces_available():
        assert "bypass" in text
