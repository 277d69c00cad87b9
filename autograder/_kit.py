"""Shared machinery for check functions: feedback messages, per-call seeds, calling the learner's
function (here or in the answer process), and the own-work guard."""

from __future__ import annotations

import contextlib
import functools
import random
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NoReturn

import numpy as np

from autograder import wire
from autograder.remote import Call, RemoteFunction

class CheckFailed(AssertionError):
    """A check found a wrong answer; the message says what was expected, what came and a hint."""


class AnswerRaised(Exception):
    """The learner's function raised an exception (in the answer process): its name, message, where."""

    def __init__(self, function: str, ename: str, evalue: str, where: list[str]) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.function, self.ename, self.evalue, self.where = function, ename, evalue, where

    def describe(self, question: str) -> str:
        if self.ename == "NotImplementedError":
            return not_attempted(question, self.function)
        lines = [f"{question}: your {self.function} raised {self.ename}: {self.evalue}".rstrip(": ")]
        lines += [f"  at {line}" for line in self.where[-3:]]
        return "\n".join(lines)


def not_attempted(question: str, function: str) -> str:
    return (f"{question}: not attempted yet: {function} still raises NotImplementedError; replace "
            "`raise NotImplementedError()` in its answer cell by your code and run that cell")


def fail(question: str, expected: Any, got: Any, hint: str, seed: int | None = None) -> NoReturn:
    """Raise CheckFailed with expected vs got and a hint; mention the seed that reproduces the case."""
    lines = [f"{question}: {hint}", f"  expected: {_short(expected)}", f"  got:      {_short(got)}"]
    if seed is not None:
        lines.append(f"  (this case came from seed={seed}; pass seed={seed} to the check to replay it)")
    raise CheckFailed("\n".join(lines))


def passed(question: str, what: list[str]) -> None:
    """Print what a check verified, one plain-text line each."""
    print(f"{question}: passed")
    for line in what:
        print(f"  - {line}")


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def new_seed(seed: int | None) -> int:
    """A fresh seed for each call (so hard-coded answers fail) unless one is given to replay a case."""
    return random.SystemRandom().randrange(2**31) if seed is None else int(seed)


def rng(seed: int) -> np.random.Generator:
    """The one random generator a check draws its cases from."""
    return np.random.default_rng(seed)


def ensure_callable(question: str, func: Any, name: str) -> None:
    """Fail early, with a friendly message, when the answer is not a function yet."""
    if not callable(func):
        fail(question, f"a function {name}(...)", type(func).__name__,
             f"define {name} in the answer cell above and run that cell first")


def call(func: Callable, *args: Any, backward: bool = False, **kwargs: Any) -> Call:
    """Call the learner's function; the result, the arguments as it left them, and on request the

    gradients that ``result.backward()`` gives the tensor arguments (or why it failed).
    """
    if isinstance(func, RemoteFunction):
        return func.call(args, kwargs, backward=backward)
    result = func(*args, **kwargs)
    outcome = Call(result, args, kwargs)
    torch = sys.modules.get("torch")
    if backward and torch is not None and isinstance(result, torch.Tensor) and result.ndim == 0 \
            and result.requires_grad:
        try:
            result.backward()
        except RuntimeError as err:
            outcome.backward_error = str(err).splitlines()[0][:300] if str(err) else "RuntimeError"
        else:
            outcome.grads = [t.grad for t in wire.tensors_in((args, kwargs)) if t.requires_grad]
    return outcome


class named_errors:
    """``with named_errors(question, hint): ...``: an exception from the learner's function inside becomes
    a CheckFailed that names its likely cause (``hint``) beside the error itself."""

    def __init__(self, question: str, hint: str, seed: int | None = None) -> None:
        self.question, self.hint, self.seed = question, hint, seed

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, _: Any) -> bool:
        if error is None or isinstance(error, CheckFailed) or not isinstance(error, Exception):
            return False
        text = f"{error.ename}: {error.evalue}" if isinstance(error, AnswerRaised) else f"{kind.__name__}: {error}"
        if isinstance(error, AnswerRaised) and error.ename == "NotImplementedError":
            return False
        fail(self.question, "no error", text.splitlines()[0][:200], self.hint, self.seed)


# --- own work: the answer must not delegate to the reference implementation -----------------------

class _Delegated(Exception):
    """Raised by a tripwire put in place of a reference function while the learner's code runs."""


def _referenced_objects(func: Callable, depth: int = 3) -> Iterator[Any]:
    """Everything a function can reach by name: globals, module attributes, closures, defaults."""
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(func, 0)]
    while todo:
        obj, level = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        obj = getattr(obj, "__wrapped__", obj)
        if isinstance(obj, functools.partial):
            yield obj.func
            todo.append((obj.func, level))
            continue
        code = getattr(obj, "__code__", None)
        if code is None:
            continue
        namespace = getattr(obj, "__globals__", {})
        names = set(_code_names(code))
        found: list[Any] = []
        for name in names:
            if name in namespace:
                found += _through_modules(namespace[name], names)
        found += [cell.cell_contents for cell in (obj.__closure__ or ()) if _has_contents(cell)]
        found += list(obj.__defaults__ or ()) + list((obj.__kwdefaults__ or {}).values())
        for value in found:
            yield value
            if level < depth and callable(value) and getattr(value, "__module__", None) == "__main__":
                todo.append((value, level + 1))


