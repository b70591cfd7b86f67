"""Idempotent "heaviest path" semirings, with element backpointers.

- :class:`SignedMaxPair` — ⟨M⁺, M⁻⟩, the largest and the most negative path product; an edge
  of negative weight swaps the two, which makes the pair exact (docs/method.md).
- :class:`MaxAbs` — the largest |path product|.
- :class:`MaxPlus` — the same in log space: max over paths of Σ log|w| (no underflow).

0̄ (no path) is −∞ (and +∞ for M⁻); a path whose product is exactly 0 is still a path, and so
is a path of weight ±∞ (an edge of infinite local derivative, like d(−log x)/dx at 0): the
pair has no path only where M⁺ = −∞ *and* M⁻ = +∞, so a −∞ path is ⟨−∞, −∞⟩ (see
:class:`~graphengine.semirings.pointers.PairPointers`). In
:class:`MaxPlus` a zero-weight edge has log-weight −∞ and so is indistinguishable from no edge.
"""

from __future__ import annotations

import numpy as np

from .base import Semiring
from .families import LinearSemiring, LogLinearSemiring, SelectiveSemiring
from .pointers import NO_POINTERS, PAIR_POINTERS
from .reductions import contract, safe_log_abs

NEG, POS = -np.inf, np.inf


def _dead(pair) -> np.ndarray:
    """No path: ⟨−∞, +∞⟩ (⟨−∞, −∞⟩ is a path of weight −∞)."""
    return (pair[0] == NEG) & (pair[1] == POS)


class SignedMaxPair(SelectiveSemiring):
    """⟨M⁺, M⁻⟩ = (max, min) over paths of the signed product of local derivatives.

    >>> s = SignedMaxPair()
    >>> v, pos = s.matmul((np.array([[2.0, -3.0]]), np.array([[2.0, -3.0]])), np.array([[1.0], [-1.0]]))
    >>> (float(v[0][0, 0]), float(v[1][0, 0])), pos[0][0, 0].tolist(), pos[1][0, 0].tolist()
    ((3.0, 2.0), 1, 0)
    """

    name = "max"
    kernel = "maxpair"
    components = ("max", "min")
    zero_elements = (NEG, POS)
    one_elements = (1.0, 1.0)
    directions = ("max", "min")
    log_twin = "maxplus"
    pointers = PAIR_POINTERS

    def lift(self, w):
        w = np.asarray(w, dtype=self.dtype)
        return (w, w)

    def scale(self, a, w):  # one product per component instead of ⊗'s four
        w = np.asarray(w, dtype=self.dtype)
        with np.errstate(invalid="ignore"):  # 0̄ · 0 is NaN here; the dead mask below restores 0̄
            hi = np.where(w >= 0, a[0], a[1]) * w
            lo = np.where(w >= 0, a[1], a[0]) * w
        dead = _dead(a)
        return (np.where(dead, NEG, hi), np.where(dead, POS, lo))

    def times(self, a, b):
        with np.errstate(invalid="ignore"):
            c = [a[i] * b[j] for i in (0, 1) for j in (0, 1)]
        dead = _dead(a) | _dead(b)
        return (np.where(dead, NEG, np.maximum.reduce(c)), np.where(dead, POS, np.minimum.reduce(c)))

    @staticmethod
    def _products(parts, w, high):
        hi, lo = parts
        src = np.where(w >= 0, hi, lo) if high else np.where(w >= 0, lo, hi)
        dead = _dead(parts)
        with np.errstate(invalid="ignore"):
            return np.where(dead, NEG if high else POS, src * w)

    def matmul(self, a, w):  # as scale: the sign of w picks the source component (⊗ forms four products)
        def products(parts, ww):
            return self._products(parts, ww[0], True), self._products(parts, ww[0], False)
        return contract(a, (np.asarray(w, dtype=self.dtype),), products, self.sum_last, self.zeros, True)

    def finalize(self, v):
        return {"max": v[0], "min": v[1]}

    def path_magnitude(self, finalized):
        return np.maximum(np.abs(finalized["max"]), np.abs(finalized["min"]))

    def next_component(self, component, w):
        return component if w >= 0 else 1 - component

    def paper_view(self):
        return _SummingView(self, signed=True)


class MaxAbs(SelectiveSemiring):
    """max over paths of |product|; unreachable elements finalize to 0."""

    name = "maxabs"
    kernel = "maxabs"
    components = ("max_abs",)
    zero_elements = (NEG,)
    one_elements = (1.0,)
    log_twin = "maxplus"

    def lift(self, w):
        return (np.abs(np.asarray(w, dtype=self.dtype)),)

    def times(self, a, b):
        dead = (a[0] == NEG) | (b[0] == NEG)
        with np.errstate(invalid="ignore"):
            return (np.where(dead, NEG, a[0] * b[0]),)

    def finalize(self, v):
        return {"max_abs": np.where(v[0] == NEG, 0.0, v[0])}

    def paper_view(self):
        return _SummingView(self, signed=False)


