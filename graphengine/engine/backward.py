"""The semiring backward walk.

Nodes are visited in reverse topological order. Each visited node's adjoint is pushed into its
inputs through the Jacobian structure its op declares (computed once per input, shared by all
semirings of the call) and ⊕-accumulated there. The walker contains no per-op and no
per-semiring code. A node's adjoint is complete when the walk reaches it (all its consumers
come later in topological order) and is dropped right after it has been pushed, unless the node
is retained.

Tie-breaking for selective semirings: within one structure the lowest consumer element index
wins; across consumers the consumer visited first wins, i.e. the one latest in topological
order (and, for one consumer using a node in several slots, the lowest slot).

Devices: ``"cpu"`` (default) runs the heavy reductions (argmax-tracking contractions, dense
blocks, scatters, k-best selections, log-sum-exp) in Numba kernels and linear contractions in
BLAS; ``"cuda"`` runs them in ``numba.cuda`` kernels; ``"reference"`` uses only the numpy
semiring methods. All three give the same values and backpointers (bit-identical for the
selective and counting semirings, equal up to summation order otherwise); see
:mod:`graphengine.kernels`.

Granularity: ``"scalar"`` (default) is exact: every ⊕ is over individual scalar edges.
``"paper"`` reproduces the original implementation (PAPER.md §1): inside one op (contractions,
broadcast reductions, scatters such as embedding lookups) path weights are *summed*, ⊕ is taken
only across different consumer nodes, and backpointers name only the consumer node.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import forward, select
>>> g = Graph(); x = g.input("x", (2,)); y = g.call("mul", x, x, name="y")
>>> acts = forward(g, {"x": np.array([3.0, 4.0])})
>>> backward(g, acts, select("y", (1,))).grad("x")
array([0., 8.])
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import QoIError
from ..ir import Graph, get_op
from ..ir.dtypes import is_float
from ..kernels.dispatch import on_device
from ..kernels.pointers import mask_unreached
from ..semirings import Semiring, get_semiring
from .propagate import Adjoint, propagate, seed_index
from .qoi import QoI, parse
from .result import Backpointers, BackwardResult

RetainSpec = Union[None, str, Iterable]


def differentiable_nodes(graph: Graph) -> np.ndarray:
    """``needs[i]``: node i is floating point and depends on an input or parameter."""
    needs = np.zeros(len(graph), dtype=bool)
    for n in graph.nodes:
        if not is_float(n.dtype):
            continue
        needs[n.id] = n.op in ("input", "parameter") or any(needs[i] for i in n.inputs)
    return needs


def _retained_ids(graph: Graph, retain: RetainSpec) -> set:
    if retain is None:
        return {n.id for n in graph.nodes if n.op in ("input", "parameter")}
    if isinstance(retain, str):
        if retain == "all":
            return set(range(len(graph)))
        retain = [retain]
    ids = set()
    for r in retain:
        try:
            ids.add(graph.node(r).id)
        except KeyError as e:
            raise QoIError(f"cannot retain {r!r}: {e.args[0]}") from None
    return ids


def _upstream_of(graph: Graph, keep) -> np.ndarray:
    """``cone[i]``: some node in ``keep`` is node i or one of its ancestors."""
    cone = np.zeros(len(graph), dtype=bool)
    for n in graph.nodes:
        cone[n.id] = n.id in keep or any(cone[i] for i in n.inputs)
    return cone


GRANULARITIES = ("scalar", "paper")


def backward(graph: Graph, activations: Mapping[int, np.ndarray], qoi: Union[QoI, str],
             semirings: Sequence[Union[str, Semiring]] = ("real",), retain: RetainSpec = None,
             granularity: str = "scalar", keep_backpointers: bool = True, device: str = "cpu",
             prune: bool = False) -> BackwardResult:
    """Run one backward pass computing every semiring in ``semirings``.

    ``retain`` selects the nodes whose semiring values are kept: ``None`` (inputs and
    parameters), ``"all"``, or a list of node names/ids. Selective semirings keep the
    backpointers of *every* reached node (compact integer arrays, needed to walk a path) unless
    ``keep_backpointers=False``. ``granularity`` is ``"scalar"`` or ``"paper"``. ``device`` is
    ``"cpu"``, ``"cuda"`` or ``"reference"`` (raises :class:`~graphengine.kernels.dispatch.DeviceError`
    for an unknown or unavailable device). ``prune=True`` pushes adjoints only into nodes from
    which a retained node can be reached (upstream of nothing retained, nothing is needed): the
    retained values and the paths from retained nodes are unchanged, but nodes outside that
    cone get no value and no backpointers.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    srs = [get_semiring(s) for s in semirings]
    outer = {s.name: on_device(s, device) for s in srs}  # each semiring wrapped once per call
    inner = {s.name: (on_device(s.paper_view(), device) if granularity == "paper" else outer[s.name]) for s in srs}
    if len({s.name for s in srs}) != len(srs):
        raise ValueError("each semiring may appear once per backward call")
    if isinstance(qoi, str):
        qoi = parse(qoi)
    try:
        qnode = graph.node(qoi.node)
    except KeyError as e:
        raise QoIError(f"QoI: {e.args[0]}") from None
    if not is_float(qnode.dtype):
        raise QoIError(f"QoI node '{qnode.name}' is {qnode.dtype}, not floating point")
    coef, mask = qoi.coefficients(qnode.shape)
    result_coef = coef
    needs = differentiable_nodes(graph)
    keep = _retained_ids(graph, retain)
    if prune:
        needs = needs & _upstream_of(graph, keep)
    result = BackwardResult(graph, qnode.id, srs, granularity, activations)
    result.qoi_coefficients = result_coef

    adjoints: Dict[int, Dict[str, Adjoint]] = {}
    pointers: Dict[int, Dict[str, Backpointers]] = {}
    adjoints[qnode.id] = {s.name: Adjoint(s.where(mask, s.scale(s.ones(qnode.shape), coef), s.zeros(qnode.shape)))
                          for s in srs}
    pointers[qnode.id] = {s.name: _no_pointers(qnode.shape, len(s.components)) for s in srs if s.selective}

    for nid in range(qnode.id, -1, -1):
        state = adjoints.pop(nid, None)
        bps = pointers.pop(nid, {})
        if state is None:
            continue
        node = graph.nodes[nid]
        for s in srs:
            if nid in keep:
                result.by_semiring[s.name].values[nid] = state[s.name].value
            if s.selective and (nid in keep or keep_backpointers):
                result.by_semiring[s.name].backpointers[nid] = _mask_unreached(s, state[s.name].value, bps[s.name])
        if node.op in ("input", "parameter", "constant"):
            continue
        opdef = get_op(node.op)
        xs = [activations[i] for i in node.inputs]
        y = activations[nid]
        start_idx = {s.name: seed_index(node.shape, s) for s in srs if s.selective}
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            for slot, inp in enumerate(node.inputs):
                if not needs[inp]:
                    continue
                structure = opdef.jacobian(slot, xs, y, node.attrs)
                if structure is None:
                    continue
                in_shape = graph.nodes[inp].shape
                for s in srs:
                    start = Adjoint(state[s.name].value, start_idx.get(s.name))
                    contrib = propagate(structure, start, in_shape, inner[s.name])
                    _accumulate(adjoints, pointers, inp, outer[s.name], contrib, nid, slot)
    return result


