"""The answer process: re-runs a learner's notebook cells, then answers calls to their functions.

Started by :class:`autograder.remote.AnswerProcess` (``python -m autograder.answers FD_IN FD_OUT``),
usually inside the sandbox. Every check runs in the process that started this one, which the
learner's code never runs in: rebinding ``numpy.allclose`` here, or anything else, changes only what
this process computes, and what it computes comes back as plain values (:mod:`autograder.wire`).

Requests are pickles from the checking process; replies are encoded trees. Operations:
``exec`` (run cells, each with a time limit), ``get`` (a name's value, or that it is a function),
``call`` (call a function on pickled arguments; reply with the result, the arguments afterwards, and
on request the gradients a backward pass gives the tensor arguments), ``stop``.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import struct
import sys
import traceback
from typing import Any, Callable

from autograder import wire

HEADER = struct.Struct("!Q")


class _Timeout(BaseException):
    """Raised inside the learner's code when its time is up (not an Exception: `except Exception` misses it)."""


def read_message(fd: int) -> bytes | None:
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > wire.MAX_REPLY:
        raise wire.WireError(f"message of {size} bytes refused")
    return _read_exactly(fd, size)


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_message(fd: int, payload: bytes) -> None:
    data = HEADER.pack(len(payload)) + payload
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _CappedText:
    """A text stream that keeps at most ``limit`` characters (the rest is counted, not kept)."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.kept = 0
        self.limit = limit
        self.dropped = 0

    def write(self, text: str) -> int:
        room = self.limit - self.kept
        if room > 0:
            self.parts.append(text[:room])
            self.kept += min(len(text), room)
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"

    def value(self) -> str:
        return "".join(self.parts)


class Server:
    """The namespace the cells run in (an IPython shell, as in a kernel), and the operations on it."""

    def __init__(self) -> None:
        from IPython.core.interactiveshell import InteractiveShell

        self.shell = InteractiveShell.instance(colors="nocolor")
        self.shell.enable_gui = lambda gui=None: None  # `%matplotlib inline` works without a front end
        self.outputs: list[dict] | None = None  # the running cell's rich outputs, when captured
        self.shell._showtraceback = self._record_traceback
        self.shell.displayhook.write_output_prompt = lambda: None
        self.shell.displayhook.write_format_data = self._record_result
        try:
            self.shell.enable_matplotlib("inline")  # figures are displayed at the end of each cell, as in Jupyter
        except Exception:  # no matplotlib: nothing to show
            pass

    def _record_traceback(self, etype: type, evalue: BaseException, stb: list[str]) -> None:
        if self.outputs is not None:
            self.outputs.append({"output_type": "error", "ename": etype.__name__, "evalue": str(evalue)[:2000],
                                 "traceback": [line[:2000] for line in stb[-60:]]})

    def _record_result(self, data: dict, metadata: dict | None = None) -> None:
        if self.outputs is not None:
            data = {k: v for k, v in data.items() if isinstance(v, str)}
            self.outputs.append({"output_type": "execute_result", "data": data, "metadata": _plain(metadata or {}),
                                 "execution_count": self.shell.execution_count})

    def run_cell(self, source: str, timeout: float, max_output: int) -> dict:
        """Run one cell as a kernel would; its outputs (streams, displays, result, error), capped in size."""
        from IPython.core.displaypub import CapturingDisplayPublisher

        out, err = _CappedText(max_output), _CappedText(max_output)
        publisher, saved = CapturingDisplayPublisher(), (sys.stdout, sys.stderr, self.shell.display_pub)
        self.outputs, timed_out, error = [], False, None
        sys.stdout, sys.stderr, self.shell.display_pub = out, err, publisher
        try:
            with _time_limit(timeout):
                result = self.shell.run_cell(source, store_history=True)
            error = result.error_before_exec or result.error_in_exec
        except _Timeout:
            timed_out = True
        finally:
            sys.stdout, sys.stderr, self.shell.display_pub = saved
        if isinstance(error, _Timeout):
            error, timed_out = None, True
        outputs = []
        for name, stream in (("stdout", out), ("stderr", err)):
            if stream.kept:
                outputs.append({"output_type": "stream", "name": name, "text": stream.value()})
        size = 0
        for display in publisher.outputs:
            data = {k: v for k, v in (display.get("data") or {}).items() if isinstance(v, str)}
            size += sum(len(v) for v in data.values())
            if size <= max_output:
                outputs.append({"output_type": "display_data", "data": data,
                                "metadata": _plain(display.get("metadata") or {})})
        outputs += [o for o in self.outputs if o["output_type"] == "execute_result"]
        outputs += [o for o in self.outputs if o["output_type"] == "error" and o["ename"] != "_Timeout"]
        if timed_out:
            outputs.append({"output_type": "error", "ename": "CellTimeoutError",
                            "evalue": f"the cell ran for more than {timeout:g} s and was stopped",
                            "traceback": [f"CellTimeoutError: the cell ran for more than {timeout:g} s"]})
        self.outputs = None
        dropped = out.dropped + err.dropped + max(0, size - max_output)
        return {"outputs": outputs, "dropped": dropped, "execution_count": self.shell.execution_count - 1,
                "error": _one_line(error) if error is not None else None, "timeout": timed_out}

    def exec_cells(self, sources: list[str], timeout: float) -> list[dict]:
        """Run cells without keeping their outputs; each one's first error, or that it ran out of time."""
        runs = []
        for source in sources:
            run = self.run_cell(source, timeout, 0)
            runs.append({"error": run["error"], "timeout": run["timeout"]})
        return runs

    def get(self, name: str) -> dict:
        if name not in self.shell.user_ns:
            return {"status": "missing"}
        value = self.shell.user_ns[name]
        if callable(value):
            return {"status": "callable"}
        return {"status": "value", "value": wire.encode(value)}

    def call(self, name: str, payload: bytes, guard: tuple[str, str] | None, backward: bool, timeout: float) -> dict:
        func = self.shell.user_ns.get(name)
        if func is None:
            return {"status": "missing"}
        args, kwargs = pickle.loads(payload)
        if guard is not None:
            from autograder._kit import CheckFailed, answer_named, guard as guard_function
            answer = answer_named(importlib.import_module(guard[0]), guard[1])
            try:
                func = guard_function(answer.question, func, answer.forbidden(), answer.hint)
            except CheckFailed as failed:
                return {"status": "failed", "message": str(failed)}
        figures = _open_figures()
        try:
            return self._call(func, args, kwargs, backward, timeout)
        finally:
            _close_new_figures(figures)  # a check's figures are the check's: the notebook does not show them

    def _call(self, func: Callable, args: tuple, kwargs: dict, backward: bool, timeout: float) -> dict:
        try:
            with _time_limit(timeout):
                result = func(*args, **kwargs)
        except _Timeout:
            return {"status": "timeout"}
        except Exception as err:  # the learner's exception travels back as text
            from autograder._kit import CheckFailed
            if isinstance(err, CheckFailed):  # the guard found a call to the reference
                return {"status": "failed", "message": str(err)}
            return {"status": "raised", "ename": type(err).__name__, "evalue": str(err)[:2000],
                    "traceback": _learner_frames(err)}
        reply = {"status": "ok", "result": wire.encode(result), "args": wire.encode(list(args)),
                 "kwargs": wire.encode(kwargs), "grads": None, "backward_error": None}
        if backward:
            reply.update(_backward(result, args, kwargs))
            reply["args"] = wire.encode(list(args))
        return reply


