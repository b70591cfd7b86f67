"""Subject–verb agreement on real models: the paper's §5.2 and App. B.2 (docs/method.md).

- :mod:`graphengine.experiments.sva.data`: the agreement TSV reader (5 columns, or 8 with role positions).
- :mod:`graphengine.experiments.sva.models`: models as numpy weights + tokenizer, IR graphs per shape.
- :mod:`graphengine.experiments.sva.model_a`: model A, a word-level BERT masked LM trained on the grammar
  (:mod:`graphengine.datasets.sva_grammar`); the ``sva-train-a`` experiment.
- :mod:`graphengine.experiments.sva.model_b`: model B, all-MiniLM-L6-v2 fine-tuned with a verb-number head;
  the ``sva-train-b`` experiment.
- :mod:`graphengine.experiments.sva.analysis`: per-sentence K/Q/V/skip credits, [MASK] top path, entropy.
- :mod:`graphengine.experiments.sva.accuracy`: the agreement accuracy table (overall, by attractors, by construction).
- :mod:`graphengine.experiments.sva.run`: dataset-scale streaming runs, aggregation, tables and figure.
- :mod:`graphengine.experiments.sva.study`: the ``sva`` experiment (``graphengine experiment sva``).

The paper's own model (a pretrained 6-layer BERT masked LM) could not be had offline; models A
and B stand in for it.
"""
