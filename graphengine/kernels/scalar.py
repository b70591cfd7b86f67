"""Scalar helpers shared by the CPU and CUDA back ends, written once as plain Python.

Every function listed in :data:`HELPERS` is compiled for both back ends from its one definition:
:func:`on_cpu` gives the Numba ``@njit(inline="always")`` versions the CPU kernels call (inlined
into each kernel, so the kernels run as if the helper were written out in place), :func:`on_cuda`
the ``numba.cuda.jit(device=True)`` versions the CUDA kernels call. A helper may call another one
by its plain name: each back end compiles a twin of every helper (the same code object) whose
global names are bound to that back end's compiled helpers, since compiled code can only call
compiled functions. So the helpers keep to what both compilers accept: scalars, array indexing
and slicing, ``math``, and each other.

=========================  ======================================================================
helper                     used by
=========================  ======================================================================
``dense_entry``            the factored dense-block kernels (CUDA: all; CPU: absolute, entropy):
                           one entry of ``J = diag(d) + u vᵀ`` (the CPU max-pair and max-abs
                           kernels build rows in the same order, ``cpu_block``)
``pair_times``,            the signed max pair's ⊗ (contraction, dense block, scale) and its
``pair_reached``           0̄ test (``⟨-inf, +inf⟩``; ``⟨-inf, -inf⟩`` is a path of weight -inf)
``improves``               the selection rule: strictly better in a direction, ties keep the
                           lower position
``improves_or_earlier``    the same rule for candidates taken out of order (the pruned dense
                           blocks of ``cpu_block``): equal and at a lower position also wins
``select_row``             ``select_last``: the best of a row and its first position
``finite_or_zero``,        the two-pass log-sum-exp (its shift, its result, and one row:
``shifted_log``,           ``logsumexp_last``)
``logsumexp_row``
``sorted_insert``,         k-best lists: insertion into a sorted list, one candidate into the top
``kbest_push``,            and bottom lists, the output (top list, then the bottom entries not on
``kbest_finish``           top)
``kbest_select_row``,      the three k-best selections: over a row of candidates, over the
``kbest_select_products``, products of a contraction, over a segment of a scatter
``kbest_select_segment``
=========================  ======================================================================

The helpers run as plain Python too, which is how the examples below (and the CUDA simulator)
run them:

>>> pair_times(3.0, -2.0, -0.5)
(1.0, -1.5)
>>> import numpy as np
>>> cand = np.array([1.0, 5.0, -2.0])
>>> tv, tp = np.empty(2), np.empty(2, np.int64)
>>> bv, bp, cnt = np.empty(4), np.empty(4, np.int64), np.empty(2, np.int64)
>>> ov, op = np.empty(4), np.empty(4, np.int64)
>>> kbest_select_row(cand, np.isfinite(cand), 2, True, tv, tp, bv, bp, cnt, ov, op)
>>> ov.tolist(), op.tolist()
([5.0, 1.0, -2.0, inf], [1, 0, 2, -1])

Caching: Numba checks only a cached kernel's own file for changes, not these inlined helpers;
the CPU kernels are therefore cached in a directory keyed on a hash of every source file of this
package (:mod:`graphengine.kernels.cache`), so editing this module gives a fresh cache.
"""

from __future__ import annotations

import functools
import math
import types

HELPERS = ("dense_entry", "pair_times", "pair_reached", "improves", "improves_or_earlier", "select_row", "finite_or_zero", "shifted_log", "logsumexp_row",
           "sorted_insert", "kbest_push", "kbest_finish", "kbest_select_row", "kbest_select_products",
           "kbest_select_segment")


def _compile(jit) -> types.SimpleNamespace:
    """Every helper compiled with ``jit``; calls between helpers go to the compiled twins."""
    namespace = dict(globals())
    for name in HELPERS:
        fn = globals()[name]
        twin = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
        twin.__qualname__, twin.__doc__ = fn.__qualname__, fn.__doc__
        namespace[name] = jit(twin)
    return types.SimpleNamespace(**{name: namespace[name] for name in HELPERS})


