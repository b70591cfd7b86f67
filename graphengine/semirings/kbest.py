"""k-best semirings: the k heaviest paths, with backpointers that also name the *rank* of the
consumer's path each one extends.

- :class:`KBestSigned` (``kbest:K``) — the k largest signed path products. An element keeps up
  to 2k *distinct* paths: ``top1 ≥ … ≥ topk`` and then the k smallest of the remaining paths
  (``rest1 ≤ … ≤ restk``). Every operation selects from the distinct candidate paths of its
  operands, so a negative edge (which turns the smallest products into the largest) stays exact
  and no path is ever counted twice.
- :class:`KBestAbs` (``kbestabs:K``) — the k largest |path products|.

Missing entries (fewer than k paths) are −∞ in top lists and +∞ in rest lists, so a path of
weight ±∞ cannot be told from a missing one here (use ``max``, whose pair keeps −∞ paths);
an element with a path through a NaN has NaN in every component (``backward``'s NaN rule). Ties keep the
lower candidate position (stable sort).

K is at most ``graphengine.io.LIMITS.max_k`` (4096 by default; :func:`graphengine.io.limits`
raises it): every element carries up to 2K values, so a larger K is refused with one line
naming K, the bytes per element and the limit, before anything is allocated. ``backward``
then checks its estimate for the whole graph against the memory budget
(:mod:`graphengine.engine.budget`).

Component values come from several source components, so these semirings record their winners
with :class:`~graphengine.semirings.pointers.RankedPointers`: reduction positions encode
``n * n_components + source_component``.

>>> s = KBestSigned(2)
>>> v = s.plus(s.lift(np.array([3.0])), s.lift(np.array([-1.0])))[0]
>>> v = s.plus(v, s.lift(np.array([2.0])))[0]
>>> [float(c[0]) for c in v]         # top1, top2, rest1, rest2
[3.0, 2.0, -1.0, inf]
>>> [float(c[0]) for c in s.scale(v, np.array([-1.0]))]
[1.0, -2.0, -3.0, inf]
"""

from __future__ import annotations

import numpy as np

from .. import io as files
from ..errors import ResourceLimitError
from .base import Semiring
from .pointers import RANKED_POINTERS
from .reductions import CHUNK_ELEMENTS

NEG, POS = -np.inf, np.inf


def check_k(k: int, signed: bool = True) -> None:
    """Refuse a K over ``graphengine.io.LIMITS.max_k`` (one line naming K, the estimate, the limit).

    >>> check_k(10**9)
    Traceback (most recent call last):
    graphengine.errors.ResourceLimitError: kbest:1000000000: K = 1,000,000,000 is over the limit of 4,096 (graphengine.io.LIMITS.max_k); each tensor element would carry an estimated 44.7 GiB of values and backpointers
    """
    limit = files.LIMITS.max_k
    if k > limit:
        name = "kbest" if signed else "kbestabs"
        per = (2 if signed else 1) * k * BYTES_PER_COMPONENT
        raise ResourceLimitError(f"{name}:{k}: K = {k:,} is over the limit of {limit:,} (graphengine.io.LIMITS.max_k); "
                                 f"each tensor element would carry an estimated {files.format_bytes(per)} of values "
                                 "and backpointers")


BYTES_PER_COMPONENT = 8 + 4 + 2 + 8 + 2  # value, backpointer node, slot, element, rank


