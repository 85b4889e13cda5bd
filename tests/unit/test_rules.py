"""The optimizer registry (engine/rules.py): one entry per optimizer serves both engines, an
unknown name is refused, and an optimizer registered later trains on the eager path, matching its
torch.optim oracle, while the fused kernel refuses it."""

from __future__ import annotations

import pytest
import torch

from mlpmnist import config
from mlpmnist.config import TrainConfig
from mlpmnist.engine import rules
from mlpmnist.engine.base import stack_params
from mlpmnist.engine.cuda import choice, fused
from mlpmnist.engine.reference import ReferenceEngine
from mlpmnist.engine.stacked import StackedEngine

from .replicas import max_diff, models, register_rmsprop, span

STUDY = (784, 64, 64, 10)


@pytest.fixture
def rmsprop(monkeypatch):
    """ "rmsprop" registered (``register_rmsprop``); call the fixture's value to register it again
    with other flags."""
    register_rmsprop(monkeypatch)
    return lambda **kw: register_rmsprop(monkeypatch, **kw)


def test_the_registry_and_the_config_name_the_same_optimizers():
    assert tuple(rules.RULES) == config.OPTIMIZERS


def test_an_unknown_optimizer_is_refused_by_every_engine():
    for make in (
        lambda: rules.rule("rmsprop"),
        lambda: StackedEngine(models(1), "cpu", optimizer="rmsprop"),
        lambda: ReferenceEngine(models(1), "cpu", optimizer="rmsprop"),
    ):
        with pytest.raises(ValueError, match=r"optimizer must be one of sgd, adam .*got 'rmsprop'"):
            make()
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adam; got 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_a_registered_optimizer_trains_and_matches_its_oracle_float64(rmsprop, weight_decay):
    """The config takes the new name, both engines build from it, and the stacked rule follows
    torch.optim.RMSprop to 1e-12 through steps and a dropped replica; and it trains: the same
    batch, seen 40 times, becomes likely."""
    cfg = TrainConfig(optimizer="rmsprop", weight_decay=weight_decay, dtype="float64")
    fast = StackedEngine(models(3), "cpu", optimizer=cfg.optimizer, weight_decay=cfg.weight_decay)
    ref = ReferenceEngine(models(3), "cpu", optimizer=cfg.optimizer, weight_decay=cfg.weight_decay)
    X, idx, y, lr = span(8, 3, 16, seed=2)
    lr = lr * 0.01
    for engine in (fast, ref):
        engine.steps(X, idx[:5], y[:5], lr[:5])
        engine.keep(torch.tensor([True, False, True]))
        engine.steps(X, idx[5:, [0, 2]], y[5:, [0, 2]], lr[5:, [0, 2]])
    assert max_diff(fast.state_dicts(), ref.state_dicts()) < 1e-12
    same = idx[:1, [0, 2]].expand(40, -1, -1)
    picked, _ = fast.steps(X, same, y[:1, [0, 2]].expand(40, -1, -1), torch.full((40, 2), 1e-3))
    # Mean log-probability of the true class: below -0.5 nats at first, above -0.2 after 40 steps.
    assert (picked[0].mean(1) < -0.5).all() and (picked[-1].mean(1) > -0.2).all()


def test_the_fused_kernel_refuses_a_registered_optimizer(rmsprop, monkeypatch):
    assert not fused.supports(STUDY, torch.float32, "rmsprop", "relu", 8)
    pick = [True, True, STUDY, torch.float32, "rmsprop", "relu", 8]
    assert choice.choose_path(*pick) == "graphs"
    rmsprop(recordable=False)  # a rule whose steps CUDA graphs cannot record
    assert choice.choose_path(*pick) == "eager"
    rmsprop()
    # fused_steps itself refuses it rather than train it as SGD.
    ms = models(2, hidden=(24, 20), n_in=48)
    params = stack_params(ms)
    X, idx, y, lr = span(2, 2, 8, n_in=48)
    with pytest.raises(ValueError, match="runs optimizers sgd and adam with activation relu; got 'rmsprop'"):
        fused.fused_steps(
            params, [], X, idx, y, lr, optimizer="rmsprop", activation="relu", momentum=0.0, weight_decay=0.0
        )
    # An engine where the kernel may run (here, the interpreter) steps it eagerly, launching nothing.
    launched = []
    monkeypatch.setattr(fused, "fused_steps", lambda *a, **k: launched.append(1))
    engine = StackedEngine(ms, "cpu", optimizer="rmsprop", use_fused=True)
    assert engine.path(8) == "eager"
    engine.steps(X, idx, y, lr)
    assert launched == [] and engine.checked == {}
