"""Every semiring against brute-force path enumeration on small tensor programs.

Programs: each registered op once (followed by a fan-out so that ⊕ across consumers is
exercised too), and random compositions of ops. For every scalar vertex the engine's value in
every semiring equals the statistic computed from the enumerated path products, and the
recovered best paths are enumerated paths of the best weight.
"""

import math

import numpy as np
import pytest

from graphengine.engine import backward, forward, weighted
from graphengine.ir import Graph
from graphengine.paths import k_best_paths, top_path
from graphengine.semirings import SEMIRINGS

from oracle import enumerate_paths, kbest, scalar_graph, statistics
from test_ops_fd import CASES, _build

K = 3
ALL = list(SEMIRINGS) + [f"kbest:{K}", f"kbestabs:{K}"]


def _engine_stats(result, node_id, e):
    out = {}
    for name in ALL:
        try:
            comps = result.components(node_id, name)
        except KeyError:
            return None
        flat = {k: np.asarray(v).reshape(-1)[e] for k, v in comps.items()}
        if name.startswith("kbest"):
            out[name] = [float(v) for v in flat.values()]
        elif name == "max":
            out["max"], out["min"] = float(flat["max"]), float(flat["min"])
        elif name == "bool":
            out["bool"] = bool(flat["reachable"])
        else:
            out[name] = float(next(iter(flat.values())))
    return out


def _close(a, b):
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if math.isnan(a) or math.isnan(b):  # an expectation where no path has a non-zero product
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def check_program(g, feeds, qnode, rng, n_terms=2):
    acts = forward(g, feeds)
    q = g[qnode]
    coef = np.zeros(q.shape)
    flat = coef.reshape(-1)
    for i in rng.choice(q.size, size=min(n_terms, q.size), replace=False):
        flat[i] = rng.choice([-1, 1]) * rng.uniform(0.5, 1.5)
    result = backward(g, acts, weighted(qnode, coef), semirings=ALL, retain="all")
    sg = scalar_graph(g, acts)
    sinks = {(q.id, int(i)): float(flat[i]) for i in np.nonzero(flat)[0]}
    paths = enumerate_paths(sg, sinks)
    checked = 0
    for n in g.nodes:
        if n.id > q.id or n.dtype not in ("float32", "float64"):
            continue
        for e in range(n.size):
            want = statistics(paths[(n.id, e)])
            want[f"kbest:{K}"] = kbest(paths[(n.id, e)], K, magnitude=False)
            want[f"kbestabs:{K}"] = kbest(paths[(n.id, e)], K, magnitude=True)
            got = _engine_stats(result, n.id, e)
            if got is None:
                assert not paths[(n.id, e)], f"{n.name}[{e}] has paths but no engine value"
                continue
            for key, value in want.items():
                assert _close(got[key], value), f"{n.name}[{e}] {key}: engine {got[key]} vs enumeration {value}"
            checked += 1
            if paths[(n.id, e)] and n.op == "input":
                _check_top_paths(result, n, e, paths[(n.id, e)], sg)
    return checked


def _check_edges(path, seq, sg):
    """Every step's local derivative is the weight of an enumerated edge between its vertices."""
    for st, u, v in zip(path.steps, seq, seq[1:]):
        weights = [d["weight"] for d in sg.get_edge_data(u, v).values()]
        assert any(_close(st.local_derivative, w) for w in weights), f"edge {u}->{v}: {st.local_derivative} vs {weights}"


def _check_top_paths(result, node, e, paths, sg):
    index = np.unravel_index(e, node.shape)
    products = {seq: p for p, seq in paths}
    for semiring, component, best in (("max", 0, max(p for p, _ in paths)), ("max", 1, min(p for p, _ in paths)),
                                      ("maxabs", 0, max(abs(p) for p, _ in paths))):
        path = top_path(result, node.id, index, semiring, component)
        seq = tuple((st.node, int(np.ravel_multi_index(st.element, result.graph.nodes[st.node].shape))
                     if st.element else 0) for st in path.steps)
        assert seq in products, f"recovered path {seq} is not a path"
        _check_edges(path, seq, sg)
        weight = products[seq] if semiring == "max" else abs(products[seq])
        assert _close(weight, best), f"{semiring}[{component}] path weight {weight} vs best {best}"
        assert _close(path.weight if semiring == "max" else abs(path.weight), best)
    for semiring, magnitude in ((f"kbest:{K}", False), (f"kbestabs:{K}", True)):
        found = k_best_paths(result, node.id, index, semiring)
        want = kbest(paths, K, magnitude)[:K]
        assert len(found) == min(K, len(paths))
        seqs = set()
        for path, w in zip(found, want):
            seq = tuple((st.node, int(np.ravel_multi_index(st.element, result.graph.nodes[st.node].shape))
                         if st.element else 0) for st in path.steps)
            assert seq in products and seq not in seqs, "k-best paths must be distinct enumerated paths"
            _check_edges(path, seq, sg)
            seqs.add(seq)
            got = abs(products[seq]) if magnitude else products[seq]
            assert _close(got, w), f"{semiring}: path weight {got} vs {w}"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_op_against_enumeration(case):
    rng = np.random.default_rng(abs(hash(case[0])) % 2 ** 32)
    g, y, feeds = _build(case, rng)
    t = g.call("tanh", y, name="t")
    z = g.call("mul", y, t, name="z")       # y has two consumers: tanh and mul
    assert check_program(g, feeds, "z", rng) > 0


