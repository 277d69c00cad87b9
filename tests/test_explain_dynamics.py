"""Progress measures along a real tiny SwAV run's checkpoints: one row per checkpoint with every
measure, the fixed-crop loss reproducing the run's own validation loss, CKA to the final checkpoint;
the measures themselves on constructed inputs whose answers are known."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rice_lab.errors import CheckpointError, DataError
from rice_lab.explain.dynamics import (MEASURES, code_entropy, dynamics_inputs, export_series, photo_outputs,
                                       progress_measures, prototype_usage, run_checkpoints, sensor_agreement,
                                       weight_norm)
from rice_lab.presets import get_preset
from rice_lab.runs import checkpoint_step, list_checkpoints, read_metrics
from rice_lab.ssl.model import load_swav_model
from rice_lab.ssl.pretrain import pretrain

STEPS_PER_CHECKPOINT = 5


@pytest.fixture(scope="module")
def swav_run(synth_root, tmp_path_factory) -> Path:
    """4 epochs of SwAV on 32 px photos, a snapshot every 5 steps (41 plants at batch 8: 5 steps an epoch)."""
    out = tmp_path_factory.mktemp("dynamics") / "swav"
    return pretrain(get_preset("cpu-tiny", data=str(synth_root), out=str(out), epochs=4, batch_size=8,
                               photo_height=32, crops={"size": 32}, progress=False, threads=1,
                               checkpoint_every=STEPS_PER_CHECKPOINT, resume_every=0))


@pytest.fixture(scope="module")
def inputs(swav_run):
    return dynamics_inputs(swav_run)


@pytest.fixture(scope="module")
def table(inputs):
    return progress_measures(inputs, progress=False)


def test_one_row_per_checkpoint_with_every_measure(swav_run, table):
    snapshots = list_checkpoints(swav_run)
    assert 3 <= len(snapshots) <= 6  # the series the test is about: several checkpoints
    assert list(table.columns) == list(MEASURES)
    assert list(table["step"]) == [checkpoint_step(p) for p in snapshots]
    assert list(table["checkpoint"]) == [p.name for p in snapshots]
    # every measure is a number at every checkpoint (the synthetic data records the background)
    numbers = table.drop(columns=["checkpoint", "cka_previous"])
    assert np.isfinite(numbers.to_numpy(dtype=float)).all()
    assert math.isnan(table["cka_previous"].iloc[0]) and np.isfinite(table["cka_previous"].iloc[1:]).all()
    k = int(table["n_prototypes"].iloc[0])
    assert ((table["prototypes_used"] >= 1) & (table["prototypes_used"] <= k)).all()
    assert ((table["code_entropy"] > 0) & (table["code_entropy"] <= math.log(k) + 1e-9)).all()
    for column in ("knn_label", "linear_label", "knn_background", "linear_background", "same_prototype"):
        assert table[column].between(0, 1).all(), column


def test_cka_to_the_final_checkpoint_is_one_at_the_last_row_only(table):
    assert table["cka_final"].iloc[-1] == pytest.approx(1.0, abs=1e-9)
    assert (table["cka_final"].iloc[:-1] < 1 - 1e-6).all()  # the weights moved between snapshots
    assert (table["cka_final_baseline"].abs() < table["cka_final"]).all()


def test_the_fixed_crop_loss_is_the_same_when_computed_twice(swav_run, table):
    again = progress_measures(dynamics_inputs(swav_run), progress=False)
    columns = ["loss_fixed_crops", "code_entropy", "prototypes_used", "knn_label", "linear_background", "cka_final"]
    np.testing.assert_array_equal(table[columns].to_numpy(dtype=float), again[columns].to_numpy(dtype=float))


def test_the_fixed_crops_are_the_runs_own_validation_crops(swav_run, table):
    """At an epoch's last step the snapshot is the model the run validated: same crops, same loss."""
    metrics = read_metrics(swav_run)
    valid = metrics[metrics["kind"] == "valid"].set_index("step")["loss"]
    at_epoch_ends = table[table["step"].isin(valid.index)]
    assert len(at_epoch_ends) >= 3
    np.testing.assert_allclose(at_epoch_ends["loss_fixed_crops"], valid[at_epoch_ends["step"]], atol=2e-5)
    assert table["loss_fixed_crops"].nunique() == len(table)  # and it does move from checkpoint to checkpoint


def test_weight_norm_of_a_snapshot(swav_run):
    net = load_swav_model(list_checkpoints(swav_run)[-1])
    expected = math.sqrt(sum(float((p.detach().double() ** 2).sum()) for p in [*net.encoder.parameters(),
                                                                      *net.head.parameters()]))
    assert weight_norm(net) == pytest.approx(expected, rel=1e-12)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)
    assert weight_norm(net) == pytest.approx(3 * expected, rel=1e-9)


