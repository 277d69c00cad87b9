"""How alike two representations are: linear CKA with its permutation baseline, and effective rank.

Linear CKA (Kornblith et al. 2019) compares two feature sets of the same items (rows), whatever
their widths: 1 when one is an orthogonal transform and rescaling of the other, near 0 when they
are unrelated. Two forms:

* ``full``: the plain full-batch form, HSIC with the biased estimator on column-centred features,
  ``||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F)`` (or the same through the n x n Gram matrices, whichever
  is cheaper). Its value for *unrelated* features is not 0 when features are many for the rows
  (hundreds of features, tens of plants): read it against its baseline;
* ``minibatch`` (Nguyen, Raghu & Kornblith 2021): over batches of rows, the unbiased HSIC estimator
  (Song et al. 2012) of each batch's linear Gram matrices with zeroed diagonals,
  ``HSIC_1(K, L) = [tr(KL) + 1'K1 1'L1 / ((b-1)(b-2)) - 2/(b-2) 1'KL1] / (b(b-3))``, averaged over
  batches, and ``CKA = mean HSIC_1(K, L) / sqrt(mean HSIC_1(K, K) mean HSIC_1(L, L))``. It needs only
  one batch's features at a time (layer maps of a whole dataset never sit in memory) and its value
  for unrelated features is near 0. Rows are shuffled (``seed``) before they are cut into batches,
  so a batch is a random sample, not one class. One batch of every row is the unbiased full form.

CKA is sensitive to a few outlying rows and can be steered (Davari et al. 2023), so every
comparison here comes with a permutation baseline (the CKA after shuffling the rows of one side,
repeated: mean and 95 % range) and, where labels are given, a functional measure (cross-validated
probe accuracy of each side, :func:`rice_lab.evaluate.probes.cross_val_correct`).

Effective rank (Roy & Vetterli 2007): ``exp`` of the entropy of the normalised singular values, from
1 (all variance along one direction) to min(rows, features) (a flat spectrum).

Arithmetic is in float64 (the unbiased estimator subtracts large terms); features come back to the
caller untouched.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from rice_lab.errors import ConfigError

FORMS = ("minibatch", "full")
PROBES = ("knn", "linear")
MIN_BATCH = 4  # the unbiased estimator divides by b (b - 3)


@dataclass(frozen=True)
class CKAResult:
    """A CKA value beside its permutation baseline (rows of one side shuffled, ``permutations`` times)."""

    cka: float
    baseline: float        # mean CKA after shuffling
    baseline_low: float    # 2.5th percentile of the shuffled CKAs
    baseline_high: float   # 97.5th percentile
    form: str              # "minibatch" or "full"
    rows: int
    permutations: int

    def __str__(self) -> str:
        return (f"CKA {self.cka:.3f} (rows shuffled: {self.baseline:.3f} [{self.baseline_low:.3f}, "
                f"{self.baseline_high:.3f}], {self.permutations} permutations; {self.rows} rows, {self.form})")


@dataclass(frozen=True)
class Comparison:
    """Two representations of the same items: CKA with its baseline, effective ranks, and (with labels)
    each side's cross-validated probe accuracy, the functional measure CKA is read beside."""

    similarity: CKAResult
    effective_rank: tuple[float, float]
    probe: str | None = None
    accuracy: tuple[float, float] | None = None

    def row(self) -> dict:
        """One flat table row: cka, baseline..., effective_rank_a/b, probe, accuracy_a/b."""
        out = asdict(self.similarity)
        out.update(effective_rank_a=self.effective_rank[0], effective_rank_b=self.effective_rank[1], probe=self.probe,
                   accuracy_a=self.accuracy[0] if self.accuracy else None,
                   accuracy_b=self.accuracy[1] if self.accuracy else None)
        return out


def as_matrix(features) -> torch.Tensor:
    """Features (rows, ...) as a float64 CPU matrix (rows, features): later dimensions flattened."""
    x = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor) else features)
    if x.ndim < 2:
        raise ConfigError(f"features of shape {tuple(x.shape)}: expected (rows, features, ...)")
    return x.detach().to("cpu", torch.float64).flatten(1)