def random_program(rng, n_ops=7):
    g = Graph()
    feeds = {"x": rng.normal(size=(2, 3))}
    pool = [g.input("x", (2, 3))]
    for i in range(n_ops):
        a = pool[-1] if rng.random() < 0.6 else pool[rng.integers(len(pool))]
        same = [p for p in pool if p.shape == a.shape and p.id != a.id]
        r, c = a.shape
        kind = rng.choice(["unary", "binary", "bias", "linear", "block", "reduce", "move", "select", "where"])
        if kind == "unary":
            op = rng.choice(["tanh", "sigmoid", "neg", "gelu", "erf", "leaky_relu", "exp"])
            out = g.call(op, g.call("mul", a, g.constant(np.array(0.5))) if op == "exp" else a)
        elif kind == "binary" and same:
            out = g.call(rng.choice(["add", "mul", "sub"]), a, same[rng.integers(len(same))])
        elif kind == "bias":
            p = g.parameter(f"b{i}", rng.normal(size=(c,) if rng.random() < 0.5 else (r, 1)))
            out = g.call(rng.choice(["add", "mul"]), a, p)
        elif kind == "linear":
            k = int(rng.integers(1, 4))
            out = g.call("linear", a, g.parameter(f"w{i}", rng.normal(size=(k, c))), g.parameter(f"wb{i}", rng.normal(size=k)))
        elif kind == "block":
            op = rng.choice(["softmax", "log_softmax", "layer_norm"])
            if op == "layer_norm":
                out = g.call(op, a, g.parameter(f"ln{i}", rng.normal(size=(c,))), normalized_shape=[c])
            else:
                out = g.call(op, a, axis=int(rng.integers(0, 2)))
        elif kind == "reduce":
            op = rng.choice(["sum", "mean", "amax"])
            red = g.call(op, a, axes=[1], keepdim=True)
            out = g.call("sub", a, red) if op == "amax" else g.call("expand", red, shape=[r, c])
        elif kind == "move":
            op = rng.choice(["transpose", "matmul_t", "cat"])
            if op == "transpose":
                out = g.call("transpose", a, dim0=0, dim1=1)
            elif op == "matmul_t":
                b = same[rng.integers(len(same))] if same else a
                out = g.call("matmul", a, g.call("transpose", b, dim0=0, dim1=1))
            else:
                cat = g.call("cat", a, a, dim=1)
                out = g.call("slice", cat, dim=1, start=1, end=1 + min(c, 3))
        elif kind == "select":
            out = g.call("unsqueeze", g.call("select", a, dim=0, index=int(rng.integers(0, r))), dim=0)
            out = g.call("index_select", out, g.constant(np.array([0, 0])), dim=0)
        else:
            mask = rng.random(size=(r, c)) < 0.5
            other = same[rng.integers(len(same))] if same else a
            out = g.call("where", g.constant(mask), a, g.call("tanh", other))
        pool.append(out)
    g.mark_output(pool[-1])
    return g, feeds, pool[-1].name


@pytest.mark.parametrize("seed", range(12))
def test_random_programs_against_enumeration(seed):
    rng = np.random.default_rng(seed)
    g, feeds, out = random_program(rng)
    assert check_program(g, feeds, out, rng, n_terms=3) > 0


def test_paper_granularity_equals_scalar_for_linear_semirings_and_elementwise_programs():
    rng = np.random.default_rng(5)
    g, feeds, out = random_program(rng)
    acts = forward(g, feeds)
    q = weighted(out, rng.normal(size=g[out].shape))
    linear = ["real", "absolute", "entropy", "count"]
    a = backward(g, acts, q, semirings=linear, retain="all")
    b = backward(g, acts, q, semirings=linear, retain="all", granularity="paper")
    for nid in a.retained("real"):
        for s in linear:
            for k, v in a.components(nid, s).items():
                np.testing.assert_allclose(b.components(nid, s)[k], v, rtol=1e-12, atol=1e-300)
    # an elementwise chain has no in-op fan-in: the two granularities agree for max on the selected
    # element; the others have no path at scalar granularity and a path of weight 0 (the original's
    # dense seed) at paper granularity
    h = Graph(); x = h.input("x", (4,)); t = h.call("tanh", x); m = h.call("mul", t, x); s = h.call("exp", m, name="s")
    acts = forward(h, {"x": rng.normal(size=4)})
    ra = backward(h, acts, "s[2]", semirings=["max"], retain="all")
    rb = backward(h, acts, "s[2]", semirings=["max"], retain="all", granularity="paper")
    for k in ("max", "min"):
        exact, paper = ra.components("x", "max")[k], rb.components("x", "max")[k]
        assert exact[2] == paper[2] and np.isfinite(exact[2])
        np.testing.assert_array_equal(np.delete(exact, 2), np.inf if k == "min" else -np.inf)
        np.testing.assert_array_equal(np.delete(paper, 2), 0.0)
