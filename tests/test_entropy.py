"""Pooled path entropy (graphengine.analysis.entropy) against brute-force path enumeration.

The oracle (tests/oracle.py) lists every path from every scalar of the input to the QoI with its
product of local derivatives; the entropy of a pool of elements is computed from those products
directly, with no semiring code, and must equal ``pooled_entropy`` of the engine's ``Z``, ``R``.
"""

import math

import numpy as np
import pytest

from graphengine import Graph, backward, forward, weighted
from graphengine.analysis import grouped_entropy, pooled_entropy, vector_entropy

from oracle import enumerate_paths, scalar_graph, statistics


def _program(seed):
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.input("x", (2, 3))
    h = g.call("linear", x, g.parameter("W1", rng.normal(size=(4, 3))), name="h1")
    h = g.call("tanh", h, name="h")
    y = g.call("linear", h, g.parameter("W2", rng.normal(size=(2, 4))), name="y")
    feeds = {"x": rng.normal(size=(2, 3))}
    coef = rng.normal(size=(2, 2))
    return g, feeds, x, y, coef


@pytest.fixture(scope="module", params=[0, 1])
def case(request):
    g, feeds, x, y, coef = _program(request.param)
    acts = forward(g, feeds)
    r = backward(g, acts, weighted("y", coef), semirings=["entropy", "logentropy"])
    sinks = {(y.id, e): float(c) for e, c in enumerate(coef.reshape(-1))}
    memo = enumerate_paths(scalar_graph(g, acts), sinks)
    paths = [memo[(x.id, e)] for e in range(x.size)]            # per flat element of x
    comps = r.components("x", "entropy")
    return r, paths, np.asarray(comps["Z"]), np.asarray(comps["R"])


def _oracle(paths, elements):
    pooled = [p for e in elements for p in paths[e]]
    assert pooled, "the test would be vacuous"
    return statistics(pooled)["entropy"]


def test_whole_node_matches_enumeration(case):
    r, paths, Z, R = case
    want = _oracle(paths, range(6))
    assert pooled_entropy(Z, R) == pytest.approx(want, rel=1e-10)
    assert vector_entropy(r, "x") == pytest.approx(want, rel=1e-10)
    assert vector_entropy(r, "x", "logentropy") == pytest.approx(want, rel=1e-10)
    # pooling is not the mean of the per-element entropies
    assert abs(float(np.mean(pooled_entropy(Z, R, axis=()))) - want) > 1e-3


def test_rows_elements_and_groups_match_enumeration(case):
    _, paths, Z, R = case
    rows = pooled_entropy(Z, R, axis=-1)
    np.testing.assert_allclose(rows, [_oracle(paths, range(0, 3)), _oracle(paths, range(3, 6))], rtol=1e-10)
    each = pooled_entropy(Z, R, axis=())
    np.testing.assert_allclose(each.reshape(-1), [_oracle(paths, [e]) for e in range(6)], rtol=1e-10)
    labels = np.array([[5, 1, 5], [1, 9, 9]])
    got = grouped_entropy(Z, R, labels)
    assert got.shape == labels.shape
    for lab in (5, 1, 9):
        members = np.flatnonzero(labels.reshape(-1) == lab)
        np.testing.assert_allclose(got.reshape(-1)[members], _oracle(paths, members), rtol=1e-10)


def test_empty_pools_are_zero_and_nan_stays_nan():
    Z = np.array([[0.0, 0.0], [1.0, np.nan], [2.0, 1.0]])
    R = np.array([[0.0, 0.0], [0.0, 0.0], [0.5, 0.0]])
    h = pooled_entropy(Z, R, axis=-1)
    assert h[0] == 0.0 and math.isnan(h[1]) and h[2] == pytest.approx(0.5 / 3 + math.log(3))
    assert math.isnan(pooled_entropy(Z, R))
    assert math.isnan(pooled_entropy(np.zeros(2), np.array([0.0, np.nan])))     # NaN R with ΣZ = 0
    assert pooled_entropy(np.zeros(3), np.zeros(3)) == 0.0
    g = grouped_entropy(Z[:, 1], R[:, 1], np.array([0, 1, 2]))
    assert g[0] == 0.0 and math.isnan(g[1]) and g[2] == 0.0


def test_nan_input_gives_nan_entropy():
    g, feeds, _, _, coef = _program(0)
    feeds["x"][0, 1] = np.nan
    r = backward(g, forward(g, feeds), weighted("y", coef), semirings=["entropy"])
    assert math.isnan(vector_entropy(r, "x"))


class _Components:
    """A stand-in result holding given components for one node."""

    def __init__(self, **comps):
        self.comps = comps

    def components(self, node, semiring):
        return self.comps


def test_log_space_pooling_keeps_nan_and_empty_pools():
    nan = _Components(log_Z=np.array([0.0, np.nan]), mean_neg_log_p=np.array([0.0, 0.0]))
    assert math.isnan(vector_entropy(nan, "x", "logentropy"))
    empty = _Components(log_Z=np.array([-np.inf, -np.inf]), mean_neg_log_p=np.zeros(2))
    assert vector_entropy(empty, "x", "logentropy") == 0.0
    two = _Components(log_Z=np.array([0.0, 0.0]), mean_neg_log_p=np.zeros(2))   # two paths of weight 1
    assert vector_entropy(two, "x", "logentropy") == pytest.approx(math.log(2), abs=1e-15)


def test_the_lift_is_the_plain_formula_bit_for_bit():
    # abs_xlogx_neg / xlogx_neg work in chunks; the numbers are those of -a log a (0 where a is
    # not positive: 0, NaN, negative), for every layout and across chunk boundaries
    from graphengine.semirings import reductions
    from graphengine.semirings.reductions import abs_xlogx_neg, xlogx_neg
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, reductions.CHUNK // 2 + 7))
    x[0, :6] = [0.0, -0.0, np.nan, np.inf, -np.inf, 1.0]
    with np.errstate(divide="ignore", invalid="ignore"):
        for v in (x, x.T, x[:, ::3], x[0, 0], x[:0]):
            a = np.abs(v)
            plain = np.where(a > 0, -a * np.log(np.where(a > 0, a, 1.0)), 0.0)
            aw, h = abs_xlogx_neg(v)
            np.testing.assert_array_equal(aw, a)
            for got in (h, xlogx_neg(a)):
                assert got.shape == plain.shape
                np.testing.assert_array_equal(got, plain)
                np.testing.assert_array_equal(np.signbit(got), np.signbit(plain))
