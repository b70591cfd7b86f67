"""Which branch of an attention block carries the top path: the K/Q/V/skip summary (docs/method.md).

At the residual stream entering a BERT layer's attention block (the *layer input*) every
element has four consumer branches: the query, key and value projections and the skip
(residual) connection. For one token position the paper's "oplus" aggregation takes, over the
hidden units, the unit with the largest M⁺ (the max-product semiring's best signed path
product), credits that M⁺ to the branch its backpointer names and 0 to the other three, and
averages per (layer, branch) over sentences and over a token subset. "% through keys" is
K / (K + Q + V + skip).

Finding the layer inputs (:func:`find_layer_inputs`) uses structure and scopes, not node
names: a layer input is a node whose consumers include, for one layer index L, a node in each
of the scopes ``…layer.L.attention.self.query``, ``….key``, ``….value`` (or below them) and the
residual add in ``…layer.L.attention.output``. The patterns are anchored at a dot or the start
of the scope, so a leading prefix (``bert.encoder.layer.0…``, ``roberta.…``) does not matter;
other naming schemes can pass their own ``patterns``. A consumer of a layer input that matches
none of the four branches is reported as branch ``other`` (none exist in a BERT graph).

Conventions (where the method, docs/method.md, is silent):

- Ties between hidden units go to the lowest unit index (``numpy.argmax``); ties between
  consumer branches were already broken by the backward walk (see ``engine/backward.py``).
- A token none of whose units reaches the QoI (M⁺ = −∞ everywhere) gets credit 0 in every
  branch and still counts in the averages; :attr:`KQVSummary.n_unreached` reports how many.
- Averages are over all (sentence, token) pairs of a subset pooled together — every token of
  the subset weighs the same, as in the authors' analysis tables (one row per sentence, token,
  layer and branch, then a mean).
- M⁺ is signed, as in the paper: if every path from a token is negative, the credited value is
  negative.
- Two more statistics come with the paper's mean: ``total`` (the *sum* of the credited M⁺
  values over the subset's tokens) and ``bucket_mean`` (the authors' "bucket_sum" variant: per
  token, each branch gets the sum of the M⁺ of every hidden unit whose backpointer names it;
  averaged like the mean). ``top_share`` is the fraction of the subset's tokens whose top path
  leaves through each branch; :meth:`KQVSummary.share` gives "% through keys" from the means.

Works on ``scalar`` and ``paper`` granularity results alike (only the consumer *node* of each
backpointer is used), for the ``max`` semiring (M⁺, the paper's choice) or ``maxabs``.

>>> import numpy as np
>>> from graphengine.engine import forward, backward, batch, select
>>> from graphengine.models import BertConfig, build_bert, random_bert_weights, bert_feeds
>>> cfg = BertConfig.mini(num_layers=1, hidden_size=8, num_heads=2, intermediate_size=16)
>>> g = build_bert(cfg, random_bert_weights(cfg, 0, head="classification", std=0.5), 2, 4,
...                head="classification")
>>> [(li.layer, li.name) for li in find_layer_inputs(g)]
[(0, 'embeddings.output')]
>>> acts = forward(g, bert_feeds(np.array([[3, 1, 4, 1], [5, 9, 2, 6]])))
>>> r = backward(g, acts, batch([select("logits", (b, 1)) for b in range(2)]),
...              semirings=["max"], retain=kqv_retain(g))
>>> s = kqv_summary(r, subsets={"first": np.array([True, False, False, False]),
...                             "other": np.array([False, True, True, True])})
>>> s.n_tokens
{'first': 2, 'other': 6}
>>> float(s.top_share["other"][0, BRANCHES.index("skip")])  # one layer: later tokens reach the pooled
0.0
>>> print(s.to_markdown().splitlines()[0])
| subset | layer | tokens | query | key | value | skip | % keys |
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..engine.result import BackwardResult
from ..errors import GraphEngineError
from ..ir import Graph
from ..ir.dtypes import is_float
from ..semirings import get_semiring

__all__ = ["BRANCHES", "COLUMNS", "SHORT", "DEFAULT_PATTERNS", "KQVError", "LayerInput", "find_layer_inputs",
           "find_branch_points", "kqv_retain", "path_crossings", "KQVCredits", "kqv_credits", "KQVSummary", "kqv_summary"]

BRANCHES = ("query", "key", "value", "skip")
COLUMNS = BRANCHES + ("other",)
#: One-letter labels of :data:`COLUMNS`, for per-token tables.
SHORT = ("Q", "K", "V", "skip", "other")
_OTHER = len(BRANCHES)

_L = r"(?:^|\.)layer\.(?P<layer>\d+)\.attention\."
#: Scope patterns of the four branches (Hugging Face BERT module paths, any prefix); each has
#: a ``layer`` group. The skip branch is the residual add in ``attention.output`` (not its
#: ``dense`` projection).
DEFAULT_PATTERNS: Dict[str, str] = {
    "query": _L + r"self\.query(?:\.|$)",
    "key": _L + r"self\.key(?:\.|$)",
    "value": _L + r"self\.value(?:\.|$)",
    "skip": _L + r"output(?!\.dense(?:\.|$))(?:\.|$)",
}


def _supported(result: BackwardResult, semiring: str) -> bool:
    """The summary needs element backpointers of the *largest path product* (its first
    component, neither a log nor a count): ``max`` (M⁺) and ``maxabs`` among the shipped ones."""
    try:
        s = result.semiring_result(semiring).semiring if semiring in result.semirings else get_semiring(semiring)
    except ValueError:
        return False
    return s.selective and not s.cross_components and s.directions[:1] == ("max",) and s.weighted \
        and not s.log_space


class KQVError(GraphEngineError):
    """The graph has no recognisable attention layer inputs, or a result lacks what the summary needs."""


# ================================================================== finding layer inputs
@dataclass(frozen=True)
class LayerInput:
    """The residual stream entering layer ``layer``'s attention block and its consumer branches.

    ``branches`` maps each consumer node id to its branch ("query" ... "skip", or "other");
    :meth:`columns` turns backpointer consumer ids into branches, the one place that does.

    >>> li = LayerInput(0, 3, "h", {7: "query", 8: "key", 9: "value", 10: "skip"})
    >>> li.columns(np.array([8, -1, 10])).tolist()      # -1: no backpointer
    [1, -1, 3]
    >>> li.branch(9), li.branch(-1)
    ('value', None)
    """

    layer: int
    node: int
    name: str
    branches: Mapping[int, str]

    def columns(self, consumers: np.ndarray) -> np.ndarray:
        """For an array of consumer node ids (a backpointer's ``node`` field), the index into
        :data:`COLUMNS` of each one's branch; -1 where the id is not a consumer (-1: no edge)."""
        consumers = np.asarray(consumers, dtype=np.int64)
        top = max([int(consumers.max(initial=-1))] + list(self.branches)) + 1
        lookup = np.full(top + 1, -1, np.int64)        # the extra last slot answers id -1
        for cid, b in self.branches.items():
            lookup[cid] = COLUMNS.index(b)
        return lookup[np.where(consumers >= 0, consumers, top)]

    def branch(self, consumer: int) -> Optional[str]:
        """The branch of one consumer node id (None when it is not a consumer)."""
        return self.branches.get(int(consumer))


def _compile(patterns: Optional[Mapping[str, str]], branches: Sequence[str] = BRANCHES):
    patterns = DEFAULT_PATTERNS if patterns is None else patterns
    if set(patterns) != set(branches):
        raise KQVError(f"patterns must name exactly the branches {tuple(branches)}, got {sorted(patterns)}")
    out = []
    for b in branches:
        try:
            rx = re.compile(patterns[b])
        except re.error as e:
            raise KQVError(f"pattern for branch {b!r} is not a regular expression: {e}") from None
        if "layer" not in rx.groupindex:
            raise KQVError(f"pattern for branch {b!r} needs a (?P<layer>...) group")
        out.append((b, rx))
    return out


def _classify(scope: str, compiled) -> Optional[Tuple[str, int]]:
    for b, rx in compiled:
        m = rx.search(scope)
        if m:
            return b, int(m.group("layer"))
    return None


def find_layer_inputs(graph: Graph, patterns: Optional[Mapping[str, str]] = None) -> List[LayerInput]:
    """The attention-block input of every layer, sorted by layer (see the module docstring).

    Raises :class:`KQVError` when no node qualifies or two qualify for one layer.
    """
    _compile(patterns)  # exactly the four branches
    found = find_branch_points(graph, patterns if patterns is not None else DEFAULT_PATTERNS, "attention layer")
    if not found:
        raise KQVError("no attention layer input found: expected a node consumed by nodes in the scopes "
                       "'...layer.L.attention.self.query', '.key', '.value' and '...layer.L.attention.output'")
    return found


def find_branch_points(graph: Graph, patterns: Mapping[str, str], what: str = "branch point") -> List[LayerInput]:
    """Per layer, the node whose consumers include one node of every branch in ``patterns``
    (branch name → scope regular expression with a ``layer`` group), sorted by layer; consumers
    matching no branch of that layer are branch ``other``. The attention inputs
    (:func:`find_layer_inputs`) are the case :data:`DEFAULT_PATTERNS`; the MLP input of a BERT
    layer is another (:data:`graphengine.analysis.shares.MLP_PATTERNS`). Raises
    :class:`KQVError` when two nodes qualify for one layer; returns [] when none does."""
    compiled = _compile(patterns, tuple(patterns))
    consumers = graph.consumers()
    found: Dict[int, LayerInput] = {}
    for node in graph.nodes:
        if not is_float(node.dtype) or not consumers[node.id]:
            continue
        labels = {}
        for cid, _ in consumers[node.id]:
            labels[cid] = _classify(graph.nodes[cid].scope, compiled)
        per_layer = defaultdict(set)
        for lab in labels.values():
            if lab is not None:
                per_layer[lab[1]].add(lab[0])
        for layer, branches in per_layer.items():
            if branches != set(patterns):
                continue
            if layer in found:
                raise KQVError(f"two nodes look like the input of {what} {layer}: "
                               f"'{graph.nodes[found[layer].node].name}' and '{node.name}'")
            bmap = {cid: (lab[0] if lab is not None and lab[1] == layer else "other") for cid, lab in labels.items()}
            found[layer] = LayerInput(layer, node.id, node.name, bmap)
    return [found[k] for k in sorted(found)]


def kqv_retain(graph: Graph, patterns: Optional[Mapping[str, str]] = None) -> List[str]:
    """Names of the layer inputs, for ``backward(..., retain=kqv_retain(graph))``."""
    return [li.name for li in find_layer_inputs(graph, patterns)]


def path_crossings(path, layers: Sequence[LayerInput]) -> List[Optional[Tuple[str, Tuple[int, ...]]]]:
    """Where a path leaves each layer input: per layer of ``layers``, ``(branch, element)`` of
    the step at the layer input (the branch of the next step's node), or None where the path
    does not pass through it. ``path`` is a :class:`graphengine.paths.Path` (or anything whose
    ``steps`` have ``node`` and ``element``).
    """
    at = {li.node: k for k, li in enumerate(layers)}
    out: List[Optional[Tuple[str, Tuple[int, ...]]]] = [None] * len(layers)
    for step, nxt in zip(path.steps, path.steps[1:]):
        k = at.get(step.node)
        if k is not None:
            out[k] = (layers[k].branch(nxt.node) or "other", tuple(step.element))
    return out


# ================================================================== per-token credits
@dataclass
class KQVCredits:
    """Per (layer, sentence, token) results of the oplus aggregation.

    ``value`` [L, N, T]: the winning unit's M⁺ (−∞ where no unit reaches the QoI); ``branch``
    [L, N, T]: index into :data:`COLUMNS` of the branch its backpointer names (−1 if none);
    ``unit`` [L, N, T]: the winning hidden unit; ``bucket`` [L, N, T, 5]: per branch the sum of the
    M⁺ of the units whose backpointer names it; ``count`` [L, N, T, 5]: how many units that is.
    """

    layers: Tuple[int, ...]
    value: np.ndarray
    branch: np.ndarray
    unit: np.ndarray
    bucket: np.ndarray
    count: np.ndarray

    @property
    def num_sentences(self) -> int:
        return self.value.shape[1]

    @property
    def seq_len(self) -> int:
        return self.value.shape[2]

    def labels(self, sentence: int = 0) -> List[List[str]]:
        """Per token of one sentence, per layer, the :data:`SHORT` label of the winning
        branch ("-" where no unit reaches the QoI)."""
        return [[SHORT[c] if c >= 0 else "-" for c in self.branch[:, sentence, t]] for t in range(self.seq_len)]

    @property
    def oplus(self) -> np.ndarray:
        """[L, N, T, 5]: the credited M⁺ in the winning branch, 0 elsewhere (and 0 if unreached)."""
        out = np.zeros(self.value.shape + (len(COLUMNS),))
        hit = self.branch >= 0
        idx = np.nonzero(hit)
        out[idx + (self.branch[hit],)] = self.value[hit]
        return out

    @staticmethod
    def concat(parts: Sequence["KQVCredits"]) -> "KQVCredits":
        """Join credits of several results along the sentence axis (same layers and length)."""
        parts = list(parts)
        if not parts:
            raise KQVError("no results to summarize")
        first = parts[0]
        for p in parts[1:]:
            if p.layers != first.layers or p.seq_len != first.seq_len:
                raise KQVError(f"cannot pool results with layers {list(p.layers)} x length {p.seq_len} and "
                               f"layers {list(first.layers)} x length {first.seq_len}")
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts], axis=1)  # noqa: E731
        return KQVCredits(first.layers, cat("value"), cat("branch"), cat("unit"), cat("bucket"), cat("count"))


