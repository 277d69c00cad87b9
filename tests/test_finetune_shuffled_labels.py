"""The data-randomisation run: a classifier trained on its training plants' labels permuted, validated
(kept epoch, TTA, temperature) on the validation plants' true labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastai.callback.core import Callback
from torch.utils.data import ConcatDataset

from rice_lab.data.zindi import CLASSES, read_zindi
from rice_lab.errors import ConfigError
from rice_lab.finetune.config import get_preset
from rice_lab.finetune.data import assign_roles, shuffle_training_labels
from rice_lab.finetune.train import finetune

TINY = dict(epochs=1, batch_size=8, photo_height=32, progress=False, threads=1)


class Targets(Callback):
    """Records the (plant, class index) pairs the Learner trains and validates on."""

    def before_fit(self) -> None:
        self.seen = {}
        for name, loader in (("train", self.dls.train), ("valid", self.dls.valid)):
            samples = loader.dataset.datasets[0] if isinstance(loader.dataset, ConcatDataset) else loader.dataset
            per_plant = samples.label.reshape(len(samples.plant_ids), -1)
            assert (per_plant == per_plant[:, :1]).all()  # both photos of a plant carry one label
            self.seen[name] = dict(zip(samples.plant_ids, per_plant[:, 0].tolist()))


def true_labels(root: Path) -> dict[str, int]:
    plants = read_zindi(root)
    plants = plants[plants["split"] == "train"]  # test plants carry no label
    return {p: CLASSES.index(c) for p, c in zip(plants["plant_id"], plants["label"])}


def test_a_shuffled_label_run_trains_on_permuted_labels_and_validates_on_true_ones(synth_root, encoder_run, tmp_path):
    truth = true_labels(synth_root)
    runs = {}
    for shuffled in (False, True):
        watch = Targets()
        config = get_preset("cpu-tiny", data=str(synth_root), out=str(tmp_path / f"shuffled-{shuffled}"),
                            encoder=str(encoder_run), shuffled_labels=shuffled, **TINY)
        runs[shuffled] = (finetune(config, callbacks=[watch]), watch.seen)
    plain, shuffled = runs[False][1], runs[True][1]
    assert plain["train"] == {p: truth[p] for p in plain["train"]}  # the option off changes nothing
    train = shuffled["train"]
    assert set(train) == set(plain["train"])  # the same plants and photos...
    assert sorted(train.values()) == sorted(truth[p] for p in train)  # ...each class keeps its count...
    relabelled = sum(train[p] != truth[p] for p in train)
    assert relabelled >= len(train) // 3  # ...but many plants carry another plant's label
    assert shuffled["valid"] == {p: truth[p] for p in shuffled["valid"]}  # validation keeps the truth
    manifest = json.loads((runs[True][0] / "manifest.json").read_text())
    assert manifest["config"]["shuffled_labels"] is True
    assert manifest["shuffled_labels"] == {"plants": len(train), "relabelled": relabelled}
    assert "shuffled_labels" not in json.loads((runs[False][0] / "manifest.json").read_text())


def test_the_permutation_is_seeded_keeps_counts_and_leaves_other_roles_alone(synth_root):
    plants = assign_roles(read_zindi(synth_root))
    train = plants["role"] == "train"
    once = shuffle_training_labels(plants, seed=0)
    assert once["label"].equals(shuffle_training_labels(plants, seed=0)["label"])
    assert not once["label"].equals(shuffle_training_labels(plants, seed=1)["label"])
    assert once.loc[~train, "label"].equals(plants.loc[~train, "label"])
    assert once.loc[train, "label"].value_counts().sort_index().equals(plants.loc[train, "label"].value_counts().sort_index())
    # the draw follows the plants, not the table's row order
    backwards = shuffle_training_labels(plants.iloc[::-1], seed=0)
    assert backwards.set_index("plant_id")["label"].equals(once.set_index("plant_id")["label"].loc[
        backwards["plant_id"]])


def test_shuffled_labels_refuse_targets_that_are_not_the_labels(tmp_path):
    for other in (dict(teacher=str(tmp_path)), dict(photo_split=True)):
        with pytest.raises(ConfigError, match="shuffled_labels cannot be combined"):
            get_preset("cpu-tiny", shuffled_labels=True, **other).validate()
