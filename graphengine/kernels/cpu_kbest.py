"""Numba CPU kernels for the k-best semirings (``kbest:K``, ``kbestabs:K``).

A k-best value has ``NC`` components: the k largest path products in descending order and, for
the signed variant, the k smallest of the remaining ones in ascending order (see
:mod:`graphengine.semirings.kbest`). Every operation is the same selection over a list of
candidate products: a candidate is *present* when its source value is finite; the top list is
ordered by (value desc, position asc), the rest list by (value asc, position asc) among the
candidates not in the top list. Candidates are scanned in ascending position and inserted into
a sorted top list of k and a sorted bottom list of 2k (the k smallest non-top candidates are
always among the 2k smallest overall), so no sort and no candidate array is needed: a
contraction streams its ``N·C`` products straight into the lists. Missing entries are -inf
(top) / +inf (rest) at position -1, as in the reference.

>>> import numpy as np
>>> cand = np.array([[3.0, -1.0, 2.0, np.inf]]); pres = np.isfinite(cand)
>>> o = np.empty((1, 4)); p = np.empty((1, 4), np.int64)
>>> kbest_rows(cand, pres, 2, True, o, p)
>>> o.tolist(), p.tolist()
([[3.0, 2.0, -1.0, inf]], [[0, 2, 1, -1]])
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _push(v, pos, k, signed, tv, tp, bv, bp, cnt):
    """Insert candidate ``(v, pos)`` into the top list (``cnt[0]`` filled) and, when signed,
    the bottom list of 2k (``cnt[1]`` filled)."""
    nt = cnt[0]
    i = nt
    while i > 0 and tv[i - 1] < v:
        i -= 1
    if i < k:
        last = nt if nt < k else k - 1
        j = last
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
        k2 = 2 * k
        i = nb
        while i > 0 and bv[i - 1] > v:
            i -= 1
        if i < k2:
            last = nb if nb < k2 else k2 - 1
            j = last
            while j > i:
                bv[j] = bv[j - 1]
                bp[j] = bp[j - 1]
                j -= 1
            bv[i] = v
            bp[i] = pos
            if nb < k2:
                cnt[1] = nb + 1


@njit(cache=True, inline="always")
def _finish(k, signed, tv, tp, bv, bp, cnt, ov, op):
    """Write the top list then (signed) the first k bottom entries not in the top list."""
    nt = cnt[0]
    for i in range(k):
        if i < nt:
            ov[i] = tv[i]
            op[i] = -1 if tv[i] == -np.inf else tp[i]
        else:
            ov[i] = -np.inf
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
                    break
            if not taken:
                ov[k + r] = bv[i]
                op[k + r] = -1 if bv[i] == np.inf else q
                r += 1
        while r < k:
            ov[k + r] = np.inf
            op[k + r] = -1
            r += 1


@njit(cache=True, parallel=True, boundscheck=False)
def kbest_rows(cand, pres, k, signed, o, p):
    """Select per row of ``cand (R, L)`` (``pres`` marks present candidates)."""
    R, L = cand.shape
    for r in prange(R):
        tv = np.empty(k)
        tp = np.empty(k, np.int64)
        bv = np.empty(2 * k)
        bp = np.empty(2 * k, np.int64)
        cnt = np.zeros(2, np.int64)
        for j in range(L):
            if pres[r, j]:
                _push(cand[r, j], j, k, signed, tv, tp, bv, bp, cnt)
        _finish(k, signed, tv, tp, bv, bp, cnt, o[r], p[r])


@njit(cache=True, parallel=True, boundscheck=False)
def kbest_matmul(cand, w, ia, iw, k, signed, o, p):
    """``cand (Ba, M, N, C)``, ``w (Bw, N, K)`` (already ``|w|`` for kbestabs); output
    ``(B, M, K, NC)``; the candidate of (n, c) is ``cand·w[n, k]`` at position ``n·C + c``."""
    B, M, K, _ = o.shape
    N, C = cand.shape[2], cand.shape[3]
    for row in prange(B * M * K):
        b = row // (M * K)
        rem = row - b * M * K
        m = rem // K
        kk = rem - m * K
        x = cand[ia[b], m]
        W = w[iw[b]]
        tv = np.empty(k)
        tp = np.empty(k, np.int64)
        bv = np.empty(2 * k)
        bp = np.empty(2 * k, np.int64)
        cnt = np.zeros(2, np.int64)
        for n in range(N):
            wv = W[n, kk]
            for c in range(C):
                xv = x[n, c]
                if np.isfinite(xv):
                    _push(xv * wv, n * C + c, k, signed, tv, tp, bv, bp, cnt)
        _finish(k, signed, tv, tp, bv, bp, cnt, o[b, m, kk], p[b, m, kk])


@njit(cache=True, parallel=True, boundscheck=False)
def kbest_scatter(cand, order, starts, k, signed, o, p):
    """Segments ``s``: the candidates ``cand[j, c]`` for ``j`` in
    ``order[starts[s]:starts[s + 1]]`` (ascending j), at position ``j·C + c``."""
    S = o.shape[0]
    C = cand.shape[1]
    for s in prange(S):
        tv = np.empty(k)
        tp = np.empty(k, np.int64)
        bv = np.empty(2 * k)
        bp = np.empty(2 * k, np.int64)
        cnt = np.zeros(2, np.int64)
        for t in range(starts[s], starts[s + 1]):
            j = order[t]
            for c in range(C):
                xv = cand[j, c]
                if np.isfinite(xv):
                    _push(xv, j * C + c, k, signed, tv, tp, bv, bp, cnt)
        _finish(k, signed, tv, tp, bv, bp, cnt, o[s], p[s])
