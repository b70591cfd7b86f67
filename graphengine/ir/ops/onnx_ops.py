"""Ops the ONNX importer needs that have no counterpart among the core ops.

``cast(x; dtype)`` converts the element type (ONNX ``Cast``). Between float types it is the
identity for gradients (a diagonal Jacobian of ones); from or to an integer/boolean type no
gradient flows (such values carry none).

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> g = Graph(); m = g.input("mask", (2,), dtype="int64")
>>> g.call("cast", m, dtype="float32").dtype
'float32'
"""

from __future__ import annotations

from ..dtypes import DTYPES, is_float
from ..jacobian import Diagonal
from ..registry import Attr, OpDef, TensorType, register_op


def _cast_jacobian(slot, xs, y, attrs):
    if is_float(xs[0].dtype.name) and is_float(y.dtype.name):
        return Diagonal(1.0)
    return None  # integer / boolean values carry no gradient


register_op(OpDef("cast", "diagonal", 1, 1, lambda t, a: TensorType(t[0].shape, a["dtype"]),
               lambda xs, a: xs[0].astype(a["dtype"]), _cast_jacobian,
               attrs={"dtype": Attr("str", required=True, choices=DTYPES)},
               doc="convert the element type (numpy astype: float to int truncates)"))
