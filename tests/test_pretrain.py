"""pretrain() end to end on tiny synthetic data: run directory, resume after SIGKILL (weights, queue,
grad scaler), runs never deleted by --if-needed, NaN, lr_find's objective, errors, CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rice_lab.cli import main
from rice_lab.errors import CheckpointError, ConfigError, DataError, TrainingError
from rice_lab.presets import PretrainConfig, get_preset

# 2 epochs x 5 steps of 8 plants, 32 px crops; the queue (32 embeddings) fills and is used in epoch 2.
TINY = dict(epochs=2, batch_size=8, crops={"size": 32}, progress=False, checkpoint_every=2, resume_every=1,
            threads=1)
CLI_TINY = ["--preset", "cpu-tiny", "--epochs", "2", "--batch-size", "8", "--threads", "1", "--no-progress",
            "--checkpoint-every", "2", "--resume-every", "1"]


def tiny(data: Path, out: Path, **overrides) -> PretrainConfig:
    return get_preset("cpu-tiny", data=str(data), out=str(out), **{**TINY, **overrides})


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rice_lab.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def encoder_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "encoder.pt", weights_only=True)["encoder"]


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(synth_root, tmp_path_factory) -> Path:
    """One uninterrupted CLI run, shared by the tests below."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    result = cli("pretrain", str(synth_root), "--out", str(out), *CLI_TINY)
    assert result.returncode == 0, result.stderr
    return out


def test_run_directory_contents(finished_run):
    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert manifest["kind"] == "pretrain" and manifest["format"] == 2
    assert manifest["config"]["encoder"] == "xresnet-tiny" and manifest["seed"] == 0
    assert manifest["config"]["crops"]["size"] == 64 and manifest["config"]["swav"]["n_prototypes"] == 64
    assert len(manifest["data_fingerprint"]) == 16 and "torch" in manifest["versions"]
    assert "git_commit" in manifest
    import pandas as pd

    metrics = pd.read_csv(finished_run / "metrics.csv")
    train, valid = metrics[metrics.kind == "train"], metrics[metrics.kind == "valid"]
    assert train.step.tolist() == list(range(1, 11)) and len(valid) == 2
    assert train.loss.notna().all() and train.lr.gt(0).all()
    steps = [int(p.stem.split("-")[1]) for p in sorted((finished_run / "checkpoints").glob("step-*.pt"))]
    assert steps == [0, 2, 4, 6, 8, 10]
    from rice_lab.models import load_encoder

    encoder = load_encoder(finished_run)
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, encoder.num_features)
    assert set(encoder.normalization) == {"rgb", "rgnir"} and encoder.photo_height == 128


def test_every_file_of_a_run_loads_with_weights_only(finished_run):
    for path in [finished_run / "last.pt", finished_run / "encoder.pt", *finished_run.glob("checkpoints/*.pt")]:
        torch.load(path, weights_only=True)  # raises on numpy arrays, fastcore lists, pickled code


def test_snapshots_load_whole_and_step_0_is_the_seeded_start(finished_run):
    from rice_lab.models import create_encoder
    from rice_lab.runs import list_checkpoints
    from rice_lab.seeding import seed_everything
    from rice_lab.ssl import load_swav_model

    # step 0 is the run's own random start: the seeded initialisation, untouched
    seed_everything(0)
    fresh = create_encoder("xresnet-tiny").state_dict()
    start = load_swav_model(list_checkpoints(finished_run)[0])
    assert all(torch.equal(v, start.encoder.state_dict()[k]) for k, v in fresh.items())
    final = load_swav_model(finished_run)
    assert final.photo_height == 128 and final.views == "paired" and not final.training
    assert any(not torch.equal(v, final.encoder.state_dict()[k]) for k, v in fresh.items())
    embeddings, scores = final([torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)])
    assert embeddings.shape == (6, 64) and scores.shape == (6, 64)


