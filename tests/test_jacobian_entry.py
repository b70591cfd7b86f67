"""``Structure.entry``: one scalar edge's local derivative, read off the Jacobian structure.

Oracles: the dense Jacobian from central finite differences of the op's forward, and the
real-semiring backward of a one-hot adjoint through the structure (what the path walker used to
run per edge); the edge set is the counting semiring's. Cases: every registered op
(tests/test_ops_fd.py, several random draws) and every node of random compositions
(tests/test_oracle.py).
"""

import numpy as np
import pytest

from graphengine.engine import forward
from graphengine.engine.backward import differentiable_nodes
from graphengine.engine.propagate import Adjoint, propagate
from graphengine.ir import get_op
from graphengine.ir.jacobian import STRUCTURES, Contraction, DenseBlock, Diagonal, LowRankBlock, Movement, Reduction
from graphengine.ir.registry import STRUCTURE_KINDS
from graphengine.semirings import Counting, Real

from test_ops_fd import CASES, _build
from test_oracle import random_program


def _one_hot_rows(structure, out_shape, in_shape):
    """Per output element y: the real row ∂y/∂x over x, and the counting row (the edge set)."""
    size = int(np.prod(out_shape, dtype=np.int64))
    real, count = [], []
    for y in range(size):
        seed = np.zeros(out_shape)
        seed.flat[y] = 1.0
        real.append(propagate(structure, Adjoint((seed,)), in_shape, Real()).value[0].reshape(-1))
        count.append(propagate(structure, Adjoint((seed,)), in_shape, Counting()).value[0].reshape(-1))
    return np.array(real), np.array(count)


def _entries(structure, out_shape, in_shape):
    n_out, n_in = int(np.prod(out_shape, dtype=np.int64)), int(np.prod(in_shape, dtype=np.int64))
    return np.array([[structure.entry(y, x, out_shape, in_shape) for x in range(n_in)] for y in range(n_out)])


def _check_node(g, acts, node, needs):
    checked = 0
    opdef = get_op(node.op)
    xs = [acts[i] for i in node.inputs]
    for slot, inp in enumerate(node.inputs):
        if not needs[inp]:
            continue
        structure = opdef.jacobian(slot, xs, acts[node.id], node.attrs)
        if structure is None:
            continue
        in_shape = g.nodes[inp].shape
        got = _entries(structure, node.shape, in_shape)
        real, count = _one_hot_rows(structure, node.shape, in_shape)
        np.testing.assert_allclose(got, real, rtol=1e-12, atol=1e-15, err_msg=f"{node.name} slot {slot}")
        assert np.all(got[count == 0] == 0.0), f"{node.name} slot {slot}: entry on a non-edge"
        checked += 1
    return checked


def _fd_jacobian(opdef, xs, attrs, slot, eps=1e-6):
    """[out size, in size]: central differences of the op's forward in input ``slot``."""
    x = xs[slot]
    cols = []
    for i in range(x.size):
        hi, lo = list(xs), list(xs)
        hi[slot] = x.copy(); hi[slot].flat[i] += eps
        lo[slot] = x.copy(); lo[slot].flat[i] -= eps
        cols.append((np.asarray(opdef.forward(hi, attrs), np.float64)
                     - np.asarray(opdef.forward(lo, attrs), np.float64)).reshape(-1) / (2 * eps))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_entry_equals_finite_differences_and_one_hot_backward(case, seed):
    rng = np.random.default_rng(seed * 7919 + sum(map(ord, case[0])))
    g, y, feeds = _build(case, rng)
    acts = forward(g, feeds)
    node = g.nodes[y.id]
    opdef = get_op(node.op)
    xs = [acts[i] for i in node.inputs]
    assert _check_node(g, acts, node, differentiable_nodes(g)) > 0
    for slot, inp in enumerate(node.inputs):
        if g.nodes[inp].op != "input":
            continue
        structure = opdef.jacobian(slot, xs, acts[node.id], node.attrs)
        got = _entries(structure, node.shape, g.nodes[inp].shape)
        np.testing.assert_allclose(got, _fd_jacobian(opdef, xs, node.attrs, slot), rtol=1e-6, atol=1e-8,
                                   err_msg=f"{case[0]}: d y / d x{slot}")


