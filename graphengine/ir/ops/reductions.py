"""Reductions over axes (Jacobian structure: reduction) and ``expand``, a broadcast: each of its
output elements copies one input element, so its Jacobian is diagonal."""

from __future__ import annotations

import numpy as np

from ..jacobian import Diagonal, Reduction
from ..registry import Attr, OpDef, ShapeError, TensorType, register_op
from ._common import norm_axes, require_float

_AXES = {"axes": Attr("int_or_ints", default=None), "keepdim": Attr("bool", default=False)}


def _reduced_shape(shape, axes, keepdim):
    if keepdim:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _register_reduction(name, forward, weight, doc):
    def infer(types, attrs):
        require_float(types, name)
        axes = norm_axes(attrs["axes"], types[0].ndim)
        if name == "amax" and any(types[0].shape[a] == 0 for a in axes):
            raise ShapeError("amax over an empty axis")
        return TensorType(_reduced_shape(types[0].shape, axes, attrs["keepdim"]), types[0].dtype)

    def fwd(xs, attrs):
        return forward(xs[0], norm_axes(attrs["axes"], xs[0].ndim), attrs["keepdim"])

    def jacobian(slot, xs, y, attrs):
        axes = norm_axes(attrs["axes"], xs[0].ndim)
        return Reduction(axes, attrs["keepdim"], weight(xs[0], axes))

    register_op(OpDef(name, "reduction", 1, 1, infer, fwd, jacobian, attrs=dict(_AXES), doc=doc))


def _amax_weight(x, axes):
    hit = (x == np.max(x, axis=axes, keepdims=True)).astype(x.dtype)
    return hit / np.sum(hit, axis=axes, keepdims=True)  # ties share the gradient, as in torch


_register_reduction("sum", lambda x, ax, k: np.sum(x, axis=ax, keepdims=k), lambda x, ax: 1.0,
                    "sum over axes (all when axes is None)")
_register_reduction("mean", lambda x, ax, k: np.mean(x, axis=ax, keepdims=k),
                    lambda x, ax: 1.0 / max(1, int(np.prod([x.shape[a] for a in ax]))),
                    "mean over axes")
_register_reduction("amax", lambda x, ax, k: np.max(x, axis=ax, keepdims=k), _amax_weight,
                    "max over axes; tied maxima share the derivative equally (torch's rule)")


def _expand_infer(types, attrs):
    shape, x = list(attrs["shape"]), types[0]
    if len(shape) < x.ndim:
        raise ShapeError(f"cannot expand {list(x.shape)} to fewer dims {shape}")
    lead = len(shape) - x.ndim
    out = []
    for i, s in enumerate(shape):
        src = x.shape[i - lead] if i >= lead else None
        if s == -1:
            if src is None:
                raise ShapeError(f"-1 in a new leading dim of expand shape {shape}")
            s = src
        if src is not None and src != 1 and src != s:
            raise ShapeError(f"cannot expand dim {i - lead} of size {src} to {s}")
        out.append(int(s))
    return TensorType(tuple(out), x.dtype)


def _expand_forward(xs, attrs):
    shape = _expand_infer([TensorType(xs[0].shape, "float64")], attrs).shape
    return np.broadcast_to(xs[0], shape).copy()


register_op(OpDef("expand", "diagonal", 1, 1, _expand_infer, _expand_forward,
               lambda slot, xs, y, a: Diagonal(1.0), attrs={"shape": Attr("ints", required=True)},
               doc="broadcast to a shape (-1 keeps a dim); the adjoint is ⊕-reduced back"))