def test_prototype_usage_and_code_entropy_at_their_extremes():
    k = 16
    collapsed = torch.zeros(40, k)
    collapsed[:, 3] = 1.0  # every row nearest to prototype 3, by far (scores are cosines)
    used, effective = prototype_usage(collapsed, temperature=0.01)
    assert used == 1 and effective == pytest.approx(1.0, abs=1e-6)
    spread = torch.eye(k).repeat(3, 1)  # each prototype nearest to three rows
    used, effective = prototype_usage(spread, temperature=0.01)
    assert used == k and effective == pytest.approx(k, rel=1e-6)
    assert code_entropy(torch.full((8, k), 1 / k)) == pytest.approx(math.log(k))
    assert code_entropy(torch.eye(k)) == pytest.approx(0.0)


def test_sensor_agreement_against_its_baselines():
    generator = torch.Generator().manual_seed(0)
    plants, k, dim = 60, 8, 16
    z = torch.nn.functional.normalize(torch.randn(plants, dim, generator=generator), dim=1)
    prototypes = torch.nn.functional.normalize(torch.randn(k, dim, generator=generator), dim=1)
    same = sensor_agreement(z @ prototypes.T, z @ prototypes.T, z, z)
    assert same["same_prototype"] == 1.0 and same["cosine_same_plant"] == pytest.approx(1.0)
    assert same["same_prototype_chance"] < 0.5 and abs(same["cosine_other_plants"]) < 0.2
    shuffled = z[torch.randperm(plants, generator=generator)]
    apart = sensor_agreement(z @ prototypes.T, shuffled @ prototypes.T, z, shuffled)
    assert apart["same_prototype"] < 0.4 and apart["cosine_same_plant"] < 0.3
    # the chance rate is what independent draws from the two usages give
    usage = torch.bincount((z @ prototypes.T).argmax(1), minlength=k).double() / plants
    assert same["same_prototype_chance"] == pytest.approx(float(usage @ usage))


def test_runs_that_cannot_be_measured_say_why(swav_run, tmp_path):
    manifest = json.loads((swav_run / "manifest.json").read_text())
    other = tmp_path / "classifier"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({**manifest, "kind": "finetune"}))
    with pytest.raises(CheckpointError, match="a 'finetune' run, not a pre-training one"):
        run_checkpoints(other)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(swav_run / "manifest.json", bare / "manifest.json")
    with pytest.raises(CheckpointError, match="no snapshots"):
        run_checkpoints(bare)
    with pytest.raises(CheckpointError, match="not found"):
        run_checkpoints(tmp_path / "nowhere")
    with pytest.raises(DataError, match="not the data"):
        dynamics_inputs(swav_run, data=_other_data(tmp_path))


def _other_data(tmp_path: Path) -> Path:
    from rice_lab.data.synthetic import SynthConfig, synthesize

    return synthesize(tmp_path / "other", SynthConfig(plants=48, width=64, seed=1, workers=1))


def test_the_figure_puts_every_measure_on_one_axis_with_the_drops_marked(swav_run, table):
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from rice_lab.explain.changepoints import Drop
    from rice_lab.explain.dynamics import plot_dynamics

    metrics = read_metrics(swav_run)
    curve = metrics[metrics["kind"] == "train"]
    drop = Drop(step=12.0, start=10.0, end=14.0, size=0.5, before=4.0, after=3.5, noise=0.01)
    fig = plot_dynamics(table, curve, [drop])
    axes = fig.axes
    assert len(axes) == 8
    assert all(axes[0].get_shared_x_axes().joined(axes[0], ax) for ax in axes[1:])
    plotted = set()
    for ax in axes:
        lines = [line for line in ax.get_lines() if isinstance(line, Line2D)]
        assert any(list(line.get_xdata()) == [12.0, 12.0] for line in lines), ax.get_title()  # the drop
        series = [line for line in lines if len(line.get_xdata()) == len(table)]
        styles = [(line.get_linestyle(), line.get_marker()) for line in series]
        assert len(styles) == len(set(styles)), ax.get_title()  # colour is never the only difference
        plotted |= {line.get_label() for line in series}
    assert {"fixed validation crops", "disease, linear", "background, kNN", "codes", "effective number",
            "effective rank", "same nearest prototype", "to the final checkpoint", "weight norm"} <= plotted
    assert "drop at step 12" in " ".join(axes[0].get_legend_handles_labels()[1])
    plt.close(fig)


