"""Synthetic graphs with known answers, for the ``synthetic-*`` experiments (:mod:`graphengine.experiments`).

Every generator builds a *layered* DAG: an input ``x`` of shape ``(1, widths[0])`` followed by
``L = len(widths) - 1`` ``linear`` layers ``h1 … hL`` (``linear(h, W) = h @ W.T``, so layer ``k``
has a weight matrix ``Wk`` of shape ``(widths[k], widths[k-1])``). Optional skip connections
add an earlier layer into a later one with an ``add`` node. The QoI used throughout is the sum of
the output units (:func:`output_qoi`), so a path is any sequence of units, one per layer, from an
input unit to an output unit.

The reference quantities here (:func:`unit_graph`, :func:`count_paths`, :func:`enumerate_paths`)
never call the engine: they are the independent side of the checks.

>>> import numpy as np
>>> from graphengine.engine import backward, forward
>>> dag = layered_dag([2, 3, 2], weights=1.0)
>>> r = backward(dag.graph, forward(dag.graph, dag.feeds), output_qoi(dag.graph, dag.output),
...              semirings=["count"])
>>> r.get("x", "count").tolist(), count_paths([2, 3, 2])
([[6.0, 6.0]], 12)
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..engine.qoi import QoI, weighted
from ..ir import Graph

Skip = Tuple[int, int]
WeightSpec = Union[None, float, Sequence[np.ndarray]]


class LayeredDAG(NamedTuple):
    """What :func:`layered_dag` returns: the graph, its feeds and the name of the output node."""

    graph: Graph
    feeds: Dict[str, np.ndarray]
    output: str


class PlantedPath(NamedTuple):
    """What :func:`planted_path` returns. ``path[k]`` is the planted unit of layer ``k``
    (``path[0]`` an input unit, ``path[-1]`` an output unit)."""

    graph: Graph
    feeds: Dict[str, np.ndarray]
    output: str
    path: Tuple[int, ...]
    weights: List[np.ndarray]


def random_weights(widths: Sequence[int], rng: np.random.Generator, low: float = 0.1,
                   high: float = 0.5, signs: str = "random") -> List[np.ndarray]:
    """One ``(widths[k], widths[k-1])`` matrix per layer with magnitudes uniform in
    ``[low, high]`` and random (``signs="random"``) or positive (``"positive"``) signs.

    >>> [w.shape for w in random_weights([3, 4, 2], np.random.default_rng(0))]
    [(4, 3), (2, 4)]
    """
    if signs not in ("random", "positive"):
        raise ValueError(f"signs must be 'random' or 'positive', got {signs!r}")
    out = []
    for d_in, d_out in zip(widths[:-1], widths[1:]):
        w = rng.uniform(low, high, size=(d_out, d_in))
        if signs == "random":
            w *= rng.choice([-1.0, 1.0], size=w.shape)
        out.append(w)
    return out


def _check_skips(widths: Sequence[int], skips: Iterable[Skip]) -> List[Skip]:
    L = len(widths) - 1
    out = []
    for src, dst in skips:
        src, dst = int(src), int(dst)
        if not (0 <= src and src + 2 <= dst <= L):
            raise ValueError(f"skip ({src}, {dst}) must satisfy 0 <= src and src + 2 <= dst <= {L}")
        out.append((src, dst))
    return sorted(set(out))


def layered_dag(widths: Sequence[int], weights: WeightSpec = None, *,
                rng: Optional[np.random.Generator] = None, low: float = 0.1, high: float = 0.5,
                signs: str = "random", skips: Iterable[Skip] = (), weights_as: str = "parameter",
                x: Optional[np.ndarray] = None) -> LayeredDAG:
    """A chain of ``linear`` layers of the given widths (``widths[0]`` is the input width).

    ``weights`` is a list of ``(widths[k], widths[k-1])`` arrays, one per layer, a single float
    (every edge of every layer, skip projections included, gets that weight), or ``None``: drawn
    by :func:`random_weights` from ``rng`` with ``low``, ``high`` and ``signs``.

    ``skips`` is a list of ``(src, dst)`` layer pairs (``src + 2 <= dst``; layer 0 is the
    input): layer ``dst`` becomes ``add(linear(h[dst-1], W), s)`` where ``s`` is ``h[src]``
    itself when the widths agree (identity edges of weight 1), else a projection
    ``linear(h[src], P)`` named ``skip{src}_{dst}`` whose weights follow ``weights`` (the same
    float, or drawn from ``rng``; with a list of layer weights, ``P`` is drawn from ``rng``).
    Node names: ``x``, ``W1 … WL`` (parameters, or constants with ``weights_as="constant"``),
    ``h1 … hL`` (layer outputs) and ``h{k}_lin`` for the linear part of a layer with skips.
    Each layer's nodes have scope ``layer.{k}``.

    >>> dag = layered_dag([2, 2, 2], weights=0.5, skips=[(0, 2)])
    >>> [n.name for n in dag.graph], dag.output
    (['x', 'W1', 'h1', 'W2', 'h2_lin', 'h2'], 'h2')
    """
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"need at least an input and one layer of positive widths, got {widths}")
    if weights_as not in ("parameter", "constant"):
        raise ValueError(f"weights_as must be 'parameter' or 'constant', got {weights_as!r}")
    skips = _check_skips(widths, skips)
    L = len(widths) - 1
    if weights is None or isinstance(weights, (int, float)):
        if weights is None and rng is None:
            rng = np.random.default_rng(0)
        mats = (random_weights(widths, rng, low, high, signs) if weights is None else
                [np.full((o, i), float(weights)) for i, o in zip(widths[:-1], widths[1:])])
    else:
        mats = [np.asarray(w, dtype=np.float64) for w in weights]
        if len(mats) != L or any(m.shape != (o, i) for m, i, o in zip(mats, widths[:-1], widths[1:])):
            raise ValueError("weights must be one (widths[k], widths[k-1]) array per layer, got shapes "
                             f"{[m.shape for m in mats]}")

    def projection(d_in, d_out):
        if isinstance(weights, (int, float)):
            return np.full((d_out, d_in), float(weights))
        r = rng if rng is not None else np.random.default_rng(0)
        return random_weights([d_in, d_out], r, low, high, signs)[0]

    g = Graph(meta={"generator": "layered_dag", "widths": widths, "skips": [list(s) for s in skips]})
    leaf = g.parameter if weights_as == "parameter" else (lambda name, a, scope=None: g.constant(a, name=name, scope=scope))
    hs = [g.input("x", (1, widths[0]))]
    for k in range(1, L + 1):
        scope = f"layer.{k}"
        W = leaf(f"W{k}", mats[k - 1], scope=scope)
        into = [s for s, d in skips if d == k]
        h = g.call("linear", hs[k - 1], W, name=f"h{k}_lin" if into else f"h{k}", scope=scope)
        for n, src in enumerate(into):
            s = hs[src]
            if widths[src] != widths[k]:
                P = leaf(f"P{src}_{k}", projection(widths[src], widths[k]), scope=scope)
                s = g.call("linear", s, P, name=f"skip{src}_{k}", scope=scope)
            h = g.call("add", h, s, name=f"h{k}" if n == len(into) - 1 else f"h{k}_add{n}", scope=scope)
        hs.append(h)
    g.mark_output(hs[-1])
    feeds = {"x": np.ones((1, widths[0])) if x is None else np.asarray(x, dtype=np.float64).reshape(1, widths[0])}
    return LayeredDAG(g, feeds, hs[-1].name)


def layer_weights(graph: Graph) -> List[np.ndarray]:
    """The layer matrices ``W1 … WL`` of a graph made by :func:`layered_dag`."""
    out, k = [], 1
    while True:
        try:
            out.append(graph.arrays[graph.node(f"W{k}").id])
        except KeyError:
            return out
        k += 1


def output_qoi(graph: Graph, output: str) -> QoI:
    """The sum of all elements of ``output`` (coefficient 1 each)."""
    return weighted(output, np.ones(graph.node(output).shape))


def planted_path(L: int, d: int, rng: np.random.Generator, low: float = 0.1, high: float = 0.5,
                 heavy: float = 5.0, sign: str = "positive", weights_as: str = "parameter") -> PlantedPath:
    """A width-``d``, ``L``-layer :func:`layered_dag` with random light edges (magnitudes in
    ``[low, high]``, random signs) and one planted path of heavy edges (magnitudes in
    ``[heavy, 2·heavy]``) through one random unit per layer.

    The planted edges' signs are random except the last, which is chosen so that the planted
    path product is positive (``sign="positive"``) or negative (``"negative"``). Every input →
    output path has exactly ``L`` edges, so when ``heavy > high`` the planted path is the unique
    path of largest ``|product|``; with ``sign="positive"`` it is also the largest signed
    product (M⁺), with ``"negative"`` the most negative (M⁻).

    >>> p = planted_path(3, 4, np.random.default_rng(0))
    >>> len(p.path), float(np.prod([w[p.path[k + 1], p.path[k]] for k, w in enumerate(p.weights)])) > 0
    (4, True)
    """
    if sign not in ("positive", "negative"):
        raise ValueError(f"sign must be 'positive' or 'negative', got {sign!r}")
    if heavy <= high:
        raise ValueError(f"heavy ({heavy}) must exceed the largest light magnitude ({high})")
    widths = [d] * (L + 1)
    mats = random_weights(widths, rng, low, high, "random")
    path = tuple(int(u) for u in rng.integers(0, d, size=L + 1))
    product = 1.0
    for k, w in enumerate(mats):
        mag = rng.uniform(heavy, 2 * heavy)
        s = rng.choice([-1.0, 1.0])
        if k == L - 1:
            want = 1.0 if sign == "positive" else -1.0
            s = want if product > 0 else -want
        w[path[k + 1], path[k]] = s * mag
        product *= s * mag
    dag = layered_dag(widths, mats, weights_as=weights_as)
    dag.graph.meta.update({"generator": "planted_path", "planted": list(path), "sign": sign})
    return PlantedPath(dag.graph, dag.feeds, dag.output, path, mats)


# --------------------------------------------------------------------------------------------
# Independent references (no engine code)

def unit_graph(widths: Sequence[int], skips: Iterable[Skip] = (), weights: WeightSpec = 1.0,
               graph: Optional[Graph] = None):
    """The scalar path graph of a :func:`layered_dag` as a ``networkx.DiGraph``: vertices
    ``(layer, unit)``, an edge ``(k-1, i) → (k, o)`` with ``weight`` ``W[o, i]`` for every
    entry of each layer matrix and for skips either identity edges (weight 1) or the
    projection's entries. Weights come from ``graph`` (its ``W*``/``P*`` arrays) when given,
    else from the float ``weights``.

    >>> sorted(unit_graph([1, 2]).edges(data="weight"))
    [((0, 0), (1, 0), 1.0), ((0, 0), (1, 1), 1.0)]
    """
    import networkx as nx

    widths = [int(w) for w in widths]
    skips = _check_skips(widths, skips)

    def mat(name, d_in, d_out):
        if graph is not None:
            return np.asarray(graph.arrays[graph.node(name).id])
        return np.full((d_out, d_in), float(weights))

    G = nx.DiGraph()
    for k, w in enumerate(widths):
        G.add_nodes_from((k, u) for u in range(w))
    for k in range(1, len(widths)):
        W = mat(f"W{k}", widths[k - 1], widths[k])
        for o in range(widths[k]):
            for i in range(widths[k - 1]):
                G.add_edge((k - 1, i), (k, o), weight=float(W[o, i]))
    for src, dst in skips:
        if widths[src] == widths[dst]:
            for u in range(widths[src]):
                G.add_edge((src, u), (dst, u), weight=1.0)
        else:
            P = mat(f"P{src}_{dst}", widths[src], widths[dst])
            for o in range(widths[dst]):
                for i in range(widths[src]):
                    G.add_edge((src, i), (dst, o), weight=float(P[o, i]))
    return G


def count_paths(widths: Sequence[int], skips: Iterable[Skip] = ()) -> int:
    """The exact number of input → output paths (Python integers, no overflow), by a
    dynamic program over :func:`unit_graph` in networkx topological order. Without skips this
    is the closed form ``prod(widths)``.

    >>> count_paths([3, 4, 5]), count_paths([2, 2, 2], skips=[(0, 2)])
    (60, 10)
    """
    import networkx as nx

    skips = list(skips)
    if not skips:
        return math.prod(int(w) for w in widths)
    G = unit_graph(widths, skips)
    L = len(widths) - 1
    n: Dict[Tuple[int, int], int] = {}
    for v in reversed(list(nx.topological_sort(G))):
        n[v] = 1 if v[0] == L else sum(n[u] for u in G.successors(v))
    return sum(n[(0, u)] for u in range(int(widths[0])))


def enumerate_paths(weights: Sequence[np.ndarray]):
    """All ``d0·d1·…·dL`` paths of a layered DAG without skips, by brute force.

    Returns ``(units, products)``: ``units[p]`` is the path's unit sequence (one per layer,
    input first) and ``products[p]`` its signed product of edge weights. Meant for small graphs.

    >>> units, prods = enumerate_paths([np.array([[2.0, -1.0]])])
    >>> units.tolist(), prods.tolist()
    ([[0, 0], [1, 0]], [2.0, -1.0])
    """
    widths = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    total = math.prod(widths)
    if total > 50_000_000:
        raise ValueError(f"{total} paths is too many to enumerate")
    prod = np.ones(widths[0])
    for w in weights:  # prod[i0, …, ik] * W[ik+1, ik]
        prod = prod[..., None] * w.T.reshape((1,) * (prod.ndim - 1) + w.T.shape)
    units = np.stack(np.unravel_index(np.arange(total), widths), axis=1)
    return units, prod.reshape(-1)
