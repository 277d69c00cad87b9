"""Prototypes: K learnable unit vectors that the embeddings are scored against."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class Prototypes(nn.Module):
    """A bias-free linear layer whose rows (the prototypes) are kept on the unit sphere."""

    def __init__(self, dim: int, n_prototypes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_prototypes, dim))
        nn.init.normal_(self.weight)
        normalize_prototypes_(self.weight)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Scores (batch, prototypes): cosine similarities when ``embeddings`` are unit vectors."""
        return embeddings @ self.weight.t()


@torch.no_grad()
def normalize_prototypes_(weight: torch.Tensor) -> torch.Tensor:
    """Project each prototype row back onto the unit sphere, in place (SwAV does it every step)."""
    weight.copy_(F.normalize(weight, dim=1))
    return weight


def freeze_prototypes_grad_(prototypes: nn.Module, step: int, frozen_steps: int) -> bool:
    """Drop the prototypes' gradients while ``step < frozen_steps``; return whether they were frozen.

    Early in training the codes are nearly uniform; letting the prototypes move on that noise
    collapses them, so SwAV keeps them fixed for the first steps.
    """
    if step >= frozen_steps:
        return False
    for p in prototypes.parameters():
        p.grad = None
    return True
