"""The CUDA back end: ``numba.cuda`` kernels with the launcher interface of
:mod:`graphengine.kernels.cpu` (same arguments, same algorithm, same tie-breaking).

One thread per output element; the contracted index is scanned in ascending order and only a
strictly better candidate replaces the incumbent, so positions (and, for the selective and
counting semirings, values) equal the CPU kernels' and the numpy reference's. Segment
reductions (scatters) are deterministic: the host sorts the targets stably and one thread
reduces each segment in ascending order, with no atomics.

Each launcher copies its inputs to the device and its outputs back (the engine keeps values on
the host between ops). Works in the Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before
``numba.cuda`` is first imported), which is how the tests run it; the built-in ``numba.cuda``
of numba 0.68 and the ``numba-cuda`` package (the ``cuda`` extra) both provide it.

The linear kernels (``matmul_sum``, ``scatter_sum``, the dense blocks) also take float32 values
(``real:float32``...): Numba compiles a float32 specialisation on first use; each thread sums in
float64 registers and stores float32.

k-best kernels keep their lists in per-thread local arrays of at most :data:`MAX_K` entries;
larger k runs on the CPU kernels. The scalar steps (the pair's ⊗, a dense block's entry, the
selection rule, the log-sum-exp shift, the k-best list operations) are the helpers of
:mod:`graphengine.kernels.scalar`, compiled here as device functions from the same Python
functions the CPU kernels compile.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GraphEngineError
from . import scalar

NAME = "cuda"
HOST_LINEAR = False
MAX_K = 8
THREADS = 64

try:  # numba.cuda is importable without a GPU; is_available() says whether kernels can run
    from numba import cuda
except Exception as exc:  # pragma: no cover - depends on the installation
    cuda = None
    _IMPORT_ERROR = exc
else:
    _IMPORT_ERROR = None


def available() -> bool:
    """True when CUDA kernels can run: a usable GPU, or the Numba CUDA simulator."""
    if cuda is None:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # pragma: no cover
        return False


def require() -> None:
    if not available():
        why = f" ({_IMPORT_ERROR})" if _IMPORT_ERROR is not None else ""
        raise DeviceUnavailable("device 'cuda' is not available: numba.cuda found no usable GPU" + why +
                                "; use device='cpu', or set NUMBA_ENABLE_CUDASIM=1 to run the CUDA kernels "
                                "in the Numba simulator")


class DeviceUnavailable(GraphEngineError):
    """CUDA was requested but no GPU (and no simulator) is available."""


def _grid(n: int):
    return (max(1, (n + THREADS - 1) // THREADS), THREADS)


def _run(kernel, n, args, outs):
    """Launch ``kernel`` over ``n`` threads; ``outs`` are the indices of output arrays in
    ``args`` (copied back into the caller's numpy arrays)."""
    if n == 0:
        return
    dev = [cuda.to_device(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x for x in args]
    kernel[_grid(n)](*dev)
    for i in outs:
        args[i][...] = dev[i].copy_to_host()


if cuda is not None:
    _entry = scalar.on_cuda().dense_entry
    _pair = scalar.on_cuda().pair_times
    _reached = scalar.on_cuda().pair_reached
    _improves = scalar.on_cuda().improves
    _select_row = scalar.on_cuda().select_row
    _shift = scalar.on_cuda().finite_or_zero
    _shifted_log = scalar.on_cuda().shifted_log
    _logsumexp_row = scalar.on_cuda().logsumexp_row
    _kbest_select_row = scalar.on_cuda().kbest_select_row
    _kbest_select_products = scalar.on_cuda().kbest_select_products
    _kbest_select_segment = scalar.on_cuda().kbest_select_segment

    # ------------------------------------------------------------ selective contractions
    @cuda.jit
    def _matmul_pair(a0, a1, w, ia, iw, o0, o1, p0, p1):
        t = cuda.grid(1)
        B, M, K = o0.shape
        if t >= B * M * K:
            return
        b = t // (M * K)
        m = (t // K) % M
        k = t % K
        x0 = a0[ia[b], m]
        x1 = a1[ia[b], m]
        W = w[iw[b]]
        hb, lb, hp, lp = -math.inf, math.inf, 0, 0
        for n in range(a0.shape[2]):
            h = x0[n]
            lo = x1[n]
            if not _reached(h, lo):
                continue
            u, v = _pair(h, lo, W[n, k])
            if u > hb:
                hb, hp = u, n
            if v < lb:
                lb, lp = v, n
        o0[b, m, k], o1[b, m, k], p0[b, m, k], p1[b, m, k] = hb, lb, hp, lp

    @cuda.jit
    def _matmul_max(a, w, ia, iw, plus, o, p):
        t = cuda.grid(1)
        B, M, K = o.shape
        if t >= B * M * K:
            return
        b = t // (M * K)
        m = (t // K) % M
        k = t % K
        best, pos = -math.inf, 0
        for n in range(a.shape[2]):
            x = a[ia[b], m, n]
            if x == -math.inf:
                continue
            u = x + w[iw[b], n, k] if plus else x * w[iw[b], n, k]
            if u > best:
                best, pos = u, n
        o[b, m, k], p[b, m, k] = best, pos

    @cuda.jit
    def _select_last(a, sign, o, p):
        r = cuda.grid(1)
        if r >= a.shape[0]:
            return
        o[r], p[r] = _select_row(a[r], sign)

    @cuda.jit
    def _segment_select(values, order, starts, sign, zero, o, p):
        s = cuda.grid(1)
        if s >= o.shape[0]:
            return
        best, pos = zero, -1
        for t in range(starts[s], starts[s + 1]):
            j = order[t]
            v = values[j]
            if pos < 0 or _improves(v, best, sign):
                best, pos = v, j
        o[s], p[s] = best, pos

    @cuda.jit
    def _block_pair(a0, a1, d, u, v, o0, o1, p0, p1):
        t = cuda.grid(1)
        B, n = a0.shape
        if t >= B * n:
            return
        b, c = t // n, t % n
        hb, lb, hp, lp = -math.inf, math.inf, 0, 0
        for r in range(n):
            h = a0[b, r]
            lo = a1[b, r]
            if not _reached(h, lo):
                continue
            x, y = _pair(h, lo, _entry(d, u, v, b, r, c))
            if x > hb:
                hb, hp = x, r
            if y < lb:
                lb, lp = y, r
        o0[b, c], o1[b, c], p0[b, c], p1[b, c] = hb, lb, hp, lp

    @cuda.jit
    def _block_maxabs(a, d, u, v, o, p):
        t = cuda.grid(1)
        B, n = a.shape
        if t >= B * n:
            return
        b, c = t // n, t % n
        best, pos = -math.inf, 0
        for r in range(n):
            x = a[b, r]
            if x == -math.inf:
                continue
            y = x * abs(_entry(d, u, v, b, r, c))
            if y > best:
                best, pos = y, r
        o[b, c], p[b, c] = best, pos

    @cuda.jit
    def _scale_pair(a0, a1, w, hi, lo):
        i = cuda.grid(1)
        if i >= hi.shape[0]:
            return
        h = a0[i]
        if not _reached(h, a1[i]):
            hi[i], lo[i] = -math.inf, math.inf
            return
        hi[i], lo[i] = _pair(h, a1[i], w[i])

    # ------------------------------------------------------------ linear
    @cuda.jit
    def _matmul_sum(a, w, ia, iw, o):
        t = cuda.grid(1)
        B, M, K = o.shape
        if t >= B * M * K:
            return
        b = t // (M * K)
        m = (t // K) % M
        k = t % K
        s = 0.0
        for n in range(a.shape[2]):
            s += a[ia[b], m, n] * w[iw[b], n, k]
        o[b, m, k] = s

    @cuda.jit
    def _segment_sum(values, order, starts, o):
        s = cuda.grid(1)
        if s >= o.shape[0]:
            return
        acc = 0.0
        for t in range(starts[s], starts[s + 1]):
            acc += values[order[t]]
        o[s] = acc

    @cuda.jit
    def _block_real(a, d, u, v, o):
        t = cuda.grid(1)
        B, n = a.shape
        if t >= B * n:
            return
        b, c = t // n, t % n
        s = 0.0
        for r in range(n):
            s += a[b, r] * _entry(d, u, v, b, r, c)
        o[b, c] = s

    @cuda.jit
    def _block_entropy(z, r, d, u, v, oz, orr):
        t = cuda.grid(1)
        B, n = z.shape
        if t >= B * n:
            return
        b, c = t // n, t % n
        sz, s1, s2 = 0.0, 0.0, 0.0
        for i in range(n):
            aj = abs(_entry(d, u, v, b, i, c))
            sz += z[b, i] * aj
            s1 += r[b, i] * aj
            if aj > 0.0:
                s2 += z[b, i] * (-aj * math.log(aj))
        oz[b, c] = sz
        orr[b, c] = s1 + s2

    @cuda.jit
    def _block_absolute(z, d, u, v, oz):
        t = cuda.grid(1)
        B, n = z.shape
        if t >= B * n:
            return
        b, c = t // n, t % n
        sz = 0.0
        for i in range(n):
            sz += z[b, i] * abs(_entry(d, u, v, b, i, c))
        oz[b, c] = sz

    # ------------------------------------------------------------ log space
    @cuda.jit
    def _logsumexp_last(a, o):
        r = cuda.grid(1)
        if r >= a.shape[0]:
            return
        o[r] = _logsumexp_row(a[r])

    @cuda.jit
    def _matmul_log(l, h, lw, hw, ia, iw, with_h, ol, oh):
        t = cuda.grid(1)
        B, M, K = ol.shape
        if t >= B * M * K:
            return
        b = t // (M * K)
        m = (t // K) % M
        k = t % K
        x = l[ia[b], m]
        W = lw[iw[b]]
        mx = -math.inf
        for n in range(x.shape[0]):
            if x[n] == -math.inf:
                continue
            q = x[n] + W[n, k]
            if q > mx:
                mx = q
        safe = _shift(mx)
        s = 0.0
        for n in range(x.shape[0]):
            if x[n] == -math.inf:
                continue
            s += math.exp(x[n] + W[n, k] - safe)
        out = _shifted_log(safe, s)
        ol[b, m, k] = out
        if with_h:
            fin = math.isfinite(out)
            safe = _shift(out)
            acc = 0.0
            for n in range(x.shape[0]):
                if x[n] == -math.inf:
                    continue
                acc += math.exp(x[n] + W[n, k] - safe) * (h[ia[b], m, n] + hw[iw[b], n, k])
            oh[b, m, k] = acc if fin else 0.0

    @cuda.jit
    def _segment_logsumexp(values, order, starts, o, mx, sums):
        s = cuda.grid(1)
        if s >= o.shape[0]:
            return
        m = -math.inf
        for t in range(starts[s], starts[s + 1]):
            if values[order[t]] > m:
                m = values[order[t]]
        safe = _shift(m)
        acc = 0.0
        for t in range(starts[s], starts[s + 1]):
            acc += math.exp(values[order[t]] - safe)
        o[s] = safe + math.log(acc) if math.isfinite(m) else -math.inf
        mx[s] = m
        sums[s] = acc

    # ------------------------------------------------------------ k-best
    @cuda.jit
    def _kbest_rows(cand, pres, k, signed, o, p):
        r = cuda.grid(1)
        if r >= cand.shape[0]:
            return
        _kbest_select_row(cand[r], pres[r], k, signed, cuda.local.array(MAX_K, np.float64),
                          cuda.local.array(MAX_K, np.int64), cuda.local.array(2 * MAX_K, np.float64),
                          cuda.local.array(2 * MAX_K, np.int64), cuda.local.array(2, np.int64), o[r], p[r])

    @cuda.jit
    def _kbest_matmul(cand, w, ia, iw, k, signed, o, p):
        t = cuda.grid(1)
        B, M, K = o.shape[0], o.shape[1], o.shape[2]
        if t >= B * M * K:
            return
        b = t // (M * K)
        m = (t // K) % M
        kk = t % K
        _kbest_select_products(cand[ia[b], m], w[iw[b]], kk, k, signed, cuda.local.array(MAX_K, np.float64),
                               cuda.local.array(MAX_K, np.int64), cuda.local.array(2 * MAX_K, np.float64),
                               cuda.local.array(2 * MAX_K, np.int64), cuda.local.array(2, np.int64),
                               o[b, m, kk], p[b, m, kk])

    @cuda.jit
    def _kbest_scatter(cand, order, starts, k, signed, o, p):
        s = cuda.grid(1)
        if s >= o.shape[0]:
            return
        _kbest_select_segment(cand, order, starts[s], starts[s + 1], k, signed, cuda.local.array(MAX_K, np.float64),
                              cuda.local.array(MAX_K, np.int64), cuda.local.array(2 * MAX_K, np.float64),
                              cuda.local.array(2 * MAX_K, np.int64), cuda.local.array(2, np.int64), o[s], p[s])


# ================================================================ launchers (CPU interface)
def _segments(index, size):
    order = np.argsort(index, kind="stable").astype(np.int64)
    starts = np.zeros(size + 1, np.int64)
    np.cumsum(np.bincount(index, minlength=size), out=starts[1:])
    return order, starts


def matmul_pair(a0, a1, w, ia, iw, o0, o1, p0, p1):
    _run(_matmul_pair, o0.size, [a0, a1, w, ia, iw, o0, o1, p0, p1], (5, 6, 7, 8))


def matmul_max(a, w, ia, iw, plus, o, p):
    _run(_matmul_max, o.size, [a, w, ia, iw, bool(plus), o, p], (5, 6))


def select_last(a, sign, o, p):
    _run(_select_last, a.shape[0], [a, int(sign), o, p], (2, 3))


def scatter_select(values, index, sign, zero, o, p):
    order, starts = _segments(index, o.shape[0])
    _run(_segment_select, o.shape[0], [values, order, starts, int(sign), float(zero), o, p], (5, 6))


def block_pair(a0, a1, d, u, v, o0, o1, p0, p1):
    _run(_block_pair, a0.size, [a0, a1, d, u, v, o0, o1, p0, p1], (5, 6, 7, 8))


def block_maxabs(a, d, u, v, o, p):
    _run(_block_maxabs, a.size, [a, d, u, v, o, p], (4, 5))


def scale_pair(a0, a1, w):
    a0, a1, w = (np.ascontiguousarray(x, dtype=np.float64) for x in np.broadcast_arrays(a0, a1, w))
    hi, lo = np.empty(a0.shape), np.empty(a0.shape)
    args = [a0.reshape(-1), a1.reshape(-1), w.reshape(-1), hi.reshape(-1), lo.reshape(-1)]
    _run(_scale_pair, a0.size, args, (3, 4))
    return hi, lo


def matmul_sum(a, w, ia, iw, o):
    _run(_matmul_sum, o.size, [a, w, ia, iw, o], (4,))


def scatter_sum(values, index, o):
    order, starts = _segments(index, o.shape[0])
    _run(_segment_sum, o.shape[0], [values, order, starts, o], (3,))


def block_real(a, d, u, v, o):
    _run(_block_real, a.size, [a, d, u, v, o], (4,))


def block_entropy(z, r, d, u, v, oz, orr):
    _run(_block_entropy, z.size, [z, r, d, u, v, oz, orr], (5, 6))


def block_absolute(z, d, u, v, oz):
    _run(_block_absolute, z.size, [z, d, u, v, oz], (4,))


def logsumexp_last(a, o):
    _run(_logsumexp_last, a.shape[0], [a, o], (1,))


def matmul_logsumexp(a, lw, ia, iw, o):
    _run(_matmul_log, o.size, [a, a, lw, lw, ia, iw, False, o, o], (7,))


def matmul_logentropy(l, h, lw, hw, ia, iw, ol, oh):
    _run(_matmul_log, ol.size, [l, h, lw, hw, ia, iw, True, ol, oh], (7, 8))


def scatter_logsumexp(values, index, o, wts):
    order, starts = _segments(index, o.shape[0])
    mx, sums = np.empty(o.shape[0]), np.empty(o.shape[0])
    _run(_segment_logsumexp, o.shape[0], [values, order, starts, o, mx, sums], (3, 4, 5))
    safe = np.where(np.isfinite(mx), mx, 0.0)
    e = np.exp(values - safe[index])  # the per-element weights, as the reference forms them
    s = sums[index]
    wts[...] = np.where(s > 0, e / np.where(s > 0, s, 1.0), 0.0)


def _kbest_lists(kernel, name, n, inputs, k, signed, o, p):
    """Launch a k-best kernel over ``n`` outputs, or run the CPU kernel ``name`` when k is
    beyond the per-thread lists (:data:`MAX_K`)."""
    if k > MAX_K:
        from . import cpu
        getattr(cpu, name)(*inputs, k, signed, o, p)
        return
    args = list(inputs) + [int(k), bool(signed), o, p]
    _run(kernel, n, args, (len(args) - 2, len(args) - 1))


def kbest_rows(cand, pres, k, signed, o, p):
    _kbest_lists(_kbest_rows, "kbest_rows", o.shape[0], [cand, pres], k, signed, o, p)


def kbest_matmul(cand, w, ia, iw, k, signed, o, p):
    _kbest_lists(_kbest_matmul, "kbest_matmul", int(np.prod(o.shape[:3])), [cand, w, ia, iw], k, signed, o, p)


def kbest_scatter(cand, order, starts, k, signed, o, p):
    _kbest_lists(_kbest_scatter, "kbest_scatter", o.shape[0], [cand, order, starts], k, signed, o, p)