def test_kill_9_then_resume_gives_the_same_weights(finished_run, synth_root, tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "rice_lab.cli", "pretrain", str(synth_root), "--out", str(out), *CLI_TINY]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONWARNINGS": "ignore"})
    metrics = out / "metrics.csv"
    deadline = time.time() + 120
    # kill -9 in the middle of epoch 2, after the queue has started (step 6 of 10)
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and metrics.read_text().count(",train,") >= 6:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "encoder.pt").exists()
    state = torch.load(out / "last.pt", weights_only=True)
    assert 0 < state["step"] < 10

    resumed = cli("pretrain", str(synth_root), "--out", str(out), *CLI_TINY, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    straight, again = encoder_weights(finished_run), encoder_weights(out)
    for name, value in straight.items():
        assert torch.equal(value, again[name]), f"{name} differs after resume"
    import pandas as pd

    a, b = pd.read_csv(finished_run / "metrics.csv"), pd.read_csv(out / "metrics.csv")
    assert b.step.tolist() == a.step.tolist()  # no step logged twice, none missing
    assert (a.loss - b.loss).abs().max() < 1e-6


def test_resume_with_another_config_is_refused(finished_run, synth_root):
    result = cli("pretrain", str(synth_root), "--out", str(finished_run), *CLI_TINY, "--seed", "1",
                 "--resume")
    assert result.returncode != 0 and "seed: 0 -> 1" in result.stderr and "Traceback" not in result.stderr
    again = cli("pretrain", str(synth_root), "--out", str(finished_run), *CLI_TINY)
    assert again.returncode != 0 and "--resume" in again.stderr


# --- the run cache: --if-needed / cached_pretrain never deletes a run --------------------------------

def test_if_needed_reuses_a_matching_run_and_sets_a_stale_one_aside(synth_root, tmp_path):
    out = tmp_path / "cached"
    first = cli("pretrain", str(synth_root), "--out", str(out), *CLI_TINY, "--if-needed")
    assert first.returncode == 0, first.stderr
    kept = files_of(out)
    # Settings that do not change the result: the finished run is the answer, untouched.
    again = cli("pretrain", str(synth_root), "--out", str(out), *CLI_TINY, "--if-needed", "--threads", "2",
                "--checkpoint-every", "5", "--resume-every", "3")
    assert again.returncode == 0, again.stderr
    assert files_of(out) == kept and not list(tmp_path.glob("cached.stale-*"))
    # Training longer is another run: the finished one moves aside, whole, and a new one is trained.
    longer = cli("pretrain", str(synth_root), "--out", str(out), *CLI_TINY, "--if-needed", "--epochs", "3")
    assert longer.returncode == 0, longer.stderr
    [aside] = tmp_path.glob("cached.stale-*")
    assert files_of(aside) == kept
    assert "epochs: 2 -> 3" in longer.stderr and str(aside) in longer.stderr
    assert json.loads((out / "manifest.json").read_text())["config"]["epochs"] == 3
    both = cli("pretrain", str(synth_root), "--out", str(out), *CLI_TINY, "--if-needed", "--resume")
    assert both.returncode != 0 and "not allowed with" in both.stderr


def test_cached_pretrain_compares_configs_as_stored_so_a_path_equals_its_string(synth_root, tmp_path):
    from rice_lab.ssl.pretrain import cached_pretrain

    run_dir = cached_pretrain(tiny(synth_root, tmp_path / "paths", epochs=1))
    kept = files_of(run_dir)
    for data, out in ((Path(synth_root), tmp_path / "paths"), (str(synth_root), str(tmp_path / "paths"))):
        assert cached_pretrain(tiny(data, out, epochs=1, progress=True)) == run_dir
    assert files_of(run_dir) == kept and not list(tmp_path.glob("paths.stale-*"))


def test_cached_pretrain_sets_aside_what_it_cannot_read(synth_root, tmp_path, capsys):
    from rice_lab.ssl.pretrain import cached_pretrain

    config = tiny(synth_root, tmp_path / "run", epochs=1)
    run_dir = cached_pretrain(config)
    cases = {
        "corrupt manifest": lambda: (run_dir / "manifest.json").write_text("{not json"),
        "older flat manifest": lambda: (run_dir / "manifest.json").write_text(json.dumps(
            {"kind": "pretrain", "config": {"size": 32, "photo_size": 128, "hidden": 256, "epochs": 1}})),
        "no manifest": lambda: (run_dir / "manifest.json").unlink(),
    }
    for name, damage in cases.items():
        damage()
        kept = files_of(run_dir)
        before = set(tmp_path.glob("run.stale-*"))
        assert cached_pretrain(config) == run_dir, name
        [aside] = set(tmp_path.glob("run.stale-*")) - before
        assert files_of(aside) == kept, f"{name}: the stale folder must be moved whole"
        assert (run_dir / "encoder.pt").is_file(), name
        assert "moved it to" in capsys.readouterr().err, name


def test_cached_pretrain_resumes_an_unfinished_matching_run(synth_root, tmp_path):
    from rice_lab.ssl.pretrain import cached_pretrain

    config = tiny(synth_root, tmp_path / "unfinished")
    run_dir = cached_pretrain(config)
    (run_dir / "encoder.pt").unlink()  # as if killed after its last resume state
    manifest = (run_dir / "manifest.json").read_text()
    assert cached_pretrain(config) == run_dir and (run_dir / "encoder.pt").is_file()
    assert (run_dir / "manifest.json").read_text() == manifest and not list(tmp_path.glob("*.stale-*"))


def test_plain_pretrain_never_writes_into_a_folder_that_is_not_a_run(synth_root, tmp_path):
    from rice_lab.ssl.pretrain import pretrain

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "metrics.csv").write_text("my own file\n")
    with pytest.raises(CheckpointError, match="no manifest.json"):
        pretrain(tiny(synth_root, tmp_path / "mine"))
    assert (tmp_path / "mine" / "metrics.csv").read_text() == "my own file\n"


