"""Sinkhorn-Knopp: turn prototype scores into balanced soft assignments (the SwAV "codes")."""

from __future__ import annotations

import torch
import torch.distributed as dist

from rice_lab.ssl.distributed import is_distributed


def _all_reduce(tensor: torch.Tensor, op: "dist.ReduceOp" = None) -> torch.Tensor:
    """Sum (or ``op``) across processes when running distributed; a no-op otherwise."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op is None else op)
    return tensor


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, n_iters: int = 3, epsilon: float = 0.05) -> torch.Tensor:
    """Balanced soft assignments (batch, prototypes) from scores; each row sums to 1.

    Under ``torch.distributed`` the sums run over the global batch, so N processes holding
    N slices of a batch get exactly the rows one process would get for the whole batch.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (batch, prototypes), got shape {tuple(scores.shape)}")
    # float32 at least: exp(score / 0.05) overflows fp16 and bf16 loses the small differences.
    logits = scores.detach().to(torch.promote_types(scores.dtype, torch.float32)) / epsilon
    # Subtracting the global maximum changes nothing after normalisation but keeps exp finite.
    top = _all_reduce(logits.max().reshape(1).clone(), dist.ReduceOp.MAX if is_distributed() else None)
    q = torch.exp(logits - top).t()  # (prototypes, batch)
    n_prototypes = q.shape[0]
    batch = _all_reduce(torch.tensor([q.shape[1]], dtype=q.dtype, device=q.device))
    q /= _all_reduce(q.sum().reshape(1))
    for _ in range(n_iters):
        # Each prototype gets an equal share of the global batch ...
        q /= _all_reduce(q.sum(dim=1, keepdim=True))
        q /= n_prototypes
        # ... and each sample spreads exactly one unit over the prototypes (local: rows are local).
        q /= q.sum(dim=0, keepdim=True)
        q /= batch
    q *= batch
    return q.t()
