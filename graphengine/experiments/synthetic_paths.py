"""§5.1 of the paper (docs/method.md): which attention branch carries the top path on
FirstTokenRepeatedOnce.

Pipeline: generate the data (seed 0, 7,000 / 1,000 / 2,000, length 10, ids 1–19); train a 1-layer
BERT classifier (hidden 16, 2 heads, intermediate 32, GELU, dropout 0, 2 labels; Adam lr 1e-3,
batch 32, 42 epochs, the stored order every epoch as in the authors' notebook) in torch; export it
with the torch frontend at the validation batch shape and save it as an IR file
(``models/first_token_repeated_once_seed<S>.ge``, reused on the next run, so the analysis runs
without torch). Then, in graphengine only: one batched max-product backward over all validation
sentences with QoI = the logit of each sentence's gold label (one seed per example; no path
joins two examples, so per-sentence values are exact), and the K/Q/V/skip "oplus" summary
(:mod:`graphengine.analysis.kqv`) at the layer's attention input, by FirstToken / RepeatToken /
OtherToken.

Granularities (``VARIANTS``): ``scalar`` — the exported graph (fused softmax / layer norm /
GELU with exact Jacobians) at scalar granularity, the exact statistic; ``paper`` — the paper's
decomposition and the paper's granularity (sums inside matmuls and broadcasts, ⊕ only across
consumer nodes), which is how the published numbers were computed; ``paper_ops_scalar`` — the
paper's decomposition at scalar granularity, to separate the two effects.

>>> sorted(PAPER_KQV)
['FirstToken', 'OtherToken', 'RepeatToken', 'all']
>>> [v[0] for v in VARIANTS]
['scalar', 'paper', 'paper_ops_scalar']
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import numpy as np

from ..analysis.kqv import BRANCHES, kqv_credits, kqv_retain, kqv_summary
from ..datasets import first_token_roles, get_dataset
from ..engine import backward, forward, weighted
from ..ir import save
from ..ir.passes import decompose
from .common import (Timer, add_retrain_argument, config_hash, feeds_for, fmt, load_model_graph, markdown_table, pyplot,
                     require_transformers, results_dir, save_figure, settings, write_json, write_text)

__all__ = ["run", "analyze", "DEFAULTS", "QUICK", "PAPER_KQV", "VARIANTS"]

NAME = "synthetic-paths"
DESCRIPTION = "paper §5.1: top path through query/key/value/skip in a trained 1-layer BERT"
QUICK_HELP = "10 training epochs"
TASK = "first_token_repeated_once"

DEFAULTS: Dict[str, Any] = dict(data_seed=0, sizes=(7000, 1000, 2000), length=10, vocab_size=20, num_layers=1,
                                hidden_size=16, num_heads=2, intermediate_size=32, num_labels=2, epochs=42,
                                batch_size=32, lr=1e-3, optimizer="adam", shuffle=False)
#: ``--quick``: fewer epochs, the full data (training is the only slow part).
QUICK: Dict[str, Any] = dict(epochs=10)

#: (name, decomposition policy, backward granularity)
VARIANTS = (("scalar", "fused", "scalar"), ("paper", "paper", "paper"), ("paper_ops_scalar", "paper", "scalar"))

#: docs/method.md: mean credited M⁺ per branch (None = not reported; "≈0" entries are 0.0 with approx).
PAPER_KQV: Dict[str, Dict[str, Optional[float]]] = {
    "all": {"query": 0.017, "key": 0.030, "value": 0.001, "skip": 0.009},
    "FirstToken": {"query": 0.174, "key": 0.095, "value": None, "skip": 0.094},
    "RepeatToken": {"query": 0.0, "key": 0.27, "value": 0.0, "skip": 0.0},
    "OtherToken": {"query": None, "key": 0.009, "value": None, "skip": None},
}
_PAPER_TEXT = {
    "all": {"query": "0.017", "key": "0.030", "value": "0.001", "skip": "0.009"},
    "FirstToken": {"query": "≈0.174", "key": "≈0.095", "value": "≪ (not given)", "skip": "≈0.094"},
    "RepeatToken": {"query": "≈0", "key": "≈0.27", "value": "≈0", "skip": "≈0"},
    "OtherToken": {"query": "–", "key": "≈0.009", "value": "–", "skip": "–"},
}
PAPER_ACCURACY = 1.0
SUBSETS = ("all", "FirstToken", "RepeatToken", "OtherToken")


# ----------------------------------------------------------------------------- model
def _train_config(cfg: Dict[str, Any], seed: int) -> Dict[str, Any]:
    keys = ("data_seed", "sizes", "length", "vocab_size", "num_layers", "hidden_size", "num_heads",
            "intermediate_size", "num_labels", "epochs", "batch_size", "lr", "optimizer", "shuffle")
    return {"task": TASK, "seed": seed, **{k: cfg[k] for k in keys}}


def _train_and_export(data, cfg: Dict[str, Any], seed: int, meta: Dict[str, Any], show: bool):
    require_transformers(NAME)
    from . import training

    model = training.bert_classifier(cfg["vocab_size"], cfg["hidden_size"], cfg["num_layers"], cfg["num_heads"],
                                     cfg["intermediate_size"], cfg["num_labels"], seed=seed)
    log = training.train(model, data.train.x, data.train.y, cfg["epochs"], cfg["batch_size"], cfg["lr"],
                         cfg["optimizer"], seed=seed, shuffle=cfg["shuffle"], show=show, desc="train BERT (§3)")
    torch_val = training.evaluate(model, data.val.x, data.val.y)
    torch_test = training.evaluate(model, data.test.x, data.test.y)
    meta = dict(meta, torch_val=torch_val, torch_test=torch_test, epoch_loss=log.epoch_loss, steps=log.steps)
    return training.export(model, data.val.x, meta=meta)


# ----------------------------------------------------------------------------- analysis
def analyze(graph, split, variants=VARIANTS) -> Dict[str, Any]:
    """K/Q/V/skip summaries of ``graph`` (a 1-layer BERT classifier exported at ``split``'s
    batch shape) for every variant, QoI = the gold label's logit of every sentence."""
    feeds = feeds_for(graph, split.x)
    y = np.asarray(split.y)
    roles = first_token_roles(split)
    subsets = {"all": np.ones(split.x.shape, bool), **roles}
    out: Dict[str, Any] = {}
    for name, policy, granularity in variants:
        g = decompose(graph, policy)
        acts = forward(g, feeds)
        logits = np.asarray(acts[g.outputs[0]], np.float64)
        coef = np.zeros(logits.shape)
        coef[np.arange(len(y)), y] = 1.0
        res = backward(g, acts, weighted(g.nodes[g.outputs[0]].name, coef), semirings=["max"],
                       retain=kqv_retain(g), granularity=granularity)
        credits = kqv_credits(res)
        summary = kqv_summary(credits, subsets=subsets)
        out[name] = {"decomposition": policy, "granularity": granularity,
                     "accuracy": float((logits.argmax(-1) == y).mean()),
                     "summary": summary.to_dict(), "top_tokens": _top_tokens(credits, roles, y),
                     "_summary": summary}
    return out


