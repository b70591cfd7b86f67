"""Extending graphengine from outside: a semiring and an op the package does not ship, defined
here with the public API only (``register_semiring``, ``register_op``), run end to end.

- ``minplus``: shortest paths, an edge of local derivative w having length −log|w| (the QoI
  coefficient c too): the least surprising path. A :class:`SelectiveSemiring` with one "min"
  component: the family derives ⊕, the reductions and the contraction; it has no compiled
  kernels, so the compiled devices run its numpy methods. (A lift must be multiplicative,
  ``lift(1) = 1̄``: the walk does not lift the unit edges of movements; lengths |w| would not do.)
- ``secondorder``: the second-order expectation semiring ⟨Σ p, Σ p·F, Σ p·F²⟩ over paths of
  weight p = Π|w| and surprisal F = −log p, a :class:`LinearSemiring` with three components (so
  its contraction is the family's generic one, not BLAS).
- ``softplus``: an elementwise op whose Jacobian structure is ``Diagonal``.

Checked: the semiring laws (the helpers of test_semiring_laws.py), the brute-force path oracle
(Dijkstra on the explicit scalar gradient graph; path enumeration), ``backward`` on every
device, the recovered shortest paths, the op against torch.autograd, and ``graphengine analyze
--semiring minplus`` on a saved graph that uses the op.
"""

import json
import math

import networkx as nx
import numpy as np
import pytest

import graphengine as ge
from graphengine.cli import main
from graphengine.engine import backward, forward, weighted
from graphengine.ir import Diagonal, Graph, OpDef, TensorType, register_op, unregister_op
from graphengine.paths import top_path
from graphengine.semirings import (LinearSemiring, SelectiveSemiring, get_semiring, register_semiring,
                                   unregister_semiring)
from graphengine.semirings.reductions import safe_log_abs

from oracle import enumerate_paths, scalar_graph
from test_oracle import random_program
from test_semiring_laws import test_laws as check_laws
from test_semiring_laws import test_lift_is_multiplicative as check_lift
from test_semiring_laws import test_vectorized_reductions_equal_folds as check_reductions


class MinPlus(SelectiveSemiring):
    """Shortest path: min over paths of Σ −log|w|."""

    name = "minplus"
    components = ("length",)
    directions = ("min",)
    zero_elements = (math.inf,)
    one_elements = (0.0,)

    def lift(self, w):
        return (-safe_log_abs(w),)

    def times(self, a, b):
        return (a[0] + b[0],)

    def finalize(self, v):
        return {"length": v[0]}


def _xlogx_neg(a):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, -a * np.log(np.where(a > 0, a, 1.0)), 0.0)


class SecondOrder(LinearSemiring):
    """⟨Z, R, T⟩ = Σ over paths of ⟨p, p·F, p·F²⟩ with p = Π|w|, F = −log p."""

    name = "secondorder"
    components = ("Z", "R", "T")
    zero_elements = (0.0, 0.0, 0.0)
    one_elements = (1.0, 0.0, 0.0)

    def lift(self, w):
        p = np.abs(np.asarray(w, dtype=self.dtype))
        r = _xlogx_neg(p)                                   # p · (−log p)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(p > 0, r * r / np.where(p > 0, p, 1.0), 0.0)   # p · log² p
        return (p, r, t)

    def times(self, a, b):
        return (a[0] * b[0], a[0] * b[1] + a[1] * b[0], a[0] * b[2] + a[2] * b[0] + 2 * a[1] * b[1])

    def finalize(self, v):
        return {"Z": v[0], "R": v[1], "T": v[2]}


def _softplus_infer(types, attrs):
    return TensorType(types[0].shape, types[0].dtype)


SOFTPLUS = OpDef("softplus", "diagonal", 1, 1, _softplus_infer,
                 lambda xs, attrs: np.logaddexp(0.0, xs[0]),
                 lambda slot, xs, y, attrs: Diagonal(0.5 * (1.0 + np.tanh(0.5 * xs[0]))),  # sigmoid
                 doc="log(1 + exp(x))")


