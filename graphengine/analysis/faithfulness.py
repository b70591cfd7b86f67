"""Faithfulness of token attributions: rankings by several methods, and deletion/insertion
curves that test them against the model.

Token scores (one number per token of a ``[B, T, d]`` node, for the tokens of one example;
higher ranks first):

- ``gradient``: the L2 norm over d of ∂QoI/∂node;
- ``grad_input``: |Σ_d ∂QoI/∂node · node|;
- ``integrated_gradients``: |Σ_d IG|, IG = (e − e₀) · mean over α of ∂QoI/∂node at e₀ + α(e − e₀),
  α at the ``steps`` midpoints of [0, 1] (Riemann midpoint rule; one real forward pass with the
  node replaced (:func:`graphengine.engine.forward`'s ``interventions``) and one backward pass
  per step); e₀ = 0 by default;
- ``max``: the largest M⁺ over the token's units (the max-product semiring, the paper's choice);
- ``mass``: the token's path mass Z = Σ |Π w| over all its paths (a share of the total once
  normalised);
- ``entropy``: the entropy (nats) of the distribution p ∝ |Π w| over every path from the token
  (its units pooled, :func:`graphengine.analysis.entropy.pooled_entropy`), **highest first**: a
  token the model reads is copied by attention into many positions and heads, so its mass is
  spread over many comparable paths, while a token that is ignored keeps its mass on a few
  dominant routes (its own residual stream; the [MASK] token's residual path to the QoI). The
  opposite argument (low entropy = a specific route = important) is as plausible, and the data
  do not settle it: on agreement model A low-first ranks worse than random and high-first second
  best, on model B the reverse (docs/sva.md), so always read it beside its control. Entropy does
  not depend on the mass's scale, so it ranks differently from ``mass`` and ``max``.
  Tokens with no path of non-zero weight (Z = 0, entropy 0 by convention) rank last.
  ``entropy_low`` (not in :data:`METHODS`) is the reverse order, the control for that choice;
- ``attention_rollout``: row ``position`` of the attention rollout (:func:`attention_rollout`;
  ``position`` 0, the [CLS] row a BERT classifier pools, by default; :func:`batch_faithfulness`
  also takes one position per example, e.g. each sentence's [MASK]);
- ``random``: a seeded random order (the baseline every method should beat).

Curves (``replacement``: zeros, or a vector such as the [MASK]/pad embedding): *deletion*
replaces the top-k tokens for k = 0…T and records the QoI, *insertion* starts from every token
replaced and restores the top k. Areas are trapezoids over k/T ∈ [0, 1] of the raw QoI: a
faithful ranking has a small deletion area and a large insertion area (for a QoI that the
tokens push up). Ties in scores go to the earlier position.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import select
>>> g = Graph(); e = g.input("e", (1, 3, 2))
>>> w = g.constant(np.array([[[1.0, 1.0], [5.0, 5.0], [0.1, 0.1]]]))
>>> q = g.call("sum", g.call("mul", e, w), axes=[1, 2], name="q")
>>> feeds = {"e": np.ones((1, 3, 2))}
>>> s = token_scores(g, feeds, select("q", (0,)), "e", methods=("gradient", "grad_input"))
>>> [ranking(v).tolist() for v in s.values()]
[[1, 0, 2], [1, 0, 2]]
>>> c = curves(g, feeds, select("q", (0,)), "e", ranking(s["gradient"]))
>>> c["deletion"].tolist(), round(c["deletion_area"], 3)
([12.2, 2.2, 0.2, 0.0], 2.833)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..engine import backward, forward
from ..engine.qoi import QoI, parse
from ..errors import GraphEngineError
from .causal import qoi_value
from .entropy import pooled_entropy

__all__ = ["METHODS", "KNOWN_METHODS", "ATTENTION_SCOPE", "FaithfulnessError", "integrated_gradients", "attention_rollout", "token_scores", "ranking", "curves",
           "FaithfulnessTable", "faithfulness", "batch_faithfulness"]

METHODS = ("gradient", "grad_input", "integrated_gradients", "max", "mass", "entropy", "attention_rollout", "random")
#: Every method :func:`token_scores` accepts: :data:`METHODS` and the reverse-entropy control.
KNOWN_METHODS = METHODS + ("entropy_low",)

#: The attention probabilities of layer L: a softmax in the scope of ``…layer.L.attention.self``.
ATTENTION_SCOPE = r"(?:^|\.)layer\.(?P<layer>\d+)\.attention\.self(?:\.|$)"


class FaithfulnessError(GraphEngineError):
    """A bad request: an unknown method, a node that is not [B, T, d], a bad replacement."""


def _replace_with(value: np.ndarray):
    def hook(_):
        return np.array(value, copy=True)
    return hook


def integrated_gradients(graph, feeds, qoi: Union[QoI, str], node, steps: int = 32,
                         baseline: Optional[np.ndarray] = None) -> np.ndarray:
    """Elementwise integrated gradients of the QoI with respect to ``node`` (midpoint rule with
    ``steps`` points; ``baseline`` defaults to zeros). Σ IG ≈ QoI(e) − QoI(e₀)."""
    qoi = parse(qoi) if isinstance(qoi, str) else qoi
    if steps < 1:
        raise FaithfulnessError(f"integrated gradients needs steps >= 1, got {steps}")
    nid = graph.node(node).id
    e = np.asarray(forward(graph, feeds)[nid], np.float64)
    e0 = np.zeros_like(e) if baseline is None else np.broadcast_to(np.asarray(baseline, np.float64), e.shape)
    total = np.zeros_like(e)
    for i in range(steps):
        alpha = (i + 0.5) / steps
        acts = forward(graph, feeds, {nid: _replace_with(e0 + alpha * (e - e0))})
        total += backward(graph, acts, qoi, retain=[nid], prune=True).grad(nid)
    return (e - e0) * total / steps


def attention_rollout(graph, activations, example: int = 0, residual: float = 0.5) -> np.ndarray:
    """Attention rollout [T, T] of ``example``: per layer (in order) the head-averaged attention
    probabilities A, mixed with the identity for the residual stream,
    ``Â = residual·I + (1 − residual)·A`` renormalised by row, multiplied from the first layer
    up: ``R = Â_L ⋯ Â_1``. Row t says how much each input token flows into position t. The
    probabilities are the softmax nodes in ``…layer.L.attention.self`` scopes."""
    import re

    rx = re.compile(ATTENTION_SCOPE)
    layers = []
    for n in graph.nodes:
        m = rx.search(n.scope)
        if n.op == "softmax" and m and len(n.shape) == 4:
            layers.append((int(m.group("layer")), n.id))
    if not layers:
        raise FaithfulnessError("attention rollout: no attention softmax found (a softmax of shape [B, heads, T, T] "
                                "in a '...layer.L.attention.self' scope; the 'paper' decomposition removes it)")
    R = None
    for _, nid in sorted(layers):
        A = np.asarray(activations[nid], np.float64)[example].mean(axis=0)
        A = residual * np.eye(A.shape[-1]) + (1.0 - residual) * A
        A = A / A.sum(axis=-1, keepdims=True)
        R = A if R is None else A @ R
    return R


def _check_node(graph, node) -> Tuple[int, Tuple[int, ...]]:
    n = graph.node(node)
    if len(n.shape) != 3:
        raise FaithfulnessError(f"token attributions need a [batch, tokens, hidden] node; '{n.name}' has shape "
                                f"{list(n.shape)}")
    return n.id, n.shape


def _entropy_scores(result, nid: int, shape, low_first: bool) -> np.ndarray:
    """Per token, ∓ its pooled path entropy (higher score ranks first); −∞ where Z = 0, NaN stays NaN."""
    if nid not in result.retained("entropy"):
        return np.full(shape[:2], -np.inf)
    c = result.components(nid, "entropy")
    Z = np.asarray(c["Z"], np.float64).sum(axis=-1)
    h = pooled_entropy(c["Z"], c["R"], axis=-1)
    return np.where(Z > 0, -h if low_first else h, np.where(np.isnan(Z), np.nan, -np.inf))


def _all_scores(graph, feeds, acts, qoi: QoI, nid: int, methods, ig_steps: int, seed: int,
                position: int) -> Dict[str, np.ndarray]:
    """Per method, the scores [B, T] of every example (one batched backward pass)."""
    unknown = [m for m in methods if m not in KNOWN_METHODS]
    if unknown:
        raise FaithfulnessError(f"unknown attribution method(s) {', '.join(unknown)} "
                                f"(known: {', '.join(KNOWN_METHODS)})")
    e = np.asarray(acts[nid], np.float64)
    B, T = e.shape[:2]
    sems = [s for m, s in (("gradient", "real"), ("grad_input", "real"), ("max", "max"), ("mass", "absolute"),
                           ("entropy", "entropy"), ("entropy_low", "entropy")) if m in methods]
    r = backward(graph, acts, qoi, semirings=list(dict.fromkeys(sems)), retain=[nid], prune=True) if sems else None

    def at(sem):
        return np.asarray(r.get(nid, sem), np.float64) if nid in r.retained(sem) else np.zeros(e.shape)
    out: Dict[str, np.ndarray] = {}
    for m in methods:
        if m == "gradient":
            out[m] = np.linalg.norm(at("real"), axis=-1)
        elif m == "grad_input":
            out[m] = np.abs(np.sum(at("real") * e, axis=-1))
        elif m == "integrated_gradients":
            out[m] = np.abs(integrated_gradients(graph, feeds, qoi, nid, ig_steps).sum(axis=-1))
        elif m == "max":
            v = at("max")
            out[m] = np.where(np.isfinite(v), v, -np.inf).max(axis=-1)
        elif m == "mass":
            out[m] = at("absolute").sum(axis=-1)
        elif m in ("entropy", "entropy_low"):
            out[m] = _entropy_scores(r, nid, e.shape, low_first=m == "entropy_low")
        elif m == "attention_rollout":
            rows = np.broadcast_to(np.asarray(position, np.int64), (B,))
            out[m] = np.stack([attention_rollout(graph, acts, b)[rows[b]] for b in range(B)])
        else:
            out[m] = np.stack([np.random.default_rng(seed + b).permutation(T) for b in range(B)]).astype(np.float64)
    return out


def token_scores(graph, feeds, qoi: Union[QoI, str], node, methods: Sequence[str] = METHODS, example: int = 0,
                 ig_steps: int = 32, seed: int = 0, position: int = 0) -> Dict[str, np.ndarray]:
    """Per method, one score per token of ``example`` (see the module docstring; the random
    order of example b uses seed ``seed + b``)."""
    qoi = parse(qoi) if isinstance(qoi, str) else qoi
    nid, _ = _check_node(graph, node)
    scores = _all_scores(graph, feeds, forward(graph, feeds), qoi, nid, methods, ig_steps, seed, position)
    return {m: v[example] for m, v in scores.items()}


def ranking(scores: np.ndarray) -> np.ndarray:
    """Token positions, highest score first (ties: earlier position first; NaN last)."""
    s = np.where(np.isnan(scores), -np.inf, np.asarray(scores, np.float64))
    return np.lexsort((np.arange(s.size), -s))


def curves(graph, feeds, qoi: Union[QoI, str], node, order: Sequence[int], example: int = 0,
           replacement: Optional[np.ndarray] = None) -> Dict[str, object]:
    """Deletion and insertion curves (QoI for k = 0…T) of the token ``order`` and their areas."""
    qoi = parse(qoi) if isinstance(qoi, str) else qoi
    nid, shape = _check_node(graph, node)
    T, d = shape[1], shape[2]
    rep = np.zeros(d) if replacement is None else np.asarray(replacement, np.float64)
    if rep.shape != (d,):
        raise FaithfulnessError(f"replacement must have shape [{d}] (one hidden vector), got {list(rep.shape)}")
    e = np.asarray(forward(graph, feeds)[nid], np.float64)

    def qoi_with(replaced) -> float:
        v = e.copy()
        v[example, list(replaced)] = rep
        return qoi_value(graph, forward(graph, feeds, {nid: _replace_with(v)}), qoi)
    order = [int(t) for t in order]
    deletion = np.array([qoi_with(order[:k]) for k in range(T + 1)])
    insertion = np.array([qoi_with(order[k:]) for k in range(T + 1)])
    x = np.linspace(0.0, 1.0, T + 1)
    return {"deletion": deletion, "insertion": insertion,
            "deletion_area": float(np.trapezoid(deletion, x)), "insertion_area": float(np.trapezoid(insertion, x))}


@dataclass
class FaithfulnessTable:
    """Per method: deletion/insertion areas per example and their means."""

    methods: List[str]
    deletion_area: np.ndarray    # [examples, methods]
    insertion_area: np.ndarray
    deletion_curves: List[Dict[str, np.ndarray]]
    insertion_curves: Optional[List[Dict[str, np.ndarray]]] = None
    orders: Optional[Dict[str, np.ndarray]] = None   # per method, [examples, T] token positions, best first

    def to_markdown(self) -> str:
        lines = ["| method | deletion area (lower is better) | insertion area (higher is better) |", "|---|---|---|"]
        for j, m in enumerate(self.methods):
            lines.append(f"| {m} | {self.deletion_area[:, j].mean():.4g} | {self.insertion_area[:, j].mean():.4g} |")
        return "\n".join(lines)

    def to_dict(self) -> Dict:
        return {"methods": self.methods, "deletion_area": self.deletion_area.tolist(),
                "insertion_area": self.insertion_area.tolist(),
                "mean_deletion_area": dict(zip(self.methods, self.deletion_area.mean(0).tolist())),
                "mean_insertion_area": dict(zip(self.methods, self.insertion_area.mean(0).tolist()))}


def faithfulness(graph, examples: Sequence[Tuple[Mapping[str, np.ndarray], Union[QoI, str]]], node,
                 methods: Sequence[str] = METHODS, example: int = 0, ig_steps: int = 32,
                 replacement: Optional[np.ndarray] = None, seed: int = 0, position: int = 0) -> FaithfulnessTable:
    """Deletion/insertion areas of every method's ranking on every ``(feeds, qoi)`` example."""
    dele = np.zeros((len(examples), len(methods)))
    ins = np.zeros_like(dele)
    kept, kept_ins = [], []
    for i, (feeds, qoi) in enumerate(examples):
        scores = token_scores(graph, feeds, qoi, node, methods, example, ig_steps, seed + i - example, position)
        per, per_ins = {}, {}
        for j, m in enumerate(methods):
            c = curves(graph, feeds, qoi, node, ranking(scores[m]), example, replacement)
            dele[i, j], ins[i, j] = c["deletion_area"], c["insertion_area"]
            per[m], per_ins[m] = c["deletion"], c["insertion"]
        kept.append(per)
        kept_ins.append(per_ins)
    return FaithfulnessTable(list(methods), dele, ins, kept, kept_ins)