def _same_rows(x: torch.Tensor, y: torch.Tensor) -> None:
    if len(x) != len(y):
        raise ConfigError(f"CKA compares the same items: got {len(x)} rows against {len(y)}")


def linear_cka(x, y) -> float:
    """Plain full-batch linear CKA of two feature sets of the same rows (NaN if a side is constant)."""
    x, y = as_matrix(x), as_matrix(y)
    _same_rows(x, y)
    x, y = x - x.mean(0), y - y.mean(0)
    if len(x) < max(x.shape[1], y.shape[1]):  # Gram matrices are the smaller products
        k, l = x @ x.T, y @ y.T
        cross, self_x, self_y = (k * l).sum(), k.norm(), l.norm()
    else:
        cross, self_x, self_y = (y.T @ x).norm() ** 2, (x.T @ x).norm(), (y.T @ y).norm()
    return _ratio(float(cross), float(self_x) * float(self_y))


def _ratio(cross: float, norms: float) -> float:
    """``cross / norms``, NaN when a side is constant (its norm is 0 and CKA is undefined)."""
    return cross / norms if norms > 0 else math.nan


def gram(x: torch.Tensor) -> torch.Tensor:
    """Linear Gram matrix of a batch with its diagonal set to zero (the unbiased estimator's K~)."""
    k = x @ x.T
    k.fill_diagonal_(0.0)
    return k


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
    """Unbiased HSIC (Song et al. 2012) of two Gram matrices with zero diagonals, in O(b^2).

    With ``order`` (a permutation of the rows) ``l`` is taken as ``l[order][:, order]``: the Gram
    matrix of the other side's rows shuffled.
    """
    return _hsic(k, k.sum(1), l, l.sum(1), order)


