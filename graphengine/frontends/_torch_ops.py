"""ATen op converters for the PyTorch frontend (:mod:`graphengine.frontends.torch`).

Each converter takes the frontend's converter state ``cv`` and the op's arguments by schema
name, with FX nodes replaced by their values: an IR :class:`~graphengine.ir.graph.Node`, a
:class:`Const` (a tensor known at export time) or a Python scalar. It returns the IR node (or a
list/tuple of them for multi-output ops), emitting nodes with ``cv.emit(op, *inputs, **attrs)``,
or raises :class:`Unsup` when the op is not representable in this form.

>>> "aten.linear.default" in converters() and "aten.sort.default" not in converters()
True
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import GraphEngineError
from ..ir import Node, op_names


def import_torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - exercised only without torch
        raise GraphEngineError("the PyTorch frontend needs torch (pip install 'graphengine[torch]')") from None
    return torch


# ======================================================================== values
class Const:
    """A tensor known at export time (buffer, lifted constant or folded result)."""

    __slots__ = ("tensor", "name", "scope")

    def __init__(self, tensor, name: str, scope: str):
        self.tensor, self.name, self.scope = tensor, name, scope


class Unsupported:
    """Stand-in for the value of an op that could not be mapped."""


UNSUPPORTED = Unsupported()


class Unsup(Exception):
    """Raised by a converter: the op is unsupported in this form (message = why)."""


_DTYPES = None


def dtype_name(tdtype) -> Optional[str]:
    global _DTYPES
    if _DTYPES is None:
        torch = import_torch()
        _DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.int64: "int64",
                   torch.int32: "int32", torch.bool: "bool", torch.int16: "int64", torch.int8: "int64",
                   torch.uint8: "int64"}
    return _DTYPES.get(tdtype)


def to_numpy(tensor, dtype: Optional[str] = None) -> np.ndarray:
    torch = import_torch()
    name = dtype_name(tensor.dtype)
    if name is None:
        raise Unsup(f"dtype {str(tensor.dtype).replace('torch.', '')} is not supported")
    t = tensor.detach().cpu()
    if t.dtype in (torch.int16, torch.int8, torch.uint8):
        t = t.to(torch.int64)
    arr = np.array(t.numpy(), copy=True)
    if dtype is not None and arr.dtype.kind == "f" and dtype in ("float32", "float64"):
        arr = arr.astype(dtype)
    return arr


def walk(value, fn):
    if isinstance(value, list):
        return [walk(v, fn) for v in value]
    if isinstance(value, tuple):  # plain tuples also for torch.Size and torch.return_types
        return tuple(walk(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: walk(v, fn) for k, v in value.items()}
    return fn(value)


def contains(value, pred) -> bool:
    if isinstance(value, (list, tuple)):
        return any(contains(v, pred) for v in value)
    if isinstance(value, dict):
        return any(contains(v, pred) for v in value.values())
    return pred(value)


def normalize_args(target, args, kwargs) -> Dict[str, Any]:
    """Arguments by schema name, defaults filled in."""
    out: Dict[str, Any] = {}
    position = 0
    for arg in target._schema.arguments:
        if not arg.kwarg_only and position < len(args):
            out[arg.name] = args[position]
            position += 1
        elif arg.name in kwargs:
            out[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
        else:
            out[arg.name] = None
    return out


class SkipDependent(Exception):
    """A value depends on an unsupported op; it is skipped silently (the op is reported)."""


# ======================================================================== op converters
def _is_zero_const(v) -> bool:
    torch = import_torch()
    if isinstance(v, Const):
        t = v.tensor
        return t.dtype.is_floating_point and t.numel() > 0 and bool((t == 0).all()) and not bool(torch.signbit(t).any())
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0


def _shape_of(cv, v) -> Tuple[int, ...]:
    if isinstance(v, Node):
        return tuple(v.shape)
    if isinstance(v, Const):
        return tuple(v.tensor.shape)
    return ()


def _binary(cv, op, x, y):
    if op in ("add", "sub") and isinstance(x, Node) and _is_zero_const(y):
        if np.broadcast_shapes(x.shape, _shape_of(cv, y)) == tuple(x.shape) and x.dtype == cv.out_dtype:
            return x
    if op == "add" and isinstance(y, Node) and _is_zero_const(x):
        if np.broadcast_shapes(y.shape, _shape_of(cv, x)) == tuple(y.shape) and y.dtype == cv.out_dtype:
            return y
    return cv.emit(op, x, y)


def _scaled(cv, y, alpha):
    if alpha in (None, 1):
        return y
    if isinstance(y, Const):
        return Const(y.tensor * alpha, y.name, y.scope)
    if isinstance(y, (int, float)):
        return y * alpha
    return cv.emit("mul", y, float(alpha))


def _conv_binary(op, reverse=False):
    def conv(cv, a):
        x, y = a["self"], a["other"]
        if "alpha" in a:
            y = _scaled(cv, y, a["alpha"]) if not reverse else y
            x = _scaled(cv, x, a["alpha"]) if reverse else x
        if reverse:
            x, y = y, x
        return _binary(cv, op, x, y)
    return conv


def _conv_div_mode(cv, a):
    if a.get("rounding_mode") is not None:
        raise Unsup(f"rounding_mode={a['rounding_mode']!r}")
    return _binary(cv, "div", a["self"], a["other"])


def _unary(op, **fixed):
    return lambda cv, a: cv.emit(op, a["self"], **fixed)


def _conv_pow_scalar(cv, a):
    e = a["exponent"]
    if e == 1:
        return cv.node(a["self"])
    return cv.emit("pow", a["self"], exponent=float(e))


def _conv_pow_tensor(cv, a):
    e = a["exponent"]
    if isinstance(e, Const) and e.tensor.dim() == 0:
        return cv.emit("pow", a["self"], exponent=float(e.tensor))
    raise Unsup("a tensor exponent")


def _conv_pow_base(cv, a):  # base ** x = exp(x log base)
    base = float(a["self"])
    if base <= 0:
        raise Unsup(f"non-positive base {base}")
    return cv.emit("exp", cv.emit("mul", a["exponent"], math.log(base)))


def _conv_identity(cv, a):
    x = a["self"]
    dtype = a.get("dtype")
    want = cv.ir_dtype(dtype) if dtype is not None else None
    if want is not None and isinstance(x, Node) and want != x.dtype:
        return cv.emit("cast", x, dtype=want)  # the IR's cast op (numpy astype, as torch's .to)
    if dtype is not None and want is None:
        raise Unsup(f"a cast to {str(dtype).replace('torch.', '')}")
    return cv.node(x)


def _conv_linear(cv, a):
    args = [a["input"], a["weight"]] + ([a["bias"]] if a.get("bias") is not None else [])
    return cv.emit("linear", *args)


def _conv_addmm(cv, a):
    return cv.emit("addmm", a["self"], a["mat1"], a["mat2"], beta=float(a["beta"]), alpha=float(a["alpha"]))


def _conv_matmul(cv, a):
    x, y = cv.node(a["self"]), cv.node(a["other"])
    if len(x.shape) == 0 or len(y.shape) == 0:
        raise Unsup("0-d operand")
    xv = cv.emit("unsqueeze", x, dim=0) if len(x.shape) == 1 else x
    yv = cv.emit("unsqueeze", y, dim=-1) if len(y.shape) == 1 else y
    out = cv.emit("matmul", xv, yv)
    if len(y.shape) == 1:
        out = cv.emit("squeeze", out, dims=[-1])
    if len(x.shape) == 1:
        out = cv.emit("squeeze", out, dims=[-2] if len(y.shape) > 1 else [-1])
    return out


def _as_dtype(cv, x, dtype):
    """``x`` cast to torch dtype ``dtype`` (an op's ``dtype=`` argument); ``None`` keeps it."""
    x = cv.node(x)
    want = cv.ir_dtype(dtype) if dtype is not None else x.dtype
    if want is None:
        raise Unsup(f"dtype {str(dtype).replace('torch.', '')}")
    return x if want == x.dtype else cv.emit("cast", x, dtype=want)


def _softmax_like(op):
    # softmax(x, dim, dtype=float32) computes in float32 (Llama does so even in a float64 model)
    return lambda cv, a: cv.emit(op, _as_dtype(cv, a["self"], a.get("dtype")), axis=int(a["dim"]))


def _conv_layer_norm(cv, a):
    args = [a["input"]]
    w, b = a.get("weight"), a.get("bias")
    if w is None and b is not None:
        w = Const(import_torch().ones(list(a["normalized_shape"]), dtype=b.tensor.dtype if isinstance(b, Const) else None),
                   f"{cv.fx.name}.ones", cv.scope)
    if w is not None:
        args.append(w)
    if b is not None:
        args.append(b)
    return cv.emit("layer_norm", *args, normalized_shape=[int(s) for s in a["normalized_shape"]],
                   eps=float(a["eps"]))


def _conv_native_layer_norm(cv, a):
    return (_conv_layer_norm(cv, a), UNSUPPORTED, UNSUPPORTED)


def _axes(dim, ndim):
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return None
    if isinstance(dim, int):
        return [dim % ndim]
    return sorted(int(d) % ndim for d in dim)


def _reduction(op, dim_key="dim"):
    def conv(cv, a):
        x = _as_dtype(cv, a["self"], a.get("dtype"))
        return cv.emit(op, x, axes=_axes(a.get(dim_key), len(x.shape)), keepdim=bool(a.get("keepdim") or False))
    return conv


def _conv_max_dim(cv, a):
    x = cv.node(a["self"])
    return (cv.emit("amax", x, axes=[int(a["dim"]) % len(x.shape)], keepdim=bool(a["keepdim"])), UNSUPPORTED)


def _conv_logsumexp(cv, a):
    x = cv.node(a["self"])
    axes = _axes(a["dim"], len(x.shape)) or list(range(len(x.shape)))
    m = cv.emit("amax", x, axes=axes, keepdim=True)
    s = cv.emit("sum", cv.emit("exp", cv.emit("sub", x, m)), axes=axes, keepdim=True)
    out = cv.emit("add", m, cv.emit("log", s))
    return out if a["keepdim"] else cv.emit("squeeze", out, dims=axes)


def _conv_view(cv, a):
    x = cv.node(a["self"])
    shape = [int(s) for s in a.get("size", a.get("shape"))]
    src = x
    while src.op == "reshape":
        src = cv.g.node(src.inputs[0])
    n = int(np.prod(src.shape, dtype=np.int64))
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        shape[shape.index(-1)] = n // known if known else 0
    if tuple(shape) == tuple(src.shape):
        return src
    return cv.emit("reshape", src, shape=shape)


def _conv_permute(cv, a):
    x = cv.node(a["self"])
    dims = [int(d) % len(x.shape) for d in a["dims"]]
    if dims == list(range(len(x.shape))):
        return x
    return cv.emit("permute", x, dims=dims)


def _conv_transpose(cv, a):
    x = cv.node(a["self"])
    n = max(len(x.shape), 1)
    d0, d1 = int(a["dim0"]) % n, int(a["dim1"]) % n
    if d0 == d1 or len(x.shape) < 2:
        return x
    return cv.emit("transpose", x, dim0=d0, dim1=d1)


def _conv_t(cv, a):
    x = cv.node(a["self"])
    return x if len(x.shape) < 2 else cv.emit("transpose", x, dim0=0, dim1=1)


def _conv_expand(cv, a):
    x = cv.node(a["self"])
    shape = tuple(int(s) for s in cv.fx.meta["val"].shape)
    if shape == tuple(x.shape):
        return x
    return cv.emit("expand", x, shape=list(shape))


def _conv_unsqueeze(cv, a):
    return cv.emit("unsqueeze", a["self"], dim=int(a["dim"]))


def _conv_squeeze(cv, a):
    x = cv.node(a["self"])
    dim = a.get("dim")
    dims = list(range(len(x.shape))) if dim is None else ([dim] if isinstance(dim, int) else list(dim))
    dims = [int(d) % max(len(x.shape), 1) for d in dims]
    dims = [d for d in dims if len(x.shape) and x.shape[d] == 1]
    if not dims:
        return x
    return cv.emit("squeeze", x, dims=dims)


def _conv_slice(cv, a):
    x = cv.node(a["self"])
    dim = int(a["dim"]) % len(x.shape)
    size = x.shape[dim]
    start, end, step = slice(a["start"], a["end"], a["step"] or 1).indices(size)
    if (start, end, step) == (0, size, 1):
        return x
    return cv.emit("slice", x, dim=dim, start=start, end=max(end, start), step=step)


def _conv_select(cv, a):
    return cv.emit("select", a["self"], dim=int(a["dim"]), index=int(a["index"]))


def _conv_cat(cv, a):
    items = [v for v in a["tensors"] if not (isinstance(v, Const) and v.tensor.dim() == 1 and v.tensor.numel() == 0)]
    nodes = [cv.node(v) for v in items]
    if len(nodes) == 1:
        return nodes[0]
    return cv.emit("cat", *nodes, dim=int(a["dim"]))


def _conv_split(cv, a):
    x = cv.node(a["self"])
    dim = int(a["dim"]) % len(x.shape)
    size = x.shape[dim]
    if "split_sizes" in a:
        sizes = [int(s) for s in a["split_sizes"]]
    else:
        step = int(a["split_size"])
        sizes = [min(step, size - s) for s in range(0, size, step)] or [0]
    out, start = [], 0
    for s in sizes:
        out.append(x if s == size else cv.emit("slice", x, dim=dim, start=start, end=start + s, step=1))
        start += s
    return out


def _conv_unbind(cv, a):
    x = cv.node(a["self"])
    dim = int(a["dim"]) % len(x.shape)
    return [cv.emit("select", x, dim=dim, index=i) for i in range(x.shape[dim])]


def _conv_index(cv, a):
    x = cv.node(a["self"])
    indices = list(a["indices"])
    pos = [i for i, ix in enumerate(indices) if ix is not None]
    if not pos:
        return x
    for p in pos:
        ix = indices[p]
        tdtype = ix.tensor.dtype if isinstance(ix, Const) else None
        if (isinstance(ix, Node) and ix.dtype == "bool") or (tdtype is not None and not tdtype.is_floating_point
                                                              and str(tdtype) == "torch.bool"):
            raise Unsup("boolean mask index")
    if len(pos) > 1:
        if pos != list(range(pos[0], pos[-1] + 1)):
            raise Unsup("several non-adjacent advanced indices")
        dims = [x.shape[p] for p in pos]
        merged = list(x.shape[:pos[0]]) + [int(np.prod(dims))] + list(x.shape[pos[-1] + 1:])
        if all(isinstance(indices[p], Const) for p in pos):
            idx = np.broadcast_arrays(*[to_numpy(indices[p].tensor) for p in pos])
            flat = np.ravel_multi_index(tuple(np.mod(i, d) for i, d in zip(idx, dims)), dims)
            index = Const(import_torch().from_numpy(flat.astype(np.int64)), f"{cv.fx.name}.flat_index", cv.scope)
        else:  # computed indices (a classification head's last non-padding token): flatten in the graph
            index = _flat_index(cv, [indices[p] for p in pos], dims)
        x = cv.emit("reshape", x, shape=merged)
        d = pos[0]
    else:
        d = pos[0]
        index = indices[d]
        if isinstance(index, Const):
            index = Const(index.tensor % x.shape[d], index.name, index.scope)  # torch allows negatives
    idx = cv.node(index)
    if d == 0 and len(x.shape) == 2:
        return cv.emit("embedding", x, idx)
    if len(idx.shape) == 1:
        return cv.emit("index_select", x, idx, dim=d)
    flat_idx = cv.emit("reshape", idx, shape=[-1])
    picked = cv.emit("index_select", x, flat_idx, dim=d)
    return cv.emit("reshape", picked, shape=list(x.shape[:d]) + list(idx.shape) + list(x.shape[d + 1:]))


def _flat_index(cv, indices, dims) -> Node:
    """Σ_k (i_k mod d_k) · stride_k as int64 IR nodes (row-major strides, broadcasting)."""
    flat = None
    for k, (ix, d) in enumerate(zip(indices, dims)):
        i = cv.node(ix, dtype="int64")
        if i.dtype != "int64":
            i = cv.emit("cast", i, dtype="int64")
        zero, size = cv.node(0, dtype="int64"), cv.node(int(d), dtype="int64")
        i = cv.emit("where", cv.emit("lt", i, zero), cv.emit("add", i, size), i)  # torch allows negatives
        stride = int(np.prod(dims[k + 1:], dtype=np.int64))
        term = i if stride == 1 else cv.emit("mul", i, cv.node(stride, dtype="int64"))
        flat = term if flat is None else cv.emit("add", flat, term)
    return flat


def _conv_gather(cv, a):
    index = a["index"]
    return cv.emit("gather", a["self"], index, dim=int(a["dim"]))


def _conv_index_select(cv, a):
    return cv.emit("index_select", a["self"], a["index"], dim=int(a["dim"]))


def _conv_embedding(cv, a):
    return cv.emit("embedding", a["weight"], a["indices"])


def _conv_where(cv, a):
    cond = a["condition"]
    c = cv.node(cond, dtype="bool")
    if c.dtype != "bool":
        raise Unsup(f"a {c.dtype} condition")
    return cv.emit("where", c, a["self"], a["other"])


def _conv_masked_fill(cv, a):
    mask = cv.node(a["mask"], dtype="bool")
    value = a["value"]
    if isinstance(value, Const):
        value = float(value.tensor)
    return cv.emit("where", mask, value, a["self"])


def _conv_cumsum(cv, a):
    x = cv.node(a["self"])
    if x.dtype in ("float32", "float64"):
        raise Unsup("cumsum of a float tensor (only integer/bool cumsum is supported)")
    out = cv.emit("cumsum", x, axis=int(a["dim"]) % max(len(x.shape), 1))
    return _as_dtype(cv, out, a.get("dtype"))


def _conv_arg(op):
    def conv(cv, a):
        x = cv.node(a["self"])
        dim = a.get("dim")
        return cv.emit(op, x, axis=None if dim is None else int(dim) % max(len(x.shape), 1),
                       keepdim=bool(a.get("keepdim") or False))
    return conv


def _logic(op, arity=2):
    """Comparisons, bitwise and logical ops: non-differentiable IR ops of the same name."""
    def conv(cv, a):
        x = a["self"]
        if arity == 1:
            return cv.emit(op, x)
        y = a["other"]
        if isinstance(y, bool) or (op.startswith("bitwise") and isinstance(y, int)):
            y = Const(import_torch().tensor(y), f"{cv.fx.name}.other", cv.scope)
            return cv.emit(op, x, cv.node(y, dtype=cv.node(x).dtype))
        return cv.emit(op, x, y)
    return conv


@functools.lru_cache(maxsize=1)
def converters() -> Dict[str, Callable]:
    table: Dict[str, Callable] = {}

    def reg(conv, *names):
        for n in names:
            table[f"aten.{n}"] = conv

    for op in ("add", "sub", "mul", "div"):
        reg(_conv_binary(op), f"{op}.Tensor", f"{op}.Scalar")
    reg(_conv_div_mode, "div.Tensor_mode")
    reg(_conv_binary("sub", reverse=True), "rsub.Tensor", "rsub.Scalar")
    for op in ("neg", "exp", "log", "tanh", "sigmoid", "relu", "erf", "sqrt", "rsqrt"):
        reg(_unary(op), f"{op}.default")
    reg(lambda cv, a: cv.emit("gelu", a["self"], approximate=a["approximate"] or "none"), "gelu.default")
    reg(lambda cv, a: cv.emit("leaky_relu", a["self"], negative_slope=float(a["negative_slope"])),
        "leaky_relu.default")
    reg(lambda cv, a: cv.emit("pow", a["self"], exponent=-1.0), "reciprocal.default")
    reg(_conv_pow_scalar, "pow.Tensor_Scalar")
    reg(_conv_pow_tensor, "pow.Tensor_Tensor")
    reg(_conv_pow_base, "pow.Scalar")
    reg(_conv_identity, "clone.default", "alias.default", "detach.default", "_to_copy.default",
        "lift_fresh_copy.default", "contiguous.default")
    reg(_conv_linear, "linear.default")
    reg(_conv_addmm, "addmm.default")
    reg(lambda cv, a: cv.emit("mm", a["self"], a["mat2"]), "mm.default")
    reg(lambda cv, a: cv.emit("bmm", a["self"], a["mat2"]), "bmm.default")
    reg(_conv_matmul, "matmul.default")
    reg(_softmax_like("softmax"), "_softmax.default", "softmax.int", "_safe_softmax.default")
    reg(_softmax_like("log_softmax"), "_log_softmax.default", "log_softmax.int")
    reg(_conv_layer_norm, "layer_norm.default")
    reg(_conv_native_layer_norm, "native_layer_norm.default")
    reg(_reduction("sum"), "sum.dim_IntList", "sum.default")
    reg(_reduction("mean"), "mean.dim", "mean.default")
    reg(_reduction("amax"), "amax.default", "max.default")
    reg(_conv_max_dim, "max.dim")
    reg(_conv_logsumexp, "logsumexp.default")
    reg(_conv_view, "view.default", "_unsafe_view.default", "reshape.default")
    reg(_conv_permute, "permute.default")
    reg(_conv_transpose, "transpose.int")
    reg(_conv_t, "t.default")
    reg(_conv_expand, "expand.default")
    reg(_conv_unsqueeze, "unsqueeze.default")
    reg(_conv_squeeze, "squeeze.default", "squeeze.dim", "squeeze.dims")
    reg(_conv_slice, "slice.Tensor")
    reg(_conv_select, "select.int")
    reg(_conv_cat, "cat.default")
    reg(_conv_split, "split.Tensor", "split_with_sizes.default")
    reg(_conv_unbind, "unbind.int")
    reg(_conv_index, "index.Tensor", "_unsafe_index.Tensor")
    reg(_conv_gather, "gather.default")
    reg(_conv_index_select, "index_select.default")
    reg(_conv_embedding, "embedding.default")
    reg(_conv_where, "where.self")
    reg(_conv_masked_fill, "masked_fill.Scalar", "masked_fill.Tensor")
    reg(_unary("silu"), "silu.default")
    for op in ("eq", "ne", "lt", "le", "gt", "ge"):
        reg(_logic(op), f"{op}.Scalar", f"{op}.Tensor")
    for op in ("bitwise_and", "bitwise_or", "bitwise_xor"):
        reg(_logic(op), f"{op}.Tensor", f"{op}.Scalar")
    for op in ("logical_and", "logical_or", "logical_xor"):
        reg(_logic(op), f"{op}.default")
    reg(_logic("bitwise_not", 1), "bitwise_not.default")
    reg(_logic("logical_not", 1), "logical_not.default")
    reg(_conv_cumsum, "cumsum.default")
    for op in ("argmax", "argmin"):
        reg(_conv_arg(op), f"{op}.default")
    from ._torch_vision import vision_converters  # its converters build on this module's values
    table.update(vision_converters())
    return table


def supported_ops() -> List[str]:
    """Names of the ATen ops :func:`from_torch` maps when their operands are not constants."""
    return sorted(converters())