def test_old_flat_configs_are_read_as_nested_ones():
    flat = {"size": 64, "photo_size": 128, "n_small": 2, "hidden": 256, "queue_factor": 4, "epochs": 100,
            "large_scale": [0.25, 1.0], "moms": [0.95, 0.85, 0.95]}
    config = PretrainConfig.from_dict(flat)
    assert (config.crops.size, config.photo_height, config.crops.n_small) == (64, 128, 2)
    assert (config.swav.hidden, config.swav.queue_factor, config.epochs) == (256, 4, 100)
    assert config.crops.large_scale == (0.25, 1.0) and config.moms == (0.95, 0.85, 0.95)
    assert PretrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="crops.sise"):
        PretrainConfig.from_dict({"crops": {"sise": 3}})


# --- what a resumed or restarted fit depends on ----------------------------------------------------

def _fit_in(run_dir: Path, config, plants, resume_state=None, extra=(), checkpoint_every=0):
    """What pretrain() does after the run directory is ready, with extra callbacks."""
    from rice_lab.ssl.pretrain import build_learner
    from rice_lab.ssl.rundir import RunDirCallback

    learn, swav, meta = build_learner(config, plants, extra_cbs=list(extra))
    run_dir.mkdir(parents=True, exist_ok=True)
    learn.add_cb(RunDirCallback(run_dir, checkpoint_every, 1, resume_state, {"swav": swav}, meta))
    start = 0 if resume_state is None else resume_state["step"] // len(learn.dls.train)
    learn.fit_one_cycle(config.epochs, config.lr, wd=config.wd, moms=config.moms, pct_start=config.pct_start,
                        start_epoch=start)
    return learn


def test_resume_restores_the_grad_scaler(synth_root, tmp_path):
    """fp16 training's loss scale grows and backs off with the run; a resumed run must continue it."""
    from fastai.callback.core import Callback
    from fastai.callback.fp16 import MixedPrecision
    from fastcore.foundation import L

    from rice_lab.ssl.pretrain import pretraining_plants

    class CPUMixedPrecision(MixedPrecision):  # fastai's, with a scaler that also runs on a CPU
        def before_fit(self):
            self.autocast = torch.autocast("cpu", dtype=torch.bfloat16)
            self.learn.scaler, self.scales = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2), L()

    class Keep(Callback):
        order = 5  # before MixedPrecision's after_fit drops the scaler

        def __init__(self, copy_at=None):
            self.copy_at, self.scale = copy_at, None

        def after_batch(self):
            if self.training and self.learn.train_iter == self.copy_at:
                shutil.copy(tmp_path / "a" / "last.pt", tmp_path / "mid.pt")

        def after_fit(self):
            self.scale = self.learn.scaler.state_dict()

    config = tiny(synth_root, tmp_path / "a")
    plants = pretraining_plants(config)
    straight = Keep(copy_at=6)
    _fit_in(tmp_path / "a", config, plants, extra=[CPUMixedPrecision(), straight])
    mid = torch.load(tmp_path / "mid.pt", weights_only=True)
    assert mid["step"] == 6 and mid["scaler"]["scale"] > 2.0**10
    resumed = Keep()
    _fit_in(tmp_path / "b", config, plants, resume_state=mid, extra=[CPUMixedPrecision(), resumed])
    assert resumed.scale == straight.scale


