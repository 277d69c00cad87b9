"""Heads that sit on an encoder: the SwAV projection head."""

from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Sequential):
    """Linear-BatchNorm-ReLU-Linear, as in SwAV: encoder features -> embedding (before L2 norm)."""

    def __init__(self, in_features: int, hidden: int = 2048, out: int = 128) -> None:
        super().__init__(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out))
        self.out_features = out
