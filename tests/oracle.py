"""Brute-force oracle: expand a graph into its explicit scalar gradient graph and enumerate
every path to the QoI.

Edge weights are each op's local derivatives (the real-semiring rows of its declared Jacobian
structure, which tests/test_ops_fd.py checks against finite differences); the edge set is the
structure's declared dependence pattern (one-hot rows in the counting semiring). The path
statistics below are then computed directly from the enumerated path products — no semiring
code is involved.
"""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

import networkx as nx
import numpy as np

from graphengine.engine.backward import differentiable_nodes
from graphengine.engine.propagate import Adjoint, propagate
from graphengine.ir import get_op
from graphengine.semirings import Counting, Real

Vertex = Tuple[int, int]


def scalar_graph(graph, acts) -> nx.MultiDiGraph:
    """Vertices (node id, flat element); edges u→v with ``weight`` and ``slot``."""
    g = nx.MultiDiGraph()
    needs = differentiable_nodes(graph)
    for n in graph.nodes:
        for e in range(n.size):
            g.add_node((n.id, e))
    for v in graph.nodes:
        if v.op in ("input", "parameter", "constant"):
            continue
        xs = [acts[i] for i in v.inputs]
        for slot, u in enumerate(v.inputs):
            if not needs[u]:
                continue
            st = get_op(v.op).jacobian(slot, xs, acts[v.id], v.attrs)
            if st is None:
                continue
            in_shape = graph.nodes[u].shape
            for y in range(v.size):
                seed = np.zeros(v.shape); seed.flat[y] = 1.0
                w = propagate(st, Adjoint((seed,)), in_shape, Real()).value[0].reshape(-1)
                c = propagate(st, Adjoint((seed,)), in_shape, Counting()).value[0].reshape(-1)
                for x in np.nonzero(c)[0]:
                    assert c[x] == 1
                    g.add_edge((u, int(x)), (v.id, y), weight=float(w[x]), slot=slot)
    return g


def enumerate_paths(sg: nx.MultiDiGraph, sinks: Dict[Vertex, float], limit: int = 200_000):
    """For every vertex: the list of (product, vertex sequence) over all paths to a sink; the
    sink's coefficient multiplies the product."""
    memo: Dict[Vertex, List[Tuple[float, Tuple[Vertex, ...]]]] = {}
    order = list(reversed(list(nx.topological_sort(sg))))
    total = 0
    for v in order:
        paths = []
        if v in sinks:
            paths.append((sinks[v], (v,)))
        for _, nxt, data in sg.out_edges(v, data=True):
            for prod, seq in memo.get(nxt, ()):
                paths.append((data["weight"] * prod, (v,) + seq))
        memo[v] = paths
        total += len(paths)
        assert total < limit, "program too large for enumeration"
    return memo


def kbest(paths, k: int, magnitude: bool) -> List[float]:
    """Top-k (desc) then, for the signed variant, the k smallest of the rest (asc), padded with
    ∓inf: the k-best semirings' components."""
    p = sorted((abs(q) if magnitude else q for q, _ in paths), reverse=True)
    top = p[:k] + [-math.inf] * (k - len(p[:k]))
    if magnitude:
        return top
    rest = sorted(p[k:])[:k]
    return top + rest + [math.inf] * (k - len(rest))


def statistics(paths) -> Dict[str, float]:
    """Every semiring's value, computed directly from the path products."""
    p = np.array([q for q, _ in paths], dtype=np.float64)
    n = len(p)
    a = np.abs(p)
    Z = a.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        R = float(-np.sum(np.where(a > 0, a * np.log(np.where(a > 0, a, 1)), 0.0)))
    H = R / Z + math.log(Z) if Z > 0 else 0.0
    return {
        "real": float(p.sum()) if n else 0.0,
        "absolute": float(Z),
        "log": math.log(Z) if Z > 0 else -math.inf,
        "max": float(p.max()) if n else -math.inf,
        "min": float(p.min()) if n else math.inf,
        "maxabs": float(a.max()) if n else 0.0,
        "maxplus": math.log(a.max()) if n and a.max() > 0 else -math.inf,
        "entropy": H,
        "logentropy": H if Z > 0 else 0.0,
        "count": float(n),
        "logcount": math.log(n) if n else -math.inf,
        "bool": n > 0,
        "signedmass": float(p[p > 0].sum()),
        "pathlength": float(np.sum(a * lengths(paths)) / Z) if Z > 0 else math.nan,
    }


def lengths(paths) -> np.ndarray:
    """The number of edges of each enumerated path."""
    return np.array([len(seq) - 1 for _, seq in paths], dtype=np.float64)


def feature_moments(paths, feature) -> Tuple[float, float]:
    """Mean and variance of the additive feature ``Σ feature(u, v)`` over consecutive vertices,
    under p(path) ∝ |product| (NaN where no path has a non-zero product)."""
    a = np.abs([q for q, _ in paths])
    if a.sum() == 0:
        return math.nan, math.nan
    F = np.array([sum(feature(u, v) for u, v in zip(seq, seq[1:])) for _, seq in paths], dtype=np.float64)
    mean = float(np.sum(a * F) / a.sum())
    return mean, float(np.sum(a * (F - mean) ** 2) / a.sum())
