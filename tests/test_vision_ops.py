"""Convolution, pooling and batch norm ops beyond their per-op cases (tests/test_ops_fd.py runs
those through finite differences, Structure.entry and the path oracle):

- the paths of ``windows`` → ``conv`` against a brute-force count and maximum over kernel taps
  written directly from the definition of a convolution;
- ``max_pool``'s selection edge: ties, NaN, torch's geometry;
- a small CNN built in the IR gives the same values and backpointers on every device;
- bad geometry is one clear error naming the node.
"""

import itertools

import numpy as np
import pytest

from graphengine.engine import backward, forward, select, weighted
from graphengine.errors import GraphEngineError
from graphengine.ir import Graph, get_op
from graphengine.ir.ops.windows import avg_pool_divisor

from kernel_cases import ALL
from test_devices import _compare


def _conv_graph(x_shape, w, stride, padding, dilation, groups):
    g = Graph()
    x = g.input("x", x_shape)
    weight = g.parameter("w", w)
    win = g.call("windows", x, kernel=list(w.shape[2:]), stride=stride, padding=padding, dilation=dilation)
    g.call("conv", win, weight, groups=groups, name="y")
    return g


def _taps(x_shape, w_shape, stride, padding, dilation, groups, out_shape):
    """Brute force from the definition: for (x element, y element), the weights of the kernel
    taps through which y reads x (``padding[a]`` is axis a's begin padding in both layouts)."""
    C, O = x_shape[1], w_shape[0]
    cg, og = C // groups, O // groups
    taps = {}
    for n, o in itertools.product(range(x_shape[0]), range(O)):
        g = o // og
        for j in itertools.product(*[range(s) for s in out_shape[2:]]):
            for c in range(cg):
                for t in itertools.product(*[range(k) for k in w_shape[2:]]):
                    i = [j[a] * stride[a] - padding[a] + t[a] * dilation[a] for a in range(len(j))]
                    if all(0 <= i[a] < x_shape[2 + a] for a in range(len(i))):
                        key = ((n, g * cg + c) + tuple(i), (n, o) + j)
                        taps.setdefault(key, []).append((o, c) + t)
    return taps


@pytest.mark.parametrize("geometry", [
    ((1, 2, 6), (2, 2, 3), [2], [2], [2], 1),
    ((2, 4, 4, 3), (4, 2, 2, 2), [1, 2], [1, 0], [2, 1], 2),
    ((1, 2, 5, 6), (2, 1, 2, 3), [2, 1], [1, 0, 0, 2], [1, 1], 2),     # asymmetric: begins, then ends
])
def test_conv_paths_against_the_definition(geometry):
    x_shape, w_shape, stride, padding, dilation, groups = geometry
    rng = np.random.default_rng(1)
    w = rng.normal(size=w_shape)
    g = _conv_graph(x_shape, w, stride, padding, dilation, groups)
    acts = forward(g, {"x": rng.normal(size=x_shape)})
    y = g["y"]
    taps = _taps(x_shape, w_shape, stride, padding, dilation, groups, y.shape)
    for out in [(0, 0) + (0,) * (len(x_shape) - 2), tuple(s - 1 for s in y.shape)]:
        result = backward(g, acts, select("y", out), semirings=["real", "count", "max"], retain=["x"])
        count = result.components(g["x"].id, "count")
        best = result.components(g["x"].id, "max")
        for xi in np.ndindex(x_shape):
            edges = [float(w[t]) for t in taps.get((xi, out), [])]
            assert result.grad("x")[xi] == pytest.approx(sum(edges), abs=1e-12)
            assert next(iter(count.values()))[xi] == len(edges), (xi, out)
            if edges:
                assert best["max"][xi] == pytest.approx(max(edges), abs=1e-12)
                assert best["min"][xi] == pytest.approx(min(edges), abs=1e-12)


def test_padding_is_not_a_path():
    g = _conv_graph((1, 1, 3), np.ones((1, 1, 3)), [1], [1], [1], 1)
    acts = forward(g, {"x": np.array([[[1.0, 2.0, 3.0]]])})
    result = backward(g, acts, select("y", (0, 0, 0)), semirings=["count"], retain=["x"])
    assert next(iter(result.components(g["x"].id, "count").values())).tolist() == [[[1.0, 1.0, 0.0]]]


