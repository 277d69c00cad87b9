"""``explain_run`` and ``rice-lab explain`` on a real tiny classifier: every file and table the report
promises, numbers that are the library's on the same photos, an HTML page that needs nothing but
itself, a data folder without masks (localisation skipped, the rest run), the TCAV and data
randomisation parts, and one clear line for each bad input."""

from __future__ import annotations

import base64
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from rice_lab.cli import main
from rice_lab.data.zindi import read_zindi
from rice_lab.explain.attribution import attribute
from rice_lab.explain.metrics import LOCALISATION, curve_auc, deletion_curve, pointing_game, relevance_mass_accuracy
from rice_lab.explain.photos import camera_photos, lesion_masks, model_inputs
from rice_lab.explain.report import BASELINES, FAITHFULNESS, ROBUSTNESS, explain_run
from rice_lab.finetune.data import assign_roles
from rice_lab.runs import read_manifest
from tests.explain_classifier import classifier, train_tiny_classifier

METHODS = ("saliency", "grad-cam")
SMALL = dict(methods=METHODS, images=4, steps=4, sensitivity_samples=2, sanity_images=2, progress=False)
FIGURES = ("maps_rgb.png", "maps_rgnir.png", "deletion_insertion.png", "cascade.png")


@pytest.fixture(scope="module")
def run_dir(synth_root, tmp_path_factory):
    return train_tiny_classifier(synth_root, tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def report(run_dir, synth_root, tmp_path_factory):
    return explain_run(run_dir, synth_root, tmp_path_factory.mktemp("out") / "report", **SMALL)


@pytest.fixture(scope="module")
def no_masks(synth_root, tmp_path_factory):
    """The tiny synthetic folder copied without its masks/ (as real photos come)."""
    copy = tmp_path_factory.mktemp("maskless") / "rice"
    shutil.copytree(synth_root, copy, ignore=shutil.ignore_patterns("masks"))
    return copy


def embedded_images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def assert_self_contained(page: str) -> None:
    """Every image is embedded; nothing is fetched from a file or a network."""
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    assert all(image.startswith(b"\x89PNG") for image in embedded_images(page))
    assert not re.search(r"<link|<script|@import|url\(|href=", page, flags=re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# the report

def test_every_file_is_written(report):
    out = report.out
    for name in ("report.html", "table.csv", "table.md", "scores.csv", "sanity.csv", "curves.csv", "manifest.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in FIGURES:
        assert (out / "figures" / name).read_bytes().startswith(b"\x89PNG"), name
    assert not (out / "tcav.csv").exists()  # concepts only when asked


def test_the_table_has_every_method_and_both_baselines_per_camera(report):
    table = pd.read_csv(report.out / "table.csv")
    metrics = [*LOCALISATION, *FAITHFULNESS, *ROBUSTNESS]
    for camera in ("rgb", "rgnir"):
        part = table[table["camera"] == camera]
        assert list(dict.fromkeys(part["method"])) == [*METHODS, *BASELINES]
        for method in (*METHODS, *BASELINES):
            rows = part[part["method"] == method].set_index("metric")
            assert list(rows.index) == metrics
            defined = rows.drop(index="max_sensitivity") if method in BASELINES else rows
            assert np.isfinite(defined["mean"]).all(), (camera, method)
            assert (defined["low"] <= defined["mean"] + 1e-12).all()
            assert (defined["mean"] <= defined["high"] + 1e-12).all()
        # the baselines ignore the model: no robustness figure, rather than a meaninglessly perfect one
        assert part[(part["method"].isin(BASELINES)) & (part["metric"] == "max_sensitivity")]["mean"].isna().all()
    markdown = (report.out / "table.md").read_text()
    assert markdown.count("## ") == 2
    for method in (*METHODS, *BASELINES):
        assert markdown.count(f"| {method} |") == 2


def test_the_numbers_are_the_library_s_on_the_held_out_photos(report, run_dir, synth_root):
    model, meta = classifier(run_dir)
    manifest = read_manifest(report.out)
    assert manifest["kind"] == "explain" and len(manifest["plants"]) == 4
    plants = read_zindi(synth_root)
    roles = assign_roles(plants, 0.2, 0).set_index("plant_id")
    assert (roles.loc[manifest["plants"], "role"] == "valid").all()  # photos the classifier never trained on
    chosen = plants.set_index("plant_id").loc[manifest["plants"]].reset_index()
    assert chosen["label"].nunique() == min(3, len(chosen))  # the classes in turn
    x = model_inputs(camera_photos(chosen, meta)["rgnir"], "rgnir", meta)
    maps = attribute(model, x, "saliency")
    masks = lesion_masks(chosen, "rgnir", meta["photo_height"])
    scores = report.scores[(report.scores["camera"] == "rgnir") & (report.scores["method"] == "saliency")]
    assert list(scores["plant_id"]) == manifest["plants"]
    np.testing.assert_allclose(scores["pointing_game"], pointing_game(maps, masks), equal_nan=True)
    np.testing.assert_allclose(scores["relevance_mass_accuracy"], relevance_mass_accuracy(maps, masks), equal_nan=True)
    np.testing.assert_allclose(scores["deletion_auc"], curve_auc(deletion_curve(model, x, maps, steps=4)), rtol=1e-6)
    table = report.table.set_index(["camera", "method", "metric"])
    assert table.loc[("rgnir", "saliency", "deletion_auc"), "mean"] == pytest.approx(scores["deletion_auc"].mean())


def test_the_page_embeds_its_figures_and_needs_nothing_else(report):
    page = report.html.read_text()
    assert_self_contained(page)
    assert len(embedded_images(page)) == len(FIGURES)
    assert embedded_images(page)[0] == (report.out / "figures" / "maps_rgb.png").read_bytes()
    for text in ("Methods x metrics: rgb photos", "Methods x metrics: rgnir photos", "Sanity checks", *METHODS,
                 'class="baseline"'):
        assert text in page
    assert "localisation skipped" not in page


def test_the_cascade_covers_each_method_and_the_edge_baseline(report):
    sanity = pd.read_csv(report.out / "sanity.csv")
    cascade = sanity[sanity["check"] == "cascading"]
    assert set(cascade["method"]) == {*METHODS, "edge"}
    edge = cascade[(cascade["method"] == "edge") & (cascade["measure"] == "spearman")]
    assert np.allclose(edge["mean"], 1.0)  # the edge map ignores the model
    assert cascade["layer"].iloc[0] == "head"


def test_without_masks_localisation_is_skipped_and_the_rest_still_runs(run_dir, no_masks, tmp_path):
    found = explain_run(run_dir, no_masks, tmp_path / "report", **SMALL)
    assert "masks/" in found.skipped["localisation"]
    assert not set(LOCALISATION) & set(found.table["metric"])
    assert set(found.table["metric"]) == {*FAITHFULNESS, *ROBUSTNESS}
    assert np.isfinite(found.table[found.table["metric"] == "deletion_auc"]["mean"]).all()
    assert {"cascading"} == set(found.sanity["check"])
    page = found.html.read_text()
    assert "localisation skipped" in page and "no masks/ folder" in page
    assert_self_contained(page)
    assert "skipped" in (tmp_path / "report" / "table.md").read_text()


@pytest.mark.slow  # a second whole report, with concepts and a shuffled-label twin
def test_concepts_and_data_randomisation_join_the_report_when_asked(run_dir, synth_root, tmp_path):
    twin = train_tiny_classifier(synth_root, run_dir.parent, encoder=run_dir.parent / "swav", name="shuffled",
                                 shuffled_labels=True)
    found = explain_run(run_dir, synth_root, tmp_path / "report", concepts=True, shuffled=twin, cameras="rgb", **SMALL)
    tcav = pd.read_csv(tmp_path / "report" / "tcav.csv")
    assert list(tcav["model"].unique()) == ["trained", "shuffled-labels", "random-init"]
    assert tcav["tcav"].between(0, 1).all() and "p_value" in tcav and "significant" in tcav
    assert set(tcav["concept"]) | {k.split()[-1] for k in found.skipped if k.startswith("concept ")} == \
        {"lesion", "halo", "leaf", "background", "artefact"}
    data = found.sanity[found.sanity["check"] == "data"]
    assert set(data["method"]) == set(METHODS) and set(data["layer"]) == {"shuffled-labels"}
    page = found.html.read_text()
    assert "Concepts (TCAV)" in page and len(embedded_images(page)) == 4  # rgb maps, curves, cascade, TCAV
    assert (tmp_path / "report" / "figures" / "tcav.png").is_file()


# ---------------------------------------------------------------------------------------------
# the command line

def test_the_command_writes_the_report(run_dir, synth_root, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["explain", str(run_dir), str(synth_root), "--out", str(out), "--methods", "saliency,grad-cam",
                 "--images", "3", "--camera", "rgnir", "--seed", "1", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0 and f"wrote {out / 'report.html'}" in captured.out and captured.err == ""
    table = pd.read_csv(out / "table.csv")
    assert set(table["camera"]) == {"rgnir"} and set(table["method"]) == {"saliency", "grad-cam", *BASELINES}
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert config["seed"] == 1 and config["images"] == 3
    # an earlier report in the folder is moved aside, never written over
    first_page = (out / "report.html").read_bytes()
    assert main(["explain", str(run_dir), str(synth_root), "--out", str(out), "--methods", "saliency", "--images",
                 "2", "--camera", "rgnir", "--no-progress"]) == 0
    err = capsys.readouterr().err
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("cli.stale-")]
    assert len(kept) == 1 and f"moved to {kept[0]}" in err and err.count("\n") == 1
    assert (kept[0] / "report.html").read_bytes() == first_page
    assert json.loads((out / "manifest.json").read_text())["config"]["images"] == 2


def test_if_needed_reads_back_a_current_report_and_redoes_a_stale_one(run_dir, synth_root, tmp_path):
    out = tmp_path / "cached"
    settings = dict(SMALL, methods=("saliency",), images=2, cameras="rgb")
    first = explain_run(run_dir, synth_root, out, **settings)
    created = read_manifest(out)["created"]
    again = explain_run(run_dir, synth_root, out, if_needed=True, **settings)
    assert read_manifest(out)["created"] == created  # nothing recomputed
    pd.testing.assert_frame_equal(again.table, first.table, check_dtype=False)
    pd.testing.assert_frame_equal(again.scores, first.scores, check_dtype=False)
    assert again.seconds == first.seconds and again.skipped == first.skipped
    # other settings: computed again
    other = explain_run(run_dir, synth_root, out, if_needed=True, **dict(settings, images=3))
    assert len(other.scores["plant_id"].unique()) == 3 and read_manifest(out)["config"]["images"] == 3
    assert other.set_aside is not None and read_manifest(other.set_aside)["config"]["images"] == 2
    # a classifier that changed since (the same settings): computed again
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["classifiers"]["run"] = "0" * 64  # as if the run had been fine-tuned again since
    (out / "manifest.json").write_text(json.dumps(manifest))
    explain_run(run_dir, synth_root, out, if_needed=True, **settings)
    assert read_manifest(out)["classifiers"]["run"] != "0" * 64


def test_the_command_warns_in_one_line_when_the_data_has_no_masks(run_dir, no_masks, tmp_path, capsys):
    code = main(["explain", str(run_dir), str(no_masks), "--out", str(tmp_path / "r"), "--methods", "saliency",
                 "--images", "2", "--camera", "rgb", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0 and err.count("\n") == 1 and err.startswith("rice-lab: warning: localisation skipped")


def bad(argv, capsys) -> str:
    """Run the command; it must fail with exit code 1 and one line on stderr, no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith("rice-lab: error: ") and "Traceback" not in err
    return err


def test_bad_input_gets_one_clear_line(run_dir, synth_root, no_masks, tmp_path, capsys):
    out = str(tmp_path / "never")
    swav = run_dir.parent / "swav"
    err = bad(["explain", str(swav), str(synth_root), "--out", out], capsys)
    assert "'pretrain' run, not a fine-tuning run" in err
    assert "not found" in bad(["explain", str(tmp_path / "nothing"), str(synth_root), "--out", out], capsys)
    assert "choose one of" in bad(["explain", str(run_dir), str(synth_root), "--out", out, "--methods", "lime"], capsys)
    assert "baseline" in bad(["explain", str(run_dir), str(synth_root), "--out", out, "--methods", "edge"], capsys)
    assert "at least 2" in bad(["explain", str(run_dir), str(synth_root), "--out", out, "--images", "1"], capsys)
    err = bad(["explain", str(run_dir), str(no_masks), "--out", out, "--concepts"], capsys)
    assert "masks/" in err and "--concepts" in err
    assert "data folder not found" in bad(["explain", str(run_dir), str(tmp_path / "no-data"), "--out", out], capsys)
    assert not (tmp_path / "never").exists()  # nothing written before the input was checked
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert "holds other files" in bad(["explain", str(run_dir), str(synth_root), "--out", str(busy)], capsys)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    assert "inside the run directory" in bad(["explain", str(run_dir), str(synth_root), "--out",
                                              str(run_dir / "report")], capsys)


def test_against_baselines_pairs_photos_and_respects_each_metric_s_direction():
    from rice_lab.explain.report import against_baselines

    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(30)]
    base = rng.uniform(0.2, 0.8, size=30)
    rows = []
    for method, shift in (("good", 0.05), ("same", 0.0), ("random", 0.0), ("edge", -0.01)):
        # deletion: lower is better, so "good" deletes faster; the photos vary far more than the shift
        rows.append(pd.DataFrame({"camera": "rgb", "method": method, "plant_id": ids,
                                  "mask_auc": base + shift, "deletion_auc": base - shift}))
    scores = pd.concat(rows, ignore_index=True)
    scores.loc[(scores["method"] == "good") & (scores["plant_id"] == "p0"), "mask_auc"] = np.nan  # a photo left out
    found = against_baselines(scores, ["mask_auc", "deletion_auc"]).set_index(["method", "metric", "baseline"])
    assert found.loc[("good", "mask_auc", "random"), "images"] == 29
    assert found.loc[("good", "mask_auc", "random"), "difference"] == pytest.approx(0.05)
    assert found.loc[("good", "mask_auc", "random"), "beats"] and found.loc[("good", "deletion_auc", "edge"), "beats"]
    assert found.loc[("good", "mask_auc", "edge"), "beats_both"]
    # no better than the random baseline: beats the edge (which is 0.01 worse) but not both
    assert not found.loc[("same", "mask_auc", "random"), "beats"] and found.loc[("same", "mask_auc", "edge"), "beats"]
    assert not found.loc[("same", "mask_auc", "edge"), "beats_both"]
    assert set(found.index.get_level_values("method")) == {"good", "same"}  # baselines are not compared


def test_against_baselines_on_the_report_covers_every_method_and_metric(report):
    from rice_lab.explain.report import against_baselines

    found = against_baselines(report.scores)
    assert set(found["method"]) == set(METHODS) and set(found["baseline"]) == set(BASELINES)
    assert "max_sensitivity" not in set(found["metric"])  # the baselines have none
    assert set(FAITHFULNESS) <= set(found["metric"])
