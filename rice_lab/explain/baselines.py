"""The two maps every table of attribution scores carries: a method must beat both to count.

* a random map: uniform noise, seeded, knowing nothing of the model or the photo;
* an edge map: the Sobel gradient magnitude of the photo, knowing the photo but not the model
  (Guided Backprop and its kin are known to behave much like one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rice_lab.seeding import stream_generator

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def random_map(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Uniform [0, 1) noise of the images' spatial shape, (N, H, W), the same for the same seed."""
    generator = stream_generator(seed, "explain-random-map")
    n, height, width = len(images), images.shape[-2], images.shape[-1]
    return torch.rand(n, height, width, generator=generator).to(images.device)


def edge_map(images: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of each channel, summed over channels, (N, H, W) (borders replicated,
    so the frame is no edge). Works on photos in any units: normalised inputs weigh each channel by
    its camera's spread, as the model sees it."""
    x = images.float()
    channels = x.shape[1]
    kernels = torch.stack([SOBEL_X, SOBEL_X.T]).to(x.device)[:, None].repeat(channels, 1, 1, 1)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gradients = F.conv2d(padded, kernels, groups=channels).unflatten(1, (channels, 2))
    return gradients.pow(2).sum(2).sqrt().sum(1)


__all__ = ["edge_map", "random_map"]
