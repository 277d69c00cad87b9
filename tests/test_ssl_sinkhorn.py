"""sinkhorn(): balanced codes, equal to a float64 reference and to lightly's implementation."""

from __future__ import annotations

import pytest
import torch

from rice_lab.ssl.sinkhorn import sinkhorn


def reference_sinkhorn(scores: torch.Tensor, n_iters: int = 3, epsilon: float = 0.05) -> torch.Tensor:
    """The SwAV paper's algorithm written plainly, in float64."""
    q = torch.exp(scores.double() / epsilon).t()
    k, b = q.shape
    q /= q.sum()
    for _ in range(n_iters):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    return (q * b).t()


@pytest.fixture
def scores() -> torch.Tensor:
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    prototypes = torch.nn.functional.normalize(torch.randn(10, 8), dim=1)
    return z @ prototypes.t()  # cosine similarities, as in training


def test_rows_sum_to_one_and_shape(scores):
    codes = sinkhorn(scores)
    assert codes.shape == scores.shape
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(16))
    assert (codes >= 0).all()


def test_prototypes_used_about_equally(scores):
    usage = sinkhorn(scores, n_iters=50).sum(dim=0)
    torch.testing.assert_close(usage, torch.full((10,), 16 / 10), rtol=1e-3, atol=1e-3)


def test_equals_float64_reference(scores):
    torch.testing.assert_close(sinkhorn(scores).double(), reference_sinkhorn(scores), rtol=1e-5, atol=1e-6)


def test_equals_lightly(scores):
    from lightly.loss.swav_loss import sinkhorn as lightly_sinkhorn

    torch.testing.assert_close(sinkhorn(scores), lightly_sinkhorn(scores.clone()), rtol=1e-5, atol=1e-6)


def test_large_scores_stay_finite():
    scores = torch.tensor([[5.0, 4.0], [4.0, 5.0], [4.5, 4.5]])  # exp(5 / 0.05) overflows float32
    codes = sinkhorn(scores)
    assert torch.isfinite(codes).all()
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(codes.double(), reference_sinkhorn(scores - 5), rtol=1e-5, atol=1e-6)


def test_half_precision_input_gives_float32_codes(scores):
    codes = sinkhorn(scores.half())
    assert codes.dtype == torch.float32
    torch.testing.assert_close(codes, sinkhorn(scores.half().float()))


def test_no_gradient_flows(scores):
    scores = scores.clone().requires_grad_(True)
    assert not sinkhorn(scores).requires_grad


def test_rejects_wrong_shape():
    with pytest.raises(ValueError, match="batch, prototypes"):
        sinkhorn(torch.zeros(3))
