"""Fused ops with a full Jacobian per slice (Jacobian structure: dense block).

Keeping softmax, log-softmax, layer norm and RMS norm whole gives exact Jacobians for them;
their decomposition into primitives (which changes max paths and entropy, not the gradient) is
a graph pass.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import promote
from ..jacobian import DenseBlock, Diagonal, LowRankBlock
from ..registry import Attr, OpDef, ShapeError, TensorType, register_op
from ._common import norm_axis, require_float


def _softmax(x, axis):
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis):
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def _axis_infer(name):
    def infer(types, attrs):
        require_float(types, name)
        if types[0].ndim == 0:
            raise ShapeError(f"'{name}' needs at least one dim")
        norm_axis(attrs["axis"], types[0].ndim, "axis")
        return TensorType(types[0].shape, types[0].dtype)
    return infer


def _softmax_jacobian(slot, xs, y, attrs):
    """J = diag(s) - s sᵀ, given in factored form (kernels never build the n×n blocks)."""
    axis = norm_axis(attrs["axis"], y.ndim)
    s = np.moveaxis(y, axis, -1)
    return DenseBlock(axes=(axis,), factors=LowRankBlock(s, -s[..., None], s[..., None]))


def _log_softmax_jacobian(slot, xs, y, attrs):
    """J = I - 1 sᵀ with s = exp(y)."""
    axis = norm_axis(attrs["axis"], y.ndim)
    s = np.exp(np.moveaxis(y, axis, -1))
    one = np.ones_like(s)
    return DenseBlock(axes=(axis,), factors=LowRankBlock(one, -one[..., None], s[..., None]))


register_op(OpDef("softmax", "dense_block", 1, 1, _axis_infer("softmax"),
               lambda xs, a: _softmax(xs[0], a["axis"]), _softmax_jacobian,
               attrs={"axis": Attr("int", default=-1)}, doc="softmax along one axis"))
register_op(OpDef("log_softmax", "dense_block", 1, 1, _axis_infer("log_softmax"),
               lambda xs, a: _log_softmax(xs[0], a["axis"]), _log_softmax_jacobian,
               attrs={"axis": Attr("int", default=-1)}, doc="log-softmax along one axis"))


def _ln_infer(types, attrs, name="layer_norm"):
    require_float(types, name)
    x, norm = types[0], tuple(attrs["normalized_shape"])
    if len(norm) == 0 or x.shape[x.ndim - len(norm):] != norm or len(norm) > x.ndim:
        raise ShapeError(f"normalized_shape {list(norm)} is not a suffix of input shape {list(x.shape)}")
    for i, t in enumerate(types[1:], start=1):
        if t.shape != norm:
            raise ShapeError(f"input {i} of '{name}' must have shape {list(norm)}, got {list(t.shape)}")
    return TensorType(x.shape, promote(*[t.dtype for t in types]))


def _ln_stats(x, attrs):
    k = len(attrs["normalized_shape"])
    flat = x.reshape(x.shape[: x.ndim - k] + (-1,))
    mu = flat.mean(axis=-1, keepdims=True)
    var = ((flat - mu) ** 2).mean(axis=-1, keepdims=True)
    sigma = np.sqrt(var + attrs["eps"])
    return (flat - mu) / sigma, sigma


def _ln_forward(xs, attrs):
    xhat, _ = _ln_stats(xs[0], attrs)
    y = xhat.reshape(xs[0].shape)
    if len(xs) > 1:
        y = y * xs[1]
    if len(xs) > 2:
        y = y + xs[2]
    return y


def _ln_jacobian(slot, xs, y, attrs):
    x = xs[0]
    xhat, sigma = _ln_stats(x, attrs)
    if slot == 1:
        return Diagonal(xhat.reshape(x.shape))
    if slot == 2:
        return Diagonal(1.0)
    n = xhat.shape[-1]
    gamma = xs[1].reshape(n) if len(xs) > 1 else np.ones(n, dtype=x.dtype)
    # J = γ_r/σ (δ_rc - 1/n - x̂_r x̂_c / n): a diagonal plus two rank-one terms
    g = gamma / sigma                                     # (*batch, n)
    u = np.stack([-g / n, -g * xhat / n], axis=-1)
    v = np.stack([np.ones_like(xhat), xhat], axis=-1)
    k = len(attrs["normalized_shape"])
    return DenseBlock(axes=tuple(range(x.ndim - k, x.ndim)), factors=LowRankBlock(g, u, v))


register_op(OpDef("layer_norm", "dense_block", 1, 3, _ln_infer, _ln_forward, _ln_jacobian,
               attrs={"normalized_shape": Attr("ints", required=True), "eps": Attr("float", default=1e-5, positive=True)},
               doc="layer_norm(x, weight?, bias?) over the trailing normalized_shape (biased variance)"))


def _rms_stats(x, attrs):
    k = len(attrs["normalized_shape"])
    flat = x.reshape(x.shape[: x.ndim - k] + (-1,))
    r = 1.0 / np.sqrt(np.mean(flat * flat, axis=-1, keepdims=True) + attrs["eps"])
    return flat, r


def _rms_forward(xs, attrs):
    flat, r = _rms_stats(xs[0], attrs)
    y = (flat * r).reshape(xs[0].shape)
    return y * xs[1] if len(xs) > 1 else y


def _rms_jacobian(slot, xs, y, attrs):
    x = xs[0]
    flat, r = _rms_stats(x, attrs)
    if slot == 1:
        return Diagonal((flat * r).reshape(x.shape))
    n = flat.shape[-1]
    gamma = xs[1].reshape(n) if len(xs) > 1 else np.ones(n, dtype=x.dtype)
    # J = γ_r r (δ_rc − r² x_r x_c / n): a diagonal plus one rank-one term
    g = gamma * r                                          # (*batch, n)
    u = (-g * r * r * flat / n)[..., None]
    k = len(attrs["normalized_shape"])
    return DenseBlock(axes=tuple(range(x.ndim - k, x.ndim)), factors=LowRankBlock(g, u, flat[..., None]))


def _rms_infer(types, attrs):
    if len(types) > 2:
        raise ShapeError("'rms_norm' takes (x, weight?)")
    return _ln_infer(types, attrs, "rms_norm")


register_op(OpDef("rms_norm", "dense_block", 1, 2, _rms_infer, _rms_forward, _rms_jacobian,
               attrs={"normalized_shape": Attr("ints", required=True), "eps": Attr("float", default=1e-6)},
               doc="rms_norm(x, weight?) = x / sqrt(mean(x²) + eps) · weight over the trailing normalized_shape"))
