"""Agreement models as the analysis sees them: weights, a tokenizer, and IR graphs per shape.

Two kinds, both BERT encoders with Hugging Face parameter names (no ``bert.`` prefix):

``mlm`` (model A, :mod:`graphengine.experiments.sva.model_a`)
    a word-level BERT masked LM trained here; graph output ``logits`` [B, T, vocab];
    QoI = ``logits[b, mask, good] − logits[b, mask, bad]`` (the paper's QoI).
``number`` (model B, :mod:`graphengine.experiments.sva.model_b`)
    a BERT encoder (all-MiniLM-L6-v2, WordPiece) with a two-way verb-number head
    ``classifier`` (Linear hidden→2: 0 singular, 1 plural) applied at every position; graph output
    ``logits`` [B, T, 2]; QoI = ``logits[b, mask, good number] − logits[b, mask, bad number]``.

Inputs are ``[CLS] words-before [MASK] words-after [SEP]``.

On disk a model is a directory: ``model.json`` (``format``, ``kind``, ``name``, the Hugging
Face-style ``config``, ``vocab`` for word-level models, ``info``), ``weights.npz`` (float32
arrays keyed by parameter name, read with ``allow_pickle=False``) and, for WordPiece models,
``tokenizer.json`` (read with the ``tokenizers`` package). Nothing is unpickled.

A model can also be exported to one graph file (:func:`export_ge`) of fixed length ``T`` with
an ``attention_mask`` input; :func:`load_model` reads it back (``graph.meta["sva"]`` carries
the kind and the tokenizer) and pads shorter sentences, skipping longer ones.

>>> from graphengine.experiments.sva.model_a import tiny_model
>>> m = tiny_model(seed=0)
>>> from graphengine.experiments.sva.data import SVAItem
>>> it = SVAItem(0, 0, ("the", "pilot", "laughs", "."), 2, "laughs", "laugh", 0)
>>> enc = m.encode(it)
>>> [m.vocab[i] for i in enc.ids], enc.mask_pos, enc.word_of
(['[CLS]', 'the', 'pilot', '[MASK]', '.', '[SEP]'], 3, [-1, 0, 1, -1, 3, -1])
>>> g = m.graph(2, len(enc.ids)); g.node("logits").shape
(2, 6, 93)
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...errors import ModelError
from ...models.bert import BertConfig, build_bert
from ...ir import Graph
from .data import SVAItem

__all__ = ["SVAModelError", "Encoded", "SVAModel", "GraphModel", "load_model", "save_model", "export_ge", "ir_parity",
           "MODEL_FORMAT", "KINDS"]

MODEL_FORMAT = 1
KINDS = ("mlm", "number")
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class SVAModelError(ModelError):
    """An agreement model file is missing, malformed or cannot encode an input."""


@dataclass
class Encoded:
    """One sentence as model input: token ``ids`` [T], ``word_of[t]`` (the sentence word a
    token comes from, −1 for special tokens and [MASK]), the [MASK] position, and the QoI's
    ``good`` / ``bad`` indices into the last axis of ``logits``."""

    ids: np.ndarray
    word_of: List[int]
    mask_pos: int
    good: int
    bad: int

    def positions(self, words: Sequence[int]) -> List[int]:
        """Token positions of the given word indices (every WordPiece of each word)."""
        want = set(int(w) for w in words)
        return [t for t, w in enumerate(self.word_of) if w in want]


# ------------------------------------------------------------------ tokenizers
class _WordVocab:
    def __init__(self, vocab: Sequence[str]):
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        missing = [s for s in SPECIALS if s not in self.index]
        if missing:
            raise SVAModelError(f"word vocabulary lacks the special tokens {missing}")

    def encode_words(self, words: Sequence[str]) -> Tuple[List[int], List[int]]:
        unk = self.index["[UNK]"]
        return [self.index.get(w, unk) for w in words], list(range(len(words)))

    def token_id(self, tok: str) -> int:
        return self.index[tok]


class _WordPiece:
    def __init__(self, tokenizer_json: str):
        from ...runner.model import load_tokenizer

        self.tok = load_tokenizer(tokenizer_json, SVAModelError)

    def encode_words(self, words: Sequence[str]) -> Tuple[List[int], List[int]]:
        if not words:
            return [], []
        enc = self.tok.encode(list(words), is_pretokenized=True, add_special_tokens=False)
        return list(enc.ids), [int(w) for w in enc.word_ids]

    def token_id(self, tok: str) -> int:
        i = self.tok.token_to_id(tok)
        if i is None:
            raise SVAModelError(f"the tokenizer has no {tok} token")
        return int(i)


def _encode(tokenizer, item: SVAItem) -> Tuple[np.ndarray, List[int], int]:
    m = item.mask_index
    before, wb = tokenizer.encode_words(item.words[:m])
    after, wa = tokenizer.encode_words(item.words[m + 1:])
    ids = [tokenizer.token_id("[CLS]")] + before + [tokenizer.token_id("[MASK]")] + after + [tokenizer.token_id("[SEP]")]
    word_of = [-1] + wb + [-1] + [w + m + 1 for w in wa] + [-1]
    return np.array(ids, np.int64), word_of, 1 + len(before)


# ------------------------------------------------------------------ models
@dataclass
class SVAModel:
    """A BERT agreement model held as numpy weights (see the module docstring).

    ``weights`` are float32 or float64 arrays keyed by Hugging Face names; graphs are built in
    ``dtype`` (float64 by default: semiring values are float64 anyway) and share one converted
    copy of the weights. ``graph(B, T)`` caches the last ``cache_size`` graphs.
    """

    kind: str
    name: str
    config: Dict[str, Any]
    weights: Dict[str, np.ndarray]
    vocab: Optional[List[str]] = None
    tokenizer_json: Optional[str] = None
    info: Dict[str, Any] = field(default_factory=dict)
    dtype: str = "float64"
    cache_size: int = 8

    def __post_init__(self):
        if self.kind not in KINDS:
            raise SVAModelError(f"model kind must be one of {KINDS}, got {self.kind!r}")
        if (self.vocab is None) == (self.tokenizer_json is None):
            raise SVAModelError("a model needs exactly one of a word vocabulary and a tokenizer")
        self.bert_config = BertConfig.from_hf(self.config)
        self._tokenizer = _WordVocab(self.vocab) if self.vocab is not None else _WordPiece(self.tokenizer_json)
        self._shared = {k: np.asarray(v).astype(self.dtype) for k, v in self.weights.items()}
        self._graphs: "OrderedDict[Tuple[int, int], Graph]" = OrderedDict()
        if self.kind == "number":
            for k, shape in (("classifier.weight", (2, self.bert_config.hidden_size)), ("classifier.bias", (2,))):
                if k not in self.weights or tuple(self.weights[k].shape) != shape:
                    raise SVAModelError(f"a number model needs {k} of shape {list(shape)}")

    @property
    def max_length(self) -> int:
        return self.bert_config.max_position

    def encode(self, item: SVAItem) -> Encoded:
        """Token ids and QoI indices of ``item``; raises :class:`SVAModelError` when the model
        cannot score it (a verb outside a word-level vocabulary, an undecided verb number)."""
        ids, word_of, mask = _encode(self._tokenizer, item)
        if self.kind == "mlm":
            idx = self._tokenizer.index
            missing = [w for w in (item.good, item.bad) if w not in idx]
            if missing:
                raise SVAModelError(f"verb(s) {missing} not in the model's vocabulary")
            good, bad = idx[item.good], idx[item.bad]
        else:
            if item.good_number is None:
                raise SVAModelError(f"cannot tell the number of the verb pair {item.good}/{item.bad}")
            good, bad = item.good_number, 1 - item.good_number
        return Encoded(ids, word_of, mask, good, bad)

    def feeds(self, ids: np.ndarray) -> Dict[str, np.ndarray]:
        ids = np.asarray(ids, np.int64)
        return {"input_ids": ids, "token_type_ids": np.zeros_like(ids)}

    def graph(self, batch: int, seq_len: int) -> Graph:
        """The fused IR graph for ``batch`` sentences of ``seq_len`` tokens (output ``logits``)."""
        key = (int(batch), int(seq_len))
        g = self._graphs.get(key)
        if g is not None:
            self._graphs.move_to_end(key)
            return g
        if seq_len > self.max_length:
            raise SVAModelError(f"{seq_len} tokens exceed the model's {self.max_length} positions")
        g = build_graph(self.kind, self.bert_config, self._shared, batch, seq_len, self.dtype)
        for n in g.parameters():  # share the converted weights instead of one copy per graph
            if n.name in self._shared:
                g.arrays[n.id] = self._shared[n.name]
        g.meta["sva"] = {"kind": self.kind, "model": self.name}
        self._graphs[key] = g
        while len(self._graphs) > self.cache_size:
            self._graphs.popitem(last=False)
        return g

    def batch_key(self, enc: Encoded) -> int:
        """Sentences with equal keys share one graph (here: the exact length, no padding)."""
        return len(enc.ids)

    def batch_inputs(self, encs: Sequence[Encoded]) -> Tuple[Graph, Dict[str, np.ndarray]]:
        ids = np.stack([e.ids for e in encs])
        return self.graph(len(encs), ids.shape[1]), self.feeds(ids)


def build_graph(kind: str, config: BertConfig, weights: Dict[str, np.ndarray], batch: int, seq_len: int,
                dtype: str = "float64", attention_mask: bool = False) -> Graph:
    """The model's BERT from :func:`~graphengine.models.bert.build_bert`: the tied MLM head for
    ``mlm`` models, the two-way ``classifier`` on every position (``head="token_classification"``,
    output ``logits`` [B, T, 2]) for ``number`` models."""
    if kind == "mlm":
        return build_bert(config, weights, batch, seq_len, head="mlm", dtype=dtype, attention_mask=attention_mask)
    return build_bert(replace(config, num_labels=2), weights, batch, seq_len, head="token_classification",
                      dtype=dtype, attention_mask=attention_mask)


class GraphModel:
    """A model read from one graph file (:func:`export_ge`): fixed length, padded inputs."""

    def __init__(self, graph: Graph, path: str):
        meta = graph.meta.get("sva")
        if not isinstance(meta, dict) or meta.get("kind") not in KINDS:
            raise SVAModelError(f"{path}: the graph has no sva metadata (export it with graphengine.experiments.sva.models.export_ge)")
        names = [n.name for n in graph.inputs()]
        if names[:1] != ["input_ids"] or "attention_mask" not in names:
            raise SVAModelError(f"{path}: expected inputs input_ids and attention_mask, got {names}")
        self.graph_, self.kind, self.name = graph, meta["kind"], meta.get("model", os.path.basename(path))
        self.batch, self.seq_len = graph.node("input_ids").shape
        self.vocab = meta.get("vocab")
        self.info = meta.get("info", {})
        self._tokenizer = _WordVocab(self.vocab) if self.vocab is not None else _WordPiece(meta["tokenizer_json"])
        self.max_length = self.seq_len

    encode = SVAModel.encode

    def batch_key(self, enc: Encoded) -> int:
        return 0

    def batch_inputs(self, encs: Sequence[Encoded]) -> Tuple[Graph, Dict[str, np.ndarray]]:
        if len(encs) > self.batch:
            raise SVAModelError(f"the graph takes batches of {self.batch}, got {len(encs)}")
        ids = np.zeros((self.batch, self.seq_len), np.int64)
        mask = np.zeros((self.batch, self.seq_len), bool)
        for b, e in enumerate(encs):
            ids[b, :len(e.ids)] = e.ids
            mask[b, :len(e.ids)] = True
        mask[len(encs):, 0] = True  # unused rows: attend to one position (avoids all-masked rows)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in [n.name for n in self.graph_.inputs()]:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return self.graph_, feeds


# ------------------------------------------------------------------ files
def ir_parity(sva: SVAModel, ids, lengths, torch_logits) -> float:
    """Max |IR logits − torch logits| over sentences ``ids[i, :lengths[i]]``, each run at its own
    length; ``torch_logits(x)`` gives torch's logits (as float64 numpy) for one int64 batch ``x``."""
    from ...engine import forward

    worst = 0.0
    for i in range(len(ids)):
        x = ids[i:i + 1, :lengths[i]]
        g = sva.graph(1, x.shape[1])
        acts = forward(g, sva.feeds(x))
        worst = max(worst, float(np.abs(acts[g.node("logits").id] - torch_logits(x)).max()))
    return worst


