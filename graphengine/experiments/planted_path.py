"""Planted heavy paths: does the engine's best path recover them?

Random layered DAGs (``L`` ``linear`` layers of width ``d``, light edges with magnitudes uniform
in [0.1, 0.5] and random signs) get one planted path of heavy edges (magnitudes in [5, 10]) with
its product made positive or negative. Every input → output path has ``L`` edges, so the planted
path is the unique heaviest one: the engine must return it as

- the best input path of ``max`` M⁺ (positive plant) or M⁻ (negative plant),
- the best input path of ``maxabs`` and of ``maxplus`` (both signs).

The QoI is the sum of the output units, so neither end of the path is given away. On the
smallest settings every path is also enumerated by brute force (on planted *and* unplanted
graphs): the engine's per-input-unit M⁺, M⁻, max|·| and max log|·| must equal the enumerated
extremes and its best path the enumerated argmax.

    graphengine experiment synthetic-planted-path [--quick] [--out DIR] [--seed S] [--trials N]

Writes ``results.json`` and ``planted_path.png`` (with matplotlib) into ``--out`` (default
``results/synthetic-planted-path``); ``passed`` is false (exit status 1) if any check fails.

>>> path_units(top_path(run_engine(planted_path(3, 2, np.random.default_rng(0))), "x", (0, 0), "maxabs"))[:1]
(0,)
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, List, Optional

import numpy as np

from ..engine import backward, forward
from ..models.synthetic import enumerate_paths, layer_weights, layered_dag, output_qoi, planted_path
from ..paths import best_input_path, top_path
from .common import progress as progress_bar
from .common import ExperimentError, pyplot, results_dir, save_figure, save_results

NAME = "synthetic-planted-path"
DESCRIPTION = "synthetic: a planted heavy path in random layered DAGs is the engine's best path (max, maxabs, maxplus)"
QUICK_HELP = "three small settings, 6 trials each (seconds)"
FULL_SETTINGS = [(3, 3), (4, 4), (5, 3), (6, 5), (8, 8), (12, 16), (20, 32), (40, 64)]
QUICK_SETTINGS = [(3, 3), (4, 4), (8, 8)]
EXAMPLE_SETTING = (8, 8)  # drawn in the PNG (in both setting lists)
BRUTE_FORCE_MAX_PATHS = 200_000
SEMIRINGS = ["max", "maxabs", "maxplus"]


def path_units(path):
    return tuple(int(st.element[-1]) for st in path.steps)


def engine_paths(r, sign):
    """The best input paths the engine reports, keyed by what is being checked."""
    out = {}
    if sign == "positive":
        out["max (M+)"] = best_input_path(r, "max")
    else:
        mins = r.components("x", "max")["min"]
        i = int(np.argmin(mins))
        out["max (M-)"] = top_path(r, "x", np.unravel_index(i, mins.shape), "max", component=1)
    out["maxabs"] = best_input_path(r, "maxabs")
    out["maxplus"] = best_input_path(r, "maxplus")
    return out


def run_engine(dag):
    acts = forward(dag.graph, dag.feeds)
    return backward(dag.graph, acts, output_qoi(dag.graph, dag.output), semirings=SEMIRINGS, retain=["x"])


def brute_force_check(dag, r):
    """Engine extremes per input unit and best paths against enumeration; returns
    (max relative error, list of mismatching path checks)."""
    W = layer_weights(dag.graph)
    units, prods = enumerate_paths(W)
    d0 = W[0].shape[1]
    per = prods.reshape(d0, -1)
    with np.errstate(divide="ignore"):
        expect = {
            "max": per.max(axis=1), "min": per.min(axis=1), "maxabs": np.abs(per).max(axis=1),
            "maxplus": np.log(np.abs(per)).max(axis=1),
        }
    got = {
        "max": r.components("x", "max")["max"][0], "min": r.components("x", "max")["min"][0],
        "maxabs": r.get("x", "maxabs")[0], "maxplus": r.get("x", "maxplus")[0],
    }
    err = 0.0
    for k in expect:
        scale = np.maximum(np.abs(expect[k]), 1e-300)
        err = max(err, float(np.max(np.abs(got[k] - expect[k]) / scale)))
    mism = []
    want = {
        "max (M+)": units[int(np.argmax(prods))], "max (M-)": units[int(np.argmin(prods))],
        "maxabs": units[int(np.argmax(np.abs(prods)))], "maxplus": units[int(np.argmax(np.abs(prods)))],
    }
    found = {"max (M+)": best_input_path(r, "max"), "maxabs": best_input_path(r, "maxabs"),
             "maxplus": best_input_path(r, "maxplus")}
    mins = r.components("x", "max")["min"]
    found["max (M-)"] = top_path(r, "x", np.unravel_index(int(np.argmin(mins)), mins.shape), "max", component=1)
    for k, p in found.items():
        if path_units(p) != tuple(int(u) for u in want[k]):
            mism.append(k)
        expect_w = float(np.prod([W[j][want[k][j + 1], want[k][j]] for j in range(len(W))]))
        if not math.isclose(p.weight, expect_w, rel_tol=1e-9):
            mism.append(k + " weight")
    return err, mism


def _measure(seed: int, quick: bool, trials: Optional[int], progress: bool) -> Dict[str, Any]:
    rng = np.random.default_rng(seed)
    settings = QUICK_SETTINGS if quick else FULL_SETTINGS
    trials = trials or (6 if quick else 40)
    rows, example = [], None
    total_hits = {k: 0 for k in ("max (M+)", "max (M-)", "maxabs", "maxplus")}
    total_tried = dict(total_hits)
    bf = {"graphs": 0, "paths_enumerated": 0, "max_rel_error": 0.0, "mismatches": []}
    t0 = time.perf_counter()
    for L, d in progress_bar(settings, desc=NAME, enabled=progress):
        hits = {k: 0 for k in ("max (M+)", "max (M-)", "maxabs", "maxplus")}
        tried = {k: 0 for k in hits}
        failures = []
        small = d ** (L + 1) <= BRUTE_FORCE_MAX_PATHS
        for t in range(trials):
            sign = "positive" if t % 2 == 0 else "negative"
            p = planted_path(L, d, rng, sign=sign)
            r = run_engine(p)
            for key, path in engine_paths(r, sign).items():
                tried[key] += 1
                ok = path_units(path) == p.path and [st.name for st in path.steps] == \
                    ["x"] + [f"h{k}" for k in range(1, L + 1)]
                planted_w = float(np.prod([p.weights[k][p.path[k + 1], p.path[k]] for k in range(L)]))
                ok = ok and math.isclose(path.weight, planted_w, rel_tol=1e-9)
                hits[key] += ok
                total_hits[key] += ok
                total_tried[key] += 1
                if not ok:
                    failures.append({"trial": t, "check": key, "planted": list(p.path),
                                     "found": list(path_units(path))})
            if example is None and (L, d) == EXAMPLE_SETTING and sign == "positive":
                example = {"L": L, "d": d, "weights": [w.tolist() for w in p.weights], "planted": list(p.path),
                           "found": list(path_units(engine_paths(r, sign)["maxplus"]))}
            if small:
                for dag in (p, layered_dag([d] * (L + 1), rng=rng)):   # planted and unplanted
                    rr = r if dag is p else run_engine(dag)
                    err, mism = brute_force_check(dag, rr)
                    bf["graphs"] += 1
                    bf["paths_enumerated"] += d ** (L + 1)
                    bf["max_rel_error"] = max(bf["max_rel_error"], err)
                    bf["mismatches"] += [{"L": L, "d": d, "trial": t, "check": m} for m in mism]
        rows.append({"L": L, "d": d, "trials": trials, "paths_per_graph": d ** (L + 1),
                     "brute_force": small,
                     "recovery": {k: hits[k] / tried[k] for k in hits if tried[k]},
                     "failures": failures[:10]})
    overall = {k: total_hits[k] / total_tried[k] for k in total_hits if total_tried[k]}
    passed = (all(v == 1.0 for v in overall.values()) and not bf["mismatches"]
              and bf["max_rel_error"] < 1e-9 and bf["graphs"] > 0)
    return {
        "experiment": NAME,
        "description": "recovery of a planted heavy path by the engine's best input path",
        "config": {"seed": seed, "quick": quick, "trials_per_setting": trials,
                   "light_magnitudes": [0.1, 0.5], "heavy_magnitudes": [5.0, 10.0],
                   "qoi": "sum of output units", "signs": "half the trials positive plant, half negative",
                   "brute_force_max_paths": BRUTE_FORCE_MAX_PATHS},
        "settings": rows,
        "recovery_rate": overall,
        "brute_force": bf,
        "example": example,
        "seconds": time.perf_counter() - t0,
        "passed": bool(passed),
    }


def _plot(res, path) -> Optional[str]:
    plt = pyplot()
    if plt is None:
        return None
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.1, 1]})
    keys = ["max (M+)", "max (M-)", "maxabs", "maxplus"]
    rows = res["settings"]
    x = np.arange(len(rows))
    for j, k in enumerate(keys):
        ax.bar(x + (j - 1.5) * 0.2, [r["recovery"].get(k, np.nan) for r in rows], 0.2, label=k)
    ax.set_xticks(x, [f"L={r['L']}\nd={r['d']}" + ("\n(BF)" if r["brute_force"] else "") for r in rows], fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("planted path recovered (fraction of trials)")
    ax.set_title(f"Planted-path recovery ({rows[0]['trials']} trials per setting; BF = brute-force checked)",
                 fontsize=9)
    ax.legend(fontsize=8, loc="lower left", title="M+: positive plants, M-: negative", title_fontsize=7)
    ex = res["example"]
    if ex is not None:
        W = [np.array(w) for w in ex["weights"]]
        wmax = max(np.abs(w).max() for w in W)
        for k, w in enumerate(W):
            for o in range(w.shape[0]):
                for i in range(w.shape[1]):
                    a = abs(w[o, i]) / wmax
                    ax2.plot([k, k + 1], [i, o], color="tab:blue" if w[o, i] > 0 else "tab:orange",
                             alpha=0.25 + 0.5 * a, lw=0.5 + 2 * a)
        L, d = ex["L"], ex["d"]
        for k in range(L + 1):
            ax2.scatter([k] * d, range(d), s=18, color="k", zorder=3)
        ax2.plot(range(L + 1), ex["planted"], color="red", lw=5, alpha=0.45, label="planted path", zorder=4)
        ax2.plot(range(L + 1), ex["found"], color="k", lw=1.5, ls="--", label="engine (maxplus best path)", zorder=5)
        ax2.set_xticks(range(L + 1), ["x"] + [f"h{k}" for k in range(1, L + 1)])
        ax2.set_yticks(range(d))
        ax2.set_ylabel("unit")
        ax2.set_title(f"Example: L={L}, d={d} (blue +, orange −, width ∝ |w|)", fontsize=9)
        ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


def add_arguments(parser) -> None:
    """The options of ``graphengine experiment synthetic-planted-path`` beyond the common ones."""
    parser.add_argument("--trials", type=int, default=None, metavar="N",
                        help="trials per setting (default 40, quick 6)")


def run(out: Optional[str] = None, quick: bool = False, seed: int = 0, progress: bool = True,
        trials: Optional[int] = None) -> Dict[str, Any]:
    """Run every setting, write ``results.json`` and the plot under ``out``; the results document."""
    if trials is not None and trials < 1:
        raise ExperimentError(f"--trials must be >= 1, got {trials}")
    out = results_dir(out, NAME)
    return save_results(out, _measure(seed, quick, trials, progress), _plot, "planted_path.png")


def summary(res: Dict[str, Any]) -> List[str]:
    """The lines ``graphengine experiment synthetic-planted-path`` prints."""
    lines = [f"{len(res['settings'])} settings x {res['config']['trials_per_setting']} trials"]
    for r in res["settings"]:
        rec = ", ".join(f"{k} {v:.3f}" for k, v in r["recovery"].items())
        lines.append(f"L={r['L']:>3} d={r['d']:>3}{' BF' if r['brute_force'] else '   '}  {rec}")
    bf = res["brute_force"]
    lines.append("overall recovery: " + ", ".join(f"{k} {v:.3f}" for k, v in res["recovery_rate"].items()))
    lines.append(f"brute force: {bf['graphs']} graphs, {bf['paths_enumerated']} paths, max rel error "
                 f"{bf['max_rel_error']:.2e}, {len(bf['mismatches'])} mismatches")
    return lines
