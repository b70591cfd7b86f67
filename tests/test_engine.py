"""The backward walker: accumulation over consumers, QoI seeding, retention, batches."""

import numpy as np
import pytest

from graphengine.engine import backward, batch, difference, forward, parse, select
from graphengine.errors import QoIError
from graphengine.ir import Graph


def _chain():
    g = Graph()
    x = g.input("x", (2, 3))
    h = g.call("tanh", x, name="h")
    a = g.call("mul", h, h, name="a")           # h has three consumer slots (mul twice, add)
    y = g.call("add", a, h, name="y")
    g.mark_output(y)
    return g


def test_accumulates_over_every_consumer():
    g = _chain()
    x = np.random.default_rng(1).normal(size=(2, 3))
    r = backward(g, forward(g, {"x": x}), select("y", (1, 2)), retain=["h", "x"])
    h = np.tanh(x)
    expect_h = np.zeros_like(x); expect_h[1, 2] = 2 * h[1, 2] + 1
    np.testing.assert_allclose(r.grad("h"), expect_h)
    np.testing.assert_allclose(r.grad("x"), expect_h * (1 - h ** 2))


def test_adjoints_are_freed_unless_retained():
    g = _chain()
    acts = forward(g, {"x": np.ones((2, 3))})
    r = backward(g, acts, "y[0,0]")
    assert r.retained("real") == [g["x"].id]
    with pytest.raises(KeyError, match="not retained"):
        r.grad("h")
    assert set(backward(g, acts, "y[0,0]", retain="all").retained("real")) == {n.id for n in g}


def test_difference_and_batch_qoi():
    g = Graph()
    x = g.input("x", (2, 4))
    w = g.parameter("w", np.random.default_rng(2).normal(size=(3, 4)))
    logits = g.call("linear", x, w, name="logits")
    acts = forward(g, {"x": np.random.default_rng(3).normal(size=(2, 4))})
    W = g.arrays[w.id]
    r = backward(g, acts, difference("logits", (1, 2), (1, 0)), retain=["x"])
    np.testing.assert_allclose(r.grad("x")[1], W[2] - W[0])
    assert not r.grad("x")[0].any()
    assert parse("logits[1,2] - logits[1,0]") == difference("logits", (1, 2), (1, 0))
    rb = backward(g, acts, batch([select("logits", (0, 1)), select("logits", (1, 2))]), retain=["x"])
    np.testing.assert_allclose(rb.grad("x"), np.stack([W[1], W[2]]))


def test_float32_graph_runs_in_float64_semiring():
    g = Graph()
    x = g.input("x", (3,), dtype="float32")
    y = g.call("exp", x, name="y")
    r = backward(g, forward(g, {"x": np.zeros(3, np.float32)}), "y[2]")
    assert r.grad("x").dtype == np.float64
    np.testing.assert_array_equal(r.grad("x"), [0, 0, 1])


def test_bad_qoi_is_reported():
    g = _chain()
    acts = forward(g, {"x": np.ones((2, 3))})
    with pytest.raises(QoIError, match="out of range"):
        backward(g, acts, "y[2,0]")
    with pytest.raises(QoIError, match="no node named"):
        backward(g, acts, "nope[0,0]")
    with pytest.raises(QoIError, match="cannot parse"):
        backward(g, acts, "y[0,")


def test_integer_inputs_get_no_adjoint():
    g = Graph()
    table = g.parameter("table", np.arange(12.0).reshape(4, 3))
    ids = g.input("ids", (2,), dtype="int64")
    e = g.call("embedding", table, ids, name="e")
    r = backward(g, forward(g, {"ids": np.array([3, 3])}), "e[1,2]", retain=["ids", "table"])
    expect = np.zeros((4, 3)); expect[3, 2] = 1
    np.testing.assert_array_equal(r.grad("table"), expect)
    with pytest.raises(KeyError):
        r.grad("ids")


def test_backward_prunes_to_the_retained_cone_by_default():
    from graphengine.paths import top_path
    g = Graph()
    x = g.input("x", (3,))
    w = g.parameter("w", np.array([0.5, -2.0, 3.0]))
    h = g.call("mul", x, w, name="h")
    g.call("tanh", h, name="y")
    acts = forward(g, {"x": np.array([1.0, 2.0, -1.0])})
    pruned = backward(g, acts, "y[1]", semirings=["real", "max"], retain=["x"])
    full = backward(g, acts, "y[1]", semirings=["real", "max"], retain=["x"], prune=False)
    np.testing.assert_array_equal(pruned.grad("x"), full.grad("x"))
    assert top_path(pruned, "x", (1,), "max").weight == top_path(full, "x", (1,), "max").weight
    assert w.id not in pruned.by_semiring["max"].backpointers and w.id in full.by_semiring["max"].backpointers
    assert pruned.pruned_away("w") and not pruned.pruned_away("h") and not full.pruned_away("w")
    with pytest.raises(ValueError, match="outside the cone of the retained nodes"):
        top_path(pruned, "w", (1,), "max")
    assert top_path(full, "w", (1,), "max").steps[0].name == "w"
