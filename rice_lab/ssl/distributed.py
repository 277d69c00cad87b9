"""Several processes through PyTorch's own DistributedDataParallel (torchrun / accelerate launch)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group that ``torchrun`` describes in the environment; single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    here = False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        here = True
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, here)


def barrier(info: Dist) -> None:
    """Wait for every process (no-op when alone)."""
    if info.world_size > 1:
        dist.barrier()


def broadcast_object(obj, info: Dist):
    """Rank 0's ``obj`` on every process."""
    if info.world_size <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_floats(value: float, device: torch.device | None = None) -> list[float]:
    """``value`` from every process, in rank order (``[value]`` when alone)."""
    if not is_distributed():
        return [float(value)]
    box = torch.tensor([float(value)], dtype=torch.float64, device=device)
    values = [torch.zeros_like(box) for _ in range(dist.get_world_size())]
    dist.all_gather(values, box)
    return [float(v.item()) for v in values]


def gather_objects(obj) -> list:
    """``obj`` from every process, in rank order (``[obj]`` when alone)."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def rank() -> int:
    """This process's rank (0 when alone)."""
    return dist.get_rank() if is_distributed() else 0


def shutdown(info: Dist) -> None:
    """Leave the process group if this module joined it."""
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()
