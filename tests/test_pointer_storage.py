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


def _parts(bp):
    return bp.node, bp.slot, bp.element


def _records(rng, shape):
    from graphengine.semirings.pointers import Backpointers
    node = (np.broadcast_to(np.int32(5), shape), rng.integers(0, 9, shape).astype(np.int32))
    slot = (np.broadcast_to(np.int16(1), shape), rng.integers(0, 3, shape).astype(np.int16))
    elem = (rng.integers(0, 1 << 20, shape), rng.integers(0, 1 << 20, shape))
    return Backpointers(node, slot, elem)


@pytest.mark.parametrize("kind", ["pair", "element"])
def test_sparse_finish_equals_the_dense_one(monkeypatch, kind):
    """A large record of which few elements are reached (an embedding table) is finished by
    writing only those: the same arrays, dtypes and -1s as the dense finish."""
    from graphengine.semirings import pointers as P
    rng = np.random.default_rng(0)
    shape = (512, 64)
    record = _records(rng, shape)
    hi, lo = np.full(shape, -np.inf), np.full(shape, np.inf)
    reached = rng.random(shape) < 0.03
    hi[reached], lo[reached] = rng.normal(size=(2, int(reached.sum())))
    k = np.flatnonzero(reached)
    hi.flat[k[:20]] = -np.inf            # paths of weight -inf: M⁺ at 0̄, borrows M⁻'s record
    lo.flat[k[20:40]] = np.inf           # and the other way round
    ptrs = P.PairPointers() if kind == "pair" else P.ElementPointers()
    zeros = (-np.inf, np.inf)
    assert P._live(~reached) is not None                # the sparse finish applies
    sparse = ptrs.finish((hi, lo), zeros, record)
    monkeypatch.setattr(P, "SPARSE_FINISH_MIN", 1 << 62)
    dense = ptrs.finish((hi, lo), zeros, record)
    assert P._live(np.zeros(shape, bool)) is None       # the switch is really off now
    for part_s, part_d in zip(_parts(sparse), _parts(dense)):
        for a, b in zip(part_s, part_d):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    assert (sparse.node[0][~reached] == -1).all() and (sparse.node[0][reached] != -1).any()


def test_sparse_finish_through_an_embedding_table(monkeypatch):
    """End to end: a max backward into a 2048 × 16 table of which two rows are looked up gives
    the same records with the sparse finish as with the dense one."""
    from graphengine.semirings import pointers as P
    g = Graph()
    table = g.parameter("table", np.random.default_rng(1).normal(size=(2048, 16)))
    ids = g.input("ids", (1, 2), dtype="int64")
    e = g.call("embedding", table, ids, name="e")
    y = g.call("sum", g.call("tanh", e), axes=[2], name="y")
    g.mark_output(y)
    acts = forward(g, {"ids": np.array([[3, 1500]])})
    a = backward(g, acts, select("y", (0, 1)), semirings=["max"], retain="all")
    monkeypatch.setattr(P, "SPARSE_FINISH_MIN", 1 << 62)
    b = backward(g, acts, select("y", (0, 1)), semirings=["max"], retain="all")
    pa, pb = a.backpointers("table", "max"), b.backpointers("table", "max")
    for part_a, part_b in zip(_parts(pa), _parts(pb)):
        for x, z in zip(part_a, part_b):
            assert x.dtype == z.dtype
            np.testing.assert_array_equal(x, z)
    reached = pa.node[0] != -1
    assert reached[1500].all() and reached.sum() == 16
