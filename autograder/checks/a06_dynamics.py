"""Checks for assignment 06-dynamics, what changes at the drop: linear CKA, the change point of a series,
and both run on the checkpoint series of a pre-training run.

Each ``check_*`` runs the learner's function on cases drawn from its seed: feature matrices with large
column offsets, columns of different scales, more features than rows, and float16 features like the
series'; series with a level shift beside a larger single-point spike, a spike at an end that only
``min_size`` keeps from being split off, shifts at the first and last split ``min_size`` allows and an
exact tie; a made-up checkpoint series shaped like a real run (a fast first descent, a plateau, a second
descent), and the provided series itself (:func:`autograder.datasets.dynamics_series`). CKA is compared
with ``rice_lab``'s ``linear_cka``, change points with this module's brute force (every split tried),
and the answers on a series with :func:`reference_what_changes`, computed from the file when the check
runs: a denser series may replace the file, and nothing here knows its numbers. Every case is drawn so
that the typical slips give other answers; those slips only name the mistake. ``check_*_hidden`` adds
the cases used only when grading.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Callable

import numpy as np

from autograder import _kit

Q1, Q2, Q3 = "linear_cka", "change_point", "what_changes"
# rice_lab's similarity module (torch) is imported when a reference is needed: a grader checking a notebook
# whose answers are not written yet never pays for it.
REFERENCE_MODULES = {"similarity": "rice_lab.explain.similarity"}
CKA_TOL = 1e-7            # absolute and relative: float64 answers agree with rice_lab's to about 1e-15
RATIO_TOL = 1e-4          # relative, for (1 - CKA) / (1 - CKA): a ratio of two small differences
TIE_TOL = 1e-7            # a split within this share of the series' spread from the best one is a tie in floats
# What the notebook asks of the provided series (its setup cell states the same values).
FILE_PARAMETERS = {"window": 16, "search_from": 400, "min_size": 5, "threshold": 0.95}
HIDDEN_FILE_PARAMETERS = {"window": 32, "search_from": 480, "min_size": 3, "threshold": 0.98}
SERIES_KEYS = ("steps", "features", "loss_fixed_crops", "curve_step", "curve_loss", "label", "background",
               "n_prototypes", "queue_start_step")
ANSWER_KEYS = ("drop_step", "cka_across_drop", "plateau_cka", "change_ratio", "settled_step", "lead")
STEP_KEYS = ("drop_step", "settled_step", "lead")


def _module(key: str) -> Any:
    import importlib

    return importlib.import_module(REFERENCE_MODULES[key])


def _as_number(value: Any) -> float | None:
    """``value`` as a float (a Python or NumPy number, a one-element array or tensor), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return float(array.reshape(-1)[0]) if array.size == 1 and array.ndim <= 1 else None


def _raised(func: Callable, *args: Any) -> tuple[str, str] | None:
    """(exception name, message) if calling ``func`` raises, else None."""
    try:
        _kit.call(func, *args)
    except _kit.CheckFailed:
        raise
    except _kit.AnswerRaised as err:
        return err.ename, err.evalue
    except Exception as err:
        return type(err).__name__, str(err)
    return None


# --- question 1: linear CKA -----------------------------------------------------------------------------

def reference_cka(x: Any, y: Any) -> float:
    """rice_lab's linear CKA (the biased HSIC form on column-centred features, in float64)."""
    return float(_module("similarity").linear_cka(np.asarray(x), np.asarray(y)))


def _plain_cka(x: np.ndarray, y: np.ndarray, square: bool = True, denominator: str = "norms") -> float:
    """||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F) of ``x`` and ``y`` as given (no centring), or a slip of it."""
    cross = np.linalg.norm(y.T @ x)
    self_x, self_y = np.linalg.norm(x.T @ x), np.linalg.norm(y.T @ y)
    numerator = cross ** 2 if square else cross
    norms = {"norms": self_x * self_y, "squares": self_x ** 2 * self_y ** 2,
             "traces": np.sum(x * x) * np.sum(y * y)}[denominator]
    return float(numerator / norms)


def _cka_slips(x: Any, y: Any) -> dict[str, float]:
    """The CKA each typical slip gives for (x, y), with the hint that names it."""
    x, y = np.asarray(x), np.asarray(y)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)

    def columns(a: np.ndarray) -> np.ndarray:
        return a - a.mean(axis=0)

    cx, cy = columns(x64), columns(y64)
    with np.errstate(all="ignore"):
        slips = {
            "centre each column first (x - x.mean(axis=0)): without centring, the features' offsets count as "
            "structure the two sets share": _plain_cka(x64, y64),
            "centre the columns (axis=0: each feature's mean over the rows), not the rows (axis=1)":
                _plain_cka(x64 - x64.mean(axis=1, keepdims=True), y64 - y64.mean(axis=1, keepdims=True)),
            "centre each column by its own mean (x.mean(axis=0)), not by the mean of the whole matrix":
                _plain_cka(x64 - x64.mean(), y64 - y64.mean()),
            "square the numerator: ||Y^T X||_F ** 2 (HSIC of the two linear kernels) over "
            "||X^T X||_F ||Y^T Y||_F": _plain_cka(cx, cy, square=False),
            "the denominator is the product of the norms ||X^T X||_F ||Y^T Y||_F, not of their squares":
                _plain_cka(cx, cy, denominator="squares"),
            "the denominator is ||X^T X||_F ||Y^T Y||_F (= ||K||_F ||L||_F for the Gram matrices K = X X^T, "
            "L = Y Y^T), not ||X||_F^2 ||Y||_F^2 (= trace K trace L)": _plain_cka(cx, cy, denominator="traces"),
            "do not standardise the columns (divide by their standard deviations): linear CKA weighs each "
            "feature by its variance":
                _plain_cka(cx / np.where(cx.std(axis=0) > 0, cx.std(axis=0), 1.0),
                           cy / np.where(cy.std(axis=0) > 0, cy.std(axis=0), 1.0)),
        }
        if x.dtype == np.float16 or y.dtype == np.float16:
            half_x, half_y = x - x.mean(axis=0), y - y.mean(axis=0)  # float16 arithmetic throughout
            slips["work in float64 (np.asarray(x, dtype=np.float64)): in float16, the features' products "
                  "overflow (its largest number is 65504) and the centring loses digits"] = \
                _plain_cka(half_x, half_y)
    return slips


