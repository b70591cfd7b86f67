#!/usr/bin/env python
"""Underflow on deep graphs: plain semirings lose the value, log-space ones stay exact.

Three 200-layer, width-4 ``linear`` DAGs (QoI: the sum of the outputs):

- ``equal``: every weight 0.005. Closed forms per input unit: log Z = L·log(d·w),
  max log|p| = L·log w, log #paths = L·log d, entropy = L·log d (all paths equally heavy).
- ``random``: magnitudes uniform in [0.001, 0.005], random signs.
- ``control``: magnitudes uniform in [0.01, 0.05], random signs. At width 4 and 200 layers
  these products stay inside float64 (Z ≈ 0.12²⁰⁰ ≈ 1e-184, heaviest path ≈ 1e-270): nothing may be
  flagged, and the plain semirings must match the reference. (Underflow at L = 200, d = 4 needs
  d·w̄ < 10^(-323.3/200) ≈ 0.024, hence the smaller magnitudes of the two graphs above.)

References, independent of the engine: exact rational arithmetic (``fractions.Fraction``; every
float64 weight is a dyadic rational) for the gradient, Z, M⁺/M⁻ and the path count, whose logs
are taken as log(numerator) − log(denominator) of Python integers; the entropy by a pure-Python
log-domain dynamic program. A plain semiring *underflowed* where its value is 0 or non-finite
although the exact value is non-zero; :func:`graphengine.analysis.numerics.underflow_report`
must flag exactly those (it sees only the engine's log-space results), and the log-space
semirings must match the references to 1e-9 relative.

    graphengine experiment synthetic-underflow [--out DIR] [--seed S] [--layers L] [--width D]

Writes ``results.json`` and ``underflow.png`` (with matplotlib) into ``--out`` (default
``results/synthetic-underflow``); ``passed`` is false (exit status 1) if any check fails. The
experiment takes seconds at full size, so ``--quick`` changes nothing.

>>> math.isclose(flog(Fraction(1, 2 ** 2000)), -2000 * math.log(2), rel_tol=1e-12)   # 2**-2000 underflows float64
True
"""

from __future__ import annotations

import math
import os
import time
from fractions import Fraction
from typing import Any, Dict, List, Optional

import numpy as np

from ..analysis.entropy import vector_entropy
from ..analysis.numerics import underflow_report
from ..engine import backward, forward
from ..models.synthetic import layered_dag, output_qoi
from .common import progress as progress_bar
from .common import ExperimentError, pyplot, results_dir, save_figure, save_results

NAME = "synthetic-underflow"
DESCRIPTION = "synthetic: on 200-layer DAGs plain semirings underflow, log-space ones match exact references"
QUICK_HELP = "the same as the full run (it takes seconds)"
SEMIRINGS = ["real", "absolute", "log", "max", "maxabs", "maxplus", "entropy", "logentropy", "count",
             "logcount", "bool"]
LOG_SPACE = ["log", "logentropy", "maxplus", "logcount"]
PLAIN_WEIGHTED = ["real", "absolute", "max", "maxabs", "entropy"]


def flog(q) -> float:
    """log|q| of a Fraction or int, exact until the final rounding (no float underflow)."""
    q = abs(Fraction(q))
    if q == 0:
        return -math.inf
    return math.log(q.numerator) - math.log(q.denominator)


def exact_reference(Ws):
    """Per input unit, with the QoI = Σ outputs: exact gradient, Z, M⁺, M⁻ (Fractions), the
    number of paths (int) and the entropy (pure-Python log-domain DP)."""
    d_out = Ws[-1].shape[0]
    g = [Fraction(1)] * d_out
    Z = [Fraction(1)] * d_out
    Mp = [Fraction(1)] * d_out
    Mm = [Fraction(1)] * d_out
    n = [1] * d_out
    lz = [0.0] * d_out      # log Z, float log domain
    hh = [0.0] * d_out      # R / Z
    for W in reversed(Ws):
        F = [[Fraction(float(W[o, i])) for i in range(W.shape[1])] for o in range(W.shape[0])]
        outs, ins = range(W.shape[0]), range(W.shape[1])
        g = [sum(F[o][i] * g[o] for o in outs) for i in ins]
        Z = [sum(abs(F[o][i]) * Z[o] for o in outs) for i in ins]
        Mp2 = [max(max(F[o][i] * Mp[o], F[o][i] * Mm[o]) for o in outs) for i in ins]
        Mm = [min(min(F[o][i] * Mp[o], F[o][i] * Mm[o]) for o in outs) for i in ins]
        Mp = Mp2
        n = [sum(n[o] for o in outs) for i in ins]
        nl, nh = [], []
        for i in ins:
            terms = [(math.log(abs(float(W[o, i]))) + lz[o], hh[o] - math.log(abs(float(W[o, i])))) for o in outs]
            m = max(t[0] for t in terms)
            s = math.fsum(math.exp(t[0] - m) for t in terms)
            l = m + math.log(s)
            nl.append(l)
            nh.append(math.fsum(math.exp(t[0] - l) * t[1] for t in terms))
        lz, hh = nl, nh
    # pooled over the input vector
    m = max(lz)
    L_all = m + math.log(math.fsum(math.exp(v - m) for v in lz))
    H_all = math.fsum(math.exp(v - L_all) * h for v, h in zip(lz, hh)) + L_all
    return {"grad": g, "Z": Z, "Mp": Mp, "Mm": Mm, "paths": n, "log_Z_float": lz, "entropy": [h + l for h, l in zip(hh, lz)],
            "pooled_entropy": H_all}


