"""ATen converters for vision layers: convolution, eval-mode batch norm, max / average /
adaptive average pooling (the IR ops of :mod:`graphengine.ir.ops.windows` and
:mod:`graphengine.ir.ops.conv`).

``aten.convolution`` becomes ``windows`` → ``conv`` (→ ``add`` of the bias reshaped to
``[C_out, 1, …]``); batch norm becomes one ``batch_norm`` node (per-channel tensors reshaped to
``[C, 1, …]``); ``max_pool*_with_indices`` and ``adaptive_max_pool*`` become ``max_pool`` (the indices output
is not supported); ``avg_pool*`` and ``_adaptive_avg_pool*`` become ``windows`` → ``window_mean`` with
torch's divisor as a constant. An unbatched ``[C, *spatial]`` input gets a batch axis of 1 around
the op (``unsqueeze`` … ``squeeze``). Transposed convolutions are reported as unsupported; batch norm
is always in eval mode (:func:`~graphengine.frontends.torch.from_torch` exports ``model.eval()``).

>>> sorted(n for n in vision_converters() if "pool2d" in n)  # doctest: +NORMALIZE_WHITESPACE
['aten._adaptive_avg_pool2d.default', 'aten.adaptive_max_pool2d.default', 'aten.avg_pool2d.default',
 'aten.max_pool2d.default', 'aten.max_pool2d_with_indices.default']
"""

from __future__ import annotations

from typing import Callable, Dict

from ..ir import Node
from ..ir.ops.windows import adaptive_divisor, avg_pool_divisor
from ._torch_ops import UNSUPPORTED, Const, Unsup, import_torch


def _ints(v, n):
    v = [int(i) for i in (v if isinstance(v, (list, tuple)) else [v])]
    return v * n if len(v) == 1 and n > 1 else v


def _spatial(cv, x, n, what):
    """``(node [N, C, *spatial], unbatched)``: torch's pools also take an unbatched
    ``[C, *spatial]`` input, which gets a batch axis of 1 (removed again by :func:`_rebatch`)."""
    node = cv.node(x)
    if len(node.shape) == n + 1:
        return cv.emit("unsqueeze", node, dim=0), True
    if len(node.shape) != n + 2:
        raise Unsup(f"{what} on an input of shape {list(node.shape)} (needs [N, C, {n} spatial dims])")
    return node, False


def _rebatch(cv, y, unbatched):
    return cv.emit("squeeze", y, dims=[0]) if unbatched else y


def _per_channel(cv, value, ndim):
    """A per-channel tensor ``[C]`` shaped ``[C, 1, …]`` to broadcast against ``[N, C, *spatial]``."""
    shape = [-1] + [1] * (ndim - 2)
    if isinstance(value, Const):
        return Const(value.tensor.reshape(shape), value.name, value.scope)
    return cv.emit("reshape", value, shape=shape)


def _conv_convolution(cv, a):
    if a["transposed"]:
        raise Unsup("transposed convolution")
    weight = a["weight"]
    kernel = [int(s) for s in (weight.shape if isinstance(weight, Node) else weight.tensor.shape)[2:]]
    n = len(kernel)
    x, unbatched = _spatial(cv, a["input"], n, "convolution")
    win = cv.emit("windows", x, kernel=kernel, stride=_ints(a["stride"], n), padding=_ints(a["padding"], n),
                  dilation=_ints(a["dilation"], n))
    y = cv.emit("conv", win, weight, groups=int(a["groups"]))
    if a.get("bias") is not None:
        y = cv.emit("add", y, _per_channel(cv, a["bias"], len(y.shape)))
    return _rebatch(cv, y, unbatched)


def _batch_norm(cv, a):
    x = cv.node(a["input"])
    if len(x.shape) < 2 or a.get("running_mean") is None or a.get("running_var") is None:
        raise Unsup(f"batch norm of a {list(x.shape)} input without running statistics")
    stats = a["running_var"]
    like = stats.tensor if isinstance(stats, Const) else import_torch().zeros(x.shape[1])
    weight, bias = a.get("weight"), a.get("bias")
    if weight is None:                                    # affine=False
        weight = Const(like.new_ones(x.shape[1]), f"{cv.fx.name}.ones", cv.scope)
    if bias is None:
        bias = Const(like.new_zeros(x.shape[1]), f"{cv.fx.name}.zeros", cv.scope)
    parts = [_per_channel(cv, v, len(x.shape)) for v in (weight, bias, a["running_mean"], stats)]
    return cv.emit("batch_norm", x, *parts, eps=float(a["eps"]))