def _hsic(k: torch.Tensor, k_rows: torch.Tensor, l: torch.Tensor, l_rows: torch.Tensor,
          order: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`hsic_unbiased` given each Gram matrix's row sums (computed once per batch)."""
    b = len(k)
    if b < MIN_BATCH:
        raise ConfigError(f"a batch of {b} rows: the unbiased HSIC needs at least {MIN_BATCH}")
    if order is not None:
        l, l_rows = l[order][:, order], l_rows[order]
    # tr(KL) of symmetric K, L as one dot product: much faster than (k * l).sum() on a busy machine
    trace = torch.dot(k.reshape(-1), l.reshape(-1))
    return (trace + k_rows.sum() * l_rows.sum() / ((b - 1) * (b - 2)) - 2 * (k_rows @ l_rows) / (b - 2)) / (b * (b - 3))


class MinibatchCKA:
    """Mini-batch linear CKA accumulated batch by batch, with its permutation baseline.

    ``update(x, y)`` takes one batch of both sides (the same rows); ``result()`` gives the CKA so far.
    With ``permutations`` > 0 each batch's rows of ``y`` are also shuffled that many times (``seed``),
    and baseline number r is the CKA of the r-th shuffles of every batch.
    """

    def __init__(self, permutations: int = 20, seed: int = 0) -> None:
        if permutations < 0:
            raise ConfigError(f"permutations={permutations}: must be 0 or more")
        self.permutations = permutations
        self.generator = torch.Generator().manual_seed(seed)
        self.xy = self.xx = self.yy = 0.0
        self.shuffled = torch.zeros(permutations, dtype=torch.float64)
        self.rows = self.batches = 0

    def update(self, x, y) -> None:
        """Add one batch of features of both sides (the same rows, in the same order)."""
        x, y = as_matrix(x), as_matrix(y)
        _same_rows(x, y)
        self.update_grams(gram(x), gram(y))

    def update_grams(self, k: torch.Tensor, l: torch.Tensor) -> None:
        """Add one batch given as zero-diagonal Gram matrices (:func:`gram`) of both sides."""
        k_rows, l_rows = k.sum(1), l.sum(1)
        self.xy += float(_hsic(k, k_rows, l, l_rows))
        self.xx += float(_hsic(k, k_rows, k, k_rows))
        self.yy += float(_hsic(l, l_rows, l, l_rows))  # a shuffle permutes L's rows and columns alike: unchanged
        for r in range(self.permutations):
            self.shuffled[r] += _hsic(k, k_rows, l, l_rows, torch.randperm(len(l), generator=self.generator))
        self.rows += len(k)
        self.batches += 1

    def result(self) -> CKAResult:
        """The CKA of every batch so far (NaN if a side is constant), and its baseline."""
        if not self.batches:
            raise ConfigError("no batch was added: call update(x, y) first")
        norms = math.sqrt(self.xx * self.yy) if self.xx > 0 and self.yy > 0 else 0.0
        shuffled = (self.shuffled / norms).numpy() if norms > 0 else np.full(self.permutations, np.nan)
        return _result(_ratio(self.xy, norms), shuffled, "minibatch", self.rows)


def _result(value: float, shuffled: np.ndarray, form: str, rows: int) -> CKAResult:
    if len(shuffled) and np.isfinite(shuffled).all():
        low, high = np.quantile(shuffled, [0.025, 0.975])
        mean = float(shuffled.mean())
    else:
        mean = low = high = math.nan
    return CKAResult(float(value), mean, float(low), float(high), form, rows, len(shuffled))


def batch_slices(rows: int, batch_size: int, seed: int | None = 0) -> list[torch.Tensor]:
    """Row indices cut into batches of about ``batch_size`` (none shorter than :data:`MIN_BATCH`),
    shuffled by ``seed`` first (``None``: in order)."""
    if batch_size < MIN_BATCH:
        raise ConfigError(f"batch_size={batch_size}: mini-batch CKA needs at least {MIN_BATCH} rows per batch")
    if rows < MIN_BATCH:
        raise ConfigError(f"{rows} rows: mini-batch CKA needs at least {MIN_BATCH}")
    order = torch.arange(rows) if seed is None else torch.randperm(rows, generator=torch.Generator().manual_seed(seed))
    return list(torch.tensor_split(order, math.ceil(rows / batch_size)))  # equal sizes: no tiny last batch


def minibatch_cka(x, y, batch_size: int = 256, seed: int | None = 0) -> float:
    """Mini-batch linear CKA of two feature sets of the same rows (rows shuffled by ``seed`` first)."""
    return cka(x, y, "minibatch", batch_size, permutations=0, seed=seed).cka


def cka(x, y, form: str = "minibatch", batch_size: int = 256, permutations: int = 20,
        seed: int | None = 0) -> CKAResult:
    """Linear CKA of two feature sets of the same rows, in ``form`` (see the module docstring), beside
    the CKA of ``permutations`` shuffles of ``y``'s rows."""
    if form not in FORMS:
        raise ConfigError(f"form={form!r}: choose {' or '.join(FORMS)}")
    x, y = as_matrix(x), as_matrix(y)
    _same_rows(x, y)
    if form == "minibatch":
        meter = MinibatchCKA(permutations, 0 if seed is None else seed)
        for rows in batch_slices(len(x), batch_size, seed):
            meter.update(x[rows], y[rows])
        return meter.result()
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    shuffled = np.array([linear_cka(x, y[torch.randperm(len(y), generator=generator)]) for _ in range(permutations)])
    return _result(linear_cka(x, y), shuffled, "full", len(x))


def effective_rank(features, center: bool = False) -> float:
    """Roy & Vetterli's effective rank: exp of the entropy of the normalised singular values
    (0.0 for an all-zero matrix). ``center`` removes each column's mean first."""
    x = as_matrix(features)
    if center:
        x = x - x.mean(0)
    singular = torch.linalg.svdvals(x)
    if singular.sum() <= 0:
        return 0.0
    p = singular / singular.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def probe_accuracy(features, labels: Sequence, probe: str = "knn", folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a ``probe`` on features (every row held out once), from the probes
    module; ``folds`` shrinks to the smallest class's size."""
    from rice_lab.evaluate.probes import cross_val_correct

    if probe not in PROBES:
        raise ConfigError(f"probe={probe!r}: choose {' or '.join(PROBES)}")
    codes = pd.factorize(pd.Series(list(labels)), sort=True)[0]
    if (codes < 0).any():
        raise ConfigError("labels hold missing values: probe only rows with a label")
    smallest = np.bincount(codes).min()
    if len(np.unique(codes)) < 2 or smallest < 2:
        raise ConfigError(f"labels need at least two classes of at least two rows each (the smallest has {smallest})")
    x = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor) else features)
    return float(cross_val_correct(x.detach().float().cpu().flatten(1), codes, probe, min(folds, int(smallest)),
                                   seed).mean())


