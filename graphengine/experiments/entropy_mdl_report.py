"""The §5.3 report (``graphengine experiment entropy-mdl``): aggregation of run records, the
paper's three claims, tables and plots — over all runs or over whatever part of them exists.

A run record is the JSON file one (task, seed) job writes (``runs/<task>_seed<s>.json``, see
:mod:`graphengine.experiments.entropy_mdl`). :func:`write_report` takes the records present,
the (task, seed) jobs that are missing (or hold records of other settings) and writes
``results.json``, ``table.md`` and the plots; nothing here trains or runs the engine, so a
report of a run still in progress (``--aggregate-only``) is cheap.

The paper's claims, each tested on the runs present with its n stated (:func:`claims`):

1. **no monotone entropy–MDL relation across tasks**: Spearman's rho of the per-task means
   (paper and scalar granularity); *consistent* when p ≥ 0.05, *contradicted* when p < 0.05;
2. **BinCountOnes: MDL rises with the number of classes, entropy is U-shaped**: Spearman's rho of
   MDL against C (rises: rho > 0 with p < 0.05) and whether the entropy's minimum over C is
   interior (U-shaped);
3. **incorrectly classified examples have lower entropy** (paper: −1.19 nats, p ≈ 0.004): Welch's
   t of the per-example entropy, incorrect minus correct, pooled over runs raw and centred per
   run; *supported* when the difference is negative with p < 0.05.

A claim whose statistic is undefined on the runs present (too few tasks, no incorrect example)
is *undetermined*.

>>> c = claims(aggregate([], ["contains_1"]))
>>> [x["verdict"] for x in c]
['undetermined (n = 0 tasks)', 'undetermined (no BinCountOnes task present)', 'undetermined (n = 0 runs)']
>>> coverage_text({"expected": 3, "present": 1, "missing": [["a", 1], ["a", 2]], "stale": []})
'Runs present: 1 of 3 (task × seed). Missing (2): a seeds 1, 2.'
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .common import fmt, markdown_table, pyplot, save_figure, write_json, write_text
from .stats import mann_whitney_u, spearman, welch_t

__all__ = ["VARIANTS", "PAPER", "aggregate", "claims", "coverage_text", "render", "write_report"]

#: (name, decomposition policy, granularity) of the entropy variants every run record holds.
VARIANTS = (("scalar", "fused", "scalar"), ("paper", "paper", "paper"))
PAPER = {"entropy_range": (2050, 2380), "mdl_range": (12, 51),
         "incorrect_minus_correct": -1.19, "incorrect_vs_correct_p": 0.004,
         "claims": ["no monotone relation between entropy and MDL",
                    "BinCountOnes: MDL rises with the number of classes, entropy is U-shaped",
                    "incorrect examples have slightly lower entropy than correct ones (-1.19 nats, p ~ 0.004)"]}
ALPHA = 0.05


# ----------------------------------------------------------------------------- aggregation
def _family(task: str) -> str:
    return task.split(":")[0]


def aggregate(runs: List[Dict[str, Any]], tasks: Sequence[str], min_accuracy: float = 0.9) -> Dict[str, Any]:
    """The aggregate of the run records ``runs`` (any subset of the tasks × seeds): per-task
    means over the seeds present, correlations, BinCountOnes, correct vs incorrect; the
    correlations again over the runs with validation accuracy >= ``min_accuracy`` only (the
    authors' plots are "high_acc_only"; a model stuck at chance says nothing about the task)."""
    agg = _aggregate_runs(runs, tasks)
    good = [r for r in runs if r["val_accuracy_ir"] >= min_accuracy]
    sub = _aggregate_runs(good, tasks) if good else {"per_task": {}}
    agg["high_accuracy_only"] = {"min_accuracy": min_accuracy, "n_runs": len(good),
                                 "tasks": list(sub["per_task"]),
                                 **{k: v for k, v in sub.items() if k.startswith("spearman") or k == "bin_count_ones"},
                                 "correct_vs_incorrect": {v: _correct_test(good, v) for v, _, _ in VARIANTS}}
    agg["correct_vs_incorrect"] = {v: _correct_test(runs, v) for v, _, _ in VARIANTS}
    agg["n_runs"] = len(runs)
    return agg


def _aggregate_runs(runs: List[Dict[str, Any]], tasks: Sequence[str]) -> Dict[str, Any]:
    per_task = {}
    keys = ("mdl", "codelength", "val_accuracy_ir", "entropy_paper", "entropy_paper_per_position", "entropy_scalar")
    for t in tasks:
        rs = [r for r in runs if r["task"] == t]
        if rs:
            per_task[t] = {"n_seeds": len(rs), **{k: float(np.mean([r[k] for r in rs])) for k in keys},
                           **{f"{k}_sd": float(np.std([r[k] for r in rs])) for k in ("mdl", "entropy_paper")}}
    agg: Dict[str, Any] = {"per_task": per_task}
    mdl = [per_task[t]["mdl"] for t in per_task]
    for key in ("entropy_paper", "entropy_scalar", "entropy_paper_per_position"):
        agg[f"spearman_mdl_{key}"] = spearman(mdl, [per_task[t][key] for t in per_task])
    bco = sorted((int(t.split(":")[1]), t) for t in per_task if _family(t) == "bin_count_ones")
    if bco:
        cs = [c for c, _ in bco]
        b = {"classes": cs, **{k: [per_task[t][k] for _, t in bco] for k in ("mdl", "entropy_paper", "entropy_scalar",
                                                                            "val_accuracy_ir")}}
        if len(cs) >= 3:
            b["spearman_classes_mdl"] = spearman(cs, b["mdl"])
            for k in ("entropy_paper", "entropy_scalar"):
                i = int(np.argmin(b[k]))
                b[f"{k}_argmin_classes"] = cs[i]
                b[f"{k}_u_shaped"] = bool(0 < i < len(cs) - 1)
        agg["bin_count_ones"] = b
    ent = [per_task[t]["entropy_paper"] for t in per_task]
    agg["ranges"] = {"entropy_paper": [min(ent), max(ent)] if ent else None, "mdl": [min(mdl), max(mdl)] if mdl else None}
    return agg


def _correct_test(runs, variant: str) -> Dict[str, Any]:
    raw_c, raw_i, cen_c, cen_i = [], [], [], []
    for r in runs:
        e = np.asarray(r[variant]["per_example"])
        ok = np.asarray(r["correct"], bool)
        raw_c += e[ok].tolist()
        raw_i += e[~ok].tolist()
        cen_c += (e[ok] - e.mean()).tolist()
        cen_i += (e[~ok] - e.mean()).tolist()
    return {"n_correct": len(raw_c), "n_incorrect": len(raw_i),
            "raw": {"welch_t (incorrect - correct)": welch_t(raw_i, raw_c), "mann_whitney_u": mann_whitney_u(raw_i, raw_c)},
            "centred_per_run": {"welch_t (incorrect - correct)": welch_t(cen_i, cen_c),
                                "mann_whitney_u": mann_whitney_u(cen_i, cen_c)}}


# ----------------------------------------------------------------------------- report
def _tables(agg, runs) -> str:
    pt = agg["per_task"]
    def spread(a, key):
        return a[key] if a["n_seeds"] < 2 else f"{fmt(a[key], 4)} ± {fmt(a[key + '_sd'], 2)}"

    rows = [[t, a["n_seeds"], a["val_accuracy_ir"], spread(a, "mdl"), a["codelength"], spread(a, "entropy_paper"),
             a["entropy_paper_per_position"], a["entropy_scalar"]] for t, a in pt.items()]
    parts = ["### Per task (mean over seeds; ± the standard deviation over seeds)\n\n" + markdown_table(
        ["task", "seeds", "val acc", "MDL (paper: Σ block means)", "codelength (Σ over examples)",
         "entropy paper (per row, batches of 4)", "entropy paper per position", "entropy scalar per position"],
        rows, digits=4)]
    rng = agg["ranges"]
    sp = agg["spearman_mdl_entropy_paper"]
    sps = agg["spearman_mdl_entropy_scalar"]
    parts.append("### Against the paper\n\n" + markdown_table(
        ["quantity", "paper", "graphengine"],
        [["run entropy range (paper granularity)", "≈2,050–2,380",
          "–" if rng["entropy_paper"] is None else f"{rng['entropy_paper'][0]:.0f}–{rng['entropy_paper'][1]:.0f}"],
         ["MDL range (nats)", "≈12–51", "–" if rng["mdl"] is None else f"{rng['mdl'][0]:.1f}–{rng['mdl'][1]:.1f}"],
         ["Spearman(MDL, entropy) over tasks, paper gran.", "no monotone relation",
          f"rho {fmt(sp['rho'])}, p {fmt(sp['p'])} (n={sp['n']})"],
         ["Spearman(MDL, entropy) over tasks, scalar gran.", "–", f"rho {fmt(sps['rho'])}, p {fmt(sps['p'])}"],
         *_high_acc_rows(agg["high_accuracy_only"])]))
    b = agg.get("bin_count_ones")
    if b:
        rows = [[c, a, m, ep, es] for c, a, m, ep, es in zip(b["classes"], b["val_accuracy_ir"], b["mdl"],
                                                              b["entropy_paper"], b["entropy_scalar"])]
        note = ""
        if "spearman_classes_mdl" in b:
            note = (f"\n\nMDL vs #classes: Spearman rho {fmt(b['spearman_classes_mdl']['rho'])} (paper: rises). Entropy "
                    f"minimum at C = {b['entropy_paper_argmin_classes']} (paper granularity; interior minimum = "
                    f"U-shaped: {b['entropy_paper_u_shaped']}), C = {b['entropy_scalar_argmin_classes']} (scalar; "
                    f"U-shaped: {b['entropy_scalar_u_shaped']}). Paper: U-shaped.")
        parts.append("### BinCountOnes: entropy and MDL vs the number of classes\n\n" + markdown_table(
            ["classes", "val acc", "MDL", "entropy paper", "entropy scalar"], rows, digits=4) + note)
    rows = []
    hi = agg["high_accuracy_only"]
    for runs_label, cvi in (("all runs", agg["correct_vs_incorrect"]),
                            (f"runs with val acc >= {hi['min_accuracy']}", hi["correct_vs_incorrect"])):
        for v, _, _ in VARIANTS:
            c = cvi[v]
            for kind in ("raw", "centred_per_run"):
                w, u = c[kind]["welch_t (incorrect - correct)"], c[kind]["mann_whitney_u"]
                rows.append([runs_label, v, kind, c["n_correct"], c["n_incorrect"], w["diff"], w["t"], w["p"], u["U"],
                             u["p"]])
    parts.append("### Per-example entropy: incorrect minus correct (paper: −1.19 nats, p ≈ 0.004)\n\n" + markdown_table(
        ["runs", "variant", "pooling", "n correct", "n incorrect", "mean diff (nats)", "Welch t", "Welch p",
         "Mann–Whitney U", "M–W p"], rows, digits=4))
    return "\n\n".join(parts)


def _high_acc_rows(h) -> List[List[Any]]:
    if "spearman_mdl_entropy_paper" not in h:
        return [[f"tasks with val acc >= {h['min_accuracy']}", "(the paper's plots: high accuracy only)", "none"]]
    sp, sps = h["spearman_mdl_entropy_paper"], h["spearman_mdl_entropy_scalar"]
    return [[f"Spearman(MDL, entropy), runs with val acc >= {h['min_accuracy']} ({h['n_runs']} runs, "
             f"{len(h['tasks'])} tasks), paper / scalar gran.", "(the paper's plots: high accuracy only)",
             f"rho {fmt(sp['rho'])} (p {fmt(sp['p'])}) / {fmt(sps['rho'])} (p {fmt(sps['p'])})"]]


def _plots(agg, runs, out) -> List[str]:
    plt = pyplot()
    if plt is None:
        return []
    files = []
    pt = agg["per_task"]
    markers = {"contains_1": "o", "first_token_repeated_immediately": "s", "first_token_repeated_last": "D",
               "adjacent_duplicate": "^", "contains_token_set": "v", "contains_token_set_ood": "P",
               "bin_count_ones": "*"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (key, title) in zip(axes, (("entropy_paper", "paper granularity (per vocabulary row)"),
                                       ("entropy_scalar", "scalar granularity (per position)"))):
        for fam, mk in markers.items():
            ts = [t for t in pt if _family(t) == fam]
            if ts:
                good = [pt[t]["val_accuracy_ir"] >= agg["high_accuracy_only"]["min_accuracy"] for t in ts]
                sc = ax.scatter([pt[t]["mdl"] for t in ts], [pt[t][key] for t in ts], marker=mk, s=40, label=fam)
                color = sc.get_facecolors()[0].copy()
                sc.set_facecolors([color if g else (0, 0, 0, 0) for g in good])
                sc.set_edgecolors([color] * len(ts))
        if key == "entropy_paper":
            ax.axhspan(*PAPER["entropy_range"], color="grey", alpha=0.15, label="paper's entropy range")
        ax.set_xlabel("MDL (nats, Σ of per-block mean CE)")
        ax.set_ylabel("run entropy (nats per example)")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    fig.suptitle("Entropy vs MDL per task (mean over seeds; hollow: validation accuracy below "
                 f"{agg['high_accuracy_only']['min_accuracy']})", fontsize=10)
    files.append(save_figure(fig, os.path.join(out, "entropy_vs_mdl.png")))
    b = agg.get("bin_count_ones")
    if b:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(b["classes"], b["entropy_paper"], "o-", label="entropy, paper granularity")
        ax.plot(b["classes"], b["entropy_scalar"], "s-", label="entropy, scalar granularity")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("number of classes C")
        ax.set_ylabel("run entropy (nats per example)")
        ax2 = ax.twinx()
        ax2.plot(b["classes"], b["mdl"], "k^--", label="MDL")
        ax2.set_ylabel("MDL (nats)")
        ax.legend(loc="upper left", fontsize=8)
        ax2.legend(loc="lower right", fontsize=8)
        ax.set_title("BinCountOnes: entropy and MDL vs number of classes", fontsize=10)
        files.append(save_figure(fig, os.path.join(out, "bincountones.png")))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (v, _, _) in zip(axes, VARIANTS):
        c, i = [], []
        for r in runs:
            e = np.asarray(r[v]["per_example"])
            ok = np.asarray(r["correct"], bool)
            c += (e[ok] - e.mean()).tolist()
            i += (e[~ok] - e.mean()).tolist()
        data = [c] + ([i] if i else [])
        ax.boxplot(data, tick_labels=["correct", "incorrect"][:len(data)], showfliers=False)
        ax.set_ylabel("per-example entropy − run mean (nats)")
        ax.set_title(f"{v} granularity", fontsize=10)
    fig.suptitle("Correct vs incorrect validation examples (pooled over runs)", fontsize=10)
    files.append(save_figure(fig, os.path.join(out, "correct_vs_incorrect.png")))
    return files



# ----------------------------------------------------------------------------- claims
def _defined(*xs) -> bool:
    return all(x is not None and not (isinstance(x, float) and math.isnan(x)) for x in xs)


def _monotone_verdict(sp: Dict[str, float]) -> str:
    if not _defined(sp["rho"], sp["p"]):
        return f"undetermined (n = {sp['n']} tasks)"
    if sp["p"] < ALPHA:
        trend = "decreasing" if sp["rho"] < 0 else "increasing"
        return (f"contradicted: a significant {trend} monotone relation (rho {fmt(sp['rho'])}, p {fmt(sp['p'])}, "
                f"n = {sp['n']} tasks)")
    return f"consistent: no significant monotone relation (rho {fmt(sp['rho'])}, p {fmt(sp['p'])}, n = {sp['n']} tasks)"


def _bin_count_ones_verdict(b: Optional[Dict[str, Any]]) -> str:
    if not b:
        return "undetermined (no BinCountOnes task present)"
    n = len(b["classes"])
    if "spearman_classes_mdl" not in b or not _defined(b["spearman_classes_mdl"]["p"]):
        return f"undetermined (n = {n} class counts; 3 needed)"
    sp = b["spearman_classes_mdl"]
    rises = sp["rho"] > 0 and sp["p"] < ALPHA
    mdl = (f"MDL {'rises' if rises else 'does not rise significantly'} with C (rho {fmt(sp['rho'])}, "
           f"p {fmt(sp['p'])})")
    shape = ", ".join(f"{'U-shaped' if b[f'{k}_u_shaped'] else 'not U-shaped'} at {k.split('_')[1]} granularity "
                      f"(minimum at C = {b[f'{k}_argmin_classes']})" for k in ("entropy_paper", "entropy_scalar"))
    head = "supported" if rises and b["entropy_paper_u_shaped"] else "not supported"
    return f"{head}: {mdl}; entropy {shape}; n = {n} class counts"


def _sign_verdict(w: Dict[str, float], n_runs: int) -> str:
    if not _defined(w["diff"], w["p"]):
        return f"undetermined (n = {n_runs} runs, {w['n_a']} incorrect examples)"
    d, p = w["diff"], w["p"]
    if d < 0:
        return "supported" if p < ALPHA else "same sign, not significant"
    return "contradicted (higher entropy)" if p < ALPHA else "not supported"


def claims(agg: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The paper's three claims tested on the aggregate of the runs present (module docstring):
    one dict each with ``claim``, ``paper``, the statistics, ``n`` and a ``verdict`` line."""
    sp, sps = agg["spearman_mdl_entropy_paper"], agg["spearman_mdl_entropy_scalar"]
    out = [{"claim": PAPER["claims"][0], "paper": "no monotone relation", "n_tasks": sp["n"],
            "spearman_paper_granularity": sp, "spearman_scalar_granularity": sps,
            "verdict": _monotone_verdict(sp), "verdict_scalar_granularity": _monotone_verdict(sps)}]
    b = agg.get("bin_count_ones")
    out.append({"claim": PAPER["claims"][1], "paper": "MDL rises; entropy U-shaped",
                "n_classes": len(b["classes"]) if b else 0, "bin_count_ones": b, "verdict": _bin_count_ones_verdict(b)})
    cvi = agg["correct_vs_incorrect"]
    tests = {f"{v} granularity, {kind}": cvi[v][kind]["welch_t (incorrect - correct)"]
             for v, _, _ in reversed(VARIANTS) for kind in ("raw", "centred_per_run")}
    n_runs = agg["n_runs"]
    first = next(iter(tests.values()))
    verdict = (f"undetermined (n = {n_runs} runs)" if not n_runs else
               f"{_sign_verdict(first, n_runs)} at paper granularity, raw: {fmt(first['diff'], 4)} nats, "
               f"p {fmt(first['p'])}; {cvi['paper']['n_incorrect']} incorrect / {cvi['paper']['n_correct']} correct "
               f"examples in {n_runs} runs")
    out.append({"claim": PAPER["claims"][2], "paper": "−1.19 nats, p ≈ 0.004", "n_runs": n_runs,
                "n_correct": cvi["paper"]["n_correct"], "n_incorrect": cvi["paper"]["n_incorrect"],
                "welch": tests, "verdicts": {k: _sign_verdict(w, n_runs) for k, w in tests.items()},
                "verdict": verdict})
    return out


def _claims_table(cl: List[Dict[str, Any]]) -> str:
    rows = [[f"{i}. {c['claim']}", c["paper"], c["verdict"]] for i, c in enumerate(cl, 1)]
    rows.append(["1. (scalar granularity)", "–", cl[0]["verdict_scalar_granularity"]])
    rows += [[f"3. ({k})", "–", f"{v}: {fmt(cl[2]['welch'][k]['diff'], 4)} nats, p {fmt(cl[2]['welch'][k]['p'])}"]
             for k, v in cl[2]["verdicts"].items()]
    return "### The paper's claims on the runs present\n\n" + markdown_table(["claim", "paper", "graphengine"], rows)


# ----------------------------------------------------------------------------- coverage
def coverage_text(cov: Dict[str, Any]) -> str:
    """One paragraph: how many of the expected runs are present, which are missing, which hold
    records of other settings (not used)."""
    text = f"Runs present: {cov['present']} of {cov['expected']} (task × seed)."

    def grouped(pairs) -> str:
        by: Dict[str, List[int]] = {}
        for t, s in pairs:
            by.setdefault(t, []).append(int(s))
        return "; ".join(f"{t} seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}" for t, s in by.items())

    if cov["missing"]:
        text += f" Missing ({len(cov['missing'])}): {grouped(cov['missing'])}."
    if cov["stale"]:
        text += (f" Records of other settings, not used ({len(cov['stale'])}; rerun to replace them): "
                 f"{grouped(cov['stale'])}.")
    return text


# ----------------------------------------------------------------------------- files
def render(agg: Dict[str, Any], runs: List[Dict[str, Any]], cov: Dict[str, Any], heading: str) -> str:
    """``table.md``: the heading line, the coverage, the claims, then the detailed tables."""
    return "\n\n".join([heading, coverage_text(cov), _claims_table(agg["claims"]), _tables(agg, runs)]) + "\n"


def write_report(out: str, runs: List[Dict[str, Any]], tasks: Sequence[str], min_accuracy: float,
                 cov: Dict[str, Any], heading: str, doc: Dict[str, Any], plots: bool = True,
                 folders: Sequence[str] = ("runs/",)) -> Dict[str, Any]:
    """Aggregate ``runs`` (the records present), add the claims and the coverage ``cov``
    (``expected``, ``present``, ``missing`` and ``stale`` (task, seed) pairs) to ``doc`` and write
    ``results.json``, ``table.md`` and (``plots`` and matplotlib) the PNGs under ``out``;
    ``doc["files"]`` names them and the ``folders`` beside them."""
    agg = aggregate(runs, tasks, min_accuracy)
    agg["claims"] = claims(agg)
    pngs = _plots(agg, runs, out) if plots and runs else []
    doc = {**doc, "coverage": {**cov, "complete": not cov["missing"] and not cov["stale"]}, "paper": PAPER,
           "aggregate": agg, "runs": [{k: v for k, v in r.items() if k not in ("scalar", "paper", "correct")}
                                      for r in runs]}
    doc["files"] = {"json": "results.json", "table": "table.md",
                    **{f"plot{i}": os.path.basename(p) for i, p in enumerate(pngs)},
                    **{f.strip("/"): f for f in folders}}
    write_json(os.path.join(out, "results.json"), doc)
    write_text(os.path.join(out, "table.md"), render(agg, runs, cov, heading))
    return doc
