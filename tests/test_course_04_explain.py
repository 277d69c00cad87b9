"""The 04-explain checks: right answers pass (captum or written by hand, another quadrature for Integrated
Gradients, another sort, scipy's interval), delegating to the reference scores nothing, and the cases
separate what they are built to separate. (Typical wrong answers and their messages:
tests/test_course_mutants.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import nbformat
import numpy as np
import pytest

import autograder.checks.a04_explain as checks
from autograder.audit import audit_notebook
from autograder.notebooks import REPO
from notebook_answers import solution_answers

HEADER = """
import copy
import math
import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from scipy import stats
from torch import nn
"""
QUESTIONS = ("camera_maps", "pointing_game", "deletion_curve", "cascading_randomisation", "sanity_verdict")


def _answers(extra: str = "") -> SimpleNamespace:
    """The solution notebook's answer cells (then ``extra``)."""
    return solution_answers("04-explain", HEADER, extra)


@pytest.fixture(scope="module")
def solution() -> SimpleNamespace:
    return _answers()


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_solutions_pass_visible_and_hidden_checks(solution: SimpleNamespace, seed: int) -> None:
    for question in QUESTIONS:
        getattr(checks, f"check_{question}")(getattr(solution, question), seed=seed)
        getattr(checks, f"check_{question}_hidden")(getattr(solution, question), seed=seed)


# --- right answers written another way ---------------------------------------------------------------------

OTHER_WAYS = '''
def camera_maps(model, photos, normalization, method, target=None):
    # No captum: gradients, a 32-step trapezoid rule for the integral and Grad-CAM by hand; the model
    # switched to eval with train(False); a Python loop over the cameras in another order.
    model.train(False)
    out = {}
    for camera in sorted(photos, reverse=True):
        mean = torch.as_tensor(normalization[camera][0]).float()[None, :, None, None]
        std = torch.as_tensor(normalization[camera][1]).float()[None, :, None, None]
        x = (photos[camera].to(torch.float32) / 255.0 - mean) / std
        n = len(x)
        if target is None:
            with torch.no_grad():
                classes = model(x).max(dim=1).indices
        elif isinstance(target, int):
            classes = torch.full((n,), target)
        else:
            classes = torch.tensor(list(target))

        def logit_grad(inputs):
            inputs = inputs.detach().requires_grad_(True)
            chosen = model(inputs)[torch.arange(n), classes]
            return torch.autograd.grad(chosen.sum(), inputs)[0]

        if method == "saliency":
            found = logit_grad(x).abs()
        elif method == "integrated-gradients":
            alphas = torch.linspace(0, 1, 33)
            grads = torch.stack([logit_grad(a * x) for a in alphas])
            found = x * ((grads[1:] + grads[:-1]) / 2).mean(dim=0)
        else:
            kept = {}
            handle = model.body.register_forward_hook(lambda module, args, output: kept.update(a=output))
            logits = model(x.detach())
            handle.remove()
            grads = torch.autograd.grad(logits[torch.arange(n), classes].sum(), kept["a"])[0]
            weights = grads.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * kept["a"]).sum(dim=1, keepdim=True))
            found = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
        out[camera] = found.sum(dim=1).detach().numpy()
    return out


def pointing_game(maps, masks):
    # torch, one image at a time, every pixel that holds the maximum.
    maps, masks = torch.as_tensor(np.asarray(maps)).double(), torch.as_tensor(np.asarray(masks)).bool()
    scores = []
    for m, lesion in zip(maps, masks):
        if not lesion.any():
            scores.append(float("nan"))
        else:
            scores.append(float(lesion[m == m.max()].any()))
    return np.array(scores)


def deletion_curve(model, images, maps, target=None, steps=16):
    # numpy ranking with a stable sort of the negated map, one image at a time, np.trapezoid for the area.
    model.eval()
    maps = np.asarray(maps, dtype=np.float64)
    n, height, width = maps.shape
    with torch.no_grad():
        if target is None:
            classes = model(images).argmax(1).tolist()
        else:
            classes = [int(target)] * n if np.ndim(target) == 0 else [int(t) for t in target]
        curves = np.zeros((n, steps + 1))
        for k in range(n):
            ranking = np.argsort(-maps[k].ravel(), kind="stable")
            for i in range(steps + 1):
                photo = images[k].clone().reshape(3, -1)
                photo[:, torch.from_numpy(ranking[: (i * height * width) // steps])] = 0.0
                probs = torch.softmax(model(photo.reshape(1, 3, height, width)), dim=1)
                curves[k, i] = probs[0, classes[k]].item()
    areas = np.array([np.trapezoid(curve, dx=1.0 / steps) for curve in curves])
    return curves, areas


def cascading_randomisation(model, images, layers, explain, randomise, target=None):
    # Spearman as Pearson of average ranks; the layers walked backwards by index.
    from scipy.stats import rankdata
    model.eval()
    n = len(images)
    with torch.no_grad():
        classes = model(images).argmax(1) if target is None else torch.as_tensor(target).expand(n).clone()
    base = explain(model, images, classes).abs().reshape(n, -1).numpy()
    work = copy.deepcopy(model)
    work.eval()
    result = {}
    for index in range(len(layers) - 1, -1, -1):
        randomise(work.get_submodule(layers[index]))
        now = explain(work, images, classes).abs().reshape(n, -1).numpy()
        values = []
        for a, b in zip(base, now):
            ra, rb = rankdata(a), rankdata(b)
            values.append(np.nan if ra.std() == 0 or rb.std() == 0 else np.corrcoef(ra, rb)[0, 1])
        result[layers[index]] = np.array(values)
    return result


def sanity_verdict(cascades, threshold=0.5, level=0.95):
    # scipy's t interval on the standard error of the mean.
    verdict = {}
    for method, cascade in cascades.items():
        tops = []
        for values in cascade.values():
            values = np.array([float(v) for v in values])
            values = values[np.isfinite(values)]
            if values.size < 2:
                tops.append(math.inf)
                continue
            sem = stats.sem(values)
            tops.append(values.mean() if sem == 0 else
                        stats.t.interval(level, values.size - 1, loc=values.mean(), scale=sem)[1])
        verdict[method] = max(tops) < threshold
    return verdict
'''


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_answers_written_another_way_pass(seed: int) -> None:
    other = _answers(OTHER_WAYS)
    for question in QUESTIONS:
        getattr(checks, f"check_{question}")(getattr(other, question), seed=seed)
        getattr(checks, f"check_{question}_hidden")(getattr(other, question), seed=seed)


