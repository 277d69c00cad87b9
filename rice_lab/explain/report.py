"""``rice-lab explain RUN DATA --out DIR``: a fine-tuned classifier explained, and its explanations
tested, in one folder that opens offline (:func:`explain_run`).

What is explained: ``images`` held-out plants of DATA (the run's own validation split, rebuilt from its
manifest; drawn from ``seed``, the classes in turn), each camera's photo through the classifier, for
the class it predicts. Each of ``methods`` gives one map per photo, and so do the two baselines every
table carries (:mod:`rice_lab.explain.baselines`: a random map and the photo's Sobel edges); a method
counts only where it beats both. Per camera, method and photo:

* localisation against the lesion masks (:data:`rice_lab.explain.metrics.LOCALISATION`; photos
  without lesions score nothing). A data folder without ``masks/`` (the real photos) skips them, and
  the report says so; everything below still runs;
* faithfulness: the areas under the deletion and insertion curves (``steps`` steps), ROAD in both
  orders (mean over 20, 40, 60 and 80 % removed), and infidelity;
* robustness: max-sensitivity (``sensitivity_samples`` draws; methods only: the baselines ignore the
  model, and a random map redrawn from one seed would be perfectly, meaninglessly stable).

The table holds each metric's mean over photos with its 95 % bootstrap interval (``images``: how many
photos had a value), as ``table.csv`` (long) and ``table.md`` (a methods x metrics grid per camera);
``scores.csv`` keeps every photo's numbers. The sanity checks run on the first camera's first
``sanity_images`` photos: cascading randomisation for each method and the edge baseline
(``sanity.csv``), and data randomisation against ``shuffled`` (a twin run fine-tuned with shuffled
labels) when one is given. ``concepts`` adds TCAV with its controls (:mod:`rice_lab.explain.concepts`):
concepts cut from the run's training plants, classes explained on its validation plants
(``tcav.csv``). Figures (``figures/*.png``) and tables are gathered in ``report.html``, with every
image embedded, so the one file can be mailed or opened without a network. ``manifest.json`` records
the settings, seed, versions and the data's fingerprint.

Defaults are sized for 2 CPU cores: four methods (Integrated Gradients at 16 steps instead of
``attribute``'s 32), 8 photos, 10 deletion steps, 4 ROAD percentages, 4 max-sensitivity draws,
4 photos in the cascade.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from rice_lab.errors import CheckpointError, ConfigError, DataError
from rice_lab.explain.metrics import LOCALISATION, score_table

DEFAULT_METHODS = ("saliency", "integrated-gradients", "grad-cam", "guided-grad-cam")
DEFAULT_IMAGES = 8
BASELINES = ("random", "edge")
# Lighter than attribute()'s defaults where a method's cost grows with an option: the report's budget.
REPORT_OPTIONS: dict[str, dict[str, Any]] = {"integrated-gradients": {"n_steps": 16}}
# ROAD's imputation solves a sparse system per percentage, slower the more it removes: four points, not nine.
ROAD_PERCENTAGES = (20, 40, 60, 80)
FAITHFULNESS = ("deletion_auc", "insertion_auc", "road_morf", "road_lerf", "infidelity")
ROBUSTNESS = ("max_sensitivity",)
HIGHER_IS_BETTER = {**{name: True for name in LOCALISATION}, "deletion_auc": False, "insertion_auc": True,
                    "road_morf": False, "road_lerf": True, "infidelity": False, "max_sensitivity": False}
KIND = "explain"  # the manifest kind of a report folder


@dataclass
class ExplainReport:
    """What :func:`explain_run` wrote (``out``), and its tables: ``table`` (mean and interval per
    camera, method and metric), ``scores`` (one row per camera, method and photo), ``curves`` (mean
    deletion and insertion curves), ``sanity`` (the cascade's and data randomisation's table),
    ``tcav`` (the concept test, when asked), ``skipped`` ({part: why}), ``seconds`` per part and
    ``set_aside``: where an earlier report found in ``out`` was moved (``<out>.stale-<UTC time>``), if any."""

    out: Path
    html: Path
    table: pd.DataFrame
    scores: pd.DataFrame
    curves: pd.DataFrame
    sanity: pd.DataFrame
    tcav: pd.DataFrame | None
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    set_aside: Path | None = None


# ---------------------------------------------------------------------------------------------
# What is explained
# ---------------------------------------------------------------------------------------------

def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    from rice_lab.explain.attribution import method_options

    methods = tuple(methods)
    if not methods:
        raise ConfigError("no methods: name at least one attribution method")
    for method in methods:
        if method in BASELINES:
            raise ConfigError(f"method {method!r} is a baseline: the random and edge maps are always in the table")
        method_options(method, REPORT_OPTIONS.get(method, {}))
    if len(set(methods)) != len(methods):
        raise ConfigError(f"methods {', '.join(methods)}: each method once")
    return methods


def _check_cameras(cameras: Sequence[str] | str | None, meta: dict) -> tuple[str, ...]:
    if cameras is None:
        return tuple(meta["cameras"])
    cameras = (cameras,) if isinstance(cameras, str) else tuple(cameras)
    unknown = [c for c in cameras if c not in meta["cameras"]]
    if unknown or not cameras:
        raise ConfigError(f"camera {', '.join(unknown) or '(none)'}: this classifier was trained on "
                          f"{', '.join(meta['cameras'])} photos")
    return cameras


def explained_plants(plants: pd.DataFrame, run_config: dict, images: int, seed: int = 0) -> pd.DataFrame:
    """``images`` held-out plants: the run's validation split rebuilt on ``plants`` (its ``valid_pct``
    and ``split_seed``), drawn from ``seed``, the classes in turn (blast, brown, healthy, blast, ...).
    Labelled training plants stand in when the split holds none (data the run never saw)."""
    from rice_lab.finetune.data import assign_roles
    from rice_lab.seeding import stream_seed

    roles = assign_roles(plants, run_config.get("valid_pct", 0.2), run_config.get("split_seed", 0))
    pool = roles[roles["role"] == "valid"]
    if pool.empty:
        pool = roles[roles["label"].notna() & (roles["label"] != "")]
    if pool.empty:
        raise DataError("no labelled plant to explain: the data folder has no training plants")
    rng = np.random.default_rng(stream_seed(seed, "explain-sample"))
    queues = [list(rng.permutation(np.flatnonzero((pool["label"] == name).to_numpy())))
              for name in sorted(pool["label"].unique())]
    chosen: list[int] = []
    while len(chosen) < min(images, len(pool)):
        for queue in queues:
            if queue and len(chosen) < images:
                chosen.append(queue.pop(0))
    return pool.iloc[chosen].drop(columns=[c for c in ("role", "group") if c in pool.columns]).reset_index(drop=True)


def _prepare_out(out: Path, run: Path) -> Path | None:
    """Create ``out``; refuse a run directory or a folder holding anything but an earlier report. An
    earlier report is never written over: it is moved to ``<out>.stale-<UTC time>`` (returned)."""
    from rice_lab.runs import set_aside

    if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents:
        raise ConfigError(f"--out {out}: inside the run directory {run}; write the report beside the run")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file, not a folder")
    earlier = None
    if out.is_dir() and any(out.iterdir()):
        manifest = out / "manifest.json"
        try:
            kind = json.loads(manifest.read_text()).get("kind") if manifest.is_file() else None
        except (OSError, ValueError):
            kind = None
        if kind != KIND:
            raise ConfigError(f"--out {out}: a folder that holds other files; give a new or empty folder (an earlier "
                              "report there is moved aside, never written over)")
        earlier = set_aside(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    return earlier


# ---------------------------------------------------------------------------------------------
# Scores of one camera's maps
# ---------------------------------------------------------------------------------------------

def _maps(model, x: torch.Tensor, method: str, targets: torch.Tensor, seed: int) -> torch.Tensor:
    from rice_lab.explain.attribution import attribute
    from rice_lab.explain.baselines import edge_map, random_map

    if method == "random":
        return random_map(x, seed)
    if method == "edge":
        return edge_map(x)
    return attribute(model, x, method, targets, seed=seed, **REPORT_OPTIONS.get(method, {}))


def _scores(model, x: torch.Tensor, maps: torch.Tensor, masks: np.ndarray | None, targets: torch.Tensor,
            method: str, steps: int, sensitivity_samples: int, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """Every metric of one method's maps of one camera's photos, and the method's mean curves."""
    from rice_lab.explain import metrics

    found: dict[str, np.ndarray] = {}
    if masks is not None:
        found.update({name: metric(maps, masks) for name, metric in LOCALISATION.items()})
    deletion = metrics.deletion_curve(model, x, maps, targets, steps=steps)
    insertion = metrics.insertion_curve(model, x, maps, targets, steps=steps)
    found["deletion_auc"], found["insertion_auc"] = metrics.curve_auc(deletion), metrics.curve_auc(insertion)
    found["road_morf"] = metrics.road(model, x, maps, targets, "morf", percentages=ROAD_PERCENTAGES, seed=seed)
    found["road_lerf"] = metrics.road(model, x, maps, targets, "lerf", percentages=ROAD_PERCENTAGES, seed=seed)
    found["infidelity"] = metrics.infidelity(model, x, maps, targets, seed=seed)
    found["max_sensitivity"] = (np.full(len(x), np.nan) if method in BASELINES else
                                metrics.max_sensitivity(model, x, method, targets, samples=sensitivity_samples,
                                                        seed=seed, **REPORT_OPTIONS.get(method, {})))
    return found, {"deletion": deletion.mean(0), "insertion": insertion.mean(0)}


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

