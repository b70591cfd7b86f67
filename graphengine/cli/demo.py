"""``graphengine demo``: the mechanics of a semiring backward pass on a tiny BERT-style MLM.

A 2-layer BERT (hidden 32, 4 heads) is built directly in the IR with a built-in word-level
vocabulary and **random weights** (so the prediction itself means nothing). The quantity of
interest is the logit of the word "are" at the [MASK] position of

    [CLS] the keys to the cabinet [MASK] on the table [SEP]

One real-semiring backward pass retains ``embeddings.output`` and every layer output, and the
demo prints, per input token, the L2 norm of the gradient of the QoI w.r.t. that token's hidden
vector at each layer, plus gradient·input at the embeddings.

>>> import io
>>> out = run_demo(io.StringIO())
>>> out["tokens"][out["mask_position"]], out["target"], out["columns"]
('[MASK]', 'are', ['embeddings', 'layer 0', 'layer 1'])
"""

from __future__ import annotations

import sys
import time
from typing import Any, Dict, List, Optional, TextIO

import numpy as np

from ..engine import backward, forward, select
from ..models import BertConfig, bert_feeds, build_bert, random_bert_weights

VOCAB: List[str] = [
    "[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]",
    "the", "a", "keys", "key", "to", "of", "cabinet", "cabinets", "is", "are", "was", "were",
    "on", "in", "under", "near", "table", "tables", "chair", "book", "books", "dog", "dogs",
    "cat", "cats", "man", "men", "old", "red", "has", "have", "and", "runs", "run", ".",
]
SENTENCE = "[CLS] the keys to the cabinet [MASK] on the table [SEP]"
TARGET = "are"
SEED = 0
WEIGHT_STD = 0.1


def tokenize(text: str) -> List[int]:
    """Whitespace tokenization against :data:`VOCAB` (unknown words map to ``[UNK]``)."""
    index = {w: i for i, w in enumerate(VOCAB)}
    return [index.get(w, index["[UNK]"]) for w in text.split()]


def run_demo(stream: Optional[TextIO] = None) -> Dict[str, Any]:
    """Run the demo, print its table to ``stream`` (default: ``sys.stdout``) and return the
    numbers as a JSON-able dict: ``tokens``, ``mask_position``, ``target``, ``target_id``,
    ``qoi`` (the QoI as text), ``qoi_value``, ``columns``, ``nodes`` (the retained node per
    column), ``grad_norm`` (one row per token, one entry per column), ``grad_x_input`` (per
    token, at ``embeddings.output``), ``seconds``.
    """
    out = sys.stdout if stream is None else stream
    t0 = time.perf_counter()
    ids = tokenize(SENTENCE)
    tokens = [VOCAB[i] for i in ids]
    mask_pos = tokens.index("[MASK]")
    target_id = VOCAB.index(TARGET)

    config = BertConfig.mini(vocab_size=len(VOCAB), max_position=16)
    weights = random_bert_weights(config, seed=SEED, head="mlm", std=WEIGHT_STD)
    graph = build_bert(config, weights, batch=1, seq_len=len(ids), head="mlm")
    acts = forward(graph, bert_feeds(np.array([ids])))

    nodes = ["embeddings.output"] + [f"encoder.layer.{i}.output" for i in range(config.num_layers)]
    columns = ["embeddings"] + [f"layer {i}" for i in range(config.num_layers)]
    qoi = select("logits", (0, mask_pos, target_id))
    result = backward(graph, acts, qoi, semirings=["real"], retain=nodes)

    grads = [result.grad(n)[0] for n in nodes]                       # each [T, hidden]
    norms = np.stack([np.linalg.norm(g, axis=-1) for g in grads], axis=1)  # [T, columns]
    gxi = np.sum(grads[0] * acts[graph["embeddings.output"].id][0], axis=-1)
    qoi_value = float(acts[graph["logits"].id][0, mask_pos, target_id])
    seconds = time.perf_counter() - t0

    qoi_text = f"logits[0,{mask_pos},{target_id}]"
    print("graphengine demo: a tiny BERT-style masked language model built directly in the IR", file=out)
    print(f"  {config.num_layers} layers, hidden {config.hidden_size}, {config.num_heads} heads, "
          f"vocabulary of {len(VOCAB)} words", file=out)
    print(f"  weights are RANDOM (seed {SEED}, N(0, {WEIGHT_STD}^2)): the prediction means nothing; "
          "this shows the mechanics", file=out)
    print(f"  sentence: {SENTENCE}", file=out)
    print(f"  QoI: the logit of '{TARGET}' (id {target_id}) at the [MASK] position {mask_pos} = "
          f"{qoi_text} = {qoi_value:.6g}", file=out)
    print("  one real-semiring backward pass; entries are ||dQoI/dh|| for each token's hidden vector h", file=out)
    print("", file=out)
    width = max(len(t) for t in tokens) + 4
    header = f"{'pos':>3}  {'token':<{width}}" + "".join(f"{c:>12}" for c in columns) + f"{'grad.input':>14}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for t, tok in enumerate(tokens):
        row = f"{t:>3}  {tok:<{width}}" + "".join(f"{v:>12.4e}" for v in norms[t]) + f"{gxi[t]:>14.4e}"
        print(row, file=out)
    print("", file=out)
    print("  grad.input = sum over the hidden dim of gradient x activation at embeddings.output", file=out)
    print(f"  in the last layer only the [MASK] row is nonzero: a token's last-layer output feeds only its "
          f"own logits ({seconds:.2f} s)", file=out)

    return {
        "tokens": tokens,
        "token_ids": ids,
        "mask_position": mask_pos,
        "target": TARGET,
        "target_id": target_id,
        "qoi": qoi_text,
        "qoi_value": qoi_value,
        "columns": columns,
        "nodes": nodes,
        "grad_norm": norms.tolist(),
        "grad_x_input": gxi.tolist(),
        "seed": SEED,
        "weight_std": WEIGHT_STD,
        "seconds": seconds,
    }


if __name__ == "__main__":  # pragma: no cover
    run_demo()
