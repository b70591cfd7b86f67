#!/usr/bin/env python
"""Equal weights: path entropy = log(#paths) and path count = #paths.

When every path has the same weight the path distribution is uniform, so its entropy is
log(#paths). The graphs:

- ``layered``: complete layered DAGs of constant width, all weights w ∈ {1.0, 0.7, 1.3}
  (every path has L edges, so any w gives equal path weights);
- ``varied``: layered DAGs with random widths, the same weights;
- ``skip``: random widths plus skip connections through ``add`` (identity edges when the widths
  agree, a projection ``linear`` otherwise), all weights 1.0 — with skips paths have different
  lengths, so only w = 1 makes them equally heavy. The same graphs with w = 0.7 are checked for
  the count only, and their entropy against a pure-Python dynamic program over the explicit
  networkx unit graph.

The engine's entropy is pooled over the input vector with
:func:`graphengine.analysis.entropy.vector_entropy` (ΣR/ΣZ + log ΣZ) for both ``entropy`` and
``logentropy``; the count is Σ over input units of ``count`` (and log-sum-exp of ``logcount``).
#paths is computed independently: ``prod(widths)`` in closed form, or a path-counting dynamic
program over the networkx unit graph (Python integers) for skip graphs.

    graphengine experiment synthetic-equal-weights [--quick] [--out DIR] [--seed S]

Writes ``results.json`` and ``equal_weights.png`` (with matplotlib) into ``--out`` (default
``results/synthetic-equal-weights``); ``passed`` is false (exit status 1) if any check fails.

>>> round(reference_entropy([2, 3], [], layered_dag([2, 3], weights=1.0).graph), 6) == round(math.log(6), 6)
True
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, List, Optional

import numpy as np

from ..analysis.entropy import vector_entropy
from ..engine import backward, forward
from ..models.synthetic import count_paths, layered_dag, output_qoi, unit_graph
from .common import progress as progress_bar
from .common import pyplot, results_dir, save_figure, save_results

NAME = "synthetic-equal-weights"
DESCRIPTION = "synthetic: on equal-weight DAGs path entropy = log #paths and path count = #paths"
QUICK_HELP = "few small graphs (seconds)"
SEMIRINGS = ["entropy", "logentropy", "count", "logcount"]


def reference_entropy(widths, skips, graph):
    """Entropy of the path distribution by a pure-Python DP over the networkx unit graph
    (vertices processed in reverse topological order; Z, R per vertex as Python floats)."""
    import networkx as nx

    G = unit_graph(widths, skips, graph=graph)
    L = len(widths) - 1
    Z, R = {}, {}
    for v in reversed(list(nx.topological_sort(G))):
        if v[0] == L:
            Z[v], R[v] = 1.0, 0.0
            continue
        z = r = 0.0
        for u in G.successors(v):
            w = abs(G[v][u]["weight"])
            z += w * Z[u]
            r += w * R[u] - (w * math.log(w) if w > 0 else 0.0) * Z[u]
        Z[v], R[v] = z, r
    z = sum(Z[(0, i)] for i in range(widths[0]))
    r = sum(R[(0, i)] for i in range(widths[0]))
    return r / z + math.log(z)


def graph_specs(rng, quick):
    specs = []
    layered = [(1, 2), (2, 3), (3, 4), (5, 5), (8, 6)] + ([] if quick else [(10, 10), (20, 8), (30, 16), (60, 32)])
    for L, d in layered:
        for w in (1.0, 0.7, 1.3):
            specs.append(("layered", [d] * (L + 1), [], w))
    for L in ([3, 6] if quick else [3, 6, 12, 25, 50]):
        for rep in range(2 if quick else 3):
            widths = [int(v) for v in rng.integers(1, 13, size=L + 1)]
            for w in (1.0, 0.7, 1.3):
                specs.append(("varied", widths, [], w))
    for L in ([4, 6] if quick else [4, 6, 10, 20, 40]):
        for rep in range(2 if quick else 3):
            widths = [int(v) for v in rng.choice([3, 4, 6], size=L + 1)]
            cand = [(s, t) for s in range(L - 1) for t in range(s + 2, L + 1)]
            pick = rng.choice(len(cand), size=min(len(cand), max(1, L // 2)), replace=False)
            skips = sorted(cand[i] for i in pick)
            specs.append(("skip", widths, skips, 1.0))
            specs.append(("skip (w=0.7)", widths, skips, 0.7))
    return specs


def _measure(seed: int, quick: bool, progress: bool) -> Dict[str, Any]:
    rng = np.random.default_rng(seed)
    rows = []
    t0 = time.perf_counter()
    for family, widths, skips, w in progress_bar(graph_specs(rng, quick), desc=NAME, enabled=progress):
        dag = layered_dag(widths, weights=w, skips=skips)
        acts = forward(dag.graph, dag.feeds)
        r = backward(dag.graph, acts, output_qoi(dag.graph, dag.output), semirings=SEMIRINGS, retain=["x"])
        n = count_paths(widths, skips)
        log_n = math.log(n)
        count = float(np.sum(r.get("x", "count")))
        log_count = float(np.logaddexp.reduce(np.asarray(r.get("x", "logcount"), np.float64).reshape(-1)))
        H = vector_entropy(r, "x", "entropy")
        H_log = vector_entropy(r, "x", "logentropy")
        uniform = not skips or w == 1.0
        ref_H = log_n if uniform else reference_entropy(widths, skips, dag.graph)
        rows.append({
            "family": family, "widths": widths, "skips": [list(s) for s in skips], "weight": w,
            "unit_graph_edges": dag.graph.summary()["parameter_elements"] + sum(widths[s] for s, t in skips
                                                                      if widths[s] == widths[t]),
            "paths": str(n), "log_paths": log_n, "uniform": uniform,
            "reference_entropy": ref_H,
            "reference": "log #paths" if uniform else "pure-Python DP over the networkx unit graph",
            "count": count, "count_rel_error": abs(count - n) / n,
            "logcount": log_count, "logcount_abs_error": abs(log_count - log_n),
            "entropy": H, "entropy_abs_error": abs(H - ref_H),
            "logentropy": H_log, "logentropy_abs_error": abs(H_log - ref_H),
        })
    summary = {
        "graphs": len(rows),
        "uniform_graphs": sum(r["uniform"] for r in rows),
        "max_paths": max(rows, key=lambda r: r["log_paths"])["paths"],
        "entropy_vs_log_paths_max_abs_error": max(r["entropy_abs_error"] for r in rows if r["uniform"]),
        "logentropy_vs_log_paths_max_abs_error": max(r["logentropy_abs_error"] for r in rows if r["uniform"]),
        "entropy_vs_reference_dp_max_abs_error": max([r["entropy_abs_error"] for r in rows if not r["uniform"]] or [0.0]),
        "logentropy_vs_reference_dp_max_abs_error": max([r["logentropy_abs_error"] for r in rows if not r["uniform"]] or [0.0]),
        "count_max_rel_error": max(r["count_rel_error"] for r in rows),
        "count_exact_below_2**53": all(r["count_rel_error"] == 0 for r in rows if int(r["paths"]) < 2 ** 53),
        "logcount_max_abs_error": max(r["logcount_abs_error"] for r in rows),
    }
    tol = lambda r: 1e-9 * max(1.0, abs(r["reference_entropy"]))  # noqa: E731
    passed = (all(r["entropy_abs_error"] <= tol(r) and r["logentropy_abs_error"] <= tol(r) for r in rows)
              and summary["count_exact_below_2**53"] and summary["count_max_rel_error"] < 1e-12
              and summary["logcount_max_abs_error"] < 1e-9 * max(1.0, max(r["log_paths"] for r in rows)))
    return {"experiment": NAME,
            "description": "entropy of the path distribution vs log #paths, and path counts, on equal-weight DAGs",
            "config": {"seed": seed, "quick": quick, "qoi": "sum of output units",
                       "entropy": "vector_entropy over the input x (ΣR/ΣZ + log ΣZ)",
                       "tolerance": "1e-9 * max(1, H) absolute"},
            "summary": summary, "graphs": rows, "seconds": time.perf_counter() - t0, "passed": bool(passed)}


def _plot(res, path) -> Optional[str]:
    plt = pyplot()
    if plt is None:
        return None
    rows = res["graphs"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    families = list(dict.fromkeys(r["family"] for r in rows))
    colors = dict(zip(families, ["tab:blue", "tab:green", "tab:red", "tab:purple"]))
    for fam in families:
        sel = [r for r in rows if r["family"] == fam]
        ax.scatter([r["log_paths"] for r in sel], [r["entropy"] for r in sel], s=28, color=colors[fam],
                   label=f"{fam} (entropy)", alpha=0.7)
        ax.scatter([r["log_paths"] for r in sel], [r["logentropy"] for r in sel], s=60, facecolors="none",
                   edgecolors=colors[fam], label=f"{fam} (logentropy)")
    hi = max(r["log_paths"] for r in rows) * 1.05
    ax.plot([0, hi], [0, hi], "k--", lw=0.8, label="H = log #paths")
    ax.set_xlabel("log #paths (independent count)")
    ax.set_ylabel("engine path entropy over input x (nats)")
    ax.set_title("Equal weights: entropy vs log #paths\n(skip w=0.7: non-uniform paths, H ≤ log #paths; checked against a DP reference)",
                 fontsize=9)
    ax.legend(fontsize=7)
    errs = [(r["log_paths"], max(r["entropy_abs_error"], 1e-18), max(r["logentropy_abs_error"], 1e-18),
             max(r["count_rel_error"], 1e-18)) for r in rows]
    e = np.array(errs)
    ax2.scatter(e[:, 0], e[:, 1], s=18, label="|H_entropy − ref|")
    ax2.scatter(e[:, 0], e[:, 2], s=18, marker="x", label="|H_logentropy − ref|")
    ax2.scatter(e[:, 0], e[:, 3], s=18, marker="^", label="count relative error")
    ax2.set_yscale("log")
    ax2.set_ylim(1e-19, 1e-6)
    ax2.set_xlabel("log #paths")
    ax2.set_ylabel("error (exact 0 drawn at 1e-18)")
    ax2.set_title("Errors against the independent references", fontsize=9)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def add_arguments(parser) -> None:
    """``graphengine experiment synthetic-equal-weights`` has only the common options."""


def run(out: Optional[str] = None, quick: bool = False, seed: int = 0, progress: bool = True) -> Dict[str, Any]:
    """Check every graph, write ``results.json`` and the plot under ``out``; the results document."""
    out = results_dir(out, NAME)
    return save_results(out, _measure(seed, quick, progress), _plot, "equal_weights.png")


def summary(res: Dict[str, Any]) -> List[str]:
    """The lines ``graphengine experiment synthetic-equal-weights`` prints."""
    s = res["summary"]
    return [f"{s['graphs']} graphs ({s['uniform_graphs']} with uniform path weights), up to "
            f"{float(s['max_paths']):.3g} paths",
            f"entropy    vs log #paths: max abs error {s['entropy_vs_log_paths_max_abs_error']:.2e}",
            f"logentropy vs log #paths: max abs error {s['logentropy_vs_log_paths_max_abs_error']:.2e}",
            f"non-uniform (skip, w=0.7) vs pure-Python DP: entropy {s['entropy_vs_reference_dp_max_abs_error']:.2e}, "
            f"logentropy {s['logentropy_vs_reference_dp_max_abs_error']:.2e}",
            f"count: max rel error {s['count_max_rel_error']:.2e} (exact below 2**53: {s['count_exact_below_2**53']}); "
            f"logcount max abs error {s['logcount_max_abs_error']:.2e}"]
