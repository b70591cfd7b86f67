"""The worked examples of README §Granularities and docs/granularity.md: where `scalar` and `paper` differ,
and the original implementation's rule for the signed max pair at paper granularity (sum inside an op,
then order ⟨M⁺, M⁻⟩; indexing and the QoI seed dense)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from graphengine.engine import backward, forward, select, weighted
from graphengine.ir import Graph
from graphengine.ir.passes import POLICIES, decompose
from graphengine.paths import top_path

from test_oracle import random_program


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


def _both_signs(g, h):
    """q = sum(h) + sum(−h): every element of h has M⁺ = 1 and M⁻ = −1 in both granularities."""
    return g.call("add", g.call("sum", h), g.call("sum", g.call("neg", h)), name="q")


def _pair(r, name):
    c = r.components(name, "max")
    return c["max"].tolist(), c["min"].tolist()


def _r1():
    g = Graph()
    x = g.input("x", (1, 2))
    _both_signs(g, g.call("matmul", x, g.parameter("W", np.array([[1.0, 1.0], [-2.0, -3.0]])), name="h"))
    return g, {"x": np.ones((1, 2))}


def _r2():
    g = Graph()
    v = g.input("g", (2,))
    _both_signs(g, g.call("mul", v, g.constant(np.array([[1.0, 1.0], [-2.0, -3.0]])), name="h"))
    return g, {"g": np.ones(2)}


def _r3():
    g = Graph()
    v = g.input("v", (2,))
    g.call("sub", g.call("select", v, dim=0, index=0), g.call("select", v, dim=0, index=1), name="q")
    return g, {"v": np.array([3.0, 4.0])}


@pytest.mark.parametrize("device", ["reference", "cpu", "cuda"])
@pytest.mark.parametrize("build, leaf, scalar, paper", [
    (_r1, "x", ([[1.0, 3.0]], [[-1.0, -3.0]]), ([[2.0, 5.0]], [[-2.0, -5.0]])),      # contraction
    (_r2, "g", ([2.0, 3.0], [-2.0, -3.0]), ([1.0, 2.0], [-1.0, -2.0])),              # broadcast diagonal
    (_r3, "v", ([1.0, -1.0], [1.0, -1.0]), ([1.0, 0.0], [0.0, -1.0])),               # dense selections
], ids=["R1", "R2", "R3"])
def test_signed_max_pair_worked_cases(build, leaf, scalar, paper, device):
    g, feeds = build()
    acts = forward(g, feeds)
    for granularity, want in (("scalar", scalar), ("paper", paper)):
        r = backward(g, acts, select("q", ()), semirings=["max"], granularity=granularity, device=device)
        assert _pair(r, leaf) == (want[0], want[1]), granularity


def test_paper_backpointers_name_the_consumer_that_won_after_ordering():
    g = Graph()
    x = g.input("x", (1, 2))
    h = g.call("matmul", x, g.parameter("W", np.array([[1.0, 1.0], [-2.0, -3.0]])), name="h")
    b = g.call("mul", x, g.constant(np.array([3.0, 4.0])), name="b")
    g.call("add", _both_signs(g, h), g.call("sum", b), name="q2")
    r = backward(g, forward(g, {"x": np.ones((1, 2))}), select("q2", ()), semirings=["max"], granularity="paper")
    # through h (R1): S⁺ = [2, −5], S⁻ = [−2, 5], ordered (2, −2) and (5, −5); through b: (3, 3) and (4, 4)
    assert _pair(r, "x") == ([[3.0, 5.0]], [[-2.0, -5.0]])
    bp = r.backpointers("x", "max")
    assert bp.node[0].tolist() == [[g["b"].id, g["h"].id]]   # x1's M⁺ = 5 only exists after ordering
    assert bp.node[1].tolist() == [[g["h"].id, g["h"].id]]
    assert bp.element[0].tolist() == [[-1, -1]] and bp.element[1].tolist() == [[-1, -1]]


def _fan_out_program(rng):
    """Layers in which a tensor feeds two consumers (⟨M⁺, M⁻⟩ then differ) and then a contraction,
    a broadcast product and a fused block: where an unordered sum would show up."""
    g = Graph()
    a = g.input("x", (2, 3))
    for i in range(3):
        u = g.call("linear", a, g.parameter(f"w{i}", rng.normal(size=(3, 3))))
        p = g.parameter(f"p{i}", rng.normal(size=(3,) if rng.random() < 0.5 else (2, 1)))
        v = g.call(str(rng.choice(["tanh", "neg", "sigmoid"])), g.call("mul", a, p))
        a = g.call("add", u, v)
        if rng.random() < 0.5:
            a = g.call(str(rng.choice(["softmax", "log_softmax"])), a, axis=-1)
        else:
            a = g.call("layer_norm", a, g.parameter(f"ln{i}", rng.normal(size=(3,))), normalized_shape=[3])
    g.mark_output(a)
    return g, {"x": rng.normal(size=(2, 3))}, a.name


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 31 - 1), program=st.sampled_from([random_program, _fan_out_program]),
       policy=st.sampled_from(POLICIES), granularity=st.sampled_from(["scalar", "paper"]), selection=st.booleans())
def test_max_pair_is_ordered_at_every_reached_element(seed, program, policy, granularity, selection):
    rng = np.random.default_rng(seed)
    g, feeds, out = program(rng)
    g = decompose(g, policy)
    acts = forward(g, feeds)
    shape = g[out].shape
    if selection:
        q = select(out, tuple(int(rng.integers(0, s)) for s in shape))
    else:
        q = weighted(out, rng.normal(size=shape))
    r = backward(g, acts, q, semirings=["max"], retain="all", granularity=granularity)
    for nid in r.retained("max"):
        c = r.components(nid, "max")
        reached = c["max"] != -np.inf
        assert np.all(c["max"][reached] >= c["min"][reached]), (g.nodes[nid].name, policy, granularity)
        assert np.all(c["min"][~reached] == np.inf)


def _positive_graph():
    """Every local derivative positive and every node used by one consumer (across consumers paper
    granularity takes max, not a sum): an embedding lookup, a contraction, a broadcast bias and a
    broadcast product, sigmoid, exp, a slice and a mean."""
    g = Graph()
    ids = g.input("ids", (3,), dtype="int64")
    e = g.call("embedding", g.parameter("table", np.array([[0.5, 1.0], [2.0, 0.25], [1.5, 0.75]])), ids, name="e")
    h = g.call("add", g.call("matmul", e, g.parameter("W", np.array([[0.5, 1.0, 2.0], [0.25, 0.5, 1.5]]))),
               g.parameter("b", np.array([0.1, 0.2, 0.3])), name="h")
    s = g.call("mul", g.call("sigmoid", h), g.parameter("c", np.array([[0.5], [1.5], [2.5]])), name="s")
    t = g.call("exp", g.call("mul", s, g.constant(np.array(0.1))), name="t")
    g.call("mean", g.call("slice", t, dim=1, start=0, end=2), axes=[1], keepdim=False, name="y")
    return g, {"ids": np.array([0, 2, 0])}


def test_paper_max_with_positive_edges_is_the_gradient():
    g, feeds = _positive_graph()
    acts = forward(g, feeds)
    r = backward(g, acts, select("y", (1,)), semirings=["max", "real"], retain="all", granularity="paper")
    checked = 0
    for nid in r.retained("real"):
        grad, c = r.get(nid, "real"), r.components(nid, "max")
        scale = max(1.0, float(np.abs(grad).max()))
        np.testing.assert_allclose(c["max"], grad, rtol=1e-12, atol=1e-12 * scale, err_msg=g.nodes[nid].name)
        np.testing.assert_allclose(c["min"], grad, rtol=1e-12, atol=1e-12 * scale, err_msg=g.nodes[nid].name)
        checked += 1
    assert checked >= 8
    # y[1] reads table row 2 only: rows 0 (positions 0 and 2) and 1 (unused) have paths of weight 0 ...
    assert r.components("table", "max")["max"][:2].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    # ... and no path at all at scalar granularity
    exact = backward(g, acts, select("y", (1,)), semirings=["max"], granularity="scalar")
    assert exact.components("table", "max")["max"][:2].tolist() == [[-np.inf] * 2] * 2


@pytest.mark.parametrize("build, leaf, scalar, paper", [
    (_r1, "x", [[1.0, 3.0]], [[2.0, 5.0]]),      # Σ_k |W[n, k]|
    (_r2, "g", [2.0, 3.0], [3.0, 4.0]),          # Σ_i |X[i, j]|
    (_r3, "v", [1.0, 1.0], [1.0, 1.0]),
], ids=["R1", "R2", "R3"])
def test_maxabs_sums_magnitudes_inside_an_op_at_paper_granularity(build, leaf, scalar, paper):
    g, feeds = build()
    acts = forward(g, feeds)
    for granularity, want in (("scalar", scalar), ("paper", paper)):
        r = backward(g, acts, select("q", ()), semirings=["maxabs"], granularity=granularity)
        assert r.get(leaf, "maxabs").tolist() == want, granularity
