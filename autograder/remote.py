"""The checking side of :mod:`autograder.answers`: start the answer process, run cells there, and call the
learner's functions through :class:`RemoteFunction`, which a check uses like the function itself."""

from __future__ import annotations

import os
import pickle
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder import sandbox, wire
from autograder.answers import HEADER, write_message

START_TIMEOUT = 120.0  # seconds for the answer process to import its modules and answer a ping


class AnswerProcessGone(Exception):
    """The answer process stopped (its code exited, crashed, hit a limit, or ran out of time)."""


@dataclass
class CellRun:
    """How one cell went in the answer process."""

    error: str | None
    timeout: bool


class AnswerProcess:
    """A (contained) process that runs a learner's cells and answers calls to their functions."""

    def __init__(self, cwd: Path, limits: sandbox.Limits | None = None, home: Path | None = None,
                 preload: tuple[str, ...] = (), env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.cwd = Path(cwd)
        self.gone: str | None = None
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        command = [sys.executable, "-m", "autograder.answers", str(to_child), str(from_child), *preload]
        env = dict(env or os.environ)
        env["PYTHONPATH"] = sandbox._pythonpath(env.get("PYTHONPATH", ""))
        self.containment = None
        if limits is not None:
            home = Path(home or self.cwd / ".answers-home")
            home.mkdir(parents=True, exist_ok=True)
            self.containment = sandbox.Containment.create(limits.with_paths(writable=[home, self.cwd]))
            limits = self.containment.limits
            command = sandbox.contained_command(command, limits)
            env = sandbox.contained_env(env, limits, home)
        self._log = open(log, "ab") if log is not None else subprocess.DEVNULL  # what bypasses Python's streams
        self.process = subprocess.Popen(command, cwd=self.cwd, env=env, pass_fds=(to_child, from_child),
                                        stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                        start_new_session=True)
        os.close(to_child)
        os.close(from_child)
        self._request({"op": "ping"}, START_TIMEOUT)

    # --- the channel -----------------------------------------------------------------------------------

    def _request(self, request: dict, timeout: float) -> Any:
        if self.gone:
            raise AnswerProcessGone(self.gone)
        try:
            write_message(self._write, pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            self._stop(f"it could not be reached ({self._how_it_ended()})")
        payload = self._receive(timeout)
        try:
            reply = wire.loads(payload)
        except wire.WireError as err:
            self._stop(f"it sent a reply that cannot be read: {err}")
        if not isinstance(reply, dict):
            self._stop("it sent a malformed reply")
        if "error" in reply:
            raise AnswerProcessGone(f"the answer process failed: {reply['error']}")
        return reply.get("ok")

    def _receive(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        header = self._read_exactly(HEADER.size, deadline)
        (size,) = HEADER.unpack(header)
        if size > wire.MAX_REPLY:
            self._stop(f"it sent {size / 2**20:.0f} MiB, more than the {wire.MAX_REPLY // 2**20} MiB allowed")
        return self._read_exactly(size, deadline)

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        chunks, left = [], size
        while left:
            wait = deadline - time.monotonic()
            ready, _, _ = select.select([self._read], [], [], max(0.0, wait)) if wait > 0 else ([], [], [])
            if not ready:
                self._stop("it ran out of time")
            chunk = os.read(self._read, min(left, 1 << 20))
            if not chunk:
                self._stop(self._how_it_ended())
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _how_it_ended(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "it stopped answering"
        if code < 0:
            import signal
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = {"SIGKILL": " (a memory, process or time limit, or os.kill)", "SIGXCPU": " (the CPU-time limit)",
                    "SIGSEGV": " (a crash)"}.get(name, "")
            return f"it was killed by {name}{hint}"
        return f"it exited with status {code} (os._exit, sys.exit outside a cell, or a crash)"

    def _stop(self, why: str) -> None:
        self.gone = f"the process running your answers stopped: {why}"
        self.close()
        raise AnswerProcessGone(self.gone)

    def close(self) -> None:
        """Stop the process and everything it started."""
        if self.process.poll() is None:
            try:
                write_message(self._write, pickle.dumps({"op": "stop"}))
                self.process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        sandbox.kill_tree(self.process.pid)
        if self.containment is not None:
            self.containment.kill()
        self.process.wait()
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass
        self._read = self._write = -1
        if self._log is not subprocess.DEVNULL:
            self._log.close()
            self._log = subprocess.DEVNULL

    def __enter__(self) -> "AnswerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- operations ------------------------------------------------------------------------------------

    def exec_cells(self, sources: list[str], timeout: float) -> list[CellRun]:
        """Run cells in order, each with ``timeout`` seconds; how each went."""
        if not sources:
            return []
        runs = self._request({"op": "exec", "sources": sources, "timeout": timeout},
                             timeout * len(sources) + 30)
        return [CellRun(r.get("error"), bool(r.get("timeout"))) for r in runs]

    def run_cell(self, source: str, timeout: float, max_output: int) -> dict:
        """Run one cell and keep its outputs (at most ``max_output`` characters); a dict of plain values:
        ``outputs`` (nbformat output dicts), ``execution_count``, ``error``, ``timeout``, ``dropped``."""
        return self._request({"op": "run", "source": source, "timeout": timeout, "max_output": max_output},
                             timeout + 30)

    def get(self, name: str, timeout: float = 60) -> Any:
        """A RemoteFunction for a function, the value for anything else; NameError if undefined."""
        reply = self._request({"op": "get", "name": name}, timeout)
        if reply["status"] == "missing":
            raise NameError(f"name {name!r} is not defined")
        if reply["status"] == "callable":
            return RemoteFunction(self, name)
        return wire.decode(reply["value"])


class RemoteFunction:
    """A learner's function living in the answer process; calling it sends the arguments there."""

    def __init__(self, process: AnswerProcess, name: str, timeout: float = 120.0,
                 guard: tuple[str, str] | None = None) -> None:
        self.process, self.__name__, self.timeout, self.guard = process, name, timeout, guard

    def guarded(self, module: str, answer: str) -> "RemoteFunction":
        """The same function, called with the answer's own-work guard (``module.answer``) in place."""
        return RemoteFunction(self.process, self.__name__, self.timeout, (module, answer))

    def __repr__(self) -> str:
        return f"<your function {self.__name__}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(args, kwargs).result

    def call(self, args: tuple, kwargs: dict, backward: bool = False) -> "Call":
        """Call with ``args``/``kwargs``; the result, the arguments as the function left them, gradients."""
        from autograder._kit import AnswerRaised, CheckFailed

        payload = wire.dumps_request((tuple(args), dict(kwargs)))
        reply = self.process._request({"op": "call", "name": self.__name__, "payload": payload, "guard": self.guard,
                                       "backward": backward, "timeout": self.timeout}, self.timeout + 30)
        status = reply["status"]
        if status == "missing":
            raise NameError(f"name {self.__name__!r} is not defined")
        if status == "failed":
            raise CheckFailed(str(reply["message"])[:3000])
        if status == "timeout":
            raise AnswerRaised(self.__name__, "TimeoutError", f"it ran for more than {self.timeout:g} s", [])
        if status == "raised":
            raise AnswerRaised(self.__name__, str(reply["ename"]), str(reply["evalue"]),
                               [str(line) for line in reply.get("traceback") or []])
        result = wire.decode(reply["result"])
        after_args = wire.decode(reply["args"], template=list(args))
        after_kwargs = wire.decode(reply["kwargs"], template=kwargs)
        grads = wire.decode(reply["grads"]) if reply.get("grads") is not None else None
        return Call(result, tuple(after_args), after_kwargs, grads, reply.get("backward_error"))


@dataclass
class Call:
    """The outcome of one call: result, arguments afterwards (mutations visible), gradients if asked."""

    result: Any
    args: tuple
    kwargs: dict
    grads: list | None = None           # gradient of each tensor argument that requires grad, in order
    backward_error: str | None = None   # why result.backward() failed, if it did
