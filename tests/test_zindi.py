"""The Zindi reader: pairing, splitting and one clear problem per bad input."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rice_lab.data import load_image, pair_files, read_test_labels, read_zindi, scan_zindi, split_plants
from rice_lab.data.zindi import NearDuplicateWarning, near_duplicates
from rice_lab.errors import DataError
from zindi_folder import edit_csv, make_zindi, write_image


@pytest.fixture
def zindi(tmp_path):
    return make_zindi(tmp_path / "rice")


def only_problem(report) -> str:
    assert len(report.problems) == 1, [str(p) for p in report.problems]
    return str(report.problems[0])


# --- pairing -----------------------------------------------------------------------------------

def test_pair_files_matches_rgnir_by_stripping_suffix_in_any_order():
    names = ["id_b_rgn.jpg", "id_a.jpg", "id_b.JPG", "id_a_rgn.jpg"]
    pairs, problems = pair_files(names)
    assert problems == []
    assert pairs == {"id_a": {"rgb": "id_a.jpg", "rgnir": "id_a_rgn.jpg"},
                     "id_b": {"rgb": "id_b.JPG", "rgnir": "id_b_rgn.jpg"}}


def test_pair_files_reports_each_missing_partner():
    pairs, problems = pair_files(["id_a.jpg", "id_b_rgn.jpg", "id_c.jpg", "id_c_rgn.jpg"])
    assert list(pairs) == ["id_c"]
    messages = sorted(str(p) for p in problems)
    assert messages == ["id_a.jpg: missing rgnir partner (expected id_a_rgn.jpg)",
                        "id_b_rgn.jpg: missing rgb partner (expected id_b.jpg)"]


def test_reader_gives_one_row_per_plant_with_labels_and_both_cameras(zindi):
    plants = read_zindi(zindi)
    assert len(plants) == 15 + 3
    train = plants[plants["split"] == "train"]
    assert train["label"].value_counts().to_dict() == {"blast": 5, "brown": 5, "healthy": 5}
    assert plants[plants["split"] == "test"]["label"].isna().all()
    for row in plants.itertuples():
        assert row.rgnir.endswith(f"{row.plant_id}_rgn.jpg") and row.rgb.endswith(f"{row.plant_id}.jpg")


# --- splitting ---------------------------------------------------------------------------------

def test_split_is_stratified_seeded_and_by_plant(tmp_path):
    plants = read_zindi(make_zindi(tmp_path / "r", per_class=10))
    split = split_plants(plants, valid_pct=0.2, seed=3)
    assert split["plant_id"].is_unique  # one row per plant: a pair cannot straddle the split
    valid = split[split["is_valid"]]
    assert valid["label"].value_counts().to_dict() == {"blast": 2, "brown": 2, "healthy": 2}
    assert not split.loc[split["split"] == "test", "is_valid"].any()
    same = split_plants(plants, valid_pct=0.2, seed=3)
    assert (same["is_valid"] == split["is_valid"]).all()
    others = [set(split_plants(plants, 0.2, seed=s).query("is_valid")["plant_id"]) for s in range(5)]
    assert len({frozenset(o) for o in others}) > 1


def test_split_rejects_impossible_fraction(zindi):
    with pytest.raises(DataError, match="valid_pct=1.5"):
        split_plants(read_zindi(zindi), valid_pct=1.5)


# --- bad input: one clear problem each ---------------------------------------------------------

def test_missing_partner_file_names_the_file(zindi):
    (zindi / "images" / "id_bl00001_rgn.jpg").unlink()
    message = only_problem(scan_zindi(zindi))
    assert "id_bl00001_rgn.jpg" in message and "not found in images/" in message


def test_csv_missing_partner_row(zindi):
    edit_csv(zindi / "Train.csv", lambda f: f[f["Image_id"] != "id_br10002_rgn.jpg"])
    message = only_problem(scan_zindi(zindi))
    assert "id_br10002.jpg" in message and "missing rgnir partner" in message


def test_unreadable_image(zindi):
    (zindi / "images" / "id_he20000.jpg").write_bytes(b"this is not a jpeg")
    message = only_problem(scan_zindi(zindi))
    assert "id_he20000.jpg" in message and "unreadable image" in message


def test_truncated_image(zindi):
    path = zindi / "images" / "id_he20001_rgn.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = only_problem(scan_zindi(zindi))
    assert "id_he20001_rgn.jpg" in message and "truncated image" in message


def test_unknown_label(zindi):
    edit_csv(zindi / "Train.csv", lambda f: f.assign(Label=f["Label"].replace({"brown": "rust"})))
    report = scan_zindi(zindi)
    assert len(report.problems) == 5
    assert all("unknown label 'rust'" in str(p) and "Train.csv" in str(p) for p in report.problems)


def test_conflicting_labels_within_a_pair(zindi):
    def edit(frame):
        frame.loc[frame["Image_id"] == "id_bl00000_rgn.jpg", "Label"] = "healthy"
        return frame
    edit_csv(zindi / "Train.csv", edit)
    assert "different labels (blast, healthy)" in only_problem(scan_zindi(zindi))


def test_duplicate_ids(zindi):
    edit_csv(zindi / "Train.csv", lambda f: pd.concat([f, f.iloc[[0]]]))
    message = only_problem(scan_zindi(zindi))
    assert "duplicate Image_id id_bl00000.jpg (2 rows)" in message


def test_csv_missing_column(zindi):
    edit_csv(zindi / "Train.csv", lambda f: f.drop(columns=["Label"]))
    message = only_problem(scan_zindi(zindi))
    assert "Train.csv" in message and "missing column(s) Label" in message


@pytest.mark.parametrize("case", ["no folder", "no images folder", "empty images folder"])
def test_missing_or_empty_folders(tmp_path, case):
    root = tmp_path / "rice"
    if case != "no folder":
        root.mkdir()
    if case == "empty images folder":
        (root / "images").mkdir()
    report = scan_zindi(root)
    assert not report.ok and len(report.problems) == 1
    assert {"no folder": "data folder not found", "no images folder": "images folder not found",
            "empty images folder": "holds no"}[case] in str(report.problems[0])
    with pytest.raises(DataError, match="1 problem"):
        read_zindi(root)


def test_upper_case_extension_is_accepted(zindi):
    image = zindi / "images" / "id_bl00003.jpg"
    image.rename(image.with_suffix(".JPG"))
    report = scan_zindi(zindi)
    assert report.ok
    row = report.plants.set_index("plant_id").loc["id_bl00003"]
    assert row["rgb"].endswith("id_bl00003.JPG")
    assert any("upper-case" in n.message for n in report.notes)


# --- images that are converted, not rejected ---------------------------------------------------

def test_exif_rotated_image_is_turned_upright(tmp_path):
    path = tmp_path / "rotated.jpg"
    image = Image.fromarray(np.zeros((20, 50, 3), np.uint8))  # 50 wide, 20 high
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    image.save(path, exif=exif)
    assert load_image(path).size == (20, 50)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_other_modes_are_converted_to_8bit_rgb(zindi, mode):
    path = zindi / "images" / "id_br10000.png"
    (zindi / "images" / "id_br10000.jpg").unlink()
    rng = np.random.default_rng(1)
    if mode == "I;16":
        array = np.full((32, 40), 40000, dtype=np.uint16)
        Image.fromarray(array).save(path)  # 16-bit grayscale PNG
    else:
        rgb = Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8))
        (rgb.convert(mode) if mode != "CMYK" else rgb.convert("CMYK")).save(
            path.with_suffix(".jpg") if mode == "CMYK" else path)
        if mode == "CMYK":
            path = path.with_suffix(".jpg")
    report = scan_zindi(zindi)
    assert report.ok, [str(p) for p in report.problems]
    converted = load_image(path)
    assert converted.mode == "RGB" and converted.size == (40, 32)
    assert any("converted to 8-bit RGB" in n.message for n in report.notes)
    if mode == "I;16":  # rescaled from 16 bits, not clipped to white
        assert abs(int(np.asarray(converted)[0, 0, 0]) - round(40000 / 65535 * 255)) <= 1


# --- reporting every problem, or skipping bad plants -------------------------------------------

def test_read_raises_with_every_problem_listed(zindi):
    (zindi / "images" / "id_he20000.jpg").write_bytes(b"junk")
    (zindi / "images" / "id_bl00001_rgn.jpg").unlink()
    with pytest.raises(DataError) as raised:
        read_zindi(zindi)
    text = str(raised.value)
    assert "2 problem(s)" in text and "id_he20000.jpg" in text and "id_bl00001_rgn.jpg" in text


def test_skip_bad_drops_exactly_the_bad_plants(zindi):
    (zindi / "images" / "id_he20000.jpg").write_bytes(b"junk")
    (zindi / "images" / "id_bl00001_rgn.jpg").unlink()
    report = scan_zindi(zindi)
    assert report.dropped == ["id_bl00001", "id_he20000"]
    plants = read_zindi(zindi, skip_bad=True)
    assert len(plants) == 18 - 2 and not plants["plant_id"].isin(report.dropped).any()


def test_images_of_any_size_are_summarised(zindi):
    for seed, name in enumerate(("id_te00000.jpg", "id_te00000_rgn.jpg")):
        write_image(zindi / "images" / name, np.random.default_rng(seed), size=(50, 40))
    report = scan_zindi(zindi)
    assert report.ok
    assert report.image_sizes[(50, 40)] == 2 and report.image_sizes[(40, 32)] == 34
    assert "image size 40x32: 34 images" in report.summary()


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_image_fails_even_when_lenient_decoding_is_switched_on(zindi, monkeypatch, suffix):
    from PIL import ImageFile

    # PIL's switch is one global: flipping it, even briefly under a lock, would change what other
    # threads decode at that moment. The reader must never write it.
    writes = []

    class Watched(types.ModuleType):
        def __setattr__(self, name, value):
            writes.append((name, value))
            super().__setattr__(name, value)

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = zindi / "images" / "id_he20001.jpg"
    if suffix == ".png":
        path.unlink()
        path = path.with_suffix(".png")
        write_image(path, np.random.default_rng(3))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) * 2 // 3])
    monkeypatch.setattr(ImageFile, "__class__", Watched)
    message = only_problem(scan_zindi(zindi))
    assert path.name in message and "truncated image" in message
    assert writes == [] and ImageFile.LOAD_TRUNCATED_IMAGES is True


# --- what leaks between splits or squashes photos ------------------------------------------------

def write_test_labels(root, labels: dict[str, str]) -> None:
    rows = [(f"{plant}{suffix}.jpg", label) for plant, label in labels.items() for suffix in ("", "_rgn")]
    pd.DataFrame(rows, columns=["Image_id", "Label"]).to_csv(root / "TestLabels.csv", index=False)


def test_test_labels_stay_out_of_the_label_column_and_come_only_when_asked(zindi):
    write_test_labels(zindi, {"id_te00000": "blast", "id_te00001": "brown", "id_te00002": "healthy"})
    plants = read_zindi(zindi)
    # whatever selects labelled plants selects training plants only
    assert set(plants.loc[plants["label"].notna(), "split"]) == {"train"}
    assert "test_label" not in plants
    asked = read_zindi(zindi, test_labels=True).set_index("plant_id")
    assert asked.loc["id_te00001", "test_label"] == "brown" and pd.isna(asked.loc["id_te00001", "label"])
    assert asked.loc[asked["split"] == "train", "test_label"].isna().all()
    assert read_test_labels(zindi).to_dict() == {"id_te00000": "blast", "id_te00001": "brown",
                                                 "id_te00002": "healthy"}
    assert "test labels known for 3 plants" in scan_zindi(zindi).summary()


def test_test_labels_without_their_file_are_an_error_not_a_guess(zindi):
    with pytest.raises(DataError, match="TestLabels.csv: not found"):
        read_zindi(zindi, test_labels=True)


def test_unknown_test_label_is_a_problem(zindi):
    write_test_labels(zindi, {"id_te00000": "blast", "id_te00001": "rust"})
    message = only_problem(scan_zindi(zindi))
    assert "TestLabels.csv" in message and "unknown label 'rust'" in message


def test_plant_in_both_train_and_test_is_a_problem_and_skip_bad_drops_it(zindi):
    edit_csv(zindi / "Test.csv", lambda f: pd.concat([f, pd.DataFrame({"Image_id": ["id_bl00002.jpg",
                                                                                     "id_bl00002_rgn.jpg"]})]))
    report = scan_zindi(zindi)
    message = only_problem(report)
    assert "Test.csv" in message and "plant id_bl00002 is also listed in Train.csv" in message
    assert report.dropped == ["id_bl00002"] and "id_bl00002" not in set(report.plants["plant_id"])
    assert len(read_zindi(zindi, skip_bad=True)) == 18 - 1


def test_identical_photos_under_two_ids_are_a_problem_naming_both(zindi):
    images = zindi / "images"
    (images / "id_te00002.jpg").write_bytes((images / "id_bl00001.jpg").read_bytes())
    report = scan_zindi(zindi)
    message = only_problem(report)
    assert "id_te00002.jpg" in message and "identical to id_bl00001.jpg" in message
    assert report.dropped == ["id_bl00001", "id_te00002"]  # either could be the wrong one
    # the same pixels saved anew (other bytes) are caught too
    image = Image.open(images / "id_bl00001.jpg")
    image.save(images / "id_te00002.png")
    (images / "id_te00002.jpg").unlink()
    assert "identical to id_bl00001.jpg" in only_problem(scan_zindi(zindi))


def test_near_duplicate_photos_are_a_warning_not_a_problem(zindi):
    # a smooth picture (a photo, not noise), and the same picture brightened and re-encoded
    y, x = np.mgrid[0:32, 0:40]
    picture = np.stack([120 + 80 * np.sin(x / 6), 100 + 60 * np.cos(y / 5), 90 + 0 * x], axis=2)
    Image.fromarray(picture.astype(np.uint8)).save(zindi / "images" / "id_br10003.jpg", quality=95)
    Image.fromarray(np.clip(picture * 1.1, 0, 255).astype(np.uint8)).save(
        zindi / "images" / "id_te00001.jpg", quality=60)
    report = scan_zindi(zindi)
    assert report.ok and len(report.warnings) == 1
    warning = str(report.warnings[0])
    assert "id_te00001.jpg" in warning and "looks almost the same as id_br10003.jpg" in warning
    assert "warnings: 1" in report.summary()
    with pytest.warns(NearDuplicateWarning, match="1 near-duplicate"):
        assert len(read_zindi(zindi)) == 18


def test_the_two_cameras_of_one_plant_are_not_near_duplicates_of_each_other():
    base = np.random.default_rng(0).integers(0, 256, (2, 32), dtype=np.uint8)
    close = base[0].copy()
    close[:8] ^= 1  # 8 of 256 bits differ
    hashes = np.stack([base[0], base[0], base[1], close])
    # rows 0 and 1 are one plant's two photos; row 2 is another picture altogether
    assert near_duplicates(hashes, ["a", "a", "b", "c"]) == [(0, 3, 8), (1, 3, 8)]
    assert near_duplicates(hashes, ["a", "a", "b", "c"], max_bits=7) == []


def test_photos_of_one_plant_in_two_sizes_are_a_problem(zindi):
    write_image(zindi / "images" / "id_he20002_rgn.jpg", np.random.default_rng(0), size=(50, 40))
    message = only_problem(scan_zindi(zindi))
    assert "id_he20002_rgn.jpg: 50x40, but the RGB photo of its plant (id_he20002.jpg) is 40x32" in message


@pytest.mark.parametrize("size", [(32, 40), (40, 40), (48, 32)])
def test_photos_that_are_not_5_to_4_landscape_are_a_problem(zindi, size):
    for seed, name in enumerate(("id_he20002.jpg", "id_he20002_rgn.jpg")):
        write_image(zindi / "images" / name, np.random.default_rng(seed), size=size)
    report = scan_zindi(zindi)
    message = only_problem(report)
    assert f"are {size[0]}x{size[1]}, not 5:4 landscape" in message and "squash" in message
    assert report.dropped == ["id_he20002"]
