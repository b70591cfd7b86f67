"""Numba CPU kernels of the selective semirings through factored dense blocks (softmax,
log-softmax, layer norm): per batch row ``b`` and column ``c``, ``⊕_r a[b, r] ⊗ J[b, r, c]``
and the first winning ``r``, where ``J = δ·d[b, r] + Σ_t u[b, r, t]·v[b, c, t]`` is given by its
factors (:class:`graphengine.ir.jacobian.LowRankBlock`, rank R = 1 or 2) and never built as an
n×n matrix. Conventions as in :mod:`graphengine.kernels.cpu_select` (float64 values, int64
positions, outputs preallocated by the caller, ties keep the lowest r, NaN never wins, 0̄
sources skipped).

**Exact pruning.** A plain scan folds every source row r into every column: O(n²) per batch
row, and at a layer norm (n = 384 to 768) most of that work cannot change the result, because
the diagonal entry ``J[c, c] ≈ d[c]`` outweighs every off-diagonal entry (of order ``1/n``).
The kernels therefore

1. take each column's own source first (the diagonal candidate ``a[c] ⊗ J[c, c]``);
2. split the columns into tiles of ``TILE`` and keep, per tile and term t, ``W[k, t] = max_c
   |v[b, c, t]|`` over the tile, and per tile the worst running best (the least M⁺, the
   greatest M⁻, the least max-abs);
3. visit the sources whose bound over all their off-diagonal candidates can still beat some
   running best (the others are dropped at once), in descending order of that bound, and
   for each tile compute ``β = m_r ⊗ (0 + |u[b, r, 0]|·W[k, 0] + |u[b, r, 1]|·W[k, 1] + …)``,
   with ``m_r = max(|a0[b, r]|, |a1[b, r]|)`` (``|a[b, r]|`` for max-abs), in floating point
   in the same order as the entries; a tile is skipped when ``β`` is strictly below its
   least M⁺ and ``-β`` strictly above its greatest M⁻ (for max-abs: ``β`` strictly below its
   least best); the walk stops when the bound over all columns (the same sum with the maxima
   over every column) fails both tests against the worst bests of the whole row, since the
   later sources have smaller bounds;
4. fold the candidates of the tiles that are not skipped with the rule of
   :func:`graphengine.kernels.scalar.improves_or_earlier` (strictly better, or equal at a lower
   r), since sources now arrive out of order;
5. scan the row plainly instead where the bounds cannot pay: when more than half the tiles
   start with a least M⁺ (least max-abs) ≤ 0 or a greatest M⁻ ≥ 0, which no bound (≥ 0) can
   beat (:func:`_mostly_open`: paths of one sign at many sources), and when the last
   ``WINDOW`` sources folded more than half their tiles (:func:`_gives_up`). Folding tile by
   tile costs several times more per entry than the scan's contiguous loops, so a row where
   pruning fails costs a little more than a scan, and one where it works (every layer norm
   of the real backwards measured) a small fraction of it.

Why the result is bit-identical to the ascending scan: the scan's result for a column is the
largest non-NaN candidate (or ``-inf`` at 0 when there is none above ``-inf``) at the lowest r
that attains it, and the value stored is that candidate's, signed zero included; the
out-of-order rule keeps the same winner over any order, and each candidate evaluated is the
same floating-point number as in the scan (same entry sum, same ⊗). Skipping is exact, with no
rounding margin: rounding to nearest is monotone, so for ``|p| ≤ P`` and ``|s| ≤ S``,
``|fl(s + p)| ≤ fl(S + P)`` and ``|fl(x·y)| = fl(|x|·|y|) ≤ fl(X·Y)`` for ``|x| ≤ X``, ``|y| ≤
Y`` (gradual underflow and overflow included). By induction over the terms of the sum, every
off-diagonal entry of row r in tile k has ``|Ĵ[r, c]| ≤ J̄ = fl(… fl(0 + fl(|u_0|·W_0)) …)``, and
every candidate ``fl(M·Ĵ)`` (M one of ``a0``, ``a1``, or ``|J|``'s ``a``) has magnitude at most
``fl(m_r·J̄) = β``. A skipped candidate is thus strictly worse than the column's running best,
which only improves, so it could never have been taken, not even by the tie rule. The
diagonal column of a tile is covered by step 1 (and recomputed, harmlessly, when its tile is
visited). A NaN bound (``0·inf`` after an overflow) fails every comparison, so nothing is
skipped. A batch row with a non-finite factor or a reached source that is not finite (a path
of weight -inf, NaN, ±inf) is scanned in full instead, so those cases are exactly as before;
so are the blocks narrower than the back end's ``PRUNE_FROM``.

:func:`block_pair_scan` and :func:`block_maxabs_scan` are the plain ascending scans (the
pruned kernels' fallback for such rows): the tests compare against them and the benchmarks
time them as the baseline.

>>> import numpy as np
>>> d = np.array([[2.0, 3.0]]); u = np.ones((1, 2, 1)); v = np.array([[[0.5], [-0.25]]])
>>> a = np.array([[1.0, -1.0]])
>>> o0, o1 = np.empty((1, 2)), np.empty((1, 2)); p0, p1 = np.empty((1, 2), np.int64), np.empty((1, 2), np.int64)
>>> block_pair(a, a, d, u, v, o0, o1, p0, p1, 1)       # prune from n = 1; J = [[2.5, -0.25], [0.5, 2.75]]
>>> o0.tolist(), p0.tolist(), o1.tolist(), p1.tolist()
([[2.5, -0.25]], [[0, 0]], [[-0.5, -2.75]], [[1, 1]])
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .cache import njit
from .cpu_select import _take
from .scalar import on_cpu

BLOCK_JOBS = 64  # parallel jobs of a dense-block kernel at most (each allocates its scratch once)
TILE = 32  # columns per tile of the pruning bounds
SORT_IN_PLACE = 32  # contenders sorted by insertion in the scratch at most (more: argsort)
WINDOW = 16  # a row gives up pruning when its last WINDOW sources folded over half their tiles (:func:`_gives_up`)
# The back end prunes blocks of at least this many columns and runs the plain scan (its own,
# smaller kernel) on narrower ones. The pruned kernels take about 15x the scan's first-use
# compile (tens of seconds, once per machine), which a block of MiniLM's 384 columns does not
# repay (its max backward gains 3%); a GPT-2 layer norm (768) does, by seconds per backward.
PRUNE_FROM = 512

_pair = on_cpu().pair_times
_reached = on_cpu().pair_reached
_earlier = on_cpu().improves_or_earlier


@njit(inline="always")
def _block_jobs(B):
    return min(B, BLOCK_JOBS)


@njit(inline="always")
def _block_job(job, B, u, n):
    """The batch rows ``b0 .. b1 - 1`` of dense-block job ``job`` and its scratch: a row of
    ``J`` and ``v[b]`` transposed (:func:`_factor_row`)."""
    jobs = _block_jobs(B)
    return job * B // jobs, (job + 1) * B // jobs, np.empty(n), np.empty((u.shape[2], n))


@njit(inline="always")
def _tile_scratch(n, R):
    """A job's pruning scratch: ``W`` per tile and term (and over all columns), the worst
    running best of each component per tile, a bound per source, a list of sources and their
    bounds."""
    tiles = (n + TILE - 1) // TILE
    return np.empty((tiles + 1, R)), np.empty(tiles), np.empty(tiles), np.empty(n), np.empty(n, np.int64), np.empty(n)


@njit(inline="always")
def _transpose_v(v, b, vt):
    for c in range(v.shape[1]):
        for t in range(v.shape[2]):
            vt[t, c] = v[b, c, t]


@njit(inline="always")
def _factor_row(d, u, vt, b, r, row, c0, c1):
    """``J[b, r, c]`` for ``c0 <= c < c1`` into ``row[c]``: the same sum in the same order as
    :func:`graphengine.kernels.scalar.dense_entry` (``δ·d`` or 0, then ``+ u·v`` term by term
    in ascending ``t``), one vectorised pass over the columns per term (``vt`` is ``v[b]``
    transposed, ``(R, n)``)."""
    for c in range(c0, c1):
        row[c] = 0.0
    if c0 <= r < c1:
        row[r] = d[b, r]
    for t in range(vt.shape[0]):
        x = u[b, r, t]
        for c in range(c0, c1):  # vt[t, c], not a view of row t: a view per tile costs more than the tile
            row[c] = row[c] + x * vt[t, c]


@njit(inline="always")
def _diagonal(d, u, vt, b, c):
    """``J[b, c, c]``, summed as :func:`_factor_row` sums it."""
    jv = d[b, c]
    for t in range(vt.shape[0]):
        jv = jv + u[b, c, t] * vt[t, c]
    return jv


@njit(inline="always")
def _reset(h, q, zero):
    """Running bests ``zero`` at position 0 (the result of no candidate)."""
    for c in range(h.shape[0]):
        h[c] = zero
        q[c] = 0


@njit(inline="always")
def _finite_factors(d, u, v, b):
    for r in range(d.shape[1]):
        if not math.isfinite(d[b, r]):
            return False
        for t in range(u.shape[2]):
            if not (math.isfinite(u[b, r, t]) and math.isfinite(v[b, r, t])):
                return False
    return True


@njit(inline="always")
def _column_maxima(vt, W):
    """``W[k, t] = max |vt[t, c]|`` over the columns of tile k, and over all columns in the
    last row of ``W``."""
    n = vt.shape[1]
    tiles = W.shape[0] - 1
    for t in range(vt.shape[0]):
        W[tiles, t] = 0.0
        for k in range(tiles):
            w = 0.0
            for c in range(k * TILE, min(n, (k + 1) * TILE)):
                w = max(w, abs(vt[t, c]))
            W[k, t] = w
            W[tiles, t] = max(W[tiles, t], w)


@njit(inline="always")
def _bound(m, u, b, r, W, k):
    """``fl(m·J̄)``: a bound on every candidate of source r (magnitude ``m``) over the columns
    whose ``max |v[:, t]|`` are ``W[k, t]`` (tile k, or all columns for k = the number of
    tiles), off the diagonal (module docstring); NaN (from ``0·inf`` after an overflow) gives
    ``inf``."""
    j = 0.0
    for t in range(W.shape[1]):
        j = j + abs(u[b, r, t]) * W[k, t]
    beta = m * j
    return beta if beta >= 0.0 else np.inf


@njit(inline="always")
def _worst(h, c0, c1, sign):
    """The least (``sign`` > 0) or greatest of ``h[c0:c1]`` (a separate pass: a reduction in
    the fold's loop would keep it from vectorising)."""
    e0 = e1 = e2 = e3 = h[c0]
    c = c0 + 1
    while c + 4 <= c1:  # four chains: a single one waits on every comparison
        if sign > 0:
            e0, e1, e2, e3 = min(e0, h[c]), min(e1, h[c + 1]), min(e2, h[c + 2]), min(e3, h[c + 3])
        else:
            e0, e1, e2, e3 = max(e0, h[c]), max(e1, h[c + 1]), max(e2, h[c + 2]), max(e3, h[c + 3])
        c += 4
    for j in range(c, c1):
        e0 = min(e0, h[j]) if sign > 0 else max(e0, h[j])
    if sign > 0:
        return min(min(e0, e1), min(e2, e3))
    return max(max(e0, e1), max(e2, e3))


@njit(inline="always")
def _tile_worst(h, worst, sign):
    """Per tile the least (``sign`` > 0) or greatest running best of ``h``."""
    n = h.shape[0]
    for k in range(worst.shape[0]):
        worst[k] = _worst(h, k * TILE, min(n, (k + 1) * TILE), sign)


@njit(inline="always")
def _mostly_open(lo_k, hi_k, pair):
    """Whether more than half the tiles start where no bound can skip them: a bound is ≥ 0, so
    a tile whose least M⁺ (least max-abs) is ≤ 0, or for the pair whose greatest M⁻ is ≥ 0,
    can only be skipped once off-diagonal candidates have moved it. Such a row (M⁺ < 0 at many
    sources: paths of one sign) is scanned at once."""
    count = 0
    for k in range(lo_k.shape[0]):
        if not (lo_k[k] > 0.0 and (hi_k[k] < 0.0 or not pair)):
            count += 1
    return 2 * count > lo_k.shape[0]


@njit(inline="always")
def _gives_up(recent, tiles):
    """Whether pruning is failing on this row: the last ``WINDOW`` sources (checked every
    ``WINDOW`` sources) folded more than half of their tiles. The row is then computed again by
    the plain scan, whose contiguous loops cost far less per entry than bounding and folding
    tile by tile (a row where the bounds do not help costs about a sixth more than a scan)."""
    return 2 * recent > WINDOW * tiles


@njit(inline="always")
def _contenders(key, lo_all, hi_all, pick, kept):
    """The sources whose bound passes the row's first test (``key`` ≥ the least M⁺ or ``-key``
    ≤ the greatest M⁻; ``hi_all`` = -inf for max-abs), in descending order of ``key`` (ties in
    any order: the out-of-order rule makes the result independent of it), in ``pick[:k]``;
    returns k. The others cannot win anywhere: the running bests only improve. Unreached
    sources have ``key`` = -inf. A few are sorted in place, many by ``argsort``."""
    k = 0
    for r in range(key.shape[0]):
        kr = key[r]
        if kr != -np.inf and not (kr < lo_all and -kr > hi_all):
            pick[k] = r
            kept[k] = kr
            k += 1
    if k > SORT_IN_PLACE:
        order = np.argsort(kept[:k])
        for i in range(k):  # kept holds the reordered sources for a moment (exact in float64)
            kept[i] = pick[order[k - 1 - i]]
        for i in range(k):
            pick[i] = np.int64(kept[i])
        return k
    for i in range(1, k):
        r, kr = pick[i], kept[i]
        j = i
        while j > 0 and kept[j - 1] < kr:
            pick[j], kept[j] = pick[j - 1], kept[j - 1]
            j -= 1
        pick[j], kept[j] = r, kr
    return k


# ---------------------------------------------------------------- signed max pair
@njit(inline="always")
def _pair_sources_finite(a0, a1, b):
    for r in range(a0.shape[1]):
        h, lo = a0[b, r], a1[b, r]
        if _reached(h, lo) and not (math.isfinite(h) and math.isfinite(lo)):
            return False
    return True


@njit(inline="always")
def _pair_scan(a0, a1, d, u, vt, b, row, h0, h1, q0, q1):
    """Batch row b in full: every reached source in ascending r into every column."""
    n = h0.shape[0]
    _reset(h0, q0, -np.inf)
    _reset(h1, q1, np.inf)
    for r in range(n):
        h = a0[b, r]
        lo = a1[b, r]
        if not _reached(h, lo):
            continue
        _factor_row(d, u, vt, b, r, row, 0, n)
        for c in range(n):
            x, y = _pair(h, lo, row[c])
            h0[c], q0[c] = _take(h0[c], q0[c], x, r, 1)
            h1[c], q1[c] = _take(h1[c], q1[c], y, r, -1)


@njit(inline="always")
def _pair_fold(h, lo, row, r, h0, h1, q0, q1, c0, c1):
    """Source r's candidates ``⟨h, lo⟩ ⊗ row[c]`` into columns ``c0 .. c1 - 1`` by the
    out-of-order rule: a compare-and-blend pass with the strict rule (it vectorises) that
    also notes whether a candidate equalled its incumbent, and only then a second pass that
    gives those ties to the lower r (after the first pass an equal candidate has changed
    nothing, so the second pass is exactly the rest of the rule)."""
    tie = 0
    for c in range(c0, c1):
        x, y = _pair(h, lo, row[c])
        tie |= (x == h0[c]) | (y == h1[c])
        h0[c], q0[c] = _take(h0[c], q0[c], x, r, 1)
        h1[c], q1[c] = _take(h1[c], q1[c], y, r, -1)
    if tie:
        for c in range(c0, c1):
            x, y = _pair(h, lo, row[c])
            if _earlier(x, h0[c], r, q0[c], 1):
                h0[c], q0[c] = x, r
            if _earlier(y, h1[c], r, q1[c], -1):
                h1[c], q1[c] = y, r


@njit(inline="always")
def _pair_pruned(a0, a1, d, u, vt, b, row, W, lo_k, hi_k, key, pick, kept, h0, h1, q0, q1):
    """Batch row b with the pruning of the module docstring (finite factors and sources)."""
    n = h0.shape[0]
    _reset(h0, q0, -np.inf)
    _reset(h1, q1, np.inf)
    for c in range(n):
        h, lo = a0[b, c], a1[b, c]
        key[c] = -np.inf
        if _reached(h, lo):
            x, y = _pair(h, lo, _diagonal(d, u, vt, b, c))
            h0[c], q0[c] = _take(h0[c], q0[c], x, c, 1)
            h1[c], q1[c] = _take(h1[c], q1[c], y, c, -1)
    _tile_worst(h0, lo_k, 1)
    _tile_worst(h1, hi_k, -1)
    if _mostly_open(lo_k, hi_k, True):
        _pair_scan(a0, a1, d, u, vt, b, row, h0, h1, q0, q1)
        return
    _column_maxima(vt, W)
    tiles = W.shape[0] - 1
    for r in range(n):
        h, lo = a0[b, r], a1[b, r]
        if _reached(h, lo):
            key[r] = _bound(max(abs(h), abs(lo)), u, b, r, W, tiles)
    lo_all, hi_all = np.min(lo_k), np.max(hi_k)
    recent = 0
    many = _contenders(key, lo_all, hi_all, pick, kept)
    for i in range(many):
        r = pick[i]
        kr = key[r]
        if kr < lo_all and -kr > hi_all:
            break  # no later source can win anywhere
        if i > 0 and i % WINDOW == 0:
            if _gives_up(recent, tiles):
                _pair_scan(a0, a1, d, u, vt, b, row, h0, h1, q0, q1)
                return
            recent = 0
        h, lo = a0[b, r], a1[b, r]
        m = max(abs(h), abs(lo))
        folded = 0
        for k in range(tiles):
            beta = _bound(m, u, b, r, W, k)
            if beta < lo_k[k] and -beta > hi_k[k]:
                continue
            c0, c1 = k * TILE, min(n, (k + 1) * TILE)
            _factor_row(d, u, vt, b, r, row, c0, c1)
            _pair_fold(h, lo, row, r, h0, h1, q0, q1, c0, c1)
            lo_k[k], hi_k[k] = _worst(h0, c0, c1, 1), _worst(h1, c0, c1, -1)
            folded += 1
        recent += folded
        if folded:
            lo_all, hi_all = np.min(lo_k), np.max(hi_k)


@njit(cache=True, parallel=True, boundscheck=False)
def block_pair(a0, a1, d, u, v, o0, o1, p0, p1, prune_from):
    """Signed max pair through factored blocks: for each batch row ``b`` and column c,
    ``o0, o1 = ⊕_r ⟨a0, a1⟩[b, r] ⊗ J[b, r, c]`` (M⁺ and M⁻) and ``p0``, ``p1`` the first
    winning r. Rows of ``J`` are built from the factors tile by tile, only where the bounds of
    the module docstring say a source can still win; values and positions are those of the
    ascending scan (:func:`block_pair_scan`), which blocks of fewer than ``prune_from``
    columns (there the bounds cost more than they save: ``PRUNE_FROM``) and batch rows with a
    non-finite factor or source get."""
    B, n = a0.shape
    for job in prange(_block_jobs(B)):
        b0, b1, row, vt = _block_job(job, B, u, n)
        W, lo_k, hi_k, key, pick, kept = _tile_scratch(n, u.shape[2])
        for b in range(b0, b1):
            _transpose_v(v, b, vt)
            if n >= max(1, prune_from) and _finite_factors(d, u, v, b) and _pair_sources_finite(a0, a1, b):
                _pair_pruned(a0, a1, d, u, vt, b, row, W, lo_k, hi_k, key, pick, kept, o0[b], o1[b], p0[b], p1[b])
            else:
                _pair_scan(a0, a1, d, u, vt, b, row, o0[b], o1[b], p0[b], p1[b])


@njit(cache=True, parallel=True, boundscheck=False)
def block_pair_scan(a0, a1, d, u, v, o0, o1, p0, p1):
    """:func:`block_pair` by the plain scan: every reached source in ascending r, its row of
    ``J`` built in full and folded into every column by compare-and-blend (ties keep the
    lowest r because only a strictly better candidate replaces the incumbent)."""
    B, n = a0.shape
    for job in prange(_block_jobs(B)):
        b0, b1, row, vt = _block_job(job, B, u, n)
        for b in range(b0, b1):
            _transpose_v(v, b, vt)
            _pair_scan(a0, a1, d, u, vt, b, row, o0[b], o1[b], p0[b], p1[b])


# ---------------------------------------------------------------- max-abs
@njit(inline="always")
def _sources_finite(a, b):
    for r in range(a.shape[1]):
        x = a[b, r]
        if x != -np.inf and not math.isfinite(x):
            return False
    return True


@njit(inline="always")
def _maxabs_scan(a, d, u, vt, b, row, h, q):
    n = h.shape[0]
    _reset(h, q, -np.inf)
    for r in range(n):
        x = a[b, r]
        if x == -np.inf:
            continue
        _factor_row(d, u, vt, b, r, row, 0, n)
        for c in range(n):
            h[c], q[c] = _take(h[c], q[c], x * abs(row[c]), r, 1)


@njit(inline="always")
def _abs_fold(x, row, r, h, q, c0, c1):
    """Source r's candidates ``x·|row[c]|`` into columns ``c0 .. c1 - 1`` (out-of-order rule,
    in two passes as :func:`_pair_fold`)."""
    tie = 0
    for c in range(c0, c1):
        y = x * abs(row[c])
        tie |= y == h[c]
        h[c], q[c] = _take(h[c], q[c], y, r, 1)
    if tie:
        for c in range(c0, c1):
            y = x * abs(row[c])
            if _earlier(y, h[c], r, q[c], 1):
                h[c], q[c] = y, r


@njit(inline="always")
def _maxabs_pruned(a, d, u, vt, b, row, W, lo_k, key, pick, kept, h, q):
    n = h.shape[0]
    _reset(h, q, -np.inf)
    for c in range(n):
        x = a[b, c]
        key[c] = -np.inf
        if x != -np.inf:
            h[c], q[c] = _take(h[c], q[c], x * abs(_diagonal(d, u, vt, b, c)), c, 1)
    _tile_worst(h, lo_k, 1)
    if _mostly_open(lo_k, lo_k, False):
        _maxabs_scan(a, d, u, vt, b, row, h, q)
        return
    _column_maxima(vt, W)
    tiles = W.shape[0] - 1
    for r in range(n):
        if a[b, r] != -np.inf:
            key[r] = _bound(abs(a[b, r]), u, b, r, W, tiles)
    lo_all = np.min(lo_k)
    recent = 0
    many = _contenders(key, lo_all, -np.inf, pick, kept)
    for i in range(many):
        r = pick[i]
        if key[r] < lo_all:
            break
        if i > 0 and i % WINDOW == 0:
            if _gives_up(recent, tiles):
                _maxabs_scan(a, d, u, vt, b, row, h, q)
                return
            recent = 0
        x = a[b, r]
        m = abs(x)
        folded = 0
        for k in range(tiles):
            if _bound(m, u, b, r, W, k) < lo_k[k]:
                continue
            c0, c1 = k * TILE, min(n, (k + 1) * TILE)
            _factor_row(d, u, vt, b, r, row, c0, c1)
            _abs_fold(x, row, r, h, q, c0, c1)
            lo_k[k] = _worst(h, c0, c1, 1)
            folded += 1
        recent += folded
        if folded:
            lo_all = np.min(lo_k)


@njit(cache=True, parallel=True, boundscheck=False)
def block_maxabs(a, d, u, v, o, p, prune_from):
    """Max-abs through factored blocks: ``o[b, c] = max_r a[b, r]·|J[b, r, c]|`` and ``p`` the
    first winning r, pruned as :func:`block_pair` (one component: a tile is skipped when the
    bound is strictly below its least running best); blocks of fewer than ``prune_from``
    columns and rows with a non-finite factor or source get :func:`block_maxabs_scan`."""
    B, n = a.shape
    for job in prange(_block_jobs(B)):
        b0, b1, row, vt = _block_job(job, B, u, n)
        W, lo_k, hi_k, key, pick, kept = _tile_scratch(n, u.shape[2])
        for b in range(b0, b1):
            _transpose_v(v, b, vt)
            if n >= max(1, prune_from) and _finite_factors(d, u, v, b) and _sources_finite(a, b):
                _maxabs_pruned(a, d, u, vt, b, row, W, lo_k, key, pick, kept, o[b], p[b])
            else:
                _maxabs_scan(a, d, u, vt, b, row, o[b], p[b])


@njit(cache=True, parallel=True, boundscheck=False)
def block_maxabs_scan(a, d, u, v, o, p):
    """:func:`block_maxabs` by the plain ascending scan (see :func:`block_pair_scan`)."""
    B, n = a.shape
    for job in prange(_block_jobs(B)):
        b0, b1, row, vt = _block_job(job, B, u, n)
        for b in range(b0, b1):
            _transpose_v(v, b, vt)
            _maxabs_scan(a, d, u, vt, b, row, o[b], p[b])
