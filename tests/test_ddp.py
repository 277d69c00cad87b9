"""Several processes on CPU (gloo): distributed sinkhorn equals the single-process one; the logged loss
is the whole batch's; a non-finite loss on one process stops all of them; torchrun pretrain, killed
and resumed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rice_lab.ssl.sinkhorn import sinkhorn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sinkhorn_worker(rank: int, world_size: int, port: int, scores: torch.Tensor, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        mine = scores.chunk(world_size)[rank]
        torch.save(sinkhorn(mine, n_iters=3, epsilon=0.05), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_sinkhorn_equals_single_process_on_the_whole_batch(tmp_path):
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(24, 6), dim=1)
    scores = z @ torch.nn.functional.normalize(torch.randn(9, 6), dim=1).t()
    mp.spawn(_sinkhorn_worker, args=(2, _free_port(), scores, str(tmp_path)), nprocs=2, join=True)
    distributed = torch.cat([torch.load(tmp_path / f"rank{r}.pt") for r in range(2)])
    torch.testing.assert_close(distributed, sinkhorn(scores), rtol=1e-5, atol=1e-7)
    # and it is not just each half on its own
    halves = torch.cat([sinkhorn(half) for half in scores.chunk(2)])
    assert not torch.allclose(distributed, halves, atol=1e-4)


def _torchrun(synth_root: Path, out: Path, *args: str) -> list[str]:
    """The command line of a 2-process CPU pretrain of ``synth_root`` into ``out``."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
            str(_free_port()), "-m", "rice_lab.cli", "pretrain", str(synth_root), "--out", str(out),
            "--preset", "cpu-tiny", "--batch-size", "4", "--threads", "1", "--no-progress", *args]


ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def test_torchrun_two_processes_write_one_run_directory(synth_root, tmp_path):
    out = tmp_path / "ddp"
    result = subprocess.run(_torchrun(synth_root, out, "--epochs", "1"), capture_output=True, text=True,
                            timeout=180, env=ENV, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # one run directory, nothing else
    assert {"manifest.json", "metrics.csv", "encoder.pt", "last.pt", "checkpoints"} <= {
        p.name for p in out.iterdir()}
    import pandas as pd

    metrics = pd.read_csv(out / "metrics.csv")
    train = metrics[metrics.kind == "train"]
    # one row per step, written once (by rank 0); each step saw 2 x 4 plants
    assert train.step.tolist() == list(range(1, len(train) + 1)) and train.loss.notna().all()
    state = torch.load(out / "last.pt", weights_only=True)
    assert len(state["per_process"]) == 2  # each process's queue and random states kept for resume


@pytest.mark.slow  # over a minute; test_pretrain kills and resumes one process in make test
def test_torchrun_killed_then_resumed_if_needed_gives_the_same_weights(synth_root, tmp_path):
    """kill -9 the whole 2-process job mid-run; ``--if-needed`` (rank 0 decides) resumes it exactly."""
    args = ("--epochs", "2", "--resume-every", "1", "--checkpoint-every", "0")
    straight = tmp_path / "straight"
    result = subprocess.run(_torchrun(synth_root, straight, *args), capture_output=True, text=True,
                            timeout=180, env=ENV, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    n_steps = (straight / "metrics.csv").read_text().count(",train,")

    killed = tmp_path / "killed"
    process = subprocess.Popen(_torchrun(synth_root, killed, *args), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=ENV, cwd=tmp_path, start_new_session=True)
    metrics, deadline = killed / "metrics.csv", time.time() + 180
    while time.time() < deadline and process.poll() is None:  # mid epoch 2, after the queue started
        if metrics.exists() and metrics.read_text().count(",train,") >= n_steps // 2 + 2:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the job finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and both workers at once, like a lost node
    process.wait()
    assert not (killed / "encoder.pt").exists()
    assert 0 < torch.load(killed / "last.pt", weights_only=True)["step"] < n_steps
    manifest = (killed / "manifest.json").read_text()

    resumed = subprocess.run(_torchrun(synth_root, killed, *args, "--if-needed"), capture_output=True,
                             text=True, timeout=180, env=ENV, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (killed / "manifest.json").read_text() == manifest  # continued, not deleted and redone
    a = torch.load(straight / "encoder.pt", weights_only=True)["encoder"]
    b = torch.load(killed / "encoder.pt", weights_only=True)["encoder"]
    for name, value in a.items():
        assert torch.equal(value, b[name]), f"{name} differs after a resumed 2-process run"
    import pandas as pd

    steps = pd.read_csv(killed / "metrics.csv").query("kind == 'train'").step.tolist()
    assert steps == list(range(1, n_steps + 1))  # no step logged twice, none missing


def _pretrain_worker(rank: int, world_size: int, port: int, config: dict, poison: tuple[int, int] | None,
                     out: str) -> None:
    """One process of a 2-process ``pretrain``, recording its own losses (and spoiling one if asked)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import rice_lab.ssl.callback as callback
    from rice_lab.errors import TrainingError
    from rice_lab.presets import PretrainConfig
    from rice_lab.ssl.pretrain import pretrain

    real_loss, losses = callback.swav_loss, []

    def recording(*args, **kwargs):
        loss = real_loss(*args, **kwargs)
        losses.append(float(loss))
        return loss * float("nan") if poison == (rank, len(losses)) else loss

    callback.swav_loss = recording
    try:
        pretrain(PretrainConfig.from_dict(config))
        message = "finished"
    except TrainingError as err:
        message = str(err)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"message": message, "losses": losses}))


def _spawn_pretrain(config: dict, poison, out: Path, timeout: float = 240) -> list[dict]:
    context = mp.start_processes(_pretrain_worker, args=(2, _free_port(), config, poison, str(out)), nprocs=2,
                                 join=False, start_method="spawn")
    deadline = time.time() + timeout
    try:
        while not context.join(timeout=1):
            assert time.time() < deadline, "the processes did not all stop: one is waiting for the other"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def _config(synth_root: Path, out: Path, **overrides) -> dict:
    from rice_lab.presets import get_preset

    return get_preset("cpu-tiny", data=str(synth_root), out=str(out), batch_size=4, threads=1, progress=False,
                      epochs=1, resume_every=1, checkpoint_every=0, **overrides).to_dict()


@pytest.mark.slow  # another torchrun job; test_torchrun_two_processes_write_one_run_directory stays fast
def test_two_processes_log_the_mean_of_their_losses(synth_root, tmp_path):
    import pandas as pd

    out = tmp_path / "mean"
    ranks = _spawn_pretrain(_config(synth_root, out), None, tmp_path)
    assert [r["message"] for r in ranks] == ["finished", "finished"]
    train = pd.read_csv(out / "metrics.csv").query("kind == 'train'")
    steps = len(train)
    mean = [(a + b) / 2 for a, b in zip(ranks[0]["losses"][:steps], ranks[1]["losses"][:steps])]
    assert max(abs(m - logged) for m, logged in zip(mean, train.loss)) < 2e-6
    assert max(abs(a - b) for a, b in zip(ranks[0]["losses"][:steps], ranks[1]["losses"][:steps])) > 1e-3


@pytest.mark.slow  # another torchrun job
def test_a_non_finite_loss_on_one_process_stops_both_with_one_message(synth_root, tmp_path):
    ranks = _spawn_pretrain(_config(synth_root, tmp_path / "nan"), (1, 3), tmp_path)
    assert ranks[0]["message"] == ranks[1]["message"]
    assert "loss became nan at step 2" in ranks[0]["message"] and "on process 1 of 2" in ranks[0]["message"]
    assert torch.load(tmp_path / "nan" / "last.pt", weights_only=True)["step"] == 2
