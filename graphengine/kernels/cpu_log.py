"""Numba CPU kernels for the log-space semirings (``log``, ``logentropy``, ``logcount``) and
the factored dense blocks of the linear ones (``absolute``, ``entropy``).

An entropy dense block is lifted a few blocks at a time (``block_abs`` writes ``|J|``, numpy's
vectorised ``log`` takes the logs, which a scalar loop would spend most of its time on) and
contracted by ``block_entropy_lifted``; :func:`graphengine.kernels.cpu.block_entropy` chains them.

Log-sum-exp is computed in two passes (max, then Σ exp(x - max)), exactly as the reference's
``logsumexp_last``, so -inf entries are exact; only the summation order differs from numpy's,
which changes results by a few ulps. The scalar steps (the log-sum-exp shift, a dense block's
entry) are the helpers of :mod:`graphengine.kernels.scalar`, shared with the CUDA kernels.

>>> import numpy as np
>>> o = np.empty(1)
>>> logsumexp_last(np.log(np.array([[1.0, 3.0]])), o)
>>> round(float(np.exp(o[0])), 12)
4.0
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .cache import njit
from .scalar import on_cpu

_entry = on_cpu().dense_entry
_shift = on_cpu().finite_or_zero
_shifted_log = on_cpu().shifted_log
_logsumexp_row = on_cpu().logsumexp_row


@njit(cache=True, parallel=True, boundscheck=False)
def logsumexp_last(a, o):
    """``o[r] = log Σ_n exp(a[r, n])`` (-inf for an empty or all -inf row)."""
    for r in prange(a.shape[0]):
        o[r] = _logsumexp_row(a[r])


@njit(cache=True, parallel=True, boundscheck=False)
def matmul_log(l, h, lw, hw, ia, iw, with_h, ol, oh):
    """Log-space contraction (batched like the select kernels): ``ol = log Σ_n exp(l + lw)``
    and, ``with_h`` (log-entropy), ``oh = Σ_n exp(l + lw - ol)·(h + hw)``, 0 where ``ol`` is not
    finite; without it ``h``, ``hw`` and ``oh`` are not read."""
    B, M, K = ol.shape
    N = l.shape[2]
    for row in prange(B * M):
        b = row // M
        m = row - b * M
        x = l[ia[b], m]
        W = lw[iw[b]]
        safe = np.full(K, -np.inf)
        for n in range(N):
            if x[n] == -np.inf:
                continue
            for k in range(K):
                t = x[n] + W[n, k]
                if t > safe[k]:
                    safe[k] = t
        for k in range(K):
            safe[k] = _shift(safe[k])
        s = np.zeros(K)
        for n in range(N):
            if x[n] == -np.inf:
                continue
            for k in range(K):
                s[k] += math.exp(x[n] + W[n, k] - safe[k])
        for k in range(K):
            out = _shifted_log(safe[k], s[k])
            ol[b, m, k] = out
            safe[k] = _shift(out)
        if not with_h:
            continue
        y = h[ia[b], m]
        H = hw[iw[b]]
        acc = np.zeros(K)
        for n in range(N):
            if x[n] == -np.inf:
                continue
            for k in range(K):
                acc[k] += math.exp(x[n] + W[n, k] - safe[k]) * (y[n] + H[n, k])
        for k in range(K):
            oh[b, m, k] = acc[k] if np.isfinite(ol[b, m, k]) else 0.0


@njit(cache=True, boundscheck=False)
def scatter_logsumexp(values, index, o, wts):
    """Per segment log Σ exp (-inf when empty) and each element's weight exp(v - o[segment])."""
    S = o.shape[0]
    m = np.full(S, -np.inf)
    for j in range(values.shape[0]):
        if values[j] > m[index[j]]:
            m[index[j]] = values[j]
    safe = np.where(np.isfinite(m), m, 0.0)
    s = np.zeros(S)
    for j in range(values.shape[0]):
        e = math.exp(values[j] - safe[index[j]])
        wts[j] = e
        s[index[j]] += e
    for q in range(S):
        o[q] = safe[q] + math.log(s[q]) if np.isfinite(m[q]) else -np.inf
    for j in range(values.shape[0]):
        q = index[j]
        wts[j] = wts[j] / s[q] if s[q] > 0.0 else 0.0


@njit(cache=True, parallel=True, boundscheck=False)
def block_abs(d, u, v, b0, aj):
    """``aj[k] = |J[b0 + k]|`` for the factored blocks ``b0 .. b0 + len(aj) - 1`` (the entries
    as :func:`graphengine.kernels.scalar.dense_entry` sums them): the first half of the entropy
    semiring's lift of a dense block, whose logs numpy then takes in its vectorised loop."""
    cb, n = aj.shape[0], aj.shape[1]
    for q in prange(cb * n):
        k = q // n
        i = q - k * n
        for c in range(n):
            aj[k, i, c] = abs(_entry(d, u, v, b0 + k, i, c))


@njit(cache=True, parallel=True, boundscheck=False)
def block_entropy_lifted(z, r, aj, lg, b0, oz, orr):
    """Entropy through lifted blocks ``aj = |J|``, ``lg = log aj`` of batch rows ``b0 ..``:
    ``oz[b, c] = Σ_i z_i |J_ic|`` and ``orr[b, c] = Σ_i r_i |J_ic| + Σ_i z_i (-|J_ic| log|J_ic|)``
    (the two sums kept apart, as the reference's two matrix products; ``0 log 0 = 0``). Rows
    whose ``z`` and ``r`` are both 0 add nothing and are skipped."""
    cb, n = aj.shape[0], aj.shape[1]
    for k in prange(cb):
        b = b0 + k
        s2 = np.zeros(n)
        for c in range(n):
            oz[b, c] = 0.0
            orr[b, c] = 0.0
        for i in range(n):
            zi = z[b, i]
            ri = r[b, i]
            if zi == 0.0 and ri == 0.0:
                continue
            row = aj[k, i]
            lrow = lg[k, i]
            for c in range(n):
                x = row[c]
                oz[b, c] += zi * x
                orr[b, c] += ri * x
                h = zi * (-x * lrow[c])
                s2[c] += h if x > 0.0 else 0.0
        for c in range(n):
            orr[b, c] += s2[c]


@njit(cache=True, parallel=True, boundscheck=False)
def block_absolute(z, d, u, v, oz):
    """``oz[c] = Σ_r z_r |J_rc|`` through factored blocks."""
    B, n = z.shape
    for b in prange(B):
        for c in range(n):
            oz[b, c] = 0.0
        for i in range(n):
            zi = z[b, i]
            if zi == 0.0:
                continue
            for c in range(n):
                oz[b, c] += zi * abs(_entry(d, u, v, b, i, c))
