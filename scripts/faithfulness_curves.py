"""Deletion/insertion areas of token rankings: the §5.1 model, or an agreement model (§5.2).

**§5.1** (``GRAPH.ge``): for a trained §5.1 graph (``graphengine experiment synthetic-paths``
saves it as ``results/synthetic-paths/models/first_token_repeated_once_seed<S>.ge``), over its
validation batch with QoI = the gold label's logit of each sentence: every method of
:data:`graphengine.analysis.faithfulness.METHODS` ranks the tokens (scores at the word-embedding
lookup, the node whose scope ends in ``embeddings.word_embeddings``), tokens are replaced by a
zero word embedding top-first (deletion) or restored top-first (insertion), and the areas are
averaged over sentences (:func:`graphengine.analysis.faithfulness.batch_faithfulness`).

**Agreement** (``--sva A|B|DIR --data TSV``): the sentences of the TSV in batches of equal
length, QoI = good minus bad verb logit at [MASK] (as the ``sva`` experiment); scores at the
word-embedding lookup; a deleted token's word embedding is replaced by the [MASK] token's (the
model's own "no information here" input); the [MASK] token itself is ranked like any other
token (replacing it changes nothing); attention rollout uses the [MASK] row. The methods are :data:`METHODS` plus ``entropy_low``,
the reverse of the entropy ranking. Areas are per sentence over k/T ∈ [0, 1], averaged over
all sentences and over the correct and the wrong ones, with the role of the token each method
ranks first (subject, other noun, other word, [MASK], [CLS]/[SEP]); the plot (``--png``) shows the mean
curves on a common grid of k/T (each sentence's curve interpolated linearly).

    python scripts/faithfulness_curves.py GRAPH.ge [--out results/faithfulness.json] [--ig-steps 16]
    python scripts/faithfulness_curves.py --sva A --data results/sva/model_a/test.tsv --limit 200 \\
        --out results/sva/faithfulness_a.json --png docs/sva_faithfulness_a.png

Writes JSON (``graphengine.io``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from graphengine import io as files
from graphengine.analysis.faithfulness import METHODS, batch_faithfulness
from graphengine.datasets import get_dataset
from graphengine.engine import batch as batch_qoi, difference, forward, weighted
from graphengine.experiments.common import feeds_for, pyplot, save_figure
from graphengine.ir import load

GRID = np.linspace(0.0, 1.0, 21)
LABELS = {"gradient": "|gradient|", "grad_input": "|gradient·input|", "integrated_gradients": "|integrated gradients|",
          "max": "M⁺", "mass": "path mass Z", "entropy": "entropy, high first", "entropy_low": "entropy, low first",
          "attention_rollout": "attention rollout", "random": "random"}


def synthetic(args) -> int:
    g = load(args.graph)
    n_batch = g.inputs()[0].shape[0]
    data = get_dataset("first_token_repeated_once", seed=0, sizes=(7000, 1000, 2000), length=10, vocab_size=20)
    x, y = np.asarray(data.val.x)[:n_batch], np.asarray(data.val.y)[:n_batch]
    feeds = feeds_for(g, x)
    out_node = g.nodes[g.outputs[0]]
    logits = np.asarray(forward(g, feeds)[out_node.id], np.float64)
    coef = np.zeros(logits.shape)
    coef[np.arange(len(y)), y] = 1.0
    node = next(n for n in g.nodes if n.op == "embedding" and n.scope.endswith("embeddings.word_embeddings"))
    t0 = time.perf_counter()
    table = batch_faithfulness(g, feeds, weighted(out_node.name, coef), node.name, METHODS, ig_steps=args.ig_steps)
    seconds = time.perf_counter() - t0
    doc = {"graph": args.graph, "sentences": int(len(y)), "node": node.name, "ig_steps": args.ig_steps,
           "seconds": seconds, **table.to_dict()}
    for label in (0, 1):
        sel = y == label
        doc[f"label{label}"] = {"deletion": dict(zip(table.methods, table.deletion_area[sel].mean(0).tolist())),
                                "insertion": dict(zip(table.methods, table.insertion_area[sel].mean(0).tolist()))}
    files.write_json(args.out, doc)
    print(f"{len(y)} sentences, {seconds:.0f} s\n")
    print(table.to_markdown())
    print(f"\nwrote {args.out}")
    return 0


def _on_grid(curve: np.ndarray) -> np.ndarray:
    return np.interp(GRID, np.linspace(0.0, 1.0, len(curve)), curve)


def agreement(args) -> int:
    from graphengine.experiments.sva.data import read_tsv
    from graphengine.experiments.sva.run import resolve_model, sentence_batches
    from graphengine.models.bert import word_embedding_lookup

    model, path = resolve_model(args.sva)
    data = read_tsv(args.data, limit=args.limit)
    methods = list(METHODS) + ["entropy_low"]
    from graphengine.datasets.sva_grammar import noun_number

    def role(it, e, t):
        w = e.word_of[t]
        if t == e.mask_pos:
            return "[MASK]"
        if w < 0:
            return "[CLS]/[SEP]"
        if it.subject is not None and w == it.subject:
            return "subject"
        return "other noun" if noun_number(it.words[w]) is not None else "other word"

    first_role = {m: {} for m in methods}
    dele, ins, correct, qoi = [], [], [], []
    dcurves = {m: [] for m in methods}
    icurves = {m: [] for m in methods}
    t0 = time.perf_counter()
    for part in sentence_batches(model, data.items, args.batch_size):
        if part[0] == "skipped":
            continue
        its, encs = part
        g, feeds = model.batch_inputs(encs)
        acts = forward(g, feeds)
        lg = g.node("logits")
        emb = word_embedding_lookup(g)
        q = batch_qoi([difference(lg.id, (b, e.mask_pos, e.good), (b, e.mask_pos, e.bad)) for b, e in enumerate(encs)])
        mask_vec = np.asarray(acts[emb.id], np.float64)[0, encs[0].mask_pos]
        t = batch_faithfulness(g, feeds, q, emb.name, methods, ig_steps=args.ig_steps, replacement=mask_vec,
                               position=[e.mask_pos for e in encs])
        dele.append(t.deletion_area)
        ins.append(t.insertion_area)
        for b, (it, e) in enumerate(zip(its, encs)):
            for m in methods:
                r = role(it, e, int(t.orders[m][b, 0]))
                first_role[m][r] = first_role[m].get(r, 0) + 1
            v = float(acts[lg.id][b, e.mask_pos, e.good] - acts[lg.id][b, e.mask_pos, e.bad])
            qoi.append(v)
            correct.append(v > 0)
            for m in methods:
                dcurves[m].append(_on_grid(t.deletion_curves[b][m]))
                icurves[m].append(_on_grid(t.insertion_curves[b][m]))
    seconds = time.perf_counter() - t0
    dele, ins, correct = np.concatenate(dele), np.concatenate(ins), np.array(correct)
    doc = {"model": path, "data": args.data, "sentences": int(len(correct)), "ig_steps": args.ig_steps,
           "replacement": "the [MASK] token's word embedding", "seconds": seconds, "methods": methods,
           "accuracy": float(correct.mean()), "mean_qoi": float(np.mean(qoi)),
           "deletion_area": dele.tolist(), "insertion_area": ins.tolist(), "correct": correct.tolist(),
           "grid": GRID.tolist(), "first_ranked_token": first_role,
           "mean_deletion_curve": {m: np.mean(dcurves[m], axis=0).tolist() for m in methods},
           "mean_insertion_curve": {m: np.mean(icurves[m], axis=0).tolist() for m in methods}}
    for name, sel in (("all", np.ones_like(correct)), ("correct", correct), ("wrong", ~correct)):
        if sel.any():
            doc[name] = {"n": int(sel.sum()), "deletion": dict(zip(methods, dele[sel].mean(0).tolist())),
                         "insertion": dict(zip(methods, ins[sel].mean(0).tolist()))}
    files.write_json(args.out, doc)
    print(f"{len(correct)} sentences ({int(correct.sum())} correct), {seconds:.0f} s; mean QoI {doc['mean_qoi']:.3f}\n")
    heads = ["method", "deletion (all)", "insertion (all)"]
    for name in ("correct", "wrong"):
        if name in doc:
            heads += [f"deletion, {name} ({doc[name]['n']})", f"insertion, {name}"]
    print("| " + " | ".join(heads) + " |\n" + "|---" * len(heads) + "|")
    for m in methods:
        cells = [LABELS[m], f"{doc['all']['deletion'][m]:.3f}", f"{doc['all']['insertion'][m]:.3f}"]
        for name in ("correct", "wrong"):
            if name in doc:
                cells += [f"{doc[name]['deletion'][m]:.3f}", f"{doc[name]['insertion'][m]:.3f}"]
        print("| " + " | ".join(cells) + " |")
    roles = sorted({r for v in first_role.values() for r in v})
    print("\nThe token each method ranks first (sentences):\n")
    print("| method | " + " | ".join(roles) + " |\n" + "|---" * (len(roles) + 1) + "|")
    for m in methods:
        print(f"| {LABELS[m]} | " + " | ".join(str(first_role[m].get(r, 0)) for r in roles) + " |")
    if args.png:
        plt = pyplot()
        if plt is not None:
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
            for ax, kind in zip(axes, ("deletion", "insertion")):
                for m in methods:
                    ax.plot(GRID, doc[f"mean_{kind}_curve"][m], label=LABELS[m],
                            ls="--" if m in ("random", "entropy_low") else "-")
                ax.set_xlabel(f"fraction of tokens {'replaced' if kind == 'deletion' else 'restored'} (top first)")
                ax.set_title(f"{kind} (n = {len(correct)})", fontsize=10)
                ax.axhline(0.0, color="#999999", lw=0.5)
            axes[0].set_ylabel("QoI: logit(good) − logit(bad)")
            axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            fig.suptitle(f"faithfulness on agreement: {model.name}", fontsize=10)
            save_figure(fig, args.png)
            print(f"\nplot: {args.png}")
    print(f"\nwrote {args.out}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("graph", nargs="?", help="a §5.1 graph file (without --sva)")
    ap.add_argument("--sva", metavar="A|B|DIR", help="an agreement model instead of a §5.1 graph")
    ap.add_argument("--data", help="agreement TSV (with --sva)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N sentences (with --sva)")
    ap.add_argument("--batch-size", type=int, default=8, help="sentences of one length per batch (with --sva)")
    ap.add_argument("--png", default=None, help="plot of the mean curves (with --sva)")
    ap.add_argument("--out", default="results/faithfulness.json")
    ap.add_argument("--ig-steps", type=int, default=16)
    args = ap.parse_args(argv)
    if args.sva:
        if not args.data:
            ap.error("--sva needs --data")
        return agreement(args)
    if not args.graph:
        ap.error("give a §5.1 graph file or --sva MODEL --data TSV")
    return synthetic(args)


if __name__ == "__main__":
    raise SystemExit(main())