def _semiring(result: BackwardResult, semiring: Optional[str]) -> str:
    if semiring is None:
        have = [s for s in result.semirings if _supported(result, s)]
        if not have:
            raise KQVError(f"the K/Q/V summary needs a 'max' (or 'maxabs') backward result; this one has "
                           f"{', '.join(result.semirings)}")
        return have[0]
    if not _supported(result, semiring):
        raise KQVError(f"the K/Q/V summary supports the semirings that keep element backpointers of the "
                       f"largest path product (max, maxabs), not {semiring!r}")
    if semiring not in result.semirings:
        raise KQVError(f"semiring {semiring!r} was not computed in this result (have: {', '.join(result.semirings)})")
    return semiring


def kqv_credits(result: BackwardResult, semiring: Optional[str] = None,
                patterns: Optional[Mapping[str, str]] = None) -> KQVCredits:
    """The oplus credits of every layer input of ``result.graph`` for ``result``'s examples.

    The layer inputs must have been retained (``retain=kqv_retain(graph)``); a layer input of
    shape [B, T, H] gives B sentences (leading axes are flattened; [T, H] is one sentence).
    ``semiring`` defaults to ``max`` (M⁺) if computed, else ``maxabs``.
    """
    sr = _semiring(result, semiring)
    graph = result.graph
    per_layer = []
    for li in find_layer_inputs(graph, patterns):
        node = graph.nodes[li.node]
        if len(node.shape) < 2:
            raise KQVError(f"layer input '{li.name}' has shape {list(node.shape)}; expected [..., tokens, hidden]")
        sres = result.by_semiring[sr]
        if li.node not in sres.values:
            raise KQVError(f"layer input '{li.name}' (layer {li.layer}) has no retained '{sr}' values: pass "
                           f"retain=kqv_retain(graph) to backward (or no path reaches the QoI from it)")
        if li.node not in sres.backpointers:
            raise KQVError(f"layer input '{li.name}' has no backpointers: run backward with keep_backpointers=True")
        T, H = node.shape[-2:]
        m = np.asarray(sres.values[li.node][0], dtype=np.float64).reshape(-1, T, H)
        m = np.where(np.isnan(m), -np.inf, m)
        consumer = np.asarray(sres.backpointers[li.node].node[0]).reshape(-1, T, H)
        unit_branch = li.columns(consumer)
        unit_branch[m == -np.inf] = -1
        unit = np.argmax(m, axis=-1)
        value = np.take_along_axis(m, unit[..., None], -1)[..., 0]
        branch = np.take_along_axis(unit_branch, unit[..., None], -1)[..., 0]
        branch[value == -np.inf] = -1
        bucket = np.zeros(m.shape[:2] + (len(COLUMNS),))
        count = np.zeros(m.shape[:2] + (len(COLUMNS),), np.int64)
        for col in range(len(COLUMNS)):
            sel = unit_branch == col
            bucket[..., col] = np.where(sel, m, 0.0).sum(-1)
            count[..., col] = sel.sum(-1)
        per_layer.append((li.layer, value, branch, unit, bucket, count))
    stack = lambda i: np.stack([p[i] for p in per_layer])  # noqa: E731
    return KQVCredits(tuple(p[0] for p in per_layer), stack(1), stack(2), stack(3), stack(4), stack(5))


