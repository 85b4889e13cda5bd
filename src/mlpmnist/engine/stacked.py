"""Engines: how R replicas of the MLP take their steps. Two implementations of one interface.

``StackedEngine`` (the fast one) keeps every layer of all replicas as one [R, in, out] tensor and
writes the gradient pass out by hand with batched matmuls, so one Python-level step serves all
replicas and autograd's bookkeeping is skipped; the update rule comes from ``optim`` and the CUDA
paths from ``graphs`` (many steps per graph launch) and ``fused`` (a whole span of steps in one
Triton kernel). ``ReferenceEngine`` (``reference.py``) is the textbook loop: nn.Module, autograd,
torch.optim, one replica at a time; the yardstick the fast engine is tested against.

Both implement ``Engine``: ``steps`` takes S steps on rows ``idx`` [S, R, B] of the training
images with labels ``y`` [S, R, B] and learning rates ``lr`` [S, R] (already scheduled), and
returns, from before each update, the log-probability of the true class and the predicted class,
each [S, R, B]; the caller sums these once per evaluation, not once per step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mlpmnist.engine.base import Engine, Outputs, StateDict, gather_batch
from mlpmnist.engine.cuda import graphs
from mlpmnist.engine.rules import stacked_rule
from mlpmnist.model import MLP


class _Workspace:
    """Buffers for one step shape (R replicas, B examples), reused by every step of that shape,
    so a step allocates only what it returns; the views it needs are made once here too."""

    def __init__(self, R: int, B: int, sizes: Sequence[int], like: torch.Tensor, classes_major: bool) -> None:
        def full(shape: tuple[int, ...], value: float | None = None) -> torch.Tensor:
            t = torch.empty(shape, dtype=like.dtype, device=like.device)
            return t if value is None else t.fill_(value)

        hidden, classes = sizes[1:-1], sizes[-1]
        # a[i] (i >= 1): layer i's input with a column of ones, [R, B, in_i + 1], so that one GEMM
        # with the [W; b] slab adds the bias and one updates W and b together; h[i] is the input
        # itself (the ReLU'd output of layer i - 1, written in place) and aT[i] a's transpose.
        unused = like.new_empty(0)  # index 0 is layer 0's, whose input is the batch itself
        self.a = [unused, *(full((R, B, h + 1), 1.0) for h in hidden)]
        self.h = [unused, *(a[..., :-1] for a in self.a[1:])]
        self.aT = [unused, *(a.transpose(1, 2) for a in self.a[1:])]
        self.z = [full((R, B, h)) for h in sizes[1:]]  # each layer's GEMM output; logits last
        # On a CPU, softmax over 10 classes is several times faster classes-major ([R, 10, B], the
        # batch innermost) than over the last dimension of [R, B, 10] (argmax is the other way
        # round), so the logits are copied classes-major for it; a GPU needs no copy.
        self.dim = 1 if classes_major else 2
        shape = (R, classes, B) if self.dim == 1 else (R, B, classes)
        self.zt = full(shape) if self.dim == 1 else self.z[-1]
        # log-softmax, then (softmax - onehot) in place: the top gradient, and its [R, B, 10] view.
        self.logp = full(shape)
        self.g = self.logp.transpose(1, 2) if self.dim == 1 else self.logp
        self.minus_one = full(shape[: self.dim] + (1,) + shape[self.dim + 1 :], -1.0)  # the one-hot
        self.g_in = [unused, *(full((R, B, h)) for h in hidden)]  # gradient w.r.t. layer i's input
        self.ones = full((R, 1, B), 1.0)  # layer 0's bias gradient (a sum over the batch) as a GEMM
        self.x = full((R, B, sizes[0]))  # the gathered batch, rewritten by every step of this shape


def _stack(outs: Sequence[Outputs]) -> Outputs:
    picked, pred = zip(*outs, strict=True)
    return torch.stack(picked), torch.stack(pred)


class StackedEngine:
    """Hand-written gradient pass over stacked replica weights; the update is ``optim``'s rule.

    ``W[i]`` [R, in, out] and ``b[i]`` [R, 1, out] are layer i's weights and biases; after the
    first layer they are views of one [R, in + 1, out] slab per layer, updated by one GEMM.
    On a CUDA device, ``steps`` runs a span as one fused Triton kernel where ``fused.supports``
    the configuration (``use_fused``), else as CUDA graphs of ``chunk_steps`` steps
    (``cuda_graphs``); a failed capture warns and falls back to eager steps.
    """

    def __init__(
        self,
        models: list[MLP],
        device: torch.device | str,
        *,
        optimizer: str = "sgd",
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        cuda_graphs: bool | None = None,
        use_fused: bool | None = None,
        chunk_steps: int = 32,
    ) -> None:
        device = torch.device(device)
        layers = list(zip(*(m.layers for m in models), strict=True))
        # W: [R, in, out] per layer (nn.Linear stores [out, in]); b: [R, 1, out] so it broadcasts.
        Ws = [torch.stack([lin.weight.detach().T for lin in ls]).to(device) for ls in layers]
        bs = [torch.stack([lin.bias.detach() for lin in ls]).unsqueeze(1).to(device) for ls in layers]
        self.sizes = [Ws[0].shape[1], *(W.shape[2] for W in Ws)]
        # What the rule updates: layer 0's W and b, then one [R, in + 1, out] slab [W; b] per later
        # layer (see _Workspace.a). Layer 0 stays apart: its input comes from the caller without
        # a ones column, and a view of a slab makes its large in-place update slower on a CPU.
        slabs = (torch.cat([W, b], 1) for W, b in zip(Ws[1:], bs[1:], strict=True))
        self._params = [Ws[0].contiguous(), bs[0], *slabs]
        self.optimizer, self.momentum, self.weight_decay = optimizer, momentum, weight_decay
        self.rule = stacked_rule(optimizer, self._params, momentum, weight_decay)
        cuda = device.type == "cuda"
        if cuda_graphs and not cuda:
            raise ValueError(f"cuda_graphs needs a CUDA device; got {device}")
        self.use_fused = (
            _fused_fits(device, self.sizes, self._params[0].dtype, optimizer)
            if use_fused is None
            else use_fused
        )
        record = cuda if cuda_graphs is None else cuda_graphs
        self.graphs = graphs.GraphRunner(self, chunk_steps) if record else None
        # Softmax layout (see _Workspace): classes-major pays on a CPU only.
        self.classes_major = device.type == "cpu"
        self._reset()

    def _reset(self) -> None:
        # Views, buffers and graphs hold on to the parameters; rebuilt when replicas are dropped.
        slabs = self._params[2:]
        self.W = [self._params[0], *(p[:, :-1] for p in slabs)]  # [R, in, out] per layer
        self.b = [self._params[1], *(p[:, -1:] for p in slabs)]  # [R, 1, out] per layer
        self.WT = [W.transpose(1, 2) for W in self.W]
        self._ws: dict[tuple[int, int], _Workspace] = {}
        self.rule.set_params(self._params)
        if self.graphs is not None:
            self.graphs.reset()

    @property
    def n_replicas(self) -> int:
        return self.W[0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.W[0].device

    def state(self) -> list[torch.Tensor]:
        """Every tensor a step changes: the parameters, then the rule's state."""
        return [*self._params, *self.rule.state()]

    def workspace(self, R: int, B: int) -> _Workspace:
        """The buffers of step shape (R, B), made on first use."""
        ws = self._ws.get((R, B))
        if ws is None:
            ws = self._ws[(R, B)] = _Workspace(R, B, self.sizes, self.W[0], self.classes_major)
        return ws

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float | torch.Tensor) -> Outputs:
        """One eager step on the batch ``x`` [R, B, 784] (any strides), ``y`` [R, B]; ``lr`` a
        float or [R]. Returns (log-probability of the true class [R, B], predicted class [R, B])."""
        return self.step_tensors(x, y, self._lr_column(lr))

    def _lr_column(self, lr: float | torch.Tensor) -> torch.Tensor:
        """``lr`` as a tensor [R, 1, 1] on the device."""
        t = lr if isinstance(lr, torch.Tensor) else torch.tensor(lr, dtype=self.W[0].dtype)
        t = t.to(self.device, self.W[0].dtype)
        return t.reshape(-1, 1, 1).expand(self.n_replicas, 1, 1)

    def step_tensors(self, x: torch.Tensor, y: torch.Tensor, lr3: torch.Tensor) -> Outputs:
        """``step`` with ``lr3`` a tensor [R, 1, 1]: the arithmetic every path records."""
        R, B = y.shape
        ws = self.workspace(R, B)
        last = len(self.W) - 1
        for i in range(last + 1):
            # GEMMs write contiguous outputs (faster than into a[i + 1]'s rows of in + 1 values);
            # the ReLU then writes a[i + 1].
            if i == 0:
                torch.baddbmm(self.b[0], x, self.W[0], out=ws.z[0])
            else:
                torch.bmm(ws.a[i], self._params[i + 1], out=ws.z[i])
            if i < last:
                torch.clamp_min(ws.z[i], 0.0, out=ws.h[i + 1])
        pred = ws.z[last].argmax(2)
        if ws.dim == 1:
            ws.zt.copy_(ws.z[last].transpose(1, 2))
        y_at = y.unsqueeze(ws.dim)
        logp = torch.log_softmax(ws.zt, ws.dim, out=ws.logp)
        picked = logp.gather(ws.dim, y_at)
        # d(mean CE)/dz = (softmax - onehot) / B, built in place over logp; 1/B goes to the rule.
        logp.exp_().scatter_add_(ws.dim, y_at, ws.minus_one)
        self._backward(x, ws, lr3)
        return picked.view(R, B), pred

    def _backward(self, x: torch.Tensor, ws: _Workspace, lr3: torch.Tensor) -> None:
        g = ws.g
        self.rule.begin_step()
        if self.rule.folds_lr:  # backprop is linear in g: every gradient below carries the lr
            g.mul_(lr3)
        for i in range(len(self.W) - 1, -1, -1):
            # The input gradient uses W before its update.
            g_in = torch.bmm(g, self.WT[i], out=ws.g_in[i]) if i else None
            # (index into _params, the left factor of that parameter's gradient left @ g / B)
            updates = [(i + 1, ws.aT[i])] if i else [(0, x.transpose(1, 2)), (1, ws.ones)]
            for k, left in updates:
                self.rule.update(k, left, g, 1.0 / g.shape[1], lr3)
            if g_in is not None:
                # ReLU's backward, in place: zero where the unit was off.
                g = torch.ops.aten.threshold_backward.grad_input(g_in, ws.h[i], 0.0, grad_input=g_in)

    def steps(
        self,
        X: torch.Tensor,
        idx: torch.Tensor,
        y: torch.Tensor,
        lr: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> Outputs:
        """S steps on rows ``idx`` [S, R, B] of ``X`` [N, 784], labels ``y`` [S, R, B], learning
        rates ``lr`` [S, R]. Returns
        (log-probability of the true class, predicted class), each [S, R, B]. ``transform``
        changes each gathered batch (then every step is eager)."""
        lr = lr.to(self.device, self.W[0].dtype)
        if transform is None and self.use_fused and idx.shape[2] <= self._fused().max_batch(self.W[0].dtype):
            fused = self._fused_steps(X, idx, y, lr.expand(len(idx), self.n_replicas))
            if fused is not None:  # None: the kernel did not compile here, CUDA graphs from now on
                return fused
        if transform is None and self.graphs is not None:
            recorded = self.graphs.steps(X, idx, y, lr)
            if recorded is not None:  # None: capture failed, graphs are off from now on
                return recorded
        out = []
        for k in range(len(idx)):
            x = gather_batch(X, idx[k], self.workspace(*idx.shape[1:]).x)
            out.append(
                self.step_tensors(x if transform is None else transform(x), y[k], lr[k].view(-1, 1, 1))
            )
        return _stack(out)

    @staticmethod
    def _fused() -> Any:
        from mlpmnist.engine.cuda import fused  # triton loads only where the fused path runs

        return fused

    def _fused_steps(
        self, X: torch.Tensor, idx: torch.Tensor, y: torch.Tensor, lr: torch.Tensor
    ) -> Outputs | None:
        """The span as one fused Triton kernel (``fused.fused_steps``): one launch, all steps.
        None, with a warning, when Triton cannot compile or fit the kernel on this GPU (it fails
        before the launch, so no weight has changed); the fused path is then off."""
        from triton.errors import TritonError

        try:
            out = self._fused().fused_steps(
                self._params,
                self.rule.buffers(),
                X,
                idx,
                y,
                lr,
                optimizer=self.optimizer,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                t0=self.rule.steps_taken(),
            )
        except TritonError as e:
            self.use_fused = False
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            warnings.warn(
                f"the fused Triton step does not run on {self.device} ({type(e).__name__}: {first_line}); "
                "training goes on with CUDA graphs",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        self.rule.advance(len(idx))
        return out

    # --- inference and bookkeeping -----------------------------------------------------------

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every hidden layer's activations (after ReLU) for shared inputs ``x`` [N, 784]:
        one [R, N, hidden_i] tensor per hidden layer."""
        R, (n, d) = self.n_replicas, x.shape
        if len(self.W) == 1:  # no hidden layer
            return []
        # One GEMM for the widest layer: [N, 784] @ [784, R*64] instead of R expanded copies of x.
        W0 = self.W[0].permute(1, 0, 2).reshape(d, -1)
        h = (x @ W0).view(n, R, -1).transpose(0, 1).add_(self.b[0]).relu_()
        acts = [h]
        for W, b in zip(self.W[1:-1], self.b[1:-1], strict=True):
            acts.append(torch.baddbmm(b, acts[-1], W).relu_())
        return acts

    @torch.no_grad()
    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits [R, N, 10] from the last hidden layer's activations ``h`` [R, N, hidden]
        (or from the inputs, for a network without hidden layers)."""
        if len(self.W) == 1:
            return torch.baddbmm(self.b[0], h.expand(self.n_replicas, -1, -1), self.W[0])
        return torch.baddbmm(self.b[-1], h, self.W[-1])

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the replicas where ``mask`` [R] is false (diverged or stopped ones)."""
        self._params = [p[mask] for p in self._params]
        self.rule.keep(mask)
        self._reset()

    def weight_norms(self) -> torch.Tensor:
        """Frobenius norm of each layer's weight matrix, per replica: [R, L + 1] (on the CPU)."""
        return torch.stack([W.flatten(1).norm(dim=1) for W in self.W], 1).cpu()

    def state_dicts(self) -> list[StateDict]:
        """Each replica's weights as an ``MLP`` state dict (CPU copies)."""
        # One device-to-host copy per layer; then each replica's own contiguous copies (a
        # snapshot must not alias the weights that training goes on updating in place).
        Ws = [W.cpu().transpose(1, 2) for W in self.W]
        bs = [b.cpu() for b in self.b]
        contiguous = torch.contiguous_format
        return [
            {
                **{f"layers.{i}.weight": W[r].clone(memory_format=contiguous) for i, W in enumerate(Ws)},
                **{f"layers.{i}.bias": b[r, 0].clone() for i, b in enumerate(bs)},
            }
            for r in range(self.n_replicas)
        ]


def _fused_fits(device: torch.device, sizes: list[int], dtype: torch.dtype, optimizer: str) -> bool:
    """Whether the fused kernel runs this engine's steps: on a CUDA device with triton, for the
    sizes, dtype and optimizer it handles (``fused.supports``); CUDA graphs otherwise."""
    if device.type != "cuda":
        return False
    from mlpmnist.engine.cuda import fused

    return fused.available(device) and fused.supports(sizes, dtype, optimizer)


def make_engine(
    kind: str, models: list[MLP], device: torch.device, optimizer: str, momentum: float, weight_decay: float
) -> Engine:
    """The engine ``kind`` (fast, reference) over ``models`` on ``device`` with the given rule."""
    from mlpmnist.engine.reference import ReferenceEngine

    if kind == "reference":
        return ReferenceEngine(
            models, device, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay
        )
    return StackedEngine(models, device, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay)
