"""The science's measurements on real MNIST: λ_max of the training loss, with scaled and centred
pixels, and per-chunk gradients for the noise scale."""

from __future__ import annotations

import math

import pytest
import torch

from mlpmnist import TrainConfig
from mlpmnist.model import MLP
from mlpmnist.science import hessian as hs
from mlpmnist.science.noise import mlp_chunk_grads


def test_lambda_max_on_mnist_is_positive_repeatable_and_sees_the_networks_inputs(mnist) -> None:
    x, y = mnist.train.x[:300], mnist.train.y[:300]
    sd = MLP(generator=torch.Generator().manual_seed(0)).state_dict()
    a = hs.lambda_max(sd, x, y, chunk_size=128, tol=1e-4, max_iter=300)
    b = hs.lambda_max(sd, x, y, chunk_size=128, tol=1e-4, max_iter=300)
    assert a.converged and math.isfinite(a.value) and a.value > 0
    assert a.value == b.value and a.iterations == b.iterations
    other = hs.lambda_max(sd, x, y, tol=1e-4, max_iter=300, seed=1)  # another start, the same answer
    assert other.value == pytest.approx(a.value, rel=1e-2)
    # Centred pixels remove the inputs' large mean, and with it most of the curvature.
    config = TrainConfig(inputs="centered", train_limit=2000)
    xc, yc = hs.sample_split(hs.network_inputs(config, mnist), 300)
    assert abs(xc.mean()) < 0.05 < abs(x.mean())
    centred = hs.lambda_max(sd, xc, yc, tol=1e-4, max_iter=300)
    assert 0 < centred.value < a.value / 5


def test_mlp_chunk_grads_match_autograd(mnist) -> None:
    model = MLP(generator=torch.Generator().manual_seed(3))
    x, y = mnist.train.x[:48].reshape(3, 16, -1), mnist.train.y[:48].reshape(3, 16)
    got = mlp_chunk_grads(model)(x, y)
    for k in range(3):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[k]), y[k]).backward()
        want = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(got[k], want, rtol=1e-4, atol=1e-6)
