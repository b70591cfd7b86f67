"""Special functions numpy lacks: libm's ``erf`` (exact to the last bits) as a Numba ufunc.

The ufunc is built on the first call, not at import: importing graphengine does not import
Numba, so a command whose graph needs neither ``erf`` nor a compiled kernel never pays for it.

>>> float(erf(0.5)) == __import__("math").erf(0.5)
True
"""

import functools
import math

import numpy as np


@functools.lru_cache(maxsize=None)
def _erf_ufunc():
    import numba  # compiling erf takes a fraction of a second: no notice

    @numba.vectorize(["float64(float64)", "float32(float32)"], cache=True)
    def erf(x):  # pragma: no cover - compiled
        return math.erf(x)
    return erf


def erf(x):
    """``math.erf`` elementwise (float64 or float32, like its argument)."""
    return _erf_ufunc()(x)


SQRT_2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def normal_pdf(x: np.ndarray) -> np.ndarray:
    return INV_SQRT_2PI * np.exp(-0.5 * x * x)