def _top_tokens(credits, roles, y) -> Dict[str, Any]:
    """Per sentence, the role of the token with the largest credited M⁺ (layer 0), and for
    label-1 sentences whether the two best tokens are exactly the first token and its repeat."""
    v = np.where(np.isfinite(credits.value[0]), credits.value[0], -np.inf)
    order = np.argsort(-v, axis=1, kind="stable")
    role_of = np.full(v.shape, "OtherToken", dtype=object)
    for r in ("FirstToken", "RepeatToken"):
        role_of[roles[r]] = r
    best = role_of[np.arange(len(v)), order[:, 0]]
    out: Dict[str, Any] = {}
    for label in (0, 1):
        sel = y == label
        out[f"label{label}"] = {r: float(np.mean(best[sel] == r)) if sel.any() else None
                                for r in ("FirstToken", "RepeatToken", "OtherToken")}
    pos = y == 1
    if pos.any():
        top2 = np.sort(order[pos, :2], axis=1)
        rep = np.argmax(roles["RepeatToken"][pos], axis=1)
        want = np.sort(np.stack([np.zeros_like(rep), rep], axis=1), axis=1)
        out["label1_top2_is_first_and_repeat"] = float(np.mean(np.all(top2 == want, axis=1)))
    return out


def _findings(res: Dict[str, Any]) -> Dict[str, bool]:
    """The paper's qualitative claims, checked on one variant's means."""
    mean = {s: dict(zip(res["summary"]["branches"], res["summary"]["mean"][s][0])) for s in SUBSETS}
    f, r, o = mean["FirstToken"], mean["RepeatToken"], mean["OtherToken"]
    return {
        "FirstToken: query > key and query > skip": f["query"] > f["key"] and f["query"] > f["skip"],
        "FirstToken: value is the smallest branch": f["value"] <= min(f["query"], f["key"], f["skip"]),
        "RepeatToken: key is the largest branch": r["key"] >= max(r["query"], r["value"], r["skip"]),
        "OtherToken: key is the largest branch": o["key"] >= max(o["query"], o["value"], o["skip"]),
        "RepeatToken key > OtherToken key": r["key"] > o["key"],
    }