def test_the_command_writes_the_table_the_drops_and_the_figure(swav_run, tmp_path, capsys):
    import pandas as pd

    from rice_lab.cli import main

    out = tmp_path / "dynamics"
    assert main(["dynamics", str(swav_run), "--out", str(out), "--every", "2"]) == 0
    written = pd.read_csv(out / "dynamics.csv")
    steps = [checkpoint_step(p) for p in list_checkpoints(swav_run)]
    assert list(written.columns) == list(MEASURES)
    assert list(written["step"]) == steps[::2] + ([steps[-1]] if (len(steps) - 1) % 2 else [])
    assert list(pd.read_csv(out / "drops.csv").columns) == ["step", "start", "end", "size", "before", "after",
                                                              "noise", "sigmas"]
    assert (out / "dynamics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stdout = capsys.readouterr().out
    assert f"({len(written)} checkpoints)" in stdout and "sudden drops in the training loss:" in stdout
    # again into the same folder: the earlier measures are moved aside, never written over
    first = (out / "dynamics.csv").read_bytes()
    assert main(["dynamics", str(swav_run), "--out", str(out), "--every", "100"]) == 0
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("dynamics.stale-")]
    assert len(kept) == 1 and (kept[0] / "dynamics.csv").read_bytes() == first
    assert f"moved to {kept[0]}" in capsys.readouterr().err and len(pd.read_csv(out / "dynamics.csv")) == 2
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["dynamics", str(swav_run), "--out", str(busy)]) == 1
    assert "holds other files" in capsys.readouterr().err and (busy / "notes.txt").read_text() == "mine"


def test_the_command_refuses_bad_runs_in_one_line(swav_run, tmp_path, capsys):
    from rice_lab.cli import main

    manifest = json.loads((swav_run / "manifest.json").read_text())
    classifier, bare = tmp_path / "classifier", tmp_path / "bare"
    for folder, kind in ((classifier, "finetune"), (bare, "pretrain")):
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({**manifest, "kind": kind}))
    cases = [([str(classifier)], "a 'finetune' run, not a pre-training one"),
             ([str(bare)], "no snapshots (step-*.pt) to measure"),
             ([str(tmp_path / "nowhere")], "manifest.json: not found"),
             ([str(swav_run), "--data", str(tmp_path / "no-data")], "no-data: the data folder of")]
    for args, message in cases:
        assert main(["dynamics", *args, "--out", str(tmp_path / "out"), "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("rice-lab: error: ") and message in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing written for a run that cannot be measured


def test_the_final_encoder_counts_when_it_is_later_than_every_snapshot(swav_run, tmp_path):
    copy = Path(shutil.copytree(swav_run, tmp_path / "swav"))
    snapshots = list_checkpoints(copy)
    assert run_checkpoints(copy) == snapshots  # encoder.pt is the last snapshot's step: not twice
    snapshots[-1].unlink()
    assert run_checkpoints(copy) == snapshots[:-1] + [copy / "encoder.pt"]


def test_fewer_plants_keep_every_disease(swav_run, inputs):
    fewer = dynamics_inputs(swav_run, max_plants=15)
    assert 12 <= len(fewer.plants) <= 16 < len(inputs.plants)
    assert set(fewer.plants["label"]) == set(inputs.plants["label"])
    assert set(fewer.plants["plant_id"]) <= set(inputs.plants["plant_id"])
    assert fewer.photos["rgb"].shape[0] == len(fewer.plants) == len(fewer.targets["label"])


def test_the_exported_series_holds_each_snapshots_features_and_the_curve(swav_run, inputs, table, tmp_path):
    path = export_series(swav_run, tmp_path / "series.npz", max_plants=20)
    series = np.load(path)  # no pickled objects: a learner's np.load opens it
    snapshots = run_checkpoints(swav_run)
    assert series["steps"].tolist() == table["step"].tolist()
    sample = dynamics_inputs(swav_run, max_plants=20)  # a stratified draw of at most 20 plants
    photos = len(sample.plants)
    assert 15 <= photos <= 20 and series["features"].shape[:2] == (len(snapshots), photos)
    assert series["features"].dtype == np.float16
    # the same float32 loss computed again: its sums may run in another order (threads), not to another value
    np.testing.assert_allclose(series["loss_fixed_crops"], table["loss_fixed_crops"], rtol=1e-5)
    net = load_swav_model(snapshots[-1])
    expected = photo_outputs(net, {"rgb": sample.photos["rgb"]}, sample.config.decoded_height)["rgb"][0]
    np.testing.assert_allclose(series["features"][-1], expected.numpy().astype(np.float16), rtol=1e-2, atol=1e-3)
    metrics = read_metrics(swav_run)
    assert series["curve_loss"].tolist() == pytest.approx(metrics.loc[metrics["kind"] == "train", "loss"].tolist())
    assert sorted(set(series["label"])) <= ["blast", "brown", "healthy"] and len(series["background"]) == photos
    again = export_series(swav_run, path, max_plants=20)
    assert again == path and len(list(tmp_path.glob("series.npz.stale-*"))) == 1  # the first one kept aside
