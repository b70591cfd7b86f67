"""The semiring backward walk.

Nodes are visited in reverse topological order. Each visited node's adjoint is pushed into its
inputs through the Jacobian structure its op declares (computed once per input, shared by all
semirings of the call) and ⊕-accumulated there. The walker contains no per-op and no
per-semiring code: winners are recorded by each semiring's backpointer policy
(:mod:`graphengine.semirings.pointers`). A node's adjoint is complete when the walk reaches it (all its consumers
come later in topological order) and is dropped right after it has been pushed, unless the node
is retained.

What the walk visits, which inputs it pushes into, the retained set and the cone depend only on
the graph, the QoI node, ``retain`` and ``prune``: :mod:`graphengine.engine.plan` computes
them once per graph and reuses them for every later call (the next example costs no Python
time for them).

Tie-breaking for selective semirings: within one structure the lowest consumer element index
wins; across consumers the consumer visited first wins, i.e. the one latest in topological
order (and, for one consumer using a node in several slots, the lowest slot).

Devices: ``"cpu"`` (default) runs the heavy reductions (argmax-tracking contractions, dense
blocks, scatters, k-best selections, log-sum-exp) in Numba kernels and linear contractions in
BLAS, except operations too small to gain from a kernel, which run the numpy reference and
need no compilation (:func:`graphengine.kernels.dispatch.min_work`); ``"cuda"`` runs them in ``numba.cuda`` kernels; ``"reference"`` uses only the numpy
semiring methods. All three give the same values and backpointers (bit-identical for the
selective and counting semirings, equal up to summation order otherwise); see
:mod:`graphengine.kernels`.

NaN: a weighted semiring's value is NaN at every element with a path to the QoI through a NaN
(a NaN local derivative, or an element whose forward value is NaN), never 0 and never a finite
winner; structural semirings (count, logcount, bool) are unaffected
(:mod:`graphengine.engine.nan_paths`).

Memory: an adjoint is dropped as soon as its node has been pushed (unless retained); finished
backpointers are stored compactly (:mod:`graphengine.semirings.pointers`); a contraction whose
adjoint is 0̄ along most of the contracted axis (the output projection under a QoI that selects
one logit) reads only the live rows of its weight (:mod:`graphengine.engine.propagate`); and the
memory freed before and during the walk is returned to the operating system when the graph is
large (:mod:`graphengine.engine.heap`). Floating-point warnings are not emitted: inf and NaN are
values, and :mod:`graphengine.analysis.numerics` reports where they are.

Granularity: ``"scalar"`` (default) is exact: every ⊕ is over individual scalar edges.
``"paper"`` reproduces the original implementation (docs/granularity.md): inside one op (contractions,
broadcast reductions, scatters such as embedding lookups) path weights are *summed*, ⊕ is taken
only across different consumer nodes, and backpointers name only the consumer node. The signed
max pair orders ⟨M⁺, M⁻⟩ once per op and input, after the sum, and counts an element that the
QoI or an indexing op did not select as reached by a path of weight 0, as the original's dense
arrays did (docs/granularity.md).

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import forward, select
>>> g = Graph(); x = g.input("x", (2,)); y = g.call("mul", x, x, name="y")
>>> acts = forward(g, {"x": np.array([3.0, 4.0])})
>>> backward(g, acts, select("y", (1,))).grad("x")
array([0., 8.])
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Sequence, Union

import numpy as np

from ..errors import QoIError
from ..ir import Graph, get_op
from ..ir.dtypes import is_float
from ..kernels.dispatch import on_device
from ..progress import Progress
from ..semirings import Semiring, get_semiring
from . import heap
from .budget import check_backward
from .nan_paths import NaNReach, any_nan, poison, taint_at
from .plan import differentiable_nodes, walk_plan  # noqa: F401  (differentiable_nodes: public here)
from .propagate import Adjoint, propagate
from .qoi import QoI, parse
from .result import Backpointers, BackwardResult

RetainSpec = Union[None, str, Iterable]


def _retained(graph: Graph, retain: RetainSpec):
    """``retain`` as a :func:`~graphengine.engine.plan.walk_plan` key: ``None``, ``"all"`` or a
    frozenset of node ids."""
    if retain is None or (isinstance(retain, str) and retain == "all"):
        return retain
    if isinstance(retain, str):
        retain = [retain]
    ids = set()
    for r in retain:
        try:
            ids.add(graph.node(r).id)
        except KeyError as e:
            raise QoIError(f"cannot retain {r!r}: {e.args[0]}") from None
    return frozenset(ids)


GRANULARITIES = ("scalar", "paper")


def backward(graph: Graph, activations: Mapping[int, np.ndarray], qoi: Union[QoI, str],
             semirings: Sequence[Union[str, Semiring]] = ("real",), retain: RetainSpec = None,
             granularity: str = "scalar", keep_backpointers: bool = True, device: str = "cpu",
             prune: bool = True) -> BackwardResult:
    """Run one backward pass computing every semiring in ``semirings``.

    ``retain`` selects the nodes whose semiring values are kept: ``None`` (inputs and
    parameters), ``"all"``, or a list of node names/ids. Selective semirings keep the
    backpointers of *every* reached node (compact integer arrays, needed to walk a path) unless
    ``keep_backpointers=False``. ``granularity`` is ``"scalar"`` or ``"paper"``. ``device`` is
    ``"cpu"``, ``"cuda"`` or ``"reference"`` (raises :class:`~graphengine.kernels.dispatch.DeviceError`
    for an unknown or unavailable device).

    ``prune`` (default ``True``): adjoints are pushed only into the cone of the retained nodes,
    i.e. nodes that are retained or depend on a retained node; a node upstream of nothing
    retained contributes nothing anyone reads, so its adjoint (and, for selective semirings,
    its scatter with backpointers, e.g. into a 30522×384 word-embedding table) is never
    computed. Retained values and the paths walked from a retained node are unchanged: a path
    from a retained start node only visits that node's consumers, which lie in the cone.
    Nodes outside the cone get no value and no backpointers; ``prune=False`` reaches every
    differentiable node (the behaviour before pruning became the default).

    >>> import numpy as np
    >>> from graphengine.ir import Graph
    >>> from graphengine.engine import forward, select
    >>> g = Graph(); x = g.input("x", (2,)); w = g.parameter("w", np.ones(2))
    >>> y = g.call("mul", x, w, name="y")
    >>> r = backward(g, forward(g, {"x": np.ones(2)}), select("y", (0,)), semirings=["max"], retain=["x"])
    >>> sorted(g.nodes[i].name for i in r.by_semiring["max"].backpointers)
    ['x', 'y']
    >>> r = backward(g, forward(g, {"x": np.ones(2)}), select("y", (0,)), semirings=["max"], retain=["x"],
    ...              prune=False)
    >>> sorted(g.nodes[i].name for i in r.by_semiring["max"].backpointers)
    ['w', 'x', 'y']
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    srs = [get_semiring(s) for s in semirings]
    large = heap.large(graph)
    if large:
        heap.release()  # what an earlier result, since dropped, left in the heap
    try:
        with np.errstate(all="ignore"):
            return _walk(graph, activations, qoi, srs, retain, granularity, keep_backpointers, device, prune)
    finally:
        if large:
            heap.release()  # the walk's freed adjoints: back to the OS, not kept as resident memory


