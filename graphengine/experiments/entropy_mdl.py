"""§5.3 of the paper (docs/method.md): path entropy of the input tokens vs task difficulty (MDL).

For every task family (:data:`graphengine.datasets.SECTION5_TASKS`: length 36, ids 1–59,
3,600 / 360 / 360, data seed 0) and training seed:

1. **MDL** (:mod:`graphengine.experiments.mdl`): the online code over the 3,600 training
   examples with the paper's blocks ``[2, 2, 4, 4, 8, 16, 36, 72, 72, 144, 288, 576, 576, 1800]``;
   each block is scored by a fresh BERT classifier (2 layers, hidden 64, 4 heads, intermediate
   32, dropout 0, 36 output labels for every task; AdamW lr 1e-3 with ``transformers.AdamW``'s
   defaults weight decay 0 and eps 1e-6, batch 32, 50 epochs, reshuffled every epoch) trained on
   all earlier blocks. Reported ``mdl`` = 2·ln 36 + Σ per-block **mean** cross-entropy in nats
   (the paper's quantity, 12–51 nats); ``codelength`` = the same with the per-block losses
   **summed over examples** (the textbook online codelength) is reported beside it.
2. The model trained on all blocks (the last MDL model, as in the authors' code) is exported with
   the torch frontend at the validation batch shape (360 × 36) with a ``log_probs`` node and
   saved as ``models/<task>_seed<s>.ge``.
3. **Entropy** (graphengine only): QoI = the summed cross-entropy of the validation set,
   −Σ_b log_probs[b, y_b], one expectation-semiring backward. The per-position (Z, R) of the
   word-embedding lookup output, summed over the 64 hidden units, give a token entropy
   H = ΣR/ΣZ + log ΣZ. Run entropy = Σ over examples and positions / #examples.

   - ``paper`` (the paper's numbers): the paper's decomposition and granularity, and — as the
     original, which pooled adjoints into the embedding *table* — a token's entropy is that of
     its vocabulary row, pooled over all positions with that token id within each batch of
     ``entropy_batch`` = 4 examples (the authors' ``BF_BATCH_SIZE``). For the linear entropy
     semiring pooling a row is exactly summing the per-position (Z, R), so one backward over
     all 360 examples gives the batch-of-4 numbers (tested against the table parameter).
   - ``paper_per_position``: the same graph, entropy per position (no pooling).
   - ``scalar``: the exported graph (fused softmax / layer norm / GELU, exact Jacobians) at
     scalar granularity, entropy per position — the exact statistic. Per position and per
     vocabulary row differ because a row's paths are the union of several positions' paths.

Outputs: per task the MDL, entropies and accuracy (mean over seeds); the Spearman correlation of
entropy and MDL; BinCountOnes entropy and MDL vs the number of classes; the per-example entropy
of correctly vs incorrectly classified validation examples with Welch's t test and the
Mann–Whitney U test (:mod:`graphengine.experiments.stats`), pooled over runs both raw and
centred per run. Each (task, seed) is written to ``runs/`` as it finishes, so an interrupted run
resumes.

>>> len(DEFAULTS["tasks"]), QUICK["n_seeds"]
(27, 1)
>>> pool_rows(np.array([[1, 2, 1]]), np.array([[1.0, 1.0, 1.0]]), np.zeros((1, 3)), 4).round(4).tolist()
[[0.6931, 0.0, 0.6931]]
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..analysis.entropy import grouped_entropy, pooled_entropy
from ..datasets import SECTION5_TASKS, get_dataset
from ..engine import backward, forward, weighted
from ..ir import save
from ..ir.passes import decompose
from ..models.bert import word_embedding_lookup
from .common import (ExperimentError, Timer, add_retrain_argument, config_hash, feeds_for, fmt, load_model_graph,
                     markdown_table, progress as progress_bar, pyplot, read_json, require_transformers, results_dir,
                     save_figure, settings, write_json, write_text)
from .mdl import block_sizes, prequential_mdl
from .stats import mann_whitney_u, spearman, welch_t

__all__ = ["run", "token_entropies", "pool_rows", "DEFAULTS", "QUICK", "QUICK_TASKS", "PAPER"]

NAME = "entropy-mdl"
DESCRIPTION = "paper §5.3: path entropy of the input tokens vs task difficulty (MDL), BERT classifiers"
QUICK_HELP = "8 tasks, 1 seed, 20 epochs, MDL over 1,800 examples"
QUICK_TASKS = ("contains_1", "first_token_repeated_last", "adjacent_duplicate", "contains_token_set:5",
               "contains_token_set_ood:10", "bin_count_ones:2", "bin_count_ones:6", "bin_count_ones:36")
DEFAULTS: Dict[str, Any] = dict(data_seed=0, sizes=(3600, 360, 360), length=36, vocab_size=60, tasks=SECTION5_TASKS,
                                n_seeds=3, num_layers=2, hidden_size=64, num_heads=4, intermediate_size=32,
                                num_labels=36, epochs=50, batch_size=32, lr=1e-3, optimizer="adamw", shuffle=True,
                                n_train=None, entropy_batch=4, min_accuracy=0.9)
#: ``--quick``: 8 tasks, one seed, 20 epochs, MDL (and the final model) on the first 1,800 training
#: examples (at 10 epochs most models were still at chance: BERT here learns in a burst after ~600–1,100 steps).
QUICK: Dict[str, Any] = dict(tasks=QUICK_TASKS, n_seeds=1, epochs=20, n_train=1800)
VARIANTS = (("scalar", "fused", "scalar"), ("paper", "paper", "paper"))
PAPER = {"entropy_range": (2050, 2380), "mdl_range": (12, 51),
         "incorrect_minus_correct": -1.19, "incorrect_vs_correct_p": 0.004,
         "claims": ["no monotone relation between entropy and MDL",
                    "BinCountOnes: MDL rises with the number of classes, entropy is U-shaped",
                    "incorrect examples have slightly lower entropy than correct ones (-1.19 nats, p ~ 0.004)"]}


# ----------------------------------------------------------------------------- entropy
def pool_rows(x: np.ndarray, Z: np.ndarray, R: np.ndarray, batch: int) -> np.ndarray:
    """Token entropies [N, T] when (Z, R) are pooled per vocabulary row within consecutive
    batches of ``batch`` examples: every position gets the entropy of its row,
    ΣR/ΣZ + log ΣZ over the positions of the batch holding that token id."""
    x = np.asarray(x)
    n = len(x)
    chunk = np.repeat(np.arange(math.ceil(n / batch)), batch)[:n, None] * np.ones_like(x)
    key = chunk.astype(np.int64) * (int(x.max()) + 1) + x
    return grouped_entropy(Z, R, key)


def token_entropies(graph, x: np.ndarray, y: np.ndarray, policy: str, granularity: str,
                    entropy_batch: int = 4) -> Dict[str, Any]:
    """Per-token entropies [N, T] of a classifier graph with a ``log_probs`` output for the
    examples ``x`` (its batch shape), QoI = Σ_b CE_b: ``per_position`` and ``per_row`` (pooled per
    vocabulary row within batches of ``entropy_batch``), plus ``logits``-based correctness."""
    g = decompose(graph, policy)
    acts = forward(g, feeds_for(g, x))
    lp = np.asarray(acts[g.node("log_probs").id], np.float64)
    y = np.asarray(y)
    coef = np.zeros(lp.shape)
    coef[np.arange(len(y)), y] = -1.0
    lookup = word_embedding_lookup(g)
    res = backward(g, acts, weighted("log_probs", coef), semirings=["entropy"], retain=[lookup.name],
                   granularity=granularity)
    c = res.components(lookup.name, "entropy")
    Z = np.asarray(c["Z"], np.float64).sum(-1)
    R = np.asarray(c["R"], np.float64).sum(-1)
    return {"per_position": pooled_entropy(Z, R, axis=()), "per_row": pool_rows(x, Z, R, entropy_batch),
            "correct": lp.argmax(-1) == y, "mean_ce": float(-lp[np.arange(len(y)), y].mean())}


# ----------------------------------------------------------------------------- one run
def _slug(task: str) -> str:
    return task.replace(":", "_")


def _train_config(cfg, task: str, seed: int) -> Dict[str, Any]:
    keys = ("data_seed", "sizes", "length", "vocab_size", "num_layers", "hidden_size", "num_heads",
            "intermediate_size", "num_labels", "epochs", "batch_size", "lr", "optimizer", "shuffle", "n_train")
    return {"task": task, "seed": seed, **{k: cfg[k] for k in keys}}


def _mdl_and_export(data, cfg, task: str, seed: int, meta: Dict[str, Any], show: bool):
    require_transformers(NAME)
    from . import training

    n = len(data.train) if cfg["n_train"] is None else min(int(cfg["n_train"]), len(data.train))
    x, y = data.train.x[:n], data.train.y[:n]

    def fit_and_score(train_idx, test_idx, block):
        model = training.bert_classifier(cfg["vocab_size"], cfg["hidden_size"], cfg["num_layers"], cfg["num_heads"],
                                         cfg["intermediate_size"], cfg["num_labels"], seed=seed * 1000 + block)
        training.train(model, x[train_idx], y[train_idx], cfg["epochs"], cfg["batch_size"], cfg["lr"],
                       cfg["optimizer"], seed=seed * 1000 + block, shuffle=cfg["shuffle"])
        return training.evaluate(model, x[test_idx], y[test_idx])["mean_ce"], model

    prog = (lambda it, desc="": progress_bar(it, desc=f"{task} seed {seed}: MDL blocks")) if show else (lambda it, **k: it)
    mdl, model = prequential_mdl(y, cfg["num_labels"], fit_and_score, np.random.default_rng(seed),
                                 sizes=block_sizes(n), progress=prog)
    meta = dict(meta, mdl=mdl.to_dict(), n_train_used=n, torch_val=training.evaluate(model, data.val.x, data.val.y),
                torch_test=training.evaluate(model, data.test.x, data.test.y))
    return training.export(model, data.val.x, log_probs=True, meta=meta)


def _run_one(out: str, cfg, task: str, seed: int, retrain: bool, show: bool, timer: Timer) -> Dict[str, Any]:
    tcfg = _train_config(cfg, task, seed)
    h = config_hash({**tcfg, "entropy_batch": cfg["entropy_batch"]})
    run_path = os.path.join(out, "runs", f"{_slug(task)}_seed{seed}.json")
    if not retrain and os.path.exists(run_path):
        rec = read_json(run_path)
        if rec.get("config_hash") == h:
            rec["resumed"] = True
            return rec
    with timer("data"):
        data = get_dataset(task, seed=cfg["data_seed"], sizes=tuple(cfg["sizes"]), length=cfg["length"],
                           vocab_size=cfg["vocab_size"])
    model_path = os.path.join(out, "models", f"{_slug(task)}_seed{seed}.ge")
    mh = config_hash(tcfg)
    g = None if retrain else load_model_graph(model_path, mh)
    reused = g is not None
    if g is None:
        with timer("mdl+train+export"):
            g = _mdl_and_export(data, cfg, task, seed, {"config": tcfg, "config_hash": mh}, show)
        os.makedirs(os.path.dirname(model_path), exist_ok=True)
        save(g, model_path)
    em = g.meta["experiment"]
    rec: Dict[str, Any] = {"task": task, "seed": seed, "config_hash": h, "model_file": os.path.relpath(model_path, out),
                           "model_reused": reused, "exporter": em.get("exporter"), "mdl": em["mdl"]["mdl"],
                           "codelength": em["mdl"]["codelength"], "mdl_detail": em["mdl"],
                           "n_train_used": em["n_train_used"], "val_accuracy_torch": em["torch_val"]["accuracy"],
                           "test_accuracy_torch": em["torch_test"]["accuracy"], "num_classes": data.num_classes}
    n = len(data.val)
    with timer("entropy"):
        for v, policy, gran in VARIANTS:
            te = token_entropies(g, data.val.x, data.val.y, policy, gran, cfg["entropy_batch"])
            main = te["per_row"] if v == "paper" else te["per_position"]
            rec[v] = {"run_entropy": float(main.sum() / n), "per_example": main.sum(1).tolist(),
                      "run_entropy_per_position": float(te["per_position"].sum() / n),
                      "run_entropy_per_row": float(te["per_row"].sum() / n),
                      "mean_token_entropy": float(main.mean())}
            if v == "scalar":
                rec["correct"] = te["correct"].astype(int).tolist()
                rec["val_accuracy_ir"] = float(te["correct"].mean())
                rec["val_mean_ce_ir"] = te["mean_ce"]
    rec["entropy_paper"] = rec["paper"]["run_entropy"]
    rec["entropy_paper_per_position"] = rec["paper"]["run_entropy_per_position"]
    rec["entropy_scalar"] = rec["scalar"]["run_entropy"]
    write_json(run_path, rec)
    return rec


# ----------------------------------------------------------------------------- aggregation
def _family(task: str) -> str:
    return task.split(":")[0]


def _aggregate(runs: List[Dict[str, Any]], tasks: Sequence[str], min_accuracy: float = 0.9) -> Dict[str, Any]:
    """Per-task means over seeds, correlations, BinCountOnes, correct vs incorrect; the
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
    rows = [[t, a["n_seeds"], a["val_accuracy_ir"], a["mdl"], a["codelength"], a["entropy_paper"],
             a["entropy_paper_per_position"], a["entropy_scalar"]] for t, a in pt.items()]
    parts = ["### Per task (mean over seeds)\n\n" + markdown_table(
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


def add_arguments(parser) -> None:
    """The options of ``graphengine experiment entropy-mdl`` beyond the common ones."""
    add_retrain_argument(parser)


def run(out: Optional[str] = None, quick: bool = False, seed: int = 0, progress: bool = True,
        retrain: bool = False, **overrides) -> Dict[str, Any]:
    """Every (task, seed): MDL + final model (or reuse), entropy; then aggregate and write
    ``results.json``, ``table.md``, ``entropy_vs_mdl.png``, ``bincountones.png``,
    ``correct_vs_incorrect.png`` under ``out``."""
    cfg = settings(NAME, DEFAULTS, QUICK, quick, overrides)
    unknown = [t for t in cfg["tasks"] if t.split(":")[0] not in {s.split(":")[0] for s in SECTION5_TASKS}]
    if unknown:
        raise ExperimentError(f"entropy-mdl: unknown task(s) {', '.join(unknown)}")
    out = results_dir(out, NAME)
    timer = Timer()
    seeds = [seed + i for i in range(cfg["n_seeds"])]
    jobs = [(t, s) for s in seeds for t in cfg["tasks"]]
    runs = [_run_one(out, cfg, t, s, retrain, progress, timer)
            for t, s in progress_bar(jobs, desc="entropy-mdl runs", enabled=progress)]
    agg = _aggregate(runs, cfg["tasks"], cfg["min_accuracy"])
    with timer("report"):
        pngs = _plots(agg, runs, out)
    doc = {"experiment": NAME, "paper_section": "§5.3 (docs/method.md)", "quick": quick, "seeds": seeds,
           "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
           "units": "nats; MDL = n_1 ln 36 + sum over blocks of the mean CE (paper); codelength = the same with "
                    "per-block CE summed over examples; run entropy = sum over examples and positions / #examples",
           "paper": PAPER, "aggregate": agg,
           "runs": [{k: v for k, v in r.items() if k not in ("scalar", "paper", "correct")} for r in runs],
           "n_resumed": sum(1 for r in runs if r.get("resumed")), "timings_s": timer.seconds}
    doc["files"] = {"json": "results.json", "table": "table.md",
                    **{f"plot{i}": os.path.basename(p) for i, p in enumerate(pngs)}, "runs": "runs/", "models": "models/"}
    table = ("# §5.3 entropy vs MDL (graphengine vs paper)\n\n"
             f"{'Quick mode: ' + str(len(cfg['tasks'])) + ' tasks, ' if quick else ''}seeds {seeds}, {cfg['epochs']} epochs, "
             f"MDL over {cfg['n_train'] or cfg['sizes'][0]} training examples. Entropies in nats per example.\n\n"
             + _tables(agg, runs) + "\n")
    write_json(os.path.join(out, "results.json"), doc)
    write_text(os.path.join(out, "table.md"), table)
    return doc
