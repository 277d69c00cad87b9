"""Read and validate a folder in the Zindi rice-disease layout (real or synthetic).

The layout: ``Train.csv`` (``Image_id``, ``Label``), ``Test.csv`` (``Image_id``) and ``images/`` with
``id_<x>.jpg`` (RGB camera) and ``id_<x>_rgn.jpg`` (R-G-NIR camera) for every plant; both files of
a pair are separate csv rows. The synthetic generator adds ``masks/`` (one PNG per image),
``TestLabels.csv`` and ``metadata.csv``; the reader uses them when present.

One row per plant comes out, as a :class:`pandas.DataFrame` with the columns ``plant_id``, ``label``,
``split`` ("train" or "test"), ``rgb`` and ``rgnir`` (absolute paths) and, when masks exist,
``mask_rgb`` and ``mask_rgnir``.
"""

from __future__ import annotations

import csv
import os
import threading
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, ImageOps

from rice_lab.errors import DataError

CLASSES: tuple[str, ...] = ("blast", "brown", "healthy")
CAMERAS: tuple[str, ...] = ("rgb", "rgnir")  # the two photos of a plant, in this order everywhere
ASPECT = 5 / 4  # width / height of the challenge's photos (500 x 400 landscape)
RGNIR_SUFFIX = "_rgn"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_STRICT_DECODING = threading.Lock()
CSV_COLUMNS = {"Train.csv": ("Image_id", "Label"), "Test.csv": ("Image_id",)}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data, tied to the file it is about."""

    path: str
    message: str
    plant_id: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Report:
    """What a scan of a Zindi folder found: the good plants, the problems and the conversions."""

    root: Path
    plants: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    image_sizes: Counter = field(default_factory=Counter)
    dropped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """Plants per class and split, image sizes and conversions, as printable lines."""
        lines = [f"{self.root}: {len(self.plants)} plants"]
        if len(self.plants):
            table = self.plants.assign(label=self.plants["label"].fillna("(unlabelled)"))
            counts = table.groupby(["split", "label"]).size()
            for (split, label), n in counts.items():
                lines.append(f"  {split:<6} {label:<12} {n:>6}")
        for (width, height), n in self.image_sizes.most_common():
            lines.append(f"  image size {width}x{height}: {n} images")
        kinds = Counter(note.message for note in self.notes)
        for message, n in kinds.most_common():
            lines.append(f"  converted ({n}): {message}")
        if self.dropped:
            lines.append(f"  dropped {len(self.dropped)} bad plants: {', '.join(sorted(self.dropped))}")
        return "\n".join(lines)


def load_image(path: str | Path) -> Image.Image:
    """Open an image fully, upright (EXIF orientation applied), as 8-bit RGB; DataError if unreadable."""
    image, _ = _open_rgb(Path(path))
    return image


def read_mask(path: str | Path) -> np.ndarray:
    """Read a synthetic material mask as an (height, width) uint8 array of material codes."""
    try:
        with Image.open(path) as mask:
            return np.asarray(mask.convert("L"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read mask ({err})") from err


def _open_rgb(path: Path) -> tuple[Image.Image, str | None]:
    """Decode ``path`` completely and convert it to RGB; return the image and a note on conversion."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # a library switched on lenient decoding globally; a truncated file must still fail here
        with _STRICT_DECODING:
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            try:
                return _open_rgb(path)
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()  # decode now: a truncated file fails here, not later in training
                mode = opened.mode
                orientation = opened.getexif().get(0x0112, 1)
                upright = ImageOps.exif_transpose(opened)
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as err:
        kind = "truncated image" if "truncated" in str(err).lower() else "unreadable image"
        raise DataError(f"{path}: {kind} ({err}); re-export or remove this file") from err
    note = "EXIF orientation applied" if orientation not in (1, None) else None
    if mode != "RGB":
        note = f"{_describe_mode(mode)} image converted to 8-bit RGB"
        upright = _to_rgb(upright)
    return upright, note


