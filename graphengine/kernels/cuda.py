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

k-best kernels keep their lists in per-thread local arrays of at most :data:`MAX_K` entries;
larger k runs on the CPU kernels.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GraphEngineError

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
            if h == -math.inf and lo == math.inf:
                continue
            wv = W[n, k]
            s = wv >= 0.0
            u = (h if s else lo) * wv
            v = (lo if s else h) * wv
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
        N = a.shape[1]
        best = -math.inf if sign > 0 else math.inf
        pos = 0
        if N > 0:
            best = a[r, 0]
        for n in range(1, N):
            v = a[r, n]
            if (v > best) if sign > 0 else (v < best):
                best, pos = v, n
        o[r], p[r] = best, pos

    @cuda.jit
    def _segment_select(values, order, starts, sign, zero, o, p):
        s = cuda.grid(1)
        if s >= o.shape[0]:
            return
        best, pos = zero, -1
        for t in range(starts[s], starts[s + 1]):
            j = order[t]
            v = values[j]
            if pos < 0 or ((v > best) if sign > 0 else (v < best)):
                best, pos = v, j
        o[s], p[s] = best, pos

    @cuda.jit(device=True)
    def _jentry(d, u, v, b, r, c):
        jv = d[b, r] if r == c else 0.0
        for t in range(u.shape[2]):
            jv = jv + u[b, r, t] * v[b, c, t]
        return jv

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
            if h == -math.inf and lo == math.inf:
                continue
            jv = _jentry(d, u, v, b, r, c)
            s = jv >= 0.0
            x = (h if s else lo) * jv
            y = (lo if s else h) * jv
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
            y = x * abs(_jentry(d, u, v, b, r, c))
            if y > best:
                best, pos = y, r
        o[b, c], p[b, c] = best, pos

    @cuda.jit
    def _scale_pair(a0, a1, w, hi, lo):
        i = cuda.grid(1)
        if i >= hi.shape[0]:
            return
        h = a0[i]
        if h == -math.inf and a1[i] == math.inf:
            hi[i], lo[i] = -math.inf, math.inf
            return
        wv = w[i]
        s = wv >= 0.0
        hi[i] = (h if s else a1[i]) * wv
        lo[i] = (a1[i] if s else h) * wv

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
            s += a[b, r] * _jentry(d, u, v, b, r, c)
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
            aj = abs(_jentry(d, u, v, b, i, c))
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
            sz += z[b, i] * abs(_jentry(d, u, v, b, i, c))
        oz[b, c] = sz

    # ------------------------------------------------------------ log space
    @cuda.jit
    def _logsumexp_last(a, o):
        r = cuda.grid(1)
        if r >= a.shape[0]:
            return
        m = -math.inf
        for n in range(a.shape[1]):
            if a[r, n] > m:
                m = a[r, n]
        safe = m if (m != math.inf and m != -math.inf) else 0.0
        s = 0.0
        for n in range(a.shape[1]):
            s += math.exp(a[r, n] - safe)
        o[r] = safe + math.log(s) if s > 0.0 else -math.inf

    @cuda.jit
    def _matmul_logentropy(l, h, lw, hw, ia, iw, with_h, ol, oh):
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
        safe = mx if (mx != math.inf and mx != -math.inf) else 0.0
        s = 0.0
        for n in range(x.shape[0]):
            if x[n] == -math.inf:
                continue
            s += math.exp(x[n] + W[n, k] - safe)
        out = safe + math.log(s) if s > 0.0 else -math.inf
        ol[b, m, k] = out
        if with_h:
            fin = out != math.inf and out != -math.inf
            safe = out if fin else 0.0
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
        fin = m != math.inf and m != -math.inf
        safe = m if fin else 0.0
        acc = 0.0
        for t in range(starts[s], starts[s + 1]):
            acc += math.exp(values[order[t]] - safe)
        o[s] = safe + math.log(acc) if fin else -math.inf
        mx[s] = m
        sums[s] = acc

    # ------------------------------------------------------------ k-best
    @cuda.jit(device=True)
    def _kpush(v, pos, k, signed, tv, tp, bv, bp, cnt):
        nt = cnt[0]
        i = nt
        while i > 0 and tv[i - 1] < v:
            i -= 1
        if i < k:
            j = nt if nt < k else k - 1
            while j > i:
                tv[j] = tv[j - 1]
                tp[j] = tp[j - 1]
                j -= 1
            tv[i] = v
            tp[i] = pos
            if nt < k:
                cnt[0] = nt + 1
        if signed:
            nb = cnt[1]
            i = nb
            while i > 0 and bv[i - 1] > v:
                i -= 1
            if i < 2 * k:
                j = nb if nb < 2 * k else 2 * k - 1
                while j > i:
                    bv[j] = bv[j - 1]
                    bp[j] = bp[j - 1]
                    j -= 1
                bv[i] = v
                bp[i] = pos
                if nb < 2 * k:
                    cnt[1] = nb + 1

    @cuda.jit(device=True)
    def _kfinish(k, signed, tv, tp, bv, bp, cnt, ov, op):
        nt = cnt[0]
        for i in range(k):
            if i < nt:
                ov[i] = tv[i]
                op[i] = -1 if tv[i] == -math.inf else tp[i]
            else:
                ov[i] = -math.inf
                op[i] = -1
        if signed:
            r = 0
            for i in range(cnt[1]):
                if r >= k:
                    break
                q = bp[i]
                taken = False
                for t in range(nt):
                    if tp[t] == q:
                        taken = True
                if not taken:
                    ov[k + r] = bv[i]
                    op[k + r] = -1 if bv[i] == math.inf else q
                    r += 1
            while r < k:
                ov[k + r] = math.inf
                op[k + r] = -1
                r += 1

    @cuda.jit
    def _kbest_rows(cand, pres, k, signed, o, p):
        r = cuda.grid(1)
        if r >= cand.shape[0]:
            return
        tv = cuda.local.array(MAX_K, np.float64)
        tp = cuda.local.array(MAX_K, np.int64)
        bv = cuda.local.array(2 * MAX_K, np.float64)
        bp = cuda.local.array(2 * MAX_K, np.int64)
        cnt = cuda.local.array(2, np.int64)
        cnt[0] = 0
        cnt[1] = 0
        for j in range(cand.shape[1]):
            if pres[r, j]:
                _kpush(cand[r, j], j, k, signed, tv, tp, bv, bp, cnt)
        _kfinish(k, signed, tv, tp, bv, bp, cnt, o[r], p[r])

    @cuda.jit
    def _kbest_matmul(cand, w, ia, iw, k, signed, o, p):
        t = cuda.grid(1)
        B, M, K = o.shape[0], o.shape[1], o.shape[2]
        if t >= B * M * K:
            return
        b = t // (M * K)
        m = (t // K) % M
        kk = t % K
        tv = cuda.local.array(MAX_K, np.float64)
        tp = cuda.local.array(MAX_K, np.int64)
        bv = cuda.local.array(2 * MAX_K, np.float64)
        bp = cuda.local.array(2 * MAX_K, np.int64)
        cnt = cuda.local.array(2, np.int64)
        cnt[0] = 0
        cnt[1] = 0
        C = cand.shape[3]
        for n in range(cand.shape[2]):
            wv = w[iw[b], n, kk]
            for c in range(C):
                xv = cand[ia[b], m, n, c]
                if xv != math.inf and xv != -math.inf and xv == xv:
                    _kpush(xv * wv, n * C + c, k, signed, tv, tp, bv, bp, cnt)
        _kfinish(k, signed, tv, tp, bv, bp, cnt, o[b, m, kk], p[b, m, kk])

    @cuda.jit
    def _kbest_scatter(cand, order, starts, k, signed, o, p):
        s = cuda.grid(1)
        if s >= o.shape[0]:
            return
        tv = cuda.local.array(MAX_K, np.float64)
        tp = cuda.local.array(MAX_K, np.int64)
        bv = cuda.local.array(2 * MAX_K, np.float64)
        bp = cuda.local.array(2 * MAX_K, np.int64)
        cnt = cuda.local.array(2, np.int64)
        cnt[0] = 0
        cnt[1] = 0
        C = cand.shape[1]
        for t in range(starts[s], starts[s + 1]):
            j = order[t]
            for c in range(C):
                xv = cand[j, c]
                if xv != math.inf and xv != -math.inf and xv == xv:
                    _kpush(xv, j * C + c, k, signed, tv, tp, bv, bp, cnt)
        _kfinish(k, signed, tv, tp, bv, bp, cnt, o[s], p[s])


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
    _run(_matmul_logentropy, o.size, [a, a, lw, lw, ia, iw, False, o, np.empty_like(o)], (7,))


def matmul_logentropy(l, h, lw, hw, ia, iw, ol, oh):
    _run(_matmul_logentropy, ol.size, [l, h, lw, hw, ia, iw, True, ol, oh], (7, 8))


def scatter_logsumexp(values, index, o, wts):
    order, starts = _segments(index, o.shape[0])
    mx, sums = np.empty(o.shape[0]), np.empty(o.shape[0])
    _run(_segment_logsumexp, o.shape[0], [values, order, starts, o, mx, sums], (3, 4, 5))
    safe = np.where(np.isfinite(mx), mx, 0.0)
    e = np.exp(values - safe[index])  # the per-element weights, as the reference forms them
    s = sums[index]
    wts[...] = np.where(s > 0, e / np.where(s > 0, s, 1.0), 0.0)


def _kbest_or_cpu(name):
    from . import cpu_kbest

    def launcher(*args):
        k = args[-4]
        if k > MAX_K:
            return getattr(cpu_kbest, name)(*args)
        kernel = {"kbest_rows": _kbest_rows, "kbest_matmul": _kbest_matmul, "kbest_scatter": _kbest_scatter}[name]
        out = args[-2]
        n = out.shape[0] if name != "kbest_matmul" else int(np.prod(out.shape[:3]))
        _run(kernel, n, list(args[:-4]) + [int(k), bool(args[-3]), args[-2], args[-1]],
             (len(args) - 2, len(args) - 1))
    launcher.__name__ = name
    return launcher


kbest_rows = _kbest_or_cpu("kbest_rows")
kbest_matmul = _kbest_or_cpu("kbest_matmul")


def kbest_scatter(cand, order, starts, k, signed, o, p):
    _kbest_or_cpu("kbest_scatter")(cand, order, starts, k, signed, o, p)
