"""Convolution (Jacobian structure: contraction) and batch normalization in eval mode (diagonal).

A convolution is two nodes: ``windows`` (:mod:`graphengine.ir.ops.windows`, a movement: every
input element is copied into each window that reads it, padding has no edge) and ``conv``, the
contraction of the gathered windows ``[N, C, *out, *kernel]`` with the weight
``[C_out, C / groups, *kernel]``::

    y[n, g·Og + o, l] = Σ_{c, t} windows[n, g·Cg + c, l, t] · weight[g·Og + o, c, t]

The path from an input element to an output element therefore runs input → window tap →
output with weights 1 and ``weight[o, c, t]``: exactly one scalar edge per (tap, output
channel), which is what the convolution computes. A bias is a separate ``add`` of the bias
reshaped to ``[C_out, 1, …]``. The torch frontend maps ``aten.convolution`` to these nodes;
N-d convolutions of any rank work (1-d, 2-d, 3-d), transposed convolutions do not.

``batch_norm`` is eval-mode batch normalization, ``y = (x − mean)/√(var + eps)·weight + bias``,
with the per-channel tensors shaped to broadcast against ``x`` (``[C, 1, …]``): an affine
diagonal map, one edge per element with weight ``weight/√(var + eps)``. The running statistics
are buffers: they carry no gradient (torch's eval mode does not train them either).

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import backward, forward, select
>>> g = Graph(); x = g.input("x", (1, 1, 3))
>>> w = g.parameter("w", np.array([[[1.0, -2.0]]]))               # Conv1d(1, 1, 2, bias=False)
>>> y = g.call("conv", g.call("windows", x, kernel=[2]), w, name="y")
>>> acts = forward(g, {"x": np.array([[[1.0, 2.0, 4.0]]])})
>>> acts[y.id].tolist()
[[[-3.0, -6.0]]]
>>> backward(g, acts, select("y", (0, 0, 1))).grad("x").tolist()      # x1·1 + x2·(−2)
[[[0.0, 1.0, -2.0]]]
"""

from __future__ import annotations

import numpy as np

from ..dtypes import promote
from ..jacobian import Contraction, Diagonal
from ..registry import Attr, OpDef, ShapeError, TensorType, register_op
from ._common import broadcast_shapes, require_float


def _dims(windows_shape, weight_shape, groups):
    """``(N, G, Cg, Og, out spatial, L, K)`` of ``conv(windows, weight)``."""
    k_shape = tuple(weight_shape[2:])
    n = len(k_shape)
    out = tuple(windows_shape[2: 2 + n])
    L, K = int(np.prod(out, dtype=np.int64)), int(np.prod(k_shape, dtype=np.int64))
    return windows_shape[0], groups, windows_shape[1] // groups, weight_shape[0] // groups, out, L, K


def _conv_infer(types, attrs):
    require_float(types, "conv")
    win, w, groups = types[0], types[1], attrs["groups"]
    n = w.ndim - 2
    if n < 1 or win.ndim != 2 + 2 * n:
        raise ShapeError(f"'conv' needs windows [N, C, *out, *kernel] and a weight [C_out, C/groups, *kernel], "
                         f"got {list(win.shape)} and {list(w.shape)}")
    if groups < 1 or win.shape[1] % groups or w.shape[0] % groups or w.shape[1] != win.shape[1] // groups:
        raise ShapeError(f"'conv' with groups={groups}: {win.shape[1]} input channels and a weight "
                         f"{list(w.shape)} do not match")
    if tuple(win.shape[2 + n:]) != tuple(w.shape[2:]):
        raise ShapeError(f"'conv' window kernel {list(win.shape[2 + n:])} differs from the weight's {list(w.shape[2:])}")
    return TensorType((win.shape[0], w.shape[0]) + tuple(win.shape[2: 2 + n]), promote(win.dtype, w.dtype))