@functools.lru_cache(maxsize=None)
def on_cpu() -> types.SimpleNamespace:
    """The helpers compiled for the CPU kernels: ``numba.njit(inline="always")``, inlined at
    Numba IR level (a real call would pass array structures and count their references on every
    call, which in a scan loop costs several times the work).

    >>> on_cpu().pair_times.py_func.__code__ is pair_times.__code__
    True
    """
    from numba import njit
    return _compile(njit(inline="always"))


@functools.lru_cache(maxsize=None)
def on_cuda() -> types.SimpleNamespace:
    """The helpers compiled for the CUDA kernels: ``numba.cuda.jit(device=True)`` (a plain call
    in the Numba CUDA simulator)."""
    from numba import cuda
    return _compile(cuda.jit(device=True))


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
    """``⟨hi, lo⟩ ⊗ w`` in the signed max pair ⟨M⁺, M⁻⟩ for a reached source (see
    :func:`pair_reached`): a negative weight swaps which extreme becomes the new maximum.
    Callers skip 0̄ sources themselves, so ``0̄ · 0`` is never formed."""
    s = w >= 0.0
    return (hi if s else lo) * w, (lo if s else hi) * w


def pair_reached(hi, lo):
    """Whether ``⟨hi, lo⟩`` is a path value rather than the pair's 0̄ ``⟨-inf, +inf⟩``: a path of
    weight -inf is ``⟨-inf, -inf⟩`` and counts.

    >>> pair_reached(-math.inf, math.inf), pair_reached(-math.inf, -math.inf)
    (False, True)
    """
    return not (hi == -math.inf and lo == math.inf)


def improves(v, best, sign):
    """Whether ``v`` replaces the incumbent ``best`` of a max (``sign`` > 0) or min selection:
    strictly better only, so ties keep the lowest position (``numpy.argmax``'s rule) and NaN
    never wins."""
    return v > best if sign > 0 else v < best


def improves_or_earlier(v, best, n, pos, sign):
    """:func:`improves` for candidates that arrive in any order: ``v`` at position ``n``
    replaces ``best`` at ``pos`` when it is strictly better, or equal and at a lower position.
    Over any order the winner is the one an ascending scan with :func:`improves` keeps (the
    best value at its lowest position; NaN never wins; a first candidate equal to the initial
    ``∓inf`` never replaces it, since the initial position 0 is never above a position).

    >>> improves_or_earlier(2.0, 2.0, 1, 3, 1), improves_or_earlier(2.0, 2.0, 3, 1, 1)
    (True, False)
    """
    return improves(v, best, sign) | ((v == best) & (n < pos))


def select_row(x, sign):
    """The max (``sign`` > 0) or min of the 1-D ``x`` and its first position; ``∓inf`` at 0 when
    ``x`` is empty.

    >>> import numpy as np
    >>> best, pos = select_row(np.array([1.0, 3.0, 3.0]), 1)
    >>> float(best), pos
    (3.0, 1)
    """
    N = x.shape[0]
    best = -math.inf if sign > 0 else math.inf
    pos = 0
    if N > 0:
        best = x[0]
    for n in range(1, N):
        if improves(x[n], best, sign):
            best = x[n]
            pos = n
    return best, pos


def finite_or_zero(x):
    """The shift of a two-pass log-sum-exp: the running maximum, or 0 where it is ±inf or NaN
    (as the numpy reference's ``np.where(np.isfinite(m), m, 0.0)``)."""
    return x if math.isfinite(x) else 0.0


def shifted_log(safe, s):
    """The result of a two-pass log-sum-exp, ``safe + log s``: -inf for an empty sum (``s`` = 0)
    and NaN when a NaN term made ``s`` NaN (NaN in gives NaN out, as in the reference; the max
    pass skips NaN, so only the sum sees it).

    >>> shifted_log(1.0, 1.0), shifted_log(0.0, 0.0), shifted_log(0.0, float("nan"))
    (1.0, -inf, nan)
    """
    return -math.inf if s <= 0.0 else safe + math.log(s)


