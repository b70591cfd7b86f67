#!/usr/bin/env python
"""Backward time per semiring against the number of edges: is it O(|E|)?

Layered ``linear`` DAGs of depth ``L`` (default 8) and width ``d`` with ``|E| = Σ in·out =
L·d²`` scalar edges on the input → output paths, ``d`` chosen so that ``|E|`` runs over
log-spaced targets from 10³ to 10⁷ (``--quick``: to 10⁵). Each semiring is timed alone
(``backward(..., semirings=[s], retain=["x"])``, backpointers kept as by default), best of N
runs, single-threaded where threadpoolctl is installed (the ``bench`` extra; the results record
which). The log-log slope of time against |E| is fitted per semiring over all sizes and over
|E| ≥ 10⁵ (quick: ≥ 10⁴), where fixed per-node Python overhead no longer dominates, and over the
top decade of sizes.

Two weight kinds are measured: ``constant`` weights (the gradient graph has exactly |E| edges)
and ``parameter`` weights (the engine also computes every parameter's adjoint, another |E|
edges ``W[o,i] → h[o]``; the reported |E| stays Σ in·out).

A semiring whose single run exceeds ``--cap-seconds`` (or is predicted to, by linear
extrapolation) is not run at larger sizes; the cap is recorded in the JSON. Before timing, every
size is checked: the ``real`` result must equal the closed-form gradient ``1ᵀ W_L ⋯ W_1`` and
``count`` must equal d^L per input unit; ``passed`` is false (exit status 1) if not.

    graphengine experiment synthetic-scaling [--quick] [--out DIR] [--seed S] [--max-edges E] ...

Writes ``results.json`` and ``scaling.png`` (with matplotlib) into ``--out`` (default
``results/synthetic-scaling``); with progress on, one line per size goes to stderr.

>>> sizes(1e4, 8)
[11, 20, 35]
>>> round(fit([1e3, 1e4, 1e5], [1e-3, 1e-2, 1e-1])["slope"], 12)
1.0
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..engine import backward, forward
from ..models.synthetic import layer_weights, layered_dag, output_qoi
from ..semirings import SEMIRINGS
from .common import ExperimentError, pyplot, results_dir, save_figure, save_results, single_thread

NAME = "synthetic-scaling"
DESCRIPTION = "synthetic: backward time per semiring against the number of edges (log-log slope ~1)"
QUICK_HELP = "up to 1e5 edges, best of 3 (about a minute)"
ASYMPTOTIC_FROM = 1e5


def sizes(max_edges, layers, per_decade=2):
    out = []
    for e in 10 ** np.arange(3, np.log10(max_edges) + 1e-9, 1.0 / per_decade):
        d = max(1, int(round(np.sqrt(e / layers))))
        if not out or d != out[-1]:
            out.append(d)
    return out


def check(dag, acts, L, d):
    """The timed computation is right: real = closed-form gradient, count = d^L per unit."""
    r = backward(dag.graph, acts, output_qoi(dag.graph, dag.output), semirings=["real", "count"], retain=["x"])
    g = np.ones((1, d))
    for W in reversed(layer_weights(dag.graph)):
        g = g @ W
    ok_real = np.allclose(r.grad("x"), g, rtol=1e-9, atol=1e-12 * np.abs(g).max())
    ok_count = np.allclose(r.get("x", "count"), float(d) ** L, rtol=1e-12, atol=0)  # exact below 2**53
    return bool(ok_real and ok_count)


def time_one(fn, repeats, budget):
    best, runs, spent = np.inf, 0, 0.0
    gc.collect()
    while runs < repeats and (runs < 2 or spent < budget):
        gc.disable()
        try:
            t = time.perf_counter()
            fn()
            t = time.perf_counter() - t
        finally:
            gc.enable()
        best, runs, spent = min(best, t), runs + 1, spent + t
        if t > budget:  # one very slow run is enough
            break
    return best, runs


def fit(edges, secs, lo=None):
    e, t = np.asarray(edges, float), np.asarray(secs, float)
    keep = np.isfinite(t) & (e >= (lo or 0))
    if keep.sum() < 2:
        return None
    slope, icpt = np.polyfit(np.log10(e[keep]), np.log10(t[keep]), 1)
    return {"slope": float(slope), "intercept": float(icpt), "points": int(keep.sum()),
            "from_edges": float(e[keep].min()), "to_edges": float(e[keep].max())}


def _measure(seed: int, quick: bool, progress: bool, layers: int, max_edges: Optional[float],
             repeats: Optional[int], point_budget: float, cap_seconds: float, weights_as: str,
             semirings: Optional[Sequence[str]]) -> Dict[str, Any]:
    ctx, thread_note = single_thread()
    semirings = list(semirings or SEMIRINGS)
    max_edges = max_edges or (1e5 if quick else 1e7)
    repeats = repeats or (3 if quick else 5)
    kinds = ["constant", "parameter"] if weights_as == "both" else [weights_as]
    L = layers
    widths = sizes(max_edges, L)
    asym = min(ASYMPTOTIC_FROM, max_edges / 10)
    families, all_ok = {}, True
    t0 = time.perf_counter()
    with ctx:
        for kind in kinds:
            rng = np.random.default_rng(seed)
            rows, capped = [], {}
            for d in widths:
                dag = layered_dag([d] * (L + 1), rng=rng, weights_as=kind)
                acts = forward(dag.graph, dag.feeds)
                ok = check(dag, acts, L, d)
                all_ok &= ok
                q = output_qoi(dag.graph, dag.output)
                E = L * d * d
                row = {"d": d, "layers": L, "edges": E, "nodes": len(dag.graph), "check_passed": ok,
                       "seconds": {}, "runs": {}}
                for s in semirings:
                    if s in capped:
                        row["seconds"][s] = None
                        continue
                    best, runs = time_one(lambda: backward(dag.graph, acts, q, semirings=[s], retain=["x"]),
                                          repeats, point_budget)
                    row["seconds"][s], row["runs"][s] = best, runs
                    nxt = [w for w in widths if w > d]
                    if best > cap_seconds:
                        capped[s] = {"max_edges_measured": E, "reason": f"one run took {best:.1f}s > cap {cap_seconds}s"}
                    elif nxt and best * (L * nxt[0] ** 2) / E > cap_seconds:
                        capped[s] = {"max_edges_measured": E,
                                     "reason": f"predicted {best * (L * nxt[0] ** 2) / E:.1f}s at {L * nxt[0] ** 2} edges "
                                               f"> cap {cap_seconds}s"}
                rows.append(row)
                del dag, acts
                if progress:
                    sys.stderr.write(f"{NAME} [{kind}] d={d} E={E}: " + ", ".join(
                        f"{s} {v:.4f}" for s, v in row["seconds"].items() if v is not None) + "\n")
                    sys.stderr.flush()
            edges = [r["edges"] for r in rows]
            fits = {}
            for s in semirings:
                secs = [np.nan if r["seconds"].get(s) is None else r["seconds"][s] for r in rows]
                fa, fb = fit(edges, secs), fit(edges, secs, asym)
                measured = [e for e, t in zip(edges, secs) if np.isfinite(t)]
                ft = fit(edges, secs, max(measured) / 10 * 0.99) if measured else None
                fits[s] = {"all": fa, "asymptotic": fb, "top_decade": ft,
                           "within_1.0±0.1": None if fb is None else bool(abs(fb["slope"] - 1.0) <= 0.1)}
            families[kind] = {"rows": rows, "fits": fits, "capped": capped}
    return {
        "experiment": NAME,
        "description": "backward wall time per semiring vs number of edges (layered linear DAGs)",
        "config": {"seed": seed, "quick": quick, "layers": L, "widths": widths,
                   "max_edges": max_edges, "repeats": repeats, "timing": "best of N, gc disabled while timing",
                   "point_budget_seconds": point_budget, "cap_seconds": cap_seconds, "semirings": semirings,
                   "threads": thread_note, "retain": ["x"], "keep_backpointers": True,
                   "asymptotic_fit_from_edges": asym,
                   "machine": {"python": platform.python_version(), "numpy": np.__version__,
                               "processor": platform.processor() or platform.machine(),
                               "cpus": os.cpu_count()}},
        "families": families,
        "seconds": time.perf_counter() - t0,
        "passed": bool(all_ok),
    }


def _plot(res, path) -> Optional[str]:
    plt = pyplot()
    if plt is None:
        return None
    fams = res["families"]
    fig, axes = plt.subplots(1, len(fams), figsize=(6.5 * len(fams), 5.2), squeeze=False)
    cmap = plt.get_cmap("tab20")
    for ax, (kind, fam) in zip(axes[0], fams.items()):
        rows = fam["rows"]
        E = np.array([r["edges"] for r in rows], float)
        for j, (s, f) in enumerate(fam["fits"].items()):
            t = np.array([np.nan if r["seconds"].get(s) is None else r["seconds"][s] for r in rows], float)
            c = cmap(j % 20)
            fa = f["asymptotic"] or f["all"]
            lab = s if fa is None else f"{s}: slope {fa['slope']:.2f}"
            ax.plot(E, t, "o", color=c, ms=4, label=lab)
            if fa is not None:
                xs = np.array([fa["from_edges"], fa["to_edges"]])
                ax.plot(xs, 10 ** (fa["intercept"] + fa["slope"] * np.log10(xs)), "-", color=c, lw=1.2)
            if f["all"] is not None:
                xs = np.array([f["all"]["from_edges"], f["all"]["to_edges"]])
                ax.plot(xs, 10 ** (f["all"]["intercept"] + f["all"]["slope"] * np.log10(xs)), ":", color=c, lw=0.8)
        ref_x = np.array([E.min(), E.max()])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("edges |E| = Σ in·out")
        ax.set_ylabel("backward time, best of N (s)")
        lo = res["config"]["asymptotic_fit_from_edges"]
        ax.set_title(f"{kind} weights, L={res['config']['layers']}: fit over |E| ≥ {lo:.0e} (solid), all (dotted)"
                     + (f"\ncapped: {', '.join(fam['capped'])}" if fam["capped"] else ""), fontsize=9)
        ax.plot(ref_x, ref_x * 1e-7, "k--", lw=0.8, label="slope 1 (reference)")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


def add_arguments(parser) -> None:
    """The options of ``graphengine experiment synthetic-scaling`` beyond the common ones."""
    parser.add_argument("--layers", type=int, default=8, metavar="L", help="depth of the layered DAGs (default 8)")
    parser.add_argument("--max-edges", type=float, default=None, metavar="E",
                        help="largest number of edges timed (default 1e7, quick 1e5)")
    parser.add_argument("--repeats", type=int, default=None, metavar="N", help="best of N runs (default 5, quick 3)")
    parser.add_argument("--point-budget", type=float, default=8.0, metavar="SECONDS",
                        help="stop repeating a point after this many seconds (at least 2 runs; default 8)")
    parser.add_argument("--cap-seconds", type=float, default=20.0, metavar="SECONDS",
                        help="do not run a semiring at larger sizes once one run exceeds this (default 20)")
    parser.add_argument("--weights-as", choices=["both", "constant", "parameter"], default="both",
                        help="weights as constants, as parameters (their adjoints are computed too) or both")
    parser.add_argument("--semirings", nargs="+", default=None, metavar="NAME",
                        help="the semirings to time (default: every registered one)")


def run(out: Optional[str] = None, quick: bool = False, seed: int = 0, progress: bool = True, layers: int = 8,
        max_edges: Optional[float] = None, repeats: Optional[int] = None, point_budget: float = 8.0,
        cap_seconds: float = 20.0, weights_as: str = "both",
        semirings: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Time every size and semiring, write ``results.json`` and the plot under ``out``; the
    results document."""
    if layers < 1:
        raise ExperimentError(f"--layers must be >= 1, got {layers}")
    if repeats is not None and repeats < 1:
        raise ExperimentError(f"--repeats must be >= 1, got {repeats}")
    if max_edges is not None and not max_edges >= 1e3:
        raise ExperimentError(f"--max-edges must be >= 1e3, got {max_edges}")
    unknown = [s for s in semirings or () if s not in SEMIRINGS]
    if unknown:
        raise ExperimentError(f"--semirings: unknown {', '.join(unknown)} (known: {', '.join(SEMIRINGS)})")
    out = results_dir(out, NAME)
    res = _measure(seed, quick, progress, layers, max_edges, repeats, point_budget, cap_seconds, weights_as, semirings)
    return save_results(out, res, _plot, "scaling.png")


