"""The reference engine: nn.Module + autograd + torch.optim, one replica after another.

It implements ``engine.Engine`` the textbook way, so the fast engine can be held to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mlpmnist.engine import rules
from mlpmnist.engine.base import Outputs, StateDict, Transform, gather_batch
from mlpmnist.model import MLP, activate


class ReferenceEngine:
    """R ``MLP`` replicas (their activation theirs), each with its own ``torch.optim`` optimizer
    (``rules.RULES``' oracle)."""

    def __init__(
        self,
        models: list[MLP],
        device: torch.device | str,
        *,
        optimizer: str = "sgd",
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        self.models = [m.to(device) for m in models]
        oracle = rules.rule(optimizer).oracle
        self.opts = [oracle(m.parameters(), momentum, weight_decay) for m in self.models]

    @property
    def n_replicas(self) -> int:
        return len(self.models)

    def steps(self, X: Tensor, idx: Tensor, y: Tensor, lr: Tensor, transform: Transform = None) -> Outputs:
        """``engine.Engine.steps``: step after step, replica after replica."""
        picked, pred = [], []
        for k in range(len(idx)):
            x = gather_batch(X, idx[k])
            x = x if transform is None else transform(x)
            for r, (model, opt) in enumerate(zip(self.models, self.opts, strict=True)):
                for group in opt.param_groups:
                    group["lr"] = lr[k, r].item()
                opt.zero_grad(set_to_none=True)
                logits = model(x[r])
                F.cross_entropy(logits, y[k, r]).backward()
                opt.step()
                picked.append(logits.detach().log_softmax(1).gather(1, y[k, r].unsqueeze(1)).squeeze(1))
                pred.append(logits.argmax(1))
        shape = (*idx.shape[:2], -1)
        return torch.stack(picked).view(shape), torch.stack(pred).view(shape)

    @torch.no_grad()
    def activations(self, x: Tensor) -> list[Tensor]:
        hs, acts = [x] * self.n_replicas, []
        for i in range(len(self.models[0].layers) - 1):
            hs = [activate(m.layers[i](h), m.activation) for m, h in zip(self.models, hs, strict=True)]
            acts.append(torch.stack(hs))
        return acts

    @torch.no_grad()
    def head(self, h: Tensor) -> Tensor:
        return torch.stack([m.layers[-1](x) for m, x in zip(self.models, h, strict=True)])

    def keep(self, mask: Tensor) -> None:
        idx = mask.nonzero().flatten().tolist()
        self.models = [self.models[i] for i in idx]
        self.opts = [self.opts[i] for i in idx]

    def state_dicts(self) -> list[StateDict]:
        return [{k: v.detach().cpu().clone() for k, v in m.state_dict().items()} for m in self.models]

    @torch.no_grad()
    def weight_norms(self) -> Tensor:
        """Frobenius norm of each layer's weight matrix (biases excluded), per replica: [R, L + 1]."""
        norms = [torch.stack([torch.linalg.norm(lin.weight) for lin in m.layers]) for m in self.models]
        return torch.stack(norms).cpu()
