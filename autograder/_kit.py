"""Shared machinery for check functions: feedback messages, per-call seeds, and the own-work guard."""

from __future__ import annotations

import functools
import importlib.util
import random
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

import numpy as np

PACKAGE_DIR = Path(__file__).resolve().parent


class CheckFailed(AssertionError):
    """A check found a wrong answer; the message says what was expected, what came and a hint."""


def fail(question: str, expected: Any, got: Any, hint: str, seed: int | None = None) -> NoReturn:
    """Raise CheckFailed with expected vs got and a hint; mention the seed that reproduces the case."""
    lines = [f"{question}: {hint}", f"  expected: {_short(expected)}", f"  got:      {_short(got)}"]
    if seed is not None:
        lines.append(f"  (this case came from seed={seed}; pass seed={seed} to the check to replay it)")
    raise CheckFailed("\n".join(lines))


def passed(question: str, what: list[str]) -> None:
    """Print what a check verified, one line each."""
    print(f"{question}: passed")
    for line in what:
        print(f"  ✓ {line}")


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
    check time, so a private copy of a check module guards against its own copies of the references)."""

    question: str
    name: str
    forbidden: Callable[[], dict[str, Callable]] | None = None
    hint: str = ""

    def prepare(self, func: Any, seed: int | None) -> tuple[Callable, int]:
        """The start of every check: a function was given, a seed is drawn, the reference is off limits."""
        ensure_callable(self.question, func, self.name)
        seed = new_seed(seed)
        if self.forbidden is not None:
            func = guard(self.question, func, self.forbidden(), self.hint)
        return func, seed


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


# --- fresh copies: hidden tests never trust what the notebook may have patched ----------------------

def fresh(module: str, namespace: dict | None = None) -> types.ModuleType:
    """Load a private copy of ``autograder.<module>`` (and of what it imports) from disk and verify

    that neither the loaded module nor the notebook ``namespace`` holds modified check functions.
    """
    checks = _load_private(f"autograder.{module}", PACKAGE_DIR / f"{module}.py")
    for name, value in list(vars(checks).items()):
        if isinstance(value, types.ModuleType) and value.__name__.split(".")[0] in ("rice_lab", "autograder"):
            origin = importlib.util.find_spec(value.__name__).origin
            setattr(checks, name, _load_private(value.__name__, Path(origin)))
    checks.verify_untouched(sys.modules.get(f"autograder.{module}"), namespace)
    return checks


def _load_private(name: str, path: Path) -> types.ModuleType:
    """Execute ``path`` as a new module under a private name (never the name the notebook imports)."""
    spec = importlib.util.spec_from_file_location(f"_fresh_{name.replace('.', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def verify_untouched(fresh_module: types.ModuleType, loaded: types.ModuleType | None,
                     check_names: list[str], namespace: dict | None = None) -> None:
    """Fail when a check function in the loaded module (or the notebook) differs from the file's."""
    places = [("autograder module", vars(loaded) if loaded is not None else {})]
    if namespace is not None:
        places.append(("notebook", namespace))
    for name in check_names:
        original = getattr(fresh_module, name).__code__.co_code
        for where, values in places:
            current = values.get(name)
            if current is None:
                continue
            code = getattr(current, "__code__", None)
            if code is None or code.co_code != original:
                raise CheckFailed(f"{name} in the {where} was replaced or modified in this notebook; "
                                  "checks must stay as they were released, so this question scores zero.")
