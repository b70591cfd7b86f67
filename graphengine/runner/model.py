"""The model of a dataset run: what is sent to the workers, and what they build from it.

``MODEL_OR_GE`` is one of

- a graph file (``.ge``): used as it is, for every example. Its integer inputs of shape
  ``[1, T]`` are fed the example's token ids (``input_ids``; ``token_type_ids`` get zeros,
  ``attention_mask`` ones), so every example must have exactly ``T`` tokens (others are recorded
  as skipped, with the reason). Text is tokenized with ``--tokenizer tokenizer.json`` if given;
  otherwise each example must carry its ``input_ids`` (a JSON list in a JSONL file);
- a Hugging Face BERT directory (``config.json``, ``model.safetensors``, ``tokenizer.json``) or
  ``minilm`` (the packaged all-MiniLM-L6-v2): the workers build the graph of each sentence
  length in the IR with :func:`graphengine.models.build_bert` (float64, the checkpoint's
  weights; built once per length and kept), so sentences of any length run without padding and
  without torch on the workers. ``head``: ``auto`` (``mlm`` when the checkpoint has the masked
  LM head's weights, else ``none``), ``none`` (output ``last_hidden_state``), ``mlm`` or
  ``classification`` (output ``logits``).

The bundle (:class:`graphengine.runner.execute.Bundle`) holds the model's files and
``options.json`` (the analysis options), so one broadcast gives a worker everything.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ModelError
from .execute import Bundle

__all__ = ["make_bundle", "load_bundle", "load_tokenizer", "RunnerModel", "HEADS", "model_digest"]

HEADS = ("auto", "none", "mlm", "classification")
_GRAPHS_KEPT = 8  # graphs of distinct lengths a worker keeps


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror or e})") from None


def model_digest(files: Dict[str, bytes]) -> str:
    """SHA-256 over the model's files (names and contents), options excluded."""
    h = hashlib.sha256()
    for name in sorted(files):
        if name != "options.json":
            h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def make_bundle(spec: str, options: Dict[str, Any], tokenizer: Optional[str] = None) -> Tuple[Bundle, Dict[str, Any]]:
    """The bundle for ``spec`` (see the module docstring) and a description of the model for
    the manifest (kind, path, sha256)."""
    files: Dict[str, bytes] = {}
    if spec == "minilm":
        from ..models.minilm import minilm_path

        path = minilm_path()
    else:
        path = os.fspath(spec)
    if os.path.isdir(path):
        for name in ("config.json", "model.safetensors"):
            if not os.path.exists(os.path.join(path, name)):
                raise ModelError(f"{path}: no {name} (expected a Hugging Face BERT directory or a .ge graph file)")
            files[name] = _read(os.path.join(path, name))
        tok = tokenizer or os.path.join(path, "tokenizer.json")
        if os.path.exists(tok):
            files["tokenizer.json"] = _read(tok)
        kind = "hf"
    elif os.path.isfile(path):
        files["graph.ge"] = _read(path)
        if tokenizer:
            files["tokenizer.json"] = _read(tokenizer)
        kind = "graph"
    else:
        raise ModelError(f"{spec}: no such graph file or model directory")
    files["options.json"] = json.dumps({"kind": kind, **options}, sort_keys=True).encode()
    info = {"kind": kind, "path": os.path.abspath(path) if spec != "minilm" else "minilm", "sha256": model_digest(files)}
    return Bundle("graphengine.runner.model:load_bundle", files), info


def load_bundle(directory: str) -> "RunnerModel":
    """Build the :class:`RunnerModel` from a bundle's files (the bundle loader)."""
    with open(os.path.join(directory, "options.json"), encoding="utf-8") as f:
        options = json.load(f)
    return RunnerModel(directory, options)