def _open_figures() -> set[int]:
    pyplot = sys.modules.get("matplotlib.pyplot")
    return set(pyplot.get_fignums()) if pyplot is not None else set()


def _close_new_figures(before: set[int]) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        for number in set(pyplot.get_fignums()) - before:
            pyplot.close(number)


def _backward(result: Any, args: Any, kwargs: Any) -> dict:
    """Backpropagate a 0-dim tensor result; the gradients of the tensor arguments, in order."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(result, torch.Tensor) or result.ndim != 0 or not result.requires_grad:
        return {}
    try:
        result.backward()
    except RuntimeError as err:
        return {"backward_error": str(err).splitlines()[0][:300] if str(err) else "RuntimeError"}
    leaves = [t for t in wire.tensors_in([args, kwargs]) if t.requires_grad]
    return {"grads": wire.encode([None if t.grad is None else t.grad for t in leaves])}


def _plain(value: Any) -> Any:
    """Metadata reduced to JSON values (what a notebook can hold)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _one_line(error: BaseException) -> str:
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}".rstrip(": ")[:500]


def _learner_frames(err: BaseException) -> list[str]:
    """The traceback lines that point into the learner's cells (not into this module)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename != __file__]
    return [f"{f.filename}, line {f.lineno}: {(f.line or '').strip()}"[:300] for f in frames[-5:]]


class _time_limit:
    """Raise _Timeout in the running code after ``seconds`` (POSIX; elsewhere the caller's timeout acts)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        if hasattr(signal, "setitimer") and self.seconds:
            signal.signal(signal.SIGALRM, _raise_timeout)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: Any) -> None:
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)


def _raise_timeout(*_: Any) -> None:
    raise _Timeout()


def serve(fd_in: int, fd_out: int) -> None:
    """Answer requests until ``stop`` or until the checking process goes away."""
    server = Server()
    handlers: dict[str, Callable[..., Any]] = {
        "exec": lambda r: server.exec_cells(r["sources"], r["timeout"]),
        "run": lambda r: server.run_cell(r["source"], r["timeout"], r["max_output"]),
        "get": lambda r: server.get(r["name"]),
        "call": lambda r: server.call(r["name"], r["payload"], r.get("guard"), r.get("backward", False),
                                      r["timeout"]),
        "ping": lambda r: "pong",
    }
    while True:
        message = read_message(fd_in)
        if message is None:
            return
        request = pickle.loads(message)
        if request["op"] == "stop":
            return
        try:
            reply = {"ok": handlers[request["op"]](request)}
        except Exception as err:  # a failure of this server itself (or of encoding a strange result)
            reply = {"error": f"{type(err).__name__}: {str(err)[:500]}"}
        try:
            payload = wire.dumps(reply)
        except Exception as err:
            payload = wire.dumps({"error": f"the reply could not be encoded: {type(err).__name__}"})
        write_message(fd_out, payload)


def main(argv: list[str]) -> int:
    """``python -m autograder.answers [MODULE ...]``: serve on stdin/stdout, after importing the modules."""
    # stdin and stdout are the channel: move them to fds of their own, so that nothing the learner's code
    # writes (print to sys.__stdout__, os.write(1, ...), C code) can reach it. fd 1 then goes to the log.
    fd_in, fd_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    if sys.platform == "win32":
        import msvcrt
        for fd in (fd_in, fd_out):
            msvcrt.setmode(fd, os.O_BINARY)
    sys.stdin = open(os.devnull)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    for module in argv:
        importlib.import_module(module)
    serve(fd_in, fd_out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
