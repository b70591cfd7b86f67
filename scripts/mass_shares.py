"""Mass shares beside the top-path table on the §5.1 model (FirstTokenRepeatedOnce).

For a trained §5.1 graph (``graphengine experiment synthetic-paths`` saves it as
``results/synthetic-paths/models/first_token_repeated_once_seed<S>.ge``): over the validation
sentences, QoI = the gold label's logit of each sentence (one batched pass; no path joins two
sentences, so per-sentence values are exact), per token role (FirstToken, RepeatToken,
OtherToken) and label:

- the *mass shares*: the exact probability that a path from the token (its hidden units pooled at
  the layer input) goes through the query, key, value or skip branch, and through the MLP or its
  residual (:func:`graphengine.analysis.shares.branch_shares`), and the expected path length;
- the *top-path shares*: the fraction of tokens whose best M⁺ path leaves through each branch
  (:func:`graphengine.analysis.kqv.kqv_summary`'s ``top_share``), at scalar granularity.

    python scripts/mass_shares.py GRAPH.ge [--out results/mass_shares.json]

Writes JSON (``graphengine.io``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from graphengine import io as files
from graphengine.analysis.kqv import BRANCHES, kqv_credits, kqv_retain, kqv_summary
from graphengine.analysis.shares import branch_shares
from graphengine.datasets import first_token_roles, get_dataset
from graphengine.engine import backward, forward, weighted
from graphengine.experiments.common import feeds_for
from graphengine.ir import load


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("graph")
    ap.add_argument("--out", default="results/mass_shares.json")
    args = ap.parse_args(argv)
    g = load(args.graph)
    n_batch = g.inputs()[0].shape[0]
    data = get_dataset("first_token_repeated_once", seed=0, sizes=(7000, 1000, 2000), length=10, vocab_size=20)
    split = data.val
    x, y = np.asarray(split.x)[:n_batch], np.asarray(split.y)[:n_batch]
    feeds = feeds_for(g, x)
    t0 = time.perf_counter()
    acts = forward(g, feeds)
    out_node = g.nodes[g.outputs[0]]
    logits = np.asarray(acts[out_node.id], np.float64)
    coef = np.zeros(logits.shape)
    coef[np.arange(len(y)), y] = 1.0
    qoi = weighted(out_node.name, coef)
    shares = branch_shares(g, acts, qoi)
    t_shares = time.perf_counter() - t0
    res = backward(g, acts, qoi, semirings=["max"], retain=kqv_retain(g))
    roles = {"all": np.ones(x.shape, bool), **first_token_roles(split)}
    top = kqv_summary(kqv_credits(res), subsets=roles)
    doc = {"graph": args.graph, "sentences": int(len(y)), "accuracy": float((logits.argmax(-1) == y).mean()),
           "columns": shares.columns, "seconds_shares": t_shares, "mass_share": {}, "top_share": {},
           "length_mean": {}}
    for role, mask in roles.items():
        for label in (None, 0, 1):
            sel = mask & (np.ones_like(mask) if label is None else (y == label)[:, None])
            key = role if label is None else f"{role}, label {label}"
            if not sel.any():
                continue
            doc["mass_share"][key] = dict(zip(shares.columns, np.nanmean(shares.share[sel], axis=0).tolist()))
            doc["length_mean"][key] = float(np.nanmean(shares.length_mean[sel]))
    for role in roles:
        doc["top_share"][role] = dict(zip(BRANCHES, np.asarray(top.top_share[role][0][:4]).tolist()))
    files.write_json(args.out, doc)
    print(f"{len(y)} sentences, accuracy {doc['accuracy']:.3f}; shares in {t_shares:.1f} s\n")
    print("| tokens | " + " | ".join(f"mass {c}" for c in shares.columns) + " | E[length] |")
    print("|---" * (len(shares.columns) + 2) + "|")
    for key, v in doc["mass_share"].items():
        print(f"| {key} | " + " | ".join(f"{v[c]:.3f}" for c in shares.columns) + f" | {doc['length_mean'][key]:.1f} |")
    print("\n| tokens | " + " | ".join(f"top path {b}" for b in BRANCHES) + " |")
    print("|---" * (len(BRANCHES) + 1) + "|")
    for role, v in doc["top_share"].items():
        print(f"| {role} | " + " | ".join(f"{v[b]:.3f}" for b in BRANCHES) + " |")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