def _cell(row: pd.Series) -> str:
    if not np.isfinite(row["mean"]):
        return "-"
    if not np.isfinite(row["low"]):
        return f"{row['mean']:.3f}"
    return f"{row['mean']:.3f} [{row['low']:.3f}, {row['high']:.3f}]"


def wide_table(table: pd.DataFrame, camera: str) -> pd.DataFrame:
    """One camera's methods x metrics grid: "mean [low, high]" cells, "-" where nothing was measured."""
    part = table[table["camera"] == camera]
    grid = part.assign(cell=part.apply(_cell, axis=1)).pivot(index="method", columns="metric", values="cell")
    metrics = [m for m in (*LOCALISATION, *FAITHFULNESS, *ROBUSTNESS) if m in grid.columns]
    methods = list(dict.fromkeys(part["method"]))
    grid = grid.loc[methods, metrics]
    grid.columns = [f"{m} ({'higher' if HIGHER_IS_BETTER[m] else 'lower'} is better)" for m in metrics]
    return grid


def against_baselines(scores: pd.DataFrame, metrics: Sequence[str] | None = None, level: float = 0.95,
                      resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Whether each method beats each baseline, photo by photo: the paired bootstrap interval of the
    per-photo difference (method minus baseline, on the same photos; photos where either is NaN left
    out) on each metric both were scored on. One row per camera, method, metric and baseline, with
    ``beats`` True when the whole interval lies on the better side of zero; ``beats_both`` says
    whether that holds against every baseline."""
    from rice_lab.evaluate.bootstrap import bootstrap_ci

    metrics = [m for m in (metrics or HIGHER_IS_BETTER) if m in scores.columns]
    rows = []
    for camera, part in scores.groupby("camera", sort=False):
        wide = {method: group.set_index("plant_id") for method, group in part.groupby("method", sort=False)}
        for method, baseline, metric in itertools.product(
                [m for m in wide if m not in BASELINES], [b for b in BASELINES if b in wide], metrics):
            diff = (wide[method][metric] - wide[baseline][metric]).to_numpy(dtype=np.float64)
            diff = diff[np.isfinite(diff)]
            if len(diff) < 2:
                continue
            found = bootstrap_ci(diff, np.mean, level, resamples, seed)
            better = HIGHER_IS_BETTER[metric]
            rows.append({"camera": camera, "method": method, "metric": metric, "baseline": baseline,
                         "difference": found.estimate, "low": found.low, "high": found.high, "images": len(diff),
                         "beats": bool(found.low > 0) if better else bool(found.high < 0)})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    both = frame.groupby(["camera", "method", "metric"])["beats"].transform("all")
    return frame.assign(beats_both=both)


def markdown(frame: pd.DataFrame) -> str:
    """A pandas frame as a GitHub markdown table (its index first)."""
    header = [frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(index), *map(str, values)]) + " |" for index, values in
              zip(frame.index, frame.to_numpy())]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def _photo_for_display(photo: torch.Tensor) -> np.ndarray:
    """uint8 (3, H, W) -> grey (H, W) in [0, 1]: what the maps are drawn over (RG-NIR has no true colour)."""
    return photo.float().mean(0).numpy() / 255


def plot_maps(photos: torch.Tensor, maps: dict[str, torch.Tensor], masks: np.ndarray | None, plant_ids: Sequence[str],
              camera: str, rows: int = 3):
    """The first ``rows`` photos and each method's map over them: |map| scaled to its own maximum
    (magnitudes are not comparable across maps), the lesions outlined. Returns the figure."""
    import matplotlib.pyplot as plt

    rows = min(rows, len(photos))
    names = list(maps)
    fig, axes = plt.subplots(rows, len(names) + 1, figsize=(1.9 * (len(names) + 1), 1.7 * rows + 0.6), squeeze=False)
    for i in range(rows):
        grey = _photo_for_display(photos[i])
        axes[i, 0].imshow(photos[i].permute(1, 2, 0).numpy())
        axes[i, 0].set_ylabel(str(plant_ids[i]), fontsize=7)
        for j, name in enumerate(names, 1):
            magnitude = maps[name][i].abs().float().numpy()
            peak = magnitude.max()
            axes[i, j].imshow(grey, cmap="gray", vmin=0, vmax=1)
            axes[i, j].imshow(magnitude / peak if peak > 0 else magnitude, cmap="inferno", vmin=0, vmax=1, alpha=0.65)
        for ax in axes[i]:
            if masks is not None and masks[i].any():
                ax.contour(masks[i], levels=[0.5], colors="#56B4E9", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
    for j, name in enumerate(["photo", *names]):
        axes[0, j].set_title(name, fontsize=8)
    outline = "lesions outlined in blue" if masks is not None else "no lesion masks"
    fig.suptitle(f"{camera} photos: |map| scaled to each map's maximum; {outline}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_curves(curves: pd.DataFrame):
    """Mean deletion and insertion curves per method, one row of panels per camera. Returns the figure."""
    import matplotlib.pyplot as plt

    cameras = list(dict.fromkeys(curves["camera"]))
    fig, axes = plt.subplots(len(cameras), 2, figsize=(9, 3.2 * len(cameras)), squeeze=False)
    for row, camera in enumerate(cameras):
        for col, kind in enumerate(("deletion", "insertion")):
            ax = axes[row, col]
            part = curves[(curves["camera"] == camera) & (curves["curve"] == kind)]
            for method, group in part.groupby("method", sort=False):
                style = "--" if method in BASELINES else "-"
                ax.plot(group["fraction"], group["probability"], style, label=method, linewidth=1.4)
            ax.set_title(f"{camera}: {kind} ({'lower' if kind == 'deletion' else 'higher'} is better)", fontsize=9)
            ax.set_xlabel(f"share of pixels {'deleted' if kind == 'deletion' else 'inserted'}, most relevant first")
            ax.set_ylabel("probability of the class explained")
            ax.set_ylim(0, 1)
    axes[0, 1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_cascade(sanity: pd.DataFrame):
    """Each method's maps against the trained model's as the cascade randomises layers from the top,
    by rank correlation of |map| and by SSIM (the edge baseline ignores the model). Returns the figure."""
    import matplotlib.pyplot as plt

    cascade = sanity[sanity["check"] == "cascading"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, measure in zip(axes, ("spearman_abs", "ssim")):
        part = cascade[cascade["measure"] == measure]
        for method, group in part.groupby("method", sort=False):
            group = group.sort_values("step")
            spread = [group["mean"] - group["low"], group["high"] - group["mean"]]
            ax.errorbar(group["step"], group["mean"], yerr=spread,
                        fmt="--o" if method in BASELINES else "-o", markersize=3, capsize=2, label=method)
        layers = part.drop_duplicates("step").sort_values("step")
        ax.set_xticks(layers["step"], layers["layer"], rotation=45, fontsize=7)
        ax.axhline(0, color="#999999", linewidth=0.6)
        ax.set_title(f"{measure} with the trained model's maps", fontsize=9)
        ax.set_xlabel("randomised down to (cumulative, from the logits)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_tcav(table: pd.DataFrame):
    """TCAV score per concept and class (bars, with the spread over random sets), the null's mean
    (grey ticks), significant ones starred; a row of panels per model, a panel per layer."""
    import matplotlib.pyplot as plt

    models, layers = list(dict.fromkeys(table["model"])), list(dict.fromkeys(table["layer"]))
    concepts, classes = list(dict.fromkeys(table["concept"])), list(dict.fromkeys(table["class"]))
    fig, axes = plt.subplots(len(models), len(layers), figsize=(3.6 * len(layers), 2.8 * len(models)), squeeze=False)
    width = 0.8 / len(concepts)
    for r, model in enumerate(models):
        for c, layer in enumerate(layers):
            ax = axes[r, c]
            part = table[(table["model"] == model) & (table["layer"] == layer)]
            for k, concept in enumerate(concepts):
                rows = part[part["concept"] == concept].set_index("class").reindex(classes)
                xs = np.arange(len(classes)) + (k - (len(concepts) - 1) / 2) * width
                ax.bar(xs, rows["tcav"], width, yerr=rows["tcav_std"], capsize=2, label=concept)
                for x, star in zip(xs, rows["significant"].fillna(False)):
                    if star:
                        ax.text(x, 1.02, "*", ha="center", fontsize=10)
            null = part.drop_duplicates("class").set_index("class").reindex(classes)["random"]
            ax.scatter(np.arange(len(classes)), null, marker="_", s=400, color="#555555", zorder=3, label="random")
            ax.set_xticks(range(len(classes)), classes, fontsize=8)
            ax.set_ylim(0, 1.1)
            ax.set_title(f"{model}: {layer}", fontsize=9)
    axes[0, -1].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------

STYLE = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:right}th{background:#f3f3f3}tr.baseline td{background:#f7f7f7;font-style:italic}
.note{background:#fff6d9;border-left:4px solid #E69F00;padding:0.5em 1em}img{max-width:100%}
code{background:#f3f3f3;padding:0 3px}"""


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}' \
           "</figcaption></figure>"


