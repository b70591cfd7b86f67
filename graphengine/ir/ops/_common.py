"""Shape helpers shared by the op definitions."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from ..dtypes import is_float, promote
from ..registry import ShapeError, TensorType


def broadcast_shapes(*shapes: Sequence[int]) -> Tuple[int, ...]:
    try:
        return tuple(int(s) for s in np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        raise ShapeError("shapes " + ", ".join(str(list(s)) for s in shapes) + " do not broadcast") from None


def norm_axis(axis: int, ndim: int, what: str = "dim") -> int:
    if not -ndim <= axis < max(ndim, 1):
        raise ShapeError(f"{what} {axis} out of range for a tensor with {ndim} dims")
    return axis % ndim if ndim else 0


def norm_axes(axes, ndim: int) -> Tuple[int, ...]:
    """``None`` means all axes; ints are normalized to non-negative, sorted and de-duplicated."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, (int, np.integer)):
        axes = [axes]
    out = sorted({norm_axis(int(a), ndim) for a in axes})
    if len(out) != len(list(axes)):
        raise ShapeError(f"repeated axis in {list(axes)}")
    return tuple(out)


def require_float(types: List[TensorType], op: str, slots=None) -> None:
    for i, t in enumerate(types):
        if (slots is None or i in slots) and not is_float(t.dtype):
            raise ShapeError(f"input {i} of '{op}' must be float32/float64, got {t.dtype}")


def elementwise_type(types: List[TensorType]) -> TensorType:
    return TensorType(broadcast_shapes(*[t.shape for t in types]), promote(*[t.dtype for t in types]))
