#!/usr/bin/env python
"""Train model A: a 6-layer word-level BERT masked LM on the agreement grammar (issue 7).

The paper's own model (a pretrained 6-layer BERT masked LM) could not be had offline; model A
is trained here from scratch on :mod:`graphengine.datasets.sva_grammar` (20,000 training
sentences; ``obj_rel`` and ``sent_comp`` held out), with 15% MLM plus verb masking. See
:mod:`graphengine.experiments.sva.model_a` for every setting.

    python scripts/sva_train_model_a.py [--out results/sva/model_a] [--epochs 12] [--hidden 128]
                                        [--threads 2] [--seed 0] [--quick]

Writes the model (``model.json``, ``weights.npz``), the grammar's test/val TSVs (8 columns, with
role positions) and ``train_report.json`` (training time, accuracy by attractors and by
construction, held-out constructions separately) into ``--out``. Then:

    graphengine experiment sva --model A --data results/sva/model_a/test.tsv
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from graphengine.experiments.sva.model_a import ModelAConfig, train_model_a


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--out", default=os.path.join("results", "sva", "model_a"))
    ap.add_argument("--epochs", type=int, default=ModelAConfig.epochs)
    ap.add_argument("--hidden", type=int, default=ModelAConfig.hidden_size)
    ap.add_argument("--heads", type=int, default=ModelAConfig.num_heads)
    ap.add_argument("--intermediate", type=int, default=ModelAConfig.intermediate_size)
    ap.add_argument("--layers", type=int, default=ModelAConfig.num_layers)
    ap.add_argument("--threads", type=int, default=ModelAConfig.threads)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="1 epoch on 2,000 sentences (a smoke test)")
    a = ap.parse_args(argv)
    cfg = ModelAConfig(hidden_size=a.hidden, num_heads=a.heads, intermediate_size=a.intermediate, num_layers=a.layers,
                       epochs=1 if a.quick else a.epochs, threads=a.threads, seed=a.seed,
                       sizes=(2000, 200, 400) if a.quick else ModelAConfig.sizes)
    report = train_model_a(a.out, cfg)
    with open(os.path.join(a.out, "train_report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    ti, th = report["test_in_distribution"], report["test_held_out"]
    print(f"model A: trained in {report['train_seconds']:.0f} s on {cfg.threads} thread(s); test accuracy "
          f"{100 * ti['accuracy']:.1f}% in distribution, {100 * th['accuracy']:.1f}% held-out constructions "
          f"({', '.join(report['held_out'])}); IR parity {report['ir_parity_max_abs_diff']:.2e}; saved to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