def test_each_fit_starts_with_a_new_queue(synth_root, tmp_path):
    from fastai.callback.core import Callback

    from rice_lab.ssl.pretrain import build_learner, pretraining_plants

    config = tiny(synth_root, tmp_path / "q", epochs=1, swav={"queue_start": 0.0})
    seen = []

    class Watch(Callback):
        order = 1

        def before_batch(self):
            if self.training and self.iter == 0:
                seen.append(swav.queue.filled)

    learn, swav, _ = build_learner(config, pretraining_plants(config), extra_cbs=[Watch()])
    learn.fit(1)
    assert swav.queue.filled > 0
    learn.fit(1)
    assert seen == [0, 0]


def test_lr_find_sweeps_the_objective_of_the_first_step(synth_root, tmp_path, monkeypatch):
    """No queue switching on half-way through the sweep, no frozen prototypes during it."""
    import rice_lab.ssl.callback as callback
    from fastai.callback.core import Callback

    from rice_lab.ssl.pretrain import build_learner, pretraining_plants

    config = tiny(synth_root, tmp_path / "lr", swav={"queue_start": 0.0, "freeze_prototypes_steps": 10_000})
    queues, grads = [], []
    real_loss = callback.swav_loss
    monkeypatch.setattr(callback, "swav_loss", lambda *a, **k: queues.append(a[3]) or real_loss(*a, **k))

    class Watch(Callback):
        order = 1  # after the SwAV callback's after_backward

        def after_backward(self):
            grads.append(self.learn.model.prototypes.weight.grad is not None)

    learn, _, _ = build_learner(config, pretraining_plants(config), extra_cbs=[Watch()])
    learn.path = tmp_path
    learn.lr_find(start_lr=1e-5, end_lr=1e-1, num_it=12, stop_div=False, show_plot=False)
    assert len(queues) == 12 and all(q is None for q in queues)
    assert grads and all(grads)


def test_a_crop_0_queue_is_filled_from_the_start_and_used_past_queue_start(synth_root, tmp_path, monkeypatch):
    """The published notebook's queue: crop 0's embeddings from the first step, used once pct_train > 0.5."""
    import rice_lab.ssl.callback as callback
    from fastai.callback.core import Callback

    from rice_lab.ssl.pretrain import build_learner, pretraining_plants

    used, training = [], []
    real_loss = callback.swav_loss
    monkeypatch.setattr(callback, "swav_loss", lambda *a, **k: used.append(a[3]) or real_loss(*a, **k))

    class Watch(Callback):
        order = 1

        def after_loss(self):
            training.append(self.training)

    config = tiny(synth_root, tmp_path / "crop0", swav={"queue_fill": "crop-0", "queue_start": 0.5, "queue_factor": 16})
    learn, swav, _ = build_learner(config, pretraining_plants(config), extra_cbs=[Watch()])
    first = swav.new_queue().embeddings.clone()  # the random unit vectors it starts from
    learn.fit_one_cycle(2, config.lr)
    steps = [q for q, t in zip(used, training) if t]
    assert [q is not None for q in steps] == [False] * 6 + [True] * 4  # step / 10 > 0.5 from step 6
    assert all(len(q) == 2 and torch.equal(q[0], q[1]) for q in steps[6:])  # one queue for both large crops
    # 10 steps x 8 crop-0 embeddings replaced 80 of its 8 x 16 = 128 random vectors
    assert swav.queue.embeddings.shape == (1, 128, 64)
    assert torch.equal(swav.queue.embeddings[0, 80:], first[0, :48])


