"""Read and validate a folder in the Zindi rice-disease layout (real or synthetic).

The layout: ``Train.csv`` (``Image_id``, ``Label``), ``Test.csv`` (``Image_id``) and ``images/`` with
``id_<x>.jpg`` (RGB camera) and ``id_<x>_rgn.jpg`` (R-G-NIR camera) for every plant; both files of
a pair are separate csv rows. The synthetic generator adds ``masks/`` (one PNG per image),
``TestLabels.csv`` and ``metadata.csv``; the reader uses them when present.

One row per plant comes out, as a :class:`pandas.DataFrame` with the columns ``plant_id``, ``label``,
``split`` ("train" or "test"), ``rgb`` and ``rgnir`` (absolute paths) and, when masks exist,
``mask_rgb`` and ``mask_rgnir``. ``label`` is the training label: it is empty for every test plant,
even when ``TestLabels.csv`` knows it, so that nothing which selects labelled plants can train on the
test split. The test labels come only on request, as a separate ``test_label`` column
(``read_zindi(root, test_labels=True)``) or series (:func:`read_test_labels`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from rice_lab.errors import DataError

CLASSES: tuple[str, ...] = ("blast", "brown", "healthy")
CAMERAS: tuple[str, ...] = ("rgb", "rgnir")  # the two photos of a plant, in this order everywhere
ASPECT = 5 / 4  # width / height of the challenge's photos (500 x 400 landscape)
RGNIR_SUFFIX = "_rgn"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CSV_COLUMNS = {"Train.csv": ("Image_id", "Label"), "Test.csv": ("Image_id",),
               "TestLabels.csv": ("Image_id", "Label")}
# Perceptual hash: 16 x 16 brightness gradients (256 bits). Measured on the 600-plant synthetic set:
# photos of different plants differ in 71 bits or more, a copy re-encoded at JPEG quality 60, resized
# or brightened by 15 % in at most 16; same-plant photos (two cameras, one scene) are not compared.
NEAR_DUPLICATE_BITS = 24


class NearDuplicateWarning(UserWarning):
    """Photos of two different plants look almost the same (a perceptual-hash match)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data, tied to the file it is about."""

    path: str
    message: str
    plant_id: str | None = None
    other_plant_id: str | None = None  # a second plant the problem is about (dropped with it too)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Report:
    """What a scan of a Zindi folder found: the good plants, the problems and the conversions."""

    root: Path
    plants: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    image_sizes: Counter = field(default_factory=Counter)
    dropped: list[str] = field(default_factory=list)
    test_labels: dict[str, str] = field(default_factory=dict)

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
        if self.test_labels:
            lines.append(f"  test labels known for {len(self.test_labels)} plants (TestLabels.csv; "
                         "read only on request)")
        kinds = Counter(note.message for note in self.notes)
        for message, n in kinds.most_common():
            lines.append(f"  converted ({n}): {message}")
        if self.warnings:
            lines.append(f"  warnings: {len(self.warnings)} (near-duplicate photos of different plants)")
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


class _WatchedBytes(io.BytesIO):
    """A file's bytes that remember whether a reader asked for data past their end."""

    reached_end = False

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if not data and size != 0:
            self.reached_end = True
        return data


