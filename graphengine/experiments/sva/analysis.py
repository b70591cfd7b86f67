"""The paper's agreement analysis (§5.2 and App. B.2; see docs/method.md) for one batch of sentences.

For every sentence: QoI = ``logits[mask, good] − logits[mask, bad]`` (model A: vocabulary logits,
the paper's QoI; model B: the verb-number head); one backward pass computes the signed
max-product pair (M⁺ with backpointers) and the path entropy; from it:

- **K/Q/V/skip credits** (docs/method.md, :func:`graphengine.analysis.kqv.kqv_credits`): at every
  layer's attention input, for every token, the branch (query/key/value/skip) its best unit's
  top path takes and that unit's M⁺.
- **Top path of [MASK]** (``scalar`` granularity only: ``paper`` backpointers name only nodes):
  the single heaviest (M⁺) path from the best unit of the [MASK] token's input embedding (the
  word-embedding lookup) to the QoI, walked element by element; recorded are its weight and, at
  every layer input it crosses, the branch it leaves by and the token position it is at.
- **Per-token entropy** (App. B.2): entropy of the distribution over all paths from a token's
  word-embedding vector to the QoI (``Z`` and ``R`` pooled over the hidden units, as
  :func:`graphengine.analysis.entropy.pooled_entropy`). ``entropy_token`` is per position;
  ``entropy_row`` pools all positions of the sentence holding the same token id, which is what
  the original implementation measured (its embedding lookups scatter-added into the table
  row; docs/method.md). Entropy is in nats.

Granularities: ``scalar`` runs the exported (fused) graph with exact scalar semantics;
``paper`` first applies the ``paper`` decomposition policy (softmax via logsumexp, layer norm
from primitives, mean = sum / n) and runs the backward at ``paper`` granularity (sums inside
contractions and broadcasts, node-level backpointers), reproducing the original.

Batches are sentences of one length (no padding) or, for a graph file of fixed length, padded
sentences with an attention mask; since no path joins two examples, every per-sentence value
is the same as in a pass of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ...analysis.entropy import grouped_entropy, pooled_entropy
from ...analysis.kqv import COLUMNS, find_layer_inputs, kqv_credits
from ...engine import backward, batch as batch_qoi, difference, forward
from ...engine.propagate import Adjoint, propagate
from ...ir import Graph, get_op
from ...ir.jacobian import DenseBlock
from ...ir.passes import decompose
from ...models.bert import word_embedding_lookup
from ...semirings import Real
from .data import SVAItem
from .models import Encoded

__all__ = ["GRANULARITIES", "Analyzer", "walk_top_path",
           "local_derivative"]

GRANULARITIES = ("scalar", "paper")


def _round(a, digits: int = 6):
    """Floats rounded to ``digits`` significant digits; non-finite become None (JSON null)."""
    out = []
    for v in np.asarray(a, np.float64).ravel().tolist():
        out.append(float(f"{v:.{digits}g}") if np.isfinite(v) else None)
    return out


@dataclass
class Analyzer:
    """Runs the per-sentence analysis for one model and granularity (see the module docstring)."""

    model: Any
    granularity: str = "scalar"
    entropy: bool = True
    top_path: bool = True
    timings: Dict[str, float] = field(default_factory=lambda: {"forward": 0.0, "backward": 0.0, "top_path": 0.0,
                                                                "other": 0.0})
    _paper: Dict[int, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")

    def _graph(self, g: Graph) -> Graph:
        if self.granularity == "scalar":
            return g
        hit = self._paper.get(id(g))
        if hit is None or hit[0] is not g:
            if len(self._paper) > 8:
                self._paper.clear()
            hit = (g, decompose(g, "paper"))
            self._paper[id(g)] = hit
        return hit[1]

    def run(self, items: Sequence[SVAItem], encs: Sequence[Encoded]) -> List[Dict[str, Any]]:
        """Analyse one batch (all ``encs`` must share the model's batch key); one row per item."""
        t_start = time.perf_counter()
        g0, feeds = self.model.batch_inputs(encs)
        g = self._graph(g0)
        t0 = time.perf_counter()
        acts = forward(g, feeds)
        t1 = time.perf_counter()
        logits = g.node("logits")
        qoi = batch_qoi([difference(logits.id, (b, e.mask_pos, e.good), (b, e.mask_pos, e.bad))
                         for b, e in enumerate(encs)])
        layers = find_layer_inputs(g)
        emb = word_embedding_lookup(g)
        sems = ["max"] + (["entropy"] if self.entropy else [])
        want_path = self.top_path and self.granularity == "scalar"
        result = backward(g, acts, qoi, semirings=sems, retain=[li.node for li in layers] + [emb.id],
                          granularity=self.granularity, keep_backpointers=want_path, prune=True)
        t2 = time.perf_counter()
        credits = kqv_credits(result)
        lg = acts[logits.id]
        if self.entropy:
            Z, R = (np.asarray(c, np.float64) for c in result.raw(emb.id, "entropy"))
        rows = []
        t_path = 0.0
        for b, (it, e) in enumerate(zip(items, encs)):
            T = len(e.ids)
            q = float(lg[b, e.mask_pos, e.good] - lg[b, e.mask_pos, e.bad])
            row = {"id": it.row, "n_attractors": it.n_attractors, "construction": it.construction,
                   "tokens": T, "words": len(it.words), "mask": e.mask_pos, "good_number": it.good_number,
                   "qoi": q, "correct": bool(q > 0),
                   "subject": e.positions([it.subject]) if it.subject is not None else None,
                   "attractors": e.positions(it.attractors) if it.attractors is not None else None,
                   "kqv_branch": credits.branch[:, b, :T].tolist(),
                   "kqv_value": [_round(v) for v in credits.value[:, b, :T]]}
            if self.entropy:
                z, r = Z[b, :T].sum(-1), R[b, :T].sum(-1)
                row["entropy_token"] = _round(pooled_entropy(z, r, axis=()))
                row["entropy_row"] = _round(grouped_entropy(z, r, e.ids))
            if want_path:
                tp = time.perf_counter()
                row["top_path"] = self._mask_path(result, emb, layers, b, e)
                t_path += time.perf_counter() - tp
            rows.append(row)
        t3 = time.perf_counter()
        self.timings["forward"] += t1 - t0
        self.timings["backward"] += t2 - t1
        self.timings["top_path"] += t_path
        self.timings["other"] += (t0 - t_start) + (t3 - t2 - t_path)
        per = (t3 - t_start) / len(items)
        for r in rows:
            r["seconds"] = round(per, 4)
        return rows

    def _mask_path(self, result, emb, layers, b: int, e: Encoded) -> Dict[str, Any]:
        mplus = result.components(emb.id, "max")["max"][b, e.mask_pos]
        if not np.isfinite(mplus).any():
            return {"weight": None, "unit": None, "branches": [None] * len(layers), "positions": [None] * len(layers)}
        unit = int(np.argmax(mplus))
        steps, weight = walk_top_path(result, emb.id, (b, e.mask_pos, unit))
        by_node = {li.node: li for li in layers}
        branches: List[Optional[str]] = [None] * len(layers)
        positions: List[Optional[int]] = [None] * len(layers)
        index = {li.layer: k for k, li in enumerate(layers)}
        for (node, elem), (nxt, _) in zip(steps, steps[1:]):
            li = by_node.get(node)
            if li is not None:
                k = index[li.layer]
                branches[k] = li.branches.get(nxt, "other")
                positions[k] = int(elem[1])
        return {"weight": weight, "unit": unit, "branches": branches, "positions": positions, "steps": len(steps)}


# ------------------------------------------------------------------ the top path, cheaply
def _block_entry(s: DenseBlock, shape, y: int, x: int) -> float:
    """``∂out[y]/∂in[x]`` of a factored dense block (same shape in and out), one entry, summed in
    the order :meth:`~graphengine.ir.jacobian.LowRankBlock.dense` uses."""
    yi, xi = np.unravel_index(y, shape), np.unravel_index(x, shape)
    other = [a for a in range(len(shape)) if a not in s.axes]
    if any(yi[a] != xi[a] for a in other):
        return 0.0
    bshape = tuple(shape[a] for a in other)
    nshape = tuple(shape[a] for a in s.axes)
    n = int(np.prod(nshape))
    b = tuple(int(yi[a]) for a in other)
    r = int(np.ravel_multi_index([yi[a] for a in s.axes], nshape))
    c = int(np.ravel_multi_index([xi[a] for a in s.axes], nshape))
    f = s.factors
    d = np.broadcast_to(f.diag, bshape + (n,))
    u = np.broadcast_to(f.u, bshape + (n, f.u.shape[-1]))
    v = np.broadcast_to(f.v, bshape + (n, f.v.shape[-1]))
    val = float(d[b + (r,)]) if r == c else 0.0
    for t in range(u.shape[-1]):
        val += float(u[b + (r, t)]) * float(v[b + (c, t)])
    return val


def local_derivative(result, consumer: int, slot: int, y: int, x: int) -> float:
    """Like :func:`graphengine.paths.top.local_derivative`, without materializing dense blocks
    (a layer norm's Jacobian over a whole batch would be [tokens, H, H])."""
    graph, acts = result.graph, result.activations
    node = graph.nodes[consumer]
    structure = get_op(node.op).jacobian(slot, [acts[i] for i in node.inputs], acts[consumer], node.attrs)
    in_shape = graph.nodes[node.inputs[slot]].shape
    if isinstance(structure, DenseBlock) and structure.factors is not None and tuple(in_shape) == tuple(node.shape):
        return _block_entry(structure, node.shape, y, x)
    seed = np.zeros(node.shape)
    seed.flat[y] = 1.0
    return float(propagate(structure, Adjoint((seed,)), in_shape, Real()).value[0].flat[x])


def walk_top_path(result, node: int, index) -> tuple:
    """The M⁺ top path from ``node[index]`` to the QoI: ``([(node id, element), ...], weight)``.

    The walk of :func:`graphengine.paths.top.top_path` (element backpointers, the signed pair's
    component switching on negative edges) with :func:`local_derivative`.
    """
    graph = result.graph
    sres = result.semiring_result("max")
    sr = sres.semiring
    u = int(node)
    x = int(np.ravel_multi_index(tuple(index), graph.nodes[u].shape))
    steps, weight, c = [], 1.0, 0
    while True:
        n = graph.nodes[u]
        steps.append((u, tuple(int(i) for i in np.unravel_index(x, n.shape))))
        if u == result.qoi_node:
            weight *= float(result.qoi_coefficients.flat[x])
            break
        bp = sres.backpointers.get(u)
        if bp is None or bp.node[c].flat[x] < 0:
            raise ValueError(f"no path from {n.name} element {x} to the QoI")
        v, slot, y = int(bp.node[c].flat[x]), int(bp.slot[c].flat[x]), int(bp.element[c].flat[x])
        w = local_derivative(result, v, slot, y, x)
        weight *= w
        c = sr.next_component(c, w)
        u, x = v, y
    return steps, weight


BRANCH_NAMES = COLUMNS
