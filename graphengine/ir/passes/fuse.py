"""Fusion: recognise RMS normalization and the tanh GELU spelled in primitives and make each one
node (``rms_norm``, ``gelu(approximate="tanh")``).

Frameworks have no single RMSNorm kernel in their exported graphs: Llama-family models (and
``torch.nn.RMSNorm``) compute ``x · rsqrt(mean(x², last axes) + eps) · γ``. The ``fused``
decomposition policy keeps normalizations whole (layer norm is one dense block), so the
frontends call :func:`fuse_rms_norm` to give RMS norm the same granularity; the ``primitive``
and ``paper`` policies expand it again (:mod:`graphengine.ir.passes.decompose`).

The pattern is recognised from the ops themselves, not from module names, so it is found
whatever the module is called:

    p = pow(x, 2); v = mean(p, trailing axes, keepdim); r = rsqrt(add(v, eps)); y = mul(x, r)
    [then mul(y, γ) with γ a parameter or constant of the normalized shape]

(either operand order of ``add``/``mul``; ``eps`` a 0-d constant). ``p``, ``v``, the sum and
``r`` must have no other consumer; ``γ`` is folded in only when ``y`` has no other consumer.
The fused node takes the name and scope of the pattern's last node. Nothing else changes.

GPT-2's ``gelu_new`` (``0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))``, written out in
transformers) is recognised by :func:`fuse_gelu_tanh` the same way (constants compared to
float32 precision, either operand order, the ``0.5`` on ``x`` or on the product), so GPT-2's MLP
has one ``gelu`` node like BERT's. :func:`fuse` runs both.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> g = Graph(); x = g.input("x", (2, 4))
>>> v = g.call("mean", g.call("pow", x, exponent=2.0), axes=[1], keepdim=True)
>>> r = g.call("rsqrt", g.call("add", v, g.constant(np.array(1e-6))))
>>> y = g.call("mul", g.parameter("w", np.ones(4), scope="norm"), g.call("mul", x, r), name="y", scope="norm")
>>> g.mark_output(y)
>>> [(n.op, n.name) for n in fuse_rms_norm(g) if n.op not in ("input", "parameter")]
[('rms_norm', 'y')]
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

from ..graph import Graph, Node
from .prune import prune


def _consumers(graph: Graph) -> Dict[int, List[int]]:
    out: Dict[int, List[int]] = {n.id: [] for n in graph.nodes}
    for n in graph.nodes:
        for i in n.inputs:
            out[i].append(n.id)
    for o in graph.outputs:
        out[o].append(-1)  # an output is consumed by the caller
    return out


def _other(graph: Graph, node: Node, one: int) -> Optional[Node]:
    a, b = node.inputs
    if a == one and b != one:
        return graph.nodes[b]
    if b == one and a != one:
        return graph.nodes[a]
    return None


def _match(graph: Graph, mul: Node, cons) -> Optional[Tuple[int, Optional[int], float, tuple, List[int], Node]]:
    """``(x id, γ id or None, eps, normalized shape, interior ids, last node)`` if ``mul`` is
    ``x · rsqrt(...)``."""
    if mul.op != "mul":
        return None
    for x_id, r_id in (mul.inputs, mul.inputs[::-1]):
        r = graph.nodes[r_id]
        if r.op != "rsqrt" or cons[r.id] != [mul.id]:
            continue
        add = graph.nodes[r.inputs[0]]
        if add.op != "add" or cons[add.id] != [r.id]:
            continue
        for v_id, e_id in (add.inputs, add.inputs[::-1]):
            v, e = graph.nodes[v_id], graph.nodes[e_id]
            if v.op != "mean" or e.op != "constant" or graph.arrays[e.id].ndim != 0 or cons[v.id] != [add.id]:
                continue
            p = graph.nodes[v.inputs[0]]
            if p.op != "pow" or p.attrs["exponent"] != 2.0 or p.inputs[0] != x_id or cons[p.id] != [v.id]:
                continue
            x = graph.nodes[x_id]
            k = len(x.shape)
            axes = sorted(a % k for a in ([v.attrs["axes"]] if isinstance(v.attrs["axes"], int)
                                          else (v.attrs["axes"] or range(k))))
            if not v.attrs["keepdim"] or not axes or axes != list(range(k - len(axes), k)):
                continue
            eps = float(graph.arrays[e.id])
            interior = [p.id, v.id, add.id, r.id]
            norm = tuple(x.shape[k - len(axes):])
            last, gamma = mul, None
            if len(cons[mul.id]) == 1 and cons[mul.id][0] >= 0:
                nxt = graph.nodes[cons[mul.id][0]]
                g = _other(graph, nxt, mul.id) if nxt.op == "mul" else None
                if (g is not None and g.op in ("parameter", "constant") and tuple(g.shape) == norm
                        and nxt.dtype == mul.dtype):
                    interior.append(mul.id)
                    last, gamma = nxt, g.id
            return x_id, gamma, eps, norm, interior, last
    return None


def _rewrite(graph: Graph, interior: set, fused: Dict[int, Tuple[str, List[int], Dict]]) -> Graph:
    """A copy of ``graph`` without the ``interior`` nodes, each node of ``fused`` replaced by
    ``(op, input ids, attrs)`` under its own name and scope; unused leaves pruned."""
    if not fused:
        return graph
    out = Graph(meta=dict(graph.meta))
    new: Dict[int, Node] = {}
    for node in graph.nodes:
        if node.id in interior:
            continue
        if node.id in fused:
            op, ins, attrs = fused[node.id]
            new[node.id] = out.add(op, [new[i] for i in ins], attrs, name=node.name, scope=node.scope)
        else:
            new[node.id] = out.add(node.op, [new[i] for i in node.inputs], dict(node.attrs), name=node.name,
                                   scope=node.scope, array=graph.arrays.get(node.id))
    out.outputs = [new[o].id for o in graph.outputs]
    return prune(out)


def _fuse_all(graph: Graph, match) -> Graph:
    """Apply ``match(graph, node, consumers) -> (interior ids, last id, (op, inputs, attrs)) | None``
    at every node not already inside a match, then :func:`_rewrite`."""
    cons = _consumers(graph)
    fused: Dict[int, Tuple[str, List[int], Dict]] = {}
    interior: set = set()
    for node in graph.nodes:
        m = match(graph, node, cons) if node.id not in interior else None
        if m is not None:
            interior.update(m[0])
            fused[m[1]] = m[2]
    return _rewrite(graph, interior, fused)


def _rms_spec(graph: Graph, node: Node, cons):
    m = _match(graph, node, cons)
    if m is None:
        return None
    x_id, gamma, eps, norm, inner, last = m
    return inner, last.id, ("rms_norm", [x_id] + ([gamma] if gamma is not None else []),
                            {"normalized_shape": list(norm), "eps": eps})


def fuse_rms_norm(graph: Graph) -> Graph:
    """A copy of ``graph`` with every RMS-norm pattern replaced by one ``rms_norm`` node."""
    return _fuse_all(graph, _rms_spec)


def _scalar(graph: Graph, node: Node, value: float) -> bool:
    if node.op != "constant" or graph.arrays[node.id].ndim != 0:
        return False
    return abs(float(graph.arrays[node.id]) - value) <= 1e-6 * abs(value)


def _split(graph: Graph, node: Node, op: str, value: float) -> Optional[Node]:
    """For ``node = op(a, constant value)`` in either order: ``a``; else None."""
    if node.op != op:
        return None
    a, b = (graph.nodes[i] for i in node.inputs)
    if _scalar(graph, b, value):
        return a
    if _scalar(graph, a, value):
        return b
    return None


def _match_gelu(graph: Graph, t: Node, cons) -> Optional[Tuple[int, List[int], Node]]:
    """``(x id, interior ids, last node)`` if the ``tanh`` node ``t`` is the core of a tanh GELU."""
    if t.op != "tanh":
        return None
    u = graph.nodes[t.inputs[0]]
    s = _split(graph, u, "mul", math.sqrt(2.0 / math.pi))
    if s is None or s.op != "add" or cons[u.id] != [t.id] or cons[s.id] != [u.id]:
        return None
    for x_id, m_id in (s.inputs, s.inputs[::-1]):
        m = graph.nodes[m_id]
        p = _split(graph, m, "mul", 0.044715)
        if p is None or p.op != "pow" or p.attrs["exponent"] != 3.0 or p.inputs[0] != x_id:
            continue
        if cons[m.id] != [s.id] or cons[p.id] != [m.id] or len(cons[t.id]) != 1:
            continue
        a = graph.nodes[cons[t.id][0]]
        if _split(graph, a, "add", 1.0) is not t or len(cons[a.id]) != 1 or cons[a.id][0] < 0:
            continue
        interior = [p.id, m.id, s.id, u.id, t.id, a.id]
        final = graph.nodes[cons[a.id][0]]
        if final.op != "mul":
            continue
        other = _other(graph, final, a.id)
        if other is not None and _split(graph, other, "mul", 0.5) is graph.nodes[x_id] and cons[other.id] == [final.id]:
            return x_id, interior + [other.id], final           # (0.5 · x) · (1 + tanh(...))
        if other is not None and other.id == x_id and len(cons[final.id]) == 1 and cons[final.id][0] >= 0:
            half = graph.nodes[cons[final.id][0]]
            if _split(graph, half, "mul", 0.5) is final:
                return x_id, interior + [final.id], half         # (x · (1 + tanh(...))) · 0.5
    return None


def _gelu_spec(graph: Graph, node: Node, cons):
    m = _match_gelu(graph, node, cons)
    if m is None or m[2].dtype != graph.nodes[m[0]].dtype:
        return None
    return m[1], m[2].id, ("gelu", [m[0]], {"approximate": "tanh"})


def fuse_gelu_tanh(graph: Graph) -> Graph:
    """A copy of ``graph`` with every spelled-out tanh GELU replaced by one ``gelu`` node."""
    return _fuse_all(graph, _gelu_spec)


def fuse(graph: Graph) -> Graph:
    """:func:`fuse_rms_norm` then :func:`fuse_gelu_tanh`."""
    return fuse_gelu_tanh(fuse_rms_norm(graph))
