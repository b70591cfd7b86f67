"""The real semiring (+, ×): backpropagation itself; the result is the gradient."""

from __future__ import annotations

import numpy as np

from .families import LinearSemiring


class Real(LinearSemiring):
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
    log_twin = "log"  # log Z bounds |grad|
    may_cancel = True
    value_dtypes = (np.float64, np.float32)

    def lift(self, w):
        return (np.asarray(w, dtype=self.dtype),)

    def times(self, a, b):
        return (a[0] * b[0],)

    def finalize(self, v):
        return {"grad": v[0]}
