"""Encoders (fastai xresnet, timm, tiny CPU variants) built by one function, and heads."""

from rice_lab.models.encoders import (
    create_encoder,
    list_encoders,
    load_encoder,
    load_encoder_weights,
)
from rice_lab.models.heads import ProjectionHead

__all__ = ["ProjectionHead", "create_encoder", "list_encoders", "load_encoder", "load_encoder_weights"]
