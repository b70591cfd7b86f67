"""Attribution graphs: the best paths of chosen tokens rolled up into a small weighted graph.

Every step of a path is a scalar vertex (node, element). The roll-up maps it to a graph node
``(layer, position, component)``:

- ``layer``: the ``layer.L`` index in the step's scope (``None`` outside the encoder layers);
- ``position``: consecutive steps in one (layer, component) form one node, placed at the
  position of the last of them whose node has exactly one axis as long as the sentence (so the
  attention block of a layer sits at the query position its output goes to, whatever the
  number of heads); failing that, the position axis of
  :func:`graphengine.report.figures.position_axis`; ``None`` when there is none (a pooled
  classifier);
- ``component``, from the scope of a BERT graph (Hugging Face module paths, any prefix):
  ``embedding`` (``embeddings``), ``query`` / ``key`` / ``value`` (``attention.self.query`` …),
  ``attention`` (the rest of ``attention.self``: scores, softmax, mixing), ``attention_output``
  (``attention.output.dense``), ``attention_residual`` (the residual add and LayerNorm after
  attention), ``mlp`` (``intermediate`` and ``output.dense``), ``residual`` (the residual add and
  LayerNorm after the MLP: the stream leaving the layer), ``head`` (anything after the encoder,
  e.g. pooler or prediction transform) and ``logit`` (the QoI node). In a graph without this
  naming the component is the step's scope (its node name when unscoped).

Every change of node along a path is an edge. The
weight of an edge (and of a node) is the sum of the exact, signed products of the distinct
paths through it (each path counted once per edge), so the edges into the ``logit`` node sum to
the total mass of the rolled-up paths. ``abs_weight`` sums |product| the same way.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import forward, select
>>> from graphengine.report.figures import report_backward
>>> g = Graph(); x = g.input("x", (1, 2))
>>> W = g.parameter("W", np.array([[1.0, 2.0], [3.0, -1.0]]))
>>> y = g.call("linear", x, W, name="y"); q = g.call("sum", y, name="q")
>>> r = report_backward(g, forward(g, {"x": np.ones((1, 2))}), select("q", ()), kbest="kbest:2")
>>> ag = attribution_graph(r, tokens=["a", "b"])
>>> sorted((e["source"], e["target"], e["weight"]) for e in ag.edges)
[('x@0', 'y@0', 1.0), ('x@0', 'y@1', 3.0), ('x@1', 'y@0', 2.0), ('x@1', 'y@1', -1.0), ('y@0', 'logit', 3.0), ('y@1', 'logit', 2.0)]
>>> ag.mass, ag.num_paths
(5.0, 4)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..paths import k_best_paths, top_path
from .figures import best_starts, distinct_paths, jsonable, kbest_name, position_axis, position_layout, start_node

GRAPH_SCHEMA_VERSION = 1  # of the circuit-tracer JSON's metadata["graphengine"] block; see docs/report.md

_LAYER = re.compile(r"(?:^|\.)layer\.(\d+)(?:\.|$)")
_RULES = (  # (pattern after "layer.L.", component), first match wins
    (r"attention\.self\.query(?:\.|$)", "query"),
    (r"attention\.self\.key(?:\.|$)", "key"),
    (r"attention\.self\.value(?:\.|$)", "value"),
    (r"attention\.self(?:\.|$)", "attention"),
    (r"attention\.output\.dense(?:\.|$)", "attention_output"),
    (r"attention\.output(?:\.|$)", "attention_residual"),
    (r"intermediate(?:\.|$)", "mlp"),
    (r"output\.dense(?:\.|$)", "mlp"),
    (r"output(?:\.|$)", "residual"),
)
#: Order of the components inside one layer (the circuit-tracer ``feature`` index).
COMPONENTS = ("embedding", "query", "key", "value", "attention", "attention_output", "attention_residual",
              "mlp", "residual", "head", "logit")

Key = Tuple[Optional[int], Optional[int], str]


def component_of(scope: str, is_qoi: bool = False, bert: bool = True) -> Tuple[Optional[int], str]:
    """``(layer, component)`` of a node scope (see the module docstring).

    >>> component_of("bert.encoder.layer.3.attention.self.key")
    (3, 'key')
    >>> component_of("encoder.layer.0.output.LayerNorm"), component_of("embeddings.LayerNorm")
    ((0, 'residual'), (None, 'embedding'))
    """
    if is_qoi:
        return None, "logit"
    m = _LAYER.search(scope)
    if m:
        rest = scope[m.end():]
        for pattern, comp in _RULES:
            if re.match(pattern, rest):
                return int(m.group(1)), comp
        return int(m.group(1)), "other"
    if re.search(r"(?:^|\.)embeddings(?:\.|$)", scope):
        return None, "embedding"
    return None, "head" if bert else scope


@dataclass
class AttributionGraph:
    """Nodes keyed ``(layer, position, component)`` and weighted edges; see the module docstring."""

    tokens: List[str]
    nodes: Dict[str, Dict] = field(default_factory=dict)   # id -> layer, position, component, label, weight...
    edges: List[Dict] = field(default_factory=list)        # source, target, weight, abs_weight, paths
    mass: float = 0.0                                      # Σ signed products of the distinct paths
    abs_mass: float = 0.0
    num_paths: int = 0
    meta: Dict = field(default_factory=dict)

    # ---------------------------------------------------------------- outputs
    def to_networkx(self):
        """A ``networkx.DiGraph`` with the node and edge attributes of this graph."""
        import networkx as nx

        g = nx.DiGraph(**self.meta, tokens=list(self.tokens), mass=self.mass, num_paths=self.num_paths)
        for nid, attrs in self.nodes.items():
            g.add_node(nid, **attrs)
        for e in self.edges:
            g.add_edge(e["source"], e["target"], **{k: v for k, v in e.items() if k not in ("source", "target")})
        return g

    def to_dot(self) -> str:
        """Graphviz DOT text: one rank per layer, edge pen width by |weight| share, red for
        negative weights."""
        top = max((abs(e["weight"]) for e in self.edges), default=1.0) or 1.0
        lines = ["digraph attribution {", "  rankdir=BT;", '  node [shape=box, fontname="Helvetica"];']
        for nid, n in self.nodes.items():
            lines.append(f'  "{_dot_escape(nid)}" [label="{_dot_escape(n["label"])}"];')
        for e in self.edges:
            width = 0.5 + 4.5 * abs(e["weight"]) / top
            color = "firebrick" if e["weight"] < 0 else "steelblue"
            lines.append(f'  "{_dot_escape(e["source"])}" -> "{_dot_escape(e["target"])}" '
                         f'[penwidth={width:.2f}, color={color}, label="{e["weight"]:.3g}"];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_json(self, slug: str = "graphengine", prompt: Optional[str] = None) -> Dict:
        """The node/link document circuit-tracer's viewer reads (``metadata``, ``qParams``,
        ``nodes``, ``links``); graphengine's own fields are in ``metadata["graphengine"]``."""
        layers = [n["layer"] for n in self.nodes.values() if n["layer"] is not None]
        last = (max(layers) + 1) if layers else 0
        ids = {}
        nodes = []
        for nid, n in self.nodes.items():
            comp = n["component"]
            layer = "E" if comp == "embedding" else str(last + 1) if comp == "logit" else \
                str(last) if n["layer"] is None else str(n["layer"])
            feature = COMPONENTS.index(comp) if comp in COMPONENTS else len(COMPONENTS)
            ctx = -1 if n["position"] is None else n["position"]
            ids[nid] = node_id = nid
            nodes.append({"node_id": node_id, "feature": feature, "layer": layer, "ctx_idx": ctx,
                          "feature_type": comp, "token_prob": 0.0, "is_target_logit": comp == "logit",
                          "run_idx": 0, "reverse_ctx_idx": 0 if ctx < 0 else len(self.tokens) - 1 - ctx,
                          "jsNodeId": node_id, "clerp": n["label"], "influence": jsonable(n["abs_weight"]),
                          "activation": None})
        links = [{"source": ids[e["source"]], "target": ids[e["target"]], "weight": jsonable(e["weight"])}
                 for e in self.edges]
        return {"metadata": {"slug": slug, "scan": "graphengine", "transcoder_list": [],
                             "prompt_tokens": list(self.tokens),
                             "prompt": prompt if prompt is not None else " ".join(self.tokens),
                             "node_threshold": None, "schema_version": 1,
                             "graphengine": {"schema_version": GRAPH_SCHEMA_VERSION, "mass": jsonable(self.mass),
                                             "abs_mass": jsonable(self.abs_mass), "num_paths": self.num_paths, **self.meta}},
                "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
                "nodes": nodes, "links": links}


