"""Appendix B.1 of the paper (docs/method.md): path entropy of the input features vs model size.

FFOOM ("four features, only one matters"): x ~ U[0,1)⁴, y = 1[x₀ > 0.5], 20,000 points split
14,000 / 2,000 / 4,000 (data seed 0). Model ``fc1`` Linear(4→h) → LeakyReLU(0.01) → ``fc2``
Linear(h→2) for h ∈ {4, 8, 16, 32, 64, 128}; Adam lr 1e-3, batch 32, one epoch in the stored
order (as the authors' notebook), three training seeds. The trained model is exported with the
torch frontend at the shape of the *last training batch* (14,000 = 437·32 + 16, so 16
examples), with ``log_probs = log_softmax(logits)`` appended, and saved as an IR file.

Entropy (graphengine only): QoI = the mean cross-entropy of the last training batch,
−(1/B) Σ_b log_probs[b, y_b], as a weighted QoI on ``log_probs``; expectation-semiring backward;
for every input scalar x[b, j] the entropy of the distribution over its paths to the QoI,
H = R/Z + log Z; the entropy of feature j is the mean of H over the batch (the authors'
``reduce_mean(inputs.compute_entropy(), axis=0)``). "Irrelevant" is the mean over features 1–3.
The model after training is analysed (the authors logged this quantity just before the last
optimizer step; one Adam step changes it negligibly). The QoI's constant factor 1/B does not
change an entropy (path probabilities are normalised).

Granularities: ``scalar`` (fused log-softmax, exact) and ``paper`` (the paper's decomposition
x − logsumexp(x) with a max-shifted logsumexp, paper granularity). For a linear semiring the
granularity only matters through the decomposition.

>>> sorted(PAPER_X0)
[4, 8, 16, 32, 64, 128]
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional

import numpy as np

from ..analysis.entropy import pooled_entropy
from ..datasets import get_dataset
from ..engine import backward, forward, weighted
from ..ir import save
from ..ir.passes import decompose
from .common import (Timer, add_retrain_argument, config_hash, feeds_for, fmt, load_model_graph, markdown_table,
                     progress as progress_bar, pyplot, require_torch, results_dir, save_figure, settings, write_json,
                     write_text)

__all__ = ["run", "feature_entropy", "DEFAULTS", "QUICK", "PAPER_X0", "PAPER_ACCURACY"]

NAME = "ffoom"
DESCRIPTION = "paper App. B.1: path entropy of the input features vs hidden size (FFOOM MLPs, torch)"
QUICK_HELP = "one training seed instead of three"
DEFAULTS: Dict[str, Any] = dict(data_seed=0, sizes=(14000, 2000, 4000), hidden_sizes=(4, 8, 16, 32, 64, 128),
                                n_seeds=3, epochs=1, batch_size=32, lr=1e-3, optimizer="adam", shuffle=False,
                                negative_slope=0.01)
QUICK: Dict[str, Any] = dict(n_seeds=1)
VARIANTS = (("scalar", "fused", "scalar"), ("paper", "paper", "paper"))

#: docs/method.md: entropy of x₀ (nats), the range over the paper's seeds.
PAPER_X0 = {4: (2.2, 2.55), 8: (2.7, 3.0), 16: (3.6, 3.8), 32: (4.4, 4.6), 64: (5.1, 5.1), 128: (5.8, 5.8)}
PAPER_ACCURACY = {8: 0.88, 128: 0.98}


def _train_config(cfg, h: int, seed: int) -> Dict[str, Any]:
    keys = ("data_seed", "sizes", "epochs", "batch_size", "lr", "optimizer", "shuffle", "negative_slope")
    return {"task": "ffoom", "hidden": h, "seed": seed, **{k: cfg[k] for k in keys}}


def _train_and_export(data, cfg, h: int, seed: int, meta: Dict[str, Any]):
    torch = require_torch(NAME)
    from . import training

    torch.manual_seed(seed)
    model = training.FFOOMNet(h, negative_slope=cfg["negative_slope"])
    log = training.train(model, data.train.x, data.train.y, cfg["epochs"], cfg["batch_size"], cfg["lr"],
                         cfg["optimizer"], seed=seed, shuffle=cfg["shuffle"])
    idx = np.sort(log.last_batch)
    meta = dict(meta, last_batch=idx.tolist(), torch_val=training.evaluate(model, data.val.x, data.val.y),
                torch_test=training.evaluate(model, data.test.x, data.test.y), epoch_loss=log.epoch_loss)
    return training.export(model, data.train.x[idx], log_probs=True, meta=meta)


def feature_entropy(graph, x: np.ndarray, y: np.ndarray, policy: str = "fused",
                    granularity: str = "scalar") -> np.ndarray:
    """Per-feature mean (over the batch) of the per-element path entropy of the input, QoI = the
    batch's mean cross-entropy read from the graph's ``log_probs`` output. Shape [features]."""
    g = decompose(graph, policy)
    feeds = feeds_for(g, x)
    acts = forward(g, feeds)
    lp = g.node("log_probs")
    coef = np.zeros(lp.shape)
    coef[np.arange(len(y)), np.asarray(y)] = -1.0 / len(y)
    res = backward(g, acts, weighted("log_probs", coef), semirings=["entropy"], retain=[g.inputs()[0].name],
                   granularity=granularity)
    c = res.components(g.inputs()[0].name, "entropy")
    return pooled_entropy(c["Z"], c["R"], axis=()).mean(axis=0)


def _aggregate(runs: List[Dict[str, Any]], hidden_sizes) -> Dict[str, Any]:
    agg: Dict[str, Any] = {}
    for h in hidden_sizes:
        rs = [r for r in runs if r["hidden"] == h]
        entry: Dict[str, Any] = {"n_seeds": len(rs)}
        for v, _, _ in VARIANTS:
            x0 = np.array([r[v]["x0"] for r in rs])
            irr = np.array([r[v]["irrelevant"] for r in rs])
            entry[v] = {"x0_mean": float(x0.mean()), "x0_min": float(x0.min()), "x0_max": float(x0.max()),
                        "irrelevant_mean": float(irr.mean()), "x0_minus_irrelevant": float((x0 - irr).mean())}
        entry["test_accuracy_mean"] = float(np.mean([r["test_accuracy"] for r in rs]))
        agg[str(h)] = entry
    hs = np.array(hidden_sizes, np.float64)
    for v, _, _ in VARIANTS:
        ys = np.array([agg[str(h)][v]["x0_mean"] for h in hidden_sizes])
        slope = float(np.polyfit(np.log(hs), ys, 1)[0]) if len(hs) > 1 else math.nan
        agg[f"slope_per_ln_h_{v}"] = slope
    lo = np.array([np.mean(PAPER_X0[h]) for h in hidden_sizes if h in PAPER_X0])
    hp = np.array([h for h in hidden_sizes if h in PAPER_X0], np.float64)
    agg["slope_per_ln_h_reported"] = float(np.polyfit(np.log(hp), lo, 1)[0]) if len(hp) > 1 else math.nan
    return agg


def _table(agg, hidden_sizes) -> str:
    rows = []
    for h in hidden_sizes:
        a = agg[str(h)]
        p = PAPER_X0.get(h)
        paper = "–" if p is None else (f"{p[0]}" if p[0] == p[1] else f"{p[0]}–{p[1]}")
        s, q = a["scalar"], a["paper"]
        rows.append([h, paper, f"{fmt(q['x0_mean'])} [{fmt(q['x0_min'])}, {fmt(q['x0_max'])}]", q["irrelevant_mean"],
                     f"{fmt(s['x0_mean'])} [{fmt(s['x0_min'])}, {fmt(s['x0_max'])}]", s["irrelevant_mean"],
                     math.log(h), a["test_accuracy_mean"], PAPER_ACCURACY.get(h)])
    t = markdown_table(["h", "paper x₀ (reported)", "graphengine x₀, paper gran.: mean [min, max]", "irrelevant, paper gran.",
                        "graphengine x₀, scalar gran.: mean [min, max]", "irrelevant, scalar gran.", "ln h",
                        "test accuracy", "paper accuracy"], rows)
    slopes = ("Least-squares slope of the mean x₀ entropy against ln h (\"roughly + log h\" is 1): paper "
              f"(range midpoints) {fmt(agg['slope_per_ln_h_reported'])}, graphengine paper granularity "
              f"{fmt(agg['slope_per_ln_h_paper'])}, scalar granularity {fmt(agg['slope_per_ln_h_scalar'])}.")
    return t + "\n\n" + slopes


def _plot(runs, agg, hidden_sizes, path) -> Optional[str]:
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    hs = np.array(hidden_sizes)
    for ax, (v, _, _) in zip(axes, VARIANTS):
        for key, color, label in (("x0", "#c44e52", "x₀ (relevant)"), ("irrelevant", "#4c72b0", "x₁–x₃ (irrelevant)")):
            for r in runs:
                ax.scatter(r["hidden"], r[v][key], color=color, s=12, alpha=0.5)
            ax.plot(hs, [agg[str(h)][v][f"{key}_mean"] for h in hidden_sizes], color=color, label=label)
        for h in hidden_sizes:
            if h in PAPER_X0:
                lo, hi = PAPER_X0[h]
                ax.plot([h, h], [lo - 0.02, hi + 0.02], color="black", lw=4, alpha=0.35,
                        label="paper x₀" if h == hidden_sizes[0] else None)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden size h")
        ax.set_title(f"graphengine, {v} granularity", fontsize=10)
    axes[0].set_ylabel("entropy (nats), mean over the last batch")
    axes[0].legend(fontsize=8)
    fig.suptitle("FFOOM: input-feature path entropy vs model size (QoI = mean CE of the last training batch)",
                 fontsize=10)
    return save_figure(fig, path)


def add_arguments(parser) -> None:
    """The options of ``graphengine experiment ffoom`` beyond the common ones."""
    add_retrain_argument(parser)


def run(out: Optional[str] = None, quick: bool = False, seed: int = 0, progress: bool = True,
        retrain: bool = False, **overrides) -> Dict[str, Any]:
    """Train (or reuse) every (h, seed) model, analyse, write ``results.json``, ``table.md``,
    ``entropy_vs_size.png`` and ``models/ffoom_h<h>_seed<s>.ge`` under ``out``."""
    cfg = settings(NAME, DEFAULTS, QUICK, quick, overrides)
    out = results_dir(out, NAME)
    timer = Timer()
    with timer("data"):
        data = get_dataset("ffoom", seed=cfg["data_seed"], sizes=tuple(cfg["sizes"]))
    seeds = [seed + i for i in range(cfg["n_seeds"])]
    jobs = [(h, s) for h in cfg["hidden_sizes"] for s in seeds]
    runs = []
    n_reused = 0
    for h, s in progress_bar(jobs, desc="FFOOM models", enabled=progress):
        tcfg = _train_config(cfg, h, s)
        hsh = config_hash(tcfg)
        path = os.path.join(out, "models", f"ffoom_h{h}_seed{s}.ge")
        g = None if retrain else load_model_graph(path, hsh)
        if g is None:
            with timer("train+export"):
                g = _train_and_export(data, cfg, h, s, {"config": tcfg, "config_hash": hsh})
            os.makedirs(os.path.dirname(path), exist_ok=True)
            save(g, path)
        else:
            n_reused += 1
        em = g.meta["experiment"]
        idx = np.asarray(em["last_batch"])
        x, y = data.train.x[idx], data.train.y[idx]
        rec: Dict[str, Any] = {"hidden": h, "seed": s, "model_file": os.path.relpath(path, out),
                               "last_batch_size": len(idx), "val_accuracy": em["torch_val"]["accuracy"],
                               "test_accuracy": em["torch_test"]["accuracy"], "exporter": em.get("exporter")}
        with timer("analysis"):
            for v, policy, gran in VARIANTS:
                H = feature_entropy(g, x, y, policy, gran)
                rec[v] = {"per_feature": H.tolist(), "x0": float(H[0]), "irrelevant": float(H[1:].mean())}
        runs.append(rec)
    agg = _aggregate(runs, cfg["hidden_sizes"])
    with timer("report"):
        png = _plot(runs, agg, list(cfg["hidden_sizes"]), os.path.join(out, "entropy_vs_size.png"))
    doc = {"experiment": NAME, "paper_section": "App. B.1 (docs/method.md)", "quick": quick, "seeds": seeds,
           "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
           "paper": {"x0": {str(k): list(v) for k, v in PAPER_X0.items()},
                     "accuracy": {str(k): v for k, v in PAPER_ACCURACY.items()}},
           "runs": runs, "aggregate": agg, "models_reused": n_reused, "timings_s": timer.seconds}
    doc["files"] = {"json": "results.json", "table": "table.md", "plot": png and os.path.basename(png),
                    "models": "models/"}
    table = ("# App. B.1 FFOOM — entropy of the input features vs hidden size (graphengine vs paper)\n\n"
             f"Seeds {seeds}; entropy in nats, mean over the last training batch ({runs[0]['last_batch_size']} "
             "examples); \"irrelevant\" = mean over x₁–x₃.\n\n" + _table(agg, list(cfg["hidden_sizes"])) + "\n")
    write_json(os.path.join(out, "results.json"), doc)
    write_text(os.path.join(out, "table.md"), table)
    return doc