def _html_table(frame: pd.DataFrame, baselines: bool = False) -> str:
    text = frame.to_html(escape=True, border=0, na_rep="-", float_format=lambda v: f"{v:.3f}")
    if baselines:  # mark the baseline rows, so a reader sees what every method has to beat
        for name in BASELINES:
            text = text.replace(f"<tr>\n      <th>{name}</th>", f'<tr class="baseline">\n      <th>{name}</th>')
    return text


def _page(title: str, settings: dict[str, str], notes: list[str], sections: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
                   for k, v in settings.items())
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><table>{rows}</table>"]
    parts += [f"<p class='note'>{html.escape(note)}</p>" for note in notes]
    parts += [f"<h2>{html.escape(heading)}</h2>{body}" for heading, body in sections]
    return "".join(parts) + "</body></html>\n"


READING = ("How to read the table: each cell is the mean over photos with its 95 % bootstrap interval; a method "
           "counts only where it beats both baselines (random and edge, in grey). Localisation: pointing game, "
           "relevance mass and rank accuracy, ROC-AUC of the map against the lesion mask (higher is better). "
           "Faithfulness: areas under the deletion curve (lower) and insertion curve (higher), ROAD "
           "most-relevant-first "
           "(lower) and least-relevant-first (higher), infidelity (lower). Robustness: max-sensitivity (lower), never "
           "read alone: a constant map is perfectly robust.")


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

