"""One example → one record: forward, one backward pass in the requested semirings, statistics.

The QoI comes from a template filled per example (:func:`fill_template`): ``{COLUMN}`` is the
example's value in that column, ``{tok:COLUMN}`` the token id of that column's word (it must be
one token), ``{mask}`` the position of the first mask token, ``{last}`` the last position and
``{T}`` the token count. ``--target COL [--foil COL]`` is the template
``logits[0,{mask},{tok:COL}] - logits[0,{mask},{tok:FOIL}]`` for a masked-LM head (and
``logits[0,{COL}] - logits[0,{FOIL}]`` for a classification head, the columns holding label
indices); with a foil the QoI has a sign convention: the example is *correct* when QoI > 0.

Per-token statistics at the token-embedding node (``--node``; default the word-embedding
lookup), one value per token, pooled over the hidden units:

================  ==========  =====================================================
statistic         semiring    value per token
================  ==========  =====================================================
``grad_norm``     real        ‖∂QoI/∂e_t‖₂ over the units of the token's vector
``grad_x_input``  real        Σ_units ∂QoI/∂e_t · e_t
``max_plus``      max         the largest M⁺ over the token's units
``entropy``       entropy     entropy (nats) of the distribution over all paths from the
                              token's vector (Z and R pooled over its units)
================  ==========  =====================================================

With ``max`` the record also holds the top path from the best (token, unit) of the node and,
when the graph has BERT layers, the branch (``Q``/``K``/``V``/``skip``) each token's best
unit's top path takes at every layer input; with ``kbest:K`` the K best paths. Non-finite
values are written as JSON ``null``.
"""

from __future__ import annotations

import os
import re
import socket
import time
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import GraphEngineError, QoIError

__all__ = ["STATISTICS", "fill_template", "target_template", "analyze_example", "TemplateError"]