@pytest.mark.parametrize("seed", range(12))
def test_entry_on_every_node_of_random_programs(seed):
    rng = np.random.default_rng(seed)
    g, feeds, _ = random_program(rng)
    acts = forward(g, feeds)
    needs = differentiable_nodes(g)
    checked = sum(_check_node(g, acts, n, needs) for n in g.nodes if n.op not in ("input", "parameter", "constant"))
    assert checked >= 7


def test_dense_block_entry_is_bit_identical_to_the_materialized_block(rng):
    x = rng.normal(size=(2, 3, 5))
    for op, attrs, xs in (("softmax", {"axis": -1}, [x]), ("softmax", {"axis": 1}, [x]),
                          ("layer_norm", {"normalized_shape": [5], "eps": 1e-5},
                           [x, rng.normal(size=5), rng.normal(size=5)]),
                          ("layer_norm", {"normalized_shape": [3, 5], "eps": 1e-5}, [x])):
        d = get_op(op)
        s = d.jacobian(0, xs, d.forward(xs, attrs), attrs)
        moved = np.moveaxis(np.arange(x.size).reshape(x.shape), s.axes, list(range(3 - len(s.axes), 3)))
        moved = moved.reshape(moved.shape[:3 - len(s.axes)] + (s.size,))   # [*batch, n]: flat index of x
        J = s.factors.dense()
        dense_only = DenseBlock(J, s.axes)
        for yi in range(0, x.size, 7):
            for xi in range(0, x.size, 3):
                (yb, yr), = [(b[:-1], b[-1]) for b in zip(*np.nonzero(moved == yi))]
                (xb, xc), = [(b[:-1], b[-1]) for b in zip(*np.nonzero(moved == xi))]
                want = J[tuple(yb) + (yr, xc)] if tuple(yb) == tuple(xb) else 0.0
                assert s.entry(yi, xi, x.shape, x.shape) == want, (op, attrs, yi, xi)
                assert dense_only.entry(yi, xi, x.shape, x.shape) == want


def test_low_rank_entry_broadcasts_shared_factors():
    s = np.array([0.2, 0.3, 0.5])
    block = LowRankBlock(s, -s[:, None], s[:, None])          # one block shared by a batch of 4
    dense = np.broadcast_to(block.dense(), (4, 3, 3))
    for b in range(4):
        for r in range(3):
            for c in range(3):
                assert block.entry((b,), r, c, (4,)) == dense[b, r, c]


def test_contraction_entry_reads_only_its_edge():
    w = np.array([[1.0, np.nan], [2.0, 3.0]])
    c = Contraction(w)                                        # x̄[0, k] = Σ_n ȳ[0, n] W[n, k]
    assert c.entry(1, 0, (1, 2), (1, 2)) == 2.0                # the NaN in W[0, 1] is not on this edge
    assert np.isnan(c.entry(0, 1, (1, 2), (1, 2)))             # ...and is on this one
    assert np.isnan(Diagonal(np.array([np.nan, 1.0])).entry(0, 0, (2,), (2,)))


def test_non_edges_are_zero():
    assert Diagonal(np.array([1.0, 2.0]), edges=np.array([True, False])).entry(1, 1, (2,), (2,)) == 0.0
    assert Diagonal(5.0).entry(1, 0, (2,), (2,)) == 0.0
    assert Reduction((0,), False, 1.0).entry(0, 1, (2,), (2, 2)) == 0.0
    assert Movement(np.array([2, -1, 0])).entry(1, 0) == 0.0 and Movement(np.array([2, -1, 0])).entry(0, 2) == 1.0


def test_declared_structure_kind_matches_the_jacobian():
    """``OpDef.structure`` names a kind the op's Jacobian actually has (expand is diagonal)."""
    kind = dict(zip(STRUCTURES, ("diagonal", "reduction", "contraction", "movement", "dense_block")))
    assert set(kind.values()) <= set(STRUCTURE_KINDS)
    for case in CASES:
        g, y, feeds = _build(case, np.random.default_rng(0))
        acts = forward(g, feeds)
        node = g.nodes[y.id]
        opdef = get_op(node.op)
        xs = [acts[i] for i in node.inputs]
        kinds = {kind[type(s)] for s in (opdef.jacobian(k, xs, acts[node.id], node.attrs) for k in range(len(xs)))
                 if s is not None}
        assert opdef.structure in kinds, f"{node.op}: declared {opdef.structure}, Jacobian has {sorted(kinds)}"
    assert get_op("expand").structure == "diagonal"
