"""The checking side of :mod:`autograder.answers`: start the answer process, run cells there, and call the
learner's functions through :class:`RemoteFunction`, which a check uses like the function itself."""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder import sandbox, wire
from autograder.answers import read_message, write_message

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
        command = [sys.executable, "-m", "autograder.answers", *preload]
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
        # The child's stdin and stdout are the channel (it moves them aside at once, see answers.main); a
        # thread reads replies, so waiting with a time limit works on every platform.
        self.process = subprocess.Popen(command, cwd=self.cwd, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._log,
                                        start_new_session=sys.platform != "win32")
        self._replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read_replies, daemon=True).start()
        self._request({"op": "ping"}, START_TIMEOUT)

    # --- the channel -----------------------------------------------------------------------------------

    def _read_replies(self) -> None:
        """Reader thread: every reply (bytes) onto the queue; an error text, then None, at the end."""
        fd = self.process.stdout.fileno()
        try:
            while True:
                message = read_message(fd)
                self._replies.put(message)
                if message is None:
                    return
        except (OSError, ValueError, wire.WireError) as err:
            self._replies.put(f"it sent something that is not a reply ({err})")
            self._replies.put(None)

    def _request(self, request: dict, timeout: float) -> Any:
        if self.gone:
            raise AnswerProcessGone(self.gone)
        try:
            write_message(self.process.stdin.fileno(), pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
        except (OSError, ValueError):
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
        try:
            payload = self._replies.get(timeout=timeout)
        except queue.Empty:
            self._stop("it ran out of time")
        if payload is None:
            self._stop(self._how_it_ended())
        if isinstance(payload, str):
            self._stop(payload)
        return payload

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
                write_message(self.process.stdin.fileno(), pickle.dumps({"op": "stop"}))
                self.process.wait(timeout=2)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        sandbox.kill_tree(self.process.pid)
        if self.containment is not None:
            self.containment.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
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