def test_patches_are_a_bijection_equal_to_the_gathered_windows():
    from graphengine.ir.ops.windows import window_index
    x = np.random.default_rng(2).normal(size=(2, 3, 4, 6))
    attrs = {"kernel": [2, 3], "stride": [2, 3]}
    g = Graph()
    w = g.call("windows", g.input("x", x.shape), name="w", **attrs)
    op = get_op("windows")
    y = op.forward([x], g[w.id].attrs)
    index = window_index(x.shape, g[w.id].attrs)
    np.testing.assert_array_equal(y, x.reshape(-1)[index])
    movement = op.jacobian(0, [x], y, g[w.id].attrs)
    assert movement.transform is not None
    np.testing.assert_array_equal(movement.transform(y), x)
    np.testing.assert_array_equal(movement.index, index)
    assert op.jacobian(0, [x], y, dict(g[w.id].attrs, stride=[1, 3])).transform is None   # overlapping


def _pool(x, **attrs):
    g = Graph()
    xi = g.input("x", x.shape)
    y = g.call("max_pool", xi, name="y", **attrs)
    acts = forward(g, {"x": x})
    return acts[y.id], get_op("max_pool").jacobian(0, [x], acts[y.id], g[y.id].attrs).index


def test_max_pool_ties_take_the_lowest_index_and_nan_wins():
    y, index = _pool(np.array([[[2.0, 2.0, 1.0, np.nan, 3.0, 0.0]]]), kernel=[2])
    assert index.tolist() == [[[0, 3, 4]]]
    np.testing.assert_array_equal(y, [[[2.0, np.nan, 3.0]]])
    y, index = _pool(np.array([[[[1.0, 4.0], [4.0, 4.0]]]]), kernel=[2, 2])
    assert index.tolist() == [[[[1]]]] and y.tolist() == [[[[4.0]]]]


def test_max_pool_matches_torch_including_ceil_mode_and_dilation():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).normal(size=(2, 3, 7, 6))
    for kernel, stride, padding, dilation, ceil in [([3, 2], [2, 2], [1, 1], [1, 2], True), ([2, 3], [3, 1], [0, 1], [2, 1], False)]:
        y, index = _pool(x, kernel=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil)
        want, want_index = torch.nn.functional.max_pool2d(torch.from_numpy(x), kernel, stride, padding, dilation,
                                                          ceil_mode=ceil, return_indices=True)
        np.testing.assert_array_equal(y, want.numpy())
        plane = np.arange(2 * 3).reshape(2, 3, 1, 1) * 7 * 6        # torch's indices are per (n, c) plane
        np.testing.assert_array_equal(index, want_index.numpy() + plane)
    y, index = _pool(x, output_size=[3, 4])                       # adaptive: windows of unequal sizes
    want, want_index = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(x), [3, 4], return_indices=True)
    np.testing.assert_array_equal(y, want.numpy())
    np.testing.assert_array_equal(index, want_index.numpy() + np.arange(6).reshape(2, 3, 1, 1) * 7 * 6)


@pytest.mark.parametrize("ceil,include", [(False, True), (True, True), (True, False)])
def test_avg_pool_divisor_matches_torch(ceil, include):
    torch = pytest.importorskip("torch")
    ones = torch.ones(1, 1, 7, 5, dtype=torch.float64)
    sums = torch.nn.functional.avg_pool2d(ones, [3, 2], [2, 2], [1, 1], ceil_mode=ceil, count_include_pad=include,
                                          divisor_override=1)
    avg = torch.nn.functional.avg_pool2d(ones, [3, 2], [2, 2], [1, 1], ceil_mode=ceil, count_include_pad=include)
    div = avg_pool_divisor([7, 5], [3, 2], [2, 2], [1, 1], ceil, include)
    np.testing.assert_allclose(div, (sums / avg)[0, 0].numpy(), rtol=1e-12)