def _describe_mode(mode: str) -> str:
    names = {"L": "grayscale", "LA": "grayscale+alpha", "RGBA": "RGBA", "P": "palette", "PA": "palette",
             "CMYK": "CMYK", "I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I": "32-bit integer",
             "F": "floating-point", "1": "1-bit", "YCbCr": "YCbCr", "LAB": "Lab", "HSV": "HSV"}
    return names.get(mode, f"mode {mode}")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; 16/32-bit data is rescaled, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(array / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def plant_id_of(image_id: str) -> tuple[str, str]:
    """Split an ``Image_id`` into (plant id, camera): ``id_ab_rgn.jpg`` -> ("id_ab", "rgnir")."""
    stem = Path(image_id.strip()).stem if Path(image_id.strip()).suffix.lower() in IMAGE_EXTENSIONS \
        else image_id.strip()
    if stem.lower().endswith(RGNIR_SUFFIX):
        return stem[: -len(RGNIR_SUFFIX)], "rgnir"
    return stem, "rgb"


def pair_files(names: Iterable[str]) -> tuple[dict[str, dict[str, str]], list[Problem]]:
    """Group image names into plants: {plant_id: {"rgb": name, "rgnir": name}}, plus pairing problems.

    An RGNIR file is matched to its RGB partner by stripping ``_rgn`` from its stem; extensions are
    compared case-insensitively.
    """
    plants: dict[str, dict[str, str]] = {}
    problems: list[Problem] = []
    for name in names:
        plant_id, camera = plant_id_of(name)
        cameras = plants.setdefault(plant_id, {})
        if camera in cameras:
            problems.append(Problem(name, f"duplicate {camera} image for plant {plant_id} "
                                          f"(also {cameras[camera]})", plant_id))
            continue
        cameras[camera] = name
    for plant_id, cameras in plants.items():
        for camera, partner in (("rgb", "rgnir"), ("rgnir", "rgb")):
            if camera in cameras and partner not in cameras:
                expected = plant_id + (RGNIR_SUFFIX if partner == "rgnir" else "") + ".jpg"
                problems.append(Problem(cameras[camera], f"missing {partner} partner (expected {expected})",
                                        plant_id))
    complete = {pid: cams for pid, cams in plants.items() if len(cams) == 2}
    return complete, problems


def _read_csv(path: Path, problems: list[Problem]) -> pd.DataFrame | None:
    """Read a Zindi csv as strings, recording a problem (not raising) when it cannot be used."""
    if not path.is_file():
        problems.append(Problem(str(path), "csv file not found"))
        return None
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as err:
        problems.append(Problem(str(path), f"cannot parse csv ({str(err).strip()})"))
        return None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in CSV_COLUMNS[path.name] if c not in frame.columns]
    if missing:
        problems.append(Problem(str(path), f"missing column(s) {', '.join(missing)} "
                                           f"(found: {', '.join(frame.columns) or 'none'})"))
        return None
    return frame