def _per_example(graph, acts, qoi: QoI) -> np.ndarray:
    """The QoI's terms summed per example (index 0 of the QoI node)."""
    node = graph.node(qoi.node)
    coef, mask = qoi.coefficients(node.shape)
    y = np.where(mask, np.asarray(acts[node.id], np.float64), 0.0)
    return (coef * y).reshape(node.shape[0], -1).sum(axis=1)


def batch_faithfulness(graph, feeds, qoi: Union[QoI, str], node, methods: Sequence[str] = METHODS,
                       ig_steps: int = 32, replacement: Optional[np.ndarray] = None, seed: int = 0,
                       position: Union[int, Sequence[int]] = 0) -> FaithfulnessTable:
    """:func:`faithfulness` for every example of one batch at once: ``qoi`` seeds one term (or
    several) per example (index 0 of the QoI node is the example, as index 0 of ``node``), so
    one batched backward pass gives every example's scores (no path joins two examples) and
    each point of a curve is one forward pass replacing every example's top-k tokens."""
    qoi = parse(qoi) if isinstance(qoi, str) else qoi
    nid, (B, T, d) = _check_node(graph, node)
    rep = np.zeros(d) if replacement is None else np.asarray(replacement, np.float64)
    if rep.shape != (d,):
        raise FaithfulnessError(f"replacement must have shape [{d}] (one hidden vector), got {list(rep.shape)}")
    acts = forward(graph, feeds)
    e = np.asarray(acts[nid], np.float64)
    scores = _all_scores(graph, feeds, acts, qoi, nid, methods, ig_steps, seed, position)
    orders = {m: np.stack([ranking(row) for row in v]) for m, v in scores.items()}

    def run(keep_first: bool, order, k):
        v = e.copy()
        for b in range(B):
            v[b, order[b, :k] if keep_first else order[b, k:]] = rep
        return _per_example(graph, forward(graph, feeds, {nid: _replace_with(v)}), qoi)
    x = np.linspace(0.0, 1.0, T + 1)
    dele = np.zeros((B, len(methods)))
    ins = np.zeros_like(dele)
    kept = [dict() for _ in range(B)]
    kept_ins = [dict() for _ in range(B)]
    for j, m in enumerate(methods):
        dc = np.stack([run(True, orders[m], k) for k in range(T + 1)], axis=1)
        ic = np.stack([run(False, orders[m], k) for k in range(T + 1)], axis=1)
        dele[:, j], ins[:, j] = np.trapezoid(dc, x, axis=1), np.trapezoid(ic, x, axis=1)
        for b in range(B):
            kept[b][m], kept_ins[b][m] = dc[b], ic[b]
    return FaithfulnessTable(list(methods), dele, ins, kept, kept_ins, orders)
