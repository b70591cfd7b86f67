"""Leaf ops: graph inputs (fed at run time), parameters and constants (stored arrays)."""

from __future__ import annotations

from ..dtypes import DTYPES
from ..registry import Attr, OpDef, ShapeError, TensorType, register_op


def _input_infer(types, attrs):
    if any(s < 0 for s in attrs["shape"]):
        raise ShapeError(f"negative size in input shape {attrs['shape']}")
    return TensorType(tuple(attrs["shape"]), attrs["dtype"])


def _no_forward(xs, attrs):  # the engine supplies leaf values itself
    raise RuntimeError("leaf ops have no forward")


register_op(OpDef("input", "leaf", 0, 0, _input_infer, _no_forward,
               attrs={"shape": Attr("ints", required=True), "dtype": Attr("str", default="float64", choices=DTYPES)},
               doc="a value fed at run time"))
register_op(OpDef("parameter", "leaf", 0, 0, lambda t, a: None, _no_forward,
               doc="a stored array that is differentiated (weights)"))
register_op(OpDef("constant", "leaf", 0, 0, lambda t, a: None, _no_forward,
               doc="a stored array that is not differentiated (masks, position ids, scalars)"))
