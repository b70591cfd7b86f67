"""The walk plan (graphengine.engine.plan): computed once per graph, QoI node, retained set and
prune flag, reused across examples, renewed when the graph changes; results are those of a
walk on a graph that never had a plan."""

import numpy as np

from graphengine.engine import backward, forward
from graphengine.engine.plan import walk_plan
from graphengine.ir import Graph
from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights

SEMIRINGS = ["real", "max", "entropy", "kbest:2"]


def _block():
    cfg = BertConfig(vocab_size=13, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16, max_position=8)
    return build_bert(cfg, random_bert_weights(cfg, seed=3, head=None), batch=1, seq_len=3, head=None)


def _same(a, b):
    assert a.by_semiring.keys() == b.by_semiring.keys()
    for name in a.by_semiring:
        va, vb = a.by_semiring[name].values, b.by_semiring[name].values
        assert va.keys() == vb.keys()
        for nid in va:
            for x, y in zip(va[nid], vb[nid]):
                np.testing.assert_array_equal(x, y)
        pa, pb = a.by_semiring[name].backpointers, b.by_semiring[name].backpointers
        assert pa.keys() == pb.keys()
        for nid in pa:
            for field in ("node", "slot", "element", "rank"):
                fa, fb = getattr(pa[nid], field), getattr(pb[nid], field)
                assert (fa is None) == (fb is None)
                for x, y in zip(fa or (), fb or ()):
                    np.testing.assert_array_equal(x, y)


def test_plan_is_reused_across_examples_and_results_match_a_fresh_graph():
    g = _block()
    retain = ["embeddings.output"]
    qoi = "last_hidden_state[0,2,5]"
    runs = []
    for ids in ([[1, 5, 2]], [[7, 0, 12]]):
        runs.append(backward(g, forward(g, bert_feeds(np.array(ids))), qoi, semirings=SEMIRINGS, retain=retain))
    plan = walk_plan(g, g[qoi.split("[")[0]].id, frozenset({g["embeddings.output"].id}), True)
    assert walk_plan(g, plan.qnode, plan.keep, True) is plan
    fresh = _block()  # same weights, never walked: its plan is made for this call
    second = backward(fresh, forward(fresh, bert_feeds(np.array([[7, 0, 12]]))), qoi, semirings=SEMIRINGS,
                      retain=retain)
    _same(runs[1], second)
    assert not np.array_equal(runs[0].grad("embeddings.output"), runs[1].grad("embeddings.output"))


def test_plan_visits_only_the_cone_and_reads_what_pushes_use():
    g = Graph()
    x = g.input("x", (2,))
    w = g.parameter("w", np.array([2.0, -1.0]))
    c = g.parameter("c", np.array([np.nan, 1.0]))
    y = g.call("mul", x, w, name="y")
    g.call("mul", w, c, name="side")                      # a NaN, but on no path to z
    u = g.call("exp", w, name="u")                        # outside the cone of x
    z = g.call("add", g.call("add", y, y, name="yy"), u, name="z")
    plan = walk_plan(g, z.id, frozenset({x.id}), True)
    assert [s.node.name for s in plan.steps] == ["z", "yy", "y", "x"]
    assert c.id not in plan.read and {x.id, w.id, y.id, z.id} <= set(plan.read)
    r = backward(g, forward(g, {"x": np.ones(2)}), "z[0]", semirings=["real", "max"], retain=["x"])
    np.testing.assert_array_equal(r.grad("x"), [4.0, 0.0])
    np.testing.assert_array_equal(r.by_semiring["max"].values[x.id][0], [2.0, -np.inf])  # two paths of 2
    full = walk_plan(g, z.id, frozenset({x.id}), False)
    assert {s.node.name for s in full.steps} == {"z", "yy", "y", "u", "x", "w"}


def test_plan_is_renewed_when_the_graph_changes():
    g = Graph()
    x = g.input("x", (2,))
    y = g.call("exp", x, name="y")
    first = walk_plan(g, y.id, None, True)
    g.call("tanh", y, name="t")
    assert walk_plan(g, y.id, None, True) is not first
    g.truncate(2)
    z = g.call("neg", x, name="t")  # same length and name as before, another node
    plan = walk_plan(g, z.id, None, True)
    assert [s.node.name for s in plan.steps] == ["t", "x"]
    r = backward(g, forward(g, {"x": np.array([0.0, 1.0])}), "t[1]")
    np.testing.assert_array_equal(r.grad("x"), [0.0, -1.0])
