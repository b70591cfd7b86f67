"""Hand-written PyTorch reference implementations of the built-in models (the test oracle).

Written from the Hugging Face BERT modules (``BertEmbeddings``, ``BertSelfAttention``,
``BertSelfOutput``, ``BertIntermediate``, ``BertOutput``, ``BertPredictionHeadTransform``,
``BertPooler``) with ``torch.nn.functional``, in eval mode. It shares no code with
``graphengine.models``: heads are split with ``view``/``transpose``, the attention mask
is *added* as Hugging Face does (``(1 - mask) * finfo.min``) rather than selected, GELU is
``F.gelu``, LayerNorm is ``F.layer_norm``.

Every function takes the same ``{state_dict key: numpy array}`` weights as the builders and
returns ``(logits, hidden)``, where ``hidden`` maps node names of the built graph
(``embeddings.output``, ``encoder.layer.{i}.output``, ...) to the torch tensors computed there;
with ``retain_grad=True`` those tensors retain their ``.grad``.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F


def torch_params(weights: Mapping[str, np.ndarray], requires_grad: bool = True) -> Dict[str, torch.Tensor]:
    """float64 leaf tensors (``requires_grad``) for every weight."""
    return {k: torch.tensor(np.asarray(v, dtype=np.float64), dtype=torch.float64, requires_grad=requires_grad)
            for k, v in weights.items()}


def _act(name: str):
    if name == "relu":
        return torch.relu
    if name == "tanh":
        return torch.tanh
    if name == "sigmoid":
        return torch.sigmoid
    if name == "gelu":
        return lambda x: F.gelu(x, approximate="none")
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    raise ValueError(name)


def _keep(hidden: Dict[str, torch.Tensor], name: str, t: torch.Tensor, retain_grad: bool) -> torch.Tensor:
    if retain_grad and t.requires_grad:
        t.retain_grad()
    hidden[name] = t
    return t


def mlp_forward(config, params: Mapping[str, torch.Tensor], x, retain_grad: bool = False
                ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """``config`` needs ``num_layers``, ``activation`` and ``bias``."""
    act = _act(config.activation)
    h = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    hidden: Dict[str, torch.Tensor] = {}
    for i in range(config.num_layers):
        b = params.get(f"layers.{i}.bias") if config.bias else None
        h = F.linear(h, params[f"layers.{i}.weight"], b)
        if i < config.num_layers - 1:
            h = _keep(hidden, f"layers.{i}.output", act(h), retain_grad)
    return h, hidden


def bert_forward(config, params: Mapping[str, torch.Tensor], input_ids, token_type_ids=None,
                 attention_mask=None, head: Optional[str] = "mlm", retain_grad: bool = False
                 ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """BERT in float64 the way Hugging Face computes it (eval mode).

    ``config`` needs the fields of ``graphengine.models.BertConfig``. ``params`` uses
    the state_dict keys without ``bert.``; the MLM decoder reuses the word-embedding tensor.
    """
    ids = torch.as_tensor(np.asarray(input_ids, dtype=np.int64))
    B, T = ids.shape
    if token_type_ids is None:
        tt = torch.zeros_like(ids)
    else:
        tt = torch.as_tensor(np.asarray(token_type_ids, dtype=np.int64))
    H, nh = config.hidden_size, config.num_heads
    dh = H // nh
    eps = config.layer_norm_eps
    act = _act(config.hidden_act)
    hidden: Dict[str, torch.Tensor] = {}

    def ln(x, prefix):
        return F.layer_norm(x, (H,), params[prefix + ".weight"], params[prefix + ".bias"], eps)

    def dense(x, prefix):
        return F.linear(x, params[prefix + ".weight"], params[prefix + ".bias"])

    # BertEmbeddings
    position_ids = torch.arange(T, dtype=torch.long).unsqueeze(0).expand(B, T)
    emb = F.embedding(ids, params["embeddings.word_embeddings.weight"])
    emb = emb + F.embedding(tt, params["embeddings.token_type_embeddings.weight"])
    emb = emb + F.embedding(position_ids, params["embeddings.position_embeddings.weight"])
    h = _keep(hidden, "embeddings.output", ln(emb, "embeddings.LayerNorm"), retain_grad)

    # the extended additive mask [B, 1, 1, T]
    ext = None
    if attention_mask is not None:
        m = torch.as_tensor(np.asarray(attention_mask)).to(torch.float64)
        ext = (1.0 - m)[:, None, None, :] * torch.finfo(torch.float64).min

    def split_heads(x):
        return x.view(B, T, nh, dh).transpose(1, 2)

    for i in range(config.num_layers):
        p = f"encoder.layer.{i}"
        q = split_heads(dense(h, f"{p}.attention.self.query"))
        k = split_heads(dense(h, f"{p}.attention.self.key"))
        v = split_heads(dense(h, f"{p}.attention.self.value"))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh)
        if ext is not None:
            scores = scores + ext
        probs = _keep(hidden, f"{p}.attention.self.probs", torch.softmax(scores, dim=-1), retain_grad)
        ctx = torch.matmul(probs, v).transpose(1, 2).contiguous().view(B, T, H)
        ctx = _keep(hidden, f"{p}.attention.self.output", ctx, retain_grad)
        a = ln(dense(ctx, f"{p}.attention.output.dense") + h, f"{p}.attention.output.LayerNorm")
        a = _keep(hidden, f"{p}.attention.output", a, retain_grad)
        f = _keep(hidden, f"{p}.intermediate.output", act(dense(a, f"{p}.intermediate.dense")), retain_grad)
        h = ln(dense(f, f"{p}.output.dense") + a, f"{p}.output.LayerNorm")
        h = _keep(hidden, f"{p}.output", h, retain_grad)

    if head == "mlm":
        t = ln(act(dense(h, "cls.predictions.transform.dense")), "cls.predictions.transform.LayerNorm")
        logits = F.linear(t, params["embeddings.word_embeddings.weight"], params["cls.predictions.bias"])
    elif head == "classification":
        pooled = torch.tanh(dense(h[:, 0], "pooler.dense"))
        logits = dense(pooled, "classifier")
    elif head == "token_classification":
        logits = dense(h, "classifier")
    elif head is None:
        logits = h
    else:
        raise ValueError(head)
    return logits, hidden
