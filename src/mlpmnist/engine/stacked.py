"""The stacked engine: R replicas of the MLP stepped together, the gradient pass written by hand.
Every layer of all replicas is one [R, in, out] tensor and the backward pass batched matmuls, with no
autograd bookkeeping; the update rule comes from ``rules``. ``ReferenceEngine`` is its yardstick."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mlpmnist.engine import rules
from mlpmnist.engine.base import Outputs, StateDict, Transform, gather_batch, stack_params
from mlpmnist.engine.cuda import choice, fused, graphs
from mlpmnist.model import LEAKY_SLOPE, MLP, activate


class _Workspace:
    """Buffers for one step shape (R replicas, B examples), reused by every step of that shape,
    so a step allocates only what it returns; the views it needs are made once here too."""

    def __init__(self, R: int, B: int, sizes: Sequence[int], like: Tensor, classes_major: bool) -> None:
        hidden, classes = sizes[1:-1], sizes[-1]
        # a[i] (i >= 1): layer i's input with a column of ones, [R, B, in_i + 1], so that one GEMM
        # with the [W; b] slab adds the bias and one updates W and b together; h[i] is the input
        # itself (the ReLU'd output of layer i - 1, written in place) and aT[i] a's transpose.
        unused = like.new_empty(0)  # index 0 is layer 0's, whose input is the batch itself
        self.a = [unused, *(like.new_full((R, B, h + 1), 1.0) for h in hidden)]
        self.h = [unused, *(a[..., :-1] for a in self.a[1:])]
        self.aT = [unused, *(a.transpose(1, 2) for a in self.a[1:])]
        self.z = [like.new_empty((R, B, h)) for h in sizes[1:]]  # each layer's GEMM output; logits last
        # On a CPU, softmax over 10 classes is several times faster classes-major ([R, 10, B], the
        # batch innermost) than over the last dimension of [R, B, 10] (argmax is the other way
        # round), so the logits are copied classes-major for it; a GPU needs no copy.
        self.dim = 1 if classes_major else 2
        shape = (R, classes, B) if self.dim == 1 else (R, B, classes)
        self.zt = like.new_empty(shape) if self.dim == 1 else self.z[-1]
        # log-softmax, then (softmax - onehot) in place: the top gradient, and its [R, B, 10] view.
        self.logp = like.new_empty(shape)
        self.g = self.logp.transpose(1, 2) if self.dim == 1 else self.logp
        self.minus_one = like.new_full(shape[: self.dim] + (1,) + shape[self.dim + 1 :], -1.0)  # the one-hot
        self.g_in = [unused, *(like.new_empty((R, B, h)) for h in hidden)]  # gradient w.r.t. layer i's input
        self.ones = like.new_full((R, 1, B), 1.0)  # layer 0's bias gradient (a sum over the batch) as a GEMM
        self.x = like.new_empty((R, B, sizes[0]))  # the gathered batch, rewritten by every step of this shape


def _cat(outs: Sequence[Outputs]) -> Outputs:
    picked, pred = zip(*outs, strict=True)
    return torch.cat(picked), torch.cat(pred)


class StackedEngine:
    """``W[i]`` [R, in, out] and ``b[i]`` [R, 1, out]: layer i's weights and biases (after the first
    layer, views of one [R, in + 1, out] slab updated by one GEMM); the replicas share one ``activation``.
    ``steps`` runs a span on the path ``choice.choose_path`` picks: the fused kernel (``use_fused``;
    default: on a CUDA device with triton), CUDA graphs of ``chunk_steps`` steps (``cuda_graphs``;
    default: on a CUDA device), else eager steps. A faster path's first ``check_steps`` steps are
    checked against eager ones (``choice``; 0: no check); a path that fails to compile, capture or
    pass its check warns once and is off for this engine from then on."""

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
        check_steps: int = choice.CHECK_STEPS,
    ) -> None:
        device = torch.device(device)
        self._params = [p.to(device) for p in stack_params(models)]  # what the rule updates
        self.sizes = [*self._params[0].shape[1:], *(p.shape[2] for p in self._params[2:])]
        activations = sorted({m.activation for m in models})
        if len(activations) != 1:
            raise ValueError(f"the replicas of an engine share one activation; got {activations}")
        self.activation, self.optimizer = activations[0], optimizer
        # What the fused kernel is told (it refuses what it does not declare).
        self.hyper: dict[str, Any] = dict(
            optimizer=optimizer, activation=self.activation, momentum=momentum, weight_decay=weight_decay
        )
        self.rule = rules.rule(optimizer)(self._params, momentum, weight_decay)
        cuda = device.type == "cuda"
        if cuda_graphs and not cuda:
            raise ValueError(f"cuda_graphs needs a CUDA device; got {device}")
        self.use_fused = (cuda and fused.available(device)) if use_fused is None else use_fused
        record = cuda if cuda_graphs is None else cuda_graphs
        self.graphs = graphs.GraphRunner(self, chunk_steps) if record else None
        self.check_steps = check_steps
        self.checked: dict[str, list[float]] = {}  # per faster path checked: each chunk's disagreement
        self.classes_major = device.type == "cpu"  # the softmax layout that pays here (see _Workspace)
        self._reset()

    def _reset(self) -> None:
        # Views, buffers and graphs hold on to the parameters; rebuilt when replicas are dropped.
        slabs = self._params[2:]
        self.W = [self._params[0], *(p[:, :-1] for p in slabs)]  # [R, in, out] per layer
        self.b = [self._params[1], *(p[:, -1:] for p in slabs)]  # [R, 1, out] per layer
        self.WT = [W.transpose(1, 2) for W in self.W]
        self._ws: dict[tuple[int, int], _Workspace] = {}
        self.rule.params = list(self._params)
        if self.graphs is not None:
            self.graphs.reset()

    @property
    def n_replicas(self) -> int:
        return self.W[0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.W[0].device

    def state(self) -> list[Tensor]:
        """Every tensor a step changes: the parameters, then the rule's state."""
        return [*self._params, *self.rule.state()]

    def workspace(self, R: int, B: int) -> _Workspace:
        """The buffers of step shape (R, B), made on first use."""
        ws = self._ws.get((R, B))
        if ws is None:
            ws = self._ws[(R, B)] = _Workspace(R, B, self.sizes, self.W[0], self.classes_major)
        return ws

    def step_tensors(self, x: Tensor, y: Tensor, lr3: Tensor) -> Outputs:
        """One eager step on the batch ``x`` [R, B, 784] (any strides), ``y`` [R, B] at learning rates
        ``lr3`` [R, 1, 1], the arithmetic every path records; its ``Outputs``, each [R, B]."""
        R, B = y.shape
        ws = self.workspace(R, B)
        last = len(self.W) - 1
        for i in range(last + 1):
            # GEMMs write contiguous outputs (faster than into a[i + 1]'s rows of in + 1 values);
            # the activation then writes a[i + 1].
            if i == 0:
                torch.baddbmm(self.b[0], x, self.W[0], out=ws.z[0])
            else:
                torch.bmm(ws.a[i], self._params[i + 1], out=ws.z[i])
            if i < last and self.activation == "relu":
                torch.clamp_min(ws.z[i], 0.0, out=ws.h[i + 1])
            elif i < last:
                torch.ops.aten.leaky_relu.out(ws.z[i], LEAKY_SLOPE, out=ws.h[i + 1])
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

    def _backward(self, x: Tensor, ws: _Workspace, lr3: Tensor) -> None:
        g = ws.g
        self.rule.begin_step()
        if self.rule.folds_lr:  # backprop is linear in g: every gradient below carries the lr
            g.mul_(lr3)
        for i in range(len(self.W) - 1, -1, -1):
            g_in = torch.bmm(g, self.WT[i], out=ws.g_in[i]) if i else None  # W before its update
            # (index into _params, the left factor of that parameter's gradient left @ g / B)
            updates = [(i + 1, ws.aT[i])] if i else [(0, x.transpose(1, 2)), (1, ws.ones)]
            for k, left in updates:
                self.rule.update(k, left, g, 1.0 / g.shape[1], lr3)
            if g_in is None:
                continue
            # The activation's backward, in place, as torch's: the gradient where the unit's
            # pre-activation was > 0 (so is its output), else 0 (relu) or slope * gradient.
            if self.activation == "relu":
                g = torch.ops.aten.threshold_backward.grad_input(g_in, ws.h[i], 0.0, grad_input=g_in)
            else:
                g = torch.ops.aten.leaky_relu_backward.grad_input(
                    g_in, ws.h[i], LEAKY_SLOPE, True, grad_input=g_in
                )

    def steps(self, X: Tensor, idx: Tensor, y: Tensor, lr: Tensor, transform: Transform = None) -> Outputs:
        """``Engine.steps`` (see ``base``); ``lr`` may be [S] (shared); with a ``transform``, all eager."""
        lr = lr.to(self.device, self.W[0].dtype).reshape(len(idx), -1).expand(len(idx), self.n_replicas)
        path = "eager" if transform is not None else self.path(idx.shape[2])
        if path == "eager":
            return self._eager(X, idx, y, lr, transform)
        if path not in self.checked and self.check_steps:  # its first span: checked first
            k = min(self.check_steps, len(idx))
            head = self._check(path, X, idx[:k], y[:k], lr[:k])
            return head if k == len(idx) else _cat([head, self.steps(X, idx[k:], y[k:], lr[k:])])
        out = self._fast(path, X, idx, y, lr)
        return self.steps(X, idx, y, lr) if out is None else out  # None: that path is off now

    def path(self, batch_size: int) -> str:
        """The path of a span at ``batch_size`` now: fused, graphs or eager (``choice.choose_path``)."""
        graphs_here = self.graphs is not None and not self.graphs.failed
        hyper = (self.optimizer, self.activation, batch_size)
        return choice.choose_path(self.use_fused, graphs_here, self.sizes, self.W[0].dtype, *hyper)

    def _eager(self, X: Tensor, idx: Tensor, y: Tensor, lr: Tensor, transform: Transform = None) -> Outputs:
        out = []
        for k in range(len(idx)):
            x = gather_batch(X, idx[k], self.workspace(*idx.shape[1:]).x)
            x = x if transform is None else transform(x)
            out.append(self.step_tensors(x, y[k], lr[k].view(-1, 1, 1)))
        picked, pred = zip(*out, strict=True)
        return torch.stack(picked), torch.stack(pred)

    def _fast(self, path: str, X: Tensor, idx: Tensor, y: Tensor, lr: Tensor) -> Outputs | None:
        """The span on ``path`` (CUDA graphs, or one launch of ``fused_steps``); None, having changed
        nothing, when that path cannot run here (it fails before the launch): it warned and is off."""
        if path == "graphs":
            assert self.graphs is not None
            return self.graphs.steps(X, idx, y, lr)
        from triton.errors import TritonError

        t = self.rule.t  # the kernel counts on from it and does not update it
        try:
            t0 = 0 if t is None else int(t.item())
            out = fused.fused_steps(self._params, self.rule.buffers(), X, idx, y, lr, t0=t0, **self.hyper)
        except TritonError as e:
            self.use_fused = False
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            warnings.warn(
                f"the fused Triton step does not run on {self.device} ({type(e).__name__}: {first_line}); "
                "training goes on without it",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        if t is not None:
            t.add_(len(idx))
        return out

    def _check(self, path: str, X: Tensor, idx: Tensor, y: Tensor, lr: Tensor) -> Outputs:
        """The first steps on ``path``, chunk by chunk (fused: ``choice.CHECK_CHUNK`` steps a launch;
        graphs: ``chunk_steps``), each also run eagerly from the same state, whose steps are kept;
        ``path`` stays on where the chunks agree (``choice.verdict``), else both faster paths are off."""
        state, chunks = self.state(), []
        outs: list[Outputs] = []
        n = self.graphs.chunk_steps if path == "graphs" and self.graphs else choice.CHECK_CHUNK
        for s in range(0, len(idx), n):
            span = slice(s, s + n)
            start = [t.clone() for t in state]
            if self._fast(path, X, idx[span], y[span], lr[span]) is None:
                return _cat([*outs, self.steps(X, idx[s:], y[s:], lr[s:])])  # the next path goes on
            fast = [p.clone() for p in self._params]
            for t, v in zip(state, start, strict=True):
                t.copy_(v)
            outs.append(self._eager(X, idx[span], y[span], lr[span]))
            chunks.append(choice.disagreement(fast, self._params))
        self.checked[path] = chunks
        if not choice.verdict(path, self.device, self.W[0].dtype, chunks):
            self.use_fused, self.graphs = False, None
        return _cat(outs)

    @torch.no_grad()
    def activations(self, x: Tensor) -> list[Tensor]:
        """Every hidden layer's activations (outputs) for shared inputs ``x`` [N, 784]: one
        [R, N, hidden_i] tensor per hidden layer."""
        R, (n, d) = self.n_replicas, x.shape
        # One GEMM for the widest layer: [N, 784] @ [784, R*64] instead of R expanded copies of x.
        W0 = self.W[0].permute(1, 0, 2).reshape(d, -1)
        h = (x @ W0).view(n, R, -1).transpose(0, 1).add_(self.b[0])
        acts = [activate(h, self.activation, inplace=True)]
        for W, b in zip(self.W[1:-1], self.b[1:-1], strict=True):
            acts.append(activate(torch.baddbmm(b, acts[-1], W), self.activation, inplace=True))
        return acts

    @torch.no_grad()
    def head(self, h: Tensor) -> Tensor:
        """Logits [R, N, 10] from the last hidden layer's activations ``h`` [R, N, hidden]."""
        return torch.baddbmm(self.b[-1], h, self.W[-1])

    def keep(self, mask: Tensor) -> None:
        """Drop the replicas where ``mask`` [R] is false (diverged or stopped ones)."""
        self._params = [p[mask] for p in self._params]
        self.rule.keep(mask)
        self._reset()

    def weight_norms(self) -> Tensor:
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
