"""Walking element backpointers from a vertex to the QoI.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import forward, backward
>>> g = Graph(); x = g.input("x", (2,)); w = g.constant(np.array([[2.0, -3.0]]))
>>> y = g.call("mul", x, w, name="y"); s = g.call("sum", y, name="s")
>>> from graphengine.engine import select
>>> r = backward(g, forward(g, {"x": np.ones(2)}), select("s", ()), semirings=["max"])
>>> p = top_path(r, "x", (1,))
>>> [st.name for st in p.steps], p.weight, p.value
(['x', 'y', 's'], -3.0, -3.0)

``weight`` is the product of the local derivatives along the path and ``value`` the semiring's
stored value where the path starts (when that node was retained); they agree through the
semiring's lift: ``value == lift(weight)`` in the path's component (``maxplus``: ``log|weight|``,
``maxabs``: ``|weight|``). Infinite weights are paths like any other: ``−log x`` at ``x = 0``
has a path of weight −∞. An element whose stored value is NaN (a path through a NaN, see
:mod:`graphengine.engine.nan_paths`) has no best path: asking for one raises ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..engine.result import BackwardResult
from ..ir import get_op


@dataclass
class PathStep:
    node: int
    name: str
    scope: str
    element: Tuple[int, ...]
    local_derivative: Optional[float]  # of the edge to the next step (None at the QoI)


@dataclass
class Path:
    steps: List[PathStep]
    weight: float      # the product of the local derivatives (and the QoI coefficient)
    semiring: str
    component: str
    value: Optional[float] = None  # the semiring's stored value at the start (None: not retained)

    def __len__(self):
        return len(self.steps)

    def to_networkx(self):
        """A path graph: vertices ``(node name, element)`` with scope, edges with ``weight``."""
        import networkx as nx

        g = nx.DiGraph()
        for st in self.steps:
            g.add_node((st.name, st.element), node=st.node, scope=st.scope)
        for a, b in zip(self.steps, self.steps[1:]):
            g.add_edge((a.name, a.element), (b.name, b.element), weight=a.local_derivative)
        return g

    def scopes(self) -> List[str]:
        return [st.scope for st in self.steps]


def local_derivative(result: BackwardResult, consumer: int, slot: int, y: int, x: int) -> float:
    """∂consumer[y] / ∂input[x] for the input in ``slot`` (flat indices): the ``entry`` of the
    op's declared Jacobian structure (:mod:`graphengine.ir.jacobian`) at the stored activations.

    0.0 when that element pair is not an edge of the graph; NaN when either end's forward value
    is NaN (the rule of :mod:`graphengine.engine.nan_paths`, whatever the op's formula gives).
    """
    graph, acts = result.graph, result.activations
    node = graph.nodes[consumer]
    xs = [acts[i] for i in node.inputs]
    with np.errstate(all="ignore"):
        structure = get_op(node.op).jacobian(slot, xs, acts[consumer], node.attrs)
        if structure is None:
            return 0.0
        w = structure.entry(y, x, node.shape, graph.nodes[node.inputs[slot]].shape)
    if _is_nan(acts[consumer], y) or _is_nan(xs[slot], x):
        return float("nan")
    return w


def _is_nan(a, flat: int) -> bool:
    a = np.asarray(a)
    return bool(np.issubdtype(a.dtype, np.floating) and np.isnan(a.reshape(-1)[flat]))


def top_path(result: BackwardResult, node, index: Sequence[int], semiring: Optional[str] = None,
             component: int = 0) -> Path:
    """The best path (in ``semiring``'s ``component``, e.g. M⁺) from ``node[index]`` to the QoI.

    Needs a ``scalar``-granularity result of a selective semiring (max, maxabs, maxplus, bool,
    kbest:K — whose ``component`` is the rank).
    """
    if result.granularity != "scalar":
        raise ValueError("paper-granularity backpointers name only consumer nodes, not elements; "
                         "run backward(..., granularity='scalar') to recover element paths")
    sres = result.semiring_result(semiring)
    sr = sres.semiring
    if not sr.selective:
        raise ValueError(f"semiring '{sr.name}' keeps no backpointers (use max, maxabs, maxplus or bool)")
    graph = result.graph
    u = graph.node(node).id
    x = int(np.ravel_multi_index(tuple(index), graph.nodes[u].shape)) if graph.nodes[u].shape else 0
    qnode = graph.nodes[result.qoi_node]
    coef = result.qoi_coefficients
    value = float(np.asarray(sres.values[u][component]).reshape(-1)[x]) if u in sres.values else None
    if value is not None and np.isnan(value):
        raise ValueError(f"no best path from {graph.nodes[u].name}{list(index)} in {sr.name}: its value is NaN "
                         "(a path from it passes through a NaN)")
    steps: List[PathStep] = []
    weight, c = 1.0, component
    while True:
        n = graph.nodes[u]
        elem = tuple(int(i) for i in np.unravel_index(x, n.shape)) if n.shape else ()
        if u == qnode.id:
            steps.append(PathStep(u, n.name, n.scope, elem, None))
            with np.errstate(all="ignore"):
                weight *= float(coef.flat[x])
            break
        bp = sres.backpointers.get(u)
        if bp is None and not steps and result.pruned_away(u):
            raise ValueError(f"{n.name} is outside the cone of the retained nodes, which backward walks by "
                             f"default: retain it, or run backward(..., prune=False)")
        if bp is None or bp.node[c].flat[x] < 0:
            raise ValueError(f"no path from {n.name}{list(elem)} to the QoI")
        v, slot, y = int(bp.node[c].flat[x]), int(bp.slot[c].flat[x]), int(bp.element[c].flat[x])
        w = local_derivative(result, v, slot, y, x)
        steps.append(PathStep(u, n.name, n.scope, elem, w))
        with np.errstate(all="ignore"):
            weight *= w
        c = int(bp.rank[c].flat[x]) if bp.rank is not None else sr.next_component(c, w)
        u, x = v, y
    return Path(steps, weight, sr.name, sr.components[component], value)


def k_best_paths(result: BackwardResult, node, index: Sequence[int], semiring: Optional[str] = None) -> List[Path]:
    """The k best paths from ``node[index]`` to the QoI, best first, from a ``kbest:K`` (signed)
    or ``kbestabs:K`` (magnitude) result; fewer when fewer paths exist. Raises ``ValueError``
    where the values are NaN (a path through a NaN), as :func:`top_path` does."""
    sres = result.semiring_result(semiring)
    if not getattr(sres.semiring, "cross_components", False):
        raise ValueError(f"semiring '{sres.semiring.name}' is not a k-best semiring (use kbest:K or kbestabs:K)")
    nid = result.graph.node(node).id
    top = sres.values[nid] if nid in sres.values else None
    flat = int(np.ravel_multi_index(tuple(index), result.graph.nodes[nid].shape)) if result.graph.nodes[nid].shape else 0
    out = []
    for rank in range(sres.semiring.k):
        bp = sres.backpointers.get(nid)
        if bp is None or (nid != result.qoi_node and bp.node[rank].flat[flat] < 0):
            break
        if top is not None and np.isinf(top[rank].flat[flat]):   # a missing entry (NaN: top_path raises)
            break
        out.append(top_path(result, nid, index, sres.semiring.name, component=rank))
    return out


def best_input_path(result: BackwardResult, semiring: Optional[str] = None, nodes=None,
                    component: int = 0) -> Path:
    """The best path from any element of any input (or of ``nodes``) to the QoI, in ``component``
    (for the signed max pair, ``component=1`` gives the most negative path)."""
    sres = result.semiring_result(semiring)
    graph = result.graph
    ids = [graph.node(n).id for n in nodes] if nodes is not None else \
        [n.id for n in graph.nodes if n.op == "input" and n.id in sres.values]
    sign = 1.0 if sres.semiring.zero_elements[component] == -np.inf or component == 0 else -1.0
    start = best_start(result, ids, semiring, sign, component)
    if start is None:
        raise ValueError("no input reaches the QoI")
    return top_path(result, start[0], start[1], semiring, component)


def best_start(result: BackwardResult, ids, semiring: Optional[str] = None, sign: float = 1.0, component: int = 0):
    """``(node id, index)`` of the element of the nodes ``ids`` with the largest ``sign`` × value
    in ``component`` among the elements that have a path (the semiring's ``is_zero`` is false:
    a path of weight ±∞ counts), or None when none has one. Raises ``ValueError`` when one of
    them is NaN: the best over a set of paths including a NaN one is not defined."""
    sres = result.semiring_result(semiring)
    best = None
    for nid in ids:
        if nid not in sres.values:
            continue
        value = sres.values[nid]
        v = sign * np.asarray(value[component], dtype=np.float64).reshape(-1)
        alive = ~np.asarray(sres.semiring.is_zero(value)).reshape(-1)
        if np.isnan(v[alive]).any():
            raise ValueError(f"no best path in {sres.semiring.name}: {int(np.isnan(v[alive]).sum()):,} element(s) "
                             f"of '{result.graph.nodes[nid].name}' have the value NaN (a path through a NaN)")
        if not alive.any():
            continue
        i = int(np.flatnonzero(alive)[np.argmax(v[alive])])
        shape = np.shape(value[component])
        if best is None or v[i] > best[0]:
            best = (v[i], nid, np.unravel_index(i, shape) if shape else ())
    return None if best is None else best[1:]
