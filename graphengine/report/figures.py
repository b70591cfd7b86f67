"""What the report shows, computed exactly from one backward result.

:func:`report_backward` runs the one backward pass a report needs (the gradient, M⁺ with element
backpointers, the path entropy, and optionally ``kbest:K``); :func:`figures` turns its result
into plain, JSON-able numbers:

- per position (token): |gradient| (L2 norm over the position's units), gradient·input (the sum
  over its units), M⁺ (the best signed path product of its best unit) and the path entropy
  pooled over its units (ΣR/ΣZ + log ΣZ);
- per position and layer, the branch (Q/K/V/skip) through which the position's best unit leaves
  the layer input (:func:`graphengine.analysis.kqv.kqv_credits`), and per layer the share of
  positions whose top path takes each branch (the K/Q/V/skip summary);
- per position, the top path from its best unit (and, with ``kbest:K``, the K best paths),
  mapped onto the layer × position grid: the position at which each path crosses every layer
  input, and the branch it leaves through;
- the summary: the QoI, Z (the total |product| of all paths from the start node to the QoI),
  the pooled entropy H, exp(H) (the effective number of paths) and, per position, the share of
  Z carried by the drawn paths (Σ|product| of its distinct drawn paths / Z).

The *start node* is the node whose elements start the paths: by default the input of the first
attention layer (the embeddings' output) of a BERT graph, else the first float input. Its
*position axis* is the last axis but one whose length is the number of tokens (for ``[B, T, H]``
axis 1); the other axes are pooled. Without tokens and without a BERT layer structure every
element of the start node is its own position (at most :data:`MAX_POSITIONS`).

The report is about one sentence: with a batch, the statistics pool all rows, while the
branches and the flow describe the first row.

Values that are not finite are kept as the strings ``"NaN"``, ``"inf"``, ``"-inf"`` (JSON has no
such numbers), so NaN in gives NaN out on the page too.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import forward, select
>>> g = Graph(); x = g.input("x", (1, 2))
>>> W = g.parameter("W", np.array([[1.0, 2.0], [3.0, -1.0]]))
>>> y = g.call("linear", x, W, name="y"); q = g.call("sum", y, name="q")
>>> r = report_backward(g, forward(g, {"x": np.ones((1, 2))}), select("q", ()))
>>> f = figures(r, tokens=["a", "b"])
>>> f["tokens"], f["stats"]["grad_x_input"], f["summary"]["Z"]
(['a', 'b'], [4.0, 1.0], 7.0)
>>> [p["weight"] for p in f["paths"][0]]   # the best path from "a": through W[0, 1] = 3
[3.0]
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..analysis.entropy import pooled_entropy
from ..analysis.kqv import BRANCHES, COLUMNS, SHORT, KQVError, find_layer_inputs, kqv_credits
from ..engine import backward
from ..ir.dtypes import is_float
from ..paths import k_best_paths, top_path

MAX_POSITIONS = 512  # positions shown when every element of the start node is one
STATS = ("grad_norm", "grad_x_input", "max_plus", "entropy")


def start_node(graph) -> int:
    """The default start node: the first attention layer's input of a BERT graph, else the first
    float input."""
    try:
        return find_layer_inputs(graph)[0].node
    except KQVError:
        pass
    for n in graph.nodes:
        if n.op == "input" and is_float(n.dtype):
            return n.id
    raise ValueError("the graph has no float input and no attention layers: name a start node")


def kbest_name(semirings: Sequence[str]) -> Optional[str]:
    """The first ``kbest:K`` / ``kbestabs:K`` semiring in ``semirings`` (None if there is none)."""
    return next((s for s in semirings if s.startswith("kbest")), None)


def report_backward(graph, activations, qoi, kbest: Optional[str] = None, start=None):
    """One backward pass with what :func:`figures` needs: real, max, entropy (and ``kbest``, a
    semiring name such as ``"kbest:3"``), retaining the start node and every layer input."""
    sid = start_node(graph) if start is None else graph.node(start).id
    try:
        layers = [li.node for li in find_layer_inputs(graph)]
    except KQVError:
        layers = []
    names = ["real", "max", "entropy"] + ([kbest] if kbest else [])
    return backward(graph, activations, qoi, semirings=names, retain=sorted({sid, *layers}))


def position_axis(shape: Sequence[int], length: int) -> Optional[int]:
    """The axis of ``shape`` that indexes positions in a sequence of ``length``: the last axis
    but one of that length (``[B, T, H]``; query positions of ``[B, heads, T, T]`` scores), else
    the last axis (a transposed key ``[B, heads, d, T]``); None if no axis has that length.

    >>> position_axis((1, 5, 8), 5), position_axis((1, 2, 5, 5), 5), position_axis((1, 2, 4, 5), 5)
    (1, 2, 3)
    >>> position_axis((5,), 5), position_axis((1, 3), 5)
    (0, None)
    """
    for a in list(range(len(shape) - 2, -1, -1)) + [len(shape) - 1]:
        if a >= 0 and shape[a] == length:
            return a
    return None


def jsonable(x) -> object:
    """A float as JSON: finite numbers as they are, others as ``"NaN"``, ``"inf"``, ``"-inf"``.

    >>> [jsonable(v) for v in (1.5, float("nan"), -math.inf)]
    [1.5, 'NaN', '-inf']
    """
    x = float(x)
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _layers(graph):
    try:
        return find_layer_inputs(graph)
    except KQVError:
        return []


def position_layout(graph, start, tokens: Optional[Sequence[str]] = None):
    """``(axis, T, labels)``: the start node's position axis (None: every element is a position),
    the number of positions and their labels (the tokens, else indices).

    >>> from graphengine.ir import Graph
    >>> g = Graph(); x = g.input("x", (1, 3, 2))
    >>> position_layout(g, "x", ["a", "b", "c"]), position_layout(g, "x")
    ((1, 3, ['a', 'b', 'c']), (None, 6, ['[0, 0, 0]', '[0, 0, 1]', '[0, 1, 0]', '[0, 1, 1]', '[0, 2, 0]', '[0, 2, 1]']))
    """
    snode = graph.node(start)
    if tokens is not None:
        T = len(tokens)
    else:
        layers = _layers(graph)
        T = graph.nodes[layers[0].node].shape[-2] if layers else None
    axis = position_axis(snode.shape, T) if T is not None else None
    if axis is not None:
        return axis, T, list(tokens) if tokens is not None else [str(i) for i in range(T)]
    if tokens is not None and T != snode.size:
        raise ValueError(f"{T} tokens do not match start node '{snode.name}' of shape {list(snode.shape)} "
                         f"(no axis of that length)")
    if snode.size > MAX_POSITIONS:
        raise ValueError(f"start node '{snode.name}' has {snode.size} elements and no token axis: give tokens "
                         f"or choose a smaller start node (at most {MAX_POSITIONS} positions)")
    labels = list(tokens) if tokens is not None else \
        [str([int(i) for i in np.unravel_index(e, snode.shape)]) for e in range(snode.size)]
    return None, snode.size, labels


def best_starts(result, start, semiring: str, axis: Optional[int], T: int) -> List[Optional[tuple]]:
    """Per position, the start element of its best unit in ``semiring``'s first component (M⁺,
    or the best of the k best); None where no unit reaches the QoI."""
    snode = result.graph.node(start)
    best = _by_position(result.raw(snode.id, semiring)[0], axis, T)
    out = []
    for t in range(T):
        row = np.where(np.isnan(best[t]), -np.inf, best[t])
        out.append(_start_index(snode.shape, axis, t, int(np.argmax(row))) if np.any(row > -np.inf) else None)
    return out


def _by_position(a, axis: Optional[int], positions: int) -> np.ndarray:
    """``a`` as [positions, units]: the position axis first, all other axes pooled."""
    a = np.asarray(a, dtype=np.float64)
    if axis is None:
        return a.reshape(positions, -1)
    return np.moveaxis(a, axis, 0).reshape(positions, -1)


def figures(result, tokens: Optional[Sequence[str]] = None, start=None, max_traced_positions: int = 64) -> Dict:
    """Everything the report draws, as JSON-able data (see the module docstring).

    ``result`` comes from :func:`report_backward` (or any scalar-granularity backward with real,
    max and entropy that retained ``start``); ``tokens`` label the positions.
    ``max_traced_positions``: paths are traced from at most this many positions (the first).
    """
    graph = result.graph
    sid = start_node(graph) if start is None else graph.node(start).id
    snode = graph.nodes[sid]
    notes: List[str] = []
    layers = _layers(graph)
    if not layers:
        notes.append("no BERT attention layers recognised: the branch view, the layer × position grid and the "
                     "per-layer flow need them; the top paths are listed step by step instead")
    axis, T, labels = position_layout(graph, sid, tokens)

    acts = np.asarray(result.activations[sid], dtype=np.float64)
    grad = _by_position(result.grad(sid), axis, T)
    x = _by_position(acts, axis, T)
    mplus = _by_position(result.components(sid, "max")["max"], axis, T)
    ent = result.components(sid, "entropy")
    Z, R = _by_position(ent["Z"], axis, T), _by_position(ent["R"], axis, T)
    with np.errstate(invalid="ignore", over="ignore"):
        stats = {"grad_norm": np.sqrt(np.sum(grad * grad, axis=-1)), "grad_x_input": np.sum(grad * x, axis=-1),
                 "max_plus": np.max(mplus, axis=-1),
                 "entropy": pooled_entropy(Z, R, axis=-1)}
    total_Z = float(Z.sum())
    H = pooled_entropy(Z, R)

    branches, flow = None, None
    if layers and axis is not None and graph.nodes[layers[0].node].shape[-2] == T:
        credits = kqv_credits(result, "max")
        branches = [[SHORT[b] if b >= 0 else "" for b in credits.branch[:, 0, t]] for t in range(T)]
        share = np.stack([(credits.branch[:, 0, :] == c).mean(axis=-1) for c in range(len(BRANCHES))], axis=-1)
        flow = {"layers": list(credits.layers), "branches": list(SHORT[:len(BRANCHES)]),
                "top_share": share.tolist(),
                "mean_mplus": [[jsonable(v) for v in row] for row in credits.oplus[:, 0, :, :len(BRANCHES)].mean(1)]}

    kbest = kbest_name(result.semirings)
    paths: List[List[Dict]] = []
    shares: List[object] = []
    for t, index in enumerate(best_starts(result, sid, "max", axis, T)):
        if index is None or t >= max_traced_positions:
            paths.append([])
            shares.append(None)
            continue
        drawn = [top_path(result, sid, index, "max")]
        if kbest:
            drawn += k_best_paths(result, sid, index, kbest)
        drawn = distinct_paths(drawn)
        paths.append([_draw(p, rank, graph, layers, T, result.qoi_node) for rank, p in enumerate(drawn)])
        mass = sum(abs(p.weight) for p in drawn)
        shares.append(jsonable(mass / total_Z) if total_Z > 0 else None)

    q = result.qoi_coefficients
    with np.errstate(invalid="ignore"):
        qvalue = float(np.sum(np.where(q != 0, q * np.asarray(result.activations[result.qoi_node], np.float64), 0.0)))
    reachable = [t for t in range(T) if paths[t]]
    chosen = max(reachable, key=lambda t: stats["max_plus"][t]) if reachable else 0
    return {"tokens": labels, "start": snode.name, "start_shape": list(snode.shape),
            "qoi_node": graph.nodes[result.qoi_node].name,
            "stats": {k: [jsonable(v) for v in stats[k]] for k in STATS},
            "layers": [li.layer for li in layers], "branches": branches, "flow": flow,
            "kbest": kbest, "paths": paths, "chosen": chosen,
            "summary": {"qoi": jsonable(qvalue), "Z": jsonable(total_Z), "entropy": jsonable(H),
                        "effective_paths": jsonable(math.exp(H) if not H > 709 else math.inf),  # past float range
                        "log10_effective_paths": jsonable(H / math.log(10)),
                        "drawn_share": shares},
            "notes": notes}


def distinct_paths(paths) -> List:
    """``paths`` without repeats (the same vertex sequence), first occurrence kept."""
    seen, out = set(), []
    for p in paths:
        key = tuple((st.node, st.element) for st in p.steps)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _start_index(shape, axis, t, unit):
    """The start element of position ``t``'s unit number ``unit`` (as ordered by _by_position)."""
    if axis is None:
        return tuple(int(i) for i in np.unravel_index(t, shape))
    rest = [d for a, d in enumerate(shape) if a != axis]
    idx = list(np.unravel_index(unit, rest)) if rest else []
    idx.insert(axis, t)
    return tuple(int(i) for i in idx)


def _draw(path, rank: int, graph, layers, T: int, qoi_node: int) -> Dict:
    """A path as the page draws it: grid points (row = layer, or len(layers) for the QoI;
    position; branch taken) and its steps."""
    by_node = {li.node: (row, li) for row, li in enumerate(layers)}
    points = []
    for i, st in enumerate(path.steps):
        if st.node in by_node:
            row, li = by_node[st.node]
            nxt = path.steps[i + 1].node if i + 1 < len(path.steps) else None
            points.append([row, st.element[-2], SHORT[COLUMNS.index(li.branches.get(nxt, "other"))]])  # [..., T, H]
    if layers:
        shape = graph.nodes[qoi_node].shape
        a = position_axis(shape, T)
        points.append([len(layers), None if a is None else path.steps[-1].element[a], ""])
    return {"rank": rank, "weight": jsonable(path.weight), "points": points,
            "steps": [{"name": st.name, "element": list(st.element),
                       "d": None if st.local_derivative is None else jsonable(st.local_derivative)}
                      for st in path.steps]}
