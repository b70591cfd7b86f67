"""Integer and boolean computations: comparisons, bitwise and logical ops, integer ``cumsum``,
``argmax`` / ``argmin``.

These ops carry no gradient (their Jacobian is ``None`` for every input), so they may sit
inside a differentiable graph: Hugging Face models compute position ids from the input ids
(``cumsum(input_ids != pad) * mask``, RoBERTa) and combine a padding ``attention_mask`` with the
causal mask (``bitwise_and``) this way, and both stay per-example inputs of one exported graph.

Dtype rules follow torch: comparisons and ``logical_*`` give ``bool``; ``bitwise_*`` take
integer or boolean operands (not floats) and give their promoted dtype; ``cumsum`` of an
integer or boolean tensor gives ``int64`` (torch promotes integral inputs); ``argmax`` /
``argmin`` give ``int64`` indices of any tensor (the first extreme on ties, as torch; decoder
classification heads pick the last non-padding token this way).

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import forward
>>> g = Graph(); ids = g.input("ids", (1, 4), dtype="int64")
>>> pad = g.constant(np.array(1), name="pad")
>>> keep = g.call("ne", ids, pad, name="keep")
>>> pos = g.call("cumsum", keep, name="pos", axis=1)
>>> keep.dtype, pos.dtype
('bool', 'int64')
>>> forward(g, {"ids": np.array([[5, 7, 1, 9]])})[pos.id]
array([[1, 2, 2, 3]])
"""

from __future__ import annotations

import numpy as np

from ..dtypes import is_float
from ..registry import Attr, OpDef, ShapeError, TensorType, register_op
from ._common import broadcast_shapes, elementwise_type, norm_axis


def _no_gradient(slot, xs, y, attrs):
    return None


def _comparison(name, forward, doc):
    def infer(types, attrs):
        return TensorType(broadcast_shapes(*[t.shape for t in types]), "bool")

    register_op(OpDef(name, "none", 2, 2, infer, lambda xs, a: forward(xs[0], xs[1]), _no_gradient,
                      doc=f"{doc} (bool)"))


_comparison("eq", np.equal, "a == b")
_comparison("ne", np.not_equal, "a != b")
_comparison("lt", np.less, "a < b")
_comparison("le", np.less_equal, "a <= b")
_comparison("gt", np.greater, "a > b")
_comparison("ge", np.greater_equal, "a >= b")


def _require_integral(types, name):
    for i, t in enumerate(types):
        if is_float(t.dtype):
            raise ShapeError(f"input {i} of '{name}' must be an integer or bool tensor, got {t.dtype}")


def _bitwise(name, forward, arity, doc):
    def infer(types, attrs):
        _require_integral(types, name)
        return elementwise_type(types)

    def fwd(xs, a):
        out = forward(*xs)
        return out.astype(np.result_type(*xs), copy=False)

    register_op(OpDef(name, "none", arity, arity, infer, fwd, _no_gradient, doc=doc))


_bitwise("bitwise_and", np.bitwise_and, 2, "a & b on integer / bool tensors")
_bitwise("bitwise_or", np.bitwise_or, 2, "a | b on integer / bool tensors")
_bitwise("bitwise_xor", np.bitwise_xor, 2, "a ^ b on integer / bool tensors")
_bitwise("bitwise_not", np.invert, 1, "~a (logical not for bool)")


def _logical(name, forward, arity, doc):
    def infer(types, attrs):
        return TensorType(broadcast_shapes(*[t.shape for t in types]), "bool")

    register_op(OpDef(name, "none", arity, arity, infer, lambda xs, a: forward(*xs), _no_gradient,
                      doc=f"{doc}: operands read as truth values (non-zero is true); bool"))


_logical("logical_and", np.logical_and, 2, "a and b")
_logical("logical_or", np.logical_or, 2, "a or b")
_logical("logical_xor", np.logical_xor, 2, "a xor b")
_logical("logical_not", np.logical_not, 1, "not a")


def _cumsum_infer(types, attrs):
    _require_integral(types, "cumsum")
    if types[0].ndim == 0:
        raise ShapeError("'cumsum' needs at least one dim")
    norm_axis(attrs["axis"], types[0].ndim, "axis")
    return TensorType(types[0].shape, "int64")


register_op(OpDef("cumsum", "none", 1, 1, _cumsum_infer,
                  lambda xs, a: np.cumsum(xs[0], axis=a["axis"], dtype=np.int64), _no_gradient,
                  attrs={"axis": Attr("int", required=True)},
                  doc="running sum along an axis of an integer / bool tensor (int64)"))


def _arg_infer(name):
    def infer(types, attrs):
        t = types[0]
        if attrs["axis"] is None:
            if t.ndim and 0 in t.shape:
                raise ShapeError(f"'{name}' of an empty tensor")
            return TensorType((1,) * t.ndim if attrs["keepdim"] else (), "int64")
        axis = norm_axis(attrs["axis"], t.ndim, "axis")
        if t.shape[axis] == 0:
            raise ShapeError(f"'{name}' over an empty axis")
        shape = tuple(1 if i == axis else s for i, s in enumerate(t.shape)) if attrs["keepdim"] else \
            tuple(s for i, s in enumerate(t.shape) if i != axis)
        return TensorType(shape, "int64")
    return infer


def _arg_forward(fn):
    def forward(xs, a):
        x = xs[0]
        if a["axis"] is None:
            out = np.asarray(fn(x.reshape(-1)), dtype=np.int64)
            return out.reshape((1,) * x.ndim) if a["keepdim"] else out
        return np.asarray(fn(x, axis=a["axis"], keepdims=a["keepdim"]), dtype=np.int64)
    return forward


for _name, _fn in (("argmax", np.argmax), ("argmin", np.argmin)):
    register_op(OpDef(_name, "none", 1, 1, _arg_infer(_name), _arg_forward(_fn), _no_gradient,
                      attrs={"axis": Attr("int", default=None), "keepdim": Attr("bool", default=False)},
                      doc=f"index of the {_name[3:]}imum along an axis (flattened when axis is None; first on ties; int64)"))
