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
(top) / +inf (rest) at position -1, as in the reference. The list operations are
:func:`graphengine.kernels.scalar.kbest_push` and ``kbest_finish``, shared with the CUDA kernels.

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

from .scalar import for_cpu, kbest_finish, kbest_push

_push = for_cpu(kbest_push)
_finish = for_cpu(kbest_finish)


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
