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
(top) / +inf (rest) at position -1, as in the reference. The selections are
written once, in :mod:`graphengine.kernels.scalar` (``kbest_select_*``), and shared with the
CUDA kernels; here they run in parallel over the outputs, with the lists on the heap.

>>> import numpy as np
>>> cand = np.array([[3.0, -1.0, 2.0, np.inf]]); pres = np.isfinite(cand)
>>> o = np.empty((1, 4)); p = np.empty((1, 4), np.int64)
>>> kbest_rows(cand, pres, 2, True, o, p)
>>> o.tolist(), p.tolist()
([[3.0, 2.0, -1.0, inf]], [[0, 2, 1, -1]])
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .cache import njit
from .scalar import on_cpu

_select_row = on_cpu().kbest_select_row
_select_products = on_cpu().kbest_select_products
_select_segment = on_cpu().kbest_select_segment


@njit(cache=True, parallel=True, boundscheck=False)
def kbest_rows(cand, pres, k, signed, o, p):
    """Select per row of ``cand (R, L)`` (``pres`` marks present candidates)."""
    for r in prange(cand.shape[0]):
        _select_row(cand[r], pres[r], k, signed, np.empty(k), np.empty(k, np.int64), np.empty(2 * k),
                    np.empty(2 * k, np.int64), np.empty(2, np.int64), o[r], p[r])


@njit(cache=True, parallel=True, boundscheck=False)
def kbest_matmul(cand, w, ia, iw, k, signed, o, p):
    """``cand (Ba, M, N, C)``, ``w (Bw, N, K)`` (already ``|w|`` for kbestabs); output
    ``(B, M, K, NC)``; the candidate of (n, c) is ``cand·w[n, k]`` at position ``n·C + c``."""
    B, M, K, _ = o.shape
    for row in prange(B * M * K):
        b = row // (M * K)
        rem = row - b * M * K
        m = rem // K
        kk = rem - m * K
        _select_products(cand[ia[b], m], w[iw[b]], kk, k, signed, np.empty(k), np.empty(k, np.int64),
                         np.empty(2 * k), np.empty(2 * k, np.int64), np.empty(2, np.int64), o[b, m, kk], p[b, m, kk])


@njit(cache=True, parallel=True, boundscheck=False)
def kbest_scatter(cand, order, starts, k, signed, o, p):
    """Segments ``s``: the candidates ``cand[j, c]`` for ``j`` in
    ``order[starts[s]:starts[s + 1]]`` (ascending j), at position ``j·C + c``."""
    for s in prange(o.shape[0]):
        _select_segment(cand, order, starts[s], starts[s + 1], k, signed, np.empty(k), np.empty(k, np.int64),
                        np.empty(2 * k), np.empty(2 * k, np.int64), np.empty(2, np.int64), o[s], p[s])
