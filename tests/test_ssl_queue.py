"""The embedding queue, the prototypes (normalised, frozen at first) and the SwAV model's shapes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rice_lab.models import create_encoder
from rice_lab.ssl import EmbeddingQueue, Prototypes, SwAVModel, freeze_prototypes_grad_, queue_active
from rice_lab.ssl.loss import swav_loss


def test_queue_is_unused_until_full_then_fifo():
    queue = EmbeddingQueue(n_crops=2, size=6, dim=3)
    prototypes = F.normalize(torch.randn(4, 3), dim=1)
    assert queue.scores(prototypes) == [None, None]
    for value in (1.0, 2.0, 3.0):
        queue.push([torch.full((2, 3), value), torch.full((2, 3), -value)])
    assert queue.full
    # newest first, oldest dropped next
    assert queue.embeddings[0, :, 0].tolist() == [3, 3, 2, 2, 1, 1]
    assert queue.embeddings[1, :, 0].tolist() == [-3, -3, -2, -2, -1, -1]
    queue.push([torch.full((2, 3), 4.0), torch.full((2, 3), -4.0)])
    assert queue.embeddings[0, :, 0].tolist() == [4, 4, 3, 3, 2, 2]
    scores = queue.scores(prototypes)
    assert [s.shape for s in scores] == [(6, 4), (6, 4)]


def test_queue_state_round_trip():
    queue = EmbeddingQueue(2, 4, 3)
    queue.push([torch.randn(2, 3), torch.randn(2, 3)])
    copy = EmbeddingQueue(2, 0, 1)
    copy.load_state_dict(queue.state_dict())
    assert copy.filled == 2 and torch.equal(copy.embeddings, queue.embeddings)


def test_queue_starts_at_a_fraction_of_training():
    assert not queue_active(49, 100, 0.5) and queue_active(50, 100, 0.5)
    assert queue_active(0, 100, 0.0) and not queue_active(99, 100, 1.0)


def test_prototypes_are_unit_vectors_and_score_by_cosine():
    prototypes = Prototypes(dim=5, n_prototypes=9)
    torch.testing.assert_close(prototypes.weight.norm(dim=1), torch.ones(9))
    z = F.normalize(torch.randn(4, 5), dim=1)
    assert prototypes(z).abs().max() <= 1 + 1e-6


def test_frozen_prototypes_get_no_gradient_then_do():
    prototypes = Prototypes(dim=5, n_prototypes=4)
    z = [F.normalize(torch.randn(8, 5), dim=1) for _ in range(3)]
    grads = []
    for step in (0, 1, 2, 3):
        prototypes.zero_grad()
        swav_loss([prototypes(v) for v in z], n_large=2).backward()
        frozen = freeze_prototypes_grad_(prototypes, step, frozen_steps=2)
        grads.append(prototypes.weight.grad)
        assert frozen == (step < 2)
    assert grads[0] is None and grads[1] is None
    assert grads[2] is not None and grads[2].abs().sum() > 0


def test_swav_model_runs_crops_of_two_sizes():
    torch.manual_seed(0)
    model = SwAVModel(create_encoder("xresnet-tiny"), hidden=32, dim=16, n_prototypes=10)
    crops = [torch.randn(3, 3, 32, 32) for _ in range(2)] + [torch.randn(3, 3, 24, 24) for _ in range(4)]
    embeddings, scores = model(crops)
    assert embeddings.shape == (18, 16) and scores.shape == (18, 10)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(18))


def test_a_crop_0_queue_starts_as_random_unit_vectors_and_counts_as_full():
    from rice_lab.seeding import stream_generator

    queue = EmbeddingQueue.random_start(size=8, dim=5, generator=stream_generator(0, "queue-init", 0))
    again = EmbeddingQueue.random_start(size=8, dim=5, generator=stream_generator(0, "queue-init", 0))
    assert queue.full and queue.embeddings.shape == (1, 8, 5) and torch.equal(queue.embeddings, again.embeddings)
    torch.testing.assert_close(queue.embeddings[0].norm(dim=1), torch.ones(8))
    [scores] = queue.scores(F.normalize(torch.randn(3, 5), dim=1))
    assert scores.shape == (8, 3)
    queue.push([torch.full((2, 5), 7.0)])  # newest first, the random ones leave from the back
    assert queue.embeddings[0, :2].eq(7).all() and not queue.embeddings[0, 2:].eq(7).any()