def compare(x, y, labels: Sequence | None = None, form: str = "minibatch", batch_size: int = 256,
            permutations: int = 20, seed: int = 0, probe: str = "knn") -> Comparison:
    """Two representations of the same rows: CKA and baseline, effective ranks, probe accuracies."""
    result = cka(x, y, form, batch_size, permutations, seed)
    accuracy = None
    if labels is not None:
        if len(labels) != result.rows:
            raise ConfigError(f"{len(labels)} labels for {result.rows} rows")
        accuracy = (probe_accuracy(x, labels, probe, seed=seed), probe_accuracy(y, labels, probe, seed=seed))
    return Comparison(result, (effective_rank(x), effective_rank(y)), probe if labels is not None else None, accuracy)


def _encoder(encoder: nn.Module | str | Path) -> nn.Module:
    from rice_lab.explain.embeddings import as_encoder

    return as_encoder(encoder)


def checkpoint_cka(encoder_a: nn.Module | str | Path, encoder_b: nn.Module | str | Path, images: torch.Tensor,
                   camera: str = "rgb", labels: Sequence | None = None, **options) -> Comparison:
    """Two encoders (modules, run directories or snapshot files) on the same photos of one camera
    (uint8 (N, 3, H, W), each encoder normalising them as it was trained): :func:`compare` of their
    embeddings. ``options`` go to :func:`compare`."""
    from rice_lab.evaluate.encode import encode

    a, b = _encoder(encoder_a), _encoder(encoder_b)
    return compare(encode(a, images, camera), encode(b, images, camera), labels, **options)


def camera_cka(encoder: nn.Module | str | Path, plants: pd.DataFrame, labels: str | None = "label",
               height: int | None = None, **options) -> Comparison:
    """The RGB and RG-NIR embeddings of the same plants (side a: RGB, side b: RG-NIR): :func:`compare`,
    with probe accuracy of ``labels`` (a column of ``plants``; None for no probe)."""
    from rice_lab.evaluate.encode import encode, plant_photos
    from rice_lab.evaluate.probes import probe_size

    encoder = _encoder(encoder)
    height = probe_size(encoder, height)
    rgb, rgnir = (encode(encoder, plant_photos(plants, camera, height), camera, height=height)
                  for camera in ("rgb", "rgnir"))
    if labels is not None and labels not in plants:
        raise ConfigError(f"labels={labels!r} is not a column of the plants table")
    return compare(rgb, rgnir, None if labels is None else plants[labels].tolist(), **options)


class _Hooks:
    """Forward hooks that keep the latest output of each named module (the first tensor of a tuple)."""

    def __init__(self, model: nn.Module, layers: Sequence[str]) -> None:
        from rice_lab.explain.models import find_layer

        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [find_layer(model, name).register_forward_hook(self._keeper(name)) for name in layers]

    def _keeper(self, name: str):
        def keep(module, args, output) -> None:
            while isinstance(output, (tuple, list)):
                output = output[0]
            self.outputs[name] = output.detach()
        return keep

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _runner(model: nn.Module, images: torch.Tensor, camera: str | None):
    """A function running ``model`` on some of ``images``: through :func:`encode` (resize, the
    encoder's normalisation) when ``camera`` is given, else as they are (already model inputs)."""
    from rice_lab.evaluate.encode import encode, photo_stats
    from rice_lab.explain.models import evaluating, model_device

    if camera is not None:
        stats = None if getattr(model, "normalization", None) else photo_stats(images)  # one set for every batch
        return lambda batch: encode(model, batch, camera, stats=stats, batch_size=len(batch))

    @torch.no_grad()
    def run(batch: torch.Tensor):
        with evaluating(model):
            return model(batch.to(model_device(model)))
    return run


