"""Concepts from the material masks and TCAV on real tiny classifiers: each concept's patches hold its
material (checked pixel by pixel against the masks), TCAV scores are shares in [0, 1], a concept
drawn like the random sets is never significant, the t-test and its Bonferroni correction on
known scores, and the controls (shuffled-label twin, random init) on the same concept sets."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from scipy.stats import ttest_ind

from rice_lab.data.zindi import read_mask, read_zindi
from rice_lab.errors import ConfigError, DataError
from rice_lab.evaluate.encode import plant_photos
from rice_lab.explain.concepts import (
    CONCEPTS,
    RANDOM,
    TABLE_COLUMNS,
    concept_set,
    concept_sets,
    material_masks,
    random_set,
    random_sets,
    significance,
    tcav_controls,
    tcav_scores,
)
from tests.explain_classifier import classifier, train_tiny_classifier

HEIGHT = 48  # the classifiers' photo height: big enough for every material to fill a 3 px patch somewhere


@pytest.fixture(scope="module")
def runs(synth_root, tmp_path_factory):
    """A classifier and its shuffled-label twin (48 px photos), from one SwAV run."""
    out = tmp_path_factory.mktemp("concepts")
    real = train_tiny_classifier(synth_root, out, photo_height=HEIGHT)
    shuffled = train_tiny_classifier(synth_root, out, encoder=out / "swav", name="shuffled", photo_height=HEIGHT,
                                     shuffled_labels=True)
    return real, shuffled


@pytest.fixture(scope="module")
def plants(synth_root):
    return read_zindi(synth_root)


@pytest.fixture(scope="module")
def halves(plants):
    """Training plants split in two: concept patches from the first, class photos from the second."""
    train = plants[plants["split"] == "train"].reset_index(drop=True)
    return train.iloc[::2].reset_index(drop=True), train.iloc[1::2].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# concept sets

@pytest.mark.parametrize("camera", ["rgb", "rgnir"])
@pytest.mark.parametrize("name", list(CONCEPTS))
def test_each_patch_is_the_photo_s_densest_window_of_the_concept_s_material(plants, camera, name):
    found = concept_set(plants, camera, HEIGHT, name, count=6, min_share=0.3, minimum=2)
    assert 2 <= len(found) <= 6 and found.images.dtype == torch.uint8
    assert found.images.shape[1:] == (3, HEIGHT, 60)
    assert found.sources["plant_id"].is_unique  # one patch per photo
    by_id = plants.set_index("plant_id")
    for i, source in enumerate(found.sources.itertuples()):
        p, top, left = source.patch, source.top, source.left
        # the mask, read and resized here without the module's helpers
        from PIL import Image

        codes = np.asarray(Image.fromarray(read_mask(by_id.loc[source.plant_id, f"mask_{camera}"]))
                           .resize((60, HEIGHT), Image.NEAREST))
        inside = np.isin(codes, CONCEPTS[name])
        share = inside[top:top + p, left:left + p].mean()
        assert share == pytest.approx(source.share) and share >= 0.3
        assert share == pytest.approx(sliding_window_view(inside, (p, p)).mean(axis=(2, 3)).max())
        # the example is that window of the photo, mirror-tiled over the frame
        photo = plant_photos(by_id.loc[[source.plant_id]].reset_index(), camera, HEIGHT)[0]
        window = photo[:, top:top + p, left:left + p]
        tile = found.images[i]
        assert torch.equal(tile[:, :p, :p], window)
        assert torch.equal(tile[:, :p, p:2 * p], window.flip(-1))
        assert torch.equal(tile[:, p:2 * p, :p], window.flip(-2))
        assert torch.equal(tile[:, 2 * p:3 * p, 2 * p:3 * p], window)


def test_leaf_and_background_patches_are_pure_and_lesion_patches_are_mostly_lesion(plants):
    sets = concept_sets(plants, "rgb", HEIGHT, ["leaf", "background", "lesion"], count=8, min_share=0.5)
    assert (sets["leaf"].sources["share"] == 1).all() and (sets["background"].sources["share"] == 1).all()
    masks = material_masks(plants.set_index("plant_id").loc[sets["lesion"].sources["plant_id"]].reset_index(), "rgb",
                           HEIGHT)
    for codes, source in zip(masks, sets["lesion"].sources.itertuples()):
        window = codes[source.top:source.top + source.patch, source.left:source.left + source.patch]
        assert np.isin(window, CONCEPTS["lesion"]).mean() >= 0.5


def test_random_sets_are_seeded_windows_anywhere(plants):
    a, b = random_sets(plants, "rgb", HEIGHT, sets=2, count=10), random_sets(plants, "rgb", HEIGHT, sets=2, count=10)
    assert [s.name for s in a] == ["random-0", "random-1", "random-2"]
    assert all(torch.equal(x.images, y.images) for x, y in zip(a, b))
    assert not a[0].sources[["plant_id", "top", "left"]].equals(a[1].sources[["plant_id", "top", "left"]])
    assert a[0].sources["share"].isna().all()
    other_seed = random_set(plants, "rgb", HEIGHT, 0, count=10, seed=1)
    assert not torch.equal(other_seed.images, a[0].images)


def test_a_material_too_rare_for_the_patch_is_a_clear_error(plants):
    with pytest.raises(DataError, match=r"'artefact': only 0 of 10 .*\(need 40\)"):
        concept_set(plants.head(10), "rgb", HEIGHT, "artefact", count=40, minimum=40, min_share=0.9)
    with pytest.raises(ConfigError, match="material codes"):
        concept_set(plants, "rgb", HEIGHT, "mould")
    with pytest.raises(ConfigError, match="patch=99"):
        concept_set(plants, "rgb", HEIGHT, "leaf", patch=99)


def test_a_folder_without_masks_has_no_concepts(synth_root, tmp_path):
    copy = tmp_path / "no-masks"
    shutil.copytree(synth_root, copy, ignore=shutil.ignore_patterns("masks"))
    with pytest.raises(DataError, match="mask_rgb"):
        concept_set(read_zindi(copy), "rgb", HEIGHT, "leaf")


# ---------------------------------------------------------------------------------------------
# TCAV on the real classifier

@pytest.fixture(scope="module")
def tested(runs, halves):
    """TCAV of the classifier at two layers: three material concepts and one drawn like the random sets."""
    model, meta = classifier(runs[0])
    concept_plants, class_plants = halves
    sets = list(concept_sets(concept_plants, "rgb", HEIGHT, ["lesion", "leaf", "background"], count=8,
                             minimum=4).values())
    lookalike = random_set(concept_plants, "rgb", HEIGHT, 99, count=8)
    lookalike.name = "lookalike"
    randoms = random_sets(concept_plants, "rgb", HEIGHT, sets=6, count=8)
    photos = plant_photos(class_plants, "rgb", HEIGHT)
    scores = tcav_scores(model, meta, [*sets, lookalike], randoms, photos, class_plants["label"],
                         layers=["body.5", "body.7"])
    return scores, significance(scores)


def test_tcav_scores_are_shares_of_each_class_s_photos(tested, halves):
    scores, _ = tested
    assert scores["score"].between(0, 1).all() and scores["cav_accuracy"].between(0, 1).all()
    counts = halves[1]["label"].value_counts()
    # a share of the class's photos: a multiple of 1 / (its photo count)
    for name, group in scores.groupby("class"):
        assert (group["photos"] == counts[name]).all()
        assert np.allclose(group["score"] * counts[name], np.round(group["score"] * counts[name]))
    runs = scores.groupby(["layer", "class", "concept"]).size()
    assert set(runs) == {6} and len(runs) == 2 * 3 * 5  # layers x classes x (4 concepts + the null)
    assert set(scores["concept"]) == {"lesion", "leaf", "background", "lookalike", RANDOM}


def test_the_table_holds_what_the_chapter_needs_and_its_p_values_are_the_t_test_s(tested):
    scores, table = tested
    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == 2 * 3 * 4 and (table["tests"] == 24).all() and (table["runs"] == 6).all()
    for _, row in table.iterrows():
        here = (scores["layer"] == row["layer"]) & (scores["class"] == row["class"])
        concept = scores[here & (scores["concept"] == row["concept"])]
        null = scores[here & (scores["concept"] == RANDOM)]
        p = ttest_ind(concept["score"], null["score"]).pvalue
        assert row["p_value"] == pytest.approx(p, nan_ok=True)
        assert row["tcav"] == pytest.approx(concept["score"].mean())
        assert row["random"] == pytest.approx(null["score"].mean())
        assert row["significant"] == bool(np.isfinite(p) and p * 24 < 0.05)
        assert row["p_bonferroni"] == pytest.approx(min(1.0, p * 24), nan_ok=True)


def test_a_concept_drawn_like_the_random_sets_is_not_significant(tested):
    _, table = tested
    lookalike = table[table["concept"] == "lookalike"]
    assert len(lookalike) == 6 and np.isfinite(lookalike["p_value"]).all()
    assert not lookalike["significant"].any()


def test_significance_on_known_scores_bonferroni_included():
    rng = np.random.default_rng(0)
    rows = []
    for run in range(1, 9):
        null = 0.5 + rng.normal(0, 0.05)
        rows += [{"layer": "L", "class": "c", "concept": RANDOM, "run": run, "score": null},
                 {"layer": "L", "class": "c", "concept": "strong", "run": run, "score": 0.9 + rng.normal(0, 0.02)},
                 {"layer": "L", "class": "c", "concept": "same", "run": run, "score": null}]
    scores = pd.DataFrame(rows).assign(camera="rgb", cav_accuracy=0.8)
    table = significance(scores).set_index("concept")
    assert table.loc["strong", "significant"] and table.loc["strong", "p_value"] < 1e-6
    assert not table.loc["same", "significant"] and table.loc["same", "p_value"] == pytest.approx(1.0)
    # a p-value between alpha / tests and alpha passes alone and fails once corrected
    p = table.loc["strong", "p_value"]
    alone = significance(scores, alpha=3 * p).set_index("concept")  # two tests in the family: p x 2 < 3p
    assert (alone["tests"] == 2).all() and alone.loc["strong", "significant"]
    more = pd.concat([scores, scores.assign(layer="M")], ignore_index=True)  # four tests: p x 4 > 3p
    corrected = significance(more, alpha=3 * p).set_index(["layer", "concept"])
    assert (corrected["tests"] == 4).all() and not corrected.loc[("L", "strong"), "significant"]


# ---------------------------------------------------------------------------------------------
# the controls

def test_the_controls_run_the_same_test_on_the_same_sets_for_every_model(runs, halves):
    concept_plants, class_plants = halves
    result = tcav_controls({"trained": runs[0], "shuffled-labels": runs[1]}, concept_plants, class_plants,
                           concepts=["lesion", "leaf"], layers=["body.7"], random=4, count=6, per_class=4)
    assert list(result.table["model"].unique()) == ["trained", "shuffled-labels", "random-init"]
    assert list(result.table.columns) == TABLE_COLUMNS
    assert set(result.concepts["concept"]) == {"lesion", "leaf"}
    assert (result.table["tests"] == 3 * 2).all()  # one layer x three classes x two concepts, per model
    # each model trains its own CAVs: the second model's rows are what it gets alone (nothing of the
    # first model's saved activations or CAVs reused), and the random-init copy's differ from both
    alone = tcav_controls({"shuffled-labels": runs[1]}, concept_plants, class_plants, concepts=["lesion", "leaf"],
                          layers=["body.7"], random=4, count=6, per_class=4, random_init=False)

    def rows(name: str) -> pd.DataFrame:
        return result.scores[result.scores["model"] == name].drop(columns="model").reset_index(drop=True)

    pd.testing.assert_frame_equal(alone.scores.drop(columns="model"), rows("shuffled-labels"))
    assert not rows("random-init")[["score", "cav_accuracy"]].equals(rows("trained")[["score", "cav_accuracy"]])


def test_models_that_see_photos_differently_are_refused(runs, halves, synth_root, tmp_path):
    other = train_tiny_classifier(synth_root, tmp_path, encoder=runs[0].parent / "swav", name="small", photo_height=32)
    with pytest.raises(ConfigError, match="32 px"):
        tcav_controls({"trained": runs[0], "small": other}, *halves, concepts=["leaf"], layers=["body.7"], random=2,
                      count=4, per_class=2)
