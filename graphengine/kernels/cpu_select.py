"""Numba CPU kernels for the selective semirings: argmax-tracking contractions, reductions,
scatters and factored dense blocks for the signed max pair (⟨M⁺, M⁻⟩), max-abs, max-plus and
Boolean semirings.

Conventions shared by every kernel here (and by the CUDA back end, :mod:`graphengine.kernels.cuda`):

- values are float64, positions int64; outputs are preallocated by the caller;
- a contraction takes ``a (Ba, M, N)``, ``w (Bw, N, K)`` and index maps ``ia``, ``iw`` (length
  ``B``) giving, for output batch ``b``, the batch of ``a`` and of ``w`` to use, so broadcast
  batch dims are never materialized;
- ties keep the lowest index (candidates are scanned in ascending order and only a strictly
  better one replaces the incumbent); a reduction over nothing but 0̄ gives 0̄ at position 0,
  exactly as ``numpy.argmax`` does in the reference;
- 0̄ (``-inf``; ``⟨-inf, +inf⟩`` for the pair, whose ``⟨-inf, -inf⟩`` is a path) entries of the adjoint are skipped, so ``-inf · 0`` never
  produces NaN (the reference masks them the same way);
- no fastmath: the products are the same IEEE operations as the numpy reference, so values and
  positions are bit-identical to it.

The contraction kernels are register-blocked: live rows of the contracted dimension are taken
four at a time, a branch-free tournament picks the best of the four products per output column,
and only the winner is compared with the running best, which stays in a small tile buffer. The
scalar steps (the pair's ⊗, a dense block's entry, the selection rule) are the helpers of
:mod:`graphengine.kernels.scalar`, shared with the CUDA kernels.

>>> import numpy as np
>>> a = np.array([[[2.0, -3.0]]]); w = np.array([[[1.0], [-1.0]]])
>>> o0 = np.empty((1, 1, 1)); o1 = np.empty_like(o0); p0 = np.empty((1, 1, 1), np.int64); p1 = p0.copy()
>>> z = np.zeros(1, np.int64)
>>> matmul_pair(a, a, w, z, z, o0, o1, p0, p1)
>>> float(o0[0, 0, 0]), int(p0[0, 0, 0]), float(o1[0, 0, 0]), int(p1[0, 0, 0])
(3.0, 1, 2.0, 0)
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .cache import njit, vectorize
from .scalar import on_cpu

KTILE = 512  # output columns per tile: the running best and its positions stay in L1

_entry = on_cpu().dense_entry
_pair = on_cpu().pair_times
_reached = on_cpu().pair_reached
_improves = on_cpu().improves
_select_row = on_cpu().select_row


@njit(inline="always")
def _live_pair(x0, x1):
    """The positions of the pair entries ``⟨x0, x1⟩`` that are not 0̄, ascending, and their count."""
    live = np.empty(x0.shape[0], np.int64)
    L = 0
    for n in range(x0.shape[0]):
        if _reached(x0[n], x1[n]):
            live[L] = n
            L += 1
    return live, L


@njit(inline="always")
def _live(x):
    """The positions of the entries of ``x`` that are not 0̄ (-inf), ascending, and their count."""
    live = np.empty(x.shape[0], np.int64)
    L = 0
    for n in range(x.shape[0]):
        if x[n] != -np.inf:
            live[L] = n
            L += 1
    return live, L


@njit(inline="always")
def _best_of_four(u0, u1, u2, u3, n0, n1, n2, n3, sign):
    """The best of four candidates at ascending positions ``n0 < n1 < n2 < n3`` and its position:
    a branch-free tournament (selects, no jumps) in which ties keep the lower position."""
    c = _improves(u1, u0, sign)
    ua = u1 if c else u0
    na = n1 if c else n0
    c = _improves(u3, u2, sign)
    ub = u3 if c else u2
    nb = n3 if c else n2
    c = _improves(ub, ua, sign)
    return (ub if c else ua), (nb if c else na)


@njit(cache=True, parallel=True, boundscheck=False)
def matmul_pair(a0, a1, w, ia, iw, o0, o1, p0, p1):
    """Signed max pair: ``o0 = max_n src·w``, ``o1 = min_n src'·w`` where the source swaps
    (M⁺ ↔ M⁻) on negative weights; ``p0``/``p1`` the winning n."""
    B, M, K = o0.shape
    for row in prange(B * M):
        b = row // M
        m = row - b * M
        x0 = a0[ia[b], m]
        x1 = a1[ia[b], m]
        W = w[iw[b]]
        live, L = _live_pair(x0, x1)
        hb = np.empty(KTILE)
        lb = np.empty(KTILE)
        hp = np.empty(KTILE, np.int64)
        lp = np.empty(KTILE, np.int64)
        for k0 in range(0, K, KTILE):
            k1 = min(K, k0 + KTILE)
            T = k1 - k0
            for j in range(T):
                hb[j] = -np.inf
                lb[j] = np.inf
                hp[j] = 0
                lp[j] = 0
            t = 0
            while t + 4 <= L:
                n0, n1, n2, n3 = live[t], live[t + 1], live[t + 2], live[t + 3]
                h0, h1, h2, h3 = x0[n0], x0[n1], x0[n2], x0[n3]
                l0, l1, l2, l3 = x1[n0], x1[n1], x1[n2], x1[n3]
                r0, r1, r2, r3 = W[n0, k0:k1], W[n1, k0:k1], W[n2, k0:k1], W[n3, k0:k1]
                for j in range(T):
                    u0, v0 = _pair(h0, l0, r0[j])
                    u1, v1 = _pair(h1, l1, r1[j])
                    u2, v2 = _pair(h2, l2, r2[j])
                    u3, v3 = _pair(h3, l3, r3[j])
                    u, nu = _best_of_four(u0, u1, u2, u3, n0, n1, n2, n3, 1)
                    if u > hb[j]:
                        hb[j] = u
                        hp[j] = nu
                    v, nv = _best_of_four(v0, v1, v2, v3, n0, n1, n2, n3, -1)
                    if v < lb[j]:
                        lb[j] = v
                        lp[j] = nv
                t += 4
            while t < L:
                n = live[t]
                h = x0[n]
                lo = x1[n]
                r = W[n, k0:k1]
                for j in range(T):
                    u, v = _pair(h, lo, r[j])
                    if u > hb[j]:
                        hb[j] = u
                        hp[j] = n
                    if v < lb[j]:
                        lb[j] = v
                        lp[j] = n
                t += 1
            for j in range(T):
                o0[b, m, k0 + j] = hb[j]
                o1[b, m, k0 + j] = lb[j]
                p0[b, m, k0 + j] = hp[j]
                p1[b, m, k0 + j] = lp[j]


@njit(cache=True, parallel=True, boundscheck=False)
def matmul_max(a, w, ia, iw, plus, o, p):
    """``o = max_n a ⊗ w`` with ⊗ = × (``plus`` false: max-abs on lifted ``|w|``) or + (max-plus
    on lifted ``log|w|``); ``-inf`` entries of ``a`` are 0̄ and skipped."""
    B, M, K = o.shape
    for row in prange(B * M):
        b = row // M
        m = row - b * M
        x = a[ia[b], m]
        W = w[iw[b]]
        live, L = _live(x)
        bb = np.empty(KTILE)
        bp = np.empty(KTILE, np.int64)
        for k0 in range(0, K, KTILE):
            k1 = min(K, k0 + KTILE)
            T = k1 - k0
            for j in range(T):
                bb[j] = -np.inf
                bp[j] = 0
            t = 0
            while t + 4 <= L:
                n0, n1, n2, n3 = live[t], live[t + 1], live[t + 2], live[t + 3]
                q0, q1, q2, q3 = x[n0], x[n1], x[n2], x[n3]
                r0, r1, r2, r3 = W[n0, k0:k1], W[n1, k0:k1], W[n2, k0:k1], W[n3, k0:k1]
                if plus:  # the branch stays outside the column loop
                    for j in range(T):
                        u, nu = _best_of_four(q0 + r0[j], q1 + r1[j], q2 + r2[j], q3 + r3[j], n0, n1, n2, n3, 1)
                        if u > bb[j]:
                            bb[j] = u
                            bp[j] = nu
                else:
                    for j in range(T):
                        u, nu = _best_of_four(q0 * r0[j], q1 * r1[j], q2 * r2[j], q3 * r3[j], n0, n1, n2, n3, 1)
                        if u > bb[j]:
                            bb[j] = u
                            bp[j] = nu
                t += 4
            while t < L:
                n = live[t]
                q = x[n]
                r = W[n, k0:k1]
                for j in range(T):
                    u = q + r[j] if plus else q * r[j]
                    if u > bb[j]:
                        bb[j] = u
                        bp[j] = n
                t += 1
            for j in range(T):
                o[b, m, k0 + j] = bb[j]
                p[b, m, k0 + j] = bp[j]


@njit(cache=True, parallel=True, boundscheck=False)
def select_last(a, sign, o, p):
    """Per row of ``a (R, N)``: the max (``sign`` > 0) or min and its first position."""
    for r in prange(a.shape[0]):
        o[r], p[r] = _select_row(a[r], sign)


@njit(cache=True, boundscheck=False)
def scatter_select(values, index, sign, zero, o, p):
    """``o[s]`` = the max (``sign`` > 0) or min of ``values[index == s]``, ``p[s]`` its first
    position; ``zero`` and -1 for empty segments. One pass in ascending order."""
    for s in range(o.shape[0]):
        o[s] = zero
        p[s] = -1
    for j in range(values.shape[0]):
        s = index[j]
        v = values[j]
        if p[s] < 0 or _improves(v, o[s], sign):
            o[s] = v
            p[s] = j


@njit(cache=True, parallel=True, boundscheck=False)
def block_pair(a0, a1, d, u, v, o0, o1, p0, p1):
    """Signed max pair through factored blocks: for each batch row ``b`` and column c,
    ``⊕_r a[b, r] ⊗ J[b, r, c]`` with ``J = δ·d[b, r] + Σ_t u[b, r, t] v[b, c, t]`` evaluated
    on the fly (see :class:`graphengine.ir.jacobian.LowRankBlock`)."""
    B, n = a0.shape
    for b in prange(B):
        for c in range(n):
            o0[b, c] = -np.inf
            o1[b, c] = np.inf
            p0[b, c] = 0
            p1[b, c] = 0
        for r in range(n):
            h = a0[b, r]
            lo = a1[b, r]
            if not _reached(h, lo):
                continue
            for c in range(n):
                x, y = _pair(h, lo, _entry(d, u, v, b, r, c))
                if x > o0[b, c]:
                    o0[b, c] = x
                    p0[b, c] = r
                if y < o1[b, c]:
                    o1[b, c] = y
                    p1[b, c] = r


@njit(cache=True, parallel=True, boundscheck=False)
def block_maxabs(a, d, u, v, o, p):
    """Max-abs through factored blocks (``|J|`` evaluated on the fly)."""
    B, n = a.shape
    for b in prange(B):
        for c in range(n):
            o[b, c] = -np.inf
            p[b, c] = 0
        for r in range(n):
            x = a[b, r]
            if x == -np.inf:
                continue
            for c in range(n):
                y = x * abs(_entry(d, u, v, b, r, c))
                if y > o[b, c]:
                    o[b, c] = y
                    p[b, c] = r


@vectorize(["float64(float64, float64, float64)"], cache=True)
def scale_pair_hi(hi, lo, w):
    """M⁺ of ``⟨hi, lo⟩ ⊗ w`` (a numpy ufunc: broadcasts like the reference)."""
    if not _reached(hi, lo):
        return -math.inf
    return _pair(hi, lo, w)[0]


@vectorize(["float64(float64, float64, float64)"], cache=True)
def scale_pair_lo(hi, lo, w):
    """M⁻ of ``⟨hi, lo⟩ ⊗ w``."""
    if not _reached(hi, lo):
        return math.inf
    return _pair(hi, lo, w)[1]
