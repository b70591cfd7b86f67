"""The worked examples of README §Granularities and docs/granularity.md: where `scalar` and `paper` differ."""

import numpy as np

from graphengine.engine import backward, forward, select
from graphengine.ir import Graph
from graphengine.paths import top_path


def _two_layer():
    g = Graph()
    x = g.input("x", (1, 2))
    W = g.parameter("W", np.array([[1.0, 1.0], [2.0, -3.0]]))
    h = g.call("linear", x, W, name="h")           # h0 = x0 + x1, h1 = 2 x0 - 3 x1
    V = g.parameter("V", np.array([[1.0, 1.0]]))
    q = g.call("linear", h, V, name="q")           # q = h0 + h1
    return g


def test_max_inside_a_matmul_is_a_sum_at_paper_granularity():
    g = _two_layer()
    acts = forward(g, {"x": np.ones((1, 2))})
    scalar = backward(g, acts, select("q", (0, 0)), semirings=["max", "real"])
    paper = backward(g, acts, select("q", (0, 0)), semirings=["max", "real"], granularity="paper")
    # exact: x0's paths weigh 1·1 and 2·1; x1's weigh 1·1 and -3·1
    np.testing.assert_array_equal(scalar.components("x", "max")["max"], [[2.0, 1.0]])
    np.testing.assert_array_equal(scalar.components("x", "max")["min"], [[1.0, -3.0]])
    # paper: the "max" summed over the contracted index twice, which is just the gradient
    np.testing.assert_array_equal(paper.components("x", "max")["max"], [[3.0, -2.0]])
    np.testing.assert_array_equal(paper.grad("x"), paper.components("x", "max")["max"])
    # the exact top path of x0 goes through h1
    path = top_path(scalar, "x", (0, 0), "max")
    assert [(s.name, s.element) for s in path.steps] == [("x", (0, 0)), ("h", (0, 1)), ("q", (0, 0))]
    assert path.weight == 2.0


def test_embedding_rows_are_pooled_at_paper_granularity():
    g = Graph()
    table = g.parameter("table", np.array([[1.0], [2.0]]))
    ids = g.input("ids", (3,), dtype="int64")
    e = g.call("embedding", table, ids, name="e")               # rows 0, 0, 1
    w = g.constant(np.array([[3.0], [5.0], [7.0]]))
    y = g.call("sum", g.call("mul", e, w), name="y")
    acts = forward(g, {"ids": np.array([0, 0, 1])})
    scalar = backward(g, acts, select("y", ()), semirings=["max"], retain=["table", "e"])
    paper = backward(g, acts, select("y", ()), semirings=["max"], retain=["table", "e"], granularity="paper")
    # per position the two agree (no in-op fan-in between positions) ...
    np.testing.assert_array_equal(scalar.get("e", "max"), paper.get("e", "max"))
    # ... but the table row shared by positions 0 and 1 is their max exactly, their sum in paper mode
    np.testing.assert_array_equal(scalar.get("table", "max"), [[5.0], [7.0]])
    np.testing.assert_array_equal(paper.get("table", "max"), [[8.0], [7.0]])
    # paper backpointers name the consumer node only
    bp = paper.backpointers("table", "max")
    assert bp.node[0][0, 0] == g["e"].id and bp.element[0][0, 0] == -1
    assert scalar.backpointers("table", "max").element[0][0, 0] == 1   # position 1 wins (5 > 3)


def test_best_input_path_in_either_component():
    from graphengine.paths import best_input_path

    g = _two_layer()
    r = backward(g, forward(g, {"x": np.ones((1, 2))}), select("q", (0, 0)), semirings=["max"])
    assert best_input_path(r, "max").weight == 2.0
    low = best_input_path(r, "max", component=1)
    assert low.weight == -3.0 and low.steps[0].element == (0, 1)