def _open_rgb(path: Path) -> tuple[Image.Image, str | None]:
    """Decode ``path`` completely and convert it to RGB; return the image and a note on conversion.

    A truncated file fails even when a library has switched on PIL's global ``LOAD_TRUNCATED_IMAGES``
    (which fills the missing rows in grey): a complete file is decoded without ever reading past its
    end, so a decoder that asked for more bytes than the file holds marks it as truncated. The global
    itself is never touched, since other threads may be decoding at the same time.
    """
    try:
        source = _WatchedBytes(path.read_bytes())
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except OSError as err:
        raise DataError(f"{path}: unreadable image ({err}); re-export or remove this file") from err
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                source.reached_end = False  # the header is read; from here on only the decoder reads
                opened.load()  # decode now: a truncated file fails here, not later in training
                if source.reached_end:
                    raise OSError("image file is truncated (its data ends before the picture does)")
                mode = opened.mode
                orientation = opened.getexif().get(0x0112, 1)
                upright = ImageOps.exif_transpose(opened)
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
    """Check a Zindi folder and collect every problem; never raises for bad data.

    Test labels (``TestLabels.csv``, shipped by the synthetic data) are checked and kept in
    ``report.test_labels``, never in the plants' ``label`` column.
    """
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
    if (root / "TestLabels.csv").is_file():
        frame = _read_csv(root / "TestLabels.csv", report.problems)
        if frame is not None:
            report.test_labels = _labels_by_plant(root / "TestLabels.csv", frame, report.problems)

    rows, listed = [], {}
    for csv_name, split in (("Train.csv", "train"), ("Test.csv", "test")):
        frame = _read_csv(root / csv_name, report.problems)
        if frame is None:
            continue
        listed[csv_name] = {plant_id_of(i)[0].lower(): plant_id_of(i)[0] for i in frame["Image_id"]}
        rows.extend(_plants_from_csv(root / csv_name, frame, split, index, report))
    train_ids, test_ids = listed.get("Train.csv", {}), listed.get("Test.csv", {})
    for key in sorted(set(train_ids) & set(test_ids)):
        report.problems.append(Problem(str(root / "Test.csv"), f"plant {test_ids[key]} is also listed in "
                                       "Train.csv: a test plant must never be a training plant", test_ids[key]))
    if not rows:
        return report
    plants = pd.DataFrame(rows)
    if check_images:
        _check_images(plants, masks_dir, report)
    bad = {p.plant_id for p in report.problems if p.plant_id}
    bad |= {p.other_plant_id for p in report.problems if p.other_plant_id}
    if masks_dir.is_dir():
        plants["mask_rgb"] = [str(masks_dir / f"{Path(p).stem}.png") for p in plants["rgb"]]
        plants["mask_rgnir"] = [str(masks_dir / f"{Path(p).stem}.png") for p in plants["rgnir"]]
    report.dropped = sorted(bad)
    # ids compare case-insensitively, as file names do: Train.csv's id_A and Test.csv's id_a are one plant
    keep = ~plants["plant_id"].str.lower().isin({b.lower() for b in bad})
    report.plants = plants[keep].reset_index(drop=True)
    return report


def _labels_by_plant(csv_path: Path, frame: pd.DataFrame, problems: list[Problem]) -> dict[str, str]:
    """{plant_id: label} from a csv's Image_id and Label columns; problems for unknown or split labels."""
    found: dict[str, set[str]] = {}
    for image_id, label in zip(frame["Image_id"], frame["Label"]):
        found.setdefault(plant_id_of(image_id)[0], set()).add(label.strip().lower())
    labels = {}
    for plant_id, values in found.items():
        unknown = sorted(values - set(CLASSES))
        if unknown:
            problems.append(Problem(str(csv_path), f"plant {plant_id}: unknown label "
                                    f"{', '.join(repr(u) for u in unknown)} (expected one of "
                                    f"{', '.join(CLASSES)})", plant_id))
        elif len(values) != 1:
            problems.append(Problem(str(csv_path), f"plant {plant_id}: its two images carry different "
                                    f"labels ({', '.join(sorted(values))})", plant_id))
        else:
            labels[plant_id] = values.pop()
    return labels


def _plants_from_csv(csv_path: Path, frame: pd.DataFrame, split: str, index: dict[str, Path],
                     report: Report) -> list[dict]:
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
    labels = _labels_by_plant(csv_path, frame.assign(Image_id=ids), problems) if split == "train" else {}
    records = []
    for plant_id, cameras in pairs.items():
        if split == "train" and plant_id not in labels:
            continue  # its label problem is already recorded
        record = {"plant_id": plant_id, "label": labels.get(plant_id), "split": split}
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


@dataclass(frozen=True)
class _Decoded:
    """What decoding one image found: its size, a conversion note or an error, and two hashes."""

    size: tuple[int, int] | None = None
    note: str | None = None
    error: str | None = None
    pixels: str | None = None            # content hash of the decoded pixels
    looks: np.ndarray | None = None      # perceptual hash, 256 bits as 32 bytes


