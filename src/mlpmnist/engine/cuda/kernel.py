"""The Triton kernel of ``fused.fused_steps`` (its Python side: checks and launch). Design, for an
H100/H200 (bench/fused_gpu.py times it):

- One program per replica loops over the S steps: replicas are independent, so no grid-wide sync.
- Parameters stay in global memory in ``base.stack_params``' layout, W0 [R, F, H1], b0 [R, 1, H1],
  S1 [R, H1 + 1, H2] (W1 over b1), S2 [R, H2 + 1, C] (W2 over b2): 200 KB per replica, in L2. W0
  dominates the traffic, so the pass that updates W0's row tiles for step s also multiplies step
  s + 1's rows (gathered from X by ``idx``) by the updated tiles: the next forward product.
- The batch size is a runtime argument under a power-of-two tile (``BLOCK_B`` >= 8, masked), so
  batch sizes share few compiled variants; layer widths are constants padded to powers of two.
- Dots use input_precision="ieee" (no TF32), the log-softmax subtracts the row maximum, and
  Adam's sqrt and divisions are correctly rounded as torch's are.
- A thread may load what another thread stored only across a barrier: one ends each step.

``OPT`` (a constexpr) is 0 for SGD, 1 for SGD with momentum, 2 for Adam. triton.jit makes
interpreted functions when TRITON_INTERPRET=1 is set, and so must it be when triton is first
imported: a process cannot mix the two kinds.
"""

from __future__ import annotations

from collections.abc import Callable

try:
    import triton
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
except ImportError:  # a CPU-only install: fused.available() says False and nothing is decorated
    triton = None


def _jit(**options: object) -> Callable:
    """triton.jit(**options), or no decoration without triton."""
    return (lambda fn: fn) if triton is None else triton.jit(**options)


@_jit()
def _gather(X, x_stride, rows, row_ok, cols, col_ok):
    """Columns ``cols`` of rows ``rows`` of X: [BLOCK_B, BLOCK_K], zero where masked."""
    return tl.load(
        X + rows[:, None] * x_stride + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0
    )


@_jit()
def _mm(a, b):
    """a @ b in the inputs' precision: "ieee" keeps float32 from being rounded to TF32."""
    return tl.dot(a, b, input_precision="ieee", out_dtype=a.dtype)


@_jit()
def _relu(z):
    # NaN stays NaN (as torch.relu), so a diverged replica's loss shows it.
    return tl.maximum(z, 0.0, propagate_nan=tl.PropagateNan.ALL)


@_jit()
def _div_ieee(a, b):
    """a / b correctly rounded, as torch's (Triton's float32 '/' is approximate; float64's is not)."""
    return tl.div_rn(a, b) if a.dtype == tl.float32 else a / b


@_jit()
def _sqrt_ieee(x):
    """sqrt(x) correctly rounded, as torch's (Triton's float32 sqrt is approximate)."""
    return tl.sqrt_rn(x) if x.dtype == tl.float32 else tl.sqrt(x)


@_jit()
def _first_argmax(z, cols, CP: tl.constexpr):
    """torch.argmax over axis 1: the first maximal column, or the first NaN if there is one."""
    first_nan = tl.min(tl.where(z != z, cols[None, :], CP), 1)
    first_max = tl.min(tl.where(z == tl.max(z, 1)[:, None], cols[None, :], CP), 1)
    return tl.where(first_nan < CP, first_nan, first_max).to(tl.int64)


