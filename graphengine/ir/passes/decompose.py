"""Decomposition policies: how fused ops are spelled out in elementary ops.

The gradient does not depend on how softmax, layer norm or GELU is written; path statistics
(max paths, entropy, path counts) do, because the scalar gradient graph changes. A graph records
its policy in ``graph.meta["decomposition"]``. Three policies exist:

``fused``
    The identity pass: ``softmax``, ``log_softmax``, ``layer_norm``, ``rms_norm``, ``gelu`` and
    ``silu`` stay whole, each with its exact Jacobian (a dense block per slice for the
    normalizations and softmaxes, a diagonal for the activations). A SwiGLU MLP
    (``silu(gate(x)) · up(x)``) is then one ``silu`` and one ``mul``, as a GELU MLP is one ``gelu``.

``primitive``
    Numerically standard expansions (what a framework computes), over the reduced axis ``a``
    (layer norm: the trailing ``normalized_shape`` axes), with ``keepdim`` reductions:

    - ``softmax(x)``: ``m = amax(x)``, ``z = x − m``, ``e = exp(z)``, ``s = sum(e)``, ``y = e / s``
    - ``log_softmax(x)``: ``m``, ``z``, ``e``, ``s`` as above, ``y = z − log(s)``
    - ``layer_norm(x, γ, β)``: ``μ = mean(x)``, ``d = x − μ``, ``v = mean(d²)``,
      ``x̂ = d · rsqrt(v + eps)``, ``y = x̂ · γ + β`` (two-pass variance; ``d²`` is ``pow(d, 2)``)
    - ``gelu(x)`` exact: ``y = x · (erf(x · 2^-½) + 1) · 0.5``;
      tanh approximation: ``y = x · (tanh((x + 0.044715 · x³) · √(2/π)) + 1) · 0.5``
    - ``rms_norm(x, γ)``: ``v = mean(x²)``, ``x̂ = x · rsqrt(v + eps)``, ``y = x̂ · γ``
    - ``silu(x)``: ``y = x · sigmoid(x)``
    - ``mean`` stays an op (it is already elementary: one edge of weight 1/n per element).

``paper``
    Exactly the decompositions of the original implementation (brunoflow; see docs/granularity.md):

    - ``logsumexp(x) = m + log(sum(exp(x − m)))`` with ``m = amax(x)``; the gradient flows
      through ``m`` too (``amax`` routes it to the maximum; tied maxima share it equally —
      brunoflow gave it to the first maximum only)
    - ``softmax(x) = exp(x − logsumexp(x))``; ``log_softmax(x) = x − logsumexp(x)``
    - layer norm: ``μ = mean(x)``, ``v = mean(x²) − μ²``, ``x̂ = (x − μ) / sqrt(v + eps)``,
      ``y = γ · x̂ + β`` (squares are ``pow(·, 2)``)
    - ``mean(x) = sum(x) / n`` (every ``mean`` node of the graph, including those above)
    - GELU exact (erf) as in ``primitive``; a tanh-approximated GELU, RMS norm and SiLU, which
      the original never had, use the ``primitive`` expansions (with ``mean`` as ``sum / n``).

Constants of an expansion (``eps``, ``n``, ``0.5``...) are 0-d ``constant`` nodes of the
input's dtype. Every node of an expansion gets the fused node's scope; the expansion's last
node keeps the fused node's name and the others are named ``<name>.<part>`` (e.g.
``encoder.layer.0.attention.self.probs.lse``), so lookups by name and by scope still work.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> g = Graph(); x = g.input("x", (2, 3)); y = g.call("softmax", x, name="y", scope="attn", axis=-1)
>>> g.mark_output(y)
>>> p = decompose(g, "paper")
>>> p.meta["decomposition"], [n.op for n in p if n.op not in ("input", "constant")]
('paper', ['amax', 'sub', 'exp', 'sum', 'log', 'add', 'sub', 'exp'])
>>> p["y"].scope, p["y.lse"].op
('attn', 'add')
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional

import numpy as np

from ...errors import GraphEngineError
from ..graph import Graph, Node
from .prune import unique_name

POLICIES = ("fused", "primitive", "paper")
FUSED_OPS = ("softmax", "log_softmax", "layer_norm", "rms_norm", "gelu", "silu")


class _Emitter:
    """Builds the expansion of one fused node inside the destination graph."""

    def __init__(self, g: Graph, taken: set, name: str, scope: str, dtype: str):
        self.g, self.taken, self.name, self.scope, self.dtype = g, taken, name, scope, dtype

    def op(self, op: str, *inputs: Node, part: Optional[str] = None, **attrs) -> Node:
        name = unique_name(f"{self.name}.{part or op}", self.taken)
        return self.g.add(op, inputs, attrs, name=name, scope=self.scope)

    def const(self, value: float, part: str) -> Node:
        name = unique_name(f"{self.name}.{part}", self.taken)
        return self.g.add("constant", (), {}, name=name, scope=self.scope,
                          array=np.array(value, dtype=self.dtype))

    def final(self, op: str, *inputs: Node, **attrs) -> Node:
        self.taken.discard(self.name)  # the fused node's own name, reserved up front
        return self.g.add(op, inputs, attrs, name=self.name, scope=self.scope)


def _lse(e: _Emitter, x: Node, axes: List[int]) -> Node:
    m = e.op("amax", x, part="max", axes=axes, keepdim=True)
    z = e.op("sub", x, m, part="shifted")
    s = e.op("sum", e.op("exp", z, part="exp"), part="sumexp", axes=axes, keepdim=True)
    return e.op("add", m, e.op("log", s, part="log"), part="lse")


def _mean(e: _Emitter, x: Node, axes: List[int], policy: str, part: str) -> Node:
    if policy != "paper":
        return e.op("mean", x, part=part, axes=axes, keepdim=True)
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    s = e.op("sum", x, part=f"{part}_sum", axes=axes, keepdim=True)
    return e.op("div", s, e.const(float(n), f"{part}_n"), part=part)


def _softmax(e, x, ins, attrs, policy, log):
    axes = [attrs["axis"] % len(x.shape)]
    if policy == "paper":
        lse = _lse(e, x, axes)
        if log:
            return e.final("sub", x, lse)
        return e.final("exp", e.op("sub", x, lse, part="log_probs"))
    m = e.op("amax", x, part="max", axes=axes, keepdim=True)
    z = e.op("sub", x, m, part="shifted")
    ex = e.op("exp", z, part="exp")
    s = e.op("sum", ex, part="sumexp", axes=axes, keepdim=True)
    if log:
        return e.final("sub", z, e.op("log", s, part="log"))
    return e.final("div", ex, s)


def _layer_norm(e, x, ins, attrs, policy):
    k = len(attrs["normalized_shape"])
    axes = list(range(len(x.shape) - k, len(x.shape)))
    mu = _mean(e, x, axes, policy, "mean")
    if policy == "paper":
        m2 = _mean(e, e.op("pow", x, part="sq", exponent=2.0), axes, policy, "mean_sq")
        var = e.op("sub", m2, e.op("pow", mu, part="mean_pow2", exponent=2.0), part="var")
        d = e.op("sub", x, mu, part="centered")
        den = e.op("sqrt", e.op("add", var, e.const(attrs["eps"], "eps"), part="var_eps"), part="std")
        xhat = e.op("div", d, den, part="xhat")
    else:
        d = e.op("sub", x, mu, part="centered")
        var = _mean(e, e.op("pow", d, part="sq", exponent=2.0), axes, policy, "var")
        r = e.op("rsqrt", e.op("add", var, e.const(attrs["eps"], "eps"), part="var_eps"), part="rstd")
        xhat = e.op("mul", d, r, part="xhat")
    if len(ins) == 1:
        return e.final("reshape", xhat, shape=list(x.shape))  # keeps the node's name on the result
    y = xhat
    if len(ins) >= 2:
        y = e.final("mul", xhat, ins[1]) if len(ins) == 2 else e.op("mul", xhat, ins[1], part="scaled")
    if len(ins) == 3:
        y = e.final("add", y, ins[2])
    return y


def _gelu(e, x, ins, attrs, policy):
    if attrs["approximate"] == "tanh":
        cube = e.op("mul", e.op("pow", x, part="cube", exponent=3.0), e.const(0.044715, "c"), part="cube_c")
        inner = e.op("mul", e.op("add", x, cube, part="poly"), e.const(math.sqrt(2.0 / math.pi), "k"), part="inner")
        t = e.op("tanh", inner, part="tanh")
    else:
        t = e.op("erf", e.op("mul", x, e.const(1.0 / math.sqrt(2.0), "inv_sqrt2"), part="scaled"), part="erf")
    one_plus = e.op("add", t, e.const(1.0, "one"), part="one_plus")
    return e.final("mul", e.op("mul", x, one_plus, part="x_one_plus"), e.const(0.5, "half"))


def _rms_norm(e, x, ins, attrs, policy):
    k = len(attrs["normalized_shape"])
    axes = list(range(len(x.shape) - k, len(x.shape)))
    var = _mean(e, e.op("pow", x, part="sq", exponent=2.0), axes, policy, "mean_sq")
    r = e.op("rsqrt", e.op("add", var, e.const(attrs["eps"], "eps"), part="var_eps"), part="rstd")
    if len(ins) == 1:
        return e.final("mul", x, r)
    return e.final("mul", e.op("mul", x, r, part="xhat"), ins[1])


def _silu(e, x, ins, attrs, policy):
    return e.final("mul", x, e.op("sigmoid", x, part="sigmoid"))


def _mean_op(e, x, ins, attrs, policy):
    axes = list(range(len(x.shape))) if attrs["axes"] is None else (
        [attrs["axes"]] if isinstance(attrs["axes"], int) else list(attrs["axes"]))
    axes = sorted(a % max(len(x.shape), 1) for a in axes)
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    s = e.op("sum", x, part="sum", axes=axes, keepdim=attrs["keepdim"])
    return e.final("div", s, e.const(float(n), "n"))


_EXPANSIONS: Dict[str, Callable] = {
    "softmax": lambda e, x, ins, a, p: _softmax(e, x, ins, a, p, log=False),
    "log_softmax": lambda e, x, ins, a, p: _softmax(e, x, ins, a, p, log=True),
    "layer_norm": _layer_norm,
    "gelu": _gelu,
    "rms_norm": _rms_norm,
    "silu": _silu,
}


def decompose(graph: Graph, policy: str = "fused") -> Graph:
    """Expand the fused ops of ``graph`` according to ``policy`` (see the module docstring).

    ``fused`` returns ``graph`` itself (recording the policy in its meta if it had none). A graph
    already decomposed with another policy cannot be decomposed again (its fused ops are gone):
    that raises :class:`GraphEngineError`.
    """
    if policy not in POLICIES:
        raise GraphEngineError(f"unknown decomposition policy {policy!r} (choose one of {', '.join(POLICIES)})")
    current = graph.meta.get("decomposition", "fused")
    if current == policy:
        graph.meta.setdefault("decomposition", policy)
        return graph
    if current != "fused":
        raise GraphEngineError(f"graph is already decomposed with policy '{current}'; "
                               f"apply '{policy}' to the fused graph instead")
    expand = dict(_EXPANSIONS)
    if policy == "paper":
        expand["mean"] = _mean_op
    out = Graph(meta=dict(graph.meta, decomposition=policy))
    taken = {n.name for n in graph.nodes}
    new: Dict[int, Node] = {}
    for node in graph.nodes:
        ins = [new[i] for i in node.inputs]
        if node.op in expand:
            e = _Emitter(out, taken, node.name, node.scope, node.dtype)
            new[node.id] = expand[node.op](e, ins[0], ins, node.attrs, policy)
        else:
            new[node.id] = out.add(node.op, ins, dict(node.attrs), name=node.name, scope=node.scope,
                                   array=graph.arrays.get(node.id))
    out.outputs = [new[o].id for o in graph.outputs]
    return out
