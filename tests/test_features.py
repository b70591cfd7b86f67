"""Expectations of additive edge features over p(path) ∝ |Π w| against brute-force enumeration."""

import math

import numpy as np
import pytest

from graphengine.engine import backward, forward, weighted
from graphengine.semirings import FeatureExpectation, get_semiring
from graphengine.semirings.features import pooled_moments

from oracle import enumerate_paths, feature_moments, lengths, scalar_graph
from test_oracle import random_program


def _close(a, b, scale):
    if math.isnan(b):
        return math.isnan(a)
    return abs(a - b) <= 1e-9 * max(1.0, scale)


@pytest.mark.parametrize("seed", range(6))
def test_feature_mean_and_variance_equal_enumeration(seed):
    rng = np.random.default_rng(100 + seed)
    g, feeds, out = random_program(rng)
    acts = forward(g, feeds)
    q = g[out]
    coef = np.zeros(q.shape)
    coef.flat[rng.choice(q.size, size=min(3, q.size), replace=False)] = rng.normal(size=min(3, q.size))
    values = {n.id: float(rng.normal()) for n in g.nodes}   # a feature per consumer node
    ops = {"linear", "matmul", "softmax", "layer_norm"}
    feats = FeatureExpectation({"c": lambda node, slot: values[node.id],
                                "heavy_op": lambda node, slot: float(node.op in ops)}, order=2)
    result = backward(g, acts, weighted(out, coef), semirings=[feats, "pathlength"], retain="all")
    sg = scalar_graph(g, acts)
    paths = enumerate_paths(sg, {(q.id, int(i)): float(coef.flat[i]) for i in np.nonzero(coef.reshape(-1))[0]})
    checked = 0
    for n in g.nodes:
        if n.id > q.id or n.dtype != "float64" or n.id not in result.retained(feats.name):
            continue
        got = result.components(n.id, feats.name)
        length = result.components(n.id, "pathlength")
        for e in range(n.size):
            ps = paths[(n.id, e)]
            m_c, v_c = feature_moments(ps, lambda u, v: values[v[0]])
            m_h, v_h = feature_moments(ps, lambda u, v: float(g[v[0]].op in ops))
            m_l, v_l = feature_moments(ps, lambda u, v: 1.0)
            scale = max([abs(x) for x in values.values()]) * max(1, len(lengths(ps)) and lengths(ps).max())
            for name, want, s in (("mean:c", m_c, scale), ("var:c", v_c, scale ** 2), ("mean:heavy_op", m_h, scale),
                                  ("var:heavy_op", v_h, scale ** 2)):
                assert _close(float(got[name].flat[e]), want, s), f"{n.name}[{e}] {name}: {got[name].flat[e]} vs {want}"
            assert _close(float(length["mean:length"].flat[e]), m_l, scale)
            assert _close(float(length["var:length"].flat[e]), v_l, scale ** 2)
            checked += 1
    assert checked > 0


def test_pooled_moments_are_those_of_the_union_of_paths():
    rng = np.random.default_rng(7)
    g, feeds, out = random_program(rng)
    acts = forward(g, feeds)
    result = backward(g, acts, weighted(out, np.ones(g[out].shape)), semirings=["pathlength"])
    comps = result.components("x", "pathlength")
    sg = scalar_graph(g, acts)
    q = g[out]
    paths = enumerate_paths(sg, {(q.id, i): 1.0 for i in range(q.size)})
    union = [p for e in range(g["x"].size) for p in paths[(g["x"].id, e)]]
    mean, var = feature_moments(union, lambda u, v: 1.0)
    pooled = pooled_moments(comps)
    assert abs(float(pooled["mean:length"]) - mean) <= 1e-9 * max(1, mean)
    assert abs(float(pooled["var:length"]) - var) <= 1e-9 * max(1, mean ** 2)


def test_expectations_are_nan_where_no_path_has_weight_and_run_on_every_device():
    from graphengine.ir import Graph
    g = Graph(); x = g.input("x", (3,))
    g.call("relu", x, name="y")
    acts = forward(g, {"x": np.array([-1.0, 2.0, np.nan])})
    # the QoI is y[0] + y[1] + y[2]: x[0]'s one path has weight relu'(-1) = 0, x[2]'s passes
    # through a NaN activation (NaN in, NaN out), x[1]'s is one edge of weight 1
    r = backward(g, acts, weighted("y", np.ones(3)), semirings=["pathlength"])
    mean = r.components("x", "pathlength")["mean:length"]
    assert np.isnan(mean[0]) and mean[1] == 1.0 and np.isnan(mean[2])
    for device in ("reference", "cpu"):
        d = backward(g, acts, weighted("y", np.ones(3)), semirings=["pathlength"], device=device)
        np.testing.assert_array_equal(d.components("x", "pathlength")["mean:length"], mean)


def test_bad_orders_and_empty_features_are_refused():
    with pytest.raises(ValueError, match="order"):
        FeatureExpectation({"a": 1.0}, order=3)
    with pytest.raises(ValueError, match="at least one"):
        FeatureExpectation({})
    assert get_semiring("pathlength").components == ("Z", "R:length", "T:length")