# ----------------------------------------------------------------------------- report
def _tables(results: Dict[str, Any], variants) -> str:
    parts = []
    rows = []
    for s in SUBSETS:
        rows.append([s, "paper", None, *(_PAPER_TEXT[s][b] for b in BRANCHES), _paper_keys(s)])
        for name, _, _ in variants:
            sm = results[name]["summary"]
            m = dict(zip(sm["branches"], sm["mean"][s][0]))
            tot = sum(m[b] for b in sm["branches"])
            rows.append([s, f"graphengine {name}", sm["n_tokens"][s], *(m[b] for b in BRANCHES),
                         "–" if tot == 0 else f"{100 * m['key'] / tot:.1f}"])
    parts.append("### Mean credited M⁺ per branch (the paper's statistic)\n\n"
                 + markdown_table(["subset", "source", "tokens", *BRANCHES, "% keys"], rows))
    rows = []
    for s in SUBSETS:
        for name, _, _ in variants:
            sm = results[name]["summary"]
            rows.append([s, name, *(dict(zip(sm["branches"], sm["top_share"][s][0]))[b] for b in BRANCHES)])
    parts.append("### Fraction of tokens whose top path leaves through each branch\n\n"
                 + markdown_table(["subset", "variant", *BRANCHES], rows))
    rows = []
    for name, _, _ in variants:
        t = results[name]["top_tokens"]
        rows.append([name, t["label1"]["FirstToken"], t["label1"]["RepeatToken"], t["label1"]["OtherToken"],
                     t.get("label1_top2_is_first_and_repeat"), t["label0"]["FirstToken"]])
    parts.append("### Which token carries the sentence's best path (label-1 sentences unless stated)\n\n"
                 + markdown_table(["variant", "best = FirstToken", "best = RepeatToken", "best = OtherToken",
                                   "top-2 = {first, repeat}", "label 0: best = FirstToken"], rows))
    rows = [[claim, *(("yes" if results[n]["findings"][claim] else "no") for n, _, _ in variants)]
            for claim in results[variants[0][0]]["findings"]]
    parts.append("### The paper's qualitative findings\n\n"
                 + markdown_table(["claim (paper §5.1)", *(n for n, _, _ in variants)], rows))
    return "\n\n".join(parts)


def _paper_keys(s: str) -> str:
    p = PAPER_KQV[s]
    if any(v is None for v in p.values()):
        return "–"
    tot = sum(p.values())
    return f"{100 * p['key'] / tot:.1f}" if tot else "–"


