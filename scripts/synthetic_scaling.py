#!/usr/bin/env python
"""Backward time per semiring against the number of edges: is it O(|E|)?

Layered ``linear`` DAGs of depth ``L`` (default 8) and width ``d`` with ``|E| = Σ in·out =
L·d²`` scalar edges on the input → output paths, ``d`` chosen so that ``|E|`` runs over
log-spaced targets from 10³ to 10⁷ (``--quick``: to 10⁵). Each semiring is timed alone
(``backward(..., semirings=[s], retain=["x"])``, backpointers kept as by default), best of N
runs, single-threaded (threadpoolctl if installed, and OMP/OPENBLAS/MKL_NUM_THREADS=1 set before
numpy loads). The log-log slope of time against |E| is fitted per semiring over all sizes and
over |E| ≥ 10⁵ (quick: ≥ 10⁴), where fixed per-node Python overhead no longer dominates, and
over the top decade of sizes.

Two weight kinds are measured: ``constant`` weights (the gradient graph has exactly |E| edges)
and ``parameter`` weights (the engine also computes every parameter's adjoint, another |E|
edges ``W[o,i] → h[o]``; the reported |E| stays Σ in·out).

A semiring whose single run exceeds ``--cap-seconds`` (or is predicted to, by linear
extrapolation) is not run at larger sizes; the cap is recorded in the JSON. Before timing, every
size is checked: the ``real`` result must equal the closed-form gradient ``1ᵀ W_L ⋯ W_1`` and
``count`` must equal d^L per input unit; the script exits 1 if not.

    python scripts/synthetic_scaling.py [--quick] [--out results/synthetic] [--seed 0]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from graphengine.models.synthetic import layer_weights, layered_dag, output_qoi  # noqa: E402
from graphengine.engine import backward, forward  # noqa: E402
from graphengine.semirings import SEMIRINGS  # noqa: E402

NAME = "synthetic_scaling"
ASYMPTOTIC_FROM = 1e5


def single_thread():
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=1), "threadpoolctl"
    except ImportError:
        return contextlib.nullcontext(), "env OMP/OPENBLAS/MKL_NUM_THREADS=" + os.environ.get("OPENBLAS_NUM_THREADS", "?")


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


def run(args):
    ctx, thread_note = single_thread()
    semirings = args.semirings or list(SEMIRINGS)
    max_edges = args.max_edges or (1e5 if args.quick else 1e7)
    repeats = args.repeats or (3 if args.quick else 5)
    kinds = ["constant", "parameter"] if args.weights_as == "both" else [args.weights_as]
    L = args.layers
    widths = sizes(max_edges, L)
    asym = min(ASYMPTOTIC_FROM, max_edges / 10)
    families, all_ok = {}, True
    t0 = time.perf_counter()
    with ctx:
        for kind in kinds:
            rng = np.random.default_rng(args.seed)
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
                                          repeats, args.point_budget)
                    row["seconds"][s], row["runs"][s] = best, runs
                    nxt = [w for w in widths if w > d]
                    if best > args.cap_seconds:
                        capped[s] = {"max_edges_measured": E, "reason": f"one run took {best:.1f}s > cap {args.cap_seconds}s"}
                    elif nxt and best * (L * nxt[0] ** 2) / E > args.cap_seconds:
                        capped[s] = {"max_edges_measured": E,
                                     "reason": f"predicted {best * (L * nxt[0] ** 2) / E:.1f}s at {L * nxt[0] ** 2} edges "
                                               f"> cap {args.cap_seconds}s"}
                rows.append(row)
                del dag, acts
                if args.verbose:
                    print(f"  [{kind}] d={d} E={E}: " + ", ".join(
                        f"{s} {v:.4f}" for s, v in row["seconds"].items() if v is not None), flush=True)
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
        "config": {"seed": args.seed, "quick": args.quick, "layers": L, "widths": widths,
                   "max_edges": max_edges, "repeats": repeats, "timing": "best of N, gc disabled while timing",
                   "point_budget_seconds": args.point_budget, "cap_seconds": args.cap_seconds,
                   "threads": thread_note, "retain": ["x"], "keep_backpointers": True,
                   "asymptotic_fit_from_edges": asym,
                   "machine": {"python": platform.python_version(), "numpy": np.__version__,
                               "processor": platform.processor() or platform.machine(),
                               "cpus": os.cpu_count()}},
        "families": families,
        "seconds": time.perf_counter() - t0,
        "passed": bool(all_ok),
    }


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join("results", "synthetic"), help="output directory")
    ap.add_argument("--quick", action="store_true", help="up to 1e5 edges (seconds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--max-edges", type=float, default=None, help="default 1e7 (quick 1e5)")
    ap.add_argument("--repeats", type=int, default=None, help="best of N (default 5, quick 3)")
    ap.add_argument("--point-budget", type=float, default=8.0,
                    help="stop repeating a point after this many seconds (at least 2 runs)")
    ap.add_argument("--cap-seconds", type=float, default=20.0,
                    help="do not run a semiring at larger sizes once one run exceeds this")
    ap.add_argument("--weights-as", choices=["both", "constant", "parameter"], default="both")
    ap.add_argument("--semirings", nargs="*", default=None, help="default: all")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    res = run(args)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, NAME + ".json"), "w") as f:
        json.dump(res, f, indent=1)
    plot(res, os.path.join(args.out, NAME + ".png"))
    c = res["config"]
    print(f"{NAME}: L={c['layers']}, widths {c['widths'][0]}..{c['widths'][-1]} "
          f"({c['layers'] * c['widths'][0] ** 2:.1e}..{c['layers'] * c['widths'][-1] ** 2:.1e} edges), "
          f"best of {c['repeats']}, {c['threads']}")
    for kind, fam in res["families"].items():
        print(f"  {kind} weights: log-log slope (|E| >= {c['asymptotic_fit_from_edges']:.0e} / top decade / "
              "all sizes); time at largest size")
        for s, f in fam["fits"].items():
            a = f["asymptotic"]["slope"] if f["asymptotic"] else float("nan")
            b = f["all"]["slope"] if f["all"] else float("nan")
            t = f["top_decade"]["slope"] if f["top_decade"] else float("nan")
            last = [r for r in fam["rows"] if r["seconds"].get(s) is not None][-1]
            print(f"    {s:<11} {a:5.2f} / {t:5.2f} / {b:5.2f}   {last['seconds'][s]:.4f}s at {last['edges']:.1e}"
                  + (f"  CAPPED ({fam['capped'][s]['reason']})" if s in fam["capped"] else ""))
    print(f"  correctness checks (real = closed form, count = d^L): {'PASS' if res['passed'] else 'FAIL'} -> {args.out}")
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
