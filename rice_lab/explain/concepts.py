"""Concepts cut from the material masks, and TCAV (Kim et al. 2018) through captum: does a class's
prediction rise with lesion tissue, halo, healthy leaf, background or artefacts, layer by layer?

Concept examples come free with the synthetic data, whose masks name every pixel's material
(``rice_lab.data.synthetic.MATERIALS``). A concept is a set of material codes (:data:`CONCEPTS`):

* ``lesion``: lesion margin and centre; ``halo``: the chlorotic ring around a lesion;
* ``leaf``: healthy leaf tissue; ``background``: soil and paddy water behind the plants;
* ``artefact``: dust specks and insect holes (tiny: about 0.1 % of the pixels, so their patches
  are at best part artefact, part leaf).

One example (:func:`concept_set`): in a photo, a ``patch`` x ``patch`` window [photo height / 16,
at least 3 px] drawn at random among those holding the largest share of the concept's material;
the photo gives an example when that share is at least ``min_share`` [0.3]. The patch is
mirror-tiled to the photo's size (each copy flipped against its neighbours, so no seam is a hard
edge): the network sees the material at its own scale across the whole frame, as TCAV's concept
images fill theirs. A random set (:func:`random_set`) is made the same way from windows drawn
uniformly over random photos, whatever they show. Sets hold uint8 photos of one camera, normalised
for each model by its own statistics; ``sources`` says where each patch came from.

TCAV (:func:`tcav_scores`) for each layer, class and concept: a linear SVM (scikit-learn's
``SGDClassifier``, hinge loss, seeded; :class:`LinearCAV`) separates the layer's activations of
the concept's examples from those of random set i (the CAV is its normal, pointing to the
concept), and the TCAV score is the share of the class's photos whose logit for that class rises
along the CAV (captum's ``sign_count``: the gradient at the layer dotted with the CAV is positive).
Repeated against ``R`` random sets, this gives R scores per concept; the null gives R more, random
set 0 taken as the concept against the same R random sets.

Significance (:func:`significance`): a two-sided t-test (Student's, as Kim et al.'s code) of the
concept's R scores against the null's R scores. A concept is marked significant only when its
p-value stays below ``alpha`` after a Bonferroni correction over every test of the family
(layers x classes x concepts of one model and camera): p x tests < alpha. The p-values are
reported raw and corrected. A CAV that cannot tell the concept from random patches (held-out
``cav_accuracy`` near 0.5) points nowhere; read the accuracy beside the score.

Controls (:func:`tcav_controls`): the same test on the same concept sets for several models,
the trained classifier beside its shuffled-label twin and a randomly initialised copy, neither of
which knows what a lesion means: a concept that is significant for them too says little about the
training.
"""

from __future__ import annotations

import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from captum.concept import TCAV, Concept
from captum.concept._utils.classifier import Classifier as CaptumClassifier
from PIL import Image
from scipy.stats import ttest_ind
from torch import nn

from rice_lab.data.synthetic.materials import LESION_CODES, MATERIALS
from rice_lab.data.views import load_size
from rice_lab.data.zindi import read_mask
from rice_lab.errors import ConfigError, DataError
from rice_lab.explain.models import captum_safe, find_layer, model_device
from rice_lab.seeding import stream_seed

CONCEPTS: dict[str, tuple[int, ...]] = {
    "lesion": LESION_CODES,
    "halo": (MATERIALS["halo"],),
    "leaf": (MATERIALS["leaf"],),
    "background": (MATERIALS["background"], MATERIALS["water"]),
    "artefact": (MATERIALS["dust"], MATERIALS["insect_hole"]),
}
RANDOM = "random"  # the null's rows in a score table: random set 0 against the others
SIGN_COUNT, MAGNITUDE = "sign_count", "magnitude"
TABLE_COLUMNS = ["model", "camera", "layer", "class", "concept", "tcav", "tcav_std", "random", "random_std",
                 "cav_accuracy", "runs", "p_value", "p_bonferroni", "tests", "alpha", "significant"]


@dataclass
class ConceptSet:
    """Examples of one concept (or one random set) from one camera's photos.

    ``images``: uint8 (N, 3, H, W), each a patch mirror-tiled to the photo size. ``sources``: one row
    per example: ``plant_id``, ``top``, ``left``, ``patch`` (the window in the photo decoded at
    ``height``) and ``share`` (the concept's share of its pixels; NaN for a random set).
    """

    name: str
    camera: str
    height: int
    images: torch.Tensor
    sources: pd.DataFrame

    def __len__(self) -> int:
        return len(self.images)


