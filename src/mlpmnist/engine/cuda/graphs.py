"""A stacked engine's steps recorded into CUDA graphs: ``chunk_steps`` steps per graph launch.

A graph replays the eager step's kernels (the batch gather included) with its inputs read from
static tensors, so K steps cost one launch instead of ~25 K: full chunks of K steps share one graph
per (R, B), the steps left over run through a graph of one step.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mlpmnist.engine.base import Outputs, gather_batch

# One capture at a time in a process: engines in other threads keep launching meanwhile.
_CAPTURE_LOCK = threading.Lock()


@dataclass
class _Graph:
    """A captured graph, the static tensors it reads (idx, y, lr) and writes (its outputs)."""

    graph: Any  # torch.cuda.CUDAGraph, or a stand-in with replay() in the CPU tests
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, Tensor]
    keep_alive: tuple[Tensor, ...]  # tensors the graph reads by address (the data)


def capture(state: list[Tensor], fn: Callable[[], Outputs]) -> tuple[Any, Outputs]:
    """Record ``fn`` (which reads static inputs already filled with real values) into a CUDA
    graph; returns (graph, its output tensors). Capturing needs warm-up runs, which move the
    tensors in ``state``: they are put back."""
    saved = [t.clone() for t in state]
    device = state[0].device
    try:
        with _CAPTURE_LOCK:
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(2):  # cuBLAS handles, workspaces and the allocator settle
                    fn()
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: engines in other threads may go on launching while this records.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                outputs = fn()
    finally:
        for t, v in zip(state, saved, strict=True):
            t.copy_(v)
    return graph, outputs


class GraphRunner:
    """Runs the spans of steps of ``engine``, a ``StackedEngine`` (its eager ``step_tensors``, the
    tensors they change, ``state``, and their ``workspace``), as graph launches of ``chunk_steps``
    steps each, recorded by ``capture`` (for which the CPU tests put a stand-in)."""

    def __init__(self, engine: Any, chunk_steps: int) -> None:
        self.engine, self.chunk_steps = engine, chunk_steps
        self.graphs: dict[tuple, _Graph] = {}
        self.failed = False

    def reset(self) -> None:
        """Forget every graph (the engine's tensors changed)."""
        self.graphs.clear()

    def steps(self, X: Tensor, idx: Tensor, y: Tensor, lr: Tensor) -> Outputs | None:
        """``StackedEngine.steps`` through graphs; None when recording failed (after a warning;
        ``failed`` then keeps the engine off this path)."""
        S, K = len(idx), self.chunk_steps
        out: list[Outputs] = []
        s = 0
        for k in [K] * (S // K) + [1] * (S % K):
            chunk = self._run(X, idx[s : s + k], y[s : s + k], lr[s : s + k])
            if chunk is None:
                if not out:
                    return None
                out.append(self.engine.steps(X, idx[s:], y[s:], lr[s:]))  # eager from here
                break
            out.append(chunk)
            s += k
        return torch.cat([p for p, _ in out]), torch.cat([a for _, a in out])

    def _run(self, X: Tensor, idx: Tensor, y: Tensor, lr: Tensor) -> Outputs | None:
        key = (*idx.shape, X.data_ptr())
        gr = self.graphs.get(key) or self._record(key, X, idx, y, lr)
        if gr is None:
            return None
        for static, new in zip(gr.inputs, (idx, y, lr), strict=True):
            static.copy_(new)
        gr.graph.replay()
        return gr.outputs[0].clone(), gr.outputs[1].clone()  # the next replay overwrites them

    def _record(self, key: tuple, X: Tensor, idx: Tensor, y: Tensor, lr: Tensor) -> _Graph | None:
        engine = self.engine
        K, R, B = idx.shape
        engine.workspace(R, B)  # on this stream, outside the graph's memory pool
        sidx, sy, slr = idx.clone(), y.clone(), lr.clone()

        def run() -> Outputs:
            xs = gather_batch(X, sidx)  # [K, R, B, 784]: all the chunk's rows at once
            outs = [engine.step_tensors(xs[k], sy[k], slr[k].view(-1, 1, 1)) for k in range(K)]
            return torch.stack([p for p, _ in outs]), torch.stack([a for _, a in outs])

        try:
            graph, outputs = capture(engine.state(), run)
        except Exception as e:  # whatever the cause, eager steps still train correctly
            warnings.warn(f"CUDA graph capture failed ({e!r}); running eager steps", stacklevel=4)
            self.failed = True
            return None
        self.graphs[key] = _Graph(graph, (sidx, sy, slr), outputs, (X,))
        return self.graphs[key]