@_jit()
def _update(
    p_at, q_at, v_at, mask, grad, lr, bc2_sqrt, mom, wd, beta1c, beta2, beta2c, eps,
    OPT: tl.constexpr, DECAY: tl.constexpr,
):  # fmt: skip
    """One optimizer step of the parameter tile at ``p_at`` with gradient ``grad``, in the
    order of operations torch.optim uses; stores the parameter and its state (``q``: momentum
    buffer or Adam's first moment, ``v``: Adam's second) and returns the new parameter tile.
    ``lr`` is Adam's step size lr / (1 - beta1^t); ``beta1c``, ``beta2c``: 1 - beta1, 1 - beta2."""
    p = tl.load(p_at, mask=mask, other=0.0)
    if DECAY:
        grad = grad + wd * p
    if OPT == 0:  # SGD
        p = p - lr * grad
    elif OPT == 1:  # SGD with momentum: a zero buffer makes the first step's buf = grad, as torch's
        q = tl.load(q_at, mask=mask, other=0.0) * mom + grad
        tl.store(q_at, q, mask=mask)
        p = p - lr * q
    else:  # Adam: m.lerp_(grad, 1 - beta1), v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m = tl.load(q_at, mask=mask, other=0.0)
        m = m + beta1c * (grad - m)
        v = tl.load(v_at, mask=mask, other=0.0) * beta2 + beta2c * grad * grad
        tl.store(q_at, m, mask=mask)
        tl.store(v_at, v, mask=mask)
        p = p - lr * _div_ieee(m, _div_ieee(_sqrt_ieee(v), bc2_sqrt) + eps)
    tl.store(p_at, p, mask=mask)
    return p


