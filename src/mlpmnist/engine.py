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

On a GPU the fast engine records its step into CUDA graphs (one per step shape) and replays
them, so a step costs one graph launch instead of ~25 kernel launches; ``StackedEngine.steps``
runs many steps per launch. Everything the graphs do is the eager step's arithmetic, with the
learning rate read from a tensor.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .batching import gather_batch
from .model import MLP

StateDict = dict[str, torch.Tensor]
#: A float shared by all replicas, or a tensor [R] of per-replica learning rates.
LR = float | torch.Tensor
#: (log-probability of the true class, predicted class) of a step or of K steps.
Outputs = tuple[torch.Tensor, torch.Tensor]
# One capture at a time in a process: engines in other threads keep launching meanwhile.
_CAPTURE_LOCK = threading.Lock()


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


@dataclass
class _Graph:
    """A captured CUDA graph and the static tensors it reads and writes."""

    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, ...]
    outputs: tuple[torch.Tensor, torch.Tensor]
    keep_alive: tuple[torch.Tensor, ...] = ()  # tensors the graph reads by address (data)


def _stack(outs: Sequence[Outputs]) -> Outputs:
    picked, pred = zip(*outs, strict=True)
    return torch.stack(picked), torch.stack(pred)


def _cat(outs: Sequence[Outputs]) -> Outputs:
    picked, pred = zip(*outs, strict=True)
    return torch.cat(picked), torch.cat(pred)