def _grouped_windows(win, dims):
    """windows ``[N, C, *out, *kernel]`` → ``[N, G, L, Cg·K]`` (a pure index movement)."""
    N, G, Cg, Og, out, L, K = dims
    return np.swapaxes(win.reshape(N, G, Cg, L, K), 2, 3).reshape(N, G, L, Cg * K)


def _conv_forward(xs, attrs):
    win, w = xs
    dims = _dims(win.shape, w.shape, attrs["groups"])
    N, G, Cg, Og, out, L, K = dims
    y = np.matmul(_grouped_windows(win, dims), np.swapaxes(w.reshape(G, Og, Cg * K), 1, 2))   # [N, G, L, Og]
    return np.swapaxes(y, 2, 3).reshape((N, G * Og) + out)


def _conv_jacobian(slot, xs, y, attrs):
    win, w = xs
    dims = _dims(win.shape, w.shape, attrs["groups"])
    N, G, Cg, Og, out, L, K = dims

    def adjoint_rows(a):                                   # ȳ [N, C_out, *out] → [N, G, L, Og]
        return np.swapaxes(a.reshape(N, G, Og, L), 2, 3)

    if slot == 0:                                          # windows̄[n, g, l, (c, t)] = ⊕_o ȳ[n, g, l, o] ⊗ W[g, o, (c, t)]
        def back(r):                                       # [N, G, L, Cg·K] → [N, C, *out, *kernel]
            return np.swapaxes(r.reshape(N, G, L, Cg, K), 2, 3).reshape(win.shape)
        return Contraction(w.reshape(G, Og, Cg * K), view_adjoint=adjoint_rows, view_result=back)

    def adjoint_cols(a):                                   # ȳ → [G, Og, N·L]
        return np.transpose(a.reshape(N, G, Og, L), (1, 2, 0, 3)).reshape(G, Og, N * L)

    patches = np.transpose(_grouped_windows(win, dims), (1, 0, 2, 3)).reshape(G, N * L, Cg * K)
    return Contraction(patches, view_adjoint=adjoint_cols, view_result=lambda r: r.reshape(w.shape))


register_op(OpDef("conv", "contraction", 2, 2, _conv_infer, _conv_forward, _conv_jacobian,
                  attrs={"groups": Attr("int", default=1)},
                  doc="conv(windows [N, C, *out, *kernel], weight [C_out, C/groups, *kernel]) -> [N, C_out, *out]"))


# ------------------------------------------------------------------ batch norm (eval)
def _bn_infer(types, attrs):
    require_float(types, "batch_norm")
    x = types[0]
    for i, t in enumerate(types[1:], 1):
        if broadcast_shapes(t.shape, x.shape) != x.shape:
            raise ShapeError(f"batch_norm input {i} {list(t.shape)} does not broadcast to the input {list(x.shape)}")
    return TensorType(x.shape, promote(*[t.dtype for t in types]))


def _bn_parts(xs, attrs):
    x, weight, bias, mean, var = xs
    inv = 1.0 / np.sqrt(var + attrs["eps"])
    return x, weight, bias, mean, inv


def _bn_forward(xs, attrs):
    x, weight, bias, mean, inv = _bn_parts(xs, attrs)
    return ((x - mean) * inv * weight + bias).astype(np.result_type(*xs))


def _bn_jacobian(slot, xs, y, attrs):
    x, weight, bias, mean, inv = _bn_parts(xs, attrs)
    if slot == 0:
        return Diagonal(inv * weight)
    if slot == 1:
        return Diagonal((x - mean) * inv)
    if slot == 2:
        return Diagonal(1.0)
    return None  # running statistics: buffers, no gradient


register_op(OpDef("batch_norm", "diagonal", 5, 5, _bn_infer, _bn_forward, _bn_jacobian,
                  attrs={"eps": Attr("float", default=1e-5)},
                  doc="eval-mode batch norm (x - mean)/sqrt(var + eps)*weight + bias; inputs x, weight, bias, "
                      "running mean, running var (the last two carry no gradient)"))
