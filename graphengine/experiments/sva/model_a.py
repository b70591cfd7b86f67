"""Model A: a BERT masked LM trained from scratch on the agreement grammar (torch, optional).

The paper's model (a pretrained 6-layer BERT masked LM, hidden 512, 8 heads) cannot be had
offline; model A keeps its depth and objective at a size that trains on two CPU cores:
6 layers, hidden 128, 4 heads, FFN 256, GELU, a word-level vocabulary (the grammar's 93
words including ``[PAD] [UNK] [CLS] [SEP] [MASK]``), learned absolute positions (64), the MLM
decoder tied to the word embeddings.

Objective, per training sentence and epoch: BERT's 15% MLM over the words (of those, 80%
become ``[MASK]``, 10% a random word, 10% stay) **plus verb masking**: with probability
``verb_mask_prob`` (1.0) every verb of the sentence — the target verb and any other finite verb
(a relative clause's, a first conjunct's) — is replaced by ``[MASK]`` and predicted, so the
target's number cannot be copied from another verb and must come from the subject. Loss:
cross-entropy over the vocabulary at the masked positions. AdamW (lr 1e-3, no weight decay),
linear warm-up over the first 5% of steps then constant, batch 64, gradient clipping at 1,
dropout 0, sentences padded per batch with an attention mask. Training sentences have few
attractors (``train_attractor_decay`` 0.5 of the grammar); validation and test have 0–4 uniformly.

Why these settings: with dropout 0.1, weight decay and only the target verb masked, small
models copied the number from the other verb of subject relatives and coordinations and never
learned the subject–verb link (agreement accuracy stuck at 50% on simple and PP sentences);
with the settings above, agreement is learned abruptly after a plateau of a few thousand steps.

Evaluation: the verb is replaced by ``[MASK]``, QoI = logit(good) − logit(bad) at ``[MASK]``,
correct when > 0; accuracy by number of attractors and by construction, the held-out
constructions reported separately.

:func:`tiny_model` gives a random small model A (no torch) for tests.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from ...datasets.base import Split
from ...datasets.sva_grammar import CONSTRUCTIONS, VOCAB, sva_grammar, verb_number, write_tsv
from ...models import BertConfig, random_bert_weights
from .accuracy import accuracy_table
from .models import SVAModel, ir_parity, save_model

__all__ = ["ModelAConfig", "tiny_model", "train_model_a", "hf_config"]


@dataclass(frozen=True)
class ModelAConfig:
    hidden_size: int = 128
    num_layers: int = 6
    num_heads: int = 4
    intermediate_size: int = 256
    max_position: int = 64
    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: float = 0.05
    mlm_prob: float = 0.15
    verb_mask_prob: float = 1.0
    dropout: float = 0.0
    seed: int = 0
    data_seed: int = 0
    sizes: tuple = (20000, 2000, 4000)
    threads: int = 1


def hf_config(cfg: ModelAConfig, vocab_size: int = len(VOCAB), dropout: Optional[float] = None) -> Dict[str, Any]:
    """The Hugging Face ``BertConfig`` dict of model A."""
    d = cfg.dropout if dropout is None else dropout
    return {"model_type": "bert", "vocab_size": vocab_size, "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
            "intermediate_size": cfg.intermediate_size, "hidden_act": "gelu", "hidden_dropout_prob": d,
            "attention_probs_dropout_prob": d, "max_position_embeddings": cfg.max_position, "type_vocab_size": 2,
            "layer_norm_eps": 1e-12, "pad_token_id": 0, "initializer_range": 0.02}


def tiny_model(seed: int = 0, hidden_size: int = 16, num_layers: int = 2, num_heads: int = 2) -> SVAModel:
    """A randomly initialised word-level model A (for tests; no torch needed)."""
    cfg = ModelAConfig(hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
                       intermediate_size=2 * hidden_size, max_position=32)
    config = hf_config(cfg)
    w = random_bert_weights(BertConfig.from_hf(config), seed, head="mlm", std=0.3)
    return SVAModel("mlm", f"tiny-A-{seed}", config, w, vocab=list(VOCAB), info={"held_out": []})


# ------------------------------------------------------------------ torch side
def _with_specials(split: Split):
    """[CLS] words [SEP] as id rows (padded 0), lengths, verb token positions."""
    cls, sep = VOCAB.index("[CLS]"), VOCAB.index("[SEP]")
    n, w = split.x.shape
    ids = np.zeros((n, w + 2), np.int64)
    L = split.meta["length"]
    for i in range(n):
        ids[i, 0] = cls
        ids[i, 1:L[i] + 1] = split.x[i, :L[i]]
        ids[i, L[i] + 1] = sep
    return ids, L + 2, split.meta["verb"] + 1


_IS_VERB = np.array([verb_number(w) is not None for w in VOCAB])


def _mlm_batch(rng, ids, lengths, verbs, cfg: ModelAConfig):
    """Inputs and labels (−100 = no loss) for one batch: 15% MLM + verb masking."""
    n_special = 5
    x = ids.copy()
    labels = np.full_like(ids, -100)
    T = ids.shape[1]
    pos = np.arange(T)[None, :]
    words = (pos >= 1) & (pos < (lengths[:, None] - 1))
    chosen = words & (rng.random(ids.shape) < cfg.mlm_prob)
    verb_hit = rng.random(len(ids)) < cfg.verb_mask_prob
    all_verbs = verb_hit[:, None] & _IS_VERB[ids]  # every verb of the sentence, not only the target
    chosen |= all_verbs
    labels[chosen] = ids[chosen]
    r = rng.random(ids.shape)
    to_mask = chosen & (r < 0.8)
    to_rand = chosen & (r >= 0.8) & (r < 0.9)
    x[to_mask] = VOCAB.index("[MASK]")
    x[to_rand] = rng.integers(n_special, len(VOCAB), size=int(to_rand.sum()))
    x[all_verbs] = VOCAB.index("[MASK]")  # verb masking: always [MASK]
    return x, labels


def _qoi_torch(model, ids, lengths, verbs, good, bad, batch: int = 512) -> np.ndarray:
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for s in range(0, len(ids), batch):
            sl = slice(s, s + batch)
            T = int(lengths[sl].max())
            x = ids[sl, :T].copy()
            x[np.arange(len(x)), verbs[sl]] = VOCAB.index("[MASK]")
            mask = (np.arange(T)[None, :] < lengths[sl, None])
            logits = model(input_ids=torch.from_numpy(x), attention_mask=torch.from_numpy(mask.astype(np.int64))).logits
            lg = logits[torch.arange(len(x)), torch.from_numpy(verbs[sl])].double().numpy()
            r = np.arange(len(x))
            out.append(lg[r, good[sl]] - lg[r, bad[sl]])
    return np.concatenate(out)


def _split_accuracy(split: Split, qoi: np.ndarray) -> Dict[str, Any]:
    """The accuracy table of a grammar split from the QoI (correct when > 0)."""
    m = split.meta
    names = [CONSTRUCTIONS[int(c)] for c in m["construction"]]
    held = sorted({n for n, h in zip(names, m["held_out"]) if h})
    return accuracy_table(np.asarray(qoi) > 0, split.y.tolist(), m["n_attractors"], names, held)


def train_model_a(out_dir: str, cfg: ModelAConfig = ModelAConfig(), show: bool = True, log=print) -> Dict[str, Any]:
    """Generate the grammar, train model A, evaluate it, save it (``out_dir``: ``model.json``,
    ``weights.npz``, ``test.tsv`` (in-distribution + held-out), ``test_in.tsv``,
    ``test_held_out.tsv``, ``val.tsv``). Returns the training report (also in ``info``)."""
    import torch
    from transformers import BertConfig as HFBertConfig, BertForMaskedLM

    torch.set_num_threads(cfg.threads)
    data = sva_grammar(seed=cfg.data_seed, sizes=tuple(cfg.sizes))
    tr_ids, tr_len, tr_verb = _with_specials(data.train)
    config = hf_config(cfg)
    hf = HFBertConfig(**{k: v for k, v in config.items() if k != "model_type"})
    hf._attn_implementation = "eager"
    torch.manual_seed(cfg.seed)
    model = BertForMaskedLM(hf)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    n = len(tr_ids)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(cfg.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    rng = np.random.default_rng(cfg.seed)
    v_ids, v_len, v_verb = _with_specials(data.val)
    history = []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(n)
        tot, cnt = 0.0, 0
        for s in range(0, n, cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            T = int(tr_len[idx].max())
            x, labels = _mlm_batch(rng, tr_ids[idx, :T], tr_len[idx], tr_verb[idx], cfg)
            mask = (np.arange(T)[None, :] < tr_len[idx, None]).astype(np.int64)
            out = model(input_ids=torch.from_numpy(x), attention_mask=torch.from_numpy(mask),
                        labels=torch.from_numpy(labels))
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += out.loss.item() * len(idx)
            cnt += len(idx)
        q = _qoi_torch(model, v_ids, v_len, v_verb, data.val.meta["good"], data.val.meta["bad"])
        history.append({"epoch": epoch + 1, "loss": tot / cnt, "val_accuracy": float((q > 0).mean()),
                        "seconds": time.perf_counter() - t0})
        if show:
            log(f"model A epoch {epoch + 1}/{cfg.epochs}: loss {tot / cnt:.4f}, val agreement accuracy "
                f"{(q > 0).mean():.4f} ({time.perf_counter() - t0:.0f} s)")
    train_seconds = time.perf_counter() - t0
    te_ids, te_len, te_verb = _with_specials(data.test)
    q_test = _qoi_torch(model, te_ids, te_len, te_verb, data.test.meta["good"], data.test.meta["bad"])
    held = data.test.meta["held_out"]
    report = {"train_seconds": train_seconds, "threads": cfg.threads, "config": asdict(cfg), "history": history,
              "val": _split_accuracy(data.val, _qoi_torch(model, v_ids, v_len, v_verb, data.val.meta["good"],
                                                         data.val.meta["bad"])),
              "test_in_distribution": _split_accuracy(data.test.subset(~held), q_test[~held]),
              "test_held_out": _split_accuracy(data.test.subset(held), q_test[held]) if held.any() else None,
              "held_out": data.info["held_out"], "data": {k: v for k, v in data.info.items() if k != "vocab"}}
    state = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    weights = {(k[5:] if k.startswith("bert.") else k): v for k, v in state.items()
               if not k.startswith("cls.predictions.decoder") and not k.endswith("position_ids")}
    config_eval = hf_config(cfg, dropout=0.0)
    sva = SVAModel("mlm", "model-A", config_eval, weights, vocab=list(VOCAB), info=report)
    report["ir_parity_max_abs_diff"] = _ir_parity(sva, model, te_ids[:8], te_len[:8])
    save_model(sva, out_dir)
    write_tsv(data.test, os.path.join(out_dir, "test.tsv"))
    write_tsv(data.test.subset(~held), os.path.join(out_dir, "test_in.tsv"))
    if held.any():
        write_tsv(data.test.subset(held), os.path.join(out_dir, "test_held_out.tsv"))
    write_tsv(data.val, os.path.join(out_dir, "val.tsv"))
    return report


def _ir_parity(sva: SVAModel, model, ids, lengths) -> float:
    """Max |IR logits − torch logits| over a few test sentences (each at its own length)."""
    import torch

    m64 = model.double().eval()
    try:
        with torch.no_grad():
            return ir_parity(sva, ids, lengths, lambda x: m64(input_ids=torch.from_numpy(x)).logits.numpy())
    finally:
        model.float()


# ------------------------------------------------------------------ ``graphengine experiment sva-train-a``
NAME = "sva-train-a"
DESCRIPTION = "train model A for the sva experiment: a 6-layer word-level BERT MLM on the agreement grammar (torch)"
QUICK_HELP = "1 epoch on 2,000 sentences (a smoke test)"
OUT_HELP = "model directory (default results/sva/model_a, where 'experiment sva --model A' looks)"
DEFAULT_OUT = os.path.join("results", "sva", "model_a")
QUICK_SIZES = (2000, 200, 400)


def add_arguments(parser) -> None:
    """The options of ``graphengine experiment sva-train-a`` beyond the common ones."""
    d = ModelAConfig
    parser.add_argument("--epochs", type=int, default=d.epochs, metavar="N", help=f"training epochs (default {d.epochs})")
    parser.add_argument("--hidden", type=int, default=d.hidden_size, metavar="H", help=f"hidden size (default {d.hidden_size})")
    parser.add_argument("--heads", type=int, default=d.num_heads, metavar="N", help=f"attention heads (default {d.num_heads})")
    parser.add_argument("--intermediate", type=int, default=d.intermediate_size, metavar="N",
                        help=f"feed-forward size (default {d.intermediate_size})")
    parser.add_argument("--layers", type=int, default=d.num_layers, metavar="N", help=f"encoder layers (default {d.num_layers})")
    parser.add_argument("--threads", type=int, default=d.threads, metavar="N", help=f"torch threads (default {d.threads})")


def run(out: Optional[str] = None, quick: bool = False, seed: int = 0, progress: bool = True,
        epochs: int = ModelAConfig.epochs, hidden: int = ModelAConfig.hidden_size, heads: int = ModelAConfig.num_heads,
        intermediate: int = ModelAConfig.intermediate_size, layers: int = ModelAConfig.num_layers,
        threads: int = ModelAConfig.threads) -> Dict[str, Any]:
    """Train model A into ``out`` (the model files, the grammar's TSVs, ``train_report.json``);
    returns the training report. ``quick``: 1 epoch on 2,000 sentences."""
    from ..common import require_transformers, results_dir, write_json

    require_transformers(NAME)
    out = results_dir(out or DEFAULT_OUT, NAME)
    cfg = ModelAConfig(hidden_size=hidden, num_heads=heads, intermediate_size=intermediate, num_layers=layers,
                       epochs=1 if quick else epochs, threads=threads, seed=seed,
                       sizes=QUICK_SIZES if quick else ModelAConfig.sizes)
    report = train_model_a(out, cfg, show=progress, log=lambda line: print(line, file=sys.stderr, flush=True))
    report["files"] = {"report": "train_report.json", "model": "model.json", "weights": "weights.npz",
                       "test": "test.tsv"}
    write_json(os.path.join(out, "train_report.json"), report)
    report["out"] = out
    return report


def summary(report: Dict[str, Any]) -> List[str]:
    """The lines ``graphengine experiment sva-train-a`` prints."""
    ti, th = report["test_in_distribution"], report["test_held_out"]
    held = "" if th is None else (f", {100 * th['accuracy']:.1f}% held-out constructions "
                                  f"({', '.join(report['held_out'])})")
    return [f"trained in {report['train_seconds']:.0f} s; test accuracy {100 * ti['accuracy']:.1f}% in distribution"
            f"{held}; IR parity {report['ir_parity_max_abs_diff']:.2e}"]
