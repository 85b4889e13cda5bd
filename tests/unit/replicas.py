"""Shared by the engine tests: seeded replicas, random batches and the textbook training loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlpmnist import config
from mlpmnist.engine import rules
from mlpmnist.engine.rules import rule
from mlpmnist.model import MLP

#: Optimizer settings the tests run (StackedEngine / ReferenceEngine keywords).
SETTINGS = {
    "sgd": {},
    "momentum": {"momentum": 0.9, "weight_decay": 5e-4},
    "adam": {"optimizer": "adam", "weight_decay": 1e-3},
}


def models(
    n: int, dtype: torch.dtype = torch.float64, hidden: tuple[int, ...] = (64, 64), n_in: int = 784, **kw
) -> list[MLP]:
    """``n`` MLPs seeded 0..n-1 (``kw``: n_out, activation)."""
    gens = [torch.Generator().manual_seed(s) for s in range(n)]
    return [MLP(hidden, n_in, generator=g, **kw).to(dtype) for g in gens]


def batches(steps: int, R: int, B: int, dtype: torch.dtype = torch.float64, seed: int = 0):
    """``steps`` (x [R, B, 784] in [-1, 1], y [R, B]) pairs."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.rand(R, B, 784, generator=g, dtype=dtype) * 2 - 1, torch.randint(10, (R, B), generator=g))
        for _ in range(steps)
    ]


def span(S: int, R: int, B: int, n: int = 300, seed: int = 5, n_in: int = 784, dtype=torch.float64):
    """(X [n, n_in], idx [S, R, B], y [S, R, B], lr [S, R]): what ``Engine.steps`` takes."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, n_in, generator=g, dtype=dtype) * 2 - 1
    idx, y = torch.randint(n, (S, R, B), generator=g), torch.randint(10, (S, R, B), generator=g)
    return X, idx, y, torch.rand(S, R, generator=g, dtype=dtype) * 0.1


def max_diff(a: list[dict], b: list[dict]) -> float:
    """The largest difference between two lists of state dicts."""
    return max((x[k] - y[k]).abs().max().item() for x, y in zip(a, b, strict=True) for k in x)


def lr_tensor(lr, R: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A float or [R] learning rate as [R, 1, 1]."""
    return torch.as_tensor(lr, dtype=dtype).reshape(-1, 1, 1).expand(R, 1, 1)


def engine_steps(engine, data, lrs):
    """One ``step_tensors`` per (x, y) of ``data``: (picked, preds) per step."""
    out = [
        engine.step_tensors(x, y, lr_tensor(lr, len(y), x.dtype))
        for (x, y), lr in zip(data, lrs, strict=True)
    ]
    return [p for p, _ in out], [a for _, a in out]


def autograd_steps(ms: list[MLP], data, lrs, momentum=0.0, weight_decay=0.0, optimizer="sgd"):
    """The textbook loop per replica: (weights after the steps, per-step picked log-probs, preds)."""
    opts = [rule(optimizer).oracle(m.parameters(), momentum, weight_decay) for m in ms]
    picked, preds = [], []
    for (x, y), lr in zip(data, lrs, strict=True):
        step_p, step_a = [], []
        for r, (m, opt) in enumerate(zip(ms, opts, strict=True)):
            opt.param_groups[0]["lr"] = float(lr[r]) if isinstance(lr, torch.Tensor) else lr
            z = m(x[r])
            opt.zero_grad()
            F.cross_entropy(z, y[r]).backward()
            opt.step()
            step_p.append(z.detach().log_softmax(1).gather(1, y[r, :, None])[:, 0])
            step_a.append(z.detach().argmax(1))
        picked.append(torch.stack(step_p))
        preds.append(torch.stack(step_a))
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in ms], picked, preds


# An optimizer the package does not have, written as adding one takes (tests register it).
ALPHA, EPS = 0.99, 1e-8  # torch.optim.RMSprop's defaults


class RMSprop(rules.StackedRule):
    """``torch.optim.RMSprop`` (no momentum, not centered) as a stacked rule: G = grad + wd * p;
    v = alpha * v + (1 - alpha) * G^2; p -= lr * G / (sqrt(v) + eps)."""

    per_param = ("v", "scratch")

    def __init__(self, params, momentum: float, weight_decay: float) -> None:
        super().__init__(params, momentum, weight_decay)
        self.weight_decay = weight_decay
        self.v = [torch.zeros_like(p) for p in params]
        self.scratch = [torch.empty_like(p) for p in params]

    def update(self, k, left, g, inv_b, lr) -> None:
        p, v, d = self.params[k], self.v[k], self.scratch[k]
        torch.baddbmm(d, left, g, beta=0.0, alpha=inv_b, out=d)  # the gradient
        if self.weight_decay:
            d.add_(p, alpha=self.weight_decay)
        v.mul_(ALPHA).addcmul_(d, d, value=1 - ALPHA)
        p.addcmul_(d / v.sqrt().add_(EPS), lr, value=-1.0)

    def buffers(self) -> list[torch.Tensor]:
        return list(self.v)

    @staticmethod
    def oracle(params, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
        return torch.optim.RMSprop(params, lr=0.0, alpha=ALPHA, eps=EPS, weight_decay=weight_decay)


def register_rmsprop(monkeypatch, recordable: bool = True) -> None:
    """Registers "rmsprop" for one test, as adding an optimizer does: its rule in rules.RULES and
    its name in config.OPTIMIZERS."""
    monkeypatch.setitem(rules.RULES, "rmsprop", type("RMSprop", (RMSprop,), {"recordable": recordable}))
    if "rmsprop" not in config.OPTIMIZERS:
        monkeypatch.setattr(config, "OPTIMIZERS", (*config.OPTIMIZERS, "rmsprop"))