def _close_cka(got: float, expected: float) -> bool:
    return bool(np.isclose(got, expected, rtol=CKA_TOL, atol=CKA_TOL)) or (math.isnan(got) and math.isnan(expected))


def _distinct_cka(x: np.ndarray, y: np.ndarray, margin: float = 1e-3) -> bool:
    right = reference_cka(x, y)
    return math.isfinite(right) and all(not (abs(slip - right) < margin) for slip in _cka_slips(x, y).values())


def _offset(gen: np.random.Generator, columns: int) -> np.ndarray:
    return gen.uniform(20, 200, columns) * gen.choice([-1.0, 1.0], columns)


def cka_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x (n, d1) and y (n, d2), d2 > d1: y a noisy linear map of x; columns of different scales and large
    offsets (far from centred). Redrawn until every slip gives another CKA."""
    for attempt in range(200):
        gen = _kit.rng(seed * 1000 + attempt)
        n, d1 = int(gen.integers(24, 61)), int(gen.integers(5, 16))
        d2 = d1 + int(gen.integers(3, 12))
        x = gen.normal(0, 1, (n, d1)) * gen.uniform(0.3, 3.0, d1)
        y = (x @ gen.normal(0, 1, (d1, d2)) + gen.normal(0, gen.uniform(1, 3), (n, d2))) * gen.uniform(0.3, 3.0, d2)
        x, y = x + _offset(gen, d1), y + _offset(gen, d2)
        if _distinct_cka(x, y):
            return x, y
    raise RuntimeError(f"no distinguishing CKA case for seed {seed}")


def wide_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """More features than rows on both sides (the Gram form is the cheaper one), offsets included."""
    for attempt in range(200):
        gen = _kit.rng(seed * 1000 + attempt)
        n = int(gen.integers(8, 17))
        d1, d2 = int(gen.integers(25, 50)), int(gen.integers(18, 40))
        x = gen.normal(0, 1, (n, d1)) * gen.uniform(0.5, 2.0, d1) + _offset(gen, d1)
        y = np.tanh(x[:, :min(d1, d2)] @ gen.normal(0, 0.2, (min(d1, d2), d2))) + gen.normal(0, 0.5, (n, d2))
        y += _offset(gen, d2)
        if _distinct_cka(x, y):
            return x, y
    raise RuntimeError(f"no distinguishing wide case for seed {seed}")


def half_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float16 features like the series': ReLU outputs of 60-90 photos, 96-128 and 48-96 features."""
    gen = _kit.rng(seed)
    n, d1, d2 = int(gen.integers(60, 91)), int(gen.integers(96, 129)), int(gen.integers(48, 97))
    x = np.maximum(gen.normal(0.4, 1.0, (n, d1)) * gen.uniform(0.5, 2.5, d1), 0)
    y = np.maximum(x @ gen.normal(0, 1 / math.sqrt(d1), (d1, d2)) * 2 + gen.normal(0.3, 0.6, (n, d2)), 0)
    return x.astype(np.float16), y.astype(np.float16)


def _orthogonal(gen: np.random.Generator, size: int) -> np.ndarray:
    q, r = np.linalg.qr(gen.normal(0, 1, (size, size)))
    return q * np.sign(np.diag(r))


