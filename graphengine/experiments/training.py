"""Training the paper's models in torch and exporting them to the IR (optional extra).

Models:

- :func:`bert_classifier`: Hugging Face ``transformers.BertForSequenceClassification`` (the
  class the authors trained), eager attention, every dropout 0, BERT's learned absolute
  position embeddings, token type 0, no attention mask (no padding in these tasks). The pooler
  reads position 0, which in these tasks is the first token itself (there is no [CLS]).
  Hugging Face's initialisation (normal, std 0.02), ``max_position_embeddings=128`` as in the
  authors' ``config-toy.json``.
- :class:`FFOOMNet`: ``fc1`` Linear(4→h) → ``act`` LeakyReLU(0.01) → ``fc2`` Linear(h→2), torch's
  default initialisation (the authors' MLP was a brunoflow one; its initialisation differs).

Torch runs single-threaded (``torch.set_num_threads(1)``, set when this module is imported):
these models are tiny, and two OpenMP threads on a busy 2-core machine were 60× slower than one.

Training (:func:`train`) uses its own batching over a numpy permutation (no DataLoader), so a
run is reproducible from ``seed`` alone: ``torch.manual_seed(seed)`` before the model is built,
``numpy.random.default_rng(seed)`` for the order. Models train in float32 and are exported in
float64 (a ``double()`` copy) with :func:`export` — the torch frontend
(:func:`graphengine.frontends.torch.from_torch`) — plus a ``log_probs = log_softmax(logits)`` node
when the analysis needs the cross-entropy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..ir import Graph
from .common import ExperimentError, add_log_probs, progress

torch.set_num_threads(1)

__all__ = ["bert_classifier", "FFOOMNet", "train", "TrainLog", "predict_logits", "evaluate", "export"]


def bert_classifier(vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                    num_labels: int, seed: int, max_position: int = 128):
    """A freshly initialised BERT sequence classifier (float32), deterministic in ``seed``."""
    try:
        from transformers import BertConfig, BertForSequenceClassification
    except ImportError:
        raise ExperimentError("BERT training needs transformers (pip install -e '.[experiments]')") from None
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                     num_attention_heads=num_heads, intermediate_size=intermediate_size, hidden_act="gelu",
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0,
                     max_position_embeddings=max_position, type_vocab_size=2, num_labels=num_labels,
                     pad_token_id=0, layer_norm_eps=1e-12)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    return BertForSequenceClassification(cfg)


class FFOOMNet(torch.nn.Module):
    """Linear(in→h) → LeakyReLU(slope) → Linear(h→out) with module names fc1 / act / fc2."""

    def __init__(self, hidden: int, in_features: int = 4, out_features: int = 2, negative_slope: float = 0.01):
        super().__init__()
        self.fc1 = torch.nn.Linear(in_features, hidden)
        self.act = torch.nn.LeakyReLU(negative_slope)
        self.fc2 = torch.nn.Linear(hidden, out_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _forward(model, xb):
    out = model(xb)
    return out.logits if hasattr(out, "logits") else out


@dataclass
class TrainLog:
    epoch_loss: List[float] = field(default_factory=list)
    last_batch: Optional[np.ndarray] = None  # indices (into the training arrays) of the last batch
    steps: int = 0


def _to_tensor(x: np.ndarray):
    x = np.asarray(x)
    return torch.from_numpy(x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x.astype(np.int64))


def train(model, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int = 32, lr: float = 1e-3,
          optimizer: str = "adam", seed: int = 0, shuffle: bool = True, show: bool = False,
          desc: str = "train") -> TrainLog:
    """Minimise the mean cross-entropy with Adam or AdamW (``weight_decay=0, eps=1e-6`` for
    AdamW: the defaults of the ``transformers.AdamW`` the authors used; Adam: torch's defaults).
    ``shuffle``: a new permutation every epoch (else the stored order, as the authors' §3/B.1
    notebooks did). The last batch may be smaller than ``batch_size``."""
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, eps=1e-6)
    else:
        raise ExperimentError(f"unknown optimizer {optimizer!r} (adam, adamw)")
    xt, yt = _to_tensor(x), torch.from_numpy(np.asarray(y, np.int64))
    n = len(yt)
    rng = np.random.default_rng(seed)
    log = TrainLog()
    model.train()
    for _ in progress(range(epochs), desc=desc, enabled=show):
        order = rng.permutation(n) if shuffle else np.arange(n)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = torch.nn.functional.cross_entropy(_forward(model, xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            log.steps += 1
            log.last_batch = idx
        log.epoch_loss.append(total / n)
    model.eval()
    return log


@torch.no_grad()
def predict_logits(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    model.eval()
    xt = _to_tensor(x)
    return np.concatenate([_forward(model, xt[i:i + batch_size]).double().numpy()
                           for i in range(0, len(xt), batch_size)])


def evaluate(model, x: np.ndarray, y: np.ndarray) -> Dict[str, float]:
    """``accuracy`` and ``mean_ce`` (nats) of ``model`` on ``(x, y)``."""
    logits = predict_logits(model, x)
    y = np.asarray(y)
    m = logits.max(-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    return {"accuracy": float((logits.argmax(-1) == y).mean()), "mean_ce": float(-logp[np.arange(len(y)), y].mean())}


def export(model, example_x: np.ndarray, log_probs: bool = False, meta: Optional[Dict[str, Any]] = None) -> Graph:
    """A float64 IR graph of ``model`` for inputs shaped like ``example_x``, exported with the
    torch frontend (``decompose="fused"``; the paper's decomposition is an IR pass applied at
    analysis time). ``meta`` goes to ``graph.meta["experiment"]``.

    If the frontend fails on a BERT classifier, the graph is built from its state dict with
    :func:`graphengine.models.bert.build_bert_from_hf` (same Hugging Face names and scopes) and
    ``meta["experiment"]["exporter"]`` says so.
    """
    m64 = copy.deepcopy(model).double().eval()
    xt = torch.from_numpy(np.asarray(example_x, np.float64) if np.issubdtype(np.asarray(example_x).dtype, np.floating)
                          else np.asarray(example_x, np.int64))
    exporter = "graphengine.frontends.torch.from_torch"
    try:
        from ..frontends.torch import from_torch

        g = from_torch(m64, (xt,))
    except Exception as e:  # noqa: BLE001 - the stopgap below covers a frontend still in progress
        if not hasattr(m64, "bert"):
            raise
        from ..models.bert import build_bert_from_hf

        g = build_bert_from_hf(m64, batch=int(xt.shape[0]), seq_len=int(xt.shape[1]), head="classification")
        exporter = f"graphengine.models.bert.build_bert_from_hf (torch frontend failed: {type(e).__name__}: {e})"
    if log_probs:
        add_log_probs(g)
    g.meta["experiment"] = dict(meta or {}, exporter=exporter)
    g.validate()
    return g