def _progress(tasks: list[tuple[str, Callable[[], None]]], enabled: bool) -> None:
    """Run each (label, work) in turn, under a progress bar when ``enabled``."""
    if not enabled:
        for _, work in tasks:
            work()
        return
    from fastprogress.fastprogress import progress_bar

    bar = progress_bar(tasks)
    for label, work in bar:
        bar.comment = label
        work()
    print()


def _classifier_hash(run: Path | None) -> str | None:
    """Content hash of a fine-tuning run's kept classifier (None without a run)."""
    from rice_lab.finetune.data import photo_hash

    return None if run is None else photo_hash(Path(run) / "classifier.pt")


def load_report(out: str | Path) -> ExplainReport:
    """The report an earlier :func:`explain_run` wrote to ``out``, read back from its files."""
    from rice_lab.runs import read_manifest

    out = Path(out)
    manifest = read_manifest(out)
    if manifest.get("kind") != KIND:
        raise CheckpointError(f"{out}: a {manifest.get('kind')!r} folder, not an explain report")
    tcav = out / "tcav.csv"
    return ExplainReport(out, out / "report.html", pd.read_csv(out / "table.csv"), pd.read_csv(out / "scores.csv"),
                         pd.read_csv(out / "curves.csv"), pd.read_csv(out / "sanity.csv"),
                         pd.read_csv(tcav) if tcav.is_file() else None, manifest.get("skipped", {}),
                         manifest.get("seconds", {}))


