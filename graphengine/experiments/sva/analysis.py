"""The paper's agreement analysis (§5.2 and App. B.2; see docs/method.md) for one batch of sentences.

For every sentence: QoI = ``logits[mask, good] − logits[mask, bad]`` (model A: vocabulary logits,
the paper's QoI; model B: the verb-number head); one backward pass computes the signed
max-product pair (M⁺ with backpointers) and the path entropy; from it:

- **K/Q/V/skip credits** (:func:`graphengine.analysis.kqv.kqv_credits`): at every
  layer's attention input, for every token, the branch (query/key/value/skip) its best unit's
  top path takes and that unit's M⁺.
- **Top path of [MASK]** (``scalar`` granularity only: ``paper`` backpointers name only nodes):
  the single heaviest (M⁺) path from the best unit of the [MASK] token's input embedding (the
  word-embedding lookup) to the QoI, walked element by element by
  :func:`graphengine.paths.top_path`; recorded are its weight and, at every layer input it
  crosses, the branch it leaves by and the token position it is at
  (:func:`graphengine.analysis.kqv.path_crossings`).
- **Per-token entropy**: entropy of the distribution over all paths from a token's
  word-embedding vector to the QoI (``Z`` and ``R`` pooled over the hidden units, as
  :func:`graphengine.analysis.entropy.pooled_entropy`). ``entropy_token`` is per position;
  ``entropy_row`` pools all positions of the sentence holding the same token id, which is what
  the original implementation measured (its embedding lookups scatter-added into the table
  row). Entropy is in nats.

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
from typing import Any, Dict, List, Sequence

import numpy as np

from ...analysis.entropy import grouped_entropy, pooled_entropy
from ...analysis.kqv import find_layer_inputs, kqv_credits, path_crossings
from ...engine import backward, batch as batch_qoi, difference, forward
from ...ir import Graph
from ...ir.passes import decompose
from ... import paths
from ...models.bert import word_embedding_lookup
from .data import SVAItem
from .models import Encoded

__all__ = ["GRANULARITIES", "Analyzer"]

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
        path = paths.top_path(result, emb.id, (b, e.mask_pos, unit), "max")
        crossings = path_crossings(path, layers)
        return {"weight": path.weight, "unit": unit,
                "branches": [c[0] if c is not None else None for c in crossings],
                "positions": [int(c[1][-2]) if c is not None else None for c in crossings], "steps": len(path)}
