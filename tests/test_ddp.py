"""Several processes on CPU (gloo): distributed sinkhorn equals the single-process one; torchrun pretrain."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

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


def test_torchrun_two_processes_write_one_run_directory(synth_root, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
               str(_free_port()), "-m", "rice_lab.cli", "pretrain", str(synth_root), "--out", str(out),
               "--preset", "cpu-tiny", "--epochs", "1", "--batch-size", "4", "--threads", "1",
               "--no-progress"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # one run directory, nothing else
    assert {"manifest.json", "metrics.csv", "encoder.pt", "last.pt", "checkpoints"} <= {
        p.name for p in out.iterdir()}
    import pandas as pd

    metrics = pd.read_csv(out / "metrics.csv")
    train = metrics[metrics.kind == "train"]
    # one row per step, written once (by rank 0); each step saw 2 x 4 plants
    assert train.step.tolist() == list(range(1, len(train) + 1)) and train.loss.notna().all()
    state = torch.load(out / "last.pt", weights_only=False)
    assert len(state["stateful"]) == 2  # each process's queue kept for resume
