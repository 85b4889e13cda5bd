"""Two interchangeable ways to take SGD steps for R replicas of the MLP.

``StackedEngine`` (the fast one) keeps every layer of all replicas as one [R, in, out] tensor
and writes the forward and backward pass out by hand with batched matmuls, so one Python-level
step serves all replicas and autograd's bookkeeping is skipped. ``ReferenceEngine`` is the
textbook loop (nn.Module, autograd, torch.optim.SGD), one replica at a time; it is the
yardstick the fast engine is tested against.

Both take the same inputs per step: ``x`` [R, B, 784], ``y`` [R, B] and ``lr`` (already
scheduled): a float shared by all replicas, or a tensor [R] of per-replica rates. They
return, before the update, the log-probability of the true class [R, B] and the predicted
class [R, B]; the caller sums these once per epoch, not once per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import MLP

StateDict = dict[str, torch.Tensor]


class StackedEngine:
    """Hand-written forward/backward over stacked replica weights."""

    def __init__(
        self,
        models: list[MLP],
        device: torch.device,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        layers = list(zip(*(m.layers for m in models)))
        # W[i]: [R, in, out] (nn.Linear stores [out, in]); b[i]: [R, 1, out] so it broadcasts.
        self.W = [torch.stack([lin.weight.detach().T for lin in ls]).contiguous().to(device) for ls in layers]
        self.b = [torch.stack([lin.bias.detach() for lin in ls]).unsqueeze(1).to(device) for ls in layers]
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.bufW = [torch.zeros_like(w) for w in self.W] if momentum else []
        self.bufb = [torch.zeros_like(b) for b in self.b] if momentum else []
        self._minus_one = torch.full((1, 1, 1), -1.0, device=device, dtype=self.W[0].dtype)
        self._ones: dict[tuple[int, int], torch.Tensor] = {}
        self._transpose()

    def _transpose(self) -> None:
        # Views stay valid while W is updated in place; rebuilt only when replicas are dropped.
        self.WT = [W.transpose(1, 2) for W in self.W]

    @property
    def n_replicas(self) -> int:
        return self.W[0].shape[0]

    def _ones_row(self, R: int, B: int) -> torch.Tensor:
        # [R, 1, B] of ones: the bias gradient sum over the batch as part of one baddbmm_.
        if (R, B) not in self._ones:
            self._ones[(R, B)] = torch.ones(R, 1, B, dtype=self.W[0].dtype, device=self.W[0].device)
        return self._ones[(R, B)]

    def step(
        self, x: torch.Tensor, y: torch.Tensor, lr: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        R, B = y.shape
        acts = [x]
        z = x
        last = len(self.W) - 1
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            z = torch.baddbmm(b, acts[i], W)
            if i < last:
                acts.append(z.relu_())
        y3 = y.unsqueeze(2)
        logp = torch.log_softmax(z, dim=2)
        picked = logp.gather(2, y3)
        pred = z.argmax(2)
        # d(mean CE)/dz = (softmax - onehot) / B, built in place over logp; 1/B goes into alpha.
        g = logp.exp_().scatter_add_(2, y3, self._minus_one.expand(R, B, 1))
        shared = not isinstance(lr, torch.Tensor)
        lr3 = lr if shared else lr.view(R, 1, 1)
        plain = not self.momentum
        # Plain SGD folds the lr into the update: into alpha when all replicas share it, else
        # into the top gradient (backprop is linear in it), so each update is one baddbmm_.
        alpha = -1.0 / B
        if plain and shared:
            alpha *= lr
        elif plain:
            g.mul_(lr3)
        ones = self._ones_row(R, B)
        for i in range(last, -1, -1):
            W, b, a = self.W[i], self.b[i], acts[i]
            g_prev = torch.bmm(g, self.WT[i]) if i else None
            if plain:
                if self.weight_decay:
                    decay = 1.0 - lr3 * self.weight_decay
                    W.mul_(decay)
                    b.mul_(decay)
                W.baddbmm_(a.transpose(1, 2), g, alpha=alpha)
                b.baddbmm_(ones, g, alpha=alpha)
            else:
                gW = torch.bmm(a.transpose(1, 2), g).mul_(-alpha)
                gb = torch.bmm(ones, g).mul_(-alpha)
                if self.weight_decay:
                    gW.add_(W, alpha=self.weight_decay)
                    gb.add_(b, alpha=self.weight_decay)
                # torch.optim.SGD: buf = momentum * buf + grad; p -= lr * buf
                self.bufW[i].mul_(self.momentum).add_(gW)
                self.bufb[i].mul_(self.momentum).add_(gb)
                if shared:
                    W.add_(self.bufW[i], alpha=-lr)
                    b.add_(self.bufb[i], alpha=-lr)
                else:
                    W.addcmul_(self.bufW[i], lr3, value=-1.0)
                    b.addcmul_(self.bufb[i], lr3, value=-1.0)
            if g_prev is not None:
                g = torch.ops.aten.threshold_backward(g_prev, a, 0.0)
        return picked.view(R, B), pred

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every hidden layer's activations (after ReLU) for shared inputs ``x`` [N, 784]:
        one [R, N, hidden_i] tensor per hidden layer."""
        R, (n, d) = self.n_replicas, x.shape
        # One GEMM for the widest layer: [N, 784] @ [784, R*64] instead of R expanded copies of x.
        W0 = self.W[0].permute(1, 0, 2).reshape(d, -1)
        h = (x @ W0).view(n, R, -1).transpose(0, 1).add_(self.b[0]).relu_()
        acts = [h]
        for W, b in zip(self.W[1:-1], self.b[1:-1], strict=True):
            acts.append(torch.baddbmm(b, acts[-1], W).relu_())
        return acts

    @torch.no_grad()
    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits [R, N, 10] from the last hidden layer's activations ``h`` [R, N, hidden]."""
        return torch.baddbmm(self.b[-1], h, self.W[-1])

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer's activations for shared inputs ``x`` [N, 784]: [R, N, hidden]."""
        return self.activations(x)[-1]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for shared inputs ``x`` [N, 784]: [R, N, 10]."""
        return self.head(self.hidden(x))

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the replicas where ``mask`` [R] is false (diverged ones)."""
        for ts in (self.W, self.b, self.bufW, self.bufb):
            ts[:] = [t[mask] for t in ts]
        self._transpose()

    def state_dicts(self) -> list[StateDict]:
        """Each replica's weights as an ``MLP`` state dict (CPU copies)."""
        return [
            {
                **{f"layers.{i}.weight": W[r].T.contiguous().cpu() for i, W in enumerate(self.W)},
                **{f"layers.{i}.bias": b[r, 0].cpu() for i, b in enumerate(self.b)},
            }
            for r in range(self.n_replicas)
        ]


