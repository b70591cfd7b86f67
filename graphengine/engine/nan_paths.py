"""Which elements have a path to the QoI through a NaN: the rule that makes NaN in give NaN out.

A path passes through NaN when one of its edges has a NaN local derivative or one of its
elements has a NaN forward value (a NaN activation makes the local derivatives around it
meaningless even where an op's formula says otherwise: ``relu'(NaN)`` evaluates to 0). Every
weighted semiring reports NaN at such elements (its statistic is over a set of paths that
includes a NaN one), however its kernels order NaN in comparisons or sums. The structural
semirings (``count``, ``logcount``, ``bool``) count edges whatever their weights and are left
as they are.

:class:`NaNReach` finds those elements in the same walk as the requested semirings, and only
when some activation holds NaN: values are 0 (no path), 1 (paths, none through NaN) and 2 (some
path through NaN); ⊕ is max and ⊗ is max with 0 absorbing, so contractions are exact counts
of 0/1 matrices, never NaN arithmetic.

>>> import numpy as np
>>> r = NaNReach()
>>> a = (np.array([[1.0, 2.0, 0.0]]),)
>>> r.matmul(a, np.array([[1.0], [1.0], [np.nan]]))[0][0].tolist()   # NaN only behind a dead entry
[[2.0]]
>>> r.matmul((np.array([[1.0, 0.0]]),), np.array([[np.nan], [1.0]]))[0][0].tolist()
[[2.0]]
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

import numpy as np

from ..semirings.base import Semiring

CLEAN, TAINTED = 1.0, 2.0


class NaNReach(Semiring):
    """0: no path; 1: paths, none through NaN; 2: a path through NaN (see the module doc)."""

    name = "nan_reach"
    components = ("reach",)
    zero_elements = (0.0,)
    one_elements = (CLEAN,)
    weighted = False

    def lift(self, w):
        return (np.where(np.isnan(np.asarray(w, dtype=np.float64)), TAINTED, CLEAN),)

    def times(self, a, b):
        return (np.where((a[0] > 0) & (b[0] > 0), np.maximum(a[0], b[0]), 0.0),)

    def plus(self, a, b):
        return (np.maximum(a[0], b[0]),), None

    def sum_last(self, a):
        return (a[0].max(axis=-1, initial=0.0),), None

    def scatter(self, a, index, size):
        out = np.zeros(size)
        np.maximum.at(out, index, a[0])
        return (out,), None

    def matmul(self, a, w):
        w = np.asarray(w, dtype=np.float64)
        x = a[0]
        best = x.max(axis=-1, initial=0.0)[..., None]                      # (.., M, 1)
        alive = (x > 0).astype(np.float64)
        via_nan = np.matmul(alive, np.isnan(w).astype(np.float64)) > 0       # exact: sums of 0/1
        out = np.where(best > 0, np.maximum(best, np.where(via_nan, TAINTED, 0.0)), 0.0)
        return (np.broadcast_to(out, np.broadcast_shapes(out.shape, via_nan.shape)).copy(),), None

    def finalize(self, v):
        return {"reach": v[0]}


def any_nan(activations: Mapping[int, np.ndarray], among: Optional[Iterable[int]] = None) -> bool:
    """Does any floating-point activation (of the nodes ``among``, default all) hold NaN?"""
    arrays = activations.values() if among is None else (activations[i] for i in among if i in activations)
    return any(a.dtype.kind == "f" and _has_nan(a) for a in map(np.asarray, arrays))


def _has_nan(a: np.ndarray) -> bool:
    """``np.isnan(a).any()`` without a boolean array of ``a``'s size: a NaN makes the sum NaN, so
    a sum that is not NaN proves there is none (a NaN sum may come from inf − inf: then look).

    >>> _has_nan(np.array([np.inf, -np.inf])), _has_nan(np.array([1.0, np.nan])), _has_nan(np.ones(3))
    (False, True, False)
    """
    with np.errstate(all="ignore"):
        if not np.isnan(np.sum(a)):
            return False
    return bool(np.isnan(a).any())


def taint_at(value, activation) -> tuple:
    """A :class:`NaNReach` adjoint with the elements whose own forward value is NaN marked."""
    act = np.asarray(activation)
    if not np.issubdtype(act.dtype, np.floating):
        return value
    return (np.where((value[0] > 0) & np.isnan(act), TAINTED, value[0]),)


def poison(sr: Semiring, value, reach) -> tuple:
    """``value`` with every component NaN where ``reach`` says a path passes through NaN (only
    for weighted semirings)."""
    if not sr.weighted:
        return value
    bad = np.asarray(reach) == TAINTED
    if not bad.any():
        return value
    return tuple(np.where(bad, np.nan, c) for c in value)
