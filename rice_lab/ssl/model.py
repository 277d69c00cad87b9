"""The SwAV network: encoder -> projection head -> unit embedding -> prototype scores."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from rice_lab.models.heads import ProjectionHead
from rice_lab.ssl.prototypes import Prototypes


class SwAVModel(nn.Module):
    """Runs every crop through one encoder; crops of equal size share a forward pass."""

    def __init__(self, encoder: nn.Module, hidden: int = 2048, dim: int = 128,
                 n_prototypes: int = 3000) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = ProjectionHead(encoder.num_features, hidden, dim)
        self.prototypes = Prototypes(dim, n_prototypes)

    def forward(self, crops: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings, scores) for all crops stacked crop-major: rows ``v*batch:(v+1)*batch`` are crop v."""
        features, start = [], 0
        while start < len(crops):  # group consecutive same-size crops: one batched pass per size
            end = start
            while end < len(crops) and crops[end].shape[-2:] == crops[start].shape[-2:]:
                end += 1
            # channels-last: oneDNN's convolutions and max-pool run 1.4-1.7x faster on CPU (measured, 2 cores)
            batch = torch.cat(list(crops[start:end])).contiguous(memory_format=torch.channels_last)
            features.append(self.encoder(batch))
            start = end
        embeddings = F.normalize(self.head(torch.cat(features)), dim=1)
        return embeddings, self.prototypes(embeddings)


def load_swav_model(path: str | Path) -> SwAVModel:
    """The whole SwAV network (encoder, head, prototypes) of a run dir, its ``encoder.pt`` or a snapshot.

    The head's and prototypes' sizes are read from the stored weights; the result is in eval mode
    and carries ``normalization`` (per-camera mean and std), ``photo_height`` and ``views``.
    """
    from rice_lab.errors import CheckpointError
    from rice_lab.models.encoders import create_encoder
    from rice_lab.runs import load_checkpoint

    path = Path(path)
    file = path / "encoder.pt" if path.is_dir() else path
    state = load_checkpoint(file)
    if not {"encoder_name", "encoder", "head", "prototypes"} <= set(state):
        raise CheckpointError(f"{file}: not a SwAV snapshot (needs encoder_name, encoder, head, prototypes)")
    encoder = create_encoder(state["encoder_name"], n_in=state.get("n_in", 3))
    hidden, dim = state["head"]["0.weight"].shape[0], state["head"]["3.weight"].shape[0]
    net = SwAVModel(encoder, hidden, dim, state["prototypes"].shape[0])
    try:
        net.encoder.load_state_dict(state["encoder"])
        net.head.load_state_dict(state["head"])
    except RuntimeError as err:
        raise CheckpointError(f"{file}: weights do not fit {state['encoder_name']} "
                              f"({str(err).splitlines()[0]})") from err
    with torch.no_grad():
        net.prototypes.weight.copy_(state["prototypes"])
    net.normalization = state.get("normalization")
    net.photo_height = state.get("photo_height", state.get("photo_size"))
    net.views = state.get("views")
    return net.eval()
