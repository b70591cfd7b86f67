"""One analysis, as a JSON-able report: per-node summaries of each semiring's statistic and the
best path(s) to the QoI. This is what ``graphengine analyze`` prints and writes.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import forward
>>> g = Graph(); x = g.input("x", (1, 2)); W = g.parameter("W", np.array([[1.0, 1.0], [2.0, -3.0]]))
>>> h = g.call("linear", x, W, name="h"); q = g.call("sum", h, name="q")
>>> from graphengine.engine import select
>>> rep = analyze(g, forward(g, {"x": np.ones((1, 2))}), select("q", ()), ["max", "entropy"])
>>> rep["paths"]["max"][0]["weight"], [s["name"] for s in rep["paths"]["max"][0]["steps"]]
(2.0, ['x', 'h', 'q'])
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from ..engine import backward
from ..engine.qoi import QoI, parse
from ..ir.dtypes import is_float
from ..paths import Path, best_start, k_best_paths, top_path
from ..semirings import get_semiring
from .numerics import numerics_report


def _finite_stats(a: np.ndarray) -> Dict[str, float]:
    a = np.asarray(a, dtype=np.float64)
    fin = a[np.isfinite(a)]
    if fin.size == 0:
        return {"elements": int(a.size), "finite": 0}
    i = int(np.flatnonzero(np.isfinite(a.reshape(-1)))[np.argmax(fin)])
    return {"elements": int(a.size), "finite": int(fin.size), "min": float(fin.min()), "max": float(fin.max()),
            "mean": float(fin.mean()), "argmax": [int(v) for v in np.unravel_index(i, a.shape)] if a.shape else []}


def path_to_dict(path: Path) -> Dict:
    return {"semiring": path.semiring, "component": path.component, "weight": float(path.weight),
            "value": None if path.value is None else float(path.value),
            "steps": [{"node": st.node, "name": st.name, "scope": st.scope, "element": list(st.element),
                       "local_derivative": st.local_derivative} for st in path.steps]}


def default_nodes(graph) -> List[int]:
    """What ``analyze`` summarizes when not told: the float inputs and the token-embedding
    outputs (``embedding`` lookups whose indices are a graph input, e.g. ``input_ids``), the
    places where a language model's input enters; a graph with neither (no float input, no
    token lookup) falls back to its float parameters. Parameters are not listed by default: a
    transformer has hundreds, and their statistics pool over the whole batch.

    >>> import numpy as np
    >>> from graphengine.ir import Graph
    >>> g = Graph(); ids = g.input("ids", (1, 3), dtype="int64")
    >>> e = g.call("embedding", g.parameter("table", np.eye(4)), ids, name="tok")
    >>> [g.nodes[i].name for i in default_nodes(g)]
    ['tok']
    """
    ins = [n.id for n in graph.nodes if n.op == "input" and is_float(n.dtype)]
    lookups = [n.id for n in graph.nodes if n.op == "embedding" and graph.nodes[n.inputs[1]].op == "input"]
    if ins or lookups:
        return ins + lookups
    return [n.id for n in graph.nodes if n.op == "parameter" and is_float(n.dtype)]


def analyze(graph, activations, qoi, semirings: Sequence[str], granularity: str = "scalar",
            nodes: Optional[Sequence] = None, starts: Optional[Sequence] = None) -> Dict:
    """Run one backward pass and summarize it.

    ``nodes``: nodes to summarize (default: :func:`default_nodes`); ``starts``: nodes whose
    elements may start a reported path (default: float inputs, else every summarized node).

    ``paths[semiring]`` is empty when no start element has a path, or when one has the value
    NaN (the best path is then undefined; ``path_notes[semiring]`` says why). ``numerics`` is
    :func:`graphengine.analysis.numerics.numerics_report` of the pass.
    """
    with np.errstate(all="ignore"):
        return _analyze(graph, activations, qoi, semirings, granularity, nodes, starts)


def _analyze(graph, activations, qoi, semirings, granularity, nodes, starts) -> Dict:
    if isinstance(qoi, str):
        qoi = parse(qoi)
    srs = [get_semiring(s) for s in semirings]
    summarized = [graph.node(n).id for n in nodes] if nodes else default_nodes(graph)
    if starts:
        start_ids = [graph.node(n).id for n in starts]
    else:
        start_ids = [i for i in summarized if graph.nodes[i].op == "input"] or list(summarized)
    result = backward(graph, activations, qoi, semirings=srs, retain=sorted(set(summarized) | set(start_ids)),
                      granularity=granularity)
    qnode = graph.node(qoi.node)
    coef, mask = qoi.coefficients(qnode.shape)
    report = {"qoi": {"node": qnode.name, "terms": [[list(i), c] for i, c in qoi.terms],
                      "value": float(np.sum(coef[mask] * np.asarray(activations[qnode.id], np.float64)[mask]))},
              "granularity": granularity, "semirings": [s.name for s in srs], "nodes": {}, "paths": {},
              "path_notes": {}}
    for nid in summarized:
        node = graph.nodes[nid]
        entry = {"scope": node.scope, "shape": list(node.shape)}
        for s in srs:
            if nid not in result.by_semiring[s.name].values:
                entry[s.name] = None  # no path to the QoI
                continue
            comps = result.components(nid, s.name)
            entry[s.name] = {k: _finite_stats(v) for k, v in comps.items()}
            if s.is_entropy:
                value = result.raw(nid, s.name)
                pooled = s.finalize(tuple(np.atleast_1d(c) for c in
                                          s.sum_last(tuple(c.reshape(1, -1) for c in value))[0]))
                entry[s.name]["whole_node_entropy"] = float(pooled["entropy"][0])
        report["nodes"][node.name] = entry
    if granularity == "scalar":
        for s in srs:
            if not s.selective:
                continue
            sign = -1.0 if s.directions[:1] == ("min",) else 1.0
            try:
                start = best_start(result, start_ids, s.name, sign)
            except ValueError as e:
                report["paths"][s.name] = []
                report["path_notes"][s.name] = str(e)
                continue
            if start is None:
                report["paths"][s.name] = []
                continue
            if s.cross_components:
                paths = k_best_paths(result, start[0], start[1], s.name)
            else:
                paths = [top_path(result, start[0], start[1], s.name)]
            report["paths"][s.name] = [path_to_dict(p) for p in paths]
    report["numerics"] = numerics_report(result, activations, summarized)
    return report
