"""Sliding windows over the spatial axes of ``[N, C, *spatial]`` tensors: the building block of
convolution and pooling.

``windows`` (movement) gathers every window into its own trailing axes,
``[N, C, *out, *kernel]``; a padded position reads 0 and has *no* edge to the input (padding is
not a path). ``max_pool`` (movement) is a selection edge: each output element copies the input
element that is the maximum of its window. ``window_mean`` (reduction) averages the gathered
windows with a per-position divisor, which gives ``avg_pool`` (torch's ``count_include_pad``,
``ceil_mode`` and ``divisor_override``; :func:`avg_pool_divisor`) and adaptive average pooling
(``windows`` with ``output_size``; :func:`adaptive_divisor`). The contraction that completes a
convolution is :mod:`graphengine.ir.ops.conv`.

Geometry is torch's, per spatial axis of size ``S`` with kernel ``k``, stride ``s``, padding
``p``, dilation ``d``: ``out = ⌊(S + 2p − d(k−1) − 1)/s⌋ + 1`` (``⌈⌉`` with ``ceil_mode``, where a
last window starting in the right padding is dropped); window ``o`` reads positions
``o·s − p + t·d``; the stride defaults to 1 for ``windows`` and to the kernel for ``max_pool``
(torch's pooling default). ``padding`` has one entry per axis (the same on both sides) or, for
asymmetric padding (ONNX's ``pads``, ``auto_pad=SAME_*``), two per axis in ONNX's order
``[b₁, …, bₙ, e₁, …, eₙ]``: then ``out = ⌊(S + b + e − d(k−1) − 1)/s⌋ + 1``, window ``o`` starts
at ``o·s − b``, and ``ceil_mode`` drops a last window starting at or after ``S + b``. With ``output_size`` (adaptive) window ``o`` covers ``[⌊oS/O⌋, ⌈(o+1)S/O⌉)`` and
the kernel axis is as long as the longest window; the shorter windows' tails are padding.
Windows that tile the input exactly (a ViT patch embedding) are a bijection, moved without a
scatter.

Ties in ``max_pool``: the lowest input index wins (the first in window order, as torch), so
the path through a tied window is the one torch sends the gradient along. A NaN in a window
is its maximum (NaN in, NaN out).

>>> import numpy as np
>>> from graphengine.ir import Graph, get_op
>>> from graphengine.engine import forward
>>> g = Graph(); x = g.input("x", (1, 1, 4))
>>> w = g.call("windows", x, kernel=[3], padding=[1], name="w")
>>> m = g.call("max_pool", x, kernel=[2], name="m")
>>> acts = forward(g, {"x": np.array([[[1.0, 5.0, 5.0, 2.0]]])})
>>> acts[w.id][0, 0].tolist()
[[0.0, 1.0, 5.0], [1.0, 5.0, 5.0], [5.0, 5.0, 2.0], [5.0, 2.0, 0.0]]
>>> acts[m.id].tolist()
[[[5.0, 5.0]]]
>>> get_op("max_pool").jacobian(0, [acts[x.id]], acts[m.id], g[m.id].attrs).index.tolist()  # ties: lowest index
[[[1, 2]]]
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

from ..jacobian import Movement, Reduction
from ..registry import Attr, OpDef, ShapeError, TensorType, register_op
from ._common import broadcast_shapes, require_float

__all__ = ["avg_pool_divisor", "adaptive_divisor", "window_counts", "window_positions"]


def _per_axis(value, n: int, what: str, default: int) -> List[int]:
    if value is None:
        return [default] * n
    value = [int(v) for v in value]
    if len(value) == 1 and n > 1:
        value = value * n
    if len(value) != n:
        raise ShapeError(f"{what} {value} must have one entry per spatial axis ({n})")
    return value


def _padding(value, n: int):
    """``(begin, end)`` per axis from ``padding``: one entry per axis (symmetric) or ``2n``
    entries ``[b₁, …, bₙ, e₁, …, eₙ]`` (ONNX's order)."""
    if value is not None and len(value) == 2 * n:
        value = [int(v) for v in value]
        return value[:n], value[n:]
    begin = _per_axis(value, n, "padding", 0)
    return begin, list(begin)


def _geometry(attrs, spatial: Sequence[int]):
    """Per axis ``(kernel, stride, padding, dilation)``, checked; ``None`` in adaptive mode.
    ``padding`` is the ``(begin, end)`` pair of lists of :func:`_padding`."""
    n = len(spatial)
    if attrs.get("output_size") is not None:
        given = [k for k in ("kernel", "stride", "padding", "dilation") if attrs.get(k) is not None]
        if given or attrs.get("ceil_mode"):
            raise ShapeError(f"adaptive windows (output_size) take no {', '.join(given) or 'ceil_mode'}")
        return None
    kernel = _per_axis(attrs["kernel"], n, "kernel", 1)
    stride = _per_axis(attrs.get("stride"), n, "stride", 1)
    padding = _padding(attrs.get("padding"), n)
    dilation = _per_axis(attrs.get("dilation"), n, "dilation", 1)
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1 or min(padding[0] + padding[1]) < 0:
        raise ShapeError(f"kernel {kernel}, stride {stride} and dilation {dilation} must be positive, "
                         f"padding {attrs.get('padding')} non-negative")
    return kernel, stride, padding, dilation


def _out_size(size, k, s, p, d, ceil_mode, p_end=None) -> int:
    p_end = p if p_end is None else p_end
    span = size + p + p_end - d * (k - 1) - 1
    if span < 0:
        padded = f"padding {p}" if p == p_end else f"padding {p}, {p_end}"
        raise ShapeError(f"window of size {d * (k - 1) + 1} does not fit an axis of size {size} with {padded}")
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1                                  # torch: the last window must start inside the input or left padding
    return out


def window_positions(spatial: Sequence[int], attrs) -> List[np.ndarray]:
    """Per spatial axis, ``pos[o, t]``: the input position read by tap ``t`` of window ``o``, -1
    for padding.

    >>> window_positions([5], {"kernel": [2], "stride": [2], "padding": [1]})[0].tolist()
    [[-1, 0], [1, 2], [3, 4]]
    >>> window_positions([5], {"output_size": [2]})[0].tolist()        # windows [0, 3) and [2, 5)
    [[0, 1, 2], [2, 3, 4]]
    """
    spatial = [int(s) for s in spatial]
    out = []
    if _geometry(attrs, spatial) is None:
        sizes = _per_axis(attrs["output_size"], len(spatial), "output_size", 1)
        for size, o_size in zip(spatial, sizes):
            if o_size < 1 or size < 1:
                raise ShapeError(f"adaptive output size {o_size} for an axis of size {size}")
            o = np.arange(o_size)
            start, end = (o * size) // o_size, -((-(o + 1) * size) // o_size)
            t = np.arange(int((end - start).max()))
            pos = start[:, None] + t[None, :]
            out.append(np.where(t[None, :] < (end - start)[:, None], pos, -1))
        return out
    kernel, stride, (begin, end), dilation = _geometry(attrs, spatial)
    for size, k, s, p, e, d in zip(spatial, kernel, stride, begin, end, dilation):
        o = np.arange(_out_size(size, k, s, p, d, bool(attrs.get("ceil_mode")), e))
        pos = o[:, None] * s - p + np.arange(k)[None, :] * d
        out.append(np.where((pos >= 0) & (pos < size), pos, -1))
    return out


def _n_spatial(attrs) -> int:
    spec = attrs.get("output_size") if attrs.get("output_size") is not None else attrs.get("kernel")
    if spec is None:
        raise ShapeError("give kernel (or output_size for adaptive windows)")
    if len(spec) < 1:
        raise ShapeError("windows need at least one spatial axis")
    return len(spec)


def _check_input(t: TensorType, attrs, op: str) -> int:
    n = _n_spatial(attrs)
    if t.ndim != n + 2:
        raise ShapeError(f"'{op}' with {n} spatial axes needs an input [N, C, {', '.join('S' * n)}], "
                         f"got {list(t.shape)}")
    return n


def window_index(shape: Sequence[int], attrs) -> np.ndarray:
    """``[N, C, *out, *kernel]``: the flat index into an input of ``shape`` read by each window
    tap, -1 for padding."""
    shape = [int(s) for s in shape]
    n = len(shape) - 2
    pos = window_positions(shape[2:], attrs)
    out_shape = [p.shape[0] for p in pos]
    k_shape = [p.shape[1] for p in pos]
    lead = np.arange(shape[0] * shape[1], dtype=np.int64).reshape(shape[0], shape[1], *([1] * 2 * n))
    flat, valid = lead, np.ones((1,) * (2 + 2 * n), dtype=bool)
    for i, p in enumerate(pos):
        view = [1] * (2 + 2 * n)
        view[2 + i], view[2 + n + i] = out_shape[i], k_shape[i]
        p = p.reshape(view)
        flat = flat * shape[2 + i] + np.maximum(p, 0)
        valid = valid & (p >= 0)
    return np.where(valid, flat, -1).astype(np.int64)


def _gather(x: np.ndarray, index: np.ndarray, fill) -> np.ndarray:
    taken = x.reshape(-1)[np.maximum(index, 0)]
    return np.where(index >= 0, taken, np.asarray(fill, dtype=x.dtype))


# ------------------------------------------------------------------ windows
_GEOMETRY = {"kernel": Attr("ints"), "stride": Attr("ints"), "padding": Attr("ints"), "dilation": Attr("ints"),
             "ceil_mode": Attr("bool", default=False)}


def _windows_infer(types, attrs):
    _check_input(types[0], attrs, "windows")
    pos = window_positions(types[0].shape[2:], attrs)
    return TensorType(tuple(types[0].shape[:2]) + tuple(p.shape[0] for p in pos) + tuple(p.shape[1] for p in pos),
                      types[0].dtype)


def _tiles(shape, attrs):
    """For windows that tile the input exactly (kernel = stride, no padding or dilation, every
    axis a multiple of the kernel: a ViT patch embedding), the kernel; else ``None``."""
    if attrs.get("output_size") is not None:
        return None
    kernel, stride, (begin, end), dilation = _geometry(attrs, shape[2:])
    if stride != kernel or any(begin) or any(end) or any(d != 1 for d in dilation) or any(
            s % k for s, k in zip(shape[2:], kernel)):
        return None
    return kernel


def _untile(x_shape, kernel):
    """The bijection ``[N, C, *out, *kernel]`` → ``[N, C, *spatial]`` of exactly tiling windows."""
    n = len(kernel)
    order = [0, 1] + [a for i in range(n) for a in (2 + i, 2 + n + i)]
    return lambda a: np.transpose(a, order).reshape(x_shape)


def _windows_forward(xs, attrs):
    x = xs[0]
    kernel = _tiles(x.shape, attrs)
    if kernel is None:
        return _gather(x, window_index(x.shape, attrs), 0)
    n = len(kernel)
    split = list(x.shape[:2]) + [v for s, k in zip(x.shape[2:], kernel) for v in (s // k, k)]
    order = [0, 1] + [2 + 2 * i for i in range(n)] + [3 + 2 * i for i in range(n)]
    return np.transpose(x.reshape(split), order).copy()


def _windows_jacobian(slot, xs, y, attrs):
    shape = xs[0].shape
    kernel = _tiles(shape, attrs)
    if kernel is None:
        return Movement(window_index(shape, attrs))
    return Movement(transform=_untile(shape, kernel), index_fn=lambda: window_index(shape, attrs))


register_op(OpDef(
    "windows", "movement", 1, 1, _windows_infer, _windows_forward, _windows_jacobian,
    attrs=dict(_GEOMETRY, output_size=Attr("ints")),
    doc="sliding windows [N, C, *S] -> [N, C, *out, *kernel] (stride default 1; padding reads 0, no edge); "
        "output_size: adaptive windows"))


# ------------------------------------------------------------------ max_pool
def _pool_attrs(attrs):
    """torch's default: stride = kernel."""
    if attrs.get("output_size") is not None:
        return attrs
    return dict(attrs, stride=attrs["stride"] if attrs.get("stride") else attrs["kernel"])


def _max_pool_index(x_shape, attrs) -> np.ndarray:
    return window_index(x_shape, _pool_attrs(attrs))


def _max_pool_argmax(x: np.ndarray, attrs) -> np.ndarray:
    """``[N, C, *out]``: the flat input index of each window's maximum (lowest index on ties,
    the first NaN if any; -1 for a window entirely in padding)."""
    index = _max_pool_index(x.shape, attrs)
    n = x.ndim - 2
    taps = index.reshape(index.shape[: 2 + n] + (-1,))
    values = _gather(x, taps, -np.inf)
    best = np.argmax(values, axis=-1)[..., None]        # first maximum; argmax treats NaN as the maximum
    return np.take_along_axis(taps, best, axis=-1)[..., 0]


def _max_pool_infer(types, attrs):
    require_float(types, "max_pool")
    n = _check_input(types[0], attrs, "max_pool")
    if attrs.get("padding") is not None and attrs.get("output_size") is None:
        kernel = _per_axis(attrs["kernel"], n, "kernel", 1)
        begin, end = _padding(attrs["padding"], n)
        if any(2 * max(b, e) > k for b, e, k in zip(begin, end, kernel)):
            raise ShapeError(f"max_pool padding {attrs['padding']} must be at most half the kernel {kernel}")
    pos = window_positions(types[0].shape[2:], _pool_attrs(attrs))
    return TensorType(tuple(types[0].shape[:2]) + tuple(p.shape[0] for p in pos), types[0].dtype)


register_op(OpDef(
    "max_pool", "movement", 1, 1, _max_pool_infer,
    lambda xs, a: _gather(xs[0], _max_pool_argmax(xs[0], a), -np.inf),
    lambda slot, xs, y, a: Movement(_max_pool_argmax(xs[0], a)),
    attrs=dict(_GEOMETRY, output_size=Attr("ints")),
    doc="max over sliding windows (stride default = kernel; output_size: adaptive); one weight-one edge "
        "from the window's maximum (ties: lowest input index)"))


# ------------------------------------------------------------------ window_mean
def window_counts(spatial: Sequence[int], attrs, count_padding: bool) -> np.ndarray:
    """The number of taps of each window that read the input (``count_padding=False``) or the
    input and its declared padding (``True``; taps past the padding, which ``ceil_mode`` can
    add, never count), shaped ``[*out]``: the divisor of an average pool.

    >>> window_counts([4], {"kernel": [3], "stride": [2], "padding": [1, 0]}, False).tolist()
    [2.0, 3.0]
    >>> window_counts([4], {"kernel": [3], "stride": [2], "padding": [1, 0]}, True).tolist()
    [3.0, 3.0]
    """
    pos = window_positions(spatial, attrs)
    if not count_padding:
        return _outer_product([(p >= 0).sum(axis=1) for p in pos])
    kernel, stride, (begin, end), dilation = _geometry(attrs, [int(s) for s in spatial])
    counts = []
    for size, k, s, b, e, d, p in zip(spatial, kernel, stride, begin, end, dilation, pos):
        taps = np.arange(p.shape[0])[:, None] * s - b + np.arange(k)[None, :] * d
        counts.append((taps < size + e).sum(axis=1))
    return _outer_product(counts)


def avg_pool_divisor(spatial: Sequence[int], kernel, stride=None, padding=None, ceil_mode=False,
                     count_include_pad=True, divisor_override=None) -> np.ndarray:
    """torch's ``avg_pool`` divisor for every output position, shaped ``[*out]``.

    >>> avg_pool_divisor([4], [3], [2], [1], count_include_pad=False).tolist()
    [2.0, 3.0]
    >>> avg_pool_divisor([4], [3], [2], [1], ceil_mode=True).tolist()   # last window overhangs the padding
    [3.0, 3.0, 2.0]
    """
    attrs = {"kernel": list(kernel), "stride": list(stride) if stride else list(kernel),
             "padding": list(padding) if padding else None, "ceil_mode": ceil_mode}
    div = window_counts(spatial, attrs, count_include_pad)
    if divisor_override:
        div = np.full(div.shape, float(divisor_override))
    return div


def adaptive_divisor(spatial: Sequence[int], output_size: Sequence[int]) -> np.ndarray:
    """The number of input positions in each adaptive window, shaped ``[*output_size]``.

    >>> adaptive_divisor([5], [2]).tolist()
    [3.0, 3.0]
    """
    return _outer_product([(p >= 0).sum(axis=1) for p in window_positions(spatial, {"output_size": list(output_size)})])


def _outer_product(counts) -> np.ndarray:
    """``out[i, j, …] = counts[0][i] · counts[1][j] · …`` in float64."""
    out = np.ones([len(c) for c in counts])
    for i, c in enumerate(counts):
        out = out * np.asarray(c, dtype=np.float64).reshape([-1 if j == i else 1 for j in range(len(counts))])
    return out


def _window_mean_infer(types, attrs):
    require_float(types, "window_mean")
    n, x, div = attrs["spatial"], types[0], types[1]
    if n < 1 or x.ndim < 2 * n:
        raise ShapeError(f"'window_mean' over {n} kernel axes needs an input with at least {2 * n} dims, "
                         f"got {list(x.shape)}")
    out = x.shape[: x.ndim - n]
    if broadcast_shapes(div.shape, out) != out:
        raise ShapeError(f"divisor {list(div.shape)} does not broadcast to the output {list(out)}")
    return TensorType(out, x.dtype)


def _window_mean_forward(xs, attrs):
    n = attrs["spatial"]
    x = xs[0]
    return (x.sum(axis=tuple(range(x.ndim - n, x.ndim))) / xs[1]).astype(x.dtype)


def _window_mean_jacobian(slot, xs, y, attrs):
    if slot != 0:
        return None  # the divisor is a constant of the pooling geometry
    n, x = attrs["spatial"], xs[0]
    weight = (1.0 / np.asarray(xs[1], dtype=np.float64)).reshape(np.shape(xs[1]) + (1,) * n)
    return Reduction(tuple(range(x.ndim - n, x.ndim)), False, weight)


register_op(OpDef(
    "window_mean", "reduction", 2, 2, _window_mean_infer, _window_mean_forward, _window_mean_jacobian,
    attrs={"spatial": Attr("int", required=True)},
    doc="sum over the last `spatial` axes (the kernel axes of windows) / divisor (constant, no gradient): "
        "average pooling"))