def run_graph(name, Ws, rng_note):
    widths = [Ws[0].shape[1]] + [w.shape[0] for w in Ws]
    dag = layered_dag(widths, Ws)
    acts = forward(dag.graph, dag.feeds)
    r = backward(dag.graph, acts, output_qoi(dag.graph, dag.output), semirings=SEMIRINGS, retain="all")
    ref = exact_reference(Ws)
    logZ = [flog(z) for z in ref["Z"]]
    logmax = [max(flog(a), flog(b)) for a, b in zip(ref["Mp"], ref["Mm"])]
    logn = [math.log(c) for c in ref["paths"]]
    truth_nonzero = {  # the exact value of each plain statistic is non-zero?
        "real": [q != 0 for q in ref["grad"]], "absolute": [z != 0 for z in ref["Z"]],
        "max": [True] * len(logZ), "maxabs": [True] * len(logZ), "entropy": [z != 0 for z in ref["Z"]],
        "count": [c != 0 for c in ref["paths"]], "bool": [True] * len(logZ),
    }
    engine = {s: {k: np.asarray(v, np.float64)[0] for k, v in r.components("x", s).items()} for s in SEMIRINGS}
    report = underflow_report(r, "x")
    out = {"widths_first_last": [widths[0], widths[-1]], "layers": len(Ws), "weights": rng_note,
           "reference_log10_magnitudes": {
               "Z": [z / math.log(10) for z in logZ], "max_abs_path": [v / math.log(10) for v in logmax],
               "grad": [flog(q) / math.log(10) for q in ref["grad"]], "paths": [v / math.log(10) for v in logn]},
           "semirings": {}}
    # log-space semirings against the references
    log_checks = {
        "log": (engine["log"]["log_Z"], logZ),
        "maxplus": (engine["maxplus"]["max_log_abs"], logmax),
        "logcount": (engine["logcount"]["log_paths"], logn),
        "logentropy": (engine["logentropy"]["entropy"], ref["entropy"]),
    }
    for s, (got, want) in log_checks.items():
        err = float(np.max(np.abs(np.asarray(got) - np.asarray(want))))
        rel = err / max(1.0, float(np.max(np.abs(want))))
        out["semirings"][s] = {"values": [float(v) for v in got], "reference": [float(v) for v in want],
                               "max_abs_error": err, "max_rel_error": rel, "underflowed": False}
    le = engine["logentropy"]["log_Z"]
    out["semirings"]["logentropy"]["log_Z_max_abs_error"] = float(np.max(np.abs(le - np.asarray(logZ))))
    out["semirings"]["logentropy"]["pooled_entropy"] = vector_entropy(r, "x", "logentropy")
    out["semirings"]["logentropy"]["pooled_entropy_reference"] = ref["pooled_entropy"]
    # plain semirings: which lost the value?
    plain = {
        "real": engine["real"]["grad"], "absolute": engine["absolute"]["Z"],
        "max": np.maximum(np.abs(engine["max"]["max"]), np.abs(engine["max"]["min"])),
        "maxabs": engine["maxabs"]["max_abs"], "entropy": engine["entropy"]["Z"],
        "count": engine["count"]["paths"], "bool": engine["bool"]["reachable"].astype(float),
    }
    exact_plain = {
        "real": ref["grad"], "absolute": ref["Z"], "max": [max(abs(a), abs(b)) for a, b in zip(ref["Mp"], ref["Mm"])],
        "maxabs": [max(abs(a), abs(b)) for a, b in zip(ref["Mp"], ref["Mm"])], "entropy": ref["Z"],
        "count": ref["paths"], "bool": [1] * len(logZ),
    }
    for s, v in plain.items():
        lost = [bool((x == 0 or not np.isfinite(x)) and nz) for x, nz in zip(v, truth_nonzero[s])]
        entry = {"values": [float(x) for x in v], "underflowed": any(lost), "elements_lost": int(sum(lost))}
        ok = [not l for l in lost]
        if all(ok):   # compare with the exact value where it is representable
            rel = [abs(float(x) - float(e)) / abs(float(e)) for x, e in zip(v, exact_plain[s]) if float(e) != 0]
            entry["max_rel_error"] = max(rel) if rel else 0.0
        out["semirings"][s] = entry
    ent_err = float(np.max(np.abs(engine["entropy"]["entropy"] - np.asarray(ref["entropy"]))))
    out["semirings"]["entropy"]["entropy_max_abs_error"] = ent_err
    for s, e in report.items():
        out["semirings"][s]["flagged_by_underflow_report"] = bool(e["degenerate"])
        out["semirings"][s]["report"] = e
    out["underflowed"] = sorted(s for s, e in out["semirings"].items() if e["underflowed"])
    out["flagged"] = sorted(s for s, e in report.items() if e["degenerate"])
    # per-layer profile for the plot (log10 of the largest unit value at each layer)
    prof = {}
    for s, key in (("absolute", "Z"), ("log", "log_Z"), ("maxabs", "max_abs"), ("maxplus", "max_log_abs"),
                   ("entropy", "Z"), ("count", "paths"), ("logcount", "log_paths")):
        vals = []
        for k in range(len(Ws) + 1):
            node = "x" if k == 0 else f"h{k}"
            v = float(np.max(r.components(node, s)[key]))
            vals.append(v / math.log(10) if s in LOG_SPACE else (math.log10(v) if v > 0 else None))
        prof[s] = vals
    out["profile_log10"] = prof
    return out


