"""The Zindi reader: pairing, splitting and one clear problem per bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rice_lab.data import load_image, pair_files, read_zindi, scan_zindi, split_plants
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
    write_image(zindi / "images" / "id_te00000.jpg", np.random.default_rng(0), size=(50, 40))
    report = scan_zindi(zindi)
    assert report.image_sizes[(50, 40)] == 1 and report.image_sizes[(40, 32)] == 35
    assert "image size 40x32: 35 images" in report.summary()


def test_truncated_image_fails_even_when_lenient_decoding_is_switched_on(zindi, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = zindi / "images" / "id_he20001.jpg"
    path.write_bytes(path.read_bytes()[:300])
    assert "truncated image" in only_problem(scan_zindi(zindi))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True