def _report_is_current(out: Path, config: dict, fingerprint: str, hashes: dict) -> bool:
    """Whether ``out`` holds a finished report made with these settings, data and classifiers."""
    from rice_lab.runs import read_manifest, stored_form

    if not (out / "report.html").is_file() or not (out / "manifest.json").is_file():
        return False
    try:
        manifest = read_manifest(out)
    except CheckpointError:
        return False
    return (manifest.get("kind") == KIND and manifest.get("config") == stored_form(config)
            and manifest.get("data_fingerprint") == fingerprint and manifest.get("classifiers") == hashes)


def explain_run(run: str | Path, data: str | Path, out: str | Path, methods: Sequence[str] = DEFAULT_METHODS,
                images: int = DEFAULT_IMAGES, seed: int = 0, cameras: Sequence[str] | str | None = None,
                concepts: bool = False, shuffled: str | Path | None = None, steps: int = 10,
                sensitivity_samples: int = 4, sanity_images: int = 4, progress: bool = True,
                if_needed: bool = False) -> ExplainReport:
    """Explain fine-tuning run ``run`` on the plants of ``data`` and test the explanations; write the
    tables, figures and ``report.html`` to ``out`` (module docstring). ``cameras``: which photos
    (default: every camera the classifier knows). ``if_needed``: when ``out`` already holds a report
    made with the same settings, data and classifiers (by content), read it back instead."""
    from rice_lab.data.zindi import data_fingerprint, read_zindi
    from rice_lab.explain.photos import camera_photos, lesion_masks, model_inputs
    from rice_lab.finetune.predictions import load_classifier
    from rice_lab.runs import read_manifest, write_manifest

    started = time.perf_counter()
    run, data, out = Path(run), Path(data), Path(out)
    methods = _check_methods(methods)
    if images < 2:
        raise ConfigError(f"images={images}: explain at least 2 photos (an interval needs two)")
    if steps < 1 or sensitivity_samples < 1 or sanity_images < 2:
        raise ConfigError(f"steps={steps}, sensitivity_samples={sensitivity_samples}, sanity_images={sanity_images}: "
                          "at least 1, 1 and 2")
    model, meta = load_classifier(run)
    run_config = read_manifest(run)["config"]
    cameras = _check_cameras(cameras, meta)
    if not data.is_dir():
        raise DataError(f"{data}: data folder not found")
    plants_all = read_zindi(data)
    has_masks = all(f"mask_{camera}" in plants_all.columns for camera in cameras)
    if concepts and not has_masks:
        raise DataError(f"{data}: no masks/ folder, and concepts are cut with the material masks; leave out --concepts "
                        "(the rest of the report needs no masks)")
    twin = None
    if shuffled is not None:
        from rice_lab.explain.sanity import shuffled_label_pair

        _, twin, _ = shuffled_label_pair(run, shuffled)
    # resolved paths: the same report whether it is asked for from the repository or from the book's folder
    config = {"run": str(run.resolve()), "data": str(data.resolve()), "methods": list(methods), "images": images,
              "seed": seed, "cameras": list(cameras), "concepts": concepts,
              "shuffled": None if shuffled is None else str(Path(shuffled).resolve()),
              "steps": steps, "sensitivity_samples": sensitivity_samples, "sanity_images": sanity_images,
              "options": REPORT_OPTIONS, "road_percentages": list(ROAD_PERCENTAGES)}
    fingerprint = data_fingerprint(plants_all)
    hashes = {"run": _classifier_hash(run), "shuffled": _classifier_hash(None if shuffled is None else Path(shuffled))}
    if if_needed and _report_is_current(out, config, fingerprint, hashes):
        return load_report(out)
    earlier = _prepare_out(out, run)
    plants = explained_plants(plants_all, run_config, images, seed)
    ids = list(plants["plant_id"])
    skipped: dict[str, str] = {}
    if not has_masks:
        skipped["localisation"] = (f"{data} has no masks/ folder (real photos have none), so the maps could not be "
                                   "scored against the lesions; faithfulness, robustness and the sanity checks ran")
    if shuffled is None:
        skipped["data randomisation"] = "no shuffled-label twin given (--shuffled RUN)"

    photos = camera_photos(plants, meta)
    inputs = {camera: model_inputs(photos[camera], camera, meta) for camera in cameras}
    masks = {camera: lesion_masks(plants, camera, meta["photo_height"]) if has_masks else None for camera in cameras}
    from rice_lab.explain.models import resolve_targets

    targets = {camera: resolve_targets(model, inputs[camera], None) for camera in cameras}
    rows, curves, maps_shown, seconds = [], [], {camera: {} for camera in cameras}, {}
    sanity_frames: list[pd.DataFrame] = []
    tcav_result = []

    def score(camera: str, method: str) -> Callable[[], None]:
        def work() -> None:
            tick = time.perf_counter()
            maps = _maps(model, inputs[camera], method, targets[camera], seed)
            maps_shown[camera][method] = maps.detach().cpu()
            found, mean_curves = _scores(model, inputs[camera], maps, masks[camera], targets[camera], method, steps,
                                         sensitivity_samples, seed)
            rows.append(pd.DataFrame({"camera": camera, "method": method, "plant_id": ids, "label": plants["label"],
                                      "target": [meta["classes"][int(t)] for t in targets[camera]], **found}))
            for kind, curve in mean_curves.items():
                curves.append(pd.DataFrame({"camera": camera, "method": method, "curve": kind,
                                            "fraction": np.linspace(0, 1, len(curve)), "probability": curve}))
            seconds[f"{camera} {method}"] = time.perf_counter() - tick
        return work

    first = cameras[0]
    few = inputs[first][:sanity_images]

    def cascade(method: str) -> Callable[[], None]:
        def work() -> None:
            from rice_lab.explain.sanity import cascading_randomisation, explainer

            tick = time.perf_counter()
            explain = (explainer(method) if method in BASELINES else
                       explainer(method, seed, **REPORT_OPTIONS.get(method, {})))
            found = cascading_randomisation(model, few, explain, targets[first][:sanity_images], seed=seed)
            sanity_frames.append(found.table().assign(method=method, check="cascading", camera=first))
            seconds[f"cascade {method}"] = time.perf_counter() - tick
        return work

    def data_check() -> None:
        from rice_lab.explain.sanity import data_randomisation

        tick = time.perf_counter()
        for method in methods:
            found = data_randomisation(model, twin, few, method, targets[first][:sanity_images], seed=seed,
                                       **REPORT_OPTIONS.get(method, {}))
            sanity_frames.append(found.table().assign(method=method, check="data", camera=first))
        seconds["data randomisation"] = time.perf_counter() - tick

    def concept_test() -> None:
        from rice_lab.explain.concepts import CONCEPTS, concept_set, tcav_controls
        from rice_lab.finetune.data import assign_roles

        tick = time.perf_counter()
        roles = assign_roles(plants_all, run_config.get("valid_pct", 0.2), run_config.get("split_seed", 0))
        concept_plants = roles[roles["role"] == "train"]
        usable = []
        for name in CONCEPTS:  # a material too rare in these photos is left out, and the report says why
            try:
                concept_set(concept_plants, first, meta["photo_height"], name, seed=seed)
                usable.append(name)
            except DataError as err:
                skipped[f"concept {name}"] = str(err)
        if not usable:
            skipped["concepts (TCAV)"] = "no concept had enough examples in the training plants' photos"
            return
        runs = {"trained": (model, meta), **({"shuffled-labels": (twin, meta)} if twin is not None else {})}
        tcav_result.append(tcav_controls(runs, concept_plants, roles[roles["role"] == "valid"], camera=first,
                                         concepts=usable, seed=seed))
        seconds["tcav"] = time.perf_counter() - tick

    tasks = [(f"{camera}: {method}", score(camera, method)) for camera in cameras for method in (*methods, *BASELINES)]
    tasks += [(f"cascade: {method}", cascade(method)) for method in (*methods, "edge")]
    if twin is not None:
        tasks.append(("data randomisation", data_check))
    if concepts:
        tasks.append(("concepts (TCAV)", concept_test))
    _progress(tasks, progress)

    scores = pd.concat(rows, ignore_index=True)
    metric_names = [m for m in (*LOCALISATION, *FAITHFULNESS, *ROBUSTNESS) if m in scores.columns]
    table = score_table(scores, ["camera", "method"], metric_names, seed=seed)
    table["better"] = table["metric"].map(lambda m: "higher" if HIGHER_IS_BETTER[m] else "lower")
    curves_frame = pd.concat(curves, ignore_index=True)
    sanity = pd.concat(sanity_frames, ignore_index=True)[["check", "camera", "method", "step", "layer", "measure",
                                                          "mean", "low", "high", "images"]]
    tcav = tcav_result[0] if tcav_result else None

    # files
    scores.to_csv(out / "scores.csv", index=False)
    table.to_csv(out / "table.csv", index=False)
    sanity.to_csv(out / "sanity.csv", index=False)
    curves_frame.to_csv(out / "curves.csv", index=False)
    grids = {camera: wide_table(table, camera) for camera in cameras}
    notes = [f"{part} skipped: {why}" for part, why in skipped.items()]
    (out / "table.md").write_text("\n\n".join([*(f"> {note}" for note in notes),
                                               *(f"## {camera}\n\n{markdown(grid)}" for camera, grid in grids.items())])
                                  + "\n")
    figures = out / "figures"
    shown = {camera: _save(plot_maps(photos[camera], maps_shown[camera], masks[camera], ids, camera),
                           figures / f"maps_{camera}.png") for camera in cameras}
    curve_figure = _save(plot_curves(curves_frame), figures / "deletion_insertion.png")
    cascade_figure = _save(plot_cascade(sanity), figures / "cascade.png")
    tcav_figure = None
    if tcav is not None:
        tcav.table.to_csv(out / "tcav.csv", index=False)
        tcav.scores.to_csv(out / "tcav_scores.csv", index=False)
        tcav_figure = _save(plot_tcav(tcav.table), figures / "tcav.png")
    seconds["total"] = time.perf_counter() - started

    # the page
    sections = [(f"Methods x metrics: {camera} photos", _html_table(grid, baselines=True)) for camera, grid in
                grids.items()]
    sections += [(f"Maps: {camera} photos", _image(path, f"maps over the {camera} photos")) for camera, path in
                 shown.items()]
    sections.append(("Deletion and insertion", _image(curve_figure, "mean deletion and insertion curves")))
    cascade_table = sanity.pivot_table(index=["check", "method", "step", "layer"], columns="measure", values="mean",
                                       sort=False)
    sections.append((f"Sanity checks ({first} photos, {len(few)} of them)",
                     _image(cascade_figure, "cascading randomisation from the logits down")
                     + _html_table(cascade_table)))
    if tcav is not None:
        sections.append(("Concepts (TCAV)", _image(tcav_figure, "TCAV scores; * significant after Bonferroni") +
                         _html_table(tcav.table.set_index(["model", "layer", "class", "concept"]).drop(
                             columns=["camera", "alpha"]))))
    settings = {"run": str(run), "data": str(data), "plants explained": f"{len(ids)} held-out plants: {', '.join(ids)}",
                "cameras": ", ".join(cameras), "methods": ", ".join(f"{m} {REPORT_OPTIONS.get(m, '')}".strip()
                                                                   for m in methods),
                "baselines": ", ".join(BASELINES), "seed": str(seed),
                "photos with lesions": ("; ".join(f"{camera}: {int(m.any(axis=(1, 2)).sum())} of {len(ids)}"
                                                  for camera, m in masks.items()) + " (localisation is scored on these)"
                                        if has_masks else "unknown: no masks"),
                "settings": f"deletion/insertion steps {steps}; ROAD at {', '.join(map(str, ROAD_PERCENTAGES))} % "
                            f"removed; max-sensitivity draws {sensitivity_samples}; "
                            f"sanity checks on {len(few)} photos",
                "time": f"{seconds['total']:.0f} s"}
    page = _page(f"Explaining {run.name}", settings, [READING, *notes], sections)
    report_path = out / "report.html"
    report_path.write_text(page, encoding="utf-8")
    write_manifest(out, KIND, config, fingerprint,
                   extra={"plants": ids, "skipped": skipped, "seconds": seconds, "classifiers": hashes})
    return ExplainReport(out, report_path, table, scores, curves_frame, sanity, None if tcav is None else tcav.table,
                         skipped, seconds, earlier)


__all__ = ["BASELINES", "DEFAULT_IMAGES", "DEFAULT_METHODS", "ExplainReport", "explain_run", "explained_plants",
           "markdown", "plot_cascade", "plot_curves", "plot_maps", "plot_tcav", "wide_table"]
