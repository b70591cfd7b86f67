"""Ops that only move elements (Jacobian structure: movement, weight-one edges).

The index map of a movement op is obtained by running its own forward on ``arange`` in place
of the moved input, so the forward and the Jacobian can never disagree.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import is_int, promote
from ..jacobian import Movement
from ..registry import Attr, OpDef, ShapeError, TensorType, register_op
from ._common import norm_axes, norm_axis


def _index_map(forward, data_slots, slot, xs, attrs):
    args = []
    for i, x in enumerate(xs):
        if i == slot:
            args.append(np.arange(x.size, dtype=np.int64).reshape(x.shape))
        elif i in data_slots:
            args.append(np.full(x.shape, -1, dtype=np.int64))
        else:
            args.append(x)
    return np.asarray(forward(args, attrs), dtype=np.int64)


def _index_map_jacobian(forward, data_slots, inverse=None):
    """The Movement of ``slot``. ``inverse(x_shape, attrs)``, for bijective ops, returns the
    array movement taking an output-shaped array back to the input's shape (the fast path)."""
    def jacobian(slot, xs, y, attrs):
        if slot not in data_slots:
            return None  # integer index inputs carry no gradient
        if inverse is not None:
            return Movement(transform=inverse(xs[slot].shape, attrs),
                            index_fn=lambda: _index_map(forward, data_slots, slot, xs, attrs))
        return Movement(_index_map(forward, data_slots, slot, xs, attrs))
    return jacobian


def _reshape_back(x_shape, attrs):
    return lambda a: a.reshape(x_shape)


def _register(name, infer, forward, attrs, doc, data_slots=(0,), n_inputs=(1, 1), aliases=(), inverse=None,
              jacobian=None):
    register_op(OpDef(name, "movement", n_inputs[0], n_inputs[1], infer, forward,
                   jacobian or _index_map_jacobian(forward, data_slots, inverse), attrs=attrs, doc=doc), *aliases)


# ------------------------------------------------------------------ reshape / view
def _reshape_target(shape, size):
    shape = list(shape)
    if shape.count(-1) > 1:
        raise ShapeError(f"more than one -1 in shape {shape}")
    if any(s < -1 for s in shape):
        raise ShapeError(f"negative size in shape {shape}")
    known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
    if -1 in shape:
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape {size} elements to {shape}")
        shape[shape.index(-1)] = size // known
    elif known != size:
        raise ShapeError(f"cannot reshape {size} elements to {shape}")
    return tuple(shape)


_register("reshape",
          lambda t, a: TensorType(_reshape_target(a["shape"], int(np.prod(t[0].shape, dtype=np.int64))), t[0].dtype),
          lambda xs, a: xs[0].reshape(_reshape_target(a["shape"], xs[0].size)),
          {"shape": Attr("ints", required=True)}, "row-major reshape (-1 infers one dim)", aliases=("view",),
          inverse=_reshape_back)


# ------------------------------------------------------------------ permutations
def _permute_infer(t, a):
    dims = a["dims"]
    if sorted(d % max(t[0].ndim, 1) for d in dims) != list(range(t[0].ndim)) or len(dims) != t[0].ndim:
        raise ShapeError(f"dims {dims} are not a permutation of {t[0].ndim} axes")
    return TensorType(tuple(t[0].shape[d] for d in dims), t[0].dtype)


_register("permute", _permute_infer, lambda xs, a: np.transpose(xs[0], a["dims"]).copy(),
          {"dims": Attr("ints", required=True)}, "permute axes",
          inverse=lambda shape, a: (lambda y: np.transpose(y, np.argsort([d % len(shape) for d in a["dims"]]))))


def _transpose_infer(t, a):
    d0, d1 = norm_axis(a["dim0"], t[0].ndim), norm_axis(a["dim1"], t[0].ndim)
    shape = list(t[0].shape)
    shape[d0], shape[d1] = shape[d1], shape[d0]
    return TensorType(tuple(shape), t[0].dtype)


_register("transpose", _transpose_infer, lambda xs, a: np.swapaxes(xs[0], a["dim0"], a["dim1"]).copy(),
          {"dim0": Attr("int", required=True), "dim1": Attr("int", required=True)}, "swap two axes",
          inverse=lambda shape, a: (lambda y: np.swapaxes(y, a["dim0"], a["dim1"])))


# ------------------------------------------------------------------ unsqueeze / squeeze
def _unsqueeze_dim(a, ndim):
    return norm_axis(a["dim"], ndim + 1)


_register("unsqueeze",
          lambda t, a: TensorType(tuple(np.expand_dims(np.empty(t[0].shape, np.int8), _unsqueeze_dim(a, t[0].ndim)).shape), t[0].dtype),
          lambda xs, a: np.expand_dims(xs[0], _unsqueeze_dim(a, xs[0].ndim)),
          {"dim": Attr("int", required=True)}, "insert a size-1 axis", inverse=_reshape_back)


def _squeeze_axes(shape, dims):
    if dims is None:
        return tuple(i for i, s in enumerate(shape) if s == 1)
    return tuple(i for i in norm_axes(dims, len(shape)) if shape[i] == 1)  # torch: non-1 dims are kept


_register("squeeze",
          lambda t, a: TensorType(tuple(s for i, s in enumerate(t[0].shape) if i not in _squeeze_axes(t[0].shape, a["dims"])), t[0].dtype),
          lambda xs, a: np.squeeze(xs[0], axis=_squeeze_axes(xs[0].shape, a["dims"])),
          {"dims": Attr("int_or_ints", default=None)}, "remove size-1 axes (all when dims is None)",
          inverse=_reshape_back)