def layer_cka(model_a: nn.Module, images: torch.Tensor, layers_a: Sequence[str], model_b: nn.Module | None = None,
              layers_b: Sequence[str] | None = None, camera: str | None = None, labels: Sequence | None = None,
              batch_size: int = 256, permutations: int = 20, seed: int | None = 0, probe: str = "knn",
              ) -> pd.DataFrame:
    """Mini-batch CKA between named layers (forward hooks), each pair beside its permutation baseline.

    Every layer of ``layers_a`` (of ``model_a``) against every layer of ``layers_b`` (of ``model_b``;
    by default the same model and layers: a layer-by-layer map of one network). Layer outputs are
    flattened. ``images`` are model inputs, or with ``camera`` uint8 photos that go through
    :func:`rice_lab.evaluate.encode.encode`. With ``labels``, each layer's global-average-pooled
    features get a cross-validated probe accuracy (``accuracy_a``, ``accuracy_b``). One row per pair.
    Hooks are removed afterwards; models are run in eval mode, their own mode restored.
    """
    model_b = model_a if model_b is None else model_b
    layers_b = list(layers_a if layers_b is None else layers_b)
    layers_a = list(layers_a)
    same = model_b is model_a
    hooks_a = _Hooks(model_a, sorted(set(layers_a) | (set(layers_b) if same else set())))
    hooks_b = hooks_a if same else _Hooks(model_b, layers_b)
    meters = {(la, lb): MinibatchCKA(permutations, 0 if seed is None else seed) for la in layers_a for lb in layers_b}
    pooled: dict[tuple[str, str], list[torch.Tensor]] = {}
    run_a, run_b = _runner(model_a, images, camera), _runner(model_b, images, camera)
    try:
        for rows in batch_slices(len(images), batch_size, seed):
            run_a(images[rows])
            outputs_b = hooks_b.outputs
            if not same:
                outputs_a = dict(hooks_a.outputs)
                run_b(images[rows])
            else:
                outputs_a = outputs_b
            grams_a = {name: gram(as_matrix(outputs_a[name])) for name in layers_a}
            grams_b = {name: gram(as_matrix(outputs_b[name])) for name in layers_b}
            for (la, lb), meter in meters.items():
                meter.update_grams(grams_a[la], grams_b[lb])
            if labels is not None:
                for side, outputs, names in (("a", outputs_a, layers_a), ("b", outputs_b, layers_b)):
                    for name in names:
                        out = outputs[name]
                        pooled.setdefault((side, name), []).append(out.float().mean(dim=tuple(range(2, out.ndim)))
                                                                    if out.ndim > 2 else out.float())
    finally:
        hooks_a.remove()
        if not same:
            hooks_b.remove()
    order = torch.cat(batch_slices(len(images), batch_size, seed))
    accuracy = {}
    if labels is not None:
        if len(labels) != len(images):
            raise ConfigError(f"{len(labels)} labels for {len(images)} images")
        shuffled_labels = [list(labels)[i] for i in order.tolist()]  # features are in batch order
        accuracy = {key: probe_accuracy(torch.cat(parts).cpu(), shuffled_labels, probe,
                                        seed=0 if seed is None else seed) for key, parts in pooled.items()}
    rows = []
    for (la, lb), meter in meters.items():
        row = {"layer_a": la, "layer_b": lb, **asdict(meter.result())}
        if labels is not None:
            row.update(probe=probe, accuracy_a=accuracy["a", la], accuracy_b=accuracy["b", lb])
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["CKAResult", "Comparison", "MinibatchCKA", "as_matrix", "batch_slices", "camera_cka", "checkpoint_cka",
           "cka", "compare", "effective_rank", "gram", "hsic_unbiased", "layer_cka", "linear_cka", "minibatch_cka",
           "probe_accuracy"]
