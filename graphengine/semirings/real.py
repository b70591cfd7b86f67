"""The real semiring (+, ×): backpropagation itself; the result is the gradient."""

from __future__ import annotations

import numpy as np

from .base import Semiring


class Real(Semiring):
    """Sum over paths of the product of local derivatives = the gradient.

    >>> import numpy as np
    >>> r = Real()
    >>> r.matmul((np.array([[1.0, 2.0]]),), np.array([[3.0], [4.0]]))[0][0]
    array([[11.]])
    """

    name = "real"
    kernel = "real"
    components = ("grad",)
    zero_elements = (0.0,)
    one_elements = (1.0,)

    def lift(self, w):
        return (np.asarray(w, dtype=self.dtype),)

    def times(self, a, b):
        return (a[0] * b[0],)

    def scale(self, a, w):
        return (a[0] * w,)

    def plus(self, a, b):
        return (a[0] + b[0],), None

    def sum_last(self, a):
        return (a[0].sum(axis=-1),), None

    def matmul(self, a, w):
        return (np.matmul(a[0], w),), None  # BLAS

    def scatter(self, a, index, size):
        return (np.bincount(index, weights=a[0], minlength=size).astype(self.dtype, copy=False),), None

    def finalize(self, v):
        return {"grad": v[0]}
