"""Dead-node pruning and renaming: copy the part of a graph that its outputs depend on.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> g = Graph(); x = g.input("x", (2,)); dead = g.call("exp", x); y = g.call("tanh", x, name="t")
>>> g.mark_output(y)
>>> h = prune(g, rename={y.id: "y"})
>>> [n.name for n in h], h.outputs
(['x', 'y'], [1])
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional

from ..graph import Graph


def live_nodes(graph: Graph, roots: Iterable[int]) -> set:
    """Ids of ``roots`` and of every node they depend on."""
    live = set()
    stack = list(roots)
    while stack:
        nid = stack.pop()
        if nid in live:
            continue
        live.add(nid)
        stack.extend(graph.nodes[nid].inputs)
    return live


def unique_name(name: str, taken: set) -> str:
    """``name``, or ``name_1``, ``name_2``... whichever is not in ``taken`` (which is updated)."""
    out, k = name, 0
    while out in taken:
        k += 1
        out = f"{name}_{k}"
    taken.add(out)
    return out


def prune(graph: Graph, keep_inputs: bool = True, rename: Optional[Dict[int, str]] = None) -> Graph:
    """A copy of ``graph`` holding only the nodes its outputs depend on.

    ``keep_inputs`` keeps every ``input`` node (so the feeds a caller prepared stay valid even
    for an input the outputs ignore). ``rename`` maps node ids to new names; a name that would
    clash with another node's is made unique with a ``_k`` suffix.
    """
    rename = dict(rename or {})
    roots = list(graph.outputs)
    if keep_inputs:
        roots += [n.id for n in graph.nodes if n.op == "input"]
    live = live_nodes(graph, roots)
    out = Graph(meta=dict(graph.meta))
    taken = {graph.nodes[i].name for i in live if i not in rename}
    new_id: Dict[int, int] = {}
    for node in graph.nodes:
        if node.id not in live:
            continue
        name = unique_name(rename[node.id], taken) if node.id in rename else node.name
        new = out.add(node.op, [new_id[i] for i in node.inputs], dict(node.attrs), name=name, scope=node.scope,
                      array=graph.arrays.get(node.id))
        new_id[node.id] = new.id
    out.outputs = [new_id[o] for o in graph.outputs]
    return out