# S, R and B change from call to call (the last batch is smaller): one compiled variant for all.
@_jit(do_not_specialize=["S", "R", "B"])
def fused_kernel(
    W0, b0, S1, S2, Q0, Q1, Q2, Q3, V0, V1, V2, V3,  # parameters, momenta or first moments, second moments
    X, x_stride, idx, y, coef, hyper, picked, pred, S, R, B,
    F: tl.constexpr, H1: tl.constexpr, H2: tl.constexpr, C: tl.constexpr,
    H1P: tl.constexpr, H2P: tl.constexpr, CP: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
    OPT: tl.constexpr, DECAY: tl.constexpr,
):  # fmt: skip
    """Program r: S steps of replica r. ``coef`` [S, R, 2] float64: (lr, or Adam's step size; Adam's
    sqrt(1 - beta2^t)); ``hyper`` float64: momentum, weight decay, 1 - beta1, beta2, 1 - beta2, eps,
    1 / B."""
    r = tl.program_id(0).to(tl.int64)
    DT = W0.dtype.element_ty
    ob = tl.arange(0, BLOCK_B)
    ok = ob < B
    ok_ = tl.arange(0, BLOCK_K)
    o1 = tl.arange(0, H1P)
    o2 = tl.arange(0, H2P)
    oc = tl.arange(0, CP)
    m1 = o1 < H1
    m2 = o2 < H2
    mc = oc < C
    # Offsets of replica r's parameters (and of its state, which has the same shapes).
    w0_at = r * F * H1
    b0_at = r * H1 + o1
    w1_at = r * (H1 + 1) * H2 + o1[:, None] * H2 + o2[None, :]
    b1_at = r * (H1 + 1) * H2 + H1 * H2 + o2
    w2_at = r * (H2 + 1) * C + o2[:, None] * C + oc[None, :]
    b2_at = r * (H2 + 1) * C + H2 * C + oc
    w1_ok = m1[:, None] & m2[None, :]
    w2_ok = m2[:, None] & mc[None, :]
    mom = tl.load(hyper).to(DT)
    wd = tl.load(hyper + 1).to(DT)
    beta1c = tl.load(hyper + 2).to(DT)
    beta2 = tl.load(hyper + 3).to(DT)
    beta2c = tl.load(hyper + 4).to(DT)
    eps = tl.load(hyper + 5).to(DT)
    inv_b = tl.load(hyper + 6).to(DT)

    # Layer 0's pre-activation for step 0; each later step's comes out of the W0 pass before it.
    rows = tl.load(idx + r * B + ob, mask=ok, other=0)
    acc = tl.zeros([BLOCK_B, H1P], dtype=DT)
    for k0 in range(0, F, BLOCK_K):
        kk = k0 + ok_
        km = kk < F
        w = tl.load(W0 + w0_at + kk[:, None] * H1 + o1[None, :], mask=km[:, None] & m1[None, :], other=0.0)
        acc = tl.dot(_gather(X, x_stride, rows, ok, kk, km), w, acc, input_precision="ieee")
    z0 = acc + tl.load(b0 + b0_at, mask=m1, other=0.0)[None, :]

    for s in range(S):
        at = (s * R + r) * B  # this step's row of idx, y, picked and pred
        lr = tl.load(coef + 2 * (s * R + r)).to(DT)
        bc2_sqrt = tl.load(coef + 2 * (s * R + r) + 1).to(DT)
        yv = tl.load(y + at + ob, mask=ok, other=0)

        # Forward. Padded units are 0 (zero weights), padded classes -inf (out of the softmax).
        h1 = _relu(z0)
        W1 = tl.load(S1 + w1_at, mask=w1_ok, other=0.0)
        h2 = _relu(_mm(h1, W1) + tl.load(S1 + b1_at, mask=m2, other=0.0)[None, :])
        W2 = tl.load(S2 + w2_at, mask=w2_ok, other=0.0)
        z2 = _mm(h2, W2) + tl.load(S2 + b2_at, mask=mc, other=0.0)[None, :]
        z2 = tl.where(mc[None, :], z2, float("-inf"))
        # log-softmax as torch computes it: (z - max) - log(sum(exp(z - max))).
        shifted = z2 - tl.max(z2, 1)[:, None]
        logp = shifted - tl.log(tl.sum(tl.exp(shifted), 1))[:, None]
        hit = oc[None, :] == yv[:, None]
        tl.store(picked + at + ob, tl.sum(tl.where(hit, logp, 0.0), 1), mask=ok)
        tl.store(pred + at + ob, _first_argmax(z2, oc, CP), mask=ok)

        # Backward of the mean cross-entropy: (softmax - onehot) / B as torch forms it, zero on
        # padded rows, so those add nothing to any gradient below.
        g2 = tl.exp(logp) * inv_b
        g2 = tl.where(ok[:, None] & mc[None, :], tl.where(hit, g2 - inv_b, g2), 0.0)
        g1 = tl.where(h2 > 0, _mm(g2, tl.trans(W2)), 0.0)  # W2 before its update
        g0 = tl.where(h1 > 0, _mm(g1, tl.trans(W1)), 0.0)

        # Updates. Each stored value depends on the loaded one, so within a step no thread can
        # store a parameter before the thread that loaded it has read it.
        args = (lr, bc2_sqrt, mom, wd, beta1c, beta2, beta2c, eps, OPT, DECAY)
        _update(S2 + w2_at, Q3 + w2_at, V3 + w2_at, w2_ok, _mm(tl.trans(h2), g2), *args)
        _update(S2 + b2_at, Q3 + b2_at, V3 + b2_at, mc, tl.sum(g2, 0), *args)
        _update(S1 + w1_at, Q2 + w1_at, V2 + w1_at, w1_ok, _mm(tl.trans(h1), g1), *args)
        _update(S1 + b1_at, Q2 + b1_at, V2 + b1_at, m2, tl.sum(g1, 0), *args)
        b0_new = _update(b0 + b0_at, Q1 + b0_at, V1 + b0_at, m1, tl.sum(g0, 0), *args)

        # The W0 pass: update each row tile of W0 with x^T g0 and, in the same pass, multiply the
        # next step's batch by the updated tile (no next step: all rows masked, nothing is read).
        rows = tl.load(idx + at + ob, mask=ok, other=0)
        ok_next = ok & (s + 1 < S)
        rows_next = tl.load(idx + at + R * B + ob, mask=ok_next, other=0)
        acc = tl.zeros([BLOCK_B, H1P], dtype=DT)
        for k0 in range(0, F, BLOCK_K):
            kk = k0 + ok_
            km = kk < F
            w_at = w0_at + kk[:, None] * H1 + o1[None, :]
            grad = _mm(tl.trans(_gather(X, x_stride, rows, ok, kk, km)), g0)
            w = _update(W0 + w_at, Q0 + w_at, V0 + w_at, km[:, None] & m1[None, :], grad, *args)
            acc = tl.dot(_gather(X, x_stride, rows_next, ok_next, kk, km), w, acc, input_precision="ieee")
        z0 = acc + b0_new[None, :]
        # Step s + 1 loads what step s stored, and a thread may load another thread's store:
        # on a GPU only a barrier makes those stores visible (the interpreter has one thread).
        tl.debug_barrier()


def interpreted() -> bool:
    """Whether the kernel runs in Triton's interpreter (TRITON_INTERPRET=1 at import, see above)."""
    return triton is not None and isinstance(fused_kernel, InterpretedFunction)
