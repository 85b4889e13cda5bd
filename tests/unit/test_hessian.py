"""lambda_max by power iteration on Hessian-vector products: against the exact Hessian of a tiny
MLP in float64, a dominant negative eigenvalue, chunking, and real MNIST."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad

from mlpmnist.model import MLP
from mlpmnist.science import hessian as hs


def _tiny(seed: int = 0, n: int = 40):
    """A 6-5-4-3 MLP's float64 parameters and a random 3-class problem of ``n`` examples."""
    g = torch.Generator().manual_seed(seed)
    model = MLP((5, 4), n_in=6, n_out=3, generator=g)
    _, params = hs.mlp_params(model, torch.float64)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return model, params, x, y


def _sgd(model, params, x, y, steps: int, lr: float = 0.5):
    """``steps`` full-batch gradient steps: a point away from the initialisation."""
    g = grad(lambda p: hs.mlp_loss(model, p, x, y))
    for _ in range(steps):
        params = {k: v - lr * d for k, v, d in zip(params, params.values(), g(params).values(), strict=True)}
    return params


def _exact_hessian(model, params, x, y, sign: float = 1.0) -> torch.Tensor:
    """The P x P Hessian of ``sign`` * mean cross-entropy by autograd over the flat parameters."""
    theta = hs.flatten(params)

    def f(t: torch.Tensor) -> torch.Tensor:
        return sign * hs.mlp_loss(model, hs.unflatten(t, params), x, y)

    return torch.autograd.functional.hessian(f, theta)


def test_hvp_matches_exact_hessian_times_vector() -> None:
    model, params, x, y = _tiny()
    params = _sgd(model, params, x, y, 5)
    H = _exact_hessian(model, params, x, y)
    matvec, dim = hs.mlp_hvp(params, x, y)
    assert dim == H.shape[0] == 74
    v = torch.randn(dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(matvec(v), H @ v, rtol=1e-10, atol=1e-12)
    assert (H @ v).abs().max() > 1e-3  # a product that could be wrong


def test_chunked_hvp_equals_unchunked() -> None:
    model, params, x, y = _tiny(seed=1, n=53)
    v = torch.randn(74, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    whole, _ = hs.mlp_hvp(params, x, y, chunk_size=1000)
    chunked, _ = hs.mlp_hvp(params, x, y, chunk_size=7)  # 7 chunks of 7 and one of 4
    torch.testing.assert_close(chunked(v), whole(v), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("steps", [0, 30])
def test_top_eigenvalue_matches_eigvalsh(steps: int) -> None:
    model, params, x, y = _tiny()
    params = _sgd(model, params, x, y, steps)
    exact = torch.linalg.eigvalsh(_exact_hessian(model, params, x, y))
    res = hs.lambda_max(params, x, y, tol=1e-12, max_iter=2000, dtype=torch.float64)
    assert res.converged and res.shift == 0.0
    assert res.value == pytest.approx(float(exact.max()), rel=1e-9)
    assert float(exact.max()) > 1.3 * float(exact.sort().values[-2])  # the runner-up would fail
    # The eigenvector: H v = lambda v.
    H = _exact_hessian(model, params, x, y)
    torch.testing.assert_close(H @ res.vector, res.value * res.vector, rtol=0, atol=1e-4)


def test_dominant_negative_eigenvalue_gives_the_largest_algebraic() -> None:
    # The Hessian of minus the loss: its most negative eigenvalue has the largest magnitude.
    model, params, x, y = _tiny()
    exact = torch.linalg.eigvalsh(_exact_hessian(model, params, x, y, sign=-1.0))
    assert -exact.min() > 2 * abs(exact.max()) > 0  # the dominant eigenvalue is negative
    fixed = {k: p.detach() for k, p in params.items()}

    def matvec(v: torch.Tensor) -> torch.Tensor:  # H v of minus the loss, on flat vectors
        return hs.flatten(hs.hvp(lambda p: -hs.mlp_loss(model, p, x, y), fixed, hs.unflatten(v, fixed)))

    res = hs.top_eigenvalue(matvec, 74, tol=1e-12, max_iter=2000, dtype=torch.float64)
    assert res.converged
    assert res.shift == pytest.approx(float(exact.min()), rel=1e-9)
    assert res.value == pytest.approx(float(exact.max()), rel=1e-6)


def test_top_eigenvalue_of_a_diagonal_operator() -> None:
    d = torch.tensor([-5.0, 3.0, 1.0, -1.0, 0.5], dtype=torch.float64)
    res = hs.top_eigenvalue(lambda v: d * v, 5, tol=1e-14, max_iter=10_000, dtype=torch.float64)
    assert res.value == pytest.approx(3.0, rel=1e-10)
    assert res.shift == pytest.approx(-5.0, rel=1e-10)
    assert abs(float(res.vector[1])) == pytest.approx(1.0, rel=1e-6)
    # All eigenvalues negative: the largest algebraic one is the one nearest zero.
    res = hs.top_eigenvalue(lambda v: -d.abs() * v, 5, tol=1e-14, max_iter=10_000, dtype=torch.float64)
    assert res.value == pytest.approx(-0.5, rel=1e-8)


def test_power_iteration_cap_and_false_convergence_are_reported() -> None:
    d = torch.tensor([2.0, 1.9, 0.1], dtype=torch.float64)
    res = hs.top_eigenvalue(lambda v: d * v, 3, tol=1e-15, max_iter=5, dtype=torch.float64)
    assert not res.converged and res.iterations == 5 and res.rel_change > 1e-15
    # +2 and -2: the Rayleigh quotient stops changing on a mixture; the residual shows it.
    d = torch.tensor([2.0, -2.0, 0.1], dtype=torch.float64)
    res = hs.top_eigenvalue(lambda v: d * v, 3, tol=1e-8, max_iter=100, dtype=torch.float64)
    assert res.residual > 0.1
