"""ONNX op mappings for :mod:`graphengine.frontends.onnx`.

Two tables, keyed by ONNX op type:

- ``FOLD[op](ctx, arrays, attrs) -> [arrays]``: numpy evaluation, used when every input of a
  node is a known constant (the shape / mask / position-id subgraphs exporters emit). Float
  *initializers* are parameters, not constants, so nothing differentiable is folded away.
- ``LOWER[op](ctx, values, attrs) -> [values]``: emits IR nodes through ``ctx.call``.

An op with only a ``FOLD`` entry (``Equal``, ``Less``, ``Range``, ``Tile``...) must have constant inputs;
an op with only a ``LOWER`` entry is emitted even when its inputs are constant (the constants
become ``constant`` nodes). ``values`` are :class:`Const`, :class:`Param` or IR
:class:`~graphengine.ir.Node` objects; ``None`` stands for an omitted optional input.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np

from ..ir import Node
from ..ir.special import erf as _erf
from ._onnx_load import IR_ELEM_TYPES, Const, elem_type_name, np_dtype, shape
from ._onnx_vision import vision_lowerings


def dtype(v) -> str:
    return v.dtype if isinstance(v, Node) else v.value.dtype.name


def ndim(v) -> int:
    return len(shape(v))


def _axis(ctx, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        ctx.fail(f"{what} {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def _scalar(value, like) -> Const:
    return Const(np.asarray(value, dtype=dtype(like)))


# ====================================================================== shared helpers
def _axes_input(ctx, values, attrs, since: int, what="axes") -> Optional[List[int]]:
    """``axes`` as an attribute (opset < since) or as the optional second input."""
    if ctx.opset < since:
        axes = attrs.get(what)
        return None if axes is None else [int(a) for a in axes]
    if len(values) > 1 and values[1] is not None:
        return [int(a) for a in np.ravel(ctx.const(values[1], what))]
    return None


def _reduce_axes(ctx, values, attrs, since):
    axes = _axes_input(ctx, values, attrs, since)
    rank = ndim(values[0])
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return None, True
        return list(range(rank)), False
    return sorted({_axis(ctx, a, rank) for a in axes}), False


_REDUCE_SINCE = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18}


def _unsqueeze_axes(ctx, values, attrs, rank):
    axes = _axes_input(ctx, values, attrs, 13)
    if axes is None:
        ctx.fail("no axes given")
    out_rank = rank + len(axes)
    norm = sorted(_axis(ctx, a, out_rank) for a in axes)
    if len(set(norm)) != len(norm):
        ctx.fail(f"repeated axis in {axes}")
    return norm


def _squeeze_axes(ctx, values, attrs, in_shape):
    axes = _axes_input(ctx, values, attrs, 13)
    if axes is None:
        return [i for i, s in enumerate(in_shape) if s == 1]
    norm = sorted({_axis(ctx, a, len(in_shape)) for a in axes})
    bad = [a for a in norm if in_shape[a] != 1]
    if bad:
        ctx.fail(f"cannot squeeze axis {bad[0]} of size {in_shape[bad[0]]} (shape {list(in_shape)})")
    return norm


def _reshape_target(ctx, in_shape, target, allowzero) -> tuple:
    target = [int(s) for s in target]
    if not allowzero:
        for i, s in enumerate(target):
            if s == 0:
                if i >= len(in_shape):
                    ctx.fail(f"shape {target}: 0 at position {i} has no input dim to copy")
                target[i] = in_shape[i]
    size = int(np.prod(in_shape, dtype=np.int64))
    if target.count(-1) > 1 or any(s < -1 for s in target):
        ctx.fail(f"bad target shape {target}")
    known = int(np.prod([s for s in target if s != -1], dtype=np.int64))
    if -1 in target:
        if known == 0 or size % known:
            ctx.fail(f"cannot reshape {list(in_shape)} to {target}")
        target[target.index(-1)] = size // known
    elif known != size:
        ctx.fail(f"cannot reshape {list(in_shape)} to {target}")
    return tuple(target)


def _slice_plan(ctx, values, attrs, in_shape):
    """``[(axis, start, end, step, indices)]`` per sliced axis, with the spec's clamping: a start
    is clamped to [0, dim] for positive steps and to [0, dim - 1] for negative ones, an end to
    [0, dim] or [-1, dim - 1]; ``indices`` are the picked positions (int64)."""
    if ctx.opset < 10:
        starts, ends = attrs.get("starts"), attrs.get("ends")
        axes, steps = attrs.get("axes"), None
        if starts is None or ends is None:
            ctx.fail("missing starts/ends attributes")
    else:
        starts = np.ravel(ctx.const(values[1], "starts")).tolist()
        ends = np.ravel(ctx.const(values[2], "ends")).tolist()
        axes = np.ravel(ctx.const(values[3], "axes")).tolist() if len(values) > 3 and values[3] is not None else None
        steps = np.ravel(ctx.const(values[4], "steps")).tolist() if len(values) > 4 and values[4] is not None else None
    n = len(starts)
    axes = list(range(n)) if axes is None else [int(a) for a in axes]
    steps = [1] * n if steps is None else [int(s) for s in steps]
    if not len(ends) == len(axes) == len(steps) == n:
        ctx.fail("starts, ends, axes and steps differ in length")
    plan, seen = [], set()
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = _axis(ctx, axis, len(in_shape))
        if axis in seen:
            ctx.fail(f"axis {axis} sliced twice")
        seen.add(axis)
        if step == 0:
            ctx.fail("slice step 0")
        dim = in_shape[axis]
        start, end = int(start), int(end)
        start += dim if start < 0 else 0
        end += dim if end < 0 else 0
        if step > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        else:
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        plan.append((axis, start, end, step, np.arange(start, end, step, dtype=np.int64)))
    return plan


def _gather_indices(ctx, idx: np.ndarray, size: int) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        ctx.fail(f"indices must be integers, got {idx.dtype}")
    if idx.size and (idx.min() < -size or idx.max() >= size):
        ctx.fail(f"index {int(idx[(idx < -size) | (idx >= size)].flat[0])} out of range for size {size}")
    return np.where(idx < 0, idx + size, idx).astype(np.int64)


def _gather_nd_plan(ctx, data_shape, indices, a):
    """GatherND (batch_dims = 0) as row picks: ``take(reshape(data, rows), flat, 0)`` reshaped to
    ``out_shape``. Returns (rows, flat, out_shape)."""
    if int(a.get("batch_dims", 0)) != 0:
        ctx.fail("GatherND with batch_dims != 0 is unsupported")
    idx = np.asarray(indices)
    k = idx.shape[-1] if idx.ndim else 0
    if idx.ndim == 0 or k > len(data_shape):
        ctx.fail(f"indices of shape {list(idx.shape)} do not fit data of shape {list(data_shape)}")
    lead = tuple(data_shape[:k])
    cols = [_gather_indices(ctx, idx[..., j], lead[j]) for j in range(k)]
    flat = np.ravel_multi_index(cols, lead) if k else np.zeros(idx.shape[:-1], dtype=np.int64)
    rows = [int(np.prod(lead, dtype=np.int64))] + list(data_shape[k:])
    return rows, np.ravel(flat).astype(np.int64), list(idx.shape[:-1]) + list(data_shape[k:])


def _onnx_softmax_axis(ctx, attrs):
    return int(attrs.get("axis", -1 if ctx.opset >= 13 else 1))


# ====================================================================== FOLD (numpy)
def _np_softmax(x, axis, log=False):
    z = x - np.max(x, axis=axis, keepdims=True)
    if log:
        return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def _fold_softmax(log):
    def fold(ctx, xs, a):
        x, axis = xs[0], _onnx_softmax_axis(ctx, a)
        if ctx.opset >= 13:
            return [_np_softmax(x, axis, log)]
        ax = _axis(ctx, axis, x.ndim)
        flat = x.reshape(int(np.prod(x.shape[:ax], dtype=np.int64)), -1)
        return [_np_softmax(flat, -1, log).reshape(x.shape)]
    return fold


def _fold_div(ctx, xs, a):
    x, y = xs
    if x.dtype.kind in "iu":
        return [np.trunc(x / y).astype(x.dtype)]  # ONNX integer division truncates
    return [x / y]


def _fold_reduce(onnx_op, fn):
    def fold(ctx, xs, a):
        values = [None if x is None else Const(x) for x in xs]
        axes, noop = _reduce_axes(ctx, values, a, _REDUCE_SINCE[onnx_op])
        if noop:
            return [xs[0]]
        return [np.asarray(fn(xs[0], axis=tuple(axes), keepdims=bool(a.get("keepdims", 1)))).astype(xs[0].dtype)]
    return fold


def _fold_gather(ctx, xs, a):
    data, idx = xs
    axis = _axis(ctx, int(a.get("axis", 0)), data.ndim)
    return [np.take(data, _gather_indices(ctx, idx, data.shape[axis]), axis=axis)]


def _fold_gather_elements(ctx, xs, a):
    data, idx = xs
    axis = _axis(ctx, int(a.get("axis", 0)), data.ndim)
    return [np.take_along_axis(data, _gather_indices(ctx, idx, data.shape[axis]), axis=axis)]


def _fold_gather_nd(ctx, xs, a):
    rows, flat, out_shape = _gather_nd_plan(ctx, xs[0].shape, xs[1], a)
    return [np.take(xs[0].reshape(rows), flat, axis=0).reshape(out_shape)]


def _fold_slice(ctx, xs, a):
    x = xs[0]
    for axis, _, _, _, idx in _slice_plan(ctx, [Const(v) if v is not None else None for v in xs], a, x.shape):
        x = np.take(x, idx, axis=axis)
    return [x]


def _fold_gemm(ctx, xs, a):
    A = xs[0].T if a.get("transA", 0) else xs[0]
    B = xs[1].T if a.get("transB", 0) else xs[1]
    y = a.get("alpha", 1.0) * (A @ B)
    if len(xs) > 2 and xs[2] is not None:
        y = y + a.get("beta", 1.0) * xs[2]
    return [y.astype(xs[0].dtype)]


def _fold_constant(ctx, xs, a):
    if "value" in a:
        return [a["value"]]
    for key, dt in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                    ("value_ints", np.int64)):
        if key in a:
            return [np.asarray(a[key], dtype=dt)]
    ctx.fail(f"unsupported Constant attribute(s) {sorted(a)}")


def _fold_constant_of_shape(ctx, xs, a):
    value = a.get("value", np.zeros(1, dtype=np.float32))
    dims = [int(d) for d in np.ravel(xs[0])]
    if any(d < 0 for d in dims):
        ctx.fail(f"negative dim in {dims}")
    return [np.full(dims, np.ravel(value)[0], dtype=value.dtype)]


def _fold_range(ctx, xs, a):
    start, limit, delta = (np.asarray(x).item() for x in xs)
    if delta == 0:
        ctx.fail("Range with delta 0")
    return [np.arange(start, limit, delta, dtype=xs[0].dtype)]


def _fold_cast(ctx, xs, a):
    return [xs[0].astype(np_dtype(int(a["to"]), "Cast"))]


def _fold_expand(ctx, xs, a):
    target = tuple(int(s) for s in np.ravel(xs[1]))
    try:
        return [np.broadcast_to(xs[0], np.broadcast_shapes(xs[0].shape, target)).copy()]
    except ValueError:
        ctx.fail(f"cannot expand {list(xs[0].shape)} to {list(target)}")


def _fold_reshape(ctx, xs, a):
    target = a.get("shape", []) if ctx.opset < 5 else np.ravel(xs[1])
    return [xs[0].reshape(_reshape_target(ctx, xs[0].shape, target, a.get("allowzero", 0)))]


def _fold_flatten(ctx, xs, a):
    x = xs[0]
    axis = _axis(ctx, int(a.get("axis", 1)), x.ndim + 1)
    return [x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)]


def _fold_layer_norm(ctx, xs, a):
    x = xs[0]
    axis = _axis(ctx, int(a.get("axis", -1)), x.ndim)
    axes = tuple(range(axis, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + a.get("epsilon", 1e-5))
    y = y * xs[1]
    if len(xs) > 2 and xs[2] is not None:
        y = y + xs[2]
    return [y.astype(x.dtype)]


def _fold_gelu(ctx, xs, a):
    x = xs[0]
    if a.get("approximate", "none") == "tanh":
        return [(0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))).astype(x.dtype)]
    return [(0.5 * x * (1 + _erf(x / np.sqrt(2.0)))).astype(x.dtype)]


def _fold_unary(fn):
    return lambda ctx, xs, a: [np.asarray(fn(xs[0])).astype(xs[0].dtype)]


def _fold_binary(fn, keep_dtype=True):
    def fold(ctx, xs, a):
        y = np.asarray(fn(xs[0], xs[1]))
        return [y.astype(xs[0].dtype) if keep_dtype else y]
    return fold


def _fold_variadic(fn):
    def fold(ctx, xs, a):
        y = xs[0]
        for x in xs[1:]:
            y = fn(y, x)
        return [np.asarray(y)]
    return fold


FOLD: Dict[str, Callable] = {
    "Constant": _fold_constant,
    "ConstantOfShape": _fold_constant_of_shape,
    "Identity": lambda ctx, xs, a: [xs[0]],
    "Cast": _fold_cast,
    "CastLike": lambda ctx, xs, a: [xs[0].astype(xs[1].dtype)],
    "Add": _fold_binary(np.add), "Sub": _fold_binary(np.subtract), "Mul": _fold_binary(np.multiply),
    "Div": _fold_div, "Pow": _fold_binary(np.power),
    "Mod": lambda ctx, xs, a: [(np.fmod if a.get("fmod", 0) else np.mod)(xs[0], xs[1]).astype(xs[0].dtype)],
    "Equal": _fold_binary(np.equal, False), "Less": _fold_binary(np.less, False),
    "Greater": _fold_binary(np.greater, False), "LessOrEqual": _fold_binary(np.less_equal, False),
    "GreaterOrEqual": _fold_binary(np.greater_equal, False),
    "And": _fold_binary(np.logical_and, False), "Or": _fold_binary(np.logical_or, False),
    "Xor": _fold_binary(np.logical_xor, False), "Not": lambda ctx, xs, a: [np.logical_not(xs[0])],
    "Max": _fold_variadic(np.maximum), "Min": _fold_variadic(np.minimum),
    "Neg": _fold_unary(np.negative), "Abs": _fold_unary(np.abs), "Sqrt": _fold_unary(np.sqrt),
    "Exp": _fold_unary(np.exp), "Log": _fold_unary(np.log), "Tanh": _fold_unary(np.tanh),
    "Erf": _fold_unary(_erf), "Relu": _fold_unary(lambda x: np.maximum(x, 0)),
    "Sigmoid": _fold_unary(lambda x: 1 / (1 + np.exp(-x))), "Reciprocal": _fold_unary(lambda x: 1 / x),
    "Floor": _fold_unary(np.floor), "Ceil": _fold_unary(np.ceil),
    "Where": lambda ctx, xs, a: [np.where(xs[0], xs[1], xs[2])],
    "Range": _fold_range,
    "Tile": lambda ctx, xs, a: [np.tile(xs[0], [int(r) for r in np.ravel(xs[1])])],
    "Concat": lambda ctx, xs, a: [np.concatenate(xs, axis=int(a["axis"]))],
    "Reshape": _fold_reshape, "Flatten": _fold_flatten,
    "Transpose": lambda ctx, xs, a: [np.transpose(xs[0], a.get("perm"))],
    "Unsqueeze": lambda ctx, xs, a: [xs[0].reshape(_unsq_shape(ctx, xs, a))],
    "Squeeze": lambda ctx, xs, a: [np.squeeze(xs[0], axis=tuple(_squeeze_axes(ctx, [Const(x) for x in xs], a, xs[0].shape)))],
    "Slice": _fold_slice, "Gather": _fold_gather, "GatherElements": _fold_gather_elements,
    "GatherND": _fold_gather_nd,
    "Expand": _fold_expand,
    "MatMul": lambda ctx, xs, a: [np.matmul(xs[0], xs[1])], "Gemm": _fold_gemm,
    "ReduceSum": _fold_reduce("ReduceSum", np.sum), "ReduceMean": _fold_reduce("ReduceMean", np.mean),
    "ReduceMax": _fold_reduce("ReduceMax", np.max),
    "Softmax": _fold_softmax(False), "LogSoftmax": _fold_softmax(True),
    "LayerNormalization": _fold_layer_norm, "Gelu": _fold_gelu,
}


def _unsq_shape(ctx, xs, a):
    out = list(xs[0].shape)
    for axis in _unsqueeze_axes(ctx, [Const(x) for x in xs], a, xs[0].ndim):
        out.insert(axis, 1)
    return out


# ====================================================================== LOWER (IR)
def _same(op):
    return lambda ctx, vs, a: [ctx.call(op, *vs)]


def _lower_identity(ctx, vs, a):
    return [vs[0]]


def _lower_shape(ctx, vs, a):
    s = shape(vs[0])
    start, end = int(a.get("start", 0)), a.get("end")
    return [Const(np.array(s[start:None if end is None else int(end)], dtype=np.int64))]


def _lower_size(ctx, vs, a):
    return [Const(np.array(int(np.prod(shape(vs[0]), dtype=np.int64)), dtype=np.int64))]


def _lower_matmul(ctx, vs, a):
    x, y = vs
    rx, ry = ndim(x), ndim(y)
    if rx == 0 or ry == 0:
        ctx.fail("MatMul operands must have at least one dim")
    if rx == 1:
        x = ctx.call("unsqueeze", x, dim=0)
    if ry == 1:
        y = ctx.call("unsqueeze", y, dim=-1)
    out = ctx.call("matmul", x, y)
    if ry == 1:
        out = ctx.call("squeeze", out, dims=[-1])
    if rx == 1:
        out = ctx.call("squeeze", out, dims=[-1 if ry == 1 else -2])
    return [out]


def _lower_gemm(ctx, vs, a):
    A, B = vs[0], vs[1]
    C = vs[2] if len(vs) > 2 else None
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if ndim(A) != 2 or ndim(B) != 2:
        ctx.fail(f"Gemm needs 2-D A and B, got {list(shape(A))} and {list(shape(B))}")
    if a.get("transA", 0):
        A = ctx.call("permute", A, dims=[1, 0])
    n_out = shape(B)[0] if a.get("transB", 0) else shape(B)[1]
    if a.get("transB", 0) and alpha == 1.0 and (C is None or (beta == 1.0 and shape(C) in ((n_out,), ()))):
        return [ctx.call("linear", A, B, *([] if C is None else [C]))]  # torch's nn.Linear
    if a.get("transB", 0):
        B = ctx.call("permute", B, dims=[1, 0])
    if C is None:
        out = ctx.call("matmul", A, B)
        return [out if alpha == 1.0 else ctx.call("mul", out, _scalar(alpha, out))]
    return [ctx.call("addmm", C, A, B, alpha=alpha, beta=beta)]


def _lower_pow(ctx, vs, a):
    x, e = vs
    if isinstance(x, Const) and not isinstance(e, Const):
        ctx.fail("Pow with a non-constant exponent is unsupported")
    exps = np.ravel(ctx.const(e, "exponent"))
    if exps.size == 0 or not np.all(exps == exps[0]):
        ctx.fail("Pow needs one exponent value (a scalar or a tensor of equal values)")
    out_shape = np.broadcast_shapes(shape(x), shape(e))
    if out_shape != shape(x):
        x = ctx.call("expand", x, shape=list(out_shape))
    return [ctx.call("pow", x, exponent=float(exps[0]))]


def _lower_softmax(ir_op):
    def lower(ctx, vs, a):
        x, axis = vs[0], _onnx_softmax_axis(ctx, a)
        rank = ndim(x)
        if ctx.opset >= 13:
            return [ctx.call(ir_op, x, axis=axis)]
        ax = _axis(ctx, axis, rank)  # opset < 13: coerce to 2-D [prod(d[:axis]), prod(d[axis:])]
        if ax == rank - 1:
            return [ctx.call(ir_op, x, axis=-1)]
        s = shape(x)
        flat = ctx.call("reshape", x, shape=[int(np.prod(s[:ax], dtype=np.int64)), -1])
        return [ctx.call("reshape", ctx.call(ir_op, flat, axis=-1), shape=list(s))]
    return lower


def _lower_layer_norm(ctx, vs, a):
    if len(ctx.outputs) > 1 and any(ctx.outputs[1:]):
        ctx.fail("the Mean / InvStdDev outputs are unsupported")
    x, scale = vs[0], vs[1]
    bias = vs[2] if len(vs) > 2 else None
    axis = _axis(ctx, int(a.get("axis", -1)), ndim(x))
    norm = list(shape(x)[axis:])
    eps = float(a.get("epsilon", 1e-5))
    if shape(scale) == tuple(norm) and (bias is None or shape(bias) == tuple(norm)):
        return [ctx.call("layer_norm", x, scale, *([] if bias is None else [bias]), normalized_shape=norm, eps=eps)]
    y = ctx.call("mul", ctx.call("layer_norm", x, normalized_shape=norm, eps=eps), scale)
    return [y if bias is None else ctx.call("add", y, bias)]


def _lower_gather(ctx, vs, a):
    data, idx = vs
    rank = ndim(data)
    axis = _axis(ctx, int(a.get("axis", 0)), rank)
    size = shape(data)[axis]
    if isinstance(idx, Node):
        if not idx.dtype.startswith("int"):
            ctx.fail(f"indices must be integers, got {idx.dtype}")
    else:
        fixed = _gather_indices(ctx, ctx.const(idx, "indices"), size)
        if fixed.dtype != idx.value.dtype or not np.array_equal(fixed, idx.value):
            idx = Const(fixed)  # negative indices resolved
        if fixed.ndim == 0:
            return [ctx.call("select", data, dim=axis, index=int(fixed))]
    if rank == 2 and axis == 0:
        return [ctx.call("embedding", data, idx)]
    if ndim(idx) == 1:
        return [ctx.call("index_select", data, idx, dim=axis)]
    flat = Const(np.ravel(idx.value)) if isinstance(idx, Const) else ctx.call("reshape", idx, shape=[-1])
    picked = ctx.call("index_select", data, flat, dim=axis)
    s = shape(data)
    return [ctx.call("reshape", picked, shape=list(s[:axis] + shape(idx) + s[axis + 1:]))]


def _lower_gather_elements(ctx, vs, a):
    data, idx = vs
    axis = _axis(ctx, int(a.get("axis", 0)), ndim(data))
    if not isinstance(idx, Node):
        idx = Const(_gather_indices(ctx, ctx.const(idx, "indices"), shape(data)[axis]))
    return [ctx.call("gather", data, idx, dim=axis)]


def _lower_transpose(ctx, vs, a):
    rank = ndim(vs[0])
    perm = [int(p) for p in a.get("perm", range(rank - 1, -1, -1))]
    if perm == list(range(rank)):
        return [vs[0]]
    return [ctx.call("permute", vs[0], dims=perm)]


def _lower_reshape(ctx, vs, a):
    x = vs[0]
    if ctx.opset < 5:
        target = a.get("shape")
    else:
        target = np.ravel(ctx.const(vs[1], "shape"))
    out = _reshape_target(ctx, shape(x), target, a.get("allowzero", 0))
    return [x if out == shape(x) else ctx.call("reshape", x, shape=list(out))]


def _lower_flatten(ctx, vs, a):
    s = shape(vs[0])
    axis = _axis(ctx, int(a.get("axis", 1)), len(s) + 1)
    return [ctx.call("reshape", vs[0], shape=[int(np.prod(s[:axis], dtype=np.int64)), -1])]


def _lower_unsqueeze(ctx, vs, a):
    x = vs[0]
    for axis in _unsqueeze_axes(ctx, vs, a, ndim(x)):
        x = ctx.call("unsqueeze", x, dim=axis)
    return [x]


def _lower_squeeze(ctx, vs, a):
    axes = _squeeze_axes(ctx, vs, a, shape(vs[0]))
    return [ctx.call("squeeze", vs[0], dims=axes) if axes else vs[0]]


def _lower_slice(ctx, vs, a):
    x = vs[0]
    for axis, start, end, step, idx in _slice_plan(ctx, vs, a, shape(x)):
        dim = shape(x)[axis]
        if step > 0:
            if start == 0 and end == dim and step == 1:
                continue
            x = ctx.call("slice", x, dim=axis, start=start, end=end, step=step)
        else:  # negative steps: pick the elements explicitly
            x = ctx.call("index_select", x, Const(idx), dim=axis)
    return [x]


def _lower_expand(ctx, vs, a):
    x = vs[0]
    target = tuple(int(s) for s in np.ravel(ctx.const(vs[1], "shape")))
    try:
        out = tuple(int(s) for s in np.broadcast_shapes(shape(x), target))
    except ValueError:
        ctx.fail(f"cannot expand {list(shape(x))} to {list(target)}")
    return [x if out == shape(x) else ctx.call("expand", x, shape=list(out))]


def _lower_cast(ctx, vs, a, target=None):
    x = vs[0]
    if target is None:
        to = int(a["to"])
        if to not in IR_ELEM_TYPES:
            ctx.fail(f"cast to {elem_type_name(to)} is only supported on constants")
        target = IR_ELEM_TYPES[to]
    return [x if dtype(x) == target else ctx.call("cast", x, dtype=target)]


def _lower_cast_like(ctx, vs, a):
    return _lower_cast(ctx, vs[:1], a, target=dtype(vs[1]))


def _lower_concat(ctx, vs, a):
    axis = int(a["axis"])
    parts = [v for v in vs if 0 not in shape(v)] or vs[:1]
    return [parts[0] if len(parts) == 1 else ctx.call("cat", *parts, dim=axis)]


def _lower_where(ctx, vs, a):
    if dtype(vs[0]) != "bool":
        ctx.fail(f"condition must be bool, got {dtype(vs[0])}")
    return [ctx.call("where", *vs)]


def _bool(ctx, v, what):
    if dtype(v) != "bool":
        ctx.fail(f"{what} must be bool, got {dtype(v)}")
    return v


def _lower_logical(kind):
    """And / Or / Xor / Not on boolean tensors, spelled with ``where`` (no gradient flows)."""
    def lower(ctx, vs, a):
        x = _bool(ctx, vs[0], "input 0")
        false, true = Const(np.array(False)), Const(np.array(True))
        if kind == "not":
            return [ctx.call("where", x, false, true)]
        y = _bool(ctx, vs[1], "input 1")
        if kind == "and":
            return [ctx.call("where", x, y, false)]
        if kind == "or":
            return [ctx.call("where", x, true, y)]
        return [ctx.call("where", x, ctx.call("where", y, false, true), y)]  # xor
    return lower


def _lower_gather_nd(ctx, vs, a):
    data, idx = vs
    rows, flat, out_shape = _gather_nd_plan(ctx, shape(data), ctx.const(idx, "indices"), a)
    picked = ctx.call("index_select", ctx.call("reshape", data, shape=rows), Const(flat), dim=0)
    return [ctx.call("reshape", picked, shape=out_shape)]


def _lower_reduce(ir_op, onnx_op):
    def lower(ctx, vs, a):
        axes, noop = _reduce_axes(ctx, vs, a, _REDUCE_SINCE[onnx_op])
        if noop:
            return [vs[0]]
        return [ctx.call(ir_op, vs[0], axes=axes, keepdim=bool(a.get("keepdims", 1)))]
    return lower


def _lower_dropout(ctx, vs, a):
    if len(ctx.outputs) > 1 and ctx.outputs[1]:
        ctx.fail("the mask output of Dropout is unsupported")
    if len(vs) > 2 and vs[2] is not None and bool(np.ravel(ctx.const(vs[2], "training_mode"))[0]):
        ctx.fail("Dropout in training mode is unsupported")
    return [vs[0]]


LOWER: Dict[str, Callable] = {
    "Identity": _lower_identity,
    "Add": _same("add"), "Sub": _same("sub"), "Mul": _same("mul"), "Div": _same("div"),
    "Pow": _lower_pow,
    "Neg": _same("neg"), "Exp": _same("exp"), "Log": _same("log"), "Sqrt": _same("sqrt"),
    "Tanh": _same("tanh"), "Sigmoid": _same("sigmoid"), "Relu": _same("relu"), "Erf": _same("erf"),
    "Reciprocal": lambda ctx, vs, a: [ctx.call("div", _scalar(1.0, vs[0]), vs[0])],
    "LeakyRelu": lambda ctx, vs, a: [ctx.call("leaky_relu", vs[0], negative_slope=float(a.get("alpha", 0.01)))],
    "Gelu": lambda ctx, vs, a: [ctx.call("gelu", vs[0], approximate=a.get("approximate", "none"))],
    "MatMul": _lower_matmul, "Gemm": _lower_gemm,
    "Softmax": _lower_softmax("softmax"), "LogSoftmax": _lower_softmax("log_softmax"),
    "LayerNormalization": _lower_layer_norm,
    "ReduceSum": _lower_reduce("sum", "ReduceSum"), "ReduceMean": _lower_reduce("mean", "ReduceMean"),
    "ReduceMax": _lower_reduce("amax", "ReduceMax"),
    "Gather": _lower_gather, "GatherElements": _lower_gather_elements,
    "Transpose": _lower_transpose, "Reshape": _lower_reshape, "Flatten": _lower_flatten,
    "Unsqueeze": _lower_unsqueeze, "Squeeze": _lower_squeeze, "Slice": _lower_slice,
    "Expand": _lower_expand, "Concat": _lower_concat, "Where": _lower_where,
    "Cast": _lower_cast, "CastLike": _lower_cast_like,
    "Shape": _lower_shape, "Size": _lower_size,
    "Dropout": _lower_dropout,
    "And": _lower_logical("and"), "Or": _lower_logical("or"), "Xor": _lower_logical("xor"),
    "Not": _lower_logical("not"), "GatherND": _lower_gather_nd,
}
LOWER.update(vision_lowerings())  # Conv, pools, BatchNormalization

SUPPORTED = sorted(set(FOLD) | set(LOWER))
"""Every ONNX op type (default domain) the importer accepts."""

FOLD_ONLY = sorted(set(FOLD) - set(LOWER))
"""Op types accepted only when all their inputs are constant (no graphengine op behind them)."""
