"""A first-in-first-out queue of past embeddings that widens the batch Sinkhorn balances over."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class EmbeddingQueue:
    """Holds the last ``size`` embeddings of each large crop; used only once full.

    A partly filled queue would feed zeros to Sinkhorn, so scores are returned only when every
    slot holds a real embedding (as in the SwAV reference code).
    """

    def __init__(self, n_crops: int, size: int, dim: int) -> None:
        self.embeddings = torch.zeros(n_crops, size, dim)
        self.filled = 0

    @classmethod
    def random_start(cls, size: int, dim: int, generator: torch.Generator) -> "EmbeddingQueue":
        """One queue of ``size`` random unit vectors, counted as full from the start.

        The library the published notebook used starts its queue this way, so the queue can be
        used before real embeddings have replaced the random ones.
        """
        queue = cls(1, size, dim)
        queue.embeddings[0] = F.normalize(torch.randn(size, dim, generator=generator), dim=1)
        queue.filled = size
        return queue

    @property
    def size(self) -> int:
        return self.embeddings.shape[1]

    @property
    def full(self) -> bool:
        return self.size > 0 and self.filled >= self.size

    def scores(self, prototypes: torch.Tensor) -> list[torch.Tensor | None]:
        """Queued embeddings scored against ``prototypes`` (K, dim), one per crop; None until full."""
        if not self.full:
            return [None] * self.embeddings.shape[0]
        queue = self.embeddings.to(device=prototypes.device, dtype=prototypes.dtype)
        return [queue[i] @ prototypes.t() for i in range(len(queue))]

    @torch.no_grad()
    def push(self, embeddings: list[torch.Tensor]) -> None:
        """Add one batch per large crop at the front, dropping the oldest."""
        batch = embeddings[0].shape[0]
        if self.size == 0:
            return
        if self.embeddings.device != embeddings[0].device:
            self.embeddings = self.embeddings.to(embeddings[0].device)
        batch = min(batch, self.size)
        self.embeddings[:, batch:] = self.embeddings[:, :-batch].clone()
        for i, z in enumerate(embeddings):
            self.embeddings[i, :batch] = z[:batch].detach().to(self.embeddings.dtype)
        self.filled = min(self.filled + batch, self.size)

    def state_dict(self) -> dict:
        return {"embeddings": self.embeddings.cpu(), "filled": self.filled}

    def load_state_dict(self, state: dict) -> None:
        self.embeddings = state["embeddings"].clone()
        self.filled = int(state["filled"])


def queue_active(step: int, total_steps: int, start_pct: float) -> bool:
    """Whether the queue collects embeddings at ``step``: from ``start_pct`` of training on."""
    return start_pct < 1.0 and step >= int(start_pct * total_steps)