def _tiny_cnn(rng):
    g = Graph()
    x = g.input("x", (1, 2, 5, 5))
    with g.scope("conv"):
        patches = g.call("windows", x, kernel=[1, 5], stride=[1, 5])                   # a bijection
        x = g.call("add", x, g.call("reshape", g.call("tanh", patches), shape=[1, 2, 5, 5]))
        win = g.call("windows", x, kernel=[3, 3], padding=[1, 1])
        y = g.call("conv", win, g.parameter("w", rng.normal(size=(2, 1, 3, 3))), groups=2)
        y = g.call("add", y, g.parameter("b", rng.normal(size=(2, 1, 1))))
    with g.scope("bn"):
        shape = (2, 1, 1)
        y = g.call("batch_norm", y, g.parameter("gamma", rng.normal(size=shape)), g.parameter("beta", rng.normal(size=shape)),
                   g.constant(rng.normal(size=shape)), g.constant(rng.uniform(0.5, 2, size=shape)))
    y = g.call("relu", y)
    y = g.call("conv", g.call("windows", y, kernel=[1, 1]), g.parameter("w1x1", rng.normal(size=(2, 2, 1, 1))))
    y = g.call("max_pool", y, kernel=[2, 2], ceil_mode=True)                      # [1, 2, 3, 3]
    y = g.call("window_mean", g.call("windows", y, kernel=[2, 2], padding=[1, 1], stride=[2, 2]),
               g.constant(avg_pool_divisor([3, 3], [2, 2], [2, 2], [1, 1], count_include_pad=False)), spatial=2)
    y = g.call("reshape", y, shape=[1, -1])
    logits = g.call("linear", y, g.parameter("fc", rng.normal(size=(3, 8))), name="logits")
    g.mark_output(logits)
    return g


def test_tiny_cnn_same_on_every_device():
    rng = np.random.default_rng(0)
    g = _tiny_cnn(rng)
    x = rng.normal(size=(1, 2, 5, 5))
    x[0, 0, 0, :2] = 1.5                                                     # a tied max-pool window
    _compare(g, forward(g, {"x": x}), weighted("logits", np.array([[1.0, -2.0, 0.5]])), ALL)


@pytest.mark.parametrize("op,attrs,shape,match", [
    ("windows", {"kernel": [3]}, (1, 1, 2), "does not fit"),
    ("windows", {"kernel": [2, 2]}, (1, 1, 4), r"needs an input \[N, C, S, S\]"),
    ("max_pool", {"kernel": [2], "padding": [2]}, (1, 1, 6), "at most half the kernel"),
    ("windows", {"kernel": [2], "stride": [0]}, (1, 1, 4), "must be positive"),
    ("max_pool", {"output_size": [2], "padding": [1]}, (1, 1, 4), "adaptive windows .output_size. take no padding"),
])
def test_bad_geometry_is_one_line_naming_the_node(op, attrs, shape, match):
    g = Graph()
    x = g.input("x", shape)
    with pytest.raises(GraphEngineError, match=match) as err:
        g.call(op, x, name="pool", scope="features.3", **attrs)
    assert "features.3" in str(err.value) and "\n" not in str(err.value)


def test_window_mean_refuses_a_divisor_of_another_shape():
    g = Graph()
    win = g.input("win", (1, 2, 3, 2))
    with pytest.raises(GraphEngineError, match=r"'avg'.*divisor \[2, 1, 1\] does not broadcast to the output \[1, 2, 3\]"):
        g.call("window_mean", win, g.constant(np.ones((2, 1, 1))), spatial=1, name="avg")
    with pytest.raises(GraphEngineError, match=r"'avg'.*\[2\], \[1, 2, 3\] do not broadcast"):
        g.call("window_mean", win, g.constant(np.ones(2)), spatial=1, name="avg")


def test_conv_refuses_mismatched_groups():
    g = Graph()
    win = g.input("win", (1, 3, 2, 2))
    with pytest.raises(GraphEngineError, match="groups=2"):
        g.call("conv", win, g.input("w", (4, 1, 2)), groups=2, name="c")