class _KBest(Semiring):
    pointers = RANKED_POINTERS
    signed = True
    paper_granularity = False

    def __init__(self, k: int = 3):
        if int(k) < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        check_k(int(k), self.signed)
        self.k = int(k)
        tops = tuple(f"top{i + 1}" for i in range(self.k))
        rests = tuple(f"rest{i + 1}" for i in range(self.k)) if self.signed else ()
        self.components = tops + rests
        self.zero_elements = (NEG,) * self.k + (POS,) * len(rests)
        self.one_elements = (1.0,) + (NEG,) * (self.k - 1) + ((POS,) * len(rests))
        self.directions = ("max",) * self.k + ("min",) * len(rests)

    def __repr__(self):
        return f"{type(self).__name__}({self.k})"

    # ---- the one selection primitive: candidates on the last axis -> k best (+ k rest)
    def _select(self, cand: np.ndarray, present: np.ndarray):
        k = self.k
        C = cand.shape[-1]
        if C < k:  # pad so that there are always k candidates
            pad = [(0, 0)] * (cand.ndim - 1) + [(0, k - C)]
            cand = np.pad(cand, pad, constant_values=0.0)
            present = np.pad(present, pad, constant_values=False)
        key = np.where(present, cand, NEG)
        order = np.argsort(-key, axis=-1, kind="stable")[..., :k]
        top = np.take_along_axis(key, order, -1)
        values = [top[..., i] for i in range(k)]
        pos = [np.where(np.isneginf(top[..., i]), -1, order[..., i]) for i in range(k)]
        if self.signed:
            left = present.copy()
            np.put_along_axis(left, order, False, axis=-1)
            key2 = np.where(left, cand, POS)
            order2 = np.argsort(key2, axis=-1, kind="stable")[..., :k]
            rest = np.take_along_axis(key2, order2, -1)
            values += [rest[..., i] for i in range(k)]
            pos += [np.where(np.isposinf(rest[..., i]), -1, order2[..., i]) for i in range(k)]
        return tuple(values), tuple(pos)

    def _present(self, a):
        return [np.isfinite(c) for c in a]

    def _stack(self, a):
        return np.stack(a, axis=-1), np.stack(self._present(a), axis=-1)

    # ---- algebra
    def lift(self, w):
        w = np.asarray(w, dtype=self.dtype)
        w = w if self.signed else np.abs(w)
        return (w,) + tuple(np.full(w.shape, z) for z in self.zero_elements[1:])

    def scale_with_sources(self, a, w):
        w = np.asarray(w, dtype=self.dtype)
        w = w if self.signed else np.abs(w)
        cand, present = self._stack(a)
        with np.errstate(invalid="ignore"):
            prod = cand * np.asarray(w)[..., None]
        return self._select(prod, np.broadcast_to(present, prod.shape))

    def scale(self, a, w):
        return self.scale_with_sources(a, w)[0]

    def times(self, a, b):
        ca, pa = self._stack(a)
        cb, pb = self._stack(b)
        with np.errstate(invalid="ignore"):
            prod = ca[..., :, None] * cb[..., None, :]
        present = pa[..., :, None] & pb[..., None, :]
        shape = prod.shape[:-2] + (-1,)
        return self._select(prod.reshape(shape), present.reshape(shape))[0]

    def plus(self, a, b):
        cand, present = self._stack(tuple(a) + tuple(b))
        return self._select(cand, present)

    def sum_last(self, a):
        cand, present = self._stack(a)  # (..., N, C)
        shape = cand.shape[:-2] + (-1,)
        return self._select(cand.reshape(shape), present.reshape(shape))

    def matmul(self, a, w):
        w = np.asarray(w, dtype=self.dtype)
        w = w if self.signed else np.abs(w)
        cand, present = self._stack(a)                       # (.., M, N, C)
        batch = np.broadcast_shapes(cand.shape[:-3], w.shape[:-2])
        cand = np.broadcast_to(cand, batch + cand.shape[-3:])
        present = np.broadcast_to(present, cand.shape)
        w = np.broadcast_to(w, batch + w.shape[-2:])
        M, N, C, K = cand.shape[-3], cand.shape[-2], cand.shape[-1], w.shape[-1]
        step = max(1, CHUNK_ELEMENTS // max(1, int(np.prod(batch, dtype=np.int64)) * N * C * K))
        values = [np.empty(batch + (M, K)) for _ in self.components]
        pos = [np.empty(batch + (M, K), dtype=np.int64) for _ in self.components]
        for m0 in range(0, M, step):
            c = cand[..., m0:m0 + step, :, :, None]          # (.., m, N, C, 1)
            with np.errstate(invalid="ignore"):
                prod = c * w[..., None, :, None, :]          # (.., m, N, C, K)
            p = np.broadcast_to(present[..., m0:m0 + step, :, :, None], prod.shape)
            prod = np.moveaxis(prod, -1, -3)                 # (.., m, K, N, C)
            p = np.moveaxis(p, -1, -3)
            shape = prod.shape[:-2] + (N * C,)
            v, q = self._select(prod.reshape(shape), p.reshape(shape))
            for i in range(len(self.components)):
                values[i][..., m0:m0 + step, :] = v[i]
                pos[i][..., m0:m0 + step, :] = q[i]
        return tuple(values), tuple(pos)

    def scatter(self, a, index, size):
        C = len(a)
        cand, present = self._stack(a)                       # (J, C)
        J = cand.shape[0]
        seg_count = np.bincount(index, minlength=size)
        width = max(1, int(seg_count.max()) if J else 1)
        # lay each segment's candidates out in a (size, width * C) table
        order = np.argsort(index, kind="stable")
        slot = np.arange(J) - np.repeat(np.cumsum(seg_count) - seg_count, seg_count)
        table = np.zeros((size, width, C))
        tpres = np.zeros((size, width, C), dtype=bool)
        src = np.full((size, width), -1, dtype=np.int64)
        table[index[order], slot] = cand[order]
        tpres[index[order], slot] = present[order]
        src[index[order], slot] = order
        v, q = self._select(table.reshape(size, width * C), tpres.reshape(size, width * C))
        # translate table positions back to (j * C + component)
        pos = []
        for p in q:
            j = np.where(p >= 0, src[np.arange(size), np.maximum(p, 0) // C], -1)
            pos.append(np.where(p >= 0, j * C + np.maximum(p, 0) % C, -1))
        return v, tuple(pos)

    def finalize(self, v):
        return dict(zip(self.components, v))


class KBestSigned(_KBest):
    signed = True
    kernel = "kbest"

    def __init__(self, k: int = 3):
        super().__init__(k)
        self.name = f"kbest:{self.k}"


class KBestAbs(_KBest):
    signed = False
    kernel = "kbest"

    def __init__(self, k: int = 3):
        super().__init__(k)
        self.name = f"kbestabs:{self.k}"
