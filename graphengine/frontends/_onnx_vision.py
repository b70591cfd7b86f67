"""ONNX convolution, pooling and batch normalization → the IR's vision ops
(:mod:`graphengine.ir.ops.windows`, :mod:`graphengine.ir.ops.conv`), merged into
:data:`graphengine.frontends._onnx_ops.LOWER`.

The nodes are the ones the torch frontend emits for the same layers, so a CNN exported to ONNX
and re-imported has the graph :func:`~graphengine.frontends.torch.from_torch` gives:

- ``Conv`` (1-, 2-, 3-d; ``strides``, ``pads`` incl. asymmetric, ``auto_pad``, ``dilations``,
  ``group``, optional bias) → ``windows`` → ``conv`` (→ ``add`` of the bias shaped ``[M, 1, …]``).
- ``MaxPool`` (``kernel_shape``, ``strides``, ``pads``, ``auto_pad``, ``dilations``,
  ``ceil_mode``) → ``max_pool`` (a selection edge from each window's maximum); the ``Indices``
  output is refused.
- ``AveragePool`` (the same attributes and ``count_include_pad`` both ways) → ``windows`` →
  ``window_mean`` with the divisor :func:`~graphengine.ir.ops.windows.window_counts` as a
  constant.
- ``GlobalAveragePool`` / ``GlobalMaxPool`` → adaptive ``windows`` → ``window_mean`` /
  adaptive ``max_pool`` to size 1 (what torch's ``AdaptiveAvgPool2d(1)`` gives).
- ``BatchNormalization`` in inference mode → ``batch_norm`` (per-channel tensors reshaped to
  ``[C, 1, …]``); ``training_mode=1`` and the running-statistics outputs are refused.

Geometry follows the ONNX spec: strides default to 1 (also for pools), ``pads`` are
``[b₁, …, bₙ, e₁, …, eₙ]`` (asymmetric pads become the IR's two-per-axis ``padding``),
``auto_pad=SAME_UPPER|SAME_LOWER`` pads ``(out − 1)·s + d(k − 1) + 1 − S`` in total with the odd
element at the end (UPPER) or the start (LOWER), ``VALID`` pads nothing; with ``ceil_mode`` a
last window that would start at or after ``S + b`` is dropped (as torch and the reference
evaluator do), and its taps past the padding read nothing. ``ceil_mode`` together with
``auto_pad`` is refused (the spec leaves it undefined). Any other unsupported attribute value
is one line naming the op and the node.
"""

from __future__ import annotations

from typing import Callable, Dict, List

from ..ir.ops.windows import adaptive_divisor, window_counts
from ._onnx_load import Const, shape


def _ints(ctx, a, key, n, default):
    value = a.get(key)
    if value is None:
        return [default] * n
    value = [int(v) for v in value]
    if len(value) != n:
        ctx.fail(f"{key} {value} must have {n} entries (one per spatial axis)")
    return value


def _image(ctx, x, n, what):
    s = shape(x)
    if len(s) != n + 2:
        ctx.fail(f"{what} with {n} spatial axes needs an input [N, C, {', '.join('S' * n)}], got {list(s)}")
    return s