class ReferenceEngine:
    """nn.Module + autograd + torch.optim.SGD, one replica after another."""

    def __init__(
        self,
        models: list[MLP],
        device: torch.device,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        self.models = [m.to(device) for m in models]
        self.opts = [
            torch.optim.SGD(m.parameters(), lr=0.0, momentum=momentum, weight_decay=weight_decay)
            for m in self.models
        ]

    @property
    def n_replicas(self) -> int:
        return len(self.models)

    def step(
        self, x: torch.Tensor, y: torch.Tensor, lr: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        picked, pred = [], []
        for r, (model, opt) in enumerate(zip(self.models, self.opts)):
            for group in opt.param_groups:
                group["lr"] = lr[r].item() if isinstance(lr, torch.Tensor) else lr
            logits = model(x[r])
            loss = F.cross_entropy(logits, y[r])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            logits = logits.detach()
            picked.append(logits.log_softmax(1).gather(1, y[r].unsqueeze(1)).squeeze(1))
            pred.append(logits.argmax(1))
        return torch.stack(picked), torch.stack(pred)

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        per_model = []
        for m in self.models:
            h, acts = x, []
            for layer in m.layers[:-1]:
                h = torch.relu(layer(h))
                acts.append(h)
            per_model.append(acts)
        return [torch.stack(layer) for layer in zip(*per_model, strict=True)]

    @torch.no_grad()
    def head(self, h: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.layers[-1](h[r]) for r, m in enumerate(self.models)])

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.activations(x)[-1]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(x))

    def keep(self, mask: torch.Tensor) -> None:
        idx = mask.nonzero().flatten().tolist()
        self.models = [self.models[i] for i in idx]
        self.opts = [self.opts[i] for i in idx]

    def state_dicts(self) -> list[StateDict]:
        return [{k: v.detach().cpu().clone() for k, v in m.state_dict().items()} for m in self.models]


ENGINES = {"fast": StackedEngine, "reference": ReferenceEngine}


@torch.no_grad()
def evaluate(
    engine: StackedEngine | ReferenceEngine, x: torch.Tensor, y: torch.Tensor, chunk: int = 10_000
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per replica on (``x``, ``y``): mean cross-entropy (nats) [R], accuracy (fraction in
    [0, 1]) [R], and the fraction of dead units of each hidden layer [R, L] (a unit is dead
    when its ReLU output is zero on every example of ``x``)."""
    R = engine.n_replicas
    loss = torch.zeros(R, dtype=torch.float64, device=x.device)
    correct = torch.zeros(R, dtype=torch.int64, device=x.device)
    alive: list[torch.Tensor] | None = None
    for start in range(0, len(y), chunk):
        xs, ys = x[start : start + chunk], y[start : start + chunk]
        acts = engine.activations(xs)
        z = engine.head(acts[-1])
        active = [a.amax(1) > 0 for a in acts]  # [R, h] per layer
        alive = active if alive is None else [p | q for p, q in zip(alive, active, strict=True)]
        target = ys.expand(z.shape[0], -1)
        loss += F.cross_entropy(z.transpose(1, 2), target, reduction="none").sum(1).double()
        correct += (z.argmax(2) == target).sum(1)
    assert alive is not None, "evaluate needs at least one example"
    dead = torch.stack([1.0 - a.float().mean(1) for a in alive], 1)
    return (loss / len(y)).float(), correct.double().div(len(y)).float(), dead


@torch.no_grad()
def weight_norms(engine: StackedEngine | ReferenceEngine) -> torch.Tensor:
    """Frobenius norm of each layer's weight matrix (biases excluded), per replica: [R, L + 1]."""
    return torch.stack(
        [
            torch.stack([sd[f"layers.{i}.weight"].norm() for i in range(len(sd) // 2)])
            for sd in engine.state_dicts()
        ]
    )