def _through_modules(value: Any, names: set[str], depth: int = 3) -> list[Any]:
    """``value`` and, if it is a module, the attributes the code may reach through it (a.b.c)."""
    found = [value]
    if isinstance(value, types.ModuleType) and depth:
        for attr in names:
            if attr in vars(value):
                found += _through_modules(vars(value)[attr], names, depth - 1)
    return found


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    yield from code.co_freevars
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _has_contents(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Answer:
    """One question's answer function: its name, and the references it must not reach (looked up at
    check time, so they are the objects the learner's code could reach at that moment)."""

    question: str
    name: str
    forbidden: Callable[[], dict[str, Callable]] | None = None
    hint: str = ""
    module: str = ""  # the check module defining this Answer (the answer process looks it up there)

    def prepare(self, func: Any, seed: int | None) -> tuple[Callable, int]:
        """The start of every check: a function was given, a seed is drawn, the reference is off limits."""
        ensure_callable(self.question, func, self.name)
        seed = new_seed(seed)
        if isinstance(func, RemoteFunction):
            return (func.guarded(self.module, self.name) if self.forbidden is not None else func), seed
        if self.forbidden is not None:
            func = guard(self.question, func, self.forbidden(), self.hint)
        return _attempted(self.question, self.name, func), seed


def answer_named(module: types.ModuleType, name: str) -> Answer:
    """The Answer for function ``name`` defined in check module ``module``."""
    for value in vars(module).values():
        if isinstance(value, Answer) and value.name == name:
            return value
    raise LookupError(f"{module.__name__} defines no Answer for {name!r}")


def _attempted(question: str, name: str, func: Callable) -> Callable:
    """``func``, with NotImplementedError (the exercise's stub) turned into "not attempted yet"."""
    @functools.wraps(func)
    def attempted(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NotImplementedError:
            raise CheckFailed(not_attempted(question, name)) from None
    return attempted


def check(answer: Answer) -> Callable[[Callable], Callable]:
    """Decorate a check body ``body(func, seed)``: preparation, and exceptions named for learners."""
    def decorate(body: Callable[[Callable, int], None]) -> Callable:
        @functools.wraps(body)
        def run(func: Any, seed: int | None = None) -> None:
            func, seed = answer.prepare(func, seed)
            try:
                return body(func, seed)
            except AnswerRaised as raised:
                raise CheckFailed(raised.describe(answer.question)) from None
        run.answer = answer
        return run
    return decorate


def references(*items: tuple[types.ModuleType, str]) -> dict[str, Callable]:
    """Reference functions an answer must not call, keyed ``"rice_lab's NAME"``: each ``(module, NAME)``
    as this checker sees it, and as the notebook's process has the module imported when that is another
    object (a reloaded module), keyed ``"rice_lab's NAME (imported)"``."""
    import importlib

    found: dict[str, Callable] = {}
    for module, name in items:
        label = f"rice_lab's {name}"
        found[label] = getattr(module, name)
        loaded = sys.modules.get(module.__name__) or importlib.import_module(module.__name__)
        if getattr(loaded, name, None) is not None and getattr(loaded, name) is not found[label]:
            found[f"{label} (imported)"] = getattr(loaded, name)
    return found


def guard(question: str, func: Callable, forbidden: dict[str, Callable], hint: str) -> Callable:
    """Fail now if ``func`` reaches a forbidden reference by name; return ``func`` wrapped so that

    calling the reference at run time (however it was looked up) fails too.
    """
    targets = {id(obj): label for label, obj in forbidden.items()}
    for obj in _referenced_objects(func):
        if id(getattr(obj, "__func__", obj)) in targets:
            fail(question, "your own implementation", f"a call to {targets[id(getattr(obj, '__func__', obj))]}",
                 hint)

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        tripped: list[str] = []
        patches = _install_tripwires(forbidden, tripped, extra=[getattr(func, "__globals__", None)])
        try:
            result = func(*args, **kwargs)
        except _Delegated:
            result = None
        finally:
            for namespace, name, original in patches:
                namespace[name] = original
        if tripped:
            fail(question, "your own implementation", f"a call to {tripped[0]}", hint)
        return result

    return guarded


def _install_tripwires(forbidden: dict[str, Callable], tripped: list[str],
                       extra: list[dict | None]) -> list[tuple[dict, str, Any]]:
    """Replace every binding of a forbidden object in loaded modules with a tripwire; return undo info."""
    namespaces = [vars(m) for name, m in list(sys.modules.items())
                  if m is not None and (name.split(".")[0] in ("rice_lab", "autograder", "__main__"))]
    namespaces += [ns for ns in extra if ns is not None]
    patches = []
    for label, obj in forbidden.items():
        def tripwire(*args: Any, _label: str = label, **kwargs: Any) -> NoReturn:
            tripped.append(_label)
            raise _Delegated(_label)
        for namespace in namespaces:
            for name, value in list(namespace.items()):
                if value is obj:
                    patches.append((namespace, name, value))
                    namespace[name] = tripwire
    return patches


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Small tensors: one thread is fastest and does not fight other kernels for the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
