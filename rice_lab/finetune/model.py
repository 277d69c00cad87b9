"""The classifier: an encoder's body (feature maps), a pooling and a head."""

from __future__ import annotations

import torch
from torch import nn

from rice_lab.errors import ConfigError


def classifier_head(kind: str, n_features: int, n_classes: int) -> nn.Sequential:
    """``original``: the original notebook's head (BN, dropout 0.25, 512 hidden, BN, dropout 0.5);
    ``bn-linear``: BN, dropout 0.25, linear; ``linear``: one linear layer."""
    if kind == "original":
        return nn.Sequential(nn.BatchNorm1d(n_features), nn.Dropout(0.25), nn.Linear(n_features, 512, bias=False),
                             nn.ReLU(inplace=True), nn.BatchNorm1d(512), nn.Dropout(0.5),
                             nn.Linear(512, n_classes, bias=False))
    if kind == "bn-linear":
        return nn.Sequential(nn.BatchNorm1d(n_features), nn.Dropout(0.25), nn.Linear(n_features, n_classes))
    if kind == "linear":
        return nn.Sequential(nn.Linear(n_features, n_classes))
    raise ConfigError(f"head={kind!r}: choose original, bn-linear or linear")


def encoder_body(encoder: nn.Module) -> tuple[nn.Module, int]:
    """The part of an encoder that makes feature maps, and how many channels they have."""
    n_features = encoder.num_features
    if isinstance(encoder, nn.Sequential):  # fastai xresnet: drop its pool and flatten
        return nn.Sequential(*list(encoder.children())[:-2]), n_features
    encoder.reset_classifier(0, global_pool="")  # timm: return the maps, unpooled
    return encoder, n_features


class Classifier(nn.Module):
    """Photo (B, 3, H, W) -> class logits (B, classes): body -> pool -> head."""

    def __init__(self, body: nn.Module, n_features: int, n_classes: int, head: str = "bn-linear",
                 pool: str = "concat") -> None:
        super().__init__()
        self.body, self.pool = body, pool
        self.head = classifier_head(head, n_features * (2 if pool == "concat" else 1), n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, as the head sees them."""
        maps = self.body(x)
        if self.pool == "concat":  # max and mean, as fastai's AdaptiveConcatPool2d
            return torch.cat([maps.amax(dim=(2, 3)), maps.mean(dim=(2, 3))], dim=1)
        return maps.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def body_and_head(model: Classifier) -> list[list[nn.Parameter]]:
    """fastai's splitter: two parameter groups, body then head (freeze / discriminative rates)."""
    return [list(model.body.parameters()), list(model.head.parameters())]


__all__ = ["Classifier", "body_and_head", "classifier_head", "encoder_body"]
