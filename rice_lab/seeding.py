"""One seed, many named random streams: every random choice of a run is drawn from here.

A stream is named by what it drives ("sampler", "augment", ...) and keyed by integers (an epoch, a
step, a process rank). Its seed is a hash of the run seed, the name and the keys, so two different
(name, keys) never share a stream: ``stream_seed(s, "augment", 2, 7)`` and
``stream_seed(s, "augment", 2, 7, 0)`` differ, which numpy's ``SeedSequence([s, 2, 7])`` and
``SeedSequence([s, 2, 7, 0])`` did not (trailing zeros are ignored there).
"""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import torch

# The streams rice-lab draws from; a later stage adds its own names here, so none is used twice.
STREAMS = (
    "sampler",        # the order of the plants, keyed by epoch
    "augment",        # training crops and their augmentations, keyed by step and rank
    "valid-augment",  # validation crops, keyed by batch and rank: the same every epoch
    "queue-init",     # the random unit vectors a "crop-0" queue starts from, keyed by rank
    "finetune-augment",  # fine-tuning's photo flips, keyed by step
    "labels-subset",  # which training plants keep their labels (labels_fraction < 1)
    "photo-split",    # the leakage lesson: which photo of each validation plant validates
    "shuffled-labels",  # the data-randomisation check: how the training plants' labels are permuted
    "explain-noise",  # attribution methods' own noise (SmoothGrad, VarGrad, GradientSHAP)
    "explain-random-map",  # the random baseline map
    "explain-road",   # ROAD's imputation noise, keyed by the percentage removed
    "explain-perturb",  # infidelity's and max-sensitivity's input perturbations
    "explain-randomise",  # the sanity checks' re-initialised weights, keyed by the step
    "explain-concepts",  # which photos and windows give concept and random patches, keyed by concept
    "explain-tcav",   # the concept classifiers' splits and SGD order, keyed by the fit
    "explain-sample",  # which plants a report explains
)


def stream_seed(seed: int, stream: str, *keys: int) -> int:
    """A 63-bit seed for stream ``stream`` at ``keys``, derived from the run seed."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; add it to rice_lab.seeding.STREAMS "
                         f"(known: {', '.join(STREAMS)})")
    text = json.dumps([int(seed), stream, *(int(k) for k in keys)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def stream_generator(seed: int, stream: str, *keys: int) -> torch.Generator:
    """A CPU torch generator seeded by :func:`stream_seed`."""
    return torch.Generator().manual_seed(stream_seed(seed, stream, *keys))


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (weight initialisation draws from these)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


__all__ = ["STREAMS", "seed_everything", "stream_generator", "stream_seed"]
