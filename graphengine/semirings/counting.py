"""Structural semirings: every edge an op declares counts, whatever its weight.

- :class:`Counting` — the number of paths, as float64 (exact up to 2**53; ``inf`` beyond).
- :class:`LogCounting` — log of the number of paths (no overflow).
- :class:`Boolean` — reachability, with backpointers to one reaching consumer element.

Edges an op declares absent (``where`` with a constant mask, out-of-range movement) are not
paths; a dead ReLU is (its edge has weight 0 but exists).
"""

from __future__ import annotations

import numpy as np

from .families import LinearSemiring, LogLinearSemiring, SelectiveSemiring
from .reductions import logsumexp_last


class Counting(LinearSemiring):
    """Number of paths.

    >>> Counting().matmul((np.array([[1.0, 2.0]]),), np.array([[0.0], [-5.0]]))[0][0]
    array([[3.]])
    """

    name = "count"
    kernel = "count"
    components = ("paths",)
    log_twin = "logcount"
    weighted = False
    value_dtypes = (np.float64, np.float32)  # float32 counts are exact up to 2**24 paths

    def lift(self, w):
        return (np.ones(np.shape(w), dtype=self.dtype),)

    def times(self, a, b):
        return (a[0] * b[0],)

    def finalize(self, v):
        return {"paths": v[0]}


class LogCounting(LogLinearSemiring):
    """log(number of paths); -inf where there is none.

    >>> v, _ = LogCounting().matmul((np.log([[1.0, 2.0]]),), np.array([[0.0], [-5.0]]))
    >>> bool(np.isclose(np.exp(v[0][0, 0]), 3.0))
    True
    """

    name = "logcount"
    kernel = "logcount"
    components = ("log_paths",)
    zero_elements = (-np.inf,)
    one_elements = (0.0,)
    weighted = False

    def lift(self, w):
        return (np.zeros(np.shape(w), dtype=self.dtype),)

    def times(self, a, b):
        return (a[0] + b[0],)

    def matmul(self, a, w):  # every lifted weight is 0: one log-sum-exp per row, broadcast over k
        K = np.shape(w)[-1]
        out = logsumexp_last(a[0])[..., None]
        batch = np.broadcast_shapes(a[0].shape[:-2], np.shape(w)[:-2])
        return (np.broadcast_to(out, batch + (a[0].shape[-2], K)).copy(),), None

    def finalize(self, v):
        return {"log_paths": v[0]}


class Boolean(SelectiveSemiring):
    """Reachability: is there any path to the QoI? (values are 0.0 / 1.0)"""

    name = "bool"
    kernel = "bool"
    components = ("reachable",)
    zero_elements = (0.0,)
    one_elements = (1.0,)
    log_twin = "logcount"
    weighted = False

    def lift(self, w):
        return (np.ones(np.shape(w), dtype=self.dtype),)

    def times(self, a, b):
        return (np.minimum(a[0], b[0]),)

    def matmul(self, a, w):  # every lifted weight is 1̄: the row's best n, broadcast over k
        K = np.shape(w)[-1]
        batch = np.broadcast_shapes(a[0].shape[:-2], np.shape(w)[:-2])
        a0 = np.broadcast_to(a[0], batch + a[0].shape[-2:])
        p = np.argmax(a0, axis=-1)
        v = np.take_along_axis(a0, p[..., None], -1)
        return (np.broadcast_to(v, batch + (a0.shape[-2], K)).copy(),), \
            (np.broadcast_to(p[..., None], batch + (a0.shape[-2], K)).copy(),)

    def finalize(self, v):
        return {"reachable": v[0] > 0}

    def path_mask(self, v):
        return v[0] > 0  # 0/1 values cannot underflow

    def paper_view(self):
        from .maxproduct import _View

        class _NoPointers(_View):
            def sum_last(s, a):
                return self.sum_last(a)[0], None

            def matmul(s, a, w):
                return self.matmul(a, w)[0], None

            def scatter(s, a, index, size):
                return self.scatter(a, index, size)[0], None

        return _NoPointers(self)
