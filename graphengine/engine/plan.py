"""The walk plan: what a backward walk needs to know that does not depend on the example.

Which nodes the walk visits (in reverse topological order), which of their inputs it pushes
into (slot, input id, input shape), which nodes are retained, the differentiable cone and the
index seeds of the backpointer policies depend only on the graph, the QoI node, the retained set
and ``prune``. :func:`walk_plan` computes them once and caches the :class:`WalkPlan` per graph
(weakly: the cache dies with the graph), so a second backward pass over the same graph, e.g. the
next example of a data set, spends no Python time on them. Activations, Jacobian structures and
semiring values are never cached.

The cache assumes what the :class:`~graphengine.ir.Graph` API guarantees: nodes are only
appended (or a suffix removed with ``truncate``), never edited in place. A plan is reused only
while the graph still has the same number of nodes and the same last node and QoI node objects;
any append or truncation gives a fresh plan.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> g = Graph(); x = g.input("x", (2,)); w = g.parameter("w", np.ones(2))
>>> y = g.call("mul", x, w, name="y"); z = g.call("sum", y, name="z")
>>> p = walk_plan(g, z.id, None, prune=True)
>>> [(s.node.name, [g.nodes[i].name for _, i, _ in s.pushes]) for s in p.steps]
[('z', ['y']), ('y', ['x', 'w']), ('w', []), ('x', [])]
>>> walk_plan(g, z.id, None, prune=True) is p
True
>>> [s.node.name for s in walk_plan(g, z.id, {x.id}, prune=True).steps]   # w is outside the cone
['z', 'y', 'x']
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Tuple, Union

import numpy as np

from ..ir import Graph
from ..ir.dtypes import is_float
from ..ir.graph import Node

LEAVES = ("input", "parameter", "constant")
Keep = Union[None, str, FrozenSet[int]]
PLANS_PER_GRAPH = 16  # distinct (QoI node, retained set, prune) plans kept per graph, least recent dropped


def differentiable_nodes(graph: Graph) -> np.ndarray:
    """``needs[i]``: node i is floating point and depends on an input or parameter."""
    needs = np.zeros(len(graph), dtype=bool)
    for n in graph.nodes:
        if not is_float(n.dtype):
            continue
        needs[n.id] = n.op in ("input", "parameter") or any(needs[i] for i in n.inputs)
    return needs


def upstream_of(graph: Graph, keep) -> np.ndarray:
    """``cone[i]``: some node in ``keep`` is node i or one of its ancestors."""
    cone = np.zeros(len(graph), dtype=bool)
    for n in graph.nodes:
        cone[n.id] = n.id in keep or any(cone[i] for i in n.inputs)
    return cone


@dataclass(frozen=True)
class Step:
    """One visited node: ``pushes`` lists ``(slot, input id, input shape)`` for every input the
    adjoint is pushed into (differentiable and, when pruning, in the cone); empty for leaves."""

    node: Node
    kept: bool
    leaf: bool
    pushes: Tuple[Tuple[int, int, Tuple[int, ...]], ...]


class WalkPlan:
    """The example-independent part of one backward walk (see the module docstring).

    ``steps`` are the nodes that can receive an adjoint from the QoI node, QoI first, in reverse
    topological order; ``needs`` is the differentiable mask (restricted to ``cone`` when
    pruning); ``keep`` the retained node ids; ``read`` the nodes whose activations the walk
    reads (the visited nodes and the inputs of those that push), the only ones where a NaN can
    reach a path.
    """

    def __init__(self, graph: Graph, qnode: int, keep: Keep, prune: bool):
        if keep is None:
            keep = frozenset(n.id for n in graph.nodes if n.op in ("input", "parameter"))
        elif keep == "all":
            keep = frozenset(range(len(graph.nodes)))
        self.qnode, self.keep, self.prune = qnode, keep, prune
        self.length = len(graph.nodes)
        self._last = graph.nodes[-1] if graph.nodes else None
        self._qnode_obj = graph.nodes[qnode]
        needs = differentiable_nodes(graph)
        self.cone = upstream_of(graph, keep) if prune else None
        self.needs = needs & self.cone if prune else needs
        for a in (self.needs, self.cone):
            if a is not None:
                a.setflags(write=False)  # shared by every result walked with this plan
        reached = np.zeros(len(graph), dtype=bool)
        reached[qnode] = True
        steps: List[Step] = []
        for nid in range(qnode, -1, -1):
            if not reached[nid]:
                continue
            node = graph.nodes[nid]
            leaf = node.op in LEAVES
            pushes = () if leaf else tuple((slot, inp, tuple(graph.nodes[inp].shape))
                                           for slot, inp in enumerate(node.inputs) if self.needs[inp])
            for _, inp, _ in pushes:
                reached[inp] = True
            steps.append(Step(node, nid in keep, leaf, pushes))
        self.steps = tuple(steps)
        read = {s.node.id for s in steps}
        read.update(i for s in steps if s.pushes for i in s.node.inputs)
        self.read = tuple(sorted(read))
        self._seeds: Dict[tuple, tuple] = {}

    def valid_for(self, graph: Graph) -> bool:
        """Is the graph still the one this plan was made for (same nodes, see the module docstring)?"""
        nodes = graph.nodes
        return (len(nodes) == self.length and (nodes[-1] if nodes else None) is self._last
                and nodes[self.qnode] is self._qnode_obj)

    def seed(self, policy, shape, n: int):
        """``policy.seed(shape, n)``, computed once per policy, shape and component count; the
        arrays are read-only (the walk only reads and moves them)."""
        key = (type(policy), tuple(shape), n)
        out = self._seeds.get(key)
        if out is None and key not in self._seeds:
            out = policy.seed(shape, n)
            if out is not None:
                for a in out:
                    a.setflags(write=False)
            self._seeds[key] = out
        return out


_PLANS: "weakref.WeakKeyDictionary[Graph, OrderedDict]" = weakref.WeakKeyDictionary()


def walk_plan(graph: Graph, qnode: int, keep: Keep, prune: bool) -> WalkPlan:
    """The cached :class:`WalkPlan` for walking ``graph`` back from node ``qnode``, retaining the
    ids in ``keep`` (``None``: inputs and parameters; ``"all"``: every node), pruned to their
    cone or not."""
    key = (int(qnode), keep if keep is None or keep == "all" else frozenset(keep), bool(prune))
    plans = _PLANS.setdefault(graph, OrderedDict())
    plan = plans.get(key)
    if plan is not None and plan.valid_for(graph):
        plans.move_to_end(key)
        return plan
    plan = WalkPlan(graph, *key)
    plans[key] = plan
    while len(plans) > PLANS_PER_GRAPH:
        plans.popitem(last=False)
    return plan
