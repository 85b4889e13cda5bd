"""The gradient noise scale's estimator against exact numbers: a least-squares problem whose
per-example gradients are known, and the two-batch-size formulas inverted."""

from __future__ import annotations

import pytest
import torch

from mlpmnist.science.noise import estimate_noise_scale, noise_scale_from_norms


def _least_squares(n: int = 4000, p: int = 12, seed: int = 0):
    """A linear model with loss 0.5 (w.x - y)^2 away from its optimum: gradients are exact."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64) * torch.linspace(0.5, 2.0, p, dtype=torch.float64)
    y = x @ torch.randn(p, generator=g, dtype=torch.float64) + 0.7 * torch.randn(
        n, generator=g, dtype=torch.float64
    )
    w = torch.full((p,), 0.25, dtype=torch.float64)

    def chunk_grads(xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
        r = xc @ w - yc  # [k, b]
        return (r.unsqueeze(-1) * xc).mean(1)  # gradient of the mean loss per chunk

    per_example = (x @ w - y).unsqueeze(1) * x
    return x, y, chunk_grads, per_example


def exact_noise_scale(per_example_grads: torch.Tensor) -> tuple[float, float, float]:
    """(tr(Sigma), |G|^2, B_simple) exactly from all per-example gradients [N, P] (Sigma the
    population covariance, as batches drawn with replacement see it): the test's oracle."""
    g = per_example_grads.double()
    mean = g.mean(0)
    trace = float((g - mean).pow(2).sum(1).mean())
    grad_sq = float(mean.pow(2).sum())
    return trace, grad_sq, trace / grad_sq


def test_noise_scale_matches_exact_least_squares() -> None:
    x, y, chunk_grads, per_example = _least_squares()
    trace, grad_sq, b_simple = exact_noise_scale(per_example)
    assert 1 < b_simple < 1000  # a problem where both parts matter
    est = estimate_noise_scale(chunk_grads, x, y, 8, 128, 3000, torch.Generator().manual_seed(1))
    assert est.trace == pytest.approx(trace, rel=0.05)
    assert est.grad_sq == pytest.approx(grad_sq, rel=0.05)
    assert est.b_simple == pytest.approx(b_simple, rel=0.08)
    # The plain big-batch norm is biased upward by tr(Sigma)/B_big; the estimator removes it.
    assert est.g2_big == pytest.approx(grad_sq + trace / 128, rel=0.05)


def test_noise_scale_from_norms_inverts_the_model() -> None:
    trace, grad_sq = 37.0, 0.8
    for bs, bb in ((4, 64), (32, 1024)):
        g2s, g2b = grad_sq + trace / bs, grad_sq + trace / bb
        t, g, b = noise_scale_from_norms(g2s, g2b, bs, bb)
        assert (t, g, b) == pytest.approx((trace, grad_sq, trace / grad_sq))
    with pytest.raises(ValueError, match="b_small"):
        noise_scale_from_norms(1.0, 1.0, 64, 64)


def test_noise_scale_rejects_bad_batches() -> None:
    x, y, chunk_grads, _ = _least_squares(100, 3)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="multiple"):
        estimate_noise_scale(chunk_grads, x, y, 3, 10, 2, gen)
    with pytest.raises(ValueError, match="n_big"):
        estimate_noise_scale(chunk_grads, x, y, 2, 10, 0, gen)