def _walk(graph, activations, qoi, srs, retain, granularity, keep_backpointers, device, prune) -> BackwardResult:
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
    result_coef, _ = qoi.coefficients(qnode.shape)
    plan = walk_plan(graph, qnode.id, _retained(graph, retain), prune)
    keep, needs = plan.keep, plan.needs
    check_backward(graph, srs, keep, needs, keep_backpointers)
    result = BackwardResult(graph, qnode.id, srs, granularity, activations)
    result.cone = plan.cone
    result.qoi_coefficients = result_coef
    reach = NaNReach() if any_nan(activations, plan.read) else None
    reach_values: Dict[int, np.ndarray] = {}
    if reach is not None:
        outer[reach.name] = inner[reach.name] = reach
        srs = srs + [reach]
    lanes = [(s, s.name, inner[s.name], outer[s.name], len(s.components), s is reach) for s in srs]
    kept_values = {s.name: result.by_semiring[s.name].values for s in srs if s is not reach}
    kept_pointers = {s.name: result.by_semiring[s.name].backpointers for s in srs if s is not reach}

    adjoints: Dict[int, Dict[str, Adjoint]] = {}
    pointers: Dict[int, Dict[str, Backpointers]] = {}
    adjoints[qnode.id] = {s.name: Adjoint(qoi.seed(inner[s.name], qnode.shape)) for s in srs}
    pointers[qnode.id] = {s.name: s.pointers.empty(qnode.shape, len(s.components)) for s in srs}

    bar = Progress(len(plan.steps), "backward", unit="nodes", after=1.0)  # silent unless the walk takes > 1 s
    for step in plan.steps:
        bar.update()
        node = step.node
        nid = node.id
        state = adjoints.pop(nid, None)
        bps = pointers.pop(nid, {})
        if state is None:
            continue
        if reach is not None:
            state[reach.name] = Adjoint(taint_at(state[reach.name].value, activations[nid]))
            if step.kept:
                reach_values[nid] = state[reach.name].value[0]
        for s, name, _, _, _, is_reach in lanes:
            if is_reach:
                continue
            if step.kept:
                kept_values[name][nid] = state[name].value
            if step.kept or keep_backpointers:
                record = s.pointers.finish(state[name].value, s.zero_elements, bps.get(name))
                if record is not None:
                    kept_pointers[name][nid] = record
        if step.leaf or not step.pushes:
            continue
        opdef = get_op(node.op)
        xs = [activations[i] for i in node.inputs]
        y = activations[nid]
        starts = [Adjoint(state[name].value, plan.seed(sr_in.pointers, node.shape, n))
                  for _, name, sr_in, _, n, _ in lanes]
        for slot, inp, in_shape in step.pushes:
            structure = opdef.jacobian(slot, xs, y, node.attrs)
            if structure is None:
                continue
            for (s, name, sr_in, sr_out, _, _), start in zip(lanes, starts):
                contrib = propagate(structure, start, in_shape, sr_in)
                factor = s.edge_factor(node, slot)
                if factor is not None:
                    contrib = Adjoint(s.times(contrib.value, factor), contrib.idx)
                _accumulate(adjoints, pointers, inp, sr_out, contrib, nid, slot)
    bar.close()
    if reach is not None:
        for s in srs[:-1]:
            kept = result.by_semiring[s.name].values
            for nid in kept:
                kept[nid] = poison(s, kept[nid], reach_values[nid])
    return result


def _accumulate(adjoints, pointers, inp: int, s: Semiring, contrib: Adjoint, consumer: int, slot: int) -> None:
    """⊕ ``contrib`` (from ``consumer`` through ``slot``) into the adjoint of ``inp``; the
    semiring's backpointer policy records the winners."""
    entry = adjoints.setdefault(inp, {})
    old = entry.get(s.name)
    n = len(s.components)
    if old is None:
        entry[s.name] = Adjoint(contrib.value)
        record = s.pointers.first(consumer, slot, contrib.idx, contrib.shape, n)
    else:
        value, picks = s.plus(old.value, contrib.value)
        entry[s.name] = Adjoint(value)
        record = s.pointers.merge(pointers.get(inp, {}).get(s.name), consumer, slot, contrib.idx, picks,
                                  contrib.shape, n)
    if record is not None:
        pointers.setdefault(inp, {})[s.name] = record
