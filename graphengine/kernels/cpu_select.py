"""Numba CPU kernels for the selective semirings: argmax-tracking contractions, reductions and
scatters for the signed max pair (⟨M⁺, M⁻⟩), max-abs, max-plus and
Boolean semirings.

Conventions shared by every kernel here (and by the CUDA back end, :mod:`graphengine.kernels.cuda`):

- values are float64, positions int64 (the pair contraction's weights may be float32, a torch
  model's, widened exactly in each product); outputs are preallocated by the caller;
- a contraction takes ``a (Ba, M, N)``, ``w (Bw, N, K)`` and index maps ``ia``, ``iw`` (length
  ``B``) giving, for output batch ``b``, the batch of ``a`` and of ``w`` to use, so broadcast
  batch dims are never materialized;
- ties keep the lowest index (candidates are scanned in ascending order and only a strictly
  better one replaces the incumbent); a reduction over nothing but 0̄ gives 0̄ at position 0,
  exactly as ``numpy.argmax`` does in the reference;
- 0̄ (``-inf``; ``⟨-inf, +inf⟩`` for the pair, whose ``⟨-inf, -inf⟩`` is a path) entries of the
  adjoint never win: a contraction skips the contracted positions where a whole block of rows
  is 0̄, and a 0̄ entry among live ones only forms products (-inf or NaN) that cannot win;
  NaN never wins a selection (only a strictly better candidate replaces the incumbent);
- no fastmath: the products are the same IEEE operations as the numpy reference, so values and
  positions are bit-identical to it.

The contraction kernels are register-blocked and cache-tiled: a block of ``MR`` = 4 output rows
takes the contracted rows four at a time, and a column loop folds the four products into the
running best and its position by compare-and-blend (no branch, so the loop vectorises): the
four rows in one loop for max-abs and max-plus, one row per loop with both components for the
pair (more arrays would exceed the vectoriser's run-time alias checks); the running bests live in a
``KTILE``-column buffer in L1, and a group of blocks reads each ``NPANEL``-row panel of the
weights while it is in L2. Parallel jobs (``prange``) are groups of row blocks; every output
element is computed by one job in the same order, so results do not depend on the thread count.
The scalar steps (the pair's ⊗, a dense block's entry, the selection rule) are the helpers of
:mod:`graphengine.kernels.scalar`, shared with the CUDA kernels.

>>> import numpy as np
>>> a = np.array([[[2.0, -3.0]]]); w = np.array([[[1.0], [-1.0]]])
>>> o0 = np.empty((1, 1, 1)); o1 = np.empty_like(o0); p0 = np.empty((1, 1, 1), np.int64); p1 = p0.copy()
>>> z = np.zeros(1, np.int64)
>>> matmul_pair(a, a, w, z, z, o0, o1, p0, p1, 1)   # jobs of one row block (group_size)
>>> float(o0[0, 0, 0]), int(p0[0, 0, 0]), float(o1[0, 0, 0]), int(p1[0, 0, 0])
(3.0, 1, 2.0, 0)
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .cache import njit, vectorize
from .scalar import on_cpu

MR = 4  # output rows per register block: each loaded weight serves four rows
KTILE = 256  # output columns per tile: the block's running bests and positions stay in L1
NPANEL = 256  # contracted rows per panel: a KTILE-wide panel of w stays in L2 while a group of blocks reads it
GROUP = 16  # register blocks per parallel job at most (they share the panels)

_pair = on_cpu().pair_times
_reached = on_cpu().pair_reached
_improves = on_cpu().improves
_select_row = on_cpu().select_row


@njit(inline="always")
def _take(x, ix, u, n, sign):
    """The running best ``x`` at ``ix`` after candidate ``u`` at position ``n`` (after the
    earlier ones): compare and blend, no branch, so the column loop vectorises."""
    g = _improves(u, x, sign)
    return (u if g else x), (n if g else ix)


@njit(inline="always")
def _take4(x, ix, u0, u1, u2, u3, n0, n1, n2, n3, sign):
    """:func:`_take` of four candidates at ascending positions, in order: ties keep the
    earliest, NaN never wins."""
    x, ix = _take(x, ix, u0, n0, sign)
    x, ix = _take(x, ix, u1, n1, sign)
    x, ix = _take(x, ix, u2, n2, sign)
    return _take(x, ix, u3, n3, sign)


@njit(inline="always")
def _live_rows(A, m0, mc, live):
    """Into ``live``: the positions n where some row ``m0 .. m0 + mc - 1`` of ``A`` is not 0̄
    (-inf), ascending; returns their count."""
    L = 0
    for n in range(A.shape[1]):
        hit = False
        for i in range(mc):
            if A[m0 + i, n] != -np.inf:
                hit = True
        if hit:
            live[L] = n
            L += 1
    return L


@njit(inline="always")
def _live_pair_rows(A0, A1, m0, mc, live):
    """:func:`_live_rows` for pair rows ``⟨A0, A1⟩`` (0̄ is ``⟨-inf, +inf⟩``)."""
    L = 0
    for n in range(A0.shape[1]):
        hit = False
        for i in range(mc):
            if _reached(A0[m0 + i, n], A1[m0 + i, n]):
                hit = True
        if hit:
            live[L] = n
            L += 1
    return L


def group_size(M: int, threads: int) -> int:
    """Register blocks per parallel job of a contraction with ``M`` output rows: a job is a
    group of at most ``GROUP`` blocks of one batch that reads each panel of ``w`` once; groups
    shrink so every thread has work. Results do not depend on it.

    >>> group_size(1024, 1), group_size(32, 2)
    (16, 4)
    """
    blocks = (M + MR - 1) // MR
    return max(1, min(GROUP, (blocks + threads - 1) // threads))


@njit(inline="always")
def _groups(M, G):
    nb = (M + MR - 1) // MR
    return nb, (nb + G - 1) // G


@njit(inline="always")
def _job(job, ng, G, nb):
    """The batch of parallel job ``job`` and its row blocks ``g0 .. g1 - 1``."""
    b = job // ng
    g0 = (job - b * ng) * G
    return b, g0, min(nb, g0 + G)


@njit(inline="always")
def _live_lists(blocks, N):
    """Per row block: its live positions, their count, and how far the panels have used them."""
    return np.empty((blocks, N), np.int64), np.empty(blocks, np.int64), np.empty(blocks, np.int64)


@njit(inline="always")
def _rows(A, m0, mc):
    """The four rows of the block at ``m0`` with ``mc`` real rows; a partial block repeats its
    last row (computed again, never written)."""
    return A[m0], A[m0 + min(1, mc - 1)], A[m0 + min(2, mc - 1)], A[m0 + min(3, mc - 1)]


@njit(inline="always")
def _load(acc, pos, o, p, b, m0, mc, k0, T, first, zero):
    """A block's running bests for the columns ``k0 .. k0 + T - 1``: ``zero`` at position 0
    on the first panel (and for the repeated rows of a partial block), else where the previous
    panel left them in ``o``, ``p``."""
    for i in range(MR):
        for j in range(T):
            fresh = first or i >= mc
            acc[i, j] = zero if fresh else o[b, m0 + i, k0 + j]
            pos[i, j] = 0 if fresh else p[b, m0 + i, k0 + j]


@njit(inline="always")
def _store(acc, pos, o, p, b, m0, mc, k0, T):
    for i in range(mc):
        for j in range(T):
            o[b, m0 + i, k0 + j] = acc[i, j]
            p[b, m0 + i, k0 + j] = pos[i, j]


@njit(cache=True, parallel=True, boundscheck=False)
def matmul_max(a, w, ia, iw, plus, o, p, group):
    """``o = max_n a ⊗ w`` with ⊗ = × (``plus`` false: max-abs on lifted ``|w|``) or + (max-plus
    on lifted ``log|w|``), ``p`` the first winning n. Register-blocked (``MR`` output rows by
    four contracted rows per step of the vectorised column loop) and cache-tiled (``KTILE``
    columns, ``NPANEL`` contracted rows; jobs of ``group`` blocks, :func:`group_size`);
    positions where every row of a block is 0̄ (-inf) are skipped, and a 0̄ entry of a block's
    other rows never wins (``w`` ≥ 0 for ⊗ = ×, as the max-abs lift makes it)."""
    B, M, K = o.shape
    N = a.shape[2]
    G = group
    nb, ng = _groups(M, G)
    for job in prange(B * ng):
        b, g0, g1 = _job(job, ng, G, nb)
        A = a[ia[b]]
        W = w[iw[b]]
        live, count, cursor = _live_lists(g1 - g0, N)
        for q in range(g1 - g0):
            m0 = (g0 + q) * MR
            count[q] = _live_rows(A, m0, min(MR, M - m0), live[q])
        acc = np.empty((MR, KTILE))
        pos = np.empty((MR, KTILE), np.int64)
        c0, c1, c2, c3 = acc[0], acc[1], acc[2], acc[3]
        i0, i1, i2, i3 = pos[0], pos[1], pos[2], pos[3]
        for k0 in range(0, K, KTILE):
            k1 = min(K, k0 + KTILE)
            T = k1 - k0
            cursor[:] = 0
            for n0 in range(0, max(N, 1), NPANEL):
                n1 = min(N, n0 + NPANEL)
                for q in range(g1 - g0):
                    m0 = (g0 + q) * MR
                    mc = min(MR, M - m0)
                    _load(acc, pos, o, p, b, m0, mc, k0, T, n0 == 0, -np.inf)
                    x0, x1, x2, x3 = _rows(A, m0, mc)
                    lv = live[q]
                    L = count[q]
                    t = cursor[q]
                    while t + 4 <= L and lv[t + 3] < n1:
                        na, nb_, nc, nd = lv[t], lv[t + 1], lv[t + 2], lv[t + 3]
                        ra, rb, rc, rd = W[na, k0:k1], W[nb_, k0:k1], W[nc, k0:k1], W[nd, k0:k1]
                        a0, b0, e0, d0 = x0[na], x0[nb_], x0[nc], x0[nd]
                        a1, b1, e1, d1 = x1[na], x1[nb_], x1[nc], x1[nd]
                        a2, b2, e2, d2 = x2[na], x2[nb_], x2[nc], x2[nd]
                        a3, b3, e3, d3 = x3[na], x3[nb_], x3[nc], x3[nd]
                        if plus:  # the branch stays outside the column loop
                            for j in range(T):
                                wa, wb, wc, wd = ra[j], rb[j], rc[j], rd[j]
                                c0[j], i0[j] = _take4(c0[j], i0[j], a0 + wa, b0 + wb, e0 + wc, d0 + wd, na, nb_, nc, nd, 1)
                                c1[j], i1[j] = _take4(c1[j], i1[j], a1 + wa, b1 + wb, e1 + wc, d1 + wd, na, nb_, nc, nd, 1)
                                c2[j], i2[j] = _take4(c2[j], i2[j], a2 + wa, b2 + wb, e2 + wc, d2 + wd, na, nb_, nc, nd, 1)
                                c3[j], i3[j] = _take4(c3[j], i3[j], a3 + wa, b3 + wb, e3 + wc, d3 + wd, na, nb_, nc, nd, 1)
                        else:
                            for j in range(T):
                                wa, wb, wc, wd = ra[j], rb[j], rc[j], rd[j]
                                c0[j], i0[j] = _take4(c0[j], i0[j], a0 * wa, b0 * wb, e0 * wc, d0 * wd, na, nb_, nc, nd, 1)
                                c1[j], i1[j] = _take4(c1[j], i1[j], a1 * wa, b1 * wb, e1 * wc, d1 * wd, na, nb_, nc, nd, 1)
                                c2[j], i2[j] = _take4(c2[j], i2[j], a2 * wa, b2 * wb, e2 * wc, d2 * wd, na, nb_, nc, nd, 1)
                                c3[j], i3[j] = _take4(c3[j], i3[j], a3 * wa, b3 * wb, e3 * wc, d3 * wd, na, nb_, nc, nd, 1)
                        t += 4
                    while t < L and lv[t] < n1:
                        n = lv[t]
                        r = W[n, k0:k1]
                        for i in range(MR):
                            x = A[m0 + min(i, mc - 1), n]
                            ci = acc[i]
                            pi = pos[i]
                            for j in range(T):
                                ci[j], pi[j] = _take(ci[j], pi[j], x + r[j] if plus else x * r[j], n, 1)
                        t += 1
                    cursor[q] = t
                    _store(acc, pos, o, p, b, m0, mc, k0, T)


@njit(inline="always")
def _pair_row(x, y, ra, rb, rc, rd, na, nb_, nc, nd, h, l, hp, lp, T):
    """One step of :func:`matmul_pair` for the row ``⟨x, y⟩`` and the four contracted rows
    ``na < nb_ < nc < nd`` (weights ``ra .. rd``): both components in one vectorised column
    loop (eight arrays: within the vectoriser's budget of run-time alias checks)."""
    s0, s1, s2, s3 = x[na], x[nb_], x[nc], x[nd]
    t0, t1, t2, t3 = y[na], y[nb_], y[nc], y[nd]
    for j in range(T):
        e0, f0 = _pair(s0, t0, ra[j])
        e1, f1 = _pair(s1, t1, rb[j])
        e2, f2 = _pair(s2, t2, rc[j])
        e3, f3 = _pair(s3, t3, rd[j])
        h[j], hp[j] = _take4(h[j], hp[j], e0, e1, e2, e3, na, nb_, nc, nd, 1)
        l[j], lp[j] = _take4(l[j], lp[j], f0, f1, f2, f3, na, nb_, nc, nd, -1)


@njit(cache=True, parallel=True, boundscheck=False)
def matmul_pair(a0, a1, w, ia, iw, o0, o1, p0, p1, group):
    """Signed max pair: ``o0 = max_n src·w``, ``o1 = min_n src'·w`` where the source swaps
    (M⁺ ↔ M⁻) on negative weights; ``p0``/``p1`` the first winning n. Both components in one
    sweep, blocked and tiled as :func:`matmul_max`; positions where every pair of a block is 0̄
    are skipped (a 0̄ product never wins anyway)."""
    B, M, K = o0.shape
    N = a0.shape[2]
    G = group
    nb, ng = _groups(M, G)
    for job in prange(B * ng):
        b, g0, g1 = _job(job, ng, G, nb)
        H = a0[ia[b]]
        Lo = a1[ia[b]]
        W = w[iw[b]]
        live, count, cursor = _live_lists(g1 - g0, N)
        for q in range(g1 - g0):
            m0 = (g0 + q) * MR
            count[q] = _live_pair_rows(H, Lo, m0, min(MR, M - m0), live[q])
        hacc = np.empty((MR, KTILE))
        lacc = np.empty((MR, KTILE))
        hpos = np.empty((MR, KTILE), np.int64)
        lpos = np.empty((MR, KTILE), np.int64)
        h0, h1, h2, h3 = hacc[0], hacc[1], hacc[2], hacc[3]
        l0, l1, l2, l3 = lacc[0], lacc[1], lacc[2], lacc[3]
        hp0, hp1, hp2, hp3 = hpos[0], hpos[1], hpos[2], hpos[3]
        lp0, lp1, lp2, lp3 = lpos[0], lpos[1], lpos[2], lpos[3]
        for k0 in range(0, K, KTILE):
            k1 = min(K, k0 + KTILE)
            T = k1 - k0
            cursor[:] = 0
            for n0 in range(0, max(N, 1), NPANEL):
                n1 = min(N, n0 + NPANEL)
                for q in range(g1 - g0):
                    m0 = (g0 + q) * MR
                    mc = min(MR, M - m0)
                    _load(hacc, hpos, o0, p0, b, m0, mc, k0, T, n0 == 0, -np.inf)
                    _load(lacc, lpos, o1, p1, b, m0, mc, k0, T, n0 == 0, np.inf)
                    x0, x1, x2, x3 = _rows(H, m0, mc)
                    y0, y1, y2, y3 = _rows(Lo, m0, mc)
                    lv = live[q]
                    L = count[q]
                    t = cursor[q]
                    while t + 4 <= L and lv[t + 3] < n1:
                        na, nb_, nc, nd = lv[t], lv[t + 1], lv[t + 2], lv[t + 3]
                        ra, rb, rc, rd = W[na, k0:k1], W[nb_, k0:k1], W[nc, k0:k1], W[nd, k0:k1]
                        _pair_row(x0, y0, ra, rb, rc, rd, na, nb_, nc, nd, h0, l0, hp0, lp0, T)
                        _pair_row(x1, y1, ra, rb, rc, rd, na, nb_, nc, nd, h1, l1, hp1, lp1, T)
                        _pair_row(x2, y2, ra, rb, rc, rd, na, nb_, nc, nd, h2, l2, hp2, lp2, T)
                        _pair_row(x3, y3, ra, rb, rc, rd, na, nb_, nc, nd, h3, l3, hp3, lp3, T)
                        t += 4
                    while t < L and lv[t] < n1:
                        n = lv[t]
                        r = W[n, k0:k1]
                        for i in range(MR):
                            row = m0 + min(i, mc - 1)
                            hi, lo = H[row, n], Lo[row, n]
                            hc, lc, hq, lq = hacc[i], lacc[i], hpos[i], lpos[i]
                            for j in range(T):
                                e, f = _pair(hi, lo, r[j])
                                hc[j], hq[j] = _take(hc[j], hq[j], e, n, 1)
                                lc[j], lq[j] = _take(lc[j], lq[j], f, n, -1)
                        t += 1
                    cursor[q] = t
                    _store(hacc, hpos, o0, p0, b, m0, mc, k0, T)
                    _store(lacc, lpos, o1, p1, b, m0, mc, k0, T)


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
