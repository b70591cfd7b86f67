"""Elementwise ops (Jacobian structure: diagonal, with numpy broadcasting)."""

from __future__ import annotations

import numpy as np

from ..jacobian import Diagonal
from ..registry import Attr, OpDef, ShapeError, TensorType, register_op
from ..special import SQRT_2, SQRT_2_OVER_PI, TWO_OVER_SQRT_PI, erf, normal_pdf
from ._common import elementwise_type, require_float


def _binary(name, forward, weights, float_only=False, doc=""):
    def infer(types, attrs):
        if float_only:
            require_float(types, name)
        return elementwise_type(types)

    def jacobian(slot, xs, y, attrs):
        return Diagonal(weights[slot](xs[0], xs[1], y))

    register_op(OpDef(name, "diagonal", 2, 2, infer, lambda xs, a: forward(xs[0], xs[1]), jacobian, doc=doc))


_binary("add", np.add, [lambda a, b, y: 1.0, lambda a, b, y: 1.0], doc="a + b")
_binary("sub", np.subtract, [lambda a, b, y: 1.0, lambda a, b, y: -1.0], doc="a - b")
_binary("mul", np.multiply, [lambda a, b, y: b, lambda a, b, y: a], doc="a * b")
_binary("div", np.divide, [lambda a, b, y: 1.0 / b, lambda a, b, y: -y / b], float_only=True, doc="a / b")


def _unary(name, forward, weight, attrs=None, float_only=True, doc=""):
    """``weight(x, y, attrs)`` is dy/dx elementwise."""

    def infer(types, attrs):
        if float_only:
            require_float(types, name)
        return TensorType(types[0].shape, types[0].dtype)

    def jacobian(slot, xs, y, attrs):
        return Diagonal(weight(xs[0], y, attrs))

    register_op(OpDef(name, "diagonal", 1, 1, infer, lambda xs, a: forward(xs[0], a), jacobian,
                   attrs=attrs or {}, doc=doc))


def _gelu(x, attrs):
    if attrs["approximate"] == "tanh":
        return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + erf(x / SQRT_2))


def _gelu_grad(x, y, attrs):
    if attrs["approximate"] == "tanh":
        t = np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
    return 0.5 * (1.0 + erf(x / SQRT_2)) + x * normal_pdf(x)


_unary("neg", lambda x, a: -x, lambda x, y, a: -1.0, float_only=False, doc="-x")
_unary("exp", lambda x, a: np.exp(x), lambda x, y, a: y, doc="e ** x")
_unary("log", lambda x, a: np.log(x), lambda x, y, a: 1.0 / x, doc="natural logarithm")
_unary("tanh", lambda x, a: np.tanh(x), lambda x, y, a: 1.0 - y * y, doc="hyperbolic tangent")
_unary("sigmoid", lambda x, a: 1.0 / (1.0 + np.exp(-x)), lambda x, y, a: y * (1.0 - y), doc="1 / (1 + e ** -x)")
_unary("relu", lambda x, a: np.maximum(x, 0), lambda x, y, a: (x > 0).astype(x.dtype),
       doc="max(x, 0); derivative 0 at x = 0 (torch's convention)")
_unary("leaky_relu", lambda x, a: np.where(x > 0, x, a["negative_slope"] * x),
       lambda x, y, a: np.where(x > 0, 1.0, a["negative_slope"]).astype(x.dtype),
       attrs={"negative_slope": Attr("float", default=0.01)}, doc="x if x > 0 else negative_slope · x")
_unary("gelu", _gelu, _gelu_grad, attrs={"approximate": Attr("str", default="none", choices=("none", "tanh"))},
       doc="GELU, exact (erf) or tanh approximation")
_unary("silu", lambda x, a: x / (1.0 + np.exp(-x)),
       lambda x, y, a: (lambda s: s * (1.0 + x * (1.0 - s)))(1.0 / (1.0 + np.exp(-x))),
       doc="SiLU (swish): x · sigmoid(x)")
_unary("erf", lambda x, a: erf(x), lambda x, y, a: TWO_OVER_SQRT_PI * np.exp(-x * x), doc="the error function")
_unary("sqrt", lambda x, a: np.sqrt(x), lambda x, y, a: 0.5 / y, doc="square root")
_unary("rsqrt", lambda x, a: 1.0 / np.sqrt(x), lambda x, y, a: -0.5 * y * y * y, doc="1 / sqrt(x)")
_unary("pow", lambda x, a: np.power(x, a["exponent"]),
       lambda x, y, a: a["exponent"] * np.power(x, a["exponent"] - 1.0),
       attrs={"exponent": Attr("float", required=True)}, doc="x ** exponent (a constant)")


def _where_infer(types, attrs):
    if types[0].dtype != "bool":
        raise ShapeError(f"the mask (input 0) of 'where' must be bool, got {types[0].dtype}")
    t = elementwise_type(types)
    return TensorType(t.shape, elementwise_type(types[1:]).dtype)


def _where_jacobian(slot, xs, y, attrs):
    if slot == 0:
        return None  # boolean mask: no gradient
    mask = xs[0] if slot == 1 else ~xs[0]
    return Diagonal(mask.astype(y.dtype), edges=mask)


register_op(OpDef("where", "diagonal", 3, 3, _where_infer, lambda xs, a: np.where(xs[0], xs[1], xs[2]),
               _where_jacobian, doc="where(mask, a, b) with a boolean (non-differentiable) mask"))