class MaxPlus(SelectiveSemiring):
    """max over paths of Σ log|w| (the log of :class:`MaxAbs`, immune to underflow)."""

    name = "maxplus"
    kernel = "maxplus"
    components = ("max_log_abs",)
    zero_elements = (NEG,)
    one_elements = (0.0,)
    log_space = True

    def lift(self, w):
        return (safe_log_abs(w),)

    def times(self, a, b):
        return (a[0] + b[0],)

    def finalize(self, v):
        return {"max_log_abs": v[0]}

    def paper_view(self):
        return _LogSummingView(self)


class _View(Semiring):
    """Delegates the algebra to a base semiring; subclasses replace the in-op reductions."""

    pointers = NO_POINTERS
    kernel = None  # paper views run on the reference

    def __init__(self, base: Semiring):
        self.base = base
        self.name, self.components = base.name, base.components
        self.zero_elements, self.one_elements = base.zero_elements, base.one_elements

    def lift(self, w):
        return self.base.lift(w)

    def scale(self, a, w):
        return self.base.scale(a, w)

    def times(self, a, b):
        return self.base.times(a, b)

    def plus(self, a, b):
        return self.base.plus(a, b)[0], None

    def finalize(self, v):
        return self.base.finalize(v)


class _SummingView(LinearSemiring):
    """The original implementation's "max" inside one op, for :class:`SignedMaxPair` and
    :class:`MaxAbs` (docs/granularity.md).

    Inside an op both components are plain sums of path products: :meth:`scale` multiplies each
    component by the edge weight *without* swapping (``|w|`` for maxabs), and the op's own
    summation (contracted index, broadcast dimensions, reduced positions, scattered rows) adds.
    Only then :meth:`close_op` orders the pair per element: ``M⁺ = max(S⁺, S⁻)``,
    ``M⁻ = min(S⁺, S⁻)``. Across consumer nodes the walk takes the base semiring's max / min.

    As in the original's dense arrays, "no path" is a path of weight 0: 0̄ is 0, so an element
    that the QoI or an indexing op (select, slice, gather, an embedding row) did not select gets
    a path of weight 0 rather than none, and an input reaching the QoI both through selected and
    through unselected elements has ``M⁺ ≥ 0 ≥ M⁻``. The walk's cross-consumer max / min and its
    backpointers (consumer node and slot) are the base semiring's; one consumer using a node in
    two slots counts as two consumers.

    >>> v = SignedMaxPair().paper_view()
    >>> h = (np.array([[1.0, 1.0]]), np.array([[-1.0, -1.0]]))  # ⟨M⁺, M⁻⟩ of h = x @ W
    >>> W = np.array([[1.0, 1.0], [-2.0, -3.0]])
    >>> s, _ = v.matmul(h, W.T)                                     # x's sums, not yet ordered
    >>> [c.tolist() for c in s], [c.tolist() for c in v.close_op(s)]
    ([[[2.0, -5.0]], [[-2.0, 5.0]]], [[[2.0, 5.0]], [[-2.0, -5.0]]])
    """

    pointers = NO_POINTERS
    kernel = None  # paper views run on the reference

    def __init__(self, base: Semiring, signed: bool):
        self.base, self.signed = base, signed
        self.name, self.components = base.name, base.components
        self.zero_elements = tuple(0.0 for _ in base.components)
        self.one_elements = base.one_elements

    def _weight(self, w):
        w = np.asarray(w, dtype=self.dtype)
        return w if self.signed else np.abs(w)

    def lift(self, w):
        return (self._weight(w),) * len(self.components)

    def times(self, a, b):
        return tuple(x * y for x, y in zip(a, b))

    def scale(self, a, w):
        w = self._weight(w)
        return tuple(x * w for x in a)

    def matmul(self, a, w):
        w = self._weight(w)
        return tuple(np.matmul(x, w) for x in a), None

    def close_op(self, v):
        if len(v) == 1:
            return v
        return np.maximum(v[0], v[1]) + 0.0, np.minimum(v[0], v[1]) + 0.0  # + 0.0: no −0 from 0 · (−w)

    def finalize(self, v):
        return self.base.finalize(v)


class _LogSummingView(_View, LogLinearSemiring):
    """:class:`MaxPlus` with the in-op reductions of the log-linear family (log-sum-exp)."""