def load_tokenizer(tokenizer_json: str, error=ModelError):
    """A ``tokenizers.Tokenizer`` from the text of a ``tokenizer.json``, with padding and
    truncation off (checkpoints often pad to a fixed length; sentences are taken as they are);
    problems are one ``error`` line."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise error("tokenizing text needs the tokenizers package (pip install 'graphengine[hf]')") from None
    try:
        tok = Tokenizer.from_str(tokenizer_json)
    except Exception as e:  # noqa: BLE001 - the tokenizers package raises its own types
        raise error(f"cannot read the tokenizer: {' '.join(str(e).split())}") from None
    tok.no_padding()
    tok.no_truncation()
    return tok


class _Tokenizer:
    def __init__(self, path: str):
        with open(path, encoding="utf-8") as f:
            self.tok = load_tokenizer(f.read())

    def encode(self, text: str) -> Tuple[List[int], List[str]]:
        enc = self.tok.encode(text)
        return list(enc.ids), list(enc.tokens)

    def token_id(self, word: str) -> Optional[int]:
        """The id of ``word`` as one token (as is, then lower-cased), or None."""
        for w in (word, word.lower()):
            i = self.tok.token_to_id(w)
            if i is not None:
                return int(i)
        ids = self.tok.encode(word, add_special_tokens=False).ids
        return int(ids[0]) if len(ids) == 1 else None

    def id_to_token(self, i: int) -> str:
        return self.tok.id_to_token(int(i)) or str(i)


class RunnerModel:
    """A worker's model: tokenization, the graph for a length, feeds."""

    def __init__(self, directory: str, options: Dict[str, Any]):
        self.options = options
        self.kind = options["kind"]
        tok = os.path.join(directory, "tokenizer.json")
        self.tokenizer = _Tokenizer(tok) if os.path.exists(tok) else None
        self._graphs: "OrderedDict[int, Any]" = OrderedDict()
        if self.kind == "graph":
            from ..ir import load

            self.fixed = load(os.path.join(directory, "graph.ge"))
            ints = [n for n in self.fixed.inputs() if n.dtype.startswith("int") or n.dtype == "bool"]
            if not ints or any(len(n.shape) != 2 or n.shape[0] != 1 for n in ints):
                raise ModelError("the graph's integer inputs must have shape [1, T] (token ids)")
            self.length = ints[0].shape[1]
            self.head = None
        else:
            from ..models.bert import BertConfig, read_hf_checkpoint

            config, self.weights = read_hf_checkpoint(directory)
            self.config = BertConfig.from_hf(config)
            self.max_length = self.config.max_position
            head = options.get("head", "auto")
            if head == "auto":
                head = "mlm" if any(k.startswith("cls.predictions") for k in self.weights) else "none"
            self.head = None if head == "none" else head
            if self.head == "mlm" and not any(k.startswith("cls.predictions") for k in self.weights):
                raise ModelError("--head mlm: the checkpoint has no masked-LM head weights (cls.predictions.*)")

    # ------------------------------------------------------------------ inputs
    def encode(self, text: Optional[str], input_ids=None) -> Tuple[List[int], List[str]]:
        """Token ids and strings of one example (``input_ids`` wins over ``text``)."""
        if input_ids is not None:
            ids = [int(i) for i in input_ids]
            toks = [self.tokenizer.id_to_token(i) for i in ids] if self.tokenizer else [str(i) for i in ids]
            return ids, toks
        if self.tokenizer is None:
            raise ModelError("no tokenizer: give --tokenizer tokenizer.json or an input_ids field per example")
        return self.tokenizer.encode(text)

    def token_id(self, word: str) -> Optional[int]:
        return self.tokenizer.token_id(word) if self.tokenizer is not None else None

    @property
    def mask_token(self) -> Optional[str]:
        return "[MASK]" if self.tokenizer is None or self.tokenizer.token_id("[MASK]") is not None else None

    def check_length(self, n: int) -> Optional[str]:
        """Why ``n`` tokens cannot run (None if they can)."""
        if self.kind == "graph":
            return None if n == self.length else f"{n} tokens, the graph takes exactly {self.length}"
        return None if 0 < n <= self.max_length else f"{n} tokens, the model takes 1 to {self.max_length}"

    def graph(self, n: int):
        if self.kind == "graph":
            return self.fixed
        g = self._graphs.get(n)
        if g is None:
            from ..models.bert import build_bert

            g = build_bert(self.config, self.weights, 1, n, head=self.head)
            self._graphs[n] = g
            while len(self._graphs) > _GRAPHS_KEPT:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(n)
        return g

    def feeds(self, graph, ids: List[int]) -> Dict[str, np.ndarray]:
        row = np.asarray(ids, np.int64)[None, :]
        out = {}
        for n in graph.inputs():
            if n.name == "input_ids":
                out[n.name] = row.astype(n.dtype)
            elif n.name == "attention_mask":
                out[n.name] = np.ones(n.shape, dtype=n.dtype)
            elif n.dtype.startswith("int"):
                out[n.name] = np.zeros(n.shape, dtype=n.dtype)
        return out
