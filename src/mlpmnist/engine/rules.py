"""Update rules: one class per optimizer (``RULES``), its rule for the stacked engine and, as its
``oracle``, the ``torch.optim`` optimizer that the reference engine runs and the tests hold the rule to;
adding an optimizer takes its class here and its name in ``config.OPTIMIZERS``. A stacked rule gets each
[R, in, out] gradient as a product ``left @ g`` (``left`` [R, in, B], ``g`` [R, B, out], scaled by
1 / B), so it need not materialise it (plain SGD: one in-place GEMM), and the lr as [R, 1, 1].
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

#: torch.optim.Adam's defaults, used by both engines.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class StackedRule:
    """An update rule of the stacked engine over ``params`` (the engine sets them anew when it rebuilds
    them); by default no step count, and per-parameter state in the lists ``per_param`` names."""

    #: True when the rule wants the learning rate folded into the top gradient (plain SGD).
    folds_lr = False
    per_param: tuple[str, ...] = ()
    #: CUDA graphs can record its steps (no value read back to the host).
    recordable = True
    #: The steps taken, a 0-d tensor (so recorded steps count too), for a rule that needs them (Adam).
    t: Tensor | None = None

    def __init__(self, params: Sequence[Tensor], momentum: float, weight_decay: float) -> None:
        self.params = list(params)

    @staticmethod
    def oracle(params: Iterable[Tensor], momentum: float, weight_decay: float) -> torch.optim.Optimizer:
        """Its ``torch.optim`` optimizer (lr 0, set per step)."""
        raise NotImplementedError

    def begin_step(self) -> None:
        """Called once before a step's updates (Adam counts its steps here)."""

    def update(self, k: int, left: Tensor, g: Tensor, inv_b: float, lr: Tensor) -> None:
        """Update parameter ``k`` by its gradient ``inv_b * left @ g`` at learning rates ``lr``."""
        raise NotImplementedError

    def keep(self, mask: Tensor) -> None:
        """Keep the state of the replicas where ``mask`` [R] is true."""
        for name in self.per_param:
            setattr(self, name, [t[mask] for t in getattr(self, name)])

    def buffers(self) -> list[Tensor]:
        """The per-parameter state (momentum buffers; Adam's m then v), what a fused kernel updates."""
        return []

    def state(self) -> list[Tensor]:
        """Every state tensor a step changes: ``buffers``, then the step count ``t`` if it keeps one."""
        return self.buffers() if self.t is None else [*self.buffers(), self.t]


class SGD(StackedRule):
    """``torch.optim.SGD``: G = grad + wd * p; without momentum p -= lr * G, with it
    buf = momentum * buf + G and p -= lr * buf (zero buffers make the first step buf = G)."""

    per_param = ("bufs",)

    def __init__(self, params: Sequence[Tensor], momentum: float, weight_decay: float) -> None:
        super().__init__(params, momentum, weight_decay)
        self.momentum, self.weight_decay = momentum, weight_decay
        self.folds_lr = not momentum
        self.bufs = [torch.zeros_like(p) for p in params] if momentum else []

    @staticmethod
    def oracle(params: Iterable[Tensor], momentum: float, weight_decay: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=0.0, momentum=momentum, weight_decay=weight_decay)

    def update(self, k: int, left: Tensor, g: Tensor, inv_b: float, lr: Tensor) -> None:
        p = self.params[k]
        if self.folds_lr:  # g already carries the lr (backprop is linear in it): one GEMM
            if self.weight_decay:
                p.mul_(1.0 - lr * self.weight_decay)
            p.baddbmm_(left, g, alpha=-inv_b)
            return
        buf = self.bufs[k]
        buf.baddbmm_(left, g, beta=self.momentum, alpha=inv_b)  # momentum * buf + grad in one GEMM
        if self.weight_decay:
            buf.add_(p, alpha=self.weight_decay)
        p.addcmul_(buf, lr, value=-1.0)

    def buffers(self) -> list[Tensor]:
        return list(self.bufs)


class Adam(StackedRule):
    """``torch.optim.Adam`` (no amsgrad): G = grad + wd * p; m = b1 m + (1 - b1) G;
    v = b2 v + (1 - b2) G^2; p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""

    per_param = ("m", "v", "scratch")
    t: Tensor

    def __init__(self, params: Sequence[Tensor], momentum: float, weight_decay: float) -> None:
        super().__init__(params, momentum, weight_decay)  # momentum is SGD's (the config refuses it)
        self.weight_decay = weight_decay
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.scratch = [torch.empty_like(p) for p in params]
        self.t = params[0].new_zeros(())
        self._bc1 = torch.ones_like(self.t)
        self._bc2_sqrt = torch.ones_like(self.t)

    @staticmethod
    def oracle(params: Iterable[Tensor], momentum: float, weight_decay: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=0.0, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=weight_decay)

    def begin_step(self) -> None:
        b1, b2 = ADAM_BETAS
        self.t.add_(1)
        torch.pow(b1, self.t, out=self._bc1).neg_().add_(1)
        torch.pow(b2, self.t, out=self._bc2_sqrt).neg_().add_(1).sqrt_()

    def update(self, k: int, left: Tensor, g: Tensor, inv_b: float, lr: Tensor) -> None:
        b1, b2 = ADAM_BETAS
        p, m, v, d = self.params[k], self.m[k], self.v[k], self.scratch[k]
        torch.baddbmm(d, left, g, beta=0.0, alpha=inv_b, out=d)  # the gradient
        if self.weight_decay:
            d.add_(p, alpha=self.weight_decay)
        m.lerp_(d, 1.0 - b1)
        v.mul_(b2).addcmul_(d, d, value=1.0 - b2)
        torch.sqrt(v, out=d).div_(self._bc2_sqrt).add_(ADAM_EPS)  # the denominator, reusing d
        torch.div(m, d, out=d)
        p.addcmul_(d, lr / self._bc1, value=-1.0)

    def buffers(self) -> list[Tensor]:
        return [*self.m, *self.v]


#: Every optimizer by its config name (``config.OPTIMIZERS`` lists the same names).
RULES: dict[str, type[StackedRule]] = {"sgd": SGD, "adam": Adam}


def rule(name: str) -> type[StackedRule]:
    """The rule of optimizer ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in RULES:
        raise ValueError(f"optimizer must be one of {', '.join(RULES)} (engine/rules.py); got {name!r}")
    return RULES[name]