def save_model(model: SVAModel, path: str) -> None:
    """Write ``model`` to the directory ``path`` (created; files replaced)."""
    os.makedirs(path, exist_ok=True)
    doc = {"format": MODEL_FORMAT, "kind": model.kind, "name": model.name, "config": model.config,
           "vocab": model.vocab, "info": model.info}
    np.savez(os.path.join(path, "weights.npz"), **{k: np.asarray(v, np.float32) for k, v in model.weights.items()})
    if model.tokenizer_json is not None:
        with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(model.tokenizer_json)
    with open(os.path.join(path, "model.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)


def _load_dir(path: str) -> SVAModel:
    mpath = os.path.join(path, "model.json")
    try:
        with open(mpath, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise SVAModelError(f"{path}: no model.json (train a model with graphengine experiment sva-train-a or "
                            f"sva-train-b)") from None
    except (OSError, ValueError) as e:
        raise SVAModelError(f"{mpath}: cannot read ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise SVAModelError(f"{mpath}: not an sva model file of format {MODEL_FORMAT}")
    for k in ("kind", "name", "config"):
        if k not in doc:
            raise SVAModelError(f"{mpath}: missing field {k!r}")
    try:
        with np.load(os.path.join(path, "weights.npz"), allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise SVAModelError(f"{path}: no weights.npz") from None
    except (OSError, ValueError) as e:
        raise SVAModelError(f"{path}/weights.npz: cannot read ({e})") from None
    tok = None
    if doc.get("vocab") is None:
        try:
            with open(os.path.join(path, "tokenizer.json"), encoding="utf-8") as f:
                tok = f.read()
        except OSError:
            raise SVAModelError(f"{path}: a model without a word vocabulary needs tokenizer.json") from None
    try:
        return SVAModel(doc["kind"], doc["name"], doc["config"], weights, doc.get("vocab"), tok, doc.get("info", {}))
    except (KeyError, ValueError, TypeError) as e:
        raise SVAModelError(f"{path}: inconsistent model ({type(e).__name__}: {e})") from None


def load_model(path: str):
    """An :class:`SVAModel` from a model directory, or a :class:`GraphModel` from a ``.ge`` file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return _load_dir(path)
    if not os.path.exists(path):
        raise SVAModelError(f"{path}: no such model directory or graph file")
    from ...ir import load

    return GraphModel(load(path), path)


def export_ge(model: SVAModel, path: str, seq_len: int, batch: int = 1) -> Graph:
    """Save ``model`` as one graph file for inputs padded to ``seq_len`` tokens."""
    from ...ir import save

    g = build_graph(model.kind, model.bert_config, model._shared, batch, seq_len, model.dtype, attention_mask=True)
    g.meta["sva"] = {"kind": model.kind, "model": model.name, "vocab": model.vocab,
                     "tokenizer_json": model.tokenizer_json, "info": model.info}
    save(g, path)
    return g
