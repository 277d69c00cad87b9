"""Noisy linear imputation (ROAD, Rong, Leemann et al. 2022): removed pixels are filled from their
neighbours, so that the shape of the removed region tells the model little.

Each removed pixel becomes the weighted mean of its eight neighbours (weight 1/6 for the four that
share an edge, 1/12 for the four diagonal ones, renormalised at the photo's border), removed
neighbours included: one sparse linear system per photo, solved exactly, then Gaussian noise of
standard deviation ``noise`` is added to the filled pixels. The weights and the noise follow the
authors' reference implementation (also pytorch-grad-cam's ``NoisyLinearImputer``). Here every photo
of a batch goes into one block-diagonal system, solved at once.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import spsolve

from rice_lab.errors import ConfigError

# (row offset, column offset) -> weight of that neighbour
NEIGHBOUR_WEIGHTS = {(1, 1): 1 / 12, (0, 1): 1 / 6, (-1, 1): 1 / 12, (1, -1): 1 / 12, (0, -1): 1 / 6,
                     (-1, -1): 1 / 12, (1, 0): 1 / 6, (-1, 0): 1 / 6}


def noisy_linear_imputation(images: torch.Tensor, remove: torch.Tensor, noise: float = 0.01,
                            generator: np.random.Generator | None = None) -> torch.Tensor:
    """``images`` (N, C, H, W) with the pixels where ``remove`` (N, H, W) is True imputed (a new tensor).

    ``noise``: standard deviation of the Gaussian noise added to imputed pixels, in the images' units;
    drawn from ``generator`` (a fresh default one if None).
    """
    if remove.shape != (images.shape[0], *images.shape[2:]):
        raise ConfigError(f"remove mask of shape {tuple(remove.shape)} for images of shape {tuple(images.shape)}: "
                          "expected (N, H, W)")
    n, channels, height, width = images.shape
    values = images.detach().permute(0, 2, 3, 1).reshape(-1, channels).cpu().double().numpy()
    missing = remove.detach().reshape(-1).cpu().numpy().astype(bool)
    unknown = np.flatnonzero(missing)
    if len(unknown) == 0:
        return images.clone()
    variable = np.full(len(missing), -1)
    variable[unknown] = np.arange(len(unknown))
    row, col = (unknown // width) % height, unknown % width
    rows, cols, weights = [], [], []
    rhs = np.zeros((len(unknown), channels))
    diagonal = np.zeros(len(unknown))
    for (d_row, d_col), weight in NEIGHBOUR_WEIGHTS.items():
        inside = (row + d_row >= 0) & (row + d_row < height) & (col + d_col >= 0) & (col + d_col < width)
        here, there = np.flatnonzero(inside), unknown[inside] + d_row * width + d_col
        diagonal[here] += weight
        known = ~missing[there]
        rhs[here[known]] += weight * values[there[known]]
        rows.append(here[~known])
        cols.append(variable[there[~known]])
        weights.append(np.full((~known).sum(), -weight))
    rows.append(np.arange(len(unknown)))
    cols.append(np.arange(len(unknown)))
    weights.append(diagonal)
    system = csc_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(len(unknown), len(unknown)))
    solution = spsolve(system, rhs).reshape(len(unknown), channels)
    generator = generator if generator is not None else np.random.default_rng()
    solution = solution + noise * generator.standard_normal(solution.shape)
    filled = values.copy()
    filled[unknown] = solution
    out = torch.from_numpy(filled).float().reshape(n, height, width, channels).permute(0, 3, 1, 2)
    return out.contiguous().to(images.device)


__all__ = ["NEIGHBOUR_WEIGHTS", "noisy_linear_imputation"]
