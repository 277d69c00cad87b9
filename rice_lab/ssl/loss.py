"""The SwAV swapped-prediction loss: predict one crop's code from every other crop's scores."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from rice_lab.ssl.sinkhorn import sinkhorn


def swav_codes(scores: torch.Tensor, queue_scores: torch.Tensor | None = None, n_iters: int = 3,
               epsilon: float = 0.05) -> torch.Tensor:
    """Sinkhorn codes for one large crop's scores (batch, prototypes), optionally padded by a queue.

    The queue only enlarges the batch Sinkhorn balances over; its own rows are dropped.
    """
    if queue_scores is None or len(queue_scores) == 0:
        return sinkhorn(scores, n_iters, epsilon)
    codes = sinkhorn(torch.cat([queue_scores.to(scores.dtype), scores]), n_iters, epsilon)
    return codes[-len(scores):]


def swav_loss(scores: Sequence[torch.Tensor], n_large: int = 2, temperature: float = 0.1,
              queue_scores: Sequence[torch.Tensor | None] | None = None, n_iters: int = 3,
              epsilon: float = 0.05) -> torch.Tensor:
    """Swapped prediction over any number of crops; codes come only from the first ``n_large`` crops.

    ``scores[v]`` is (batch, prototypes): crop ``v``'s embeddings times the prototypes. For every
    large crop ``i`` its code ``q_i`` is the target for the softmax(scores / temperature) of every
    other crop; the cross-entropies are averaged over those crops and then over the large crops.
    """
    if len(scores) < 2 or not 1 <= n_large <= len(scores):
        raise ValueError(f"need at least 2 crops and 1 <= n_large <= crops; got {len(scores)} crops, "
                         f"n_large={n_large}")
    log_probs = [F.log_softmax(s.float() / temperature, dim=1) for s in scores]
    total = scores[0].new_zeros((), dtype=torch.float32)
    for i in range(n_large):
        queued = None if queue_scores is None else queue_scores[i]
        codes = swav_codes(scores[i], queued, n_iters, epsilon)
        others = [log_probs[v] for v in range(len(scores)) if v != i]
        total = total - sum((codes * lp).sum(dim=1).mean() for lp in others) / len(others)
    return total / n_large
