"""Sum over paths of the product of |local derivatives|: linear, so contractions are BLAS.

``Absolute`` is the entropy normaliser Z; ``LogAbsolute`` computes log Z in log space for deep
graphs, where Z under- or overflows float64.
"""

from __future__ import annotations

import numpy as np

from ._numpy import log_matmul, logsumexp_last, safe_log_abs, segment_logsumexp
from .base import Semiring


class Absolute(Semiring):
    """Σ_paths Π |w|.

    >>> Absolute().matmul((np.array([[1.0, 2.0]]),), np.array([[-3.0], [4.0]]))[0][0]
    array([[11.]])
    """

    name = "absolute"
    kernel = "absolute"
    components = ("Z",)

    def lift(self, w):
        return (np.abs(np.asarray(w, dtype=self.dtype)),)

    def times(self, a, b):
        return (a[0] * b[0],)

    def scale(self, a, w):
        return (a[0] * np.abs(w),)

    def plus(self, a, b):
        return (a[0] + b[0],), None

    def sum_last(self, a):
        return (a[0].sum(axis=-1),), None

    def matmul(self, a, w):
        return (np.matmul(a[0], np.abs(w)),), None

    def scatter(self, a, index, size):
        return (np.bincount(index, weights=a[0], minlength=size).astype(self.dtype, copy=False),), None

    def finalize(self, v):
        return {"Z": v[0]}


class LogAbsolute(Semiring):
    """log Σ_paths Π |w| (log-sum-exp over paths of Σ log|w|)."""

    name = "log"
    kernel = "log"
    components = ("log_Z",)
    zero_elements = (-np.inf,)
    one_elements = (0.0,)

    def lift(self, w):
        return (safe_log_abs(w),)

    def times(self, a, b):
        return (a[0] + b[0],)

    def plus(self, a, b):
        return (np.logaddexp(a[0], b[0]),), None

    def sum_last(self, a):
        return (logsumexp_last(a[0]),), None

    def matmul(self, a, w):
        return (log_matmul(a[0], safe_log_abs(w)),), None

    def scatter(self, a, index, size):
        return (segment_logsumexp(a[0], index, size)[0],), None

    def finalize(self, v):
        return {"log_Z": v[0]}
