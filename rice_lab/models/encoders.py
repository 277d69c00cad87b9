"""Encoders through one function: fastai xresnets, timm models (res2next50 ...), tiny CPU variants.

Every encoder maps (batch, n_in, height, width) to pooled features (batch, encoder.num_features).
"""

from __future__ import annotations

import os
import threading
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from rice_lab.errors import CheckpointError, ConfigError, OfflineError


def _xresnet(layers: list[int], expansion: int = 1, widen: float = 1.0,
             stem: tuple[int, int, int] = (32, 32, 64), n_in: int = 3) -> nn.Module:
    from fastai.layers import ResBlock
    from fastai.vision.models.xresnet import XResNet

    net = XResNet(ResBlock, expansion, layers, c_in=n_in, n_out=1, stem_szs=stem, widen=widen)
    body = nn.Sequential(*list(net.children())[:-2])  # keep pool + flatten, drop dropout + classifier
    body.num_features = net[-1].in_features
    return body


# name -> builder(n_in) for the fastai family; timm names are looked up in timm itself.
XRESNETS: dict[str, Callable[[int], nn.Module]] = {
    "xresnet18": lambda n_in: _xresnet([2, 2, 2, 2], n_in=n_in),
    "xresnet34": lambda n_in: _xresnet([3, 4, 6, 3], n_in=n_in),
    "xresnet50": lambda n_in: _xresnet([3, 4, 6, 3], expansion=4, n_in=n_in),
    # CPU variants: one block per stage and fewer channels, so a 2-core laptop trains in minutes
    # (the stem must end at 64 channels: fastai sizes the first stage from 64, not from the stem).
    "xresnet-tiny": lambda n_in: _xresnet([1, 1, 1, 1], widen=0.25, stem=(16, 16, 64), n_in=n_in),
    "xresnet-small": lambda n_in: _xresnet([1, 1, 1, 1], widen=0.5, stem=(16, 32, 64), n_in=n_in),
}


def list_encoders() -> list[str]:
    """Names accepted by :func:`create_encoder` besides any timm model name."""
    return sorted(XRESNETS) + ["res2next50", "resnet18", "resnet50", "resnet10t", "<any timm model>"]


def create_encoder(name: str, pretrained: bool = False, n_in: int = 3,
                   init: str | Path | None = None) -> nn.Module:
    """Build encoder ``name``; ``pretrained`` takes timm ImageNet weights, ``init`` a local checkpoint."""
    if name in XRESNETS:
        if pretrained:
            raise ConfigError(f"encoder {name!r}: no ImageNet weights exist for fastai xresnets; "
                              "use pretrained=False or a timm model such as 'res2next50'")
        encoder = XRESNETS[name](n_in)
    else:
        encoder = _timm_encoder(name, pretrained, n_in)
    encoder.encoder_name = name
    if init is not None:
        load_encoder_weights(encoder, init)
    return encoder


def _timm_encoder(name: str, pretrained: bool, n_in: int) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise ConfigError(f"unknown encoder {name!r}; choose one of {', '.join(list_encoders())}")
    make = partial(timm.create_model, name, num_classes=0, in_chans=n_in)
    if not pretrained:
        return make(pretrained=False)
    cached = _cached_timm_weights(name)
    if cached is not None:  # local file: no network at all
        return make(pretrained=True, pretrained_cfg_overlay={"file": str(cached)})
    if _offline():
        raise OfflineError(f"encoder {name!r}: ImageNet weights are not in the local cache and this "
                           "machine is offline; download them once where there is internet "
                           f"(python -c \"import timm; timm.create_model('{name}', pretrained=True)\") "
                           "or run without --pretrained")
    try:
        return make(pretrained=True)
    except (OSError, RuntimeError, ValueError) as err:  # connection errors surface as OSError here
        raise OfflineError(f"encoder {name!r}: could not download ImageNet weights ({err}); "
                           "run without --pretrained or fetch them where there is internet") from err


def _cached_timm_weights(name: str) -> Path | None:
    """The timm checkpoint for ``name`` if it already sits in the Hugging Face cache."""
    import timm

    try:
        hub_id = timm.models.get_pretrained_cfg(name.split(".")[0]).hf_hub_id if "." not in name \
            else timm.create_model(name, pretrained=False).pretrained_cfg.get("hf_hub_id")
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return None
    if not hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def _offline(timeout: float = 2.0) -> bool:
    """True when told to stay offline or when huggingface.co cannot be reached within ``timeout``."""
    if any(os.environ.get(v, "0").lower() in ("1", "true", "yes")
           for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "RICE_LAB_OFFLINE")):
        return True
    import socket

    reached: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
            reached.append(True)
        except OSError:
            pass

    # DNS lookups ignore socket timeouts, so the probe runs in a thread we stop waiting for.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return not reached


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> nn.Module:
    """Load encoder weights from a run directory, a rice-lab checkpoint or a plain state dict."""
    from rice_lab.runs import load_checkpoint

    path = Path(path)
    if path.is_dir():
        path = path / "encoder.pt"
    state = load_checkpoint(path)  # weights_only: plain dicts and tensors, never stored code
    if isinstance(state, dict) and "encoder" in state:
        state = state["encoder"]
    elif isinstance(state, dict) and "model" in state:
        state = {k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")}
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit encoder "
                              f"{getattr(encoder, 'encoder_name', '?')} ({str(err).splitlines()[0]})") from err
    return encoder


def load_encoder(path: str | Path) -> nn.Module:
    """Rebuild the encoder a run saved (``run_dir`` or its ``encoder.pt``), weights loaded, eval mode."""
    from rice_lab.runs import load_checkpoint

    path = Path(path)
    file = path / "encoder.pt" if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"{file}: encoder checkpoint not found (did the run finish?)")
    meta = load_checkpoint(file)
    if not isinstance(meta, dict) or "encoder_name" not in meta:
        raise CheckpointError(f"{file}: not a rice-lab encoder file (no encoder_name)")
    encoder = create_encoder(meta["encoder_name"], n_in=meta.get("n_in", 3))
    encoder.load_state_dict(meta["encoder"])
    encoder.normalization = meta.get("normalization")
    # The height its photos were decoded to: the probes' default (older files called it photo_size).
    encoder.photo_height = meta.get("photo_height", meta.get("photo_size"))
    # Until the probes read photo_height, they read this older name (same meaning: the photo height).
    encoder.photo_size = encoder.photo_height
    return encoder.eval()
