"""Writing a whole dataset in the Zindi layout: images, masks, csv tables, config, completion marker."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

from rice_lab.data.synthetic.config import SynthConfig, settings_as_written
from rice_lab.data.synthetic.plan import PlantTask, plan_plants
from rice_lab.data.synthetic.plant import make_plant
from rice_lab.data.zindi import CLASSES
from rice_lab.errors import DataError

COMPLETE_MARKER = ".complete"
CONFIG_FILE = "synth_config.json"


def _write_plant(args: tuple[PlantTask, SynthConfig, str]) -> list[dict]:
    """Worker: make one plant and write its two JPEGs and two masks; return its metadata rows."""
    task, config, root = args
    plant = make_plant(task, config)
    rows = []
    for camera, suffix in (("rgb", ""), ("rgnir", "_rgn")):
        stem = f"{task.plant_id}{suffix}"
        shot = plant[camera]
        # Full-resolution chroma (4:4:4): our small images stand for downscaled 500 px photos, whose
        # colour detail survives; 4:2:0 at 128 px would wipe out small spots in the NIR channel.
        Image.fromarray(shot["image"], "RGB").save(Path(root, "images", f"{stem}.jpg"),
                                                   quality=shot["meta"]["jpeg_quality"], subsampling=0)
        Image.fromarray(shot["mask"], "L").save(Path(root, "masks", f"{stem}.png"))
        rows.append(shot["meta"])
    return rows


# --------------------------------------------------------------------------------------------------
# The whole dataset.


def synthesize(root: str | Path, config: SynthConfig, progress: bool | None = None) -> Path:
    """Write the whole synthetic dataset to ``root`` (atomically: a temp folder renamed at the end)."""
    root = Path(root).expanduser().resolve()
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not (root / CONFIG_FILE).exists())):
        raise DataError(f"{root}: exists and is not a synthetic dataset folder; refusing to overwrite it "
                        f"(choose another path or delete it)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "masks").mkdir()
    tasks = plan_plants(config)
    show = sys.stderr.isatty() if progress is None else progress
    try:
        rows = _run_tasks(tasks, config, tmp, show)
        _write_tables(tmp, tasks, rows)
        (tmp / CONFIG_FILE).write_text(json.dumps(config.output_settings(), indent=2, sort_keys=True) + "\n")
        (tmp / COMPLETE_MARKER).write_text("complete\n")
    except BaseException:  # interrupted or failed: leave no half-written folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return root


def _run_tasks(tasks: list[PlantTask], config: SynthConfig, tmp: Path, show: bool) -> list[dict]:
    """Make every plant, in worker processes when asked; rows come back in plant order."""
    workers = min(config.workers or os.cpu_count() or 1, len(tasks))
    jobs = [(task, config, str(tmp)) for task in tasks]
    rows: list[dict] = []
    if workers <= 1:
        results = map(_write_plant, jobs)
        executor = None
    else:
        executor = ProcessPoolExecutor(max_workers=workers)
        results = executor.map(_write_plant, jobs, chunksize=max(1, len(jobs) // (workers * 16)))
    try:
        for done, plant_rows in enumerate(results, 1):
            rows.extend(plant_rows)
            if show and (done % 50 == 0 or done == len(jobs)):
                print(f"\rsynth: {done}/{len(jobs)} plants", end="" if done < len(jobs) else "\n",
                      file=sys.stderr, flush=True)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return rows


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_tables(root: Path, tasks: list[PlantTask], rows: list[dict]) -> None:
    """Train.csv, Test.csv, SampleSubmission.csv, TestLabels.csv and metadata.csv."""
    train = [t for t in tasks if t.split == "train"]
    test = [t for t in tasks if t.split == "test"]
    def pair(task: PlantTask) -> tuple[str, str]:
        return f"{task.plant_id}.jpg", f"{task.plant_id}_rgn.jpg"

    _write_csv(root / "Train.csv", ["Image_id", "Label"], [[i, t.label] for t in train for i in pair(t)])
    _write_csv(root / "Test.csv", ["Image_id"], [[i] for t in test for i in pair(t)])
    _write_csv(root / "TestLabels.csv", ["Image_id", "Label"], [[i, t.true_label] for t in test for i in pair(t)])
    third = repr(1 / 3)
    _write_csv(root / "SampleSubmission.csv", ["Image_id", *CLASSES],
               [[f"{t.plant_id}.jpg", third, third, third] for t in test])
    header = list(rows[0]) if rows else ["Image_id"]
    _write_csv(root / "metadata.csv", header, [[row[k] for k in header] for row in rows])


def is_complete(root: str | Path, config: SynthConfig) -> bool:
    """True when ``root`` holds a finished dataset written with the same settings as ``config``."""
    root = Path(root)
    try:
        written = json.loads((root / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(written, dict):
        return False
    wanted = json.loads(json.dumps(config.output_settings()))
    return (root / COMPLETE_MARKER).is_file() and settings_as_written(written) == wanted


def ensure_synthetic(root: str | Path, config: SynthConfig | None = None) -> Path:
    """Reuse the dataset at ``root`` if it was written with this config, else (re)generate it."""
    config = config or SynthConfig()
    root = Path(root).expanduser().resolve()
    if is_complete(root, config):
        return root
    return synthesize(root, config)
