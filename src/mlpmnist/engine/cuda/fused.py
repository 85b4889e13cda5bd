"""S optimizer steps of every replica of the two-hidden-layer MLP in one Triton kernel launch.

On a GPU the stacked engine's step at a small batch is ~20 kernels of a few microseconds each:
launch latency, not arithmetic. ``fused_steps`` runs a span of steps as one launch of the kernel in
``kernel.py`` (its design is described there): forward pass, the mean cross-entropy's backward pass
and a ``torch.optim.SGD`` (momentum and weight decay optional) or ``torch.optim.Adam`` update, in
torch's order of operations. It runs what this module declares (``OPTIMIZERS``, ``ACTIVATIONS``,
``supports``) and refuses the rest with a ``ValueError``, so what the package adds later trains
eagerly until the kernel learns it. triton is imported only when a kernel is launched or asked
about; with ``TRITON_INTERPRET=1`` set first, its interpreter runs the kernel on CPU tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlpmnist.engine.rules import ADAM_BETAS, ADAM_EPS

#: What the kernel computes: the optimizers (names as in config.OPTIMIZERS) and hidden activations.
OPTIMIZERS = ("sgd", "adam")
ACTIVATIONS = ("relu",)
#: Widest hidden layer or output the kernel takes: W1 [H1, H2] and friends live in registers.
MAX_WIDTH = 128
#: Fewest rows or columns of a tile: tl.dot's inner dimension must be >= 8 for float32 on
#: NVIDIA GPUs (Triton 3.x); 8, not 16, because a batch of 8 then wastes no arithmetic.
MIN_BLOCK = 8
_SGD, _MOMENTUM, _ADAM = 0, 1, 2  # the kernel's optimizer codes (its OPT constexpr)


def available(device: torch.device | str) -> bool:
    """True when ``fused_steps`` can run on tensors of ``device``: triton is importable and the
    device is a CUDA GPU, or the kernel runs in the interpreter (any device)."""
    from mlpmnist.engine.cuda import kernel

    cuda = torch.device(device).type == "cuda" and torch.cuda.is_available()
    return kernel.interpreted() or (kernel.triton is not None and cuda)


def supports(
    sizes: Sequence[int], dtype: torch.dtype, optimizer: str, activation: str, batch_size: int
) -> bool:
    """True when the kernel handles an MLP of layer sizes ``sizes`` = [F, H1, H2, C] (widths up to
    ``MAX_WIDTH``) in float32 or float64 with ``activation`` and ``optimizer`` (of ``ACTIVATIONS``
    and ``OPTIMIZERS``) and batches of ``batch_size`` (up to ``max_batch``)."""
    return (
        len(sizes) == 4
        and all(int(n) >= 1 for n in sizes)
        and max(sizes[1:]) <= MAX_WIDTH
        and dtype in (torch.float32, torch.float64)
        and optimizer in OPTIMIZERS
        and activation in ACTIVATIONS
        and 1 <= batch_size <= max_batch(dtype)
    )


def _pow2(n: int, least: int) -> int:
    """The smallest power of two >= n and >= ``least``."""
    return max(least, 1 << (max(n, 1) - 1).bit_length())


def _check(params: list[torch.Tensor], state: list[torch.Tensor], n_state: int) -> tuple[int, ...]:
    """(R, F, H1, H2, C) of ``params`` after checking their shapes, dtype, device and layout,
    and those of ``state`` (``n_state`` tensors: each param's shape, cycled)."""
    if len(params) != 4:
        raise ValueError(f"params: [W0, b0, S1, S2] expected; got {len(params)} tensors")
    W0 = params[0]
    R, F, H1 = W0.shape
    H2, C = params[2].shape[2], params[3].shape[2]
    shapes = [(R, F, H1), (R, 1, H1), (R, H1 + 1, H2), (R, H2 + 1, C)]
    if len(state) != n_state:
        raise ValueError(f"state: {n_state} tensors expected for this optimizer; got {len(state)}")
    for i, t in enumerate([*params, *state]):
        shape = shapes[i % 4]
        if tuple(t.shape) != shape or t.dtype != W0.dtype or t.device != W0.device or not t.is_contiguous():
            name = f"params[{i}]" if i < 4 else f"state[{i - 4}]"
            raise ValueError(
                f"{name}: a contiguous {shape} {W0.dtype} tensor on {W0.device} expected "
                f"(updated in place); got {tuple(t.shape)} {t.dtype} on {t.device}"
            )
    return R, F, H1, H2, C


def launch_config(block_b: int, n_state: int, itemsize: int) -> tuple[int, int, int]:
    """(BLOCK_K, num_warps, num_stages) for a batch tile of ``block_b`` rows, ``n_state`` state
    tensors per parameter (0, 1 or 2) and ``itemsize`` bytes per value. Chosen from ptxas's
    registers, spills and shared memory for sm_90 (not timed: bench/fused_gpu.py times them): 8
    warps at batch 8 with plain SGD in float32, 16 wherever 8 spill; W0 tiles of 16 rows for wide
    batches, to bound registers."""
    block_k = 32 if block_b * itemsize <= 128 else 16
    num_warps = 8 if block_b <= 16 and n_state == 0 and itemsize == 4 else 16
    return block_k, num_warps, 3


def max_batch(dtype: torch.dtype) -> int:
    """The largest batch the kernel takes in ``dtype``: a tile of 128 float32 rows (64 float64)
    needs 139 KB of shared memory, twice that would pass the 227 KB a block may have (and wider
    batches are not launch-bound anyway)."""
    return 128 if dtype == torch.float32 else 64


def fused_steps(
    params: list[torch.Tensor],
    state: list[torch.Tensor],
    X: torch.Tensor,
    idx: torch.Tensor,
    y: torch.Tensor,
    lr: torch.Tensor,
    *,
    optimizer: str,
    activation: str,
    momentum: float,
    weight_decay: float,
    t0: int = 0,
    config: tuple[int, int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """S steps of every replica in one kernel launch, updating ``params`` and ``state`` in place;
    returns ``base.Outputs`` [S, R, B] (params' dtype, int64), from before each step's update.

    ``params``: [W0, b0, S1, S2] (``base.stack_params``' layout). ``state``: [] for SGD without
    momentum; one momentum buffer per parameter for SGD with momentum; [m0, m1, m2, m3, v0, v1, v2,
    v3] for Adam, ``t0`` being the steps already taken (step s's bias corrections use t0 + s + 1).
    State starts at zeros. Step s of replica r trains on rows ``idx`` [S, R, B] (int64) of ``X``
    [N, F] (params' dtype) with labels ``y`` [S, R, B] and learning rate ``lr`` [S, R] (an expanded
    view is fine). ``config``: (BLOCK_K, num_warps, num_stages) instead of ``launch_config``'s; it
    changes the speed, not the results.
    """
    if optimizer not in OPTIMIZERS or activation not in ACTIVATIONS:
        raise ValueError(
            f"the fused kernel runs optimizers {' and '.join(OPTIMIZERS)} with activation "
            f"{' or '.join(ACTIVATIONS)}; got {optimizer!r} with {activation!r} (train it eagerly)"
        )
    opt = {"sgd": _MOMENTUM if momentum else _SGD, "adam": _ADAM}[optimizer]
    R, F, H1, H2, C = _check(params, state, {_SGD: 0, _MOMENTUM: 4, _ADAM: 8}[opt])
    dtype, device = params[0].dtype, params[0].device
    S, R_idx, B = idx.shape
    if R_idx != R or tuple(y.shape) != tuple(idx.shape) or tuple(lr.shape) != (S, R):
        raise ValueError(
            f"idx and y [S, {R}, B] and lr [S, {R}] expected; got {tuple(idx.shape)}, "
            f"{tuple(y.shape)}, {tuple(lr.shape)}"
        )
    if X.dim() != 2 or X.shape[1] != F or X.dtype != dtype or X.device != device or X.stride(1) != 1:
        raise ValueError(f"X: [N, {F}] {dtype} on {device} with unit column stride expected")
    if not supports([F, H1, H2, C], dtype, optimizer, activation, max(B, 1)):
        raise ValueError(
            f"the kernel does not support sizes {[F, H1, H2, C]} in {dtype} with {optimizer} "
            f"at batch size {B} (see supports and max_batch)"
        )
    if not available(device):
        raise RuntimeError(
            f"fused_steps needs triton and a CUDA device (or TRITON_INTERPRET=1); got {device}"
        )
    picked = torch.empty((S, R, B), dtype=dtype, device=device)
    pred = torch.empty((S, R, B), dtype=torch.int64, device=device)
    if picked.numel() == 0:
        return picked, pred

    lr64 = lr.to(device, torch.float64)
    beta1, beta2 = ADAM_BETAS
    if opt == _ADAM:  # torch.optim.Adam: step size lr / (1 - beta1^t), and sqrt(1 - beta2^t)
        t = torch.arange(t0 + 1, t0 + S + 1, dtype=torch.float64, device=device)
        coef = torch.stack([lr64 / (1 - beta1**t)[:, None], (1 - beta2**t).sqrt()[:, None].expand(S, R)], 2)
    else:
        coef = torch.stack([lr64, torch.zeros_like(lr64)], 2)
    # Float scalars would reach the kernel as float32: float64 values travel in a tensor. A
    # non-blocking copy from pageable memory is staged at once and does not wait for the GPU.
    hyper = torch.tensor(
        [momentum, weight_decay, 1 - beta1, beta2, 1 - beta2, ADAM_EPS, 1 / B], dtype=torch.float64
    ).to(device, non_blocking=True)
    q = state[:4] if state else params  # unused pointers (never dereferenced) when there is no state
    v = state[4:] if opt == _ADAM else params
    rows = [t.to(device, torch.int64).contiguous() for t in (idx, y)]
    tensors = [*params, *q, *v, X, X.stride(0), *rows, coef.contiguous(), hyper, picked, pred, S, R, B]
    block_b = _pow2(B, MIN_BLOCK)
    pads = dict(H1P=_pow2(H1, MIN_BLOCK), H2P=_pow2(H2, MIN_BLOCK), CP=_pow2(C, MIN_BLOCK), BLOCK_B=block_b)
    block_k, num_warps, num_stages = config or launch_config(block_b, len(state) // 4, X.element_size())
    from mlpmnist.engine.cuda import kernel  # triton loads here, where a kernel runs

    kernel.fused_kernel[(R,)](
        *tensors, F=F, H1=H1, H2=H2, C=C, **pads, BLOCK_K=block_k, OPT=opt, DECAY=bool(weight_decay),
        num_warps=num_warps, num_stages=num_stages,
    )  # fmt: skip
    return picked, pred
