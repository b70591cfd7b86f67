"""Sum over paths of the product of |local derivatives|: linear, so contractions are BLAS.

``Absolute`` is the entropy normaliser Z; ``LogAbsolute`` computes log Z in log space for deep
graphs, where Z under- or overflows float64.
"""

from __future__ import annotations

import numpy as np

from .families import LinearSemiring, LogLinearSemiring
from .reductions import safe_log_abs


class Absolute(LinearSemiring):
    """Σ_paths Π |w|.

    >>> Absolute().matmul((np.array([[1.0, 2.0]]),), np.array([[-3.0], [4.0]]))[0][0]
    array([[11.]])
    """

    name = "absolute"
    kernel = "absolute"
    components = ("Z",)
    log_twin = "log"
    value_dtypes = (np.float64, np.float32)

    def lift(self, w):
        return (np.abs(np.asarray(w, dtype=self.dtype)),)

    def times(self, a, b):
        return (a[0] * b[0],)

    def finalize(self, v):
        return {"Z": v[0]}


class LogAbsolute(LogLinearSemiring):
    """log Σ_paths Π |w| (log-sum-exp over paths of Σ log|w|).

    >>> v, _ = LogAbsolute().matmul((np.log([[1.0, 2.0]]),), np.array([[-3.0], [4.0]]))
    >>> bool(np.isclose(np.exp(v[0][0, 0]), 11.0))
    True
    """

    name = "log"
    kernel = "log"
    components = ("log_Z",)
    zero_elements = (-np.inf,)
    one_elements = (0.0,)

    def lift(self, w):
        return (safe_log_abs(w),)

    def times(self, a, b):
        return (a[0] + b[0],)

    def finalize(self, v):
        return {"log_Z": v[0]}