def _general_map(gen: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """An invertible map of x's features (singular values 0.1 to 10) that changes CKA(x, y) by 0.02 or more."""
    d = x.shape[1]
    before = reference_cka(x, y)
    for _ in range(100):
        scales = 10 ** gen.uniform(-1, 1, d)
        mapping = _orthogonal(gen, d) @ np.diag(scales) @ _orthogonal(gen, d)
        if abs(reference_cka(x @ mapping, y) - before) >= 0.02:
            return mapping
    raise RuntimeError("no invertible map that changes CKA")


def _compare_cka(func: Callable, x: np.ndarray, y: np.ndarray, seed: int, case: str,
                 property_hint: str | None = None) -> float:
    """The learner's CKA of (x, y) if it is rice_lab's; else fail naming the slip (or ``property_hint``)."""
    with np.errstate(all="ignore"), _kit.named_errors(
            Q1, "x and y are NumPy arrays (rows, features) with the same rows; return one float" + case, seed):
        outcome = _kit.call(func, x.copy(), y.copy())
    after_x, after_y = (np.asarray(a) for a in outcome.args)
    if not (np.array_equal(after_x, x) and np.array_equal(after_y, y)):
        _kit.fail(Q1, "x and y unchanged", "they were changed in place",
                  "centre copies: x - x.mean(axis=0) makes one; x -= ... changes the caller's features" + case, seed)
    got = _as_number(outcome.result)
    if got is None:
        _kit.fail(Q1, "a float", _kit._short(outcome.result, 120), "return one number: float(...)" + case, seed)
    expected = reference_cka(x, y)
    if _close_cka(got, expected):
        return got
    for hint, slip in _cka_slips(x, y).items():
        if _close_cka(got, slip) and not _close_cka(slip, expected):
            break
    else:
        if abs(got - expected) < 1e-4:
            hint = (f"off by {abs(got - expected):.1e}, a rounding error: work in float64 (np.asarray(x, "
                    "dtype=np.float64)); float32 keeps about 7 digits, and the offsets and products eat them")
        else:
            hint = property_hint or ("centre each column, then ||Y^T X||_F ** 2 / (||X^T X||_F ||Y^T Y||_F), in "
                                     "float64; check it by hand on two small matrices")
    _kit.fail(Q1, round(expected, 9), got, hint + case, seed)


def _check_rows(func: Callable, x: np.ndarray, y: np.ndarray, seed: int) -> str:
    """Different row counts must raise ValueError naming both counts; returns its message."""
    short = y[: len(y) - 1 - len(y) // 4]
    raised = _raised(func, x.copy(), short.copy())
    hint = (f"x and y describe the same items row by row: check first and raise ValueError naming both counts, "
            f"e.g. raise ValueError(f\"x has {{len(x)}} rows, y has {{len(y)}}: CKA compares the same items\")"
            f" (case: x has {len(x)} rows, y has {len(short)})")
    if raised is None:
        _kit.fail(Q1, "ValueError", "no error", hint, seed)
    name, message = raised
    if name != "ValueError" or str(len(x)) not in message or str(len(short)) not in message or \
            "row" not in message.lower():
        why = "numpy's own error does not say it is about rows" if name == "ValueError" else \
            f"raise ValueError, not {name}"
        _kit.fail(Q1, f"ValueError naming {len(x)} and {len(short)} rows", f"{name}: {message[:160]}",
                  f"{hint}; {why}", seed)
    return message


ROTATION = ("rotating x's features (x @ Q, Q orthogonal) must not change CKA: use only the column centring and "
            "Frobenius norms of the formula, which a rotation leaves alone")
SCALE = "multiplying x by a number must not change CKA: divide by both norms, ||X^T X||_F ||Y^T Y||_F"
SHIFT = "adding a constant to each feature of x must not change CKA: centre each column (x - x.mean(axis=0))"
GENERAL = ("a general invertible linear map of x's features changes linear CKA (only rotations and one common "
           "scale leave it alone): do not whiten or standardise the features")
SELF = "CKA(x, x) is 1: the numerator ||X^T X||_F ** 2 equals the denominator"

LINEAR_CKA = _kit.Answer(
    Q1, "linear_cka", lambda: {**_kit.references((_module("similarity"), "linear_cka"),
                                                 (_module("similarity"), "cka")),
                               "the autograder's reference": reference_cka},
    hint="compute CKA yourself; do not call rice_lab's linear_cka or cka (the references)", module=__name__)


@_kit.check(LINEAR_CKA)
def check_linear_cka(linear_cka: Callable, seed: int) -> None:
    """Visible check for question 1: offsets, different widths, more features than rows, float16, the
    invariances, CKA(x, x) and different row counts."""
    gen = _kit.rng(seed + 7)
    x, y = cka_case(seed)
    n, d1, d2 = x.shape[0], x.shape[1], y.shape[1]
    case = f" (case: {n} rows, {d1} and {d2} features, columns of different scales offset by up to 200)"
    value = _compare_cka(linear_cka, x, y, seed, case)
    mapping = _general_map(gen, x, y)
    transformed = {"rotation": (x @ _orthogonal(gen, d1), ROTATION),
                   "scale": (x * 10 ** gen.uniform(-2, 2), SCALE),
                   "shift": (x + gen.normal(0, 500, d1), SHIFT),
                   "general": (x @ mapping, GENERAL)}
    for name, (changed, hint) in transformed.items():
        _compare_cka(linear_cka, changed, y, seed, case + f" with x transformed ({name})", hint)
    general = reference_cka(x @ mapping, y)
    _compare_cka(linear_cka, x, x, seed, case + " against itself", SELF)
    wide_x, wide_y = wide_case(seed)
    _compare_cka(linear_cka, wide_x, wide_y, seed,
                 f" (case: {len(wide_x)} rows of {wide_x.shape[1]} and {wide_y.shape[1]} features)")
    half_x, half_y = half_case(seed)
    half = _compare_cka(linear_cka, half_x, half_y, seed,
                        f" (case: {half_x.shape[1]} and {half_y.shape[1]} float16 features of {len(half_x)} photos, "
                        "as the series stores them)")
    message = _check_rows(linear_cka, x, y, seed)
    _kit.passed(Q1, [f"rice_lab's linear_cka to 1e-7 on {n} rows of {d1} and {d2} offset features (CKA {value:.3f}), "
                     f"on {len(wide_x)} rows of {wide_x.shape[1]} features and on float16 features ({half:.3f})",
                     f"unchanged by a rotation, a common scale and a shift of x; a general invertible map moves it "
                     f"({value:.3f} -> {general:.3f}); CKA(x, x) = 1",
                     f"different row counts raise ValueError: {message[:100]}"])


@_kit.check(LINEAR_CKA)
def check_linear_cka_hidden(linear_cka: Callable, seed: int) -> None:
    """Hidden check for question 1: float32 inputs, a single feature, four rows."""
    gen = _kit.rng(seed + 1)
    x, y = cka_case(seed + 1)
    _compare_cka(linear_cka, x.astype(np.float32), y.astype(np.float32), seed + 1, " (case: float32 features)")
    single = gen.normal(0, 2, (int(gen.integers(10, 30)), 1)) + 40.0
    partner = np.hstack([single ** 2, gen.normal(0, 1, (len(single), 2))])
    _compare_cka(linear_cka, single, partner, seed + 1, f" (case: x has one feature, {len(single)} rows)")
    few_x, few_y = gen.normal(0, 1, (4, 6)) + 10.0, gen.normal(0, 1, (4, 3)) - 5.0
    _compare_cka(linear_cka, few_x, few_y, seed + 1, " (case: 4 rows)")
    _kit.passed(Q1 + " (hidden)", ["float32 features", "a single feature", "four rows"])


# --- question 2: the change point of a series ------------------------------------------------------------

def _check_min_size(values: np.ndarray, min_size: int) -> None:
    if min_size < 1 or len(values) < 2 * min_size:
        raise ValueError(f"{len(values)} values cannot make two segments of at least {min_size}")


def split_costs(values: Any, min_size: int = 1) -> dict[int, float]:
    """The total squared error of every allowed split k (values[:k] and values[k:], each at least
    ``min_size`` long, each about its own mean), by brute force in float64."""
    values = np.asarray(values, dtype=np.float64)
    _check_min_size(values, min_size)
    return {k: float(((values[:k] - values[:k].mean()) ** 2).sum() + ((values[k:] - values[k:].mean()) ** 2).sum())
            for k in range(min_size, len(values) - min_size + 1)}


def reference_change_point(values: Any, min_size: int = 1) -> int:
    """The split k with the least total squared error (every split tried); the first on a tie."""
    costs = split_costs(values, min_size)
    best = min(costs.values())
    return next(k for k, cost in costs.items() if cost == best)


def _tie_tolerance(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return TIE_TOL * float(((values - values.mean()) ** 2).sum()) + 1e-12


def _point_slips(values: Any, min_size: int) -> dict[str, tuple[str, int]]:
    """The k each typical slip gives, by name, with the hint that names it (the right k where a slip
    changes nothing)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    costs = split_costs(values, min_size)
    right = reference_change_point(values, min_size)
    best = min(costs.values())
    allowed = range(min_size, n - min_size + 1)

    def argbest(score: Callable[[int], float], ks: Any = allowed) -> int:
        ks = list(ks)
        scores = [score(k) for k in ks]
        return ks[int(np.argmin(scores))] if ks else -1

    # Ordered from the most specific: where two slips explain an answer alike, the first names the mistake.
    slips = {
        "last-tie": ("on a tie return the first (smallest) k: update the best only when a cost is smaller (<, not "
                     "<=)", max(k for k, cost in costs.items() if cost == best)),
        "no-min-size": ("keep each segment at least min_size points long: k runs from min_size to len(values) - "
                        "min_size", reference_change_point(values, 1)),
        "no-last": ("k may be len(values) - min_size (a second segment of exactly min_size points): "
                    "range(min_size, len(values) - min_size + 1)", argbest(lambda k: costs[k], allowed[:-1])),
        "no-first": ("k may be min_size itself (a first segment of exactly min_size points)",
                     argbest(lambda k: costs[k], allowed[1:])),
        "before": ("k is the first index of the second segment (values[k:] is the second), not the last index of "
                   "the first", right - 1),
        "after": ("k is the first index of the second segment: values[:k] is the first, values[k:] the second",
                  right + 1),
        "jump": ("minimise the two segments' squared error about their means: the largest jump between neighbours "
                 "(np.diff) is where a single spike sits, not where the level changes",
                 int(np.argmax(np.abs(np.diff(values)))) + 1),
        "variances": ("add up each segment's squared deviations (the total squared error), not their mean "
                      "(np.var): a segment's variance says nothing of how many points it holds",
                      argbest(lambda k: values[:k].var() + values[k:].var())),
        "gap": ("compare the total squared error, not the gap between the two means: a few extreme points at an "
                "end make the largest gap", argbest(lambda k: -abs(values[:k].mean() - values[k:].mean()))),
    }
    return slips


def _point_distinct(values: np.ndarray, min_size: int, moved: tuple[str, ...]) -> bool:
    """The best split is clear of the next best (no tie in floats), and each slip named in ``moved`` gives
    another k."""
    costs = sorted(split_costs(values, min_size).values())
    if len(costs) < 2 or costs[1] - costs[0] <= 1e3 * _tie_tolerance(values):
        return False
    right = reference_change_point(values, min_size)
    slips = _point_slips(values, min_size)
    return all(slips[name][1] != right for name in moved)


def _as_index(value: Any) -> int | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        return int(value)
    return None


def _call_point(func: Callable, values: Any, min_size: int, seed: int, case: str) -> int:
    """The learner's k for one case (an int; the values unchanged), else fail."""
    before = np.array(values, dtype=np.float64)
    with _kit.named_errors(Q2, "values is a sequence of numbers (a list, an array or a pandas Series); min_size "
                           "an int; return one int" + case, seed):
        outcome = _kit.call(func, values.copy() if hasattr(values, "copy") else list(values), min_size)
    if not np.array_equal(np.asarray(outcome.args[0], dtype=np.float64), before):
        _kit.fail(Q2, "values unchanged", "they were changed (sorted or written into)",
                  "work on a copy (np.array(values, dtype=float) makes one)" + case, seed)
    got = _as_index(outcome.result)
    if got is None:
        _kit.fail(Q2, f"an int (here {reference_change_point(before, min_size)})", _kit._short(outcome.result, 120),
                  "return the index k as an int, not a float, an array or a tuple" + case, seed)
    return got


def _point_right(got: int, values: Any, min_size: int, exact: bool) -> bool:
    """The reference's k, or (unless ``exact``) a split as good to within rounding."""
    values = np.asarray(values, dtype=np.float64)
    costs, expected = split_costs(values, min_size), reference_change_point(values, min_size)
    return got == expected or (not exact and got in costs and costs[got] <= costs[expected] + _tie_tolerance(values))


def _compare_points(func: Callable, cases: list[tuple[Any, int, str, bool]], seed: int) -> list[int]:
    """The learner's k for every case ``(values, min_size, description, exact)`` if each is right; else fail
    on the first wrong one, naming the slip that gives the learner's k on every case."""
    found: list[int | _kit.CheckFailed] = []
    for values, min_size, case, _ in cases:
        try:
            found.append(_call_point(func, values, min_size, seed, case))
        except _kit.CheckFailed as failed:  # raised below unless an earlier case is wrong
            found.append(failed)
    first = next((i for i, (got, (values, min_size, _, exact)) in enumerate(zip(found, cases))
                  if isinstance(got, _kit.CheckFailed) or not _point_right(got, values, min_size, exact)), None)
    if first is None:
        return found
    if isinstance(found[first], _kit.CheckFailed):
        raise found[first]
    values, min_size, case, _ = cases[first]
    slips = [_point_slips(np.asarray(v, dtype=np.float64), m) for v, m, _, _ in cases]
    for name, (hint, _) in slips[first].items():
        if all(got == slip[name][1] for got, slip in zip(found, slips) if not isinstance(got, _kit.CheckFailed)):
            break
    else:
        hint = ("try every k from min_size to len(values) - min_size: the cost is the squared error of values[:k] "
                "about its mean plus that of values[k:] about its own; return the k of the least cost (the first "
                "on a tie)")
        if not min_size <= found[first] <= len(values) - min_size:
            hint = f"k must leave at least min_size = {min_size} points on each side: {min_size} <= k <= " \
                   f"{len(values) - min_size}; " + hint
    _kit.fail(Q2, reference_change_point(np.asarray(values, dtype=np.float64), min_size), found[first], hint + case,
              seed)


def _compare_point(func: Callable, values: Any, min_size: int, seed: int, case: str, exact: bool = False) -> int:
    """The learner's k for one case if it is right; else fail naming the slip."""
    return _compare_points(func, [(values, min_size, case, exact)], seed)[0]


def shift_case(seed: int) -> tuple[np.ndarray, int]:
    """A noisy series whose level shifts once, with a single-point spike larger than the shift elsewhere."""
    for attempt in range(200):
        gen = _kit.rng(seed * 1000 + attempt)
        n, min_size = int(gen.integers(40, 81)), int(gen.integers(2, 5))
        shift_at = int(gen.integers(n // 3, 2 * n // 3))
        jump = gen.uniform(1.0, 2.0) * gen.choice([-1.0, 1.0])
        values = gen.normal(0, gen.uniform(0.15, 0.3), n) + gen.uniform(-5, 5) + jump * (np.arange(n) >= shift_at)
        spike = int(gen.choice([k for k in range(min_size + 2, n - min_size - 2) if abs(k - shift_at) >= 6]))
        values[spike] += gen.uniform(4, 6) * abs(jump) * gen.choice([-1.0, 1.0])
        right = reference_change_point(values, min_size)
        if abs(right - shift_at) <= 1 and _point_distinct(values, min_size, ("jump",)):
            return values, min_size
    raise RuntimeError(f"no distinguishing shift case for seed {seed}")


def edge_case(seed: int) -> tuple[np.ndarray, int]:
    """A level shift, and a spike at one end that a split ignoring ``min_size`` would cut off (the best
    allowed split is still the shift)."""
    for attempt in range(200):
        gen = _kit.rng(seed * 1000 + attempt)
        n, min_size = int(gen.integers(30, 61)), int(gen.integers(3, 6))
        shift_at = int(gen.integers(n // 3, 2 * n // 3))
        jump = gen.uniform(0.8, 1.5) * gen.choice([-1.0, 1.0])
        values = gen.normal(0, 0.2, n) + jump * (np.arange(n) >= shift_at)
        values[0 if gen.random() < 0.5 else n - 1] += gen.uniform(3, 8) * abs(jump)
        right = reference_change_point(values, min_size)
        if reference_change_point(values, 1) in (1, n - 1) and abs(right - shift_at) <= 1 and \
                _point_distinct(values, min_size, ("no-min-size",)):
            return values, min_size
    raise RuntimeError(f"no distinguishing edge case for seed {seed}")


def boundary_case(seed: int, at_end: bool) -> tuple[np.ndarray, int]:
    """A series whose level shifts exactly ``min_size`` points from one end: the best split is the last
    (``at_end``) or the first one allowed."""
    gen = _kit.rng(seed)
    n, min_size = int(gen.integers(20, 41)), int(gen.integers(2, 6))
    shift_at = n - min_size if at_end else min_size
    values = gen.normal(0, 0.1, n) + gen.uniform(3, 5) * gen.choice([-1.0, 1.0]) * (np.arange(n) >= shift_at)
    return values, min_size


def tie_case(seed: int) -> tuple[np.ndarray, int]:
    """A bump of integers, a + b + a points with a + b = 8: the splits before and after the bump tie
    exactly (every way of adding them up is exact), so the first, k = a, is the answer."""
    gen = _kit.rng(seed)
    before = int(gen.integers(3, 6))
    level, height = float(gen.integers(-3, 4)), float(gen.integers(2, 7))
    values = np.array([level] * before + [level + height] * (8 - before) + [level] * before)
    return values, int(gen.integers(1, before))  # k = before is not the first split allowed


CHANGE_POINT = _kit.Answer(
    Q2, "change_point", lambda: {"the autograder's reference": reference_change_point,
                                 "the autograder's split_costs": split_costs},
    hint="find the split yourself; do not call the autograder's reference", module=__name__)


def visible_point_cases(seed: int) -> list[tuple[np.ndarray, int, str, bool]]:
    """The visible check's cases: (values, min_size, description, exact)."""
    values, min_size = shift_case(seed)
    cases = [(values, min_size, f" (case: {len(values)} values, min_size={min_size}, a level shift and a larger "
                                "spike)", False)]
    edge, edge_min = edge_case(seed)
    cases.append((edge, edge_min, f" (case: {len(edge)} values, min_size={edge_min}, a large spike at one end)", False))
    for at_end in (True, False):
        shifted, shifted_min = boundary_case(seed + at_end, at_end)
        cases.append((shifted, shifted_min, f" (case: {len(shifted)} values, min_size={shifted_min}, the level shifts "
                                            f"{shifted_min} points from the {'end' if at_end else 'start'})", False))
    tie, tie_min = tie_case(seed)
    cases.append((tie, tie_min, f" (case: {tie.tolist()}, min_size={tie_min}: two splits tie exactly)", True))
    gen = _kit.rng(seed + 3)
    shortest_min = int(gen.integers(2, 6))
    cases.append((gen.normal(0, 1, 2 * shortest_min), shortest_min,
                  f" (case: {2 * shortest_min} values, min_size={shortest_min}: one split is allowed)", False))
    return cases


@_kit.check(CHANGE_POINT)
def check_change_point(change_point: Callable, seed: int) -> None:
    """Visible check for question 2: a shift beside a larger spike, a spike at an end, shifts at both
    edges min_size allows, an exact tie, the shortest series allowed."""
    cases = visible_point_cases(seed)
    found = _compare_points(change_point, cases, seed)
    _kit.passed(Q2, [f"the least-squared-error split of {len(cases[0][0])} values at k = {found[0]} (the level "
                     "shift), not at the larger spike",
                     "min_size respected at both ends, the first and the last allowed split found, the first of two "
                     "tied splits, the shortest series allowed"])


@_kit.check(CHANGE_POINT)
def check_change_point_hidden(change_point: Callable, seed: int) -> None:
    """Hidden check for question 2: a pandas Series with another index, a list, a constant series, too
    short a series."""
    import pandas as pd

    values, min_size = shift_case(seed + 1)
    gen = _kit.rng(seed + 1)
    series = pd.Series(values, index=gen.permutation(len(values)) + 100)
    _compare_point(change_point, series, min_size, seed + 1,
                   " (case: a pandas Series whose index is shuffled and starts at 100: work by position)")
    edge, edge_min = edge_case(seed + 2)
    _compare_point(change_point, [float(v) for v in edge], edge_min, seed + 2, " (case: a list)")
    constant = [3.0] * int(gen.integers(6, 15))
    _compare_point(change_point, constant, 2, seed + 1, f" (case: {len(constant)} equal values: every split ties)",
                   exact=True)
    short = gen.normal(0, 1, 5)
    raised = _raised(change_point, short.copy(), 3)
    if raised is None or raised[0] != "ValueError":
        _kit.fail(Q2, "ValueError", "no error" if raised is None else f"{raised[0]}: {raised[1][:120]}",
                  "5 values cannot make two segments of at least 3: raise ValueError", seed + 1)
    _kit.passed(Q2 + " (hidden)", ["a pandas Series with another index", "a list", "equal values",
                                   "too short a series raises ValueError"])


# --- question 3: what changes at the drop ---------------------------------------------------------------

def provided_series() -> dict[str, np.ndarray]:
    """The course's checkpoint series, as ``dict(np.load(path))``."""
    from autograder.datasets import dynamics_series

    with np.load(dynamics_series()) as stored:
        return {key: stored[key] for key in stored.files}


# How each step of the answer is done: the right way (the first of each), and the typical slips.
RIGHT = {"blocks": "from-first", "block_step": "first", "search": True, "across": "around", "plateau": "median",
         "plateau_from": "search", "ratio": "changes", "settle_to": "final", "lead": "settled-drop"}


def _block_steps_and_means(series: dict, window: int, how: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each block's first step, last step and mean loss (float64)."""
    steps = np.asarray(series["curve_step"])
    losses = np.asarray(series["curve_loss"], dtype=np.float64)
    if how == "by-step":  # grouped by step // window: blocks aligned to multiples of window, not to the first point
        groups = steps // window
        keys = np.unique(groups)
        return (np.array([steps[groups == g][0] for g in keys]), np.array([steps[groups == g][-1] for g in keys]),
                np.array([losses[groups == g].mean() for g in keys]))
    count = len(losses) // window
    shaped = losses[: count * window].reshape(count, window)
    blocked = steps[: count * window].reshape(count, window)
    if how == "computed":  # steps from the block's index, as if the curve logged every step from 1
        blocked = np.arange(count * window).reshape(count, window) + 1
    return blocked[:, 0], blocked[:, -1], shaped.mean(axis=1)


def _drop(series: dict, window: int, search_from: int, min_size: int, how: dict) -> tuple[int, list[int]]:
    """The drop's step, and the steps of every split that ties with the best one in floats."""
    firsts, lasts, means = _block_steps_and_means(series, window, how["blocks"])
    kept = firsts >= search_from if how["search"] else np.ones(len(firsts), dtype=bool)
    costs = split_costs(means[kept], min_size)
    best = min(costs.values())
    tied = [k for k, cost in costs.items() if cost <= best + _tie_tolerance(means[kept])]
    k = next(k for k, cost in costs.items() if cost == best)

    def step(k: int) -> int:
        return int({"first": firsts[kept][k], "last": lasts[kept][k], "index": k, "all-index": firsts[k]}[
            how["block_step"]])

    return step(k), [step(t) for t in tied]


def _cka_series(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each snapshot's CKA to the final one, and to the next one (one fewer)."""
    final = np.array([reference_cka(f, features[-1]) for f in features])
    following = np.array([reference_cka(features[i], features[i + 1]) for i in range(len(features) - 1)])
    return final, following


def _settled(steps: np.ndarray, values: np.ndarray, threshold: float) -> tuple[int, list[int]]:
    """The first step whose value reaches ``threshold``, and those a rounding of 1e-9 could give."""
    def first(level: float) -> int | None:
        reached = np.flatnonzero(values >= level)
        return int(steps[reached[0]]) if len(reached) else None

    found = first(threshold)
    candidates = {s for s in (first(threshold - 1e-9), found, first(threshold + 1e-9)) if s is not None}
    return (found if found is not None else -1), sorted(candidates)


def _answers(series: dict, window: int, search_from: int, min_size: int, threshold: float, how: dict | None = None,
             drop_step: int | None = None, settled_step: int | None = None, cka: tuple | None = None) -> dict:
    """The six answers, done ``how`` (default: right); ``drop_step`` and ``settled_step`` replace the
    ones found (a tie in floats); ``cka``: the (to final, to next) CKA series if already computed."""
    how = {**RIGHT, **(how or {})}
    steps = np.asarray(series["steps"])
    to_final, to_next = cka if cka is not None else _cka_series(np.asarray(series["features"]))
    drop = _drop(series, window, search_from, min_size, how)[0] if drop_step is None else drop_step
    after = int(np.argmax(steps >= drop)) if (steps >= drop).any() else len(steps)
    pair = after - 1 if how["across"] == "around" else after
    across = float(to_next[pair]) if 0 <= pair < len(to_next) else math.nan
    start = search_from if how["plateau_from"] == "search" else -math.inf
    on_plateau = [to_next[i] for i in range(len(to_next)) if steps[i] >= start and steps[i + 1] < drop]
    plateau = float(({"median": np.median, "mean": np.mean}[how["plateau"]])(on_plateau)) if on_plateau else math.nan
    with np.errstate(all="ignore"):
        ratio = float(np.float64(1 - across) / np.float64(1 - plateau)) if how["ratio"] == "changes" else \
            float(np.float64(across) / np.float64(plateau))
    reached = to_final if how["settle_to"] == "final" else np.append(to_next, 1.0)
    settled = _settled(steps, reached, threshold)[0] if settled_step is None else settled_step
    lead = settled - drop if how["lead"] == "settled-drop" else drop - settled
    return {"drop_step": int(drop), "cka_across_drop": across, "plateau_cka": plateau, "change_ratio": ratio,
            "settled_step": int(settled), "lead": int(lead)}


def reference_what_changes(series: dict, window: int = 16, search_from: int = 400, min_size: int = 5,
                           threshold: float = 0.95) -> dict:
    """What question 3 asks, computed from ``series`` with this module's change point and rice_lab's CKA."""
    return _answers(series, window, search_from, min_size, threshold)


SERIES_SLIPS: dict[str, dict] = {
    "drop_step is a step: the first step of block k (read it from curve_step), not the index k":
        {"block_step": "index"},
    "k counts the blocks you searched (those from search_from on), not every block: the drop is at the first "
    "step of the k-th searched block": {"block_step": "all-index"},
    "search from search_from on: over the whole curve the first, fast descent is the largest change":
        {"search": False},
    "a block's step is the first step it holds (curve_step of its first point), not its last":
        {"block_step": "last"},
    "read the block's step from curve_step, do not compute it from the index (the curve need not start at "
    "step 1 or log every step)": {"blocks": "computed"},
    "cut blocks of window consecutive points from the curve's first point (points 0 to window - 1 are the first "
    "block), not by curve_step // window": {"blocks": "by-step"},
    "the two snapshots either side of the drop are the last one before drop_step and the first at or after it "
    "(features[j - 1] and features[j])": {"across": "after"},
    "the plateau's CKA is the median over its consecutive pairs, not the mean": {"plateau": "mean"},
    "the plateau's pairs have both snapshots from search_from on and before the drop, not from the run's start":
        {"plateau_from": "start"},
    "compare how much the representation changed: (1 - cka_across_drop) / (1 - plateau_cka), not the ratio of "
    "the two CKAs": {"ratio": "cka"},
    "settled_step reads each snapshot's CKA to the final snapshot (features[-1]), not to the next one":
        {"settle_to": "next"},
    "lead is settled_step - drop_step (negative when the representation settled before the loss fell)":
        {"lead": "drop-settled"},
}


def _same(key: str, got: float, expected: float) -> bool:
    if math.isnan(expected) or math.isnan(got):
        return math.isnan(expected) and math.isnan(got)
    if key in STEP_KEYS:
        return abs(got - expected) < 1e-9
    if key == "change_ratio":
        return bool(np.isclose(got, expected, rtol=RATIO_TOL, atol=1e-12))
    return bool(np.isclose(got, expected, rtol=1e-6, atol=1e-6))


def _as_answers(result: Any) -> dict[str, float] | None:
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(result, pandas.Series):
        result = result.to_dict()
    if not isinstance(result, dict) or not set(ANSWER_KEYS) <= set(result):
        return None
    numbers = {key: _as_number(result[key]) for key in ANSWER_KEYS}
    return None if any(v is None for v in numbers.values()) else numbers


def _series_equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def _compare_changes(func: Callable, series: dict, parameters: dict, seed: int, case: str) -> dict:
    window, search_from, min_size, threshold = (parameters[k] for k in ("window", "search_from", "min_size",
                                                                        "threshold"))
    with np.errstate(all="ignore"), _kit.named_errors(
            Q3, "series is a dict of NumPy arrays (the keys of the file); the parameters are window, search_from, "
            "min_size and threshold; your linear_cka and change_point must pass their checks first" + case, seed):
        outcome = _kit.call(func, {k: v.copy() for k, v in series.items()}, window, search_from, min_size, threshold)
    if not isinstance(outcome.args[0], dict) or not _series_equal(outcome.args[0], series):
        _kit.fail(Q3, "series unchanged", "an array of it was changed or a key added or removed",
                  "read the series, do not write into it (np.asarray(series['curve_loss'], dtype=float) makes a copy "
                  "of a float32 array)" + case, seed)
    got = _as_answers(outcome.result)
    if got is None:
        _kit.fail(Q3, f"a dict with the numbers {list(ANSWER_KEYS)}", _kit._short(outcome.result, 200),
                  "return {'drop_step': ..., 'cka_across_drop': ..., ...}: one number per key" + case, seed)
    cka = _cka_series(np.asarray(series["features"]))
    right = {**RIGHT}
    _, drops = _drop(series, window, search_from, min_size, right)
    _, settles = _settled(np.asarray(series["steps"]), cka[0], threshold)
    drop = got["drop_step"] if got["drop_step"] in drops else None  # a tie in floats: either split is right
    settled = got["settled_step"] if got["settled_step"] in settles else None
    expected = _answers(series, window, search_from, min_size, threshold, drop_step=drop, settled_step=settled, cka=cka)
    wrong = next((key for key in ANSWER_KEYS if not _same(key, got[key], expected[key])), None)
    if wrong is None:
        return got
    for hint, how in SERIES_SLIPS.items():
        slip = _answers(series, window, search_from, min_size, threshold, how, cka=cka)
        if _same(wrong, got[wrong], slip[wrong]) and not _same(wrong, slip[wrong], expected[wrong]):
            break
    else:
        hint = {"drop_step": "block means of window points from the first, the blocks from search_from on, "
                             "k = change_point(their means, min_size), drop_step = that block's first step",
                "cka_across_drop": "linear_cka(features[j - 1], features[j]), j the first snapshot at or after "
                                   "drop_step",
                "plateau_cka": "the median of linear_cka(features[i], features[i + 1]) over the pairs with "
                               "steps[i] >= search_from and steps[i + 1] < drop_step",
                "change_ratio": "(1 - cka_across_drop) / (1 - plateau_cka)",
                "settled_step": "the first steps[i] with linear_cka(features[i], features[-1]) >= threshold",
                "lead": "settled_step - drop_step"}[wrong]
        hint += "; compute everything from series and the parameters (your linear_cka and change_point included)"
    _kit.fail(Q3, f"{wrong} = {_shown(expected[wrong])}", f"{wrong} = {_shown(got[wrong])}", hint + case, seed)


def _shown(value: float) -> Any:
    return int(value) if float(value).is_integer() else round(float(value), 6)


def series_case(seed: int, stride: int = 1, snapshots: tuple[int, int] = (16, 31)) -> tuple[dict, dict]:
    """A made-up checkpoint series shaped like a run's: a fast first descent, a plateau, a second descent and
    a slow creep in the per-step loss (float32, logged every ``stride`` steps), and snapshot features that
    settle towards the final ones (float16); with the parameters to ask it with. Redrawn until the answers
    are clear of every tie and threshold and each slip changes one of them."""
    for attempt in range(300):
        gen = _kit.rng(seed * 1000 + attempt)
        window = int(gen.choice([8, 10, 12, 16, 20]))
        points = window * int(gen.integers(90, 161)) + int(gen.integers(0, window))  # a last, shorter block
        first_step = int(gen.integers(0, 3)) if stride > 1 else 1
        curve_step = first_step + stride * np.arange(points)
        total = int(curve_step[-1])
        t = curve_step / total
        loss = (gen.uniform(5.5, 6.5) + gen.uniform(0.8, 1.5) * np.exp(-t / gen.uniform(0.03, 0.06))
                + gen.uniform(0.15, 0.4) / (1 + np.exp((t - gen.uniform(0.4, 0.65)) / gen.uniform(0.02, 0.05)))
                + gen.uniform(0.0, 0.05) * (1 - t) + gen.normal(0, gen.uniform(0.02, 0.05), points))
        count = int(gen.integers(*snapshots))
        steps = np.unique(np.linspace(0, total, count + 1).round().astype(int))
        n, d = int(gen.integers(30, 61)), int(gen.integers(16, 41))
        final = np.maximum(gen.normal(0.3, 1.0, (n, d)), 0) * gen.uniform(0.5, 2.0, d)
        progress = 1 - np.exp(-steps / (total * gen.uniform(0.08, 0.3)))
        progress[-1] = 1.0
        features = np.stack([p * final + (1 - p) * np.maximum(gen.normal(0.3, 1.0, (n, d)), 0) for p in progress])
        series = {"steps": steps, "features": features.astype(np.float16),
                  "loss_fixed_crops": np.interp(steps, curve_step, loss), "curve_step": curve_step,
                  "curve_loss": loss.astype(np.float32),
                  "label": gen.choice(["blast", "brown", "healthy"], n).astype("U7"),
                  "background": gen.choice(["canopy", "paddy", "soil"], n).astype("U6"),
                  "n_prototypes": np.array(int(gen.choice([256, 512, 1024]))),
                  "queue_start_step": np.array(int(total * gen.uniform(0.3, 0.6)))}
        parameters = {"window": window, "search_from": int(total * gen.uniform(0.15, 0.25)),
                      "min_size": int(gen.integers(3, 7)), "threshold": float(gen.choice([0.9, 0.95, 0.97]))}
        if _series_distinct(series, parameters):
            return series, parameters
    raise RuntimeError(f"no distinguishing series case for seed {seed}")


def _series_distinct(series: dict, parameters: dict) -> bool:
    window, search_from, min_size, threshold = (parameters[k] for k in ("window", "search_from", "min_size",
                                                                        "threshold"))
    cka = _cka_series(np.asarray(series["features"]))
    if np.min(np.abs(cka[0] - threshold)) < 1e-4:
        return False
    firsts, _, means = _block_steps_and_means(series, window, "from-first")
    kept = means[firsts >= search_from]
    costs = sorted(split_costs(kept, min_size).values())
    if costs[1] - costs[0] < 1e3 * _tie_tolerance(kept):
        return False
    right = _answers(series, window, search_from, min_size, threshold, cka=cka)
    steps = np.asarray(series["steps"])
    pairs = sum(1 for i in range(len(steps) - 1) if steps[i] >= search_from and steps[i + 1] < right["drop_step"])
    if pairs < 3 or not all(math.isfinite(v) for v in right.values()) or right["settled_step"] <= 0:
        return False
    every_step = np.array_equal(np.asarray(series["curve_step"]), np.arange(1, len(series["curve_step"]) + 1))
    for how in SERIES_SLIPS.values():
        if every_step and how == {"blocks": "computed"}:
            continue  # a curve logged at every step from 1: the computed step is the right one
        slip = _answers(series, window, search_from, min_size, threshold, how, cka=cka)
        if all(_same(key, slip[key], right[key]) for key in ANSWER_KEYS):
            return False
    return True


WHAT_CHANGES = _kit.Answer(
    Q3, "what_changes", lambda: {**_kit.references((_module("similarity"), "linear_cka"),
                                                   (_module("similarity"), "cka")),
                                 "the autograder's reference": reference_what_changes,
                                 "the autograder's reference CKA": reference_cka,
                                 "the autograder's reference change point": reference_change_point},
    hint="use your own linear_cka and change_point; do not call rice_lab's linear_cka or the autograder's "
         "references", module=__name__)


def _describe_series(series: dict, parameters: dict, what: str = "a made-up series") -> str:
    return (f" (case: {what}, {len(series['steps'])} snapshots of {series['features'].shape[1]} photos, a curve of "
            f"{len(series['curve_loss'])} steps; window={parameters['window']}, search_from="
            f"{parameters['search_from']}, min_size={parameters['min_size']}, threshold={parameters['threshold']})")


@_kit.check(WHAT_CHANGES)
def check_what_changes(what_changes: Callable, seed: int) -> None:
    """Visible check for question 3: the provided series with the notebook's parameters, then a made-up one."""
    series = provided_series()
    got = _compare_changes(what_changes, series, FILE_PARAMETERS, seed,
                           _describe_series(series, FILE_PARAMETERS, "the provided series"))
    made_up, parameters = series_case(seed)
    _compare_changes(what_changes, made_up, parameters, seed, _describe_series(made_up, parameters))
    _kit.passed(Q3, [f"on the provided series: the loss's change point at step {int(got['drop_step'])}; CKA across "
                     f"it {got['cka_across_drop']:.3f} against a plateau median of {got['plateau_cka']:.3f} (change "
                     f"ratio {got['change_ratio']:.2f}); CKA to the final snapshot first reaches "
                     f"{FILE_PARAMETERS['threshold']} at step {int(got['settled_step'])} (lead {int(got['lead']):+d} "
                     "steps)",
                     f"the reference's answers on a made-up series of {len(made_up['steps'])} snapshots and "
                     f"{len(made_up['curve_loss'])} steps (window {parameters['window']}, from step "
                     f"{parameters['search_from']})"])


@_kit.check(WHAT_CHANGES)
def check_what_changes_hidden(what_changes: Callable, seed: int) -> None:
    """Hidden check for question 3: the provided series with other parameters; a made-up series logged every
    other step, with more snapshots."""
    series = provided_series()
    _compare_changes(what_changes, series, HIDDEN_FILE_PARAMETERS, seed + 1,
                     _describe_series(series, HIDDEN_FILE_PARAMETERS, "the provided series"))
    made_up, parameters = series_case(seed + 1, stride=2, snapshots=(40, 61))
    _compare_changes(what_changes, made_up, parameters, seed + 1,
                     _describe_series(made_up, parameters) + " (the curve logged every other step)")
    _kit.passed(Q3 + " (hidden)", ["the provided series with other parameters",
                                   "a made-up series logged every other step, with more snapshots"])