# ------------------------------------------------------------------ slice / select
def _slice_obj(shape, a):
    dim = norm_axis(a["dim"], len(shape))
    if a["step"] <= 0:
        raise ShapeError(f"slice step must be positive, got {a['step']}")
    index = [slice(None)] * len(shape)
    index[dim] = slice(a["start"], a["end"], a["step"])
    return tuple(index)


_register("slice",
          lambda t, a: TensorType(np.empty(t[0].shape, np.int8)[_slice_obj(t[0].shape, a)].shape, t[0].dtype),
          lambda xs, a: xs[0][_slice_obj(xs[0].shape, a)].copy(),
          {"dim": Attr("int", default=0), "start": Attr("int", default=None), "end": Attr("int", default=None),
           "step": Attr("int", default=1)}, "x[start:end:step] along dim (python/torch clamping)")


def _select_obj(shape, a):
    dim = norm_axis(a["dim"], len(shape))
    if not -shape[dim] <= a["index"] < shape[dim]:
        raise ShapeError(f"index {a['index']} out of range for dim {dim} of size {shape[dim]}")
    index = [slice(None)] * len(shape)
    index[dim] = a["index"]
    return tuple(index)


_register("select",
          lambda t, a: TensorType(np.empty(t[0].shape, np.int8)[_select_obj(t[0].shape, a)].shape, t[0].dtype),
          lambda xs, a: np.array(xs[0][_select_obj(xs[0].shape, a)]),
          {"dim": Attr("int", required=True), "index": Attr("int", required=True)}, "x[..., index, ...], removing dim")


# ------------------------------------------------------------------ cat
def _cat_infer(t, a):
    ref = t[0]
    dim = norm_axis(a["dim"], ref.ndim)
    for i, x in enumerate(t):
        if x.ndim != ref.ndim or any(x.shape[k] != ref.shape[k] for k in range(ref.ndim) if k != dim):
            raise ShapeError(f"cat input {i} has shape {list(x.shape)}, incompatible with {list(ref.shape)} along dim {dim}")
    shape = list(ref.shape)
    shape[dim] = sum(x.shape[dim] for x in t)
    return TensorType(tuple(shape), promote(*[x.dtype for x in t]))


class _AllSlots(tuple):
    def __contains__(self, item):
        return True


_register("cat", _cat_infer, lambda xs, a: np.concatenate(xs, axis=a["dim"]),
          {"dim": Attr("int", default=0)}, "concatenate along dim", data_slots=_AllSlots(), n_inputs=(1, None))


# ------------------------------------------------------------------ embedding / gather / index_select
def _embedding_infer(t, a):
    w, ids = t
    if w.ndim != 2:
        raise ShapeError(f"embedding table must be 2-D, got {list(w.shape)}")
    if not is_int(ids.dtype):
        raise ShapeError(f"embedding indices must be integers, got {ids.dtype}")
    return TensorType(ids.shape + (w.shape[1],), w.dtype)


def _checked_take(table, ids, axis, what):
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[axis]):
        bad = ids[(ids < 0) | (ids >= table.shape[axis])].flat[0]
        raise IndexError(f"{what} index {int(bad)} out of range for size {table.shape[axis]}")
    return np.take(table, ids, axis=axis)


def _embedding_jacobian(slot, xs, y, attrs):
    """Rows ``ids`` of the table, without building an index map of the whole table."""
    if slot != 0:
        return None
    d = xs[0].shape[1]
    return Movement(np.asarray(xs[1], dtype=np.int64)[..., None] * d + np.arange(d, dtype=np.int64))


_register("embedding", _embedding_infer, lambda xs, a: _checked_take(xs[0], xs[1], 0, "embedding"), {},
          "embedding(weight [V, D], ids) = weight[ids]", n_inputs=(2, 2), jacobian=_embedding_jacobian)


def _index_select_infer(t, a):
    x, idx = t
    dim = norm_axis(a["dim"], x.ndim)
    if idx.ndim != 1 or not is_int(idx.dtype):
        raise ShapeError(f"index_select needs a 1-D integer index, got {list(idx.shape)} {idx.dtype}")
    shape = list(x.shape)
    shape[dim] = idx.shape[0]
    return TensorType(tuple(shape), x.dtype)


_register("index_select", _index_select_infer,
          lambda xs, a: _checked_take(xs[0], xs[1], norm_axis(a["dim"], xs[0].ndim), "index_select"),
          {"dim": Attr("int", required=True)}, "index_select(x, index) along dim", n_inputs=(2, 2))


def _gather_infer(t, a):
    x, idx = t
    dim = norm_axis(a["dim"], x.ndim)
    if idx.ndim != x.ndim or not is_int(idx.dtype):
        raise ShapeError(f"gather index must be an integer tensor with {x.ndim} dims, got {list(idx.shape)} {idx.dtype}")
    if any(idx.shape[k] > x.shape[k] for k in range(x.ndim) if k != dim):
        raise ShapeError(f"gather index shape {list(idx.shape)} exceeds input {list(x.shape)} outside dim {dim}")
    return TensorType(idx.shape, x.dtype)


def _gather_forward(xs, a):
    x, idx = xs
    dim = norm_axis(a["dim"], x.ndim)
    if idx.size and (idx.min() < -x.shape[dim] or idx.max() >= x.shape[dim]):
        raise IndexError(f"gather index out of range for size {x.shape[dim]}")
    sub = x[tuple(slice(0, idx.shape[k]) if k != dim else slice(None) for k in range(x.ndim))]
    return np.take_along_axis(sub, idx % x.shape[dim], axis=dim)


_register("gather", _gather_infer, _gather_forward, {"dim": Attr("int", required=True)},
          "torch.gather(x, dim, index)", n_inputs=(2, 2))
