"""swav_loss(): swapped prediction over many crops, matching lightly, and learnable on a toy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rice_lab.ssl.loss import swav_codes, swav_loss
from rice_lab.ssl.sinkhorn import sinkhorn


def crop_scores(n_crops: int, batch: int = 12, k: int = 7, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    prototypes = F.normalize(torch.randn(k, 5, generator=g), dim=1)
    return [F.normalize(torch.randn(batch, 5, generator=g), dim=1) @ prototypes.t() for _ in range(n_crops)]


def test_finite_and_positive():
    loss = swav_loss(crop_scores(8), n_large=2)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0


@pytest.mark.parametrize("n_large,n_small", [(2, 0), (2, 6), (1, 3)])
def test_equals_lightly(n_large, n_small):
    from lightly.loss import SwaVLoss

    scores = crop_scores(n_large + n_small)
    ours = swav_loss(scores, n_large=n_large, temperature=0.1)
    theirs = SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)(
        scores[:n_large], scores[n_large:])
    torch.testing.assert_close(ours, theirs.squeeze())


def test_equals_lightly_with_queue():
    from lightly.loss import SwaVLoss

    scores, queue = crop_scores(4), crop_scores(2, batch=24, seed=1)
    ours = swav_loss(scores, n_large=2, queue_scores=queue)
    theirs = SwaVLoss()(scores[:2], scores[2:], queue_outputs=queue)  # (it puts the queue last)
    torch.testing.assert_close(ours, theirs.squeeze())


def test_codes_with_queue_are_the_batch_rows():
    scores, queue = crop_scores(1)[0], crop_scores(1, batch=30, seed=2)[0]
    codes = swav_codes(scores, queue)
    assert codes.shape == scores.shape
    torch.testing.assert_close(codes, sinkhorn(torch.cat([queue, scores]))[-12:])
    torch.testing.assert_close(swav_codes(scores, None), sinkhorn(scores))


def test_gradient_reaches_scores_but_not_through_codes():
    scores = [s.clone().requires_grad_(True) for s in crop_scores(3)]
    swav_loss(scores, n_large=1).backward()
    # crop 0 is the only large crop: it only provides the target (a constant), so no gradient
    assert scores[0].grad is None
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in scores[1:])


def test_bad_crop_counts():
    with pytest.raises(ValueError, match="n_large"):
        swav_loss(crop_scores(2), n_large=3)
    with pytest.raises(ValueError, match="at least 2 crops"):
        swav_loss(crop_scores(1), n_large=1)


def test_loss_decreases_on_a_toy():
    """Two noisy views of 64 points: a linear encoder + prototypes learn to agree on codes."""
    torch.manual_seed(0)
    points = torch.randn(64, 10)
    encoder = torch.nn.Linear(10, 8)
    prototypes = torch.nn.Parameter(F.normalize(torch.randn(6, 8), dim=1))
    opt = torch.optim.Adam([*encoder.parameters(), prototypes], lr=0.05)
    losses = []
    for _ in range(60):
        views = [points + 0.1 * torch.randn_like(points) for _ in range(4)]
        scores = [F.normalize(encoder(v), dim=1) @ F.normalize(prototypes, dim=1).t() for v in views]
        loss = swav_loss(scores, n_large=2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1
