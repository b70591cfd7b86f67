"""Every registered op: the real-semiring backward equals a central finite difference (float64).

For each case the QoI is a random linear functional Σ c·y of the op's output, so every element
of the Jacobian is exercised; float inputs are graph inputs, integer/boolean ones constants.
"""

import numpy as np
import pytest

from graphengine.engine import backward, forward, weighted
from graphengine.ir import Graph, op_names


def pos(shape):
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def normal(shape):
    return lambda rng: rng.normal(size=shape)


def away_from_zero(shape):
    return lambda rng: rng.choice([-1, 1], size=shape) * rng.uniform(0.2, 2.0, shape)


def const(value):
    return ("const", np.asarray(value))


# (id, op, inputs, attrs); an input is a generator (float input) or const(array)
CASES = [
    ("add-broadcast", "add", [normal((3, 1, 4)), normal((2, 4))], {}),
    ("sub-broadcast", "sub", [normal((2, 3)), normal((3,))], {}),
    ("mul-broadcast", "mul", [normal((2, 1)), normal((1, 3))], {}),
    ("mul-same", "mul", [normal((2, 3)), normal((2, 3))], {}),
    ("div-broadcast", "div", [normal((2, 3)), pos((3,))], {}),
    ("neg", "neg", [normal((2, 3))], {}),
    ("exp", "exp", [normal((2, 3))], {}),
    ("log", "log", [pos((2, 3))], {}),
    ("tanh", "tanh", [normal((2, 3))], {}),
    ("sigmoid", "sigmoid", [normal((2, 3))], {}),
    ("relu", "relu", [away_from_zero((3, 4))], {}),
    ("leaky_relu", "leaky_relu", [away_from_zero((3, 4))], {"negative_slope": 0.1}),
    ("gelu-erf", "gelu", [normal((3, 4))], {}),
    ("gelu-tanh", "gelu", [normal((3, 4))], {"approximate": "tanh"}),
    ("erf", "erf", [normal((3, 4))], {}),
    ("sqrt", "sqrt", [pos((3,))], {}),
    ("rsqrt", "rsqrt", [pos((3,))], {}),
    ("pow-3", "pow", [normal((2, 3))], {"exponent": 3.0}),
    ("pow-half", "pow", [pos((2, 3))], {"exponent": 0.5}),
    ("matmul-batched-broadcast", "matmul", [normal((2, 1, 3, 4)), normal((5, 4, 2))], {}),
    ("matmul-2d", "matmul", [normal((3, 4)), normal((4, 2))], {}),
    ("mm", "mm", [normal((3, 4)), normal((4, 5))], {}),
    ("bmm", "bmm", [normal((2, 3, 4)), normal((2, 4, 5))], {}),
    ("addmm", "addmm", [normal((5,)), normal((3, 4)), normal((4, 5))], {"alpha": 0.5, "beta": 2.0}),
    ("linear-3d-bias", "linear", [normal((2, 3, 4)), normal((5, 4)), normal((5,))], {}),
    ("linear-1d-nobias", "linear", [normal((4,)), normal((5, 4))], {}),
    ("sum-axis", "sum", [normal((2, 3, 4))], {"axes": [1]}),
    ("sum-keepdim", "sum", [normal((2, 3, 4))], {"axes": [0, 2], "keepdim": True}),
    ("sum-all", "sum", [normal((2, 3))], {}),
    ("mean-axes", "mean", [normal((2, 3, 4))], {"axes": [0, 2]}),
    ("mean-keepdim", "mean", [normal((2, 3, 4))], {"axes": -1, "keepdim": True}),
    ("amax", "amax", [normal((3, 5))], {"axes": [1]}),
    ("amax-keepdim", "amax", [normal((3, 4, 2))], {"axes": [0, 2], "keepdim": True}),
    ("softmax-last", "softmax", [normal((2, 3, 4))], {"axis": -1}),
    ("softmax-middle", "softmax", [normal((2, 3, 4))], {"axis": 1}),
    ("log_softmax", "log_softmax", [normal((3, 5))], {"axis": 1}),
    ("log_softmax-first", "log_softmax", [normal((3, 5))], {"axis": 0}),
    ("layer_norm-affine", "layer_norm", [normal((2, 3, 4)), normal((4,)), normal((4,))], {"normalized_shape": [4]}),
    ("layer_norm-2d", "layer_norm", [normal((2, 3, 4)), normal((3, 4))], {"normalized_shape": [3, 4], "eps": 1e-3}),
    ("layer_norm-plain", "layer_norm", [normal((5, 6))], {"normalized_shape": [6]}),
    ("rms_norm-affine", "rms_norm", [normal((2, 3, 4)), normal((4,))], {"normalized_shape": [4]}),
    ("rms_norm-2d-plain", "rms_norm", [normal((2, 3, 4))], {"normalized_shape": [3, 4], "eps": 1e-3}),
    ("silu", "silu", [normal((3, 4))], {}),
    ("reshape", "reshape", [normal((2, 3, 4))], {"shape": [4, -1]}),
    ("view", "view", [normal((2, 6))], {"shape": [3, 2, 2]}),
    ("permute", "permute", [normal((2, 3, 4))], {"dims": [2, 0, 1]}),
    ("transpose", "transpose", [normal((2, 3, 4))], {"dim0": 0, "dim1": 2}),
    ("expand", "expand", [normal((3, 1))], {"shape": [2, 3, 4]}),
    ("expand-keep", "expand", [normal((1, 4))], {"shape": [3, -1]}),
    ("unsqueeze", "unsqueeze", [normal((2, 3))], {"dim": -1}),
    ("squeeze", "squeeze", [normal((2, 1, 3, 1))], {"dims": [1]}),
    ("squeeze-all", "squeeze", [normal((2, 1, 3, 1))], {}),
    ("slice-step", "slice", [normal((7, 3))], {"dim": 0, "start": 1, "end": 6, "step": 2}),
    ("slice-clamp", "slice", [normal((3, 5))], {"dim": 1, "start": -3, "end": 2 ** 62}),
    ("select", "select", [normal((3, 4, 2))], {"dim": 1, "index": -1}),
    ("cat", "cat", [normal((2, 3)), normal((2, 1)), normal((2, 2))], {"dim": 1}),
    ("embedding", "embedding", [normal((5, 3)), const([[0, 2, 2], [4, 0, 1]])], {}),
    ("gather", "gather", [normal((3, 4)), const([[0, 3, 3], [1, 1, 0]])], {"dim": 1}),
    ("index_select", "index_select", [normal((4, 3)), const([2, 0, 2])], {"dim": 0}),
    ("cast", "cast", [normal((2, 3))], {"dtype": "float64"}),
    ("where", "where", [const([[True, False, True], [False, False, True]]), normal((2, 3)), normal((1, 3))], {}),
    ("windows-1d-pad-dilation", "windows", [normal((1, 2, 5))],
     {"kernel": [2], "stride": [2], "padding": [1], "dilation": [2]}),
    ("windows-2d-ceil", "windows", [normal((1, 1, 3, 4))], {"kernel": [2, 2], "stride": [2, 2], "ceil_mode": True}),
    ("windows-2d-patches", "windows", [normal((1, 2, 4, 2))], {"kernel": [2, 1], "stride": [2, 1]}),
    ("windows-adaptive", "windows", [normal((1, 1, 5))], {"output_size": [2]}),
    ("windows-2d-asymmetric-pad", "windows", [normal((1, 1, 3, 4))],
     {"kernel": [2, 3], "stride": [1, 2], "padding": [1, 0, 0, 2]}),
    ("conv-1d", "conv", [normal((2, 2, 3, 2)), normal((3, 2, 2))], {}),
    ("conv-2d-groups", "conv", [normal((1, 4, 2, 1, 2, 1)), normal((2, 2, 2, 1))], {"groups": 2}),
    ("max_pool-1d-pad", "max_pool", [normal((1, 2, 5))], {"kernel": [3], "stride": [2], "padding": [1]}),
    ("max_pool-2d-ceil-dilation", "max_pool", [normal((1, 1, 4, 5))],
     {"kernel": [2, 2], "stride": [2, 1], "dilation": [1, 2], "ceil_mode": True}),
    ("max_pool-adaptive", "max_pool", [normal((1, 1, 3, 5))], {"output_size": [2, 3]}),
    ("max_pool-1d-asymmetric-ceil", "max_pool", [normal((1, 2, 6))],
     {"kernel": [3], "stride": [2], "padding": [0, 1], "ceil_mode": True}),
    ("window_mean", "window_mean", [normal((1, 2, 3, 2)), const([2.0, 3.0, 3.0])], {"spatial": 1}),
    ("batch_norm", "batch_norm", [normal((2, 3, 2)), normal((3, 1)), normal((3, 1)), const([[0.5], [-1.0], [0.0]]),
                                  const([[0.5], [2.0], [1.0]])], {"eps": 1e-3}),
]