def _geometry(ctx, spatial: List[int], kernel: List[int], a, pool: bool) -> dict:
    """The IR ``windows`` attributes of an ONNX Conv / pool node."""
    n = len(kernel)
    stride = _ints(ctx, a, "strides", n, 1)
    dilation = _ints(ctx, a, "dilations", n, 1)
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
        ctx.fail(f"kernel_shape {kernel}, strides {stride} and dilations {dilation} must be positive")
    auto_pad = a.get("auto_pad", "NOTSET") or "NOTSET"
    ceil_mode = bool(a.get("ceil_mode", 0)) if pool else False
    if auto_pad == "NOTSET":
        pads = _ints(ctx, a, "pads", 2 * n, 0)
        if min(pads) < 0:
            ctx.fail(f"negative pads {pads}")
        begin, end = pads[:n], pads[n:]
    elif auto_pad == "VALID":
        begin, end = [0] * n, [0] * n
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(spatial, kernel, stride, dilation):
            total = max(0, (-(-size // s) - 1) * s + d * (k - 1) + 1 - size)
            small = total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
    else:
        ctx.fail(f"auto_pad {auto_pad!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    if ceil_mode and auto_pad != "NOTSET":
        ctx.fail(f"ceil_mode=1 with auto_pad={auto_pad} is unsupported (the spec leaves it undefined)")
    padding = begin if begin == end else begin + end
    return {"kernel": list(kernel), "stride": stride, "padding": padding, "dilation": dilation,
            "ceil_mode": ceil_mode}


def _per_channel(ctx, v, rank: int):
    """A per-channel ``[C]`` value shaped ``[C, 1, …]`` against an ``[N, C, *spatial]`` input."""
    target = [-1] + [1] * (rank - 2)
    if len(shape(v)) == len(target):
        return v
    if isinstance(v, Const):
        return Const(v.value.reshape(target))
    return ctx.call("reshape", v, shape=target)


def _lower_conv(ctx, vs, a):
    x, w = vs[0], vs[1]
    bias = vs[2] if len(vs) > 2 else None
    w_shape = shape(w)
    kernel = [int(k) for k in a.get("kernel_shape", w_shape[2:])]
    if list(w_shape[2:]) != kernel:
        ctx.fail(f"kernel_shape {kernel} differs from the weight's shape {list(w_shape)}")
    n = len(kernel)
    if n < 1:
        ctx.fail(f"weight of shape {list(w_shape)} has no spatial axes")
    spatial = _image(ctx, x, n, "Conv")[2:]
    win = ctx.call("windows", x, **_geometry(ctx, list(spatial), kernel, a, pool=False))
    y = ctx.call("conv", win, w, groups=int(a.get("group", 1)))
    if bias is not None:
        y = ctx.call("add", y, _per_channel(ctx, bias, n + 2))
    return [y]


def _pool_kernel(ctx, x, a, what):
    if "kernel_shape" not in a:
        ctx.fail("no kernel_shape")
    kernel = [int(k) for k in a["kernel_shape"]]
    return kernel, list(_image(ctx, x, len(kernel), what)[2:])


def _lower_max_pool(ctx, vs, a):
    if len(ctx.outputs) > 1 and any(ctx.outputs[1:]):
        ctx.fail("the Indices output is unsupported")
    kernel, spatial = _pool_kernel(ctx, vs[0], a, "MaxPool")
    return [ctx.call("max_pool", vs[0], **_geometry(ctx, spatial, kernel, a, pool=True))]


def _lower_average_pool(ctx, vs, a):
    kernel, spatial = _pool_kernel(ctx, vs[0], a, "AveragePool")
    geom = _geometry(ctx, spatial, kernel, a, pool=True)
    div = window_counts(spatial, geom, bool(a.get("count_include_pad", 0)))
    win = ctx.call("windows", vs[0], **geom)
    return [ctx.call("window_mean", win, Const(div), spatial=len(kernel))]


def _global_pool(kind):
    def lower(ctx, vs, a):
        s = shape(vs[0])
        if len(s) < 3:
            ctx.fail(f"needs an input [N, C, *spatial], got {list(s)}")
        ones = [1] * (len(s) - 2)
        if kind == "max":
            return [ctx.call("max_pool", vs[0], output_size=ones)]
        win = ctx.call("windows", vs[0], output_size=ones)
        return [ctx.call("window_mean", win, Const(adaptive_divisor(s[2:], ones)), spatial=len(ones))]
    return lower


def _lower_batch_norm(ctx, vs, a):
    if len(vs) != 5:
        ctx.fail(f"needs the inputs X, scale, B, mean and var, got {len(vs)}")
    if int(a.get("training_mode", 0)):
        ctx.fail("training_mode=1 is unsupported (batch statistics); export the model in eval mode")
    if len(ctx.outputs) > 1 and any(ctx.outputs[1:]):
        ctx.fail("the running mean / variance outputs are unsupported (inference mode only)")
    if not int(a.get("spatial", 1)):
        ctx.fail("spatial=0 (per-element statistics) is unsupported")
    x = vs[0]
    rank = len(shape(x))
    if rank < 2:
        ctx.fail(f"needs an input [N, C, …], got {list(shape(x))}")
    channels = shape(x)[1]
    for what, v in zip(("scale", "B", "mean", "var"), vs[1:]):
        if shape(v) != (channels,):
            ctx.fail(f"{what} of shape {list(shape(v))} must be [{channels}] (one value per channel)")
    parts = [_per_channel(ctx, v, rank) for v in vs[1:]]
    return [ctx.call("batch_norm", x, *parts, eps=float(a.get("epsilon", 1e-5)))]


def vision_lowerings() -> Dict[str, Callable]:
    """ONNX op type → lowering, merged into :data:`graphengine.frontends._onnx_ops.LOWER`."""
    return {"Conv": _lower_conv, "MaxPool": _lower_max_pool, "AveragePool": _lower_average_pool,
            "GlobalAveragePool": _global_pool("mean"), "GlobalMaxPool": _global_pool("max"),
            "BatchNormalization": _lower_batch_norm}

