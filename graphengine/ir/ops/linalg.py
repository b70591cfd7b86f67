"""Matrix products (Jacobian structure: contraction; biases are diagonal).

Operands of ``matmul`` must have at least two dims (unsqueeze vectors first); batch dims
broadcast numpy-style.
"""

from __future__ import annotations

import numpy as np

from ..jacobian import Contraction, Diagonal
from ..registry import Attr, OpDef, ShapeError, TensorType, register_op
from ..dtypes import promote
from ._common import broadcast_shapes, require_float


def _swap(a):
    return np.swapaxes(a, -1, -2)


def _matmul_type(a: TensorType, b: TensorType, op: str, ndim=None) -> TensorType:
    if ndim is not None and (a.ndim != ndim or b.ndim != ndim):
        raise ShapeError(f"'{op}' needs {ndim}-D operands, got {list(a.shape)} and {list(b.shape)}")
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError(f"'{op}' needs operands with at least 2 dims, got {list(a.shape)} and {list(b.shape)}")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"'{op}' inner dims differ: {list(a.shape)} @ {list(b.shape)}")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return TensorType(batch + (a.shape[-2], b.shape[-1]), promote(a.dtype, b.dtype))


def _matmul_jacobian(a, b, slot, scale=1.0):
    """Contractions for ``y = a @ b`` (semirings are commutative, so slot b is computed on
    transposed operands: ``b̄ᵀ = ȳᵀ a``)."""
    if slot == 0:
        return Contraction(scale * _swap(b))
    return Contraction(scale * a, view_adjoint=_swap, view_result=_swap)


def _register_matmul(name, ndim):
    def infer(types, attrs):
        require_float(types, name)
        return _matmul_type(types[0], types[1], name, ndim)

    register_op(OpDef(name, "contraction", 2, 2, infer, lambda xs, a: np.matmul(xs[0], xs[1]),
                   lambda slot, xs, y, a: _matmul_jacobian(xs[0], xs[1], slot),
                   doc=f"{name}(a, b) = a @ b"))


_register_matmul("matmul", None)
_register_matmul("mm", 2)
_register_matmul("bmm", 3)


def _addmm_infer(types, attrs):
    require_float(types, "addmm")
    t = _matmul_type(types[1], types[2], "addmm", 2)
    broadcast_shapes(types[0].shape, t.shape)
    if broadcast_shapes(types[0].shape, t.shape) != t.shape:
        raise ShapeError(f"bias {list(types[0].shape)} does not broadcast to {list(t.shape)}")
    return TensorType(t.shape, promote(t.dtype, types[0].dtype))


def _addmm_jacobian(slot, xs, y, attrs):
    if slot == 0:
        return Diagonal(attrs["beta"])
    return _matmul_jacobian(xs[1], xs[2], slot - 1, attrs["alpha"])


register_op(OpDef("addmm", "contraction", 3, 3, _addmm_infer,
               lambda xs, a: a["beta"] * xs[0] + a["alpha"] * (xs[1] @ xs[2]), _addmm_jacobian,
               attrs={"beta": Attr("float", default=1.0), "alpha": Attr("float", default=1.0)},
               doc="beta * bias + alpha * (m1 @ m2)"))


def _linear_infer(types, attrs):
    require_float(types, "linear")
    x, w = types[0], types[1]
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ShapeError(f"'linear' needs x [..., in] and weight [out, in], got {list(x.shape)} and {list(w.shape)}")
    shape = x.shape[:-1] + (w.shape[0],)
    if len(types) == 3 and types[2].shape not in ((w.shape[0],), ()):
        raise ShapeError(f"'linear' bias must have shape [{w.shape[0]}], got {list(types[2].shape)}")
    return TensorType(shape, promote(*[t.dtype for t in types]))


def _linear_forward(xs, attrs):
    y = xs[0] @ xs[1].T
    return y + xs[2] if len(xs) == 3 else y


def _linear_jacobian(slot, xs, y, attrs):
    x, w = xs[0], xs[1]
    n_in, n_out = w.shape[1], w.shape[0]
    if slot == 0:  # x̄ = ȳ W, over the flattened batch
        return Contraction(w, view_adjoint=lambda a: a.reshape(-1, n_out),
                           view_result=lambda r: r.reshape(x.shape))
    if slot == 1:  # W̄ = ȳᵀ x, contracting every batch position
        return Contraction(x.reshape(-1, n_in), view_adjoint=lambda a: a.reshape(-1, n_out).T)
    return Diagonal(1.0)


register_op(OpDef("linear", "contraction", 2, 3, _linear_infer, _linear_forward, _linear_jacobian,
               doc="x @ weight.T (+ bias), torch.nn.functional.linear"))
