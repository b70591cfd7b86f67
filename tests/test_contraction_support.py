"""Contractions over the adjoint's support (graphengine.engine.propagate): when the QoI selects a
few logits, the output projection's (vocabulary × hidden) weight is read only at those rows.
Values and backpointers are those of the full contraction, and the brute-force enumeration's."""

import numpy as np
import pytest

from graphengine.engine import backward, forward, propagate, weighted
from graphengine.engine.propagate import Adjoint
from graphengine.ir import Graph
from graphengine.semirings import get_semiring

from test_oracle import check_program

VOCAB = 300  # >= propagate.SPARSE_MIN_AXIS


def _projection(rng, weight_first=False):
    g = Graph()
    x = g.input("x", (2, 3))
    h = g.call("tanh", x, name="h")
    if weight_first:  # logits^T = W h^T: the contracted axis is the weight's first operand's
        w = g.parameter("w", rng.normal(size=(3, VOCAB)))
        logits = g.call("matmul", h, w, name="logits")
    else:
        w = g.parameter("w", rng.normal(size=(VOCAB, 3)))
        logits = g.call("linear", h, w, name="logits")
    g.mark_output(logits)
    return g, {"x": rng.normal(size=(2, 3))}


@pytest.fixture
def spy(monkeypatch):
    calls = []
    real = propagate._support

    def support(a, weight, sr):
        out = real(a, weight, sr)
        calls.append(out)
        return out
    monkeypatch.setattr(propagate, "_support", support)
    return calls


@pytest.mark.parametrize("weight_first", [False, True])
def test_projection_against_enumeration(spy, weight_first):
    rng = np.random.default_rng(3)
    g, feeds = _projection(rng, weight_first)
    assert check_program(g, feeds, "logits", rng, n_terms=2) > 0
    assert any(s is not None and s.size <= 2 for s in spy)  # the restriction was taken


SEMIRINGS = ["real", "absolute", "entropy", "count", "logcount", "bool", "max", "maxabs", "maxplus", "kbest:3"]


@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_restricted_equals_full_contraction(monkeypatch, spy, device):
    rng = np.random.default_rng(4)
    g, feeds = _projection(rng)
    acts = forward(g, feeds)
    coef = np.zeros((2, VOCAB))
    coef[1, 7], coef[0, 250] = 1.0, -0.5
    q = weighted("logits", coef)
    got = backward(g, acts, q, semirings=SEMIRINGS, retain="all", device=device)
    assert any(s is not None for s in spy)
    monkeypatch.setattr(propagate, "SPARSE_FRACTION", 0.0)  # never restrict: the full product
    full = backward(g, acts, q, semirings=SEMIRINGS, retain="all", device=device)
    for name in SEMIRINGS:
        a, b = got.semiring_result(name), full.semiring_result(name)
        assert sorted(a.values) == sorted(b.values)
        for nid in a.values:
            for x, y in zip(a.values[nid], b.values[nid]):
                scale = max(1.0, float(np.max(np.abs(np.nan_to_num(y, posinf=0, neginf=0)))))
                np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-13 * scale, err_msg=f"{name} node {nid}")
            if nid in b.backpointers:
                for part in ("node", "slot", "element"):
                    for x, y in zip(getattr(a.backpointers[nid], part), getattr(b.backpointers[nid], part)):
                        np.testing.assert_array_equal(x, y, err_msg=f"{name} node {nid} {part}")


def _adjoint(live_columns, n=VOCAB):
    a = np.zeros((2, n))
    a[1, live_columns] = 1.0
    return Adjoint((a,))


def test_support_only_where_it_pays_and_the_dropped_weights_are_finite():
    real = get_semiring("real")
    w = np.ones((VOCAB, 4))
    assert propagate._support(_adjoint([3, 9]), w, real).tolist() == [3, 9]
    assert propagate._support(_adjoint(list(range(100))), w, real) is None        # > a quarter of the axis
    assert propagate._support(_adjoint([3], n=16), np.ones((16, 4)), real) is None  # a short axis
    assert propagate._support(_adjoint([]), w, real) is None                       # nothing to contract
    for bad in (np.nan, np.inf):
        w_bad = w.copy()
        w_bad[5, 0] = bad               # a dropped row: 0 * nan is nan in the full product, so take it
        assert propagate._support(_adjoint([3]), w_bad, real) is None
        w_kept = w.copy()
        w_kept[3, 0] = bad              # a kept row: restricting reads it all the same
        assert propagate._support(_adjoint([3]), w_kept, real).tolist() == [3]


def test_nan_in_a_dropped_weight_row_gives_the_full_products_values(monkeypatch):
    rng = np.random.default_rng(5)
    g, feeds = _projection(rng)
    g.arrays[g["w"].id][11, 1] = np.nan   # row 11 is not selected by the QoI
    acts = forward(g, feeds)
    coef = np.zeros((2, VOCAB))
    coef[1, 7] = 1.0
    q = weighted("logits", coef)
    got = backward(g, acts, q, semirings=["real", "max"], retain=["x"])
    monkeypatch.setattr(propagate, "SPARSE_FRACTION", 0.0)
    full = backward(g, acts, q, semirings=["real", "max"], retain=["x"])
    for name in ("real", "max"):
        for x, y in zip(got.raw("x", name), full.raw("x", name)):
            np.testing.assert_array_equal(x, y)
