"""How finished backpointers are stored (graphengine.semirings.pointers): int32 elements, and a
record that holds one value everywhere as a read-only broadcast view, taking no memory. The
values are those of the reference device, whose records go through the same policy."""

import numpy as np
import pytest

from graphengine.engine import backward, forward, select
from graphengine.ir import Graph


def _graph():
    g = Graph()
    x = g.input("x", (3, 4))
    h = g.call("tanh", x, name="h")                        # one consumer: exp
    e = g.call("exp", h, name="e")
    y = g.call("mul", e, e, name="y")                      # e: one consumer, two slots
    g.mark_output(y)
    return g, {"x": np.linspace(-1, 1, 12).reshape(3, 4)}


def _no_memory(a):
    return a.ndim > 0 and not any(a.strides)


@pytest.mark.parametrize("semiring", ["max", "maxabs", "maxplus"])
def test_compact_records(semiring):
    g, feeds = _graph()
    r = backward(g, forward(g, feeds), select("y", (1, 2)), semirings=[semiring], retain="all")
    qoi = r.backpointers("y", semiring)
    for part in (qoi.node, qoi.slot, qoi.element):      # the QoI node: -1 everywhere, no memory
        assert all(_no_memory(a) and (a == -1).all() for a in part)
    h = r.backpointers("h", semiring)
    reached = np.zeros((3, 4), bool)
    reached[1, 2] = True
    for node, slot, elem in zip(h.node, h.slot, h.element):
        assert elem.dtype == np.int32 and node.dtype == np.int32 and slot.dtype == np.int16
        assert (node[reached] == g["e"].id).all() and (node[~reached] == -1).all()
        assert (elem[reached] == 6).all() and (elem[~reached] == -1).all()
    with pytest.raises(ValueError):
        qoi.node[0][0, 0] = 3                             # read-only: copy before writing


def test_fully_reached_single_consumer_record_is_a_view():
    g = Graph()
    x = g.input("x", (2, 3))
    h = g.call("tanh", x, name="h")
    s = g.call("sum", h, axes=[0, 1], name="s")
    g.mark_output(s)
    r = backward(g, forward(g, {"x": np.ones((2, 3))}), select("s", ()), semirings=["max"], retain="all")
    bp = r.backpointers("h", "max")
    assert all(_no_memory(a) and (a == g["s"].id).all() for a in bp.node)
    assert all(_no_memory(a) and (a == 0).all() for a in bp.slot)


def test_same_records_as_the_reference_device():
    g, feeds = _graph()
    acts = forward(g, feeds)
    a = backward(g, acts, select("y", (0, 1)), semirings=["max"], retain="all")
    b = backward(g, acts, select("y", (0, 1)), semirings=["max"], retain="all", device="reference")
    for nid in b.semiring_result("max").backpointers:
        x, y = a.backpointers(nid, "max"), b.backpointers(nid, "max")
        for part in ("node", "slot", "element"):
            for u, v in zip(getattr(x, part), getattr(y, part)):
                np.testing.assert_array_equal(u, v)
