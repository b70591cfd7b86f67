"""Semiring families: ⊕ and every reduction derived once per family.

A semiring of a family declares its constants, :meth:`~graphengine.semirings.base.Semiring.lift`,
:meth:`~graphengine.semirings.base.Semiring.times` and ``finalize``; ``plus``, ``sum_last``,
``scatter``, ``matmul`` and ``scale`` come from the family (``matmul`` and ``scale`` through ⊗,
see :class:`~graphengine.semirings.base.Semiring`). A subclass overrides one only for speed
(BLAS for a linear contraction, a broadcast instead of a product with ones).

- :class:`LinearSemiring`: ⊕ is ``+`` on every component (real, absolute, counting, entropy).
- :class:`LogLinearSemiring`: values ``⟨ℓ, h₁, …⟩`` where ``ℓ`` is the log of a linear sum and
  the ``hᵢ`` are ``exp(ℓ)``-weighted means; ⊕ is log-sum-exp on ``ℓ`` and the weighted mean on
  the rest (log, logcount, logentropy).
- :class:`SelectiveSemiring`: ⊕ keeps, per component, the larger or the smaller operand
  (``directions``), with element backpointers (max, maxabs, maxplus, bool).

>>> import numpy as np
>>> from graphengine.semirings.reductions import safe_log_abs
>>> class MinPlus(SelectiveSemiring):   # shortest path, edge length −log|w|: the algebra only
...     name, components, directions = "minplus", ("length",), ("min",)
...     zero_elements, one_elements = (np.inf,), (0.0,)
...     def lift(self, w): return (-safe_log_abs(w),)
...     def times(self, a, b): return (a[0] + b[0],)
...     def finalize(self, v): return {"length": v[0]}
>>> v, pos = MinPlus().matmul((np.array([[1.0, 5.0]]),), np.array([[0.5], [2.0]]))
>>> round(float(v[0][0, 0]), 4), pos[0].tolist()
(1.6931, [[0]])
"""

from __future__ import annotations

import numpy as np

from .base import Semiring
from .pointers import ELEMENT_POINTERS
from .reductions import logsumexp_last, segment_logsumexp, segment_select


class LinearSemiring(Semiring):
    """⊕ is ``+`` on every component and ⊗ is bilinear. With one component (and 1̄ = 1) ⊗ is
    the product of reals, so a contraction is one BLAS call on the lifted weights."""

    def plus(self, a, b):
        return tuple(x + y for x, y in zip(a, b)), None

    def sum_last(self, a):
        return tuple(x.sum(axis=-1) for x in a), None

    def scatter(self, a, index, size):
        if np.dtype(self.dtype) == np.float64:
            return tuple(np.bincount(index, weights=x, minlength=size) for x in a), None
        # float32 values: accumulate in place, in float32 (bincount would fill a float64
        # array of the whole output, a 30522×384 word table for an embedding, and then copy it)
        out = tuple(np.zeros(size, self.dtype) for _ in a)
        for o, x in zip(out, a):
            np.add.at(o, index, x)
        return out, None

    def matmul(self, a, w):
        if len(self.components) == 1:
            return (np.matmul(a[0], self.lift(w)[0]),), None
        return super().matmul(a, w)


class LogLinearSemiring(Semiring):
    """⟨ℓ, h₁, …⟩ with ⟨ℓ₁, h⟩ ⊕ ⟨ℓ₂, h'⟩ = ⟨log(e^ℓ₁ + e^ℓ₂), (e^ℓ₁ h + e^ℓ₂ h') / e^ℓ⟩: the
    log of a linear semiring's first component, with weighted means alongside (0 where ℓ = −∞)."""

    log_space = True

    def plus(self, a, b):
        lse = np.logaddexp(a[0], b[0])
        if len(a) == 1:
            return (lse,), None
        fin = np.isfinite(lse)
        safe = np.where(fin, lse, 0.0)
        wa, wb = np.exp(a[0] - safe), np.exp(b[0] - safe)
        return (lse,) + tuple(np.where(fin, wa * x + wb * y, 0.0) for x, y in zip(a[1:], b[1:])), None

    def sum_last(self, a):
        lse = logsumexp_last(a[0])
        if len(a) == 1:
            return (lse,), None
        fin = np.isfinite(lse)
        wts = np.exp(a[0] - np.where(fin, lse, 0.0)[..., None])
        return (lse,) + tuple(np.where(fin, np.sum(wts * h, axis=-1), 0.0) for h in a[1:]), None

    def scatter(self, a, index, size):
        lse, wts = segment_logsumexp(a[0], index, size)
        fin = np.isfinite(lse)
        return (lse,) + tuple(np.where(fin, np.bincount(index, weights=wts * h, minlength=size), 0.0)
                              for h in a[1:]), None


class SelectiveSemiring(Semiring):
    """⊕ keeps, per component, the larger (``"max"``) or smaller (``"min"``) operand; the
    winner's position is reported for the element backpointers. Ties keep the first operand and
    the lowest index."""

    pointers = ELEMENT_POINTERS
    directions = ("max",)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not set(cls.directions) <= {"max", "min"}:
            raise TypeError(f"{cls.__name__}.directions must be 'max' or 'min' per component, got {cls.directions}")

    def plus(self, a, b):
        values, picks = [], []
        for x, y, d in zip(a, b, self.directions):
            values.append(np.maximum(x, y) if d == "max" else np.minimum(x, y))
            picks.append(y > x if d == "max" else y < x)
        return tuple(values), tuple(picks)

    def sum_last(self, a):
        values, pos = [], []
        for x, d in zip(a, self.directions):
            p = np.argmax(x, axis=-1) if d == "max" else np.argmin(x, axis=-1)
            values.append(np.take_along_axis(x, p[..., None], -1)[..., 0])
            pos.append(p)
        return tuple(values), tuple(pos)

    def scatter(self, a, index, size):
        won = [segment_select(x, index, size, d == "max", z)
               for x, d, z in zip(a, self.directions, self.zero_elements)]
        return tuple(v for v, _ in won), tuple(p for _, p in won)
