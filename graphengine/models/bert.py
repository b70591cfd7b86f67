"""BERT built directly in the IR from numpy weights (the one home for BERTs made without a frontend).

No framework is needed: weights are plain ``{name: numpy array}`` dicts, named by
the Hugging Face ``state_dict`` keys (``embeddings.word_embeddings.weight``,
``encoder.layer.0.attention.self.query.weight``, ``cls.predictions.bias``, ``classifier.weight``
...), so a real checkpoint can be fed as ``{k: v.numpy() for k, v in model.state_dict().items()}``
(a leading ``bert.`` is stripped; the tied ``cls.predictions.decoder.*`` entries are checked and
dropped). Parameter node names are exactly these keys, and every node's ``scope`` is the module
path Hugging Face would report for it (``encoder.layer.0.attention.self.key``), so roll-ups by
layer / head / K,Q,V work the same on a built graph and on an exported one.

Hugging Face weights come in two ways: :func:`read_hf_checkpoint` reads a checkpoint directory
(``config.json`` and ``model.safetensors``; no code runs, nothing is unpickled) and
:func:`build_bert_from_hf` builds the graph of an in-memory ``transformers`` BERT from its
``state_dict``. (Exporting the torch module itself, op by op, is the frontends' job:
:func:`graphengine.frontends.hf.from_hf_dir`.) :func:`word_embedding_lookup` finds the
word-embedding lookup in a BERT graph from either source.

>>> import numpy as np
>>> from graphengine.engine import forward, backward
>>> cfg = BertConfig.mini()
>>> g = build_bert(cfg, random_bert_weights(cfg, seed=0), batch=1, seq_len=4)
>>> acts = forward(g, bert_feeds(np.array([[2, 5, 3, 1]])))
>>> acts[g["logits"].id].shape
(1, 4, 40)
>>> r = backward(g, acts, "logits[0,3,7]", retain=["embeddings.output"])
>>> r.grad("embeddings.output").shape
(1, 4, 32)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ..errors import ModelError
from ..ir import Graph
from ..ir.graph import Node
from .layers import Weights, activation, weight_parameter

__all__ = ["BertConfig", "random_bert_weights", "build_bert", "bert_weight_shapes", "bert_feeds", "BERT_HEADS",
           "mask_fill_value", "read_hf_checkpoint", "build_bert_from_hf", "word_embedding_lookup"]


#: ``"mlm"`` (``BertForMaskedLM``), ``"classification"`` (``BertForSequenceClassification``),
#: ``"token_classification"`` (``BertForTokenClassification``) or None (``BertModel``).
BERT_HEADS = ("mlm", "classification", "token_classification", None)


@dataclass(frozen=True)
class BertConfig:
    """BERT hyper-parameters (names as in Hugging Face's ``BertConfig`` where they differ:
    ``num_layers`` = ``num_hidden_layers``, ``num_heads`` = ``num_attention_heads``,
    ``max_position`` = ``max_position_embeddings``)."""

    vocab_size: int = 40
    hidden_size: int = 32
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 64
    max_position: int = 16
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    num_labels: int = 2

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        activation(self.hidden_act)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def mini(cls, **overrides) -> "BertConfig":
        """A tiny BERT (vocab 40, hidden 32, 2 layers, 4 heads, FFN 64) for tests and demos."""
        return replace(cls(), **overrides)

    @classmethod
    def from_hf(cls, hf: Any) -> "BertConfig":
        """From a Hugging Face ``BertConfig`` object or its ``config.json`` dict."""
        d = hf if isinstance(hf, Mapping) else hf.to_dict()
        return cls(vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], num_layers=d["num_hidden_layers"],
                   num_heads=d["num_attention_heads"], intermediate_size=d["intermediate_size"],
                   max_position=d["max_position_embeddings"], type_vocab_size=d.get("type_vocab_size", 2),
                   layer_norm_eps=d.get("layer_norm_eps", 1e-12), hidden_act=d.get("hidden_act", "gelu"),
                   num_labels=d.get("num_labels", len(d.get("id2label", {})) or 2))


def _check_head(head) -> None:
    if head not in BERT_HEADS:
        raise ValueError(f"head must be one of {BERT_HEADS}, got {head!r}")


def bert_weight_shapes(config: BertConfig, head: Optional[str] = "mlm") -> Dict[str, Tuple[int, ...]]:
    """Every weight a BERT with ``head`` needs, in Hugging Face ``state_dict`` order, with its shape.

    The MLM decoder weight is tied to ``embeddings.word_embeddings.weight`` and so is not listed.

    >>> shapes = bert_weight_shapes(BertConfig.mini(num_layers=1), head=None)
    >>> list(shapes)[:2], len(shapes)
    (['embeddings.word_embeddings.weight', 'embeddings.position_embeddings.weight'], 21)
    """
    _check_head(head)
    c = config
    H, I = c.hidden_size, c.intermediate_size
    s: Dict[str, Tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (c.vocab_size, H),
        "embeddings.position_embeddings.weight": (c.max_position, H),
        "embeddings.token_type_embeddings.weight": (c.type_vocab_size, H),
    }

    def dense(module: str, n_out: int, n_in: int) -> None:
        s[f"{module}.weight"], s[f"{module}.bias"] = (n_out, n_in), (n_out,)

    def layer_norm(module: str) -> None:
        s[f"{module}.weight"], s[f"{module}.bias"] = (H,), (H,)

    layer_norm("embeddings.LayerNorm")
    for i in range(c.num_layers):
        p = f"encoder.layer.{i}"
        for m in ("query", "key", "value"):
            dense(f"{p}.attention.self.{m}", H, H)
        dense(f"{p}.attention.output.dense", H, H)
        layer_norm(f"{p}.attention.output.LayerNorm")
        dense(f"{p}.intermediate.dense", I, H)
        dense(f"{p}.output.dense", H, I)
        layer_norm(f"{p}.output.LayerNorm")
    if head == "mlm":
        s["cls.predictions.bias"] = (c.vocab_size,)
        dense("cls.predictions.transform.dense", H, H)
        layer_norm("cls.predictions.transform.LayerNorm")
    elif head == "token_classification":
        dense("classifier", c.num_labels, H)
    elif head == "classification":
        dense("pooler.dense", H, H)
        dense("classifier", c.num_labels, H)
    return s


def random_bert_weights(config: BertConfig, seed: int = 0, head: Optional[str] = "mlm",
                        std: float = 0.02) -> Weights:
    """Random BERT weights keyed by Hugging Face ``state_dict`` names (without ``bert.``).

    Matrices, embeddings and biases ~ N(0, std²) (BERT's initializer range is 0.02; biases are
    randomized too, unlike BERT's zero init, so no term of a test vanishes); LayerNorm weights
    ~ 1 + N(0, 0.1²) and biases ~ N(0, 0.1²). Deterministic in ``seed``; float64.

    >>> w = random_bert_weights(BertConfig.mini(), seed=0, head="classification")
    >>> w["classifier.weight"].shape, "cls.predictions.bias" in w
    ((2, 32), False)
    """
    rng = np.random.default_rng(seed)
    out: Weights = {}
    for key, shape in bert_weight_shapes(config, head).items():
        if "LayerNorm" in key:
            centre = 1.0 if key.endswith(".weight") else 0.0
            out[key] = centre + rng.normal(0.0, 0.1, size=shape)
        else:
            out[key] = rng.normal(0.0, std, size=shape)
    return out


def _normalize_bert_weights(weights: Mapping[str, np.ndarray]) -> Weights:
    """Strip a leading ``bert.``, drop the ``position_ids`` buffer, check and drop the tied decoder."""
    w: Weights = {}
    for k, v in weights.items():
        w[k[len("bert."):] if k.startswith("bert.") else k] = np.asarray(v)
    w.pop("embeddings.position_ids", None)
    dec = w.pop("cls.predictions.decoder.weight", None)
    if dec is not None and "embeddings.word_embeddings.weight" in w:
        if dec.shape != w["embeddings.word_embeddings.weight"].shape or not np.array_equal(
                dec, w["embeddings.word_embeddings.weight"]):
            raise ValueError("cls.predictions.decoder.weight differs from embeddings.word_embeddings.weight: "
                             "build_bert supports only the tied MLM decoder")
    dec_b = w.pop("cls.predictions.decoder.bias", None)
    if dec_b is not None and "cls.predictions.bias" in w and not np.array_equal(dec_b, w["cls.predictions.bias"]):
        raise ValueError("cls.predictions.decoder.bias differs from cls.predictions.bias")
    return w


def mask_fill_value(dtype: str) -> float:
    """The score given to masked attention positions: ``numpy.finfo(dtype).min``.

    This is Hugging Face's convention (it adds ``finfo.min`` to masked scores; for every score
    of ordinary size the sum rounds to ``finfo.min`` exactly, so replacing the score — what
    :func:`build_bert` does, with ``where`` — gives the same numbers). After softmax a masked
    key gets probability exactly 0 unless every key of a row is masked, in which case the row
    is uniform, as in Hugging Face.
    """
    return float(np.finfo(dtype).min)


def bert_feeds(input_ids, token_type_ids=None, attention_mask=None) -> Dict[str, np.ndarray]:
    """Feeds for a graph from :func:`build_bert` (token types default to 0).

    >>> sorted(bert_feeds(np.array([[1, 2]]), attention_mask=np.array([[1, 0]])))
    ['attention_mask', 'input_ids', 'token_type_ids']
    """
    ids = np.asarray(input_ids, dtype=np.int64)
    feeds = {"input_ids": ids,
             "token_type_ids": (np.zeros_like(ids) if token_type_ids is None
                                else np.asarray(token_type_ids, dtype=np.int64))}
    if attention_mask is not None:
        feeds["attention_mask"] = np.asarray(attention_mask).astype(bool)
    return feeds


def build_bert(config: BertConfig, weights: Mapping[str, np.ndarray], batch: int, seq_len: int,
               head: Optional[str] = "mlm", dtype: str = "float64", attention_mask: bool = False) -> Graph:
    """BERT (eval mode: no dropout) as a graph, with Hugging Face's names and module scopes.

    Inputs: ``input_ids`` and ``token_type_ids`` [batch, seq_len] int64 and, when
    ``attention_mask`` is true, ``attention_mask`` [batch, seq_len] bool (True = attend). Masked
    keys' scores are replaced by :func:`mask_fill_value` (``finfo(dtype).min``) with ``where``
    before the softmax. Position ids ``0..seq_len-1`` are the constant ``embeddings.position_ids``.

    Output (marked): ``logits`` — [batch, seq_len, vocab] for ``head="mlm"`` (decoder tied to
    the word embeddings), [batch, num_labels] for ``"classification"`` (pooler on position 0),
    [batch, seq_len, num_labels] for ``"token_classification"`` (``classifier`` on every
    position); ``last_hidden_state`` [batch, seq_len, hidden] for ``head=None``.

    Named nodes: ``embeddings.output`` (after the embedding LayerNorm), for every layer ``i``
    ``encoder.layer.{i}.attention.self.{query,key,value}.output``,
    ``...attention.self.probs`` [B, heads, T, T], ``...attention.self.output`` (merged context),
    ``encoder.layer.{i}.attention.output`` (after the first residual LayerNorm),
    ``encoder.layer.{i}.intermediate.output`` (after GELU) and ``encoder.layer.{i}.output``
    (the layer's output). Parameters are named by their ``state_dict`` keys.

    Scopes are the deepest Hugging Face module that computes the node: linear ops sit in
    ``...attention.self.query`` / ``.key`` / ``.value``, ``...attention.output.dense``,
    ``...intermediate.dense``, ``...output.dense``; LayerNorms in ``....LayerNorm``; the
    score / softmax / context arithmetic in ``...attention.self``; residual adds in
    ``...attention.output`` and ``...output``; GELU in ``...intermediate``. So ``g.find(scope)``
    with a module path returns everything inside that module. A layer's input has exactly four
    consumers: the query, key and value linears and the residual add in ``...attention.output``.

    >>> cfg = BertConfig.mini(num_labels=3)
    >>> g = build_bert(cfg, random_bert_weights(cfg, 0, head="classification"), 2, 5,
    ...                head="classification", attention_mask=True)
    >>> g["logits"].shape, [n.name for n in g.inputs()]
    ((2, 3), ['input_ids', 'token_type_ids', 'attention_mask'])
    """
    _check_head(head)
    activation(config.hidden_act)
    if seq_len > config.max_position:
        raise ValueError(f"seq_len {seq_len} exceeds max_position {config.max_position}")
    c = config
    H, nh, dh, B, T = c.hidden_size, c.num_heads, c.head_dim, batch, seq_len
    w = _normalize_bert_weights(weights)
    shapes = bert_weight_shapes(c, head)
    meta = {"model": "bert", "head": head, "config": asdict(c), "decomposition": "fused",
            "attention_mask": bool(attention_mask),
            "mask_fill_value": mask_fill_value(dtype) if attention_mask else None}
    g = Graph(meta=meta)

    def P(key: str) -> Node:
        return weight_parameter(g, w, key, shapes[key], dtype, key.rsplit(".", 1)[0])

    def linear(x: Node, module: str, name: str) -> Node:
        return g.call("linear", x, P(f"{module}.weight"), P(f"{module}.bias"), name=name, scope=module)

    def layer_norm(x: Node, module: str, name: str) -> Node:
        return g.call("layer_norm", x, P(f"{module}.weight"), P(f"{module}.bias"), name=name, scope=module,
                      normalized_shape=[H], eps=float(c.layer_norm_eps))

    act_op, act_attrs = activation(c.hidden_act)

    input_ids = g.input("input_ids", (B, T), dtype="int64")
    token_type_ids = g.input("token_type_ids", (B, T), dtype="int64")
    ext_mask = None
    if attention_mask:
        mask = g.input("attention_mask", (B, T), dtype="bool")
        ext_mask = g.call("reshape", mask, name="extended_attention_mask", shape=[B, 1, 1, T])
        fill = g.constant(np.array(mask_fill_value(dtype), dtype=dtype), name="attention_mask_fill")

    # ----------------------------------------------------------------- embeddings
    word_table = P("embeddings.word_embeddings.weight")
    word = g.call("embedding", word_table, input_ids, name="embeddings.word", scope="embeddings.word_embeddings")
    ttype = g.call("embedding", P("embeddings.token_type_embeddings.weight"), token_type_ids,
                   name="embeddings.token_type", scope="embeddings.token_type_embeddings")
    pos_ids = g.constant(np.arange(T, dtype=np.int64)[None, :], name="embeddings.position_ids", scope="embeddings")
    pos = g.call("embedding", P("embeddings.position_embeddings.weight"), pos_ids,
                 name="embeddings.position", scope="embeddings.position_embeddings")
    e = g.call("add", word, ttype, name="embeddings.word_plus_type", scope="embeddings")
    e = g.call("add", e, pos, name="embeddings.sum", scope="embeddings")
    h = layer_norm(e, "embeddings.LayerNorm", "embeddings.output")

    # ----------------------------------------------------------------- encoder
    scale = 1.0 / math.sqrt(dh)
    for i in range(c.num_layers):
        p = f"encoder.layer.{i}"
        sa = f"{p}.attention.self"
        heads = {}
        for m, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])):
            y = linear(h, f"{sa}.{m}", f"{sa}.{m}.output")
            y = g.call("reshape", y, name=f"{sa}.{m}.split", scope=sa, shape=[B, T, nh, dh])
            heads[m] = g.call("permute", y, name=f"{sa}.{m}.heads", scope=sa, dims=perm)
        # query.heads [B,nh,T,dh] @ key.heads [B,nh,dh,T] -> [B,nh,T,T]
        s = g.call("matmul", heads["query"], heads["key"], name=f"{sa}.scores_raw", scope=sa)
        sc = g.constant(np.array(scale, dtype=dtype), name=f"{sa}.scale", scope=sa)
        s = g.call("mul", s, sc, name=f"{sa}.scores", scope=sa)
        if ext_mask is not None:
            s = g.call("where", ext_mask, s, fill, name=f"{sa}.scores_masked", scope=sa)
        probs = g.call("softmax", s, name=f"{sa}.probs", scope=sa, axis=-1)
        ctx = g.call("matmul", probs, heads["value"], name=f"{sa}.context", scope=sa)
        ctx = g.call("permute", ctx, name=f"{sa}.context_merged", scope=sa, dims=[0, 2, 1, 3])
        ctx = g.call("reshape", ctx, name=f"{sa}.output", scope=sa, shape=[B, T, H])

        ao = f"{p}.attention.output"
        a = linear(ctx, f"{ao}.dense", f"{ao}.dense.output")
        a = g.call("add", a, h, name=f"{ao}.residual", scope=ao)
        a = layer_norm(a, f"{ao}.LayerNorm", ao)

        it = f"{p}.intermediate"
        f = linear(a, f"{it}.dense", f"{it}.dense.output")
        f = g.call(act_op, f, name=f"{it}.output", scope=it, **act_attrs)

        out = f"{p}.output"
        f = linear(f, f"{out}.dense", f"{out}.dense.output")
        f = g.call("add", f, a, name=f"{out}.residual", scope=out)
        h = layer_norm(f, f"{out}.LayerNorm", out)

    # ----------------------------------------------------------------- heads
    if head == "mlm":
        t = "cls.predictions.transform"
        x = linear(h, f"{t}.dense", f"{t}.dense.output")
        x = g.call(act_op, x, name=f"{t}.act", scope=t, **act_attrs)
        x = layer_norm(x, f"{t}.LayerNorm", f"{t}.output")
        bias = P("cls.predictions.bias")
        # the decoder is tied: the same parameter node as the word-embedding table
        result = g.call("linear", x, word_table, bias, name="logits", scope="cls.predictions.decoder")
    elif head == "classification":
        first = g.call("select", h, name="pooler.first_token", scope="pooler", dim=1, index=0)
        x = linear(first, "pooler.dense", "pooler.dense.output")
        x = g.call("tanh", x, name="pooler.output", scope="pooler.activation")
        result = linear(x, "classifier", "logits")
    elif head == "token_classification":
        result = linear(h, "classifier", "logits")
    else:
        result = g.call("reshape", h, name="last_hidden_state", shape=[B, T, H])
    g.mark_output(result)
    return g


def read_hf_checkpoint(path: str) -> Tuple[Dict[str, Any], Weights]:
    """The ``config.json`` dict and the weights (numpy, as stored) of a Hugging Face checkpoint
    directory with a ``model.safetensors`` file, keyed as :func:`build_bert` wants them: a leading
    ``bert.`` stripped, the ``embeddings.position_ids`` buffer dropped.

    Needs the ``safetensors`` package (the ``hf`` extra); :class:`~graphengine.errors.ModelError`
    when it or a file is missing. Safetensors holds plain arrays, so reading runs no code.
    """
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ModelError("reading a Hugging Face checkpoint needs safetensors (pip install 'graphengine[hf]')") from None
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        stored = load_file(os.path.join(path, "model.safetensors"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: cannot read the checkpoint ({e})") from None
    weights = {(k[len("bert."):] if k.startswith("bert.") else k): v for k, v in stored.items()}
    weights.pop("embeddings.position_ids", None)
    return config, weights


def build_bert_from_hf(model: Any, batch: int, seq_len: int, head: Optional[str], dtype: str = "float64",
                       attention_mask: bool = False) -> Graph:
    """:func:`build_bert` for an in-memory Hugging Face BERT (anything with ``.config`` and a
    ``state_dict()`` of CPU tensors, e.g. ``transformers.BertForSequenceClassification`` with
    ``head="classification"``). The head is given, not guessed from the class: the weights it
    needs must be in the state dict. Dropout is ignored (the graph is the eval-mode model).

    >>> import types
    >>> cfg = BertConfig.mini(num_layers=1)
    >>> fake = types.SimpleNamespace(   # stands in for a transformers model in this example
    ...     config={"vocab_size": 40, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
    ...             "intermediate_size": 64, "max_position_embeddings": 16},
    ...     state_dict=lambda: random_bert_weights(cfg, head=None))
    >>> build_bert_from_hf(fake, 1, 3, head=None)["last_hidden_state"].shape
    (1, 3, 32)
    """
    state = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v))
             for k, v in model.state_dict().items()}
    return build_bert(BertConfig.from_hf(model.config), state, batch=batch, seq_len=seq_len, head=head,
                      dtype=dtype, attention_mask=attention_mask)


def word_embedding_lookup(graph: Graph) -> Node:
    """The lookup of the word-embedding table: the one ``embedding`` node whose scope ends in
    ``word_embeddings`` (as :func:`build_bert` and the Hugging Face exports name it);
    :class:`~graphengine.errors.ModelError` unless there is exactly one.

    >>> cfg = BertConfig.mini(num_layers=1)
    >>> word_embedding_lookup(build_bert(cfg, random_bert_weights(cfg), 1, 3)).name
    'embeddings.word'
    """
    hits = [n for n in graph.nodes if n.op == "embedding" and n.scope.endswith("word_embeddings")]
    if len(hits) != 1:
        raise ModelError(f"expected one word-embedding lookup in the graph, found {len(hits)}")
    return hits[0]