# ================================================================== summary
@dataclass
class KQVSummary:
    """Per subset, arrays [layers, 5] over :data:`COLUMNS` (query, key, value, skip, other).

    ``mean`` is the paper's statistic; ``total``, ``bucket_mean`` and ``top_share`` are described
    in the module docstring. ``n_tokens[subset]`` counts the (sentence, token) pairs averaged,
    ``n_unreached[subset]`` [layers] those with no path to the QoI.
    """

    layers: Tuple[int, ...]
    subsets: Tuple[str, ...]
    n_sentences: int
    n_tokens: Dict[str, int]
    n_unreached: Dict[str, np.ndarray]
    mean: Dict[str, np.ndarray]
    total: Dict[str, np.ndarray]
    bucket_mean: Dict[str, np.ndarray]
    top_share: Dict[str, np.ndarray]
    branches: Tuple[str, ...] = field(default=COLUMNS)

    def share(self, subset: str, branch: str = "key", stat: str = "mean") -> np.ndarray:
        """[layers]: ``stat[branch] / Σ stat`` over all branches — "% through keys" as a
        fraction for ``branch="key"`` (NaN where the sum is 0)."""
        a = self._stat(stat)[subset]
        tot = a.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot != 0, a[:, COLUMNS.index(branch)] / np.where(tot != 0, tot, 1), np.nan)

    def _stat(self, stat: str) -> Dict[str, np.ndarray]:
        if stat not in ("mean", "total", "bucket_mean", "top_share"):
            raise KQVError(f"unknown statistic {stat!r} (mean, total, bucket_mean, top_share)")
        return getattr(self, stat)

    def _columns(self) -> Tuple[str, ...]:
        has_other = any(np.any(self.top_share[s][:, _OTHER]) or np.any(self.bucket_mean[s][:, _OTHER])
                        for s in self.subsets)
        return COLUMNS if has_other else BRANCHES

    def rows(self, stat: str = "mean") -> List[Dict[str, Any]]:
        """One row per (subset, layer): ``subset``, ``layer``, ``tokens``, a value per branch and
        ``keys_share`` (from ``stat``)."""
        a = self._stat(stat)
        cols = self._columns()
        out = []
        for s in self.subsets:
            ks = self.share(s, "key", stat)
            for i, layer in enumerate(self.layers):
                row = {"subset": s, "layer": layer, "tokens": self.n_tokens[s]}
                row.update({b: float(a[s][i, COLUMNS.index(b)]) for b in cols})
                row["keys_share"] = float(ks[i])
                out.append(row)
        return out

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able: every statistic as nested lists, plus counts."""
        return {"layers": list(self.layers), "branches": list(COLUMNS), "subsets": list(self.subsets),
                "n_sentences": self.n_sentences, "n_tokens": dict(self.n_tokens),
                "n_unreached": {s: v.tolist() for s, v in self.n_unreached.items()},
                **{stat: {s: getattr(self, stat)[s].tolist() for s in self.subsets}
                   for stat in ("mean", "total", "bucket_mean", "top_share")}}

    def to_markdown(self, stat: str = "mean", digits: int = 3) -> str:
        """A Markdown table: one row per (subset, layer), one column per branch, then "% keys"."""
        cols = self._columns()
        head = "| subset | layer | tokens | " + " | ".join(cols) + " | % keys |"
        lines = [head, "|" + "---|" * (len(cols) + 4)]
        for r in self.rows(stat):
            vals = " | ".join(f"{r[b]:.{digits}g}" for b in cols)
            ks = "n/a" if np.isnan(r["keys_share"]) else f"{100 * r['keys_share']:.1f}"
            lines.append(f"| {r['subset']} | {r['layer']} | {r['tokens']} | {vals} | {ks} |")
        return "\n".join(lines)


Source = Union[BackwardResult, KQVCredits]


def _masks(subsets, n: int, T: int) -> Dict[str, np.ndarray]:
    if subsets is None:
        return {"all": np.ones((n, T), bool)}
    if not isinstance(subsets, Mapping) or not subsets:
        raise KQVError("subsets must be a non-empty mapping {name: boolean mask [sentences, tokens] or [tokens]}")
    out = {}
    for name, mask in subsets.items():
        m = np.asarray(mask)
        if m.dtype != bool:
            raise KQVError(f"subset {name!r}: the mask must be boolean, got {m.dtype}")
        if m.shape == (T,):
            m = np.broadcast_to(m, (n, T))
        if m.shape != (n, T):
            raise KQVError(f"subset {name!r}: mask shape {list(m.shape)} does not match [{n}, {T}] "
                           f"(sentences, tokens) or [{T}]")
        out[str(name)] = m
    return out


def kqv_summary(source: Union[Source, Sequence[Source]], subsets: Optional[Mapping[str, Any]] = None,
                semiring: Optional[str] = None, patterns: Optional[Mapping[str, str]] = None) -> KQVSummary:
    """Average the oplus credits per (layer, branch) over sentences and token subsets.

    ``source``: a :class:`BackwardResult`, a :class:`KQVCredits`, or a list of them (pooled
    along the sentence axis, in order). ``subsets``: ``{name: mask}`` with boolean masks
    [sentences, tokens] (or [tokens], the same for every sentence); default one subset "all".
    """
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    credits = KQVCredits.concat([c if isinstance(c, KQVCredits) else kqv_credits(c, semiring, patterns)
                                 for c in items])
    masks = _masks(subsets, credits.num_sentences, credits.seq_len)
    oplus = credits.oplus
    L = len(credits.layers)
    mean, total, bucket, share, n_tok, unreached = {}, {}, {}, {}, {}, {}
    for name, m in masks.items():
        k = int(m.sum())
        n_tok[name] = k
        total[name] = oplus[:, m].sum(axis=1) if k else np.zeros((L, len(COLUMNS)))
        denom = max(k, 1)
        mean[name] = total[name] / denom if k else np.full((L, len(COLUMNS)), np.nan)
        bucket[name] = credits.bucket[:, m].sum(axis=1) / denom if k else np.full((L, len(COLUMNS)), np.nan)
        br = credits.branch[:, m]
        share[name] = (np.stack([(br == c).sum(axis=1) for c in range(len(COLUMNS))], axis=-1) / denom
                       if k else np.full((L, len(COLUMNS)), np.nan))
        unreached[name] = (br < 0).sum(axis=1)
    return KQVSummary(credits.layers, tuple(masks), credits.num_sentences, n_tok, unreached, mean, total, bucket, share)