def _dot_escape(s: str) -> str:
    return str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def attribution_graph(result, tokens: Optional[Sequence[str]] = None, positions: Optional[Sequence[int]] = None,
                      start=None, semiring: Optional[str] = None) -> AttributionGraph:
    """Roll up the k-best paths (``kbest:K`` in ``result``, else the ``max`` top path) from the
    best unit of each chosen position of the start node into an :class:`AttributionGraph`.

    ``positions``: the chosen positions (default all that reach the QoI); ``start`` and
    ``tokens`` as for :func:`graphengine.report.figures.figures`; ``semiring`` overrides the
    path semiring (a ``kbest`` or selective one such as ``max``).
    """
    graph = result.graph
    sid = start_node(graph) if start is None else graph.node(start).id
    snode = graph.nodes[sid]
    semiring = semiring or kbest_name(result.semirings) or "max"
    axis, T, labels = position_layout(graph, sid, tokens)
    starts = best_starts(result, sid, semiring, axis, T)
    chosen = [t for t in range(T) if starts[t] is not None] if positions is None else [int(t) for t in positions]
    if any(not 0 <= t < T for t in chosen):
        raise ValueError(f"positions {chosen}: the start node has positions 0..{T - 1}")
    paths = []
    for t in chosen:
        if starts[t] is None:
            continue
        if semiring.startswith("kbest"):
            paths += [(t, p) for p in k_best_paths(result, sid, starts[t], semiring)]
        else:
            paths.append((t, top_path(result, sid, starts[t], semiring)))
    unique = {id(p) for p in distinct_paths([p for _, p in paths])}
    paths = [(t, p) for t, p in paths if id(p) in unique]
    bert = any(_LAYER.search(n.scope or "") for n in graph.nodes)
    ag = AttributionGraph(tokens=labels, meta={"start": snode.name, "qoi_node": graph.nodes[result.qoi_node].name,
                                               "semiring": semiring, "positions": chosen})
    edges: Dict[Tuple[str, str], Dict] = {}
    for t, p in paths:
        w = float(p.weight)
        keys = _rolled_up(p, t, graph, T, result.qoi_node, bert)
        for k in dict.fromkeys(keys):
            nid = _node_id(k)
            n = ag.nodes.setdefault(nid, {"layer": k[0], "position": k[1], "component": k[2],
                                          "label": _label(k, labels), "weight": 0.0, "abs_weight": 0.0, "paths": 0})
            n["weight"] += w
            n["abs_weight"] += abs(w)
            n["paths"] += 1
        for a, b in zip(keys, keys[1:]):
            e = edges.setdefault((_node_id(a), _node_id(b)),
                                 {"source": _node_id(a), "target": _node_id(b),
                                  "weight": 0.0, "abs_weight": 0.0, "paths": 0})
            e["weight"] += w
            e["abs_weight"] += abs(w)
            e["paths"] += 1
        ag.mass += w
        ag.abs_mass += abs(w)
    ag.edges = list(edges.values())
    ag.num_paths = len(paths)
    return ag