def _index_images(images_dir: Path) -> dict[str, Path]:
    """Map each lower-cased image stem (``id_x`` or ``id_x_rgn``) to its file."""
    index: dict[str, Path] = {}
    for path in sorted(images_dir.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            index.setdefault(path.stem.lower(), path)
    return index


def scan_zindi(root: str | Path, check_images: bool = True) -> Report:
    """Check a Zindi folder and collect every problem; never raises for bad data."""
    root = Path(root).expanduser().resolve()
    empty = pd.DataFrame(columns=["plant_id", "label", "split", "rgb", "rgnir"])
    report = Report(root=root, plants=empty)
    if not root.is_dir():
        report.problems.append(Problem(str(root), "data folder not found"))
        return report
    images_dir = root / "images"
    if not images_dir.is_dir():
        report.problems.append(Problem(str(images_dir), "images folder not found"))
        return report
    index = _index_images(images_dir)
    if not index:
        report.problems.append(Problem(str(images_dir), "images folder holds no .jpg/.png images"))
        return report
    masks_dir = root / "masks"
    test_labels = _read_test_labels(root / "TestLabels.csv", report.problems)

    rows = []
    for csv_name, split in (("Train.csv", "train"), ("Test.csv", "test")):
        frame = _read_csv(root / csv_name, report.problems)
        if frame is None:
            continue
        rows.extend(_plants_from_csv(root / csv_name, frame, split, index, test_labels, report))
    if not rows:
        return report
    plants = pd.DataFrame(rows)
    bad = {p.plant_id for p in report.problems if p.plant_id}
    if check_images:
        bad |= _check_images(plants, masks_dir, report)
    if masks_dir.is_dir():
        plants["mask_rgb"] = [str(masks_dir / f"{Path(p).stem}.png") for p in plants["rgb"]]
        plants["mask_rgnir"] = [str(masks_dir / f"{Path(p).stem}.png") for p in plants["rgnir"]]
    report.dropped = sorted(bad)
    report.plants = plants[~plants["plant_id"].isin(bad)].reset_index(drop=True)
    return report


def _read_test_labels(path: Path, problems: list[Problem]) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        problems.append(Problem(str(path), f"cannot parse csv ({str(err).strip()})"))
        return {}
    if not {"Image_id", "Label"} <= set(frame.columns):
        problems.append(Problem(str(path), "missing column(s) Image_id/Label"))
        return {}
    return {plant_id_of(i)[0]: label.strip().lower() for i, label in zip(frame["Image_id"], frame["Label"])}


def _plants_from_csv(csv_path: Path, frame: pd.DataFrame, split: str, index: dict[str, Path],
                     test_labels: dict[str, str], report: Report) -> list[dict]:
    """Turn the csv rows (two per plant) into one record per complete, consistently labelled plant."""
    problems = report.problems
    ids = [i.strip() for i in frame["Image_id"]]
    for image_id, n in Counter(i.lower() for i in ids).items():
        if n > 1:
            problems.append(Problem(str(csv_path), f"duplicate Image_id {image_id} ({n} rows)",
                                    plant_id_of(image_id)[0]))
    pairs, pair_problems = pair_files(dict.fromkeys(ids))  # dedupe, keep order
    for problem in pair_problems:
        problems.append(Problem(str(csv_path), f"row {problem.path}: {problem.message}", problem.plant_id))
    labels: dict[str, set[str]] = {}
    if "Label" in frame.columns:
        for image_id, label in zip(ids, frame["Label"]):
            labels.setdefault(plant_id_of(image_id)[0], set()).add(label.strip().lower())
    records = []
    for plant_id, cameras in pairs.items():
        label = None
        if split == "train":
            found = labels.get(plant_id, set())
            unknown = sorted(found - set(CLASSES))
            if unknown:
                problems.append(Problem(str(csv_path), f"plant {plant_id}: unknown label "
                                        f"{', '.join(repr(u) for u in unknown)} (expected one of "
                                        f"{', '.join(CLASSES)})", plant_id))
                continue
            if len(found) != 1:
                problems.append(Problem(str(csv_path), f"plant {plant_id}: its two images carry different "
                                        f"labels ({', '.join(sorted(found))})", plant_id))
                continue
            label = found.pop()
        elif plant_id in test_labels:
            label = test_labels[plant_id]
        record = {"plant_id": plant_id, "label": label, "split": split}
        for camera, image_id in cameras.items():
            path = index.get(plant_id_of(image_id)[0].lower() + ("_rgn" if camera == "rgnir" else ""))
            if path is None:
                problems.append(Problem(str(report.root / "images" / f"{Path(image_id).stem}.jpg"),
                                        f"image listed in {csv_path.name} but not found in images/",
                                        plant_id))
                break
            if path.suffix != path.suffix.lower():
                report.notes.append(Problem(str(path), "upper-case file extension accepted", plant_id))
            record[camera] = str(path)
        else:
            records.append(record)
    return records


def _check_images(plants: pd.DataFrame, masks_dir: Path, report: Report) -> set[str]:
    """Decode every image (and look for its mask); return the plant ids with unreadable files."""
    jobs = [(plant_id, path) for plant_id, rgb, rgnir in zip(plants["plant_id"], plants["rgb"],
                                                             plants["rgnir"]) for path in (rgb, rgnir)]
    # PIL releases the GIL while decoding, so threads give a real speed-up on large folders
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        outcomes = list(pool.map(_decode_quietly, (path for _, path in jobs)))
    bad = set()
    for (plant_id, path), (size, note, error) in zip(jobs, outcomes):
        if error:
            report.problems.append(Problem(path, error, plant_id))
            bad.add(plant_id)
            continue
        report.image_sizes[size] += 1
        if note:
            report.notes.append(Problem(path, note, plant_id))
        if masks_dir.is_dir() and not (masks_dir / f"{Path(path).stem}.png").is_file():
            report.problems.append(Problem(str(masks_dir / f"{Path(path).stem}.png"), "mask missing",
                                           plant_id))
            bad.add(plant_id)
    return bad


def _decode_quietly(path: str) -> tuple[tuple[int, int] | None, str | None, str | None]:
    """(size, conversion note, error message) for one image, never raising."""
    try:
        image, note = _open_rgb(Path(path))
    except DataError as err:
        return None, None, str(err).split(": ", 1)[-1]
    return image.size, note, None


def read_zindi(root: str | Path, skip_bad: bool = False, check_images: bool = True) -> pd.DataFrame:
    """Return one row per plant; raise DataError listing every problem unless ``skip_bad``."""
    report = scan_zindi(root, check_images=check_images)
    if report.problems and not (skip_bad and len(report.plants)):
        raise DataError(format_problems(report))
    return report.plants


def format_problems(report: Report) -> str:
    """One line per problem, headed by a count, for error messages and the CLI."""
    lines = [f"{report.root}: {len(report.problems)} problem(s) found"]
    lines += [f"  {problem}" for problem in report.problems]
    return "\n".join(lines)


def split_plants(plants: pd.DataFrame, valid_pct: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """Mark a seeded, label-stratified validation set among training plants (``is_valid`` column).

    The split is by plant, so the RGB and RGNIR photos of one plant are always on the same side.
    """
    if not 0.0 < valid_pct < 1.0:
        raise DataError(f"valid_pct={valid_pct}: must be strictly between 0 and 1")
    plants = plants.copy()
    plants["is_valid"] = False
    rng = np.random.default_rng(seed)
    train = plants[plants["split"] == "train"]
    for _, group in train.groupby("label", sort=True):
        ids = np.sort(group["plant_id"].to_numpy())
        n_valid = int(round(len(ids) * valid_pct))
        if len(ids) >= 2:
            n_valid = min(max(n_valid, 1), len(ids) - 1)
        chosen = rng.choice(ids, size=n_valid, replace=False) if n_valid else []
        plants.loc[plants["plant_id"].isin(chosen), "is_valid"] = True
    return plants


def data_fingerprint(plants: pd.DataFrame) -> str:
    """A short content hash of the plant table and every image it points to (for run manifests)."""
    import hashlib

    digest = hashlib.sha256()
    for row in plants.sort_values("plant_id").itertuples(index=False):
        digest.update(f"{row.plant_id}|{row.label}|{row.split}".encode())
        for path in (row.rgb, row.rgnir):
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]
