"""Index plumbing of the backward walk, compiled: gathering consumer indices at winning
positions and masking the backpointers of unreached elements. Semiring-independent.

The Numba functions are built on first use (cached on disk like every kernel), so importing the
engine imports no Numba; below :func:`graphengine.kernels.dispatch.min_work` elements the numpy
equivalent runs instead (same integers).

>>> import numpy as np
>>> take_or_minus1(np.array([10, 11, 12]), np.array([2, -1, 0])).tolist()
[12, -1, 10]
"""

from __future__ import annotations

import functools

import numpy as np

from .dispatch import min_work
from .families import contiguous


@functools.lru_cache(maxsize=None)
def _compiled():
    from .cache import njit

    @njit(cache=True, boundscheck=False)
    def take(i, p, out):
        for s in range(p.shape[0]):
            q = p[s]
            out[s] = i[q] if q >= 0 else -1

    @njit(cache=True, boundscheck=False)
    def mask(value, zero, node, slot, elem, on, osl, oel):
        for j in range(value.shape[0]):
            if value[j] == zero:
                on[j] = -1
                osl[j] = -1
                oel[j] = -1
            else:
                on[j] = node[j]
                osl[j] = slot[j]
                oel[j] = elem[j]
    return take, mask


def take_or_minus1(i: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``i[p]`` where ``p >= 0``, -1 elsewhere (1-D ``i``; ``p`` of any shape)."""
    flat = contiguous(p, np.int64).reshape(-1)
    if i.size == 0:
        out = np.full(flat.shape[0], -1, np.int64)
    elif flat.shape[0] < min_work():
        src = np.asarray(i, dtype=np.int64).reshape(-1)
        out = np.where(flat >= 0, src[np.maximum(flat, 0)], np.int64(-1))
    else:
        out = np.empty(flat.shape[0], np.int64)
        _compiled()[0](contiguous(i, np.int64).reshape(-1), flat, out)
    return out.reshape(np.shape(p))


def mask_unreached(value: np.ndarray, zero: float, node, slot, elem):
    """Copies of the three backpointer arrays with -1 where ``value == zero`` (no path)."""
    shape = value.shape
    flat = [contiguous(np.broadcast_to(a, shape), np.asarray(a).dtype).reshape(-1) for a in (value, node, slot, elem)]
    out = (np.empty(flat[0].shape[0], np.int32), np.empty(flat[0].shape[0], np.int16),
           np.empty(flat[0].shape[0], np.int64))
    _compiled()[1](flat[0].astype(np.float64, copy=False), float(zero), flat[1].astype(np.int32, copy=False),
                   flat[2].astype(np.int16, copy=False), flat[3].astype(np.int64, copy=False), *out)
    return tuple(o.reshape(shape) for o in out)
