"""Special functions numpy lacks, as Numba ufuncs (libm's ``erf``, exact to the last bits)."""

import math

import numba
import numpy as np


@numba.vectorize(["float64(float64)", "float32(float32)"], cache=True)
def erf(x):  # pragma: no cover - compiled
    return math.erf(x)


SQRT_2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def normal_pdf(x: np.ndarray) -> np.ndarray:
    return INV_SQRT_2PI * np.exp(-0.5 * x * x)