def make_graphs(rng, L, d):
    return {
        "equal": ([np.full((d, d), 0.005) for _ in range(L)], "all 0.005"),
        "random": ([rng.uniform(0.001, 0.005, (d, d)) * rng.choice([-1.0, 1.0], (d, d)) for _ in range(L)],
                   "uniform |w| in [0.001, 0.005], random signs"),
        "control": ([rng.uniform(0.01, 0.05, (d, d)) * rng.choice([-1.0, 1.0], (d, d)) for _ in range(L)],
                    "uniform |w| in [0.01, 0.05], random signs"),
    }


def _measure(seed: int, quick: bool, progress: bool, L: int, d: int) -> Dict[str, Any]:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    graphs = {}
    for name, (Ws, note) in progress_bar(list(make_graphs(rng, L, d).items()), desc=NAME, enabled=progress):
        graphs[name] = run_graph(name, Ws, note)
    eq = graphs["equal"]
    w = 0.005
    closed = {"log_Z": L * math.log(d * w), "max_log_abs": L * math.log(w), "log_paths": L * math.log(d),
              "entropy": L * math.log(d)}
    closed_err = {
        "log_Z": max(abs(v - closed["log_Z"]) for v in eq["semirings"]["log"]["values"]),
        "max_log_abs": max(abs(v - closed["max_log_abs"]) for v in eq["semirings"]["maxplus"]["values"]),
        "log_paths": max(abs(v - closed["log_paths"]) for v in eq["semirings"]["logcount"]["values"]),
        "entropy": max(abs(v - closed["entropy"]) for v in eq["semirings"]["logentropy"]["values"]),
    }
    eq["closed_form"] = {"values": closed, "max_abs_error": closed_err}
    log_rel = max(g["semirings"][s]["max_rel_error"] for g in graphs.values() for s in LOG_SPACE)
    count_exact = all(g["semirings"]["count"].get("max_rel_error") == 0.0 for g in graphs.values())
    expect_under = sorted(PLAIN_WEIGHTED)
    checks = {
        "log_space_match_reference": log_rel < 1e-9,
        "closed_form_match": max(closed_err.values()) < 1e-9 * L * 10,
        "plain_underflow_on_deep_graphs": all(graphs[n]["underflowed"] == expect_under for n in ("equal", "random")),
        "report_flags_exactly_the_underflowed": all(g["flagged"] == g["underflowed"] for g in graphs.values()),
        "control_nothing_flagged": graphs["control"]["flagged"] == [] and graphs["control"]["underflowed"] == [],
        "control_plain_match_exact": all(graphs["control"]["semirings"][s].get("max_rel_error", 1.0) < 1e-9
                                         for s in ("real", "absolute", "max", "maxabs", "entropy", "count")),
        "count_exact": count_exact,
    }
    return {"experiment": NAME,
            "description": "float64 underflow of plain semirings on 200-layer graphs vs log-space semirings",
            "config": {"seed": seed, "quick": quick, "layers": L, "width": d,
                       "qoi": "sum of output units", "semirings": SEMIRINGS,
                       "reference": "exact Fractions (grad, Z, M+/M-, count) + pure-Python log-domain DP (entropy)"},
            "summary": {"underflowed": {n: g["underflowed"] for n, g in graphs.items()},
                        "flagged_by_underflow_report": {n: g["flagged"] for n, g in graphs.items()},
                        "log_space_max_rel_error": log_rel,
                        "log_space_max_abs_error": max(g["semirings"][s]["max_abs_error"]
                                                       for g in graphs.values() for s in LOG_SPACE),
                        "closed_form_max_abs_error": closed_err,
                        "checks": checks},
            "graphs": graphs, "seconds": time.perf_counter() - t0, "passed": bool(all(checks.values()))}


