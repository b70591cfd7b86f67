"""Scalar helpers shared by the CPU and CUDA back ends, written once as plain Python.

Each function here is compiled twice from the same function object: :func:`for_cpu` gives the
Numba ``@njit(inline="always")`` version the CPU kernels call (inlined into each kernel at Numba
IR level, so the kernels compile and run as if it were written out in place), :func:`for_cuda`
the ``numba.cuda.jit(device=True)`` version the CUDA kernels call. So every helper keeps to what
both compilers accept: scalars, array indexing, ``math``, and no calls to other helpers (a call
from compiled code must name a compiled function, which differs per back end).

=====================  ==========================================================================
helper                 used by
=====================  ==========================================================================
``dense_entry``        every factored dense-block kernel (max pair, max-abs, real, absolute,
                       entropy): one entry of ``J = diag(d) + u vᵀ``
``pair_times``         the signed max pair's ⊗ (contraction, dense block, scale)
``improves``           first-wins selection with a direction (``select_last``, scatters)
``finite_or_zero``     the shift of a two-pass log-sum-exp
``kbest_push``         k-best insertion of one candidate into the top / bottom lists
``kbest_finish``       k-best output: top list, then the bottom entries not already on top
=====================  ==========================================================================

The helpers run as plain Python too, which is how the examples below (and the CUDA simulator)
run them:

>>> pair_times(3.0, -2.0, -0.5)
(1.0, -1.5)
>>> import numpy as np
>>> tv, tp = np.empty(2), np.empty(2, np.int64)
>>> bv, bp = np.empty(4), np.empty(4, np.int64)
>>> cnt = np.zeros(2, np.int64)
>>> for pos, v in enumerate([1.0, 5.0, -2.0]):
...     kbest_push(v, pos, 2, True, tv, tp, bv, bp, cnt)
>>> ov, op = np.empty(4), np.empty(4, np.int64)
>>> kbest_finish(2, True, tv, tp, bv, bp, cnt, ov, op)
>>> ov.tolist(), op.tolist()
([5.0, 1.0, -2.0, inf], [1, 0, 2, -1])

Caching: the CPU kernels are cached per file (``cache=True``) and Numba checks only the kernel's
own file for changes, so after editing this module clear the Numba cache (the ``__pycache__``
``*.nbi``/``*.nbc`` files of this package, or ``NUMBA_CACHE_DIR``) before measuring or testing.
"""

from __future__ import annotations

import math


def for_cpu(fn):
    """``fn`` compiled for the CPU kernels: ``numba.njit(inline="always")``."""
    from numba import njit
    return njit(inline="always")(fn)


def for_cuda(fn):
    """``fn`` compiled for the CUDA kernels: ``numba.cuda.jit(device=True)`` (a plain call in the
    Numba CUDA simulator)."""
    from numba import cuda
    return cuda.jit(device=True)(fn)


def dense_entry(d, u, v, b, r, c):
    """``J[b, r, c] = δ_rc·d[b, r] + Σ_t u[b, r, t]·v[b, c, t]``: one entry of a factored dense
    block (:class:`graphengine.ir.jacobian.LowRankBlock`), summed in ascending ``t`` on every
    back end.

    >>> import numpy as np
    >>> d = np.array([[2.0, 3.0]]); u = np.ones((1, 2, 1)); v = np.array([[[0.5], [0.25]]])
    >>> float(dense_entry(d, u, v, 0, 0, 0)), float(dense_entry(d, u, v, 0, 0, 1))
    (2.5, 0.25)
    """
    jv = d[b, r] if r == c else 0.0
    for t in range(u.shape[2]):
        jv = jv + u[b, r, t] * v[b, c, t]
    return jv


def pair_times(hi, lo, w):
    """``⟨hi, lo⟩ ⊗ w`` in the signed max pair ⟨M⁺, M⁻⟩ for a live source (``hi`` not 0̄): a
    negative weight swaps which extreme becomes the new maximum. Callers skip 0̄ sources
    themselves, so ``-inf · 0`` is never formed."""
    s = w >= 0.0
    return (hi if s else lo) * w, (lo if s else hi) * w


def improves(v, best, sign):
    """Whether ``v`` replaces the incumbent ``best`` of a max (``sign`` > 0) or min selection:
    strictly better only, so ties keep the lowest position (``numpy.argmax``'s rule) and NaN
    never wins."""
    return v > best if sign > 0 else v < best


def finite_or_zero(x):
    """The shift of a two-pass log-sum-exp: the running maximum, or 0 where it is ±inf or NaN
    (as the numpy reference's ``np.where(np.isfinite(m), m, 0.0)``)."""
    return x if math.isfinite(x) else 0.0


def kbest_push(v, pos, k, signed, tv, tp, bv, bp, cnt):
    """Insert candidate ``(v, pos)`` into the top list ``tv``/``tp`` (descending, ``cnt[0]``
    filled, at most ``k``) and, when ``signed``, into the bottom list ``bv``/``bp`` (ascending,
    ``cnt[1]`` filled, at most ``2k``: the k smallest candidates not on top are among the 2k
    smallest). Candidates arrive in ascending position and only a strictly better one moves ahead
    of an equal one, so ties keep the lower position."""
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
        k2 = 2 * k
        i = nb
        while i > 0 and bv[i - 1] > v:
            i -= 1
        if i < k2:
            j = nb if nb < k2 else k2 - 1
            while j > i:
                bv[j] = bv[j - 1]
                bp[j] = bp[j - 1]
                j -= 1
            bv[i] = v
            bp[i] = pos
            if nb < k2:
                cnt[1] = nb + 1


def kbest_finish(k, signed, tv, tp, bv, bp, cnt, ov, op):
    """Write a k-best value: ``ov[:k]``/``op[:k]`` the top list padded with ``-inf`` at position
    -1, then (``signed``) ``ov[k:2k]`` the first k bottom entries whose position is not on top,
    padded with ``+inf`` at -1. A 0̄ entry (``-inf`` on top, ``+inf`` below) has position -1."""
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
                    break
            if not taken:
                ov[k + r] = bv[i]
                op[k + r] = -1 if bv[i] == math.inf else q
                r += 1
        while r < k:
            ov[k + r] = math.inf
            op[k + r] = -1
            r += 1