def _no_pointers(shape, k) -> Backpointers:
    return Backpointers(tuple(np.full(shape, -1, np.int32) for _ in range(k)),
                        tuple(np.full(shape, -1, np.int16) for _ in range(k)),
                        tuple(np.full(shape, -1, np.int64) for _ in range(k)))


def _accumulate(adjoints, pointers, inp: int, s: Semiring, contrib: Adjoint, consumer: int, slot: int) -> None:
    entry = adjoints.setdefault(inp, {})
    old = entry.get(s.name)
    k = len(s.components)
    idx = None
    if s.selective:
        idx = contrib.idx if contrib.idx is not None else (np.full(contrib.shape, -1, np.int64),) * k
    if old is None:
        entry[s.name] = Adjoint(contrib.value)
        if s.selective:
            shape = contrib.shape
            node_bp = np.broadcast_to(np.int32(consumer), shape)   # read-only views: written only
            slot_bp = np.broadcast_to(np.int16(slot), shape)       # through np.where / masking copies
            pointers.setdefault(inp, {})[s.name] = Backpointers(
                (node_bp,) * k, (slot_bp,) * k, tuple(np.broadcast_to(np.asarray(i, dtype=np.int64), shape) for i in idx))
        return
    value, picks = s.plus(old.value, contrib.value)
    entry[s.name] = Adjoint(value)
    if s.cross_components:  # picks index [old components..., new components...]
        bp = pointers[inp][s.name]
        new = (tuple(np.full(contrib.shape, consumer, np.int32) for _ in range(k)),
               tuple(np.full(contrib.shape, slot, np.int16) for _ in range(k)), idx)
        merged = []
        for old_parts, new_parts in zip((bp.node, bp.slot, bp.element), new):
            stacked = np.stack(np.broadcast_arrays(*old_parts, *new_parts), axis=-1)
            merged.append(tuple(np.take_along_axis(stacked, np.maximum(p, 0)[..., None], -1)[..., 0] for p in picks))
        pointers[inp][s.name] = Backpointers(*merged)
    elif s.selective and picks is not None:
        bp = pointers[inp][s.name]
        nodes, slots, elems = list(bp.node), list(bp.slot), list(bp.element)
        for c, p in enumerate(picks):
            if p is not None:
                nodes[c] = np.where(p, np.int32(consumer), nodes[c])
                slots[c] = np.where(p, np.int16(slot), slots[c])
                elems[c] = np.where(p, idx[c], elems[c])
        pointers[inp][s.name] = Backpointers(tuple(nodes), tuple(slots), tuple(elems))


def _mask_unreached(s: Semiring, value, bp: Backpointers) -> Backpointers:
    parts = ([], [], [])
    ranks = []
    k = len(s.components)
    if not s.cross_components:
        for c in range(k):
            for out, arr in zip(parts, mask_unreached(value[c], s.zero_elements[c], bp.node[c], bp.slot[c], bp.element[c])):
                out.append(arr)
        return Backpointers(*(tuple(p) for p in parts))
    for c in range(k):
        dead = value[c] == s.zero_elements[c]
        for out, arr in zip(parts, (bp.node[c], bp.slot[c], bp.element[c])):
            out.append(np.where(dead, arr.dtype.type(-1), arr))
        if s.cross_components:  # decode element * k + rank
            enc = parts[2][-1]
            parts[2][-1] = np.where(enc >= 0, enc // k, -1)
            ranks.append(np.where(enc >= 0, enc % k, -1).astype(np.int16))
    return Backpointers(*(tuple(p) for p in parts), rank=tuple(ranks) if s.cross_components else None)