LEAVES = {"input", "parameter", "constant"}
# integer/boolean ops without a Jacobian: forward against torch and "no gradient" in tests/test_int_ops.py
NO_GRADIENT = {"eq", "ne", "lt", "le", "gt", "ge", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not",
               "logical_and", "logical_or", "logical_xor", "logical_not", "cumsum", "argmax", "argmin"}


def _build(case, rng):
    _, op, specs, attrs = case
    g = Graph()
    refs, feeds = [], {}
    for i, spec in enumerate(specs):
        if isinstance(spec, tuple) and spec[0] == "const":
            refs.append(g.constant(spec[1], name=f"c{i}"))
        else:
            value = spec(rng)
            refs.append(g.input(f"x{i}", value.shape))
            feeds[f"x{i}"] = value
    y = g.call(op, *refs, name="y", **attrs)
    return g, y, feeds


def _functional(g, y, feeds, coef):
    return float(np.sum(coef * forward(g, feeds)[y.id]))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_backward_matches_central_difference(case):
    rng = np.random.default_rng(abs(hash(case[0])) % 2 ** 32)
    g, y, feeds = _build(case, rng)
    coef = rng.normal(size=y.shape)
    result = backward(g, forward(g, feeds), weighted("y", coef), retain=list(feeds))
    eps = 1e-6
    for name, x in feeds.items():
        grad = result.grad(name)
        assert grad.shape == x.shape
        fd = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            hi, lo = dict(feeds), dict(feeds)
            hi[name] = x.copy(); hi[name][i] += eps
            lo[name] = x.copy(); lo[name][i] -= eps
            fd[i] = (_functional(g, y, hi, coef) - _functional(g, y, lo, coef)) / (2 * eps)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8, err_msg=f"{case[0]}: d/d{name}")


def test_every_registered_op_has_a_case():
    covered = {c[1] for c in CASES} | LEAVES | NO_GRADIENT
    assert sorted(set(op_names()) - covered) == []