def test_integrated_gradients_with_other_steps_passes() -> None:
    """captum's default 50 steps and a 32-step Riemann sum approximate the same integral: both pass."""
    nb = nbformat.read(REPO / "solutions" / "04-explain" / "04-explain.ipynb", as_version=4)
    cell = next(c.source for c in nb.cells if c.get("id") == "camera_maps_answer")
    for replacement in ("n_steps=50", "n_steps=32, method='riemann_right'"):
        variant = _answers(cell.replace("n_steps=32", replacement))
        for seed in (4, 5):
            checks.check_camera_maps(variant.camera_maps, seed=seed)
            checks.check_camera_maps_hidden(variant.camera_maps, seed=seed)


def test_the_cases_are_what_they_claim() -> None:
    """Pointing-game cases hold a tie, a negative peak and an empty mask; deletion maps have no ties even in
    float32; verdict cases give the designed verdicts, which separate every named slip."""
    for seed in range(10):
        maps, masks, answers = checks.pointing_case(seed)
        assert np.isnan(answers).sum() == 1 and maps.shape[1] != maps.shape[2]
        assert (maps.reshape(len(maps), -1) == maps.reshape(len(maps), -1).max(1, keepdims=True)).sum(1).max() == 2
        case = checks.deletion_case(seed)
        flat = case.maps.astype(np.float32).reshape(len(case.maps), -1)
        assert all(len(np.unique(row)) == row.size for row in flat)
        assert (case.images.shape[-2] * case.images.shape[-1]) % case.steps == 0
        for level in (0.9, 0.95, 0.99):
            cascades, threshold, verdicts = checks.verdict_case(seed, level=level)
            assert checks.reference_verdict(cascades, threshold, level) == verdicts
            kinds = [kind for kind in checks.VERDICT_HINTS if kind != "level-ignored" or level == 0.9]
            slips = {kind: checks.reference_verdict(cascades, threshold, level, kind) for kind in kinds}
            for kind in kinds:  # every slip changes a verdict; at the visible checks' levels, slips with
                assert slips[kind] != verdicts, (seed, level, kind)  # different hints differ from each other
                for other in kinds:
                    if level != 0.99 and checks.VERDICT_HINTS[other] != checks.VERDICT_HINTS[kind]:
                        assert slips[kind] != slips[other], (seed, level, kind, other)


# --- anti-cheat: answers that delegate to the reference ------------------------------------------------------

DELEGATIONS = {
    "attribute": ("check_camera_maps", "camera_maps", "attribute",
                  "from rice_lab.explain import attribute\n"
                  "def camera_maps(model, photos, normalization, method, target=None):\n"
                  "    out = {}\n"
                  "    for c, p in photos.items():\n"
                  "        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in normalization[c])\n"
                  "        out[c] = attribute(model, (p.float() / 255 - mean) / std, method, target)\n"
                  "    return out\n"),
    "pointing": ("check_pointing_game", "pointing_game", "pointing_game",
                 "import rice_lab.explain.metrics as m\n"
                 "def pointing_game(maps, masks):\n    return m.pointing_game(maps, masks)\n"),
    "deletion": ("check_deletion_curve_hidden", "deletion_curve", "rice_lab's",
                 "from rice_lab.explain.metrics import curve_auc\n"
                 "def deletion_curve(model, images, maps, target=None, steps=16, _area=curve_auc):\n"
                 "    model.eval()\n"
                 "    curves = np.zeros((len(images), steps + 1))\n"
                 "    return curves, _area(curves)\n"),
    "cascade": ("check_cascading_randomisation", "cascading_randomisation", "rice_lab's",
                "import importlib\n"
                "def cascading_randomisation(model, images, layers, explain, randomise, target=None):\n"
                "    sanity = importlib.import_module('rice_lab.explain.' + 'sanity')\n"
                "    found = sanity.cascading_randomisation(model, images, explain, target, list(reversed(layers)))\n"
                "    return {k: v['spearman_abs'].to_numpy() for k, v in found.scores.groupby('layer', sort=False)}\n"),
    "verdict": ("check_sanity_verdict", "sanity_verdict", "reference",
                "import autograder.checks.a04_explain as a\n"
                "def sanity_verdict(cascades, threshold=0.5, level=0.95):\n"
                "    return a.reference_verdict(cascades, threshold, level)\n"),
}


@pytest.mark.parametrize("case", list(DELEGATIONS))
def test_delegating_to_the_reference_scores_zero(case: str) -> None:
    check_name, question, word, source = DELEGATIONS[case]
    cheat = _answers(source)
    with pytest.raises(AssertionError, match=word):
        getattr(checks, check_name)(getattr(cheat, question), seed=3)


def test_audit_accepts_the_solution() -> None:
    nb = nbformat.read(REPO / "solutions" / "04-explain" / "04-explain.ipynb", as_version=4)
    assert audit_notebook(nb) == []