def is_landscape_5_4(width: int, height: int) -> bool:
    """True for a photo in the challenge's 5:4 landscape shape (height within a pixel of 4/5 width)."""
    return abs(height - width / ASPECT) <= 1


def _check_images(plants: pd.DataFrame, masks_dir: Path, report: Report) -> None:
    """Decode every image and record what is wrong with it, with its plant's pair, or between plants.

    Per image: unreadable or truncated, mask missing. Per plant: its two photos differ in size, or
    are not 5:4 landscape. Across plants: identical pixels under two ids (a problem) and photos of two
    plants that look almost the same (a warning).
    """
    plants = plants.drop_duplicates(["rgb", "rgnir"])  # a plant listed in both csv files: decode it once
    jobs = [(plant_id, path) for plant_id, rgb, rgnir in zip(plants["plant_id"], plants["rgb"],
                                                             plants["rgnir"]) for path in (rgb, rgnir)]
    # PIL releases the GIL while decoding, so threads give a real speed-up on large folders
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        outcomes = list(pool.map(_decode_quietly, (path for _, path in jobs)))
    problems = report.problems
    for (plant_id, path), found in zip(jobs, outcomes):
        if found.error:
            problems.append(Problem(path, found.error, plant_id))
            continue
        report.image_sizes[found.size] += 1
        if found.note:
            report.notes.append(Problem(path, found.note, plant_id))
        if masks_dir.is_dir() and not (masks_dir / f"{Path(path).stem}.png").is_file():
            problems.append(Problem(str(masks_dir / f"{Path(path).stem}.png"), "mask missing", plant_id))
    for i in range(0, len(jobs), 2):  # the plant's two photos: one size, 5:4 landscape
        (plant_id, rgb), (_, rgnir) = jobs[i], jobs[i + 1]
        (w_rgb, h_rgb), (w_rgnir, h_rgnir) = outcomes[i].size or (0, 0), outcomes[i + 1].size or (0, 0)
        if not (w_rgb and w_rgnir):
            continue
        if (w_rgb, h_rgb) != (w_rgnir, h_rgnir):
            problems.append(Problem(rgnir, f"{w_rgnir}x{h_rgnir}, but the RGB photo of its plant "
                                    f"({Path(rgb).name}) is {w_rgb}x{h_rgb}: the two photos of a plant "
                                    "must have one size", plant_id))
        elif not is_landscape_5_4(w_rgb, h_rgb):
            problems.append(Problem(rgb, f"this photo and {Path(rgnir).name} are {w_rgb}x{h_rgb}, not 5:4 "
                                    "landscape like the challenge's 500x400; pre-training and the probes decode "
                                    "every photo at 5:4, which would squash these: crop them to 5:4", plant_id))
    first_seen: dict[str, tuple[str, str]] = {}
    for (plant_id, path), found in zip(jobs, outcomes):
        if found.pixels is None:
            continue
        if found.pixels in first_seen:
            other_plant, other_path = first_seen[found.pixels]
            problems.append(Problem(path, f"identical to {Path(other_path).name} (same pixels; plant "
                                    f"{other_plant}): one photo under two ids", plant_id,
                                    other_plant if other_plant != plant_id else None))
        else:
            first_seen[found.pixels] = (plant_id, path)
    # near-duplicates among distinct pictures (exact copies are problems already)
    unique = [(plant_id, path, found.looks) for (plant_id, path), found in zip(jobs, outcomes)
              if found.looks is not None and first_seen[found.pixels][1] == path]
    if unique:
        hashes = np.stack([looks for _, _, looks in unique])
        for i, j, bits in near_duplicates(hashes, [plant_id for plant_id, _, _ in unique]):
            (plant_a, path_a, _), (plant_b, path_b, _) = unique[i], unique[j]
            report.warnings.append(Problem(path_b, f"looks almost the same as {Path(path_a).name} (plant "
                                           f"{plant_a}; {bits} of 256 perceptual-hash bits differ): the same "
                                           "plant photographed twice?", plant_b, plant_a))


