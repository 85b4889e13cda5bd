"""Memory a training run needs, estimated before anything is allocated, and what this process may
still take; a run that cannot fit is refused with both numbers instead of failing mid-way.

One engine holds every replica of a config, so its memory grows with the seeds (``estimate``'s
parts). Measured on a CPU (``tests/integration``), the estimate is above the peak it predicts and
within a factor of two.
"""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

import torch

from mlpmnist.config import TrainConfig

#: Bytes per replica and training image of one epoch: its batch order, the order's labels and
#: batch blocks (int64 each), and the step outputs (log-probability, prediction) kept for the
#: evaluation and their sums (measured: 70-80 bytes).
PER_IMAGE = 96
#: Images evaluated at once (``engine.base.evaluate``'s chunk).
EVAL_CHUNK = 10_000


def parameters(config: TrainConfig) -> int:
    """Trainable parameters of one replica."""
    layers = [config.spec.n_features, *config.hidden, config.spec.n_classes]
    return sum((a + 1) * b for a, b in zip(layers, layers[1:], strict=False))


def estimate(config: TrainConfig) -> dict[str, int]:
    """Bytes ``config``'s run holds at its peak, estimated from above, by part: ``weights`` (each
    replica's parameters, gradients, optimizer state and kept snapshots), ``epoch`` (batch
    order and step outputs), ``activations`` (a step's and an evaluation chunk's) and ``data``
    (the images on the device in the run's dtype)."""
    itemsize = 8 if config.dtype == "float64" else 4
    R, P = len(config.seeds), parameters(config)
    states = {"sgd": 1 if config.momentum else 0, "adam": 2}.get(config.optimizer, 2)
    units = sum(config.hidden) + config.spec.n_classes
    n_eval = config.spec.test_size + config.holdout
    step = config.batch_size * (config.spec.n_features + 3 * units)
    chunk = min(EVAL_CHUNK, n_eval) * (units + 2 * config.spec.n_classes)
    return {
        # the CPU models made at the start (float32), the engine's copy, its gradient and state
        "weights": R * P * (4 + itemsize * (2 + states + len(config.snapshots))),
        "epoch": R * config.n_train * PER_IMAGE,
        "activations": R * itemsize * (step + chunk),
        "data": (config.n_train + n_eval) * config.spec.n_features * itemsize,
    }


def _cgroup_room() -> int:
    """Bytes this process's cgroup (v2 or v1) may still allocate; OSError or ValueError without a
    limit. In a container the cgroup's own folder is the mount's root."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, where = line.split(":", 2)
        if controllers == "":
            mount, files = Path("/sys/fs/cgroup"), ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            mount, files = Path("/sys/fs/cgroup/memory"), ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        for base in (mount / where.lstrip("/"), mount):
            with contextlib.suppress(OSError, ValueError):
                limit = (base / files[0]).read_text().strip()
                if limit != "max" and int(limit) < 1 << 60:
                    return int(limit) - int((base / files[1]).read_text())
                break
    raise ValueError("no cgroup memory limit")


def _proc_bytes(path: str, field: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise ValueError(field)


def available(device: torch.device) -> tuple[int, str] | None:
    """(bytes this process may still allocate on ``device``, where that limit comes from), the
    tightest of what is known; None when nothing is known (no /proc)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"free memory of {device}"
    found: list[tuple[int, str]] = []
    with contextlib.suppress(OSError, ValueError):
        found.append((_proc_bytes("/proc/meminfo", "MemAvailable"), "the machine's available memory"))
    with contextlib.suppress(OSError, ValueError):
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            vm = _proc_bytes("/proc/self/status", "VmSize")
            found.append((soft - vm, "this process's address-space limit (ulimit -v)"))
    with contextlib.suppress(OSError, ValueError):
        found.append((_cgroup_room(), "this process's memory limit (its cgroup)"))
    return min(found) if found else None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def check(config: TrainConfig, device: torch.device) -> None:
    """``MemoryError`` (one line: what the run needs, by part, what is available and why, what
    to do) when ``config``'s run cannot fit in what ``device`` has left; nothing otherwise."""
    room = available(device)
    if room is None:
        return
    parts = estimate(config)
    need = sum(parts.values())
    free, where = room
    if need <= free:
        return
    shown = ", ".join(f"{k} {_gb(v)}" for k, v in parts.items() if v >= 1e7)
    raise MemoryError(
        f"{len(config.seeds):,} seeds of a {'-'.join(map(str, [config.spec.n_features, *config.hidden]))}-"
        f"{config.spec.n_classes} MLP ({parameters(config):,} parameters each, {config.dtype}) need about "
        f"{_gb(need)} ({shown}), and {_gb(max(free, 0))} are left ({where}); use fewer seeds, smaller hidden "
        "layers or fewer training images (the fields seeds, hidden, train_limit), or a larger machine"
    )


def ran_out(config: TrainConfig, device: torch.device, e: BaseException) -> MemoryError | None:
    """``e`` said in one line (what ran out, the estimate, what to do) when it is an allocation
    failure (Python's, torch's on a CPU or a GPU) while training ``config``; None otherwise."""
    text = str(e)
    torch_oom = isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
    if not (isinstance(e, MemoryError) or torch_oom):
        return None
    first = (text.strip().splitlines() or [type(e).__name__])[0][:160]
    return MemoryError(
        f"out of memory while training {len(config.seeds):,} seeds on {device} (about "
        f"{sum(estimate(config).values()) / 1e9:.1f} GB estimated; {first}); use fewer seeds "
        "or smaller hidden layers (the fields seeds, hidden), or free some memory"
    )