@pytest.fixture(scope="module", autouse=True)
def extensions():
    register_semiring(MinPlus)
    register_semiring(SecondOrder)
    register_op(SOFTPLUS)
    yield
    unregister_op("softplus")
    unregister_semiring("secondorder")
    unregister_semiring("minplus")


def test_registration_is_checked():
    assert type(get_semiring("minplus")) is MinPlus
    with pytest.raises(ValueError, match="taken"):
        register_semiring(MinPlus)
    with pytest.raises(ValueError, match="registered twice"):
        register_op(SOFTPLUS)
    assert get_semiring("minplus").selective and not get_semiring("secondorder").selective


@pytest.mark.parametrize("name", ["minplus", "secondorder"])
def test_laws_hold(name):
    check_laws(name=name)
    check_lift(name=name)
    check_reductions(name)


def test_softplus_gradient_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.array([[-30.0, -1.5, 0.0], [0.3, 2.0, 40.0]])
    g = Graph(); xi = g.input("x", x.shape); g.call("softplus", g.call("mul", xi, xi), name="y")
    coef = np.arange(6.0).reshape(2, 3) - 2.5
    got = backward(g, forward(g, {"x": x}), weighted("y", coef)).grad("x")
    xt = torch.tensor(x, requires_grad=True)
    (torch.nn.functional.softplus(xt * xt) * torch.from_numpy(coef)).sum().backward()
    np.testing.assert_allclose(got, xt.grad.numpy(), rtol=1e-12, atol=1e-300)


def _program(seed):
    """A random program ending in softplus, then every structure once more (contraction, dense
    block, reduction, movement), and a random QoI."""
    rng = np.random.default_rng(seed)
    g, feeds, out = random_program(rng, n_ops=5)
    s = g.call("softplus", g[out], name="s")
    r, c = s.shape
    h = g.call("linear", s, g.parameter("W_ext", rng.normal(size=(3, c))), name="h")
    t = g.call("mul", g.call("softmax", h, axis=1), h, name="t")
    u = g.call("add", g.call("index_select", t, g.constant(np.array([0, 2, 2])), dim=1),
               g.call("sum", t, axes=[1], keepdim=True), name="u")
    coef = np.where(rng.random(u.shape) < 0.5, rng.normal(size=u.shape), 0.0)
    coef.flat[0] = -1.25
    return g, feeds, weighted("u", coef)


def _length(w):
    return -math.log(abs(w))


def _shortest_to_qoi(g, acts, q):
    """Bellman-Ford on the explicit scalar gradient graph: for every vertex, the least Σ −log|w|
    to the QoI (edges of weight 0 have infinite length: no path)."""
    sg = scalar_graph(g, acts)
    qnode = g[q.node]
    lengths = nx.DiGraph()
    for u, v, data in sg.edges(data=True):
        if data["weight"] == 0:
            continue
        w = _length(data["weight"])
        if not lengths.has_edge(v, u) or lengths[v][u]["length"] > w:
            lengths.add_edge(v, u, length=w)                 # reversed: from the QoI backwards
    for index, c in q.terms:
        lengths.add_edge("QoI", (qnode.id, int(np.ravel_multi_index(index, qnode.shape))), length=_length(c))
    return nx.single_source_bellman_ford_path_length(lengths, "QoI", weight="length"), sg