def _plot(results: Dict[str, Any], variants, path: str) -> Optional[str]:
    plt = pyplot()
    if plt is None:
        return None
    panels = [("paper", {s: [PAPER_KQV[s][b] for b in BRANCHES] for s in SUBSETS})]
    for name, _, _ in variants[:2]:
        sm = results[name]["summary"]
        panels.append((f"graphengine, {name} granularity",
                       {s: [dict(zip(sm["branches"], sm["mean"][s][0]))[b] for b in BRANCHES] for s in SUBSETS}))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6))
    colors = ["#4c72b0", "#dd8452", "#55a868", "#8c8c8c"]
    x = np.arange(len(SUBSETS))
    w = 0.2
    for ax, (title, vals) in zip(axes, panels):
        for j, b in enumerate(BRANCHES):
            h = [np.nan if vals[s][j] is None else vals[s][j] for s in SUBSETS]
            ax.bar(x + (j - 1.5) * w, np.nan_to_num(h), w, color=colors[j], label=b)
            for xi, hv in zip(x, h):
                if np.isnan(hv):
                    ax.text(xi + (j - 1.5) * w, 0, "?", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, SUBSETS, rotation=15)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("mean credited M⁺")
    axes[0].legend(fontsize=8)
    fig.suptitle("FirstTokenRepeatedOnce: top path through Q / K / V / skip at the attention input", fontsize=10)
    return save_figure(fig, path)


def add_arguments(parser) -> None:
    """The options of ``graphengine experiment synthetic-paths`` beyond the common ones."""
    add_retrain_argument(parser)


def run(out: Optional[str] = None, quick: bool = False, seed: int = 0, progress: bool = True,
        retrain: bool = False, **overrides) -> Dict[str, Any]:
    """Train (or reuse), export, analyse; write ``results.json``, ``table.md``, ``kqv_bars.png``
    and the model IR file under ``out`` (default ``results/synthetic-paths``). ``overrides``
    change :data:`DEFAULTS` (tests use tiny sizes)."""
    cfg = settings(NAME, DEFAULTS, QUICK, quick, overrides)
    out = results_dir(out, NAME)
    timer = Timer()
    with timer("data"):
        data = get_dataset(TASK, seed=cfg["data_seed"], sizes=tuple(cfg["sizes"]), length=cfg["length"],
                           vocab_size=cfg["vocab_size"])
    tcfg = _train_config(cfg, seed)
    h = config_hash(tcfg)
    model_path = os.path.join(out, "models", f"{TASK}_seed{seed}.ge")
    graph = None if retrain else load_model_graph(model_path, h)
    reused = graph is not None
    if graph is None:
        with timer("train+export"):
            graph = _train_and_export(data, cfg, seed, {"config": tcfg, "config_hash": h}, progress)
        os.makedirs(os.path.dirname(model_path), exist_ok=True)
        save(graph, model_path)
    with timer("analysis"):
        results = analyze(graph, data.val)
    for r in results.values():
        r.pop("_summary")
        r["findings"] = _findings(r)
    em = graph.meta.get("experiment", {})
    doc = {
        "experiment": NAME, "paper_section": "§5.1 (docs/method.md)", "quick": quick, "seed": seed, "config": tcfg,
        "model_file": os.path.relpath(model_path, out), "model_reused": reused, "exporter": em.get("exporter"),
        "validation": {"n": len(data.val), "n_with_repeat": int(data.val.y.sum())},
        "accuracy": {"val_ir": results["scalar"]["accuracy"], "val_torch": em.get("torch_val", {}).get("accuracy"),
                     "test_torch": em.get("torch_test", {}).get("accuracy"), "paper_val": PAPER_ACCURACY},
        "paper": {"kqv_mean": PAPER_KQV, "validation_with_repeat": 476},
        "variants": results, "timings_s": timer.seconds,
    }
    table = (f"# §5.1 FirstTokenRepeatedOnce — K/Q/V/skip (graphengine vs paper)\n\n"
             f"Validation accuracy: graphengine IR {fmt(doc['accuracy']['val_ir'])}, torch "
             f"{fmt(doc['accuracy']['val_torch'])} (paper 1.0); {doc['validation']['n_with_repeat']} of "
             f"{doc['validation']['n']} validation sentences contain a repeat (paper: 476 of 1,000).\n\n"
             + _tables(results, VARIANTS) + "\n")
    with timer("report"):
        png = _plot(results, VARIANTS, os.path.join(out, "kqv_bars.png"))
    doc["files"] = {"json": "results.json", "table": "table.md", "plot": png and os.path.basename(png),
                    "model": doc["model_file"]}
    write_json(os.path.join(out, "results.json"), doc)
    write_text(os.path.join(out, "table.md"), table)
    return doc