def _rolled_up(path, t: int, graph, T: int, qoi_node: int, bert: bool) -> List[Key]:
    """The path's keys: runs of consecutive steps in one (layer, component), each placed at the
    position of its last step whose position is unambiguous (the start step is at ``t``)."""
    runs: List[Tuple[Optional[int], str, List[int]]] = []
    for i, st in enumerate(path.steps):
        node = graph.nodes[st.node]
        layer, comp = component_of(node.scope or node.name, st.node == qoi_node, bert)
        if runs and runs[-1][:2] == (layer, comp):
            runs[-1][2].append(i)
        else:
            runs.append((layer, comp, [i]))
    keys: List[Key] = []
    for layer, comp, steps in runs:
        pos = next((p for p in (t if i == 0 else _position(path.steps[i], graph, T) for i in reversed(steps))
                    if p is not None), None)
        if pos is None:  # no step says for sure: the usual axis of the run's last step
            last = path.steps[steps[-1]]
            a = position_axis(graph.nodes[last.node].shape, T)
            pos = None if a is None else int(last.element[a])
        keys.append((layer, pos, comp))
    return keys


def _position(step, graph, T: int) -> Optional[int]:
    """The step's position when exactly one axis of its node has length ``T`` (``[B, T, H]``
    with ``H != T``), else None (e.g. ``[B, T, heads, d]`` with ``heads == T``, or scores)."""
    axes = [a for a, d in enumerate(graph.nodes[step.node].shape) if d == T]
    return int(step.element[axes[0]]) if len(axes) == 1 else None


def _node_id(key: Key) -> str:
    layer, pos, comp = key
    parts = ([] if layer is None else [f"L{layer}"]) + [comp]
    return ".".join(parts) + ("" if pos is None else f"@{pos}")


def _label(key: Key, tokens: Sequence[str]) -> str:
    layer, pos, comp = key
    where = "" if pos is None else f" @ {tokens[pos] if pos < len(tokens) else pos}"
    return ("" if layer is None else f"L{layer} ") + comp + where
