"""Plant hygiene of fine-tuning: splits by plant, duplicate photos kept on one side, stratified
validation and label subsets, and no test label reaching selection."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rice_lab.data.zindi import CLASSES, read_zindi
from rice_lab.finetune.data import assign_roles, duplicate_groups


def table(tmp_path, n_train: int = 30, n_test: int = 9, copies: dict[int, int] | None = None) -> pd.DataFrame:
    """Plants whose photos are small files; ``copies`` {a: b}: plant a's RGB photo is plant b's file."""
    rows = []
    for i in range(n_train + n_test):
        paths = {}
        for camera in ("rgb", "rgnir"):
            path = tmp_path / f"id_{i}_{camera}.jpg"
            path.write_bytes(f"{i}-{camera}".encode())
            paths[camera] = str(path)
        rows.append({"plant_id": f"id_{i}", "label": CLASSES[i % 3] if i < n_train else "",
                     "split": "train" if i < n_train else "test", **paths})
    for a, b in (copies or {}).items():
        (tmp_path / f"id_{a}_rgb.jpg").write_bytes((tmp_path / f"id_{b}_rgb.jpg").read_bytes())
    return pd.DataFrame(rows)


def test_roles_split_by_plant_and_stratify_by_class(synth_root):
    plants = read_zindi(synth_root)
    for seed in range(5):
        roles = assign_roles(plants, 0.25, split_seed=seed)
        assert roles["plant_id"].is_unique  # one row per plant: both photos share its role
        assert set(roles.loc[roles["split"] == "test", "role"]) == {"test"}
        for role in ("train", "valid"):
            counts = roles[roles["role"] == role]["label"].value_counts()
            assert set(counts.index) == set(CLASSES)
        valid = roles[roles["role"] == "valid"]
        for label, group in plants[plants["split"] == "train"].groupby("label"):
            assert abs((valid["label"] == label).sum() - round(len(group) * 0.25)) <= 1


def test_plants_sharing_a_photo_stay_on_one_side(tmp_path):
    plants = table(tmp_path, copies={3: 0, 6: 3})  # plants 0, 3 and 6 show one RGB photo
    groups = duplicate_groups(plants)
    assert groups["id_0"] == groups["id_3"] == groups["id_6"] and groups["id_0"] != groups["id_9"]
    for seed in range(20):
        roles = assign_roles(plants, 0.3, split_seed=seed).set_index("plant_id")["role"]
        assert roles["id_0"] == roles["id_3"] == roles["id_6"]


def test_a_training_plant_sharing_a_photo_with_a_test_plant_is_left_out(tmp_path):
    plants = table(tmp_path, copies={5: 32})  # train plant 5's RGB photo is test plant 32's
    roles = assign_roles(plants, 0.2).set_index("plant_id")["role"]
    assert roles["id_5"] == "excluded" and roles["id_32"] == "test"


def test_label_subsets_are_stratified_with_two_per_class_and_follow_the_seed(synth_root):
    plants = read_zindi(synth_root)
    full = assign_roles(plants, 0.2)
    small = assign_roles(plants, 0.2, labels_fraction=0.05, seed=1)
    kept = small[small["role"] == "train"]
    assert kept["label"].value_counts().to_dict() == {c: 2 for c in CLASSES}
    assert set(kept["plant_id"]) <= set(full.loc[full["role"] == "train", "plant_id"])
    assert (small["role"] == "valid").equals(full["role"] == "valid")  # validation does not move
    other = assign_roles(plants, 0.2, labels_fraction=0.05, seed=2)
    assert set(other.loc[other["role"] == "train", "plant_id"]) != set(kept["plant_id"])
    half = assign_roles(plants, 0.2, labels_fraction=0.5)
    n_train = full[full["role"] == "train"]["label"].value_counts()
    n_half = half[half["role"] == "train"]["label"].value_counts()
    assert all(n_half[c] == max(2, round(n_train[c] * 0.5)) for c in CLASSES)


def test_roles_never_read_test_labels(synth_root):
    with_labels = read_zindi(synth_root, test_labels=True)
    shuffled = with_labels.assign(test_label=np.roll(with_labels["test_label"].to_numpy(), 1))
    a = assign_roles(with_labels, 0.2, labels_fraction=0.5)
    b = assign_roles(shuffled, 0.2, labels_fraction=0.5)
    assert "test_label" not in a.columns and a["role"].equals(b["role"])


def test_augmentation_flips_each_photo_and_repeats_for_a_step():
    import torch

    from rice_lab.finetune.data import augment

    photos = (torch.rand(16, 3, 8, 10, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    flipped = augment(photos, seed=0, step=5)
    x = photos.float() / 255
    for original, out in zip(x, flipped):  # each photo is one of its four flips, nothing else
        assert any(torch.equal(out, v) for v in (original, original.flip(-1), original.flip(-2), original.flip(-1, -2)))
    assert torch.equal(flipped, augment(photos, seed=0, step=5))
    assert not torch.equal(flipped, augment(photos, seed=0, step=6))
    strong = augment(photos, seed=0, step=5, max_rotation=20, zoom=0.2, jitter=0.3)
    assert strong.shape == x.shape and 0 <= strong.min() and strong.max() <= 1 and not torch.equal(strong, flipped)


def test_an_encoder_run_named_relatively_or_absolutely_is_the_same_config(tmp_path, monkeypatch):
    """make book names the SwAV run `runs/...`, the book's page names it by its absolute path: the two
    must not count as different configs, or each would set the other's classifier aside and retrain."""
    from rice_lab.finetune.config import FinetuneConfig
    from rice_lab.runs import config_difference

    monkeypatch.chdir(tmp_path)
    relative = FinetuneConfig(encoder="runs/swav").resolved()
    absolute = FinetuneConfig(encoder=str(tmp_path / "runs" / "swav")).resolved()
    assert relative.encoder == absolute.encoder == str(tmp_path / "runs" / "swav")
    assert config_difference(relative.to_dict(), absolute.to_dict()) == []
    assert FinetuneConfig(encoder="random").resolved().encoder == "random"


def test_discriminative_settings_never_set_aside_a_run_of_another_mode():
    from rice_lab.finetune.config import get_preset
    from rice_lab.runs import config_difference

    for mode in ("full", "probe"):
        stored = get_preset("cpu-tiny", mode=mode, body_lr_mult=0.1, head_epochs=3)
        now = get_preset("cpu-tiny", mode=mode, body_lr_mult=1.0, head_epochs=5)
        assert config_difference(stored.to_dict(), now.to_dict(), now.result_free()) == []
    stored = get_preset("cpu-tiny", mode="discriminative", body_lr_mult=0.1)
    now = get_preset("cpu-tiny", mode="discriminative", body_lr_mult=1.0)
    assert config_difference(stored.to_dict(), now.to_dict(), now.result_free()) == ["body_lr_mult: 0.1 -> 1.0"]
