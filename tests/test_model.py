import math

import torch

from mlpmnist.model import MLP, n_parameters


def test_shapes_and_parameter_count():
    m = MLP()
    x = torch.zeros(7, 784)
    assert m(x).shape == (7, 10) and m.features(x).shape == (7, 64)
    assert n_parameters(m) == 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
    assert [layer.out_features for layer in m.layers] == [64, 64, 10]
    assert MLP(hidden=(32,)).features(x).shape == (7, 32)


def test_init_is_xavier_uniform_and_default_bias_and_seeded():
    a = MLP(generator=torch.Generator().manual_seed(3))
    b = MLP(generator=torch.Generator().manual_seed(3))
    c = MLP(generator=torch.Generator().manual_seed(4))
    for la, lb, lc in zip(a.layers, b.layers, c.layers, strict=True):
        assert torch.equal(la.weight, lb.weight) and not torch.equal(la.weight, lc.weight)
        fan_in, fan_out = la.in_features, la.out_features
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert la.weight.abs().max() <= bound and la.weight.abs().max() > 0.9 * bound
        # uniform on [-bound, bound]: variance bound^2 / 3
        assert abs(la.weight.var().item() / (bound**2 / 3) - 1) < 0.15
        assert la.bias.abs().max() <= 1 / math.sqrt(fan_in)


def test_features_are_the_last_hidden_relu():
    m = MLP(generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 784, generator=torch.Generator().manual_seed(1))
    h = m.features(x)
    assert (h >= 0).all()
    assert torch.allclose(m.layers[-1](h), m(x))
