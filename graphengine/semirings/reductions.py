"""Numpy building blocks shared by the semirings (and used by the kernels' host code and the
analyses): chunked broadcast contractions, log-sum-exp reductions, segment (scatter) reductions
and ``0 log 0 = 0`` helpers. This is the reference implementation the compiled kernels are
tested against.

>>> import numpy as np
>>> float(logsumexp_last(np.log(np.array([1.0, 3.0]))))  == float(np.log(4.0))
True
>>> segment_select(np.array([1.0, 5.0, 2.0]), np.array([0, 0, 1]), 3, True, -np.inf)
(array([  5.,   2., -inf]), array([ 1,  2, -1]))
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

CHUNK_ELEMENTS = 1 << 22  # bound on the (.., M, N, K) temporaries of one chunk


def contract(a, b, times, reduce_last, zeros, with_positions: bool):
    """``out[.., m, k] = reduce_n times(a[.., m, n], b[.., n, k])`` for semiring values ``a``
    ``(.., M, N)`` and ``b`` ``(.., N, K)`` (tuples of component arrays, batch dims broadcast):
    the products of one chunk of rows are built by broadcasting and handed to ``reduce_last``
    along their last axis. ``zeros(shape)`` is 0̄ (for N == 0); positions are the winning n
    (``with_positions``) or ``None``.
    """
    batch = np.broadcast_shapes(a[0].shape[:-2], b[0].shape[:-2])
    a = [np.broadcast_to(c, batch + c.shape[-2:]) for c in a]
    b = [np.broadcast_to(c, batch + c.shape[-2:]) for c in b]
    M, N, K = a[0].shape[-2], a[0].shape[-1], b[0].shape[-1]
    shape = batch + (M, K)
    pos = tuple(np.zeros(shape, np.int64) for _ in a) if with_positions else None
    if M == 0 or N == 0:
        return zeros(shape), pos
    step = max(1, CHUNK_ELEMENTS // max(1, int(np.prod(batch, dtype=np.int64)) * N * K))
    out = tuple(np.empty(shape, z.dtype) for z in zeros((0,)))
    for m0 in range(0, M, step):
        prod = times(tuple(c[..., m0:m0 + step, :, None] for c in a), tuple(c[..., None, :, :] for c in b))
        full = batch + (min(step, M - m0), N, K)
        value, p = reduce_last(tuple(np.moveaxis(np.broadcast_to(c, full), -2, -1) for c in prod))
        for o, v in zip(out, value):
            o[..., m0:m0 + step, :] = v
        if with_positions:
            for o, q in zip(pos, p):
                o[..., m0:m0 + step, :] = q
    return out, pos


def logsumexp_last(x: np.ndarray):
    """log Σ exp over the last axis, exact for -inf entries (all -inf gives -inf)."""
    if x.shape[-1] == 0:
        return np.full(x.shape[:-1], -np.inf)
    m = np.max(x, axis=-1)
    safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.sum(np.exp(x - safe[..., None]), axis=-1))


def segment_select(values: np.ndarray, index: np.ndarray, size: int, pick_max: bool, zero: float):
    """Per segment ``s``: the max (or min) of ``values[index == s]`` and its position (first on
    ties), ``zero`` / -1 for empty segments."""
    out = np.full(size, zero, dtype=np.float64)
    pos = np.full(size, -1, dtype=np.int64)
    if values.size == 0:
        return out, pos
    key = -values if pick_max else values
    order = np.lexsort((np.arange(values.size), key, index))  # by segment, best first, stable
    first = np.ones(order.size, dtype=bool)
    first[1:] = index[order][1:] != index[order][:-1]
    winners = order[first]
    out[index[winners]] = values[winners]
    pos[index[winners]] = winners
    return out, pos


def segment_logsumexp(values: np.ndarray, index: np.ndarray, size: int):
    """Per segment log Σ exp, -inf for empty segments; also the per-element weights
    ``exp(values - out[index])`` (0 for -inf)."""
    m = np.full(size, -np.inf)
    np.maximum.at(m, index, values)
    safe = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(values - safe[index])
    s = np.bincount(index, weights=e, minlength=size)
    with np.errstate(divide="ignore"):
        out = safe + np.log(s)
    out[~np.isfinite(m)] = -np.inf
    weights = np.where(s[index] > 0, e / np.where(s[index] > 0, s[index], 1.0), 0.0)
    return out, weights


CHUNK = 1 << 15  # elements per pass of the elementwise lifts: the temporaries stay in the L2 cache


def _flat(x: np.ndarray):
    """A 1-D view of a C- or Fortran-contiguous array (memory order), else ``None``."""
    if x.flags.c_contiguous:
        return x.reshape(-1)
    if x.flags.f_contiguous:
        return x.T.reshape(-1)
    return None


def _xlogx_neg_into(a: np.ndarray, out: np.ndarray, absolute: np.ndarray = None) -> None:
    """``out = -a log a`` where ``a > 0``, else 0 (also for NaN and negative ``a``), for 1-D
    arrays, in chunks: the same IEEE operations as ``-a * log(a)``, so the same bits. With
    ``absolute``, ``a`` is first replaced by ``|a|`` written there."""
    for s in range(0, a.shape[0], CHUNK):
        x, o = a[s:s + CHUNK], out[s:s + CHUNK]
        if absolute is not None:
            x = np.abs(x, out=absolute[s:s + CHUNK])
        np.log(x, out=o)
        np.multiply(o, x, out=o)
        np.negative(o, out=o)
        np.copyto(o, 0.0, where=~(x > 0))


def _lift(w, absolute: bool, dtype=np.float64):
    w = np.asarray(w, dtype=dtype)
    out = np.empty_like(w)
    aw = np.empty_like(w) if absolute else None
    flat = [_flat(x) for x in (w, out) + ((aw,) if absolute else ())]
    with np.errstate(divide="ignore", invalid="ignore"):
        if any(f is None for f in flat) or out.strides != w.strides:
            aw = np.abs(w) if absolute else w
            out = np.where(aw > 0, -aw * np.log(np.where(aw > 0, aw, 1.0)), 0.0)
        else:
            _xlogx_neg_into(flat[0], flat[1], flat[2] if absolute else None)
    return aw, out


def xlogx_neg(a: np.ndarray) -> np.ndarray:
    """``-a log a`` with ``0 log 0 = 0`` (no NaN on exact zeros; 0 where ``a`` is not positive).

    >>> xlogx_neg(np.array([0.0, 0.5, 1.0, np.nan])).tolist()
    [0.0, 0.34657359027997264, -0.0, 0.0]
    """
    return _lift(a, False)[1]


def abs_xlogx_neg(w, dtype=np.float64) -> Tuple[np.ndarray, np.ndarray]:
    """``(|w|, -|w| log|w|)``: the entropy semiring's lift of real weights (with
    ``0 log 0 = 0``), in one chunked pass; the same numbers as ``xlogx_neg(np.abs(w))``.
    Computed in ``dtype`` (the semiring's value dtype).

    >>> aw, h = abs_xlogx_neg(np.array([[-0.5, 0.0]]))
    >>> aw.tolist(), h.tolist()
    ([[0.5, 0.0]], [[0.34657359027997264, 0.0]])
    """
    return _lift(w, True, dtype)


def safe_log_abs(w) -> np.ndarray:
    """``log|w|`` with ``log 0 = -inf`` and no warnings."""
    w = np.abs(np.asarray(w, dtype=np.float64))
    with np.errstate(divide="ignore"):
        return np.log(w)