def logsumexp_row(x):
    """``log Σ_n exp(x[n])`` of the 1-D ``x`` in two passes (max, then Σ exp(x - max)), exact
    for -inf entries; -inf when ``x`` is empty or all -inf, NaN when it holds a NaN."""
    m = -math.inf
    for n in range(x.shape[0]):
        if x[n] > m:
            m = x[n]
    safe = finite_or_zero(m)
    s = 0.0
    for n in range(x.shape[0]):
        s += math.exp(x[n] - safe)
    return shifted_log(safe, s)


def sorted_insert(vals, poss, n, cap, v, pos, sign):
    """Insert ``(v, pos)`` into the sorted list ``vals``/``poss`` (descending for ``sign`` > 0,
    else ascending) of ``n`` entries and at most ``cap``: behind every entry it does not
    :func:`improves` on, so equal values keep their arrival order; dropped when it would land
    beyond ``cap``. Returns the new length."""
    i = n
    while i > 0 and improves(v, vals[i - 1], sign):
        i -= 1
    if i >= cap:
        return n
    j = n if n < cap else cap - 1
    while j > i:
        vals[j] = vals[j - 1]
        poss[j] = poss[j - 1]
        j -= 1
    vals[i] = v
    poss[i] = pos
    return n + 1 if n < cap else n


def kbest_push(v, pos, k, signed, tv, tp, bv, bp, cnt):
    """Insert candidate ``(v, pos)`` into the top list ``tv``/``tp`` (descending, ``cnt[0]``
    filled, at most ``k``) and, when ``signed``, into the bottom list ``bv``/``bp`` (ascending,
    ``cnt[1]`` filled, at most ``2k``: the k smallest candidates not on top are among the 2k
    smallest). Candidates arrive in ascending position, so ties keep the lower position first."""
    cnt[0] = sorted_insert(tv, tp, cnt[0], k, v, pos, 1)
    if signed:
        cnt[1] = sorted_insert(bv, bp, cnt[1], 2 * k, v, pos, -1)


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


def kbest_select_row(cand, pres, k, signed, tv, tp, bv, bp, cnt, ov, op):
    """The k-best value of the 1-D ``cand`` (candidates where ``pres``, at their index) into
    ``ov``/``op``; ``tv``... ``cnt`` are the lists' storage (``k``, ``k``, ``2k``, ``2k``, 2)."""
    cnt[0] = 0
    cnt[1] = 0
    for j in range(cand.shape[0]):
        if pres[j]:
            kbest_push(cand[j], j, k, signed, tv, tp, bv, bp, cnt)
    kbest_finish(k, signed, tv, tp, bv, bp, cnt, ov, op)


def kbest_select_products(x, w, col, k, signed, tv, tp, bv, bp, cnt, ov, op):
    """The k-best value of one contraction output: the candidates ``x[n, c]·w[n, col]`` over
    the finite ``x[n, c]`` of ``x (N, C)``, at position ``n·C + c``."""
    cnt[0] = 0
    cnt[1] = 0
    C = x.shape[1]
    for n in range(x.shape[0]):
        wv = w[n, col]
        for c in range(C):
            xv = x[n, c]
            if math.isfinite(xv):
                kbest_push(xv * wv, n * C + c, k, signed, tv, tp, bv, bp, cnt)
    kbest_finish(k, signed, tv, tp, bv, bp, cnt, ov, op)


def kbest_select_segment(cand, order, lo, hi, k, signed, tv, tp, bv, bp, cnt, ov, op):
    """The k-best value of one scatter segment: the finite ``cand[j, c]`` for ``j`` in
    ``order[lo:hi]`` (ascending), at position ``j·C + c``."""
    cnt[0] = 0
    cnt[1] = 0
    C = cand.shape[1]
    for t in range(lo, hi):
        j = order[t]
        for c in range(C):
            xv = cand[j, c]
            if math.isfinite(xv):
                kbest_push(xv, j * C + c, k, signed, tv, tp, bv, bp, cnt)
    kbest_finish(k, signed, tv, tp, bv, bp, cnt, ov, op)