def _conv_bn_no_training(cv, a):
    return (_batch_norm(cv, a), UNSUPPORTED, UNSUPPORTED)


def _max_pool(n, with_indices):
    def conv(cv, a):
        x, unbatched = _spatial(cv, a["self"], n, f"max_pool{n}d")
        kernel = _ints(a["kernel_size"], n)
        stride = _ints(a["stride"], n) if a.get("stride") else kernel
        y = _rebatch(cv, cv.emit("max_pool", x, kernel=kernel, stride=stride, padding=_ints(a["padding"], n),
                                 dilation=_ints(a["dilation"], n), ceil_mode=bool(a["ceil_mode"])), unbatched)
        return (y, UNSUPPORTED) if with_indices else y
    return conv


def _adaptive_max_pool(n):
    def conv(cv, a):
        x, unbatched = _spatial(cv, a["self"], n, f"adaptive_max_pool{n}d")
        size = [int(s) if s is not None else x.shape[2 + i] for i, s in enumerate(_ints(a["output_size"], n))]
        return (_rebatch(cv, cv.emit("max_pool", x, output_size=size), unbatched), UNSUPPORTED)
    return conv


def _avg_pool(n):
    def conv(cv, a):
        torch = import_torch()
        x, unbatched = _spatial(cv, a["self"], n, f"avg_pool{n}d")
        kernel = _ints(a["kernel_size"], n)
        stride = _ints(a["stride"], n) if a.get("stride") else kernel
        padding, ceil_mode = _ints(a["padding"], n), bool(a["ceil_mode"])
        win = cv.emit("windows", x, kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
        div = avg_pool_divisor(x.shape[2:], kernel, stride, padding, ceil_mode, bool(a["count_include_pad"]),
                               a.get("divisor_override"))
        y = cv.emit("window_mean", win, Const(torch.from_numpy(div), f"{cv.fx.name}.divisor", cv.scope), spatial=n)
        return _rebatch(cv, y, unbatched)
    return conv


def _adaptive_avg_pool(n):
    def conv(cv, a):
        torch = import_torch()
        x, unbatched = _spatial(cv, a["self"], n, f"adaptive_avg_pool{n}d")
        size = [int(s) if s is not None else x.shape[2 + i] for i, s in enumerate(_ints(a["output_size"], n))]
        win = cv.emit("windows", x, output_size=size)
        div = adaptive_divisor(x.shape[2:], size)
        y = cv.emit("window_mean", win, Const(torch.from_numpy(div), f"{cv.fx.name}.divisor", cv.scope), spatial=n)
        return _rebatch(cv, y, unbatched)
    return conv


#: The torch networks tests/test_export_vision.py checks against torch (forward, gradients,
#: float32 and float64), beside the Hugging Face ViT.
CHECKED_NETWORKS = (
    "CNN: Conv2d (stride, padding, dilation, groups), BatchNorm2d (eval), ReLU, MaxPool2d (ceil mode), "
    "AvgPool2d (count_include_pad both ways), AdaptiveAvgPool2d, Flatten, Linear",
    "Conv1d network: Conv1d (stride, padding, dilation, groups), BatchNorm1d, MaxPool1d, AvgPool1d, "
    "AdaptiveMaxPool1d, AdaptiveAvgPool1d",
    "Conv3d with 3-d max / average / adaptive pools; reflect padding; unbatched images",
)


def vision_converters() -> Dict[str, Callable]:
    """ATen op name → converter, merged into :func:`graphengine.frontends._torch_ops.converters`."""
    table: Dict[str, Callable] = {"aten.convolution.default": _conv_convolution,
                                  "aten._native_batch_norm_legit_no_training.default": _conv_bn_no_training}
    for n in (1, 2, 3):
        table[f"aten.max_pool{n}d_with_indices.default"] = _max_pool(n, True)
        table[f"aten.avg_pool{n}d.default"] = _avg_pool(n)
    table["aten.max_pool1d.default"] = _max_pool(1, False)
    table["aten.max_pool2d.default"] = _max_pool(2, False)
    table["aten.max_pool3d.default"] = _max_pool(3, False)
    for n in (1, 2, 3):
        table[f"aten.adaptive_max_pool{n}d.default"] = _adaptive_max_pool(n)
    table["aten.adaptive_avg_pool1d.default"] = _adaptive_avg_pool(1)
    table["aten._adaptive_avg_pool2d.default"] = _adaptive_avg_pool(2)
    table["aten._adaptive_avg_pool3d.default"] = _adaptive_avg_pool(3)
    return table
