import math

import pytest
import torch

from mlpmnist.config import ACTIVATIONS, FIELDS, TrainConfig
from mlpmnist.model import LEAKY_SLOPE, MLP


def test_shapes_and_parameter_count():
    m = MLP()
    x = torch.zeros(7, 784)
    assert m(x).shape == (7, 10) and m.features(x).shape == (7, 64)
    assert sum(p.numel() for p in m.parameters()) == 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
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


def test_leaky_relu_units_keep_a_slope_below_zero():
    g = torch.Generator().manual_seed(0)
    relu = MLP(generator=torch.Generator().manual_seed(0))
    leaky = MLP(generator=torch.Generator().manual_seed(0), activation="leaky_relu")
    x = torch.randn(5, 784, generator=g)
    h = leaky.layers[0](x)
    expected = leaky.layers[1](torch.where(h > 0, h, LEAKY_SLOPE * h))
    expected = torch.where(expected > 0, expected, LEAKY_SLOPE * expected)
    assert torch.allclose(leaky.features(x), expected, atol=1e-6) and (leaky.features(x) < 0).any()
    assert torch.equal(relu.features(x), torch.relu(relu.layers[1](torch.relu(relu.layers[0](x)))))
    assert leaky.activation == "leaky_relu" and relu.activation == "relu"
    again = MLP.from_state_dict(leaky.state_dict(), activation="leaky_relu")
    assert again.activation == "leaky_relu" and torch.equal(again(x), leaky.eval()(x))


def test_every_configured_activation_builds_and_others_are_refused():
    for name in ACTIVATIONS:
        assert MLP(activation=name).activation == name
    with pytest.raises(ValueError, match="activation must be one of relu, leaky_relu; got 'tanh'"):
        MLP(activation="tanh")
    with pytest.raises(ValueError, match="activation must be one of"):
        TrainConfig(activation="tanh")


def test_the_activation_field_keeps_every_stored_key():
    """At its baseline (relu) the field stays out of the key: a default config's key is the one
    stores written before the field existed hold (commit 84f6b6f); leaky_relu makes another."""
    default = "bs0090-lr0.1-e15-s10-cc2492222c805e69"
    assert TrainConfig().key() == TrainConfig(activation="relu").key() == default
    assert TrainConfig(activation="relu").legacy_key() == "bs0090-lr0.1-e15-s10-cc249222"
    assert TrainConfig(activation="leaky_relu").key() != TrainConfig().key()
    assert f"slope {LEAKY_SLOPE:g}" in FIELDS["activation"].metadata["help"]