#: statistic → the semiring that gives it.
STATISTICS = {"grad_norm": "real", "grad_x_input": "real", "max_plus": "max", "entropy": "entropy"}
_FIELD = re.compile(r"\{(?:(tok):)?([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(GraphEngineError):
    """A QoI template names a column the example lacks, or a word that is not one token."""


def target_template(target: str, foil: Optional[str], head: Optional[str]) -> str:
    """The QoI template of ``--target`` / ``--foil`` for a head.

    >>> target_template("good", "bad", "mlm")
    'logits[0,{mask},{tok:good}] - logits[0,{mask},{tok:bad}]'
    >>> target_template("label", None, "classification")
    'logits[0,{label}]'
    """
    if head == "classification":
        one = "logits[0,{%s}]"
    elif head == "mlm":
        one = "logits[0,{mask},{tok:%s}]"
    else:
        raise TemplateError("--target needs a model with a masked-LM or classification head (output logits); "
                            "this one outputs last_hidden_state: give --qoi instead")
    return one % target + (" - " + one % foil if foil else "")


def fill_template(template: str, fields: Dict[str, Any], tokens: List[str], ids: List[int], token_id,
                  mask_token: Optional[str]) -> str:
    """The QoI text of one example.

    >>> fill_template("h[0,{mask},{k}] - h[0,{last},{tok:w}]", {"k": 3, "w": "b"}, ["a", "[MASK]", "b"],
    ...               [5, 9, 7], {"b": 7}.get, "[MASK]")
    'h[0,1,3] - h[0,2,7]'
    """
    def value(m):
        tok, name = m.group(1), m.group(2)
        if tok:
            if name not in fields:
                raise TemplateError(f"QoI template: no column {name!r} in this example")
            i = token_id(str(fields[name]))
            if i is None:
                raise TemplateError(f"{fields[name]!r} (column {name}) is not a single token of the vocabulary")
            return str(i)
        if name == "mask":
            if mask_token is None or mask_token not in tokens:
                raise TemplateError(f"QoI template uses {{mask}} but the example has no {mask_token or '[MASK]'} token")
            return str(tokens.index(mask_token))
        if name == "last":
            return str(len(ids) - 1)
        if name == "T":
            return str(len(ids))
        if name not in fields:
            raise TemplateError(f"QoI template: no column {name!r} in this example")
        return str(fields[name])

    return _FIELD.sub(value, template)


def _floats(a) -> List[Optional[float]]:
    """Rounded to 7 significant digits; non-finite → None."""
    return [float(f"{v:.7g}") if np.isfinite(v) else None for v in np.asarray(a, np.float64).ravel().tolist()]


def _float(v) -> Optional[float]:
    v = float(v)
    return v if np.isfinite(v) else None


def _path(result, node_id, index, semiring, tokens, layers) -> List[Dict[str, Any]]:
    from ..analysis.kqv import path_crossings
    from ..analysis.report import path_to_dict
    from ..paths import k_best_paths, top_path

    sr = result.semiring_result(semiring).semiring
    found = k_best_paths(result, node_id, index, semiring) if sr.cross_components else \
        [top_path(result, node_id, index, semiring)]
    out = []
    for p in found:
        d = path_to_dict(p)
        d["weight"] = _float(d["weight"])
        d["token"] = int(index[1])
        d["unit"] = int(index[-1])
        if layers:
            d["branches"] = [c[0] if c is not None else None for c in path_crossings(p, layers)]
        out.append(d)
    return out


def analyze_example(model, payload: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The record of one example (see the module docstring and docs/dataset.md); an example
    the model cannot run gets a record with ``skipped`` and the reason."""
    from .schema import RECORD_FORMAT, RECORD_VERSION

    t_start = time.perf_counter()
    ex = payload
    base = {"format": RECORD_FORMAT, "version": RECORD_VERSION, "id": ex["id"], "index": ex["index"]}
    try:
        return [_analyze(model, ex, base, t_start)]
    except (TemplateError, QoIError) as e:
        return [{**base, "skipped": " ".join(str(e).split())}]


def _analyze(model, ex, base, t_start) -> Dict[str, Any]:
    from ..analysis.entropy import pooled_entropy
    from ..analysis.kqv import SHORT, find_layer_inputs, kqv_credits
    from ..engine import backward, forward, parse
    from ..models.bert import word_embedding_lookup

    opts = model.options
    fields = ex["fields"]
    text = fields.get(opts["text_column"])
    if text is not None and opts.get("mask_literal"):
        text = str(text).replace(opts["mask_literal"], model.mask_token or "[MASK]")
    ids, tokens = model.encode(text, fields.get("input_ids"))
    why = model.check_length(len(ids))
    if why:
        return {**base, "tokens": tokens, "skipped": why}
    template = opts["qoi"]
    qtext = fill_template(template, fields, tokens, ids, model.token_id, model.mask_token)
    graph = model.graph(len(ids))
    qoi = parse(qtext)
    try:
        qnode = graph.node(qoi.node)
    except KeyError as e:
        raise QoIError(f"QoI {qtext!r}: {e.args[0]}") from None
    coef, mask = qoi.coefficients(qnode.shape)
    node = graph.node(opts["node"]) if opts.get("node") else word_embedding_lookup(graph)
    t0 = time.perf_counter()
    acts = forward(graph, model.feeds(graph, ids))
    t1 = time.perf_counter()
    semirings = list(opts["semirings"])
    layers = find_layer_inputs(graph) if "max" in semirings else []
    result = backward(graph, acts, qoi, semirings=semirings, retain=[node.id] + [li.node for li in layers],
                      prune=True)
    t2 = time.perf_counter()
    with np.errstate(all="ignore"):
        value = float(np.sum(coef[mask] * np.asarray(acts[qnode.id], np.float64)[mask]))
    rec = {**base, "tokens": tokens, "qoi": {"expr": qtext, "value": _float(value)}, "node": node.name}
    if opts.get("foil"):
        rec["correct"] = bool(value > 0) if np.isfinite(value) else None
    T = len(ids)
    x = np.asarray(acts[node.id], np.float64).reshape(T, -1) if np.asarray(acts[node.id]).size % T == 0 else None
    stats: Dict[str, List[Optional[float]]] = {}
    reached = lambda s: node.id in result.by_semiring[s].values  # noqa: E731
    if "real" in semirings:
        g = np.asarray(result.grad(node.id), np.float64).reshape(T, -1) if reached("real") else np.zeros((T, 1))
        stats["grad_norm"] = _floats(np.linalg.norm(g, axis=-1))
        if x is not None and x.shape == g.shape:
            stats["grad_x_input"] = _floats((g * x).sum(-1))
    if "max" in semirings:
        m = (np.asarray(result.components(node.id, "max")["max"], np.float64).reshape(T, -1) if reached("max")
             else np.full((T, 1), -np.inf))
        stats["max_plus"] = _floats(m.max(-1))
    if "entropy" in semirings and reached("entropy"):
        Z, R = (np.asarray(c, np.float64).reshape(T, -1) for c in result.raw(node.id, "entropy"))
        stats["entropy"] = _floats(pooled_entropy(Z, R, axis=-1))
    rec["stats"] = stats
    t3 = time.perf_counter()
    paths: List[Dict[str, Any]] = []
    for s in semirings:
        sr = result.semiring_result(s).semiring
        if not sr.selective or not reached(s):
            continue
        v = np.asarray(result.components(node.id, s)[sr.components[0]], np.float64)
        flat = np.where(np.isfinite(v), v, -np.inf).ravel()
        if flat.size == 0 or not np.isfinite(flat.max()):
            continue
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(flat)), v.shape))
        if len(idx) >= 2:
            paths += [{**p, "semiring": s} for p in _path(result, node.id, idx, s, tokens, layers)]
    rec["paths"] = paths
    if layers:
        credits = kqv_credits(result)
        rec["branches"] = [[SHORT[c] if c >= 0 else None for c in credits.branch[:, 0, t]] for t in range(T)]
    t4 = time.perf_counter()
    rec["timing"] = {"forward": round(t1 - t0, 5), "backward": round(t2 - t1, 5), "paths": round(t4 - t3, 5),
                     "total": round(t4 - t_start, 5), "worker": f"{socket.gethostname()}:{os.getpid()}"}
    return rec