class StackedEngine:
    """Hand-written forward/backward over stacked replica weights.

    ``W[i]`` [R, in, out] and ``b[i]`` [R, 1, out] are layer i's weights and biases; after the
    first layer they are views of one [R, in + 1, out] slab per layer, updated by one GEMM.
    ``cuda_graphs``: record steps into CUDA graphs on a GPU (None: the class default
    ``CUDA_GRAPHS``, whose None means whenever the device is CUDA). A failed capture warns and
    falls back to eager steps. ``chunk_steps``: steps per graph launch in ``steps``.
    """

    #: Default for ``cuda_graphs`` (None: on CUDA devices); benchmarks set it to compare.
    CUDA_GRAPHS: bool | None = None

    def __init__(
        self,
        models: list[MLP],
        device: torch.device,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        *,
        cuda_graphs: bool | None = None,
        chunk_steps: int = 32,
    ) -> None:
        device = torch.device(device)
        layers = list(zip(*(m.layers for m in models), strict=True))
        # W: [R, in, out] per layer (nn.Linear stores [out, in]); b: [R, 1, out] so it broadcasts.
        Ws = [torch.stack([lin.weight.detach().T for lin in ls]).to(device) for ls in layers]
        bs = [torch.stack([lin.bias.detach() for lin in ls]).unsqueeze(1).to(device) for ls in layers]
        self.sizes = [Ws[0].shape[1], *(W.shape[2] for W in Ws)]
        # What SGD updates: layer 0's W and b, then one [R, in + 1, out] slab [W; b] per later
        # layer (see _Workspace.a). Layer 0 stays apart: its input comes from the caller without
        # a ones column, and a view of a slab makes its large in-place update slower on a CPU.
        slabs = (torch.cat([W, b], 1) for W, b in zip(Ws[1:], bs[1:], strict=True))
        self._params = [Ws[0].contiguous(), bs[0], *slabs]
        self.momentum = momentum
        self.weight_decay = weight_decay
        self._bufs = [torch.zeros_like(p) for p in self._params] if momentum else []
        graphs = self.CUDA_GRAPHS if cuda_graphs is None else cuda_graphs
        self.cuda_graphs = device.type == "cuda" if graphs is None else graphs
        self.chunk_steps = chunk_steps
        # Softmax layout (see _Workspace): classes-major pays on a CPU only.
        self.classes_major = device.type == "cpu"
        if self.cuda_graphs and device.type != "cuda":
            raise ValueError(f"cuda_graphs needs a CUDA device; got {device}")
        self._reset()

    def _reset(self) -> None:
        # Views, buffers and graphs hold on to the parameters; rebuilt when replicas are dropped.
        slabs = self._params[2:]
        self.W = [self._params[0], *(p[:, :-1] for p in slabs)]  # [R, in, out] per layer
        self.b = [self._params[1], *(p[:, -1:] for p in slabs)]  # [R, 1, out] per layer
        self.WT = [W.transpose(1, 2) for W in self.W]
        self._ws: dict[tuple[int, int], _Workspace] = {}
        self._graphs: dict[tuple, _Graph] = {}

    @property
    def n_replicas(self) -> int:
        return self.W[0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.W[0].device

    def _workspace(self, R: int, B: int) -> _Workspace:
        ws = self._ws.get((R, B))
        if ws is None:
            ws = self._ws[(R, B)] = _Workspace(R, B, self.sizes, self.W[0], self.classes_major)
        return ws

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: LR) -> Outputs:
        """One SGD step of every replica on its batch ``x`` [R, B, 784] (any strides), ``y``
        [R, B]; returns (log-probability of the true class [R, B], predicted class [R, B])."""
        if self.cuda_graphs:
            return self._graph_step(x, y, lr)
        return self._step(x, y, lr)

    def _step(self, x: torch.Tensor, y: torch.Tensor, lr: LR) -> Outputs:
        R, B = y.shape
        ws = self._workspace(R, B)
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
        # d(mean CE)/dz = (softmax - onehot) / B, built in place over logp; 1/B goes into alpha.
        logp.exp_().scatter_add_(ws.dim, y_at, ws.minus_one)
        self._backward(x, ws, lr)
        return picked.view(R, B), pred

    def _backward(self, x: torch.Tensor, ws: _Workspace, lr: LR) -> None:
        g = ws.g
        B = g.shape[1]
        lr3 = lr.view(-1, 1, 1) if isinstance(lr, torch.Tensor) else lr
        plain = not self.momentum
        # Plain SGD folds the lr into the update: into alpha when all replicas share a float,
        # else into the top gradient (backprop is linear in it), so each update is one baddbmm_.
        alpha = -1.0 / B
        if plain and not isinstance(lr, torch.Tensor):
            alpha *= lr
        elif plain:
            g.mul_(lr3)
        for i in range(len(self.W) - 1, -1, -1):
            # The input gradient uses W before its update.
            g_in = torch.bmm(g, self.WT[i], out=ws.g_in[i]) if i else None
            # (index into _params, the left factor of that parameter's gradient left @ g)
            updates = [(i + 1, ws.aT[i])] if i else [(0, x.transpose(1, 2)), (1, ws.ones)]
            for k, left in updates:
                p = self._params[k]
                if plain:
                    if self.weight_decay:
                        p.mul_(1.0 - lr3 * self.weight_decay)
                    p.baddbmm_(left, g, alpha=alpha)
                else:
                    self._momentum_update(p, self._bufs[k], left, g, -alpha, lr3)
            if g_in is not None:
                # ReLU's backward, in place: zero where the unit was off.
                g = torch.ops.aten.threshold_backward.grad_input(g_in, ws.h[i], 0.0, grad_input=g_in)

    def _momentum_update(
        self, p: torch.Tensor, buf: torch.Tensor, left: torch.Tensor, g: torch.Tensor, scale: float, lr3: LR
    ) -> None:
        """torch.optim.SGD with momentum: buf = momentum * buf + grad (+ wd * p); p -= lr * buf,
        the gradient being ``left @ g * scale``."""
        buf.baddbmm_(left, g, beta=self.momentum, alpha=scale)  # momentum * buf + grad in one GEMM
        if self.weight_decay:
            buf.add_(p, alpha=self.weight_decay)
        if isinstance(lr3, torch.Tensor):
            p.addcmul_(buf, lr3, value=-1.0)
        else:
            p.add_(buf, alpha=-lr3)

    def steps(
        self,
        X: torch.Tensor,
        pixels: torch.Tensor | None,
        idx: torch.Tensor,
        y: torch.Tensor,
        lr: Sequence[float] | torch.Tensor,
    ) -> Outputs:
        """S steps in a row on rows ``idx`` [S, R, B] of the training images (``X`` [N, 784], or
        their exact uint8 ``pixels``), labels ``y`` [S, R, B], learning rates ``lr``: S numbers
        shared by all replicas (a sequence, or a tensor [S]) or a tensor [S, R]. Returns
        (log-probability of the true class, predicted class), each [S, R, B]: what S calls of
        ``step`` return, stacked. The same arithmetic as ``step``; with CUDA graphs every
        ``chunk_steps`` steps are one graph launch.
        """
        if self.cuda_graphs:
            S, R, _ = idx.shape
            K = self.chunk_steps
            lr_t = self._lr_tensor(lr, (S, R))
            out: list[Outputs] = []
            for s in range(0, S - S % K, K):
                chunk = self._graph_chunk(X, pixels, idx[s : s + K], y[s : s + K], lr_t[s : s + K])
                if chunk is None:  # capture failed, graphs are off: the rest eagerly
                    return _cat([*out, self.steps(X, pixels, idx[s:], y[s:], lr_t[s:])])
                out.append(chunk)
            for k in range(S - S % K, S):  # the remainder one graphed step at a time
                picked, pred = self.step(gather_batch(X, pixels, idx[k]), y[k], lr_t[k])
                out.append((picked.unsqueeze(0), pred.unsqueeze(0)))
            return _cat(out)
        if isinstance(lr, torch.Tensor) and lr.dim() == 2:
            lrs: Sequence[LR] = list(lr)
        else:  # shared: Python floats, so each step folds its lr into alpha exactly as ``step``
            lrs = lr.tolist() if isinstance(lr, torch.Tensor) else [float(v) for v in lr]
        out = [self._step(gather_batch(X, pixels, idx[k]), y[k], lrs[k]) for k in range(len(idx))]
        return _stack(out)

    # --- CUDA graphs -------------------------------------------------------------------------

    def _state(self) -> list[torch.Tensor]:
        return [*self._params, *self._bufs]

    def _capture(self, fn: Callable[[], Outputs]) -> tuple[torch.cuda.CUDAGraph, Outputs]:
        """Record ``fn`` (which reads static inputs already filled with real values) into a
        CUDA graph. The warm-up runs that capturing needs move the weights; they are put back."""
        saved = [t.clone() for t in self._state()]
        try:
            with _CAPTURE_LOCK:
                side = torch.cuda.Stream(self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    for _ in range(2):  # cuBLAS handles, workspaces and the allocator settle
                        fn()
                torch.cuda.current_stream(self.device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                # thread_local: engines in other threads may go on launching while this records.
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    outputs = fn()
        finally:
            for t, v in zip(self._state(), saved, strict=True):
                t.copy_(v)
        return graph, outputs

    def _graph(self, key: tuple, make: Callable[[], _Graph]) -> _Graph | None:
        """The graph for ``key``, captured by ``make`` on first use; None (and eager steps from
        now on) if capturing fails."""
        if key not in self._graphs:
            try:
                self._graphs[key] = make()
            except Exception as e:  # whatever the cause, eager steps still train correctly
                warnings.warn(f"CUDA graph capture failed ({e!r}); running eager steps", stacklevel=3)
                self.cuda_graphs = False
                return None
        return self._graphs[key]

    def _lr_tensor(self, lr: LR | Sequence[float], shape: tuple[int, ...]) -> torch.Tensor:
        """``lr`` (a float, floats or a tensor) broadcast to ``shape`` on the device, as a view."""
        if not isinstance(lr, torch.Tensor):
            lr = torch.tensor(lr, dtype=self.W[0].dtype)
        lr = lr.to(self.device, self.W[0].dtype)
        return lr.view(*lr.shape, *[1] * (len(shape) - lr.dim())).expand(shape)

    def _graph_step(self, x: torch.Tensor, y: torch.Tensor, lr: LR) -> Outputs:
        R, B = y.shape
        key = ("step", R, B, x.dtype)
        if key in self._graphs:
            gr = self._graphs[key]
            sx, sy, slr = gr.inputs
            sx.copy_(x)
            sy.copy_(y)
            slr.copy_(lr) if isinstance(lr, torch.Tensor) else slr.fill_(lr)
        else:
            self._workspace(R, B)  # on this stream, outside the graph's memory pool
            sx, sy, slr = x.clone(), y.clone(), self._lr_tensor(lr, (R,)).clone()

            def make() -> _Graph:
                graph, out = self._capture(lambda: self._step(sx, sy, slr))
                return _Graph(graph, (sx, sy, slr), out)

            if (made := self._graph(key, make)) is None:
                return self._step(x, y, lr)
            gr = made
        gr.graph.replay()
        # The next replay overwrites the graph's outputs: hand out copies.
        return gr.outputs[0].clone(), gr.outputs[1].clone()

    def _graph_chunk(
        self,
        X: torch.Tensor,
        pixels: torch.Tensor | None,
        idx: torch.Tensor,
        y: torch.Tensor,
        lr: torch.Tensor,
    ) -> Outputs | None:
        """``chunk_steps`` steps as one graph launch (rows gathered inside the graph)."""
        K, R, B = idx.shape
        key = ("chunk", K, R, B, X.data_ptr(), None if pixels is None else pixels.data_ptr())
        if key in self._graphs:
            gr = self._graphs[key]
            for static, new in zip(gr.inputs, (idx, y, lr), strict=True):
                static.copy_(new)
        else:
            self._workspace(R, B)
            sidx, sy, slr = idx.clone(), y.clone(), lr.clone()

            def run() -> Outputs:
                xs = gather_batch(X, pixels, sidx)  # [K, R, B, 784]: all the chunk's rows at once
                return _stack([self._step(xs[k], sy[k], slr[k]) for k in range(K)])

            def make() -> _Graph:
                graph, out = self._capture(run)
                return _Graph(graph, (sidx, sy, slr), out, (X,) if pixels is None else (X, pixels))

            if (made := self._graph(key, make)) is None:
                return None
            gr = made
        gr.graph.replay()
        return gr.outputs[0].clone(), gr.outputs[1].clone()

    # --- inference and bookkeeping -----------------------------------------------------------

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
        self._params = [p[mask] for p in self._params]
        self._bufs = [b[mask] for b in self._bufs]
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

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: LR) -> tuple[torch.Tensor, torch.Tensor]:
        picked, pred = [], []
        for r, (model, opt) in enumerate(zip(self.models, self.opts, strict=True)):
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
    if isinstance(engine, StackedEngine):
        return engine.weight_norms()
    return torch.stack(
        [
            torch.stack([sd[f"layers.{i}.weight"].norm() for i in range(len(sd) // 2)])
            for sd in engine.state_dicts()
        ]
    )