def perceptual_hash(image: Image.Image) -> np.ndarray:
    """A 256-bit difference hash (32 bytes): is each of 16 x 16 cells brighter than its right neighbour?

    Re-encoding, resizing or a mild change of brightness moves few bits; another picture about half.
    """
    grey = np.asarray(image.convert("L").resize((17, 16), Image.BILINEAR), dtype=np.int16)
    return np.packbits(grey[:, 1:] > grey[:, :-1])


def _differing_bits(block: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """(len(block), len(hashes)) Hamming distances between 32-byte hashes."""
    a, b = block.view(np.uint64), hashes.view(np.uint64)  # 4 words each
    if hasattr(np, "bitwise_count"):  # numpy >= 2: one instruction per word
        return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=2, dtype=np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    return table[block[:, None, :] ^ hashes[None, :, :]].sum(axis=2)


def near_duplicates(hashes: np.ndarray, groups: list[str], max_bits: int = NEAR_DUPLICATE_BITS,
                    chunk: int = 512) -> list[tuple[int, int, int]]:
    """Pairs (i, j, differing bits), i < j, of perceptual hashes at most ``max_bits`` apart.

    Pairs within one group (the two cameras of one plant, which show one scene) are left out.
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint8)
    groups_array = np.asarray(groups)
    pairs = []
    for start in range(0, len(hashes), chunk):
        distance = _differing_bits(hashes[start:start + chunk], hashes[start:])  # j >= start only
        rows, cols = np.nonzero(distance <= max_bits)
        for row, col in zip(rows, cols):
            i, j = start + int(row), start + int(col)
            if i < j and groups_array[i] != groups_array[j]:
                pairs.append((i, j, int(distance[row, col])))
    return sorted(pairs)


def _decode_quietly(path: str) -> _Decoded:
    """Decode one image and hash it, never raising: errors come back as messages."""
    try:
        image, note = _open_rgb(Path(path))
    except DataError as err:
        return _Decoded(error=str(err).split(": ", 1)[-1])
    pixels = hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest()
    return _Decoded(size=image.size, note=note, pixels=pixels, looks=perceptual_hash(image))


def read_zindi(root: str | Path, skip_bad: bool = False, check_images: bool = True,
               test_labels: bool = False) -> pd.DataFrame:
    """Return one row per plant; raise DataError listing every problem unless ``skip_bad``.

    Test plants have no ``label``. ``test_labels=True`` adds their labels as a separate
    ``test_label`` column (empty for training plants), for an explicit evaluation on the test split;
    it needs ``TestLabels.csv``, which only the synthetic data has. Near-duplicate photos are
    reported as a :class:`NearDuplicateWarning`, not an error.
    """
    report = scan_zindi(root, check_images=check_images)
    if report.problems and not (skip_bad and len(report.plants)):
        raise DataError(format_problems(report))
    if report.warnings:
        shown = "\n".join(f"  {w}" for w in report.warnings[:5])
        more = f"\n  ... and {len(report.warnings) - 5} more" if len(report.warnings) > 5 else ""
        warnings.warn(f"{report.root}: {len(report.warnings)} near-duplicate photo pair(s):\n{shown}{more}",
                      NearDuplicateWarning, stacklevel=2)
    plants = report.plants
    if test_labels:
        if not (report.root / "TestLabels.csv").is_file():
            raise DataError(f"{report.root / 'TestLabels.csv'}: not found, so the test plants' labels are "
                            "unknown (the challenge never published them; the synthetic data ships them)")
        plants = plants.assign(test_label=[report.test_labels.get(p) if split == "test" else None
                                           for p, split in zip(plants["plant_id"], plants["split"])])
    return plants


def read_test_labels(root: str | Path) -> pd.Series:
    """The test plants' labels from ``TestLabels.csv``, indexed by plant id, named ``test_label``."""
    plants = read_zindi(root, check_images=False, test_labels=True)
    test = plants[plants["split"] == "test"]
    return pd.Series(test["test_label"].to_numpy(), index=pd.Index(test["plant_id"], name="plant_id"),
                     name="test_label")


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