def summary(res: Dict[str, Any]) -> List[str]:
    """The lines ``graphengine experiment synthetic-scaling`` prints."""
    c = res["config"]
    lines = [f"L={c['layers']}, widths {c['widths'][0]}..{c['widths'][-1]} "
             f"({c['layers'] * c['widths'][0] ** 2:.1e}..{c['layers'] * c['widths'][-1] ** 2:.1e} edges), "
             f"best of {c['repeats']}, threads: {c['threads']}"]
    for kind, fam in res["families"].items():
        lines.append(f"{kind} weights: log-log slope (|E| >= {c['asymptotic_fit_from_edges']:.0e} / top decade / "
                     "all sizes); time at largest size")
        for s, f in fam["fits"].items():
            a = f["asymptotic"]["slope"] if f["asymptotic"] else float("nan")
            b = f["all"]["slope"] if f["all"] else float("nan")
            t = f["top_decade"]["slope"] if f["top_decade"] else float("nan")
            last = [r for r in fam["rows"] if r["seconds"].get(s) is not None][-1]
            lines.append(f"  {s:<11} {a:5.2f} / {t:5.2f} / {b:5.2f}   {last['seconds'][s]:.4f}s at {last['edges']:.1e}"
                         + (f"  CAPPED ({fam['capped'][s]['reason']})" if s in fam["capped"] else ""))
    lines.append(f"correctness checks (real = closed form, count = d^L): {'passed' if res['passed'] else 'FAILED'}")
    return lines