def default_patch(height: int) -> int:
    """The patch side for photos ``height`` px high: a sixteenth of it, at least 3 px."""
    return max(3, round(height / 16))


def material_masks(plants: pd.DataFrame, camera: str, height: int) -> np.ndarray:
    """Material codes (plants, H, W) uint8 of each plant's ``camera`` photo at the photos' decoded
    size (nearest-neighbour resizing, as :func:`rice_lab.explain.photos.lesion_masks`)."""
    column = f"mask_{camera}"
    if column not in plants.columns:
        raise DataError(f"these plants have no {column} column: concepts are cut with the material masks, which "
                        "only a data folder with masks/ has (the synthetic generator writes them)")
    size_hw = load_size(height)
    out = np.zeros((len(plants), *size_hw), dtype=np.uint8)
    for i, path in enumerate(plants[column]):
        out[i] = np.asarray(Image.fromarray(read_mask(path)).resize(size_hw[::-1], Image.NEAREST))
    return out


def window_counts(inside: np.ndarray, patch: int) -> np.ndarray:
    """How many True pixels each ``patch`` x ``patch`` window of ``inside`` (H, W) holds, indexed by
    its top-left corner: (H - patch + 1, W - patch + 1), exact integers (a summed-area table)."""
    table = np.pad(inside.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return table[patch:, patch:] - table[:-patch, patch:] - table[patch:, :-patch] + table[:-patch, :-patch]


def mirror_tile(patch: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """(C, p, q) -> (C, H, W): the patch repeated, each copy mirrored against its neighbours."""
    height, width = size_hw
    row = torch.cat([patch, patch.flip(-1)], dim=-1)
    row = row.repeat(1, 1, -(-width // row.shape[-1]))[..., :width]
    block = torch.cat([row, row.flip(-2)], dim=-2)
    return block.repeat(1, -(-height // block.shape[-2]), 1)[..., :height, :]


def _name_key(name: str) -> int:
    return zlib.crc32(name.encode())


def _check(plants: pd.DataFrame, camera: str, patch: int, height: int) -> None:
    from rice_lab.data.zindi import CAMERAS

    if camera not in CAMERAS:
        raise ConfigError(f"camera={camera!r}: choose one of {', '.join(CAMERAS)}")
    if len(plants) == 0:
        raise DataError("no plants to cut concept patches from")
    size_hw = load_size(height)
    if not 1 <= patch <= min(size_hw):
        raise ConfigError(f"patch={patch}: a window side between 1 and {min(size_hw)} px for photos {height} px high")


def _assemble(name: str, camera: str, height: int, plants: pd.DataFrame, picks: list[dict]) -> ConceptSet:
    """Decode the photos of ``picks`` (rows of ``plants`` with their windows) and tile each patch."""
    from rice_lab.evaluate.encode import plant_photos

    sources = pd.DataFrame(picks, columns=["row", "plant_id", "top", "left", "patch", "share"])
    photos = plant_photos(plants.iloc[sources["row"].to_numpy()], camera, height) if picks else None
    size_hw = load_size(height)
    tiles = [mirror_tile(photos[i, :, r.top:r.top + r.patch, r.left:r.left + r.patch], size_hw)
             for i, r in enumerate(sources.itertuples())]
    images = torch.stack(tiles) if tiles else torch.zeros((0, 3, *size_hw), dtype=torch.uint8)
    return ConceptSet(name, camera, height, images, sources.drop(columns="row").reset_index(drop=True))


def concept_set(plants: pd.DataFrame, camera: str, height: int, name: str, codes: Sequence[int] | None = None,
                count: int = 20, patch: int | None = None, min_share: float = 0.3, minimum: int = 4,
                seed: int = 0) -> ConceptSet:
    """Up to ``count`` examples of concept ``name`` (material ``codes``, :data:`CONCEPTS`' by default),
    at most one per photo, from ``plants``' ``camera`` photos in a seeded order (module docstring).
    DataError when fewer than ``minimum`` photos hold a window with ``min_share`` of the material."""
    codes = tuple(CONCEPTS[name] if codes is None and name in CONCEPTS else codes or ())
    if not codes:
        raise ConfigError(f"concept {name!r}: give its material codes (known concepts: {', '.join(CONCEPTS)})")
    patch = patch or default_patch(height)
    _check(plants, camera, patch, height)
    if not 0 < min_share <= 1:
        raise ConfigError(f"min_share={min_share}: a share of the patch's pixels, in (0, 1]")
    rng = np.random.default_rng(stream_seed(seed, "explain-concepts", _name_key(name)))
    picks: list[dict] = []
    for row in rng.permutation(len(plants)):
        if len(picks) == count:
            break
        codes_here = material_masks(plants.iloc[[row]], camera, height)[0]
        counts = window_counts(np.isin(codes_here, codes), patch)
        best = counts.max()
        if best < min_share * patch * patch:
            continue
        tops, lefts = np.nonzero(counts == best)
        k = rng.integers(len(tops))
        picks.append({"row": int(row), "plant_id": plants["plant_id"].iloc[row], "top": int(tops[k]),
                      "left": int(lefts[k]), "patch": patch, "share": best / (patch * patch)})
    if len(picks) < minimum:
        raise DataError(f"concept {name!r}: only {len(picks)} of {len(plants)} {camera} photos hold a {patch} x "
                        f"{patch} px window that is at least {min_share:.0%} {name} (need {minimum}); give more "
                        "plants, a smaller patch or a lower min_share")
    return _assemble(name, camera, height, plants, picks)


def random_set(plants: pd.DataFrame, camera: str, height: int, index: int, count: int = 20,
               patch: int | None = None, seed: int = 0) -> ConceptSet:
    """Random set ``index``: ``count`` windows drawn uniformly over photos drawn from ``plants``
    (without repeating a photo while there are enough), tiled as the concepts' are."""
    patch = patch or default_patch(height)
    _check(plants, camera, patch, height)
    rng = np.random.default_rng(stream_seed(seed, "explain-concepts", _name_key(RANDOM), index))
    height_px, width_px = load_size(height)
    rows = rng.choice(len(plants), size=count, replace=count > len(plants))
    picks = [{"row": int(row), "plant_id": plants["plant_id"].iloc[row],
              "top": int(rng.integers(height_px - patch + 1)), "left": int(rng.integers(width_px - patch + 1)),
              "patch": patch, "share": float("nan")} for row in rows]
    return _assemble(f"{RANDOM}-{index}", camera, height, plants, picks)


def concept_sets(plants: pd.DataFrame, camera: str, height: int, concepts: Mapping[str, Sequence[int]] | Sequence[str]
                 = tuple(CONCEPTS), **options: Any) -> dict[str, ConceptSet]:
    """:func:`concept_set` for each concept (names of :data:`CONCEPTS`, or {name: codes})."""
    named = concepts if isinstance(concepts, Mapping) else {name: None for name in concepts}
    return {name: concept_set(plants, camera, height, name, codes, **options) for name, codes in named.items()}


def random_sets(plants: pd.DataFrame, camera: str, height: int, sets: int = 10, **options: Any) -> list[ConceptSet]:
    """``sets`` + 1 random sets: set 0 stands in for a concept in the null, sets 1..``sets`` are what
    every concept (and set 0) is tested against."""
    if sets < 2:
        raise ConfigError(f"sets={sets}: the t-test needs at least 2 random sets (Kim et al. use dozens)")
    return [random_set(plants, camera, height, i, **options) for i in range(sets + 1)]


class LinearCAV(CaptumClassifier):
    """captum's concept classifier as a seeded linear SVM (scikit-learn ``SGDClassifier``, hinge loss):
    fit on a random ``1 - test_share`` of the examples, accuracy on the rest (``accs``). Fit k draws
    its split and its SGD order from the ``explain-tcav`` stream at k."""

    def __init__(self, seed: int = 0, test_share: float = 0.33, alpha: float = 0.01) -> None:
        self.seed, self.test_share, self.alpha, self.fits = seed, test_share, alpha, 0
        self.model = None

    def train_and_eval(self, dataloader, **kwargs: Any) -> dict:
        from sklearn.linear_model import SGDClassifier

        batches = list(dataloader)
        x = torch.cat([b[0] for b in batches]).detach().float().cpu().numpy()
        y = torch.cat([b[1] for b in batches]).cpu().numpy()
        draw_seed = stream_seed(self.seed, "explain-tcav", self.fits)
        self.fits += 1
        order = np.random.default_rng(draw_seed).permutation(len(y))
        held = order[:int(self.test_share * len(y))]
        fit = order[len(held):]
        self.model = SGDClassifier(loss="hinge", alpha=self.alpha, max_iter=1000, tol=1e-3,
                                   random_state=draw_seed % 2**32).fit(x[fit], y[fit])
        accuracy = float((self.model.predict(x[held]) == y[held]).mean()) if len(held) else float("nan")
        return {"accs": torch.tensor(accuracy)}

    def weights(self) -> torch.Tensor:
        coef = torch.as_tensor(self.model.coef_, dtype=torch.float32)
        return torch.stack([-coef[0], coef[0]]) if len(coef) == 1 else coef  # captum's convention for two

    def classes(self) -> list[int]:
        # plain ints: captum saves them with the CAV and reloads it with torch.load(weights_only=True)
        return [int(c) for c in self.model.classes_]


def default_layers(model: nn.Module, count: int = 3) -> list[str]:
    """The top ``count`` weight-holding blocks of a rice-lab classifier's body, lowest first."""
    from rice_lab.explain.sanity import cascade_order

    blocks = [name for name in cascade_order(model) if name.startswith("body.")]
    if not blocks:
        raise ConfigError(f"{type(model).__name__} has no body: name the layers TCAV reads (layers=...)")
    return list(reversed(blocks[:count]))


def _batches(images: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    return [images[i:i + batch_size] for i in range(0, len(images), batch_size)]


def tcav_scores(model: nn.Module, meta: dict, concepts: Mapping[str, ConceptSet] | Sequence[ConceptSet],
                randoms: Sequence[ConceptSet], photos: torch.Tensor, labels: Sequence[str],
                layers: Sequence[str] | None = None, seed: int = 0, batch_size: int = 64) -> pd.DataFrame:
    """TCAV scores of every concept against every random set, per layer and class (module docstring).

    ``photos``: uint8 (N, 3, H, W) of the concepts' camera, with their class names ``labels``; each
    class is explained on its own photos, for its own logit. One row per layer, class, concept and
    run (random set 1..R): ``score`` (sign count, in [0, 1]), ``magnitude`` and ``cav_accuracy``;
    rows with concept :data:`RANDOM` are the null (random set 0 against the same sets).
    """
    from rice_lab.explain.photos import model_inputs

    concepts = list(concepts.values()) if isinstance(concepts, Mapping) else list(concepts)
    if len(randoms) < 3:
        raise ConfigError(f"{len(randoms)} random sets: give at least 3 (one for the null, two to test against)")
    every = [*concepts, *randoms]
    names = [s.name for s in every]
    if len(set(names)) != len(names) or RANDOM in names:
        raise ConfigError(f"concept names {names}: each must be unique and none may be {RANDOM!r}")
    for s in every:
        if s.camera != every[0].camera or s.height != every[0].height or len(s) < 2:
            raise ConfigError(f"set {s.name!r} ({len(s)} examples of {s.camera} photos {s.height} px high): every "
                              f"set needs 2+ examples of one camera at one height ({every[0].camera}, "
                              f"{every[0].height} px)")
    if every[0].height != meta["photo_height"]:
        raise ConfigError(f"concept sets cut from photos {every[0].height} px high for a classifier of "
                          f"{meta['photo_height']} px photos: cut them at its photo height")
    labels = list(labels)
    unknown = sorted(set(labels) - set(meta["classes"]))
    if unknown or len(labels) != len(photos):
        raise ConfigError(f"labels {unknown or len(labels)}: one of {', '.join(meta['classes'])} per photo "
                          f"({len(photos)})")
    camera = every[0].camera
    device = model_device(model)
    inputs = lambda images: model_inputs(images, camera, meta).to(device)  # noqa: E731
    safe = captum_safe(model, inputs(photos[:1]))
    layers = list(layers or default_layers(safe))
    for layer in layers:
        find_layer(safe, layer)
    captum_concepts = [Concept(i, s.name, [inputs(b) for b in _batches(s.images, batch_size)])
                       for i, s in enumerate(every)]
    tested, null, against = captum_concepts[:len(concepts)], captum_concepts[len(concepts)], captum_concepts[
        len(concepts) + 1:]
    experiments = [(c.name, run, [c, r]) for c in tested for run, r in enumerate(against, 1)]
    experiments += [(RANDOM, run, [null, r]) for run, r in enumerate(against, 1)]
    rows = []
    with tempfile.TemporaryDirectory() as where, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="captum")
        warnings.filterwarnings("ignore", message="numpy.core is deprecated", category=DeprecationWarning)
        # A fresh directory per call: captum reuses any activations and CAVs it finds saved under
        # the same model id and concept ids, even those of another model.
        method = TCAV(safe, layers, model_id="model", classifier=LinearCAV(seed), save_path=where)
        for k, name in enumerate(meta["classes"]):
            chosen = [i for i, label in enumerate(labels) if label == name]
            if not chosen:
                continue
            found = method.interpret(inputs(photos[chosen]), [sets for _, _, sets in experiments], target=k)
            for concept, run, sets in experiments:
                key = "-".join(str(c.id) for c in sets)
                for layer in layers:
                    stats = method.cavs[key][layer].stats
                    rows.append({"layer": layer, "class": name, "concept": concept, "run": run,
                                 "score": float(found[key][layer][SIGN_COUNT][0]),
                                 "magnitude": float(found[key][layer][MAGNITUDE][0]),
                                 "cav_accuracy": float(stats["accs"]), "photos": len(chosen)})
    return pd.DataFrame(rows).assign(camera=camera)


def significance(scores: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (model, camera,) layer, class and concept: mean and spread of its TCAV scores and
    of the null's, the t-test's p-value raw and Bonferroni-corrected over the family's ``tests``
    (layers x classes x concepts of one model and camera), and ``significant`` (corrected p < alpha).
    Columns :data:`TABLE_COLUMNS` (``model`` empty when the scores have none)."""
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha}: a significance level in (0, 1)")
    scores = scores if "model" in scores.columns else scores.assign(model="")
    rows = []
    for (model, camera), family in scores.groupby(["model", "camera"], sort=False):
        null = family[family["concept"] == RANDOM]
        tested = family[family["concept"] != RANDOM]
        groups = list(tested.groupby(["layer", "class", "concept"], sort=False))
        for (layer, name, concept), group in groups:
            reference = null[(null["layer"] == layer) & (null["class"] == name)]["score"].to_numpy()
            values = group["score"].to_numpy()
            if len(reference) < 2 or len(values) < 2:
                raise ConfigError(f"{concept} at {layer} for {name}: the t-test needs 2+ scores of the concept and "
                                  "of the null")
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)  # both samples constant: p is NaN
                p = float(ttest_ind(values, reference).pvalue)
            corrected = min(1.0, p * len(groups)) if np.isfinite(p) else float("nan")
            rows.append({"model": model, "camera": camera, "layer": layer, "class": name, "concept": concept,
                         "tcav": values.mean(), "tcav_std": values.std(ddof=1), "random": reference.mean(),
                         "random_std": reference.std(ddof=1), "cav_accuracy": group["cav_accuracy"].mean(),
                         "runs": len(values), "p_value": p, "p_bonferroni": corrected, "tests": len(groups),
                         "alpha": alpha, "significant": bool(np.isfinite(p) and p * len(groups) < alpha)})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


@dataclass
class TCAVResult:
    """``scores``: every run's score (:func:`tcav_scores`, with a ``model`` column); ``table``: their
    test (:func:`significance`); ``concepts``: where each concept's examples came from (``sources``
    of each set, with a ``concept`` column)."""

    scores: pd.DataFrame
    table: pd.DataFrame
    concepts: pd.DataFrame


def _labelled(plants: pd.DataFrame, classes: Sequence[str], per_class: int, seed: int) -> pd.DataFrame:
    """Up to ``per_class`` plants of each class, drawn with ``seed``."""
    if "label" not in plants.columns:
        raise DataError("the plants to explain have no label column: TCAV explains each class on its own photos")
    rng = np.random.default_rng(stream_seed(seed, "explain-concepts", _name_key("class-photos")))
    parts = []
    for name in classes:
        rows = np.flatnonzero((plants["label"] == name).to_numpy())
        parts.append(plants.iloc[np.sort(rng.permutation(rows)[:per_class])])
    chosen = pd.concat(parts)
    if chosen.empty:
        raise DataError(f"none of the plants to explain is labelled {', '.join(classes)}")
    return chosen


def _sources(concepts: Sequence[ConceptSet]) -> pd.DataFrame:
    return pd.concat([s.sources.assign(concept=s.name) for s in concepts], ignore_index=True)


def tcav(model: nn.Module, meta: dict, concept_plants: pd.DataFrame, class_plants: pd.DataFrame,
         camera: str = "rgb", concepts: Mapping[str, Sequence[int]] | Sequence[str] = tuple(CONCEPTS),
         layers: Sequence[str] | None = None, random: int = 10, count: int = 20, per_class: int = 20,
         alpha: float = 0.05, seed: int = 0, **options: Any) -> TCAVResult:
    """TCAV of one classifier, from plants: concepts and ``random`` random sets of ``count`` examples
    cut from ``concept_plants``' ``camera`` photos, classes explained on up to ``per_class`` labelled
    ``class_plants`` each (keep the two apart). ``options``: ``patch``, ``min_share``, ``minimum``."""
    return tcav_controls({"model": (model, meta)}, concept_plants, class_plants, camera, concepts, layers, random,
                         count, per_class, alpha, seed, random_init=False, **options)


def randomly_initialised(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised (``reset_parameters``), drawn from ``seed``."""
    import copy

    from rice_lab.explain.sanity import reinitialise

    return reinitialise(copy.deepcopy(model).eval(), stream_seed(seed, "explain-randomise", -1))


def _load(run: str | Path | tuple[nn.Module, dict]) -> tuple[nn.Module, dict]:
    if isinstance(run, tuple):
        return run
    from rice_lab.finetune.predictions import load_classifier

    return load_classifier(run)


def tcav_controls(runs: Mapping[str, str | Path | tuple[nn.Module, dict]], concept_plants: pd.DataFrame,
                  class_plants: pd.DataFrame, camera: str = "rgb",
                  concepts: Mapping[str, Sequence[int]] | Sequence[str] = tuple(CONCEPTS),
                  layers: Sequence[str] | None = None, random: int = 10, count: int = 20, per_class: int = 20,
                  alpha: float = 0.05, seed: int = 0, random_init: bool = True, **options: Any) -> TCAVResult:
    """The same TCAV test, on the same concept sets and photos, for each of ``runs`` ({name: a
    fine-tuning run directory, or (model, meta)}: the trained classifier first, then its controls,
    such as a shuffled-label twin); ``random_init`` adds ``random-init``, the first model with every
    weight redrawn (:func:`randomly_initialised`). The models must see photos alike (photo height)."""
    if not runs:
        raise ConfigError("no runs to test: give {name: run directory or (model, meta)}")
    loaded = {name: _load(run) for name, run in runs.items()}
    if random_init:
        if "random-init" in loaded:
            raise ConfigError("a run is already called 'random-init': rename it or pass random_init=False")
        first_model, first_meta = next(iter(loaded.values()))
        loaded["random-init"] = (randomly_initialised(first_model, seed), first_meta)
    height = next(iter(loaded.values()))[1]["photo_height"]
    for name, (_, meta) in loaded.items():
        if meta["photo_height"] != height or camera not in meta["cameras"]:
            raise ConfigError(f"{name}: a classifier of {', '.join(meta['cameras'])} photos {meta['photo_height']} px "
                              f"high; every model here must take {camera} photos {height} px high")
    sets = concept_sets(concept_plants, camera, height, concepts, seed=seed, count=count, **options)
    randoms = random_sets(concept_plants, camera, height, random, seed=seed, count=count,
                          patch=options.get("patch"))
    classes = next(iter(loaded.values()))[1]["classes"]
    chosen = _labelled(class_plants, classes, per_class, seed)
    from rice_lab.evaluate.encode import plant_photos

    photos = plant_photos(chosen, camera, height)
    scores = pd.concat([tcav_scores(model, meta, sets, randoms, photos, chosen["label"], layers, seed)
                        .assign(model=name) for name, (model, meta) in loaded.items()], ignore_index=True)
    return TCAVResult(scores, significance(scores, alpha), _sources(list(sets.values())))


__all__ = ["CONCEPTS", "RANDOM", "TABLE_COLUMNS", "ConceptSet", "LinearCAV", "TCAVResult", "concept_set",
           "concept_sets", "default_layers", "default_patch", "material_masks", "mirror_tile", "random_set",
           "random_sets", "randomly_initialised", "significance", "tcav", "tcav_controls", "tcav_scores",
           "window_counts"]