def _plot(res, path) -> Optional[str]:
    plt = pyplot()
    if plt is None:
        return None
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.4, 1]})
    g = res["graphs"]["random"]
    prof = g["profile_log10"]
    L = res["config"]["layers"]
    depth = [L - k for k in range(L + 1)]  # edges between the node and the QoI
    floor = math.log10(5e-324)
    styles = {"absolute": ("tab:blue", "-"), "log": ("tab:blue", "--"), "maxabs": ("tab:red", "-"),
              "maxplus": ("tab:red", "--"), "entropy": ("tab:green", ":"), "count": ("tab:purple", "-"),
              "logcount": ("tab:purple", "--")}
    labels = {"absolute": "absolute Z", "log": "log (log Z)", "maxabs": "maxabs", "maxplus": "maxplus",
              "entropy": "entropy Z", "count": "count", "logcount": "logcount"}
    for s, vals in prof.items():
        c, ls = styles[s]
        ax.plot(depth, [np.nan if v is None else v for v in vals], color=c, ls=ls, lw=1.6, label=labels[s])
        dead = [dp for dp, v in zip(depth, vals) if v is None]
        if dead:
            ax.plot([min(dead)], [floor], "x", color=c, ms=9)
    ax.axhline(floor, color="k", lw=0.8, ls="-.", label="smallest float64 (4.9e-324)")
    ax.set_xlabel("layers between the node and the output")
    ax.set_ylabel("log10 of the largest value over the units")
    ax.set_title("random graph (|w| in [0.001, 0.005], d=4): plain values vanish (x = first exact 0),\n"
                 "log-space values continue", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    names = list(res["graphs"])
    srs = [s for s in res["config"]["semirings"]]
    grid = np.zeros((len(names), len(srs)))
    for i, n in enumerate(names):
        for j, s in enumerate(srs):
            e = res["graphs"][n]["semirings"][s]
            grid[i, j] = 2 if e["underflowed"] and e["flagged_by_underflow_report"] else \
                (1 if e["underflowed"] != e["flagged_by_underflow_report"] else 0)
    from matplotlib.colors import ListedColormap
    ax2.imshow(grid, cmap=ListedColormap(["#b7e4b0", "#ffd166", "#ef476f"]), vmin=0, vmax=2, aspect="auto")
    ax2.set_xticks(range(len(srs)), srs, rotation=60, fontsize=8)
    ax2.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(srs)):
            ax2.text(j, i, {0: "ok", 1: "?!", 2: "0"}[int(grid[i, j])], ha="center", va="center", fontsize=8)
    ax2.set_title("underflowed (0 where a path exists) and flagged by underflow_report\n"
                  "red = underflowed & flagged, green = exact, yellow = disagreement", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def add_arguments(parser) -> None:
    """The options of ``graphengine experiment synthetic-underflow`` beyond the common ones."""
    parser.add_argument("--layers", type=int, default=200, metavar="L", help="depth of the DAGs (default 200)")
    parser.add_argument("--width", type=int, default=4, metavar="D", help="width of every layer (default 4)")


def run(out: Optional[str] = None, quick: bool = False, seed: int = 0, progress: bool = True, layers: int = 200,
        width: int = 4) -> Dict[str, Any]:
    """Check the three graphs, write ``results.json`` and the plot under ``out``; the results document."""
    if layers < 1 or width < 1:
        raise ExperimentError(f"--layers and --width must be >= 1, got {layers} and {width}")
    out = results_dir(out, NAME)
    return save_results(out, _measure(seed, quick, progress, layers, width), _plot, "underflow.png")


def summary(res: Dict[str, Any]) -> List[str]:
    """The lines ``graphengine experiment synthetic-underflow`` prints."""
    s = res["summary"]
    lines = [f"{res['config']['layers']} layers, width {res['config']['width']}"]
    for n, g in res["graphs"].items():
        z = g["reference_log10_magnitudes"]["Z"]
        lines.append(f"{n:<8} ({g['weights']}; true Z ~ 1e{max(z):.0f}): underflowed {g['underflowed'] or 'none'}; "
                     f"flagged {g['flagged'] or 'none'}")
    lines.append(f"log-space vs exact reference: max rel error {s['log_space_max_rel_error']:.2e}; "
                 f"closed form (equal) max abs error {max(s['closed_form_max_abs_error'].values()):.2e}")
    bad = [k for k, v in s["checks"].items() if not v]
    if bad:
        lines.append("failed checks: " + ", ".join(bad))
    return lines