def test_validation_and_snapshots_see_unit_prototypes(synth_root, tmp_path):
    from fastai.callback.core import Callback

    from rice_lab.runs import list_checkpoints
    from rice_lab.ssl.pretrain import pretraining_plants

    norms = []

    class Watch(Callback):
        order = 70

        def before_validate(self):
            norms.append(self.learn.model.prototypes.weight.norm(dim=1))

    # prototypes free from the first step, and a learning rate that moves them off the sphere
    config = tiny(synth_root, tmp_path / "unit", epochs=2, lr=0.05, swav={"freeze_prototypes_steps": 0})
    _fit_in(tmp_path / "unit", config, pretraining_plants(config), extra=[Watch()], checkpoint_every=1)
    norms += [torch.load(p, weights_only=True)["prototypes"].norm(dim=1) for p in list_checkpoints(tmp_path / "unit")]
    assert len(norms) == 2 + 11 and all(torch.allclose(n, torch.ones_like(n), atol=1e-6) for n in norms)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_state(synth_root, tmp_path,
                                                                              monkeypatch):
    import rice_lab.ssl.callback as callback
    from rice_lab.ssl.pretrain import pretrain

    calls = {"n": 0}
    real_loss = callback.swav_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(callback, "swav_loss", poisoned)
    with pytest.raises(TrainingError, match=r"loss became nan at step 3.*last good checkpoint"):
        pretrain(tiny(synth_root, tmp_path / "nan"))
    state = torch.load(tmp_path / "nan" / "last.pt", weights_only=True)
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_data_error_stops_with_the_validators_message(tmp_path):
    from rice_lab.ssl.pretrain import pretrain

    (tmp_path / "rice" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="images folder holds no"):
        pretrain(tiny(tmp_path / "rice", tmp_path / "out"))
    assert main(["pretrain", str(tmp_path / "rice"), "--out", str(tmp_path / "out"), "--no-progress"]) == 2


def test_cli_rejects_bad_presets_and_configs(tmp_path, capsys):
    assert main(["pretrain", str(tmp_path), "--preset", "gpu-huge", "--out", str(tmp_path / "o")]) == 2
    assert "unknown preset 'gpu-huge'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="epochs"):
        tiny(tmp_path, tmp_path / "o", epochs=0).validate()
    with pytest.raises(ConfigError, match="crops.blur_p"):
        tiny(tmp_path, tmp_path / "o", crops={"blur_p": 1.5}).validate()
    with pytest.raises(ConfigError, match="queue_fill"):
        tiny(tmp_path, tmp_path / "o", swav={"queue_fill": "crop-1"}).validate()


def test_presets_follow_the_described_recipe():
    paper = get_preset("gpu-paper")
    assert (paper.encoder, paper.crops.size, paper.batch_size, paper.lr, paper.wd) == ("xresnet34", 128, 32, 1e-4, 1e-6)
    assert paper.moms == (0.95, 0.85, 0.95) and paper.queue_length == 32 * 64 and paper.swav.queue_start == 0.5
    crops = paper.crops
    assert (crops.n_large, crops.n_small, crops.small_scale, crops.large_scale) == (2, 6, (0.05, 0.3), (0.25, 1.0))
    assert paper.optimizer == "lamb" and paper.precision == "fp16" and crops.max_rotation == 10
    assert paper.views == "paired"  # rice-lab's pairing of the cameras, not what the notebook ran
    assert get_preset("gpu-res2next50").encoder == "res2next50"
    assert get_preset("cpu-tiny", seed=3, epochs=None).seed == 3


def test_the_as_published_preset_is_what_the_notebook_ran():
    published = get_preset("gpu-paper-as-published")
    crops, swav = published.crops, published.swav
    assert published.views == "rgb" and published.normalization == "imagenet"
    assert (crops.size, crops.small_size, crops.n_large, crops.n_small) == (128, 96, 2, 6)
    assert (crops.rotation_p, crops.max_rotation, crops.color_jitter_p, crops.grayscale_p, crops.blur_p) == \
        (0.3, 10.0, 0.3, 0.3, 0.3)
    assert published.queue_length == 32 * 64 and swav.queue_start == 0.5 and swav.queue_fill == "crop-0"
    assert swav.freeze_prototypes_steps == 0
    published.validate()