@pytest.mark.parametrize("seed", range(4))
def test_engine_and_shortest_paths_against_path_oracle(seed):
    g, feeds, q = _program(seed)
    acts = forward(g, feeds)
    result = backward(g, acts, q, semirings=["minplus", "secondorder", "maxplus"], retain="all")
    dist, sg = _shortest_to_qoi(g, acts, q)
    sinks = {(g[q.node].id, int(np.ravel_multi_index(i, g[q.node].shape))): c for i, c in q.terms}
    paths = enumerate_paths(sg, sinks)
    coef = dict(q.terms)
    checked = walked_from = 0
    for n in g.nodes:
        if n.id not in result.by_semiring["minplus"].values:
            assert all(not paths[(n.id, e)] for e in range(n.size))
            continue
        length = result.get(n, "minplus").reshape(-1)
        moments = [a.reshape(-1) for a in result.components(n, "secondorder").values()]
        for e in range(n.size):
            want = dist.get((n.id, e), math.inf)
            assert length[e] == pytest.approx(want, rel=1e-12, abs=1e-12), f"{n.name}[{e}]"
            assert length[e] == -result.get(n, "maxplus").reshape(-1)[e]  # the same paths, negated
            p = np.abs([prod for prod, _ in paths[(n.id, e)]])
            with np.errstate(divide="ignore", invalid="ignore"):
                F = np.where(p > 0, -np.log(np.where(p > 0, p, 1.0)), 0.0)
            for got, w in zip(moments, (p.sum(), (p * F).sum(), (p * F * F).sum())):
                assert got[e] == pytest.approx(w, rel=1e-9, abs=1e-12), f"{n.name}[{e}] second order"
            if want < math.inf:  # the backpointers walk a shortest path
                path = top_path(result, n.name, np.unravel_index(e, n.shape), "minplus")
                walked = sum(_length(st.local_derivative) for st in path.steps[:-1]) + \
                    _length(coef[tuple(path.steps[-1].element)])
                assert walked == pytest.approx(want, rel=1e-12, abs=1e-12), f"{n.name}[{e}] shortest path"
                walked_from += 1
            checked += 1
    assert checked > 20 and walked_from > 20


@pytest.mark.parametrize("seed", range(2))
def test_same_on_every_device(seed):
    g, feeds, q = _program(seed)
    acts = forward(g, feeds)
    runs = {dev: backward(g, acts, q, semirings=["minplus", "secondorder", "max"], retain="all", device=dev)
            for dev in ("reference", "cpu", "cuda")}
    ref = runs["reference"]
    for dev in ("cpu", "cuda"):
        got = runs[dev]
        for nid in ref.retained("minplus"):
            for a, b in zip(got.raw(nid, "minplus"), ref.raw(nid, "minplus")):
                np.testing.assert_array_equal(a, b)       # the same numpy code: bit-identical
            bg, br = got.backpointers(nid, "minplus"), ref.backpointers(nid, "minplus")
            for field in ("node", "slot", "element"):
                for a, b in zip(getattr(bg, field), getattr(br, field)):
                    np.testing.assert_array_equal(a, b)
            for a, b in zip(got.raw(nid, "secondorder"), ref.raw(nid, "secondorder")):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(got.raw(nid, "max")[0], ref.raw(nid, "max")[0])


def test_cli_analyze_with_the_new_semiring_and_op(tmp_path, capsys):
    g = ge.Graph()
    x = g.input("x", (1, 2))
    W = g.parameter("W", np.array([[1.0, 0.5], [2.0, -3.0]]))
    h = g.call("softplus", g.call("linear", x, W, name="h"), name="s")
    g.call("linear", h, g.parameter("V", np.array([[1.0, 1.0]])), name="q")
    path = tmp_path / "g.ge"
    ge.save(g, str(path))
    out = tmp_path / "r.json"
    rc = main(["analyze", str(path), "--qoi", "q[0,0]", "--input", "x=[[1, 1]]",
               "--semiring", "minplus,max", "-o", str(out)])
    assert rc == 0
    assert "minplus" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    loaded = ge.load(str(path))
    acts = forward(loaded, {"x": np.array([[1.0, 1.0]])})
    dist, _ = _shortest_to_qoi(loaded, acts, weighted("q", np.ones((1, 1))))
    x_id = loaded["x"].id
    want = [dist[(x_id, 0)], dist[(x_id, 1)]]
    stats = doc["nodes"]["x"]["minplus"]["length"]
    assert stats["min"] == pytest.approx(min(want), rel=1e-12)
    best = doc["paths"]["minplus"][0]
    assert [s["name"] for s in best["steps"]] == ["x", "h", "s", "q"]
    assert best["steps"][0]["element"] == [0, int(np.argmin(want))]   # the shortest start, not the longest
    walked = sum(_length(s["local_derivative"]) for s in best["steps"][:-1])
    assert walked == pytest.approx(min(want), rel=1e-12)
