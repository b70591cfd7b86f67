"""Deletion/insertion areas of token rankings on the §5.1 model (FirstTokenRepeatedOnce).

For a trained §5.1 graph (``graphengine experiment synthetic-paths`` saves it as
``results/synthetic-paths/models/first_token_repeated_once_seed<S>.ge``), over its validation
batch with QoI = the gold label's logit of each sentence: every method of
:data:`graphengine.analysis.faithfulness.METHODS` ranks the tokens (scores at the word-embedding
lookup, the node whose scope ends in ``embeddings.word_embeddings``), tokens are replaced by a
zero word embedding top-first (deletion) or restored top-first (insertion), and the areas are
averaged over sentences (:func:`graphengine.analysis.faithfulness.batch_faithfulness`).

    python scripts/faithfulness_curves.py GRAPH.ge [--out results/faithfulness.json] [--ig-steps 16]

Writes JSON (``graphengine.io``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from graphengine import io as files
from graphengine.analysis.faithfulness import METHODS, batch_faithfulness
from graphengine.datasets import get_dataset
from graphengine.engine import forward, weighted
from graphengine.experiments.common import feeds_for
from graphengine.ir import load


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("graph")
    ap.add_argument("--out", default="results/faithfulness.json")
    ap.add_argument("--ig-steps", type=int, default=16)
    args = ap.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
