"""Branch shares: the exact probability that a path from a token to the QoI goes through each
branch of each layer, under the path distribution p(path) ∝ |Π w|.

The K/Q/V/skip summary (:mod:`graphengine.analysis.kqv`) credits a token's *single heaviest*
path; branch shares use *every* path, weighted by its magnitude: for layer L and branch B the
share is ``Σ_{paths through B} |Π w| / Σ_paths |Π w|`` over the paths from the token's
elements (pooled: the token's hidden units together) to the QoI. They come from one backward
pass of the first-order expectation semiring (:class:`graphengine.semirings.FeatureExpectation`)
with one indicator feature per (layer, branch): 1 on the edges from the branch point into that
branch's consumer. A path crosses a branch point at most once, so the feature sum is 0 or 1 and
its expectation is the probability. The same pass carries ``pathlength`` (expected number of
edges and its variance).

Branches: at the attention input of every layer (:func:`graphengine.analysis.kqv.find_layer_inputs`)
``query``, ``key``, ``value``, ``skip``; at the MLP input (:data:`MLP_PATTERNS`) ``mlp`` and
``mlp_skip``; a consumer of a branch point matching none is ``other`` (omitted when absent).
Per layer the shares of one branch point add up to the probability of passing through that
point (1 for a token that reaches the QoI only through the residual stream).

When to use which: the top-path table says where the single best path goes, shares say where
the path *mass* goes; a large gap between them means the best path is not representative
(compare with the path entropy). Tokens with no path of non-zero weight get NaN shares.

>>> import numpy as np
>>> from graphengine.engine import forward, select
>>> from graphengine.models import BertConfig, build_bert, random_bert_weights, bert_feeds
>>> cfg = BertConfig.mini(num_layers=1, hidden_size=8, num_heads=2, intermediate_size=16)
>>> g = build_bert(cfg, random_bert_weights(cfg, 0, head="classification", std=0.5), 1, 4,
...                head="classification")
>>> s = branch_shares(g, forward(g, bert_feeds(np.array([[3, 1, 4, 1]]))), select("logits", (0, 1)))
>>> s.columns
['L0.query', 'L0.key', 'L0.value', 'L0.skip', 'L0.mlp', 'L0.mlp_skip']
>>> bool(np.allclose(s.share[..., :4].sum(-1), 1.0)), bool(np.allclose(s.share[..., 4:].sum(-1), 1.0))
(True, True)
>>> print(s.to_markdown().splitlines()[0])
| token | L0.query | L0.key | L0.value | L0.skip | L0.mlp | L0.mlp_skip | E[length] | sd(length) |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Union

import numpy as np

from ..engine import backward
from ..engine.qoi import QoI, parse
from ..ir import Graph
from ..ir.dtypes import is_float
from ..semirings import FeatureExpectation, PathLength
from ..semirings.features import pooled_moments
from .kqv import DEFAULT_PATTERNS, KQVError, LayerInput, find_branch_points

__all__ = ["MLP_PATTERNS", "BranchShares", "branch_points", "branch_features", "branch_shares"]

#: The MLP branch point of a Hugging Face BERT layer: the intermediate projection and the
#: residual add of ``layer.L.output`` (not its ``dense`` projection).
MLP_PATTERNS: Dict[str, str] = {
    "mlp": r"(?:^|\.)layer\.(?P<layer>\d+)\.intermediate(?:\.|$)",
    "mlp_skip": r"(?:^|\.)layer\.(?P<layer>\d+)\.output(?!\.dense(?:\.|$))(?:\.|$)",
}


def branch_points(graph: Graph, groups: Optional[Mapping[str, Mapping[str, str]]] = None) -> List[LayerInput]:
    """Every branch point of every group (default: attention with the K/Q/V/skip patterns,
    then the MLP), in graph order."""
    groups = {"attention": DEFAULT_PATTERNS, "mlp": MLP_PATTERNS} if groups is None else groups
    out = [p for name, pats in groups.items() for p in find_branch_points(graph, pats, f"{name} layer")]
    if not out:
        raise KQVError("no branch point found: expected attention or MLP blocks named like Hugging Face BERT "
                       "('...layer.L.attention.self.query', '...layer.L.intermediate', ...)")
    return sorted(out, key=lambda p: p.node)


def branch_features(points: List[LayerInput]) -> Dict[str, float]:
    """One indicator feature per (layer, branch): ``"L{layer}.{branch}"`` → ``f(node, slot)``,
    1 on the edges from the branch point into a consumer of that branch."""
    feats = {}
    for p in points:
        for branch in dict.fromkeys(p.branches.values()):
            ids = frozenset(c for c, b in p.branches.items() if b == branch)
            feats[f"L{p.layer}.{branch}"] = (lambda node, slot, ids=ids, src=p.node:
                                             float(node.id in ids and node.inputs[slot] == src))
    return feats


@dataclass
class BranchShares:
    """``share[..., j]``: probability that a path from the token goes through ``columns[j]``
    (token axes: those of the start node but the last); ``length_mean``/``length_var``: the
    number of edges; ``Z``: the total path mass per token."""

    start: str
    columns: List[str]
    share: np.ndarray
    length_mean: np.ndarray
    length_var: np.ndarray
    Z: np.ndarray

    def to_dict(self) -> Dict:
        def clean(a):
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(a).reshape(-1)]
        return {"start": self.start, "token_shape": list(self.Z.shape), "columns": self.columns,
                "share": {c: clean(self.share[..., j]) for j, c in enumerate(self.columns)},
                "length_mean": clean(self.length_mean), "length_sd": clean(np.sqrt(self.length_var)),
                "Z": clean(self.Z)}

    def to_markdown(self) -> str:
        head = "| token | " + " | ".join(self.columns) + " | E[length] | sd(length) |"
        lines = [head, "|" + "---|" * (len(self.columns) + 3)]
        for idx in np.ndindex(*self.Z.shape):
            row = [f"{v:.3f}" for v in self.share[idx]] + [f"{self.length_mean[idx]:.2f}",
                                                           f"{np.sqrt(self.length_var[idx]):.2f}"]
            lines.append(f"| {','.join(map(str, idx))} | " + " | ".join(row) + " |")
        return "\n".join(lines)


def branch_shares(graph: Graph, activations, qoi: Union[QoI, str], start=None,
                  groups: Optional[Mapping[str, Mapping[str, str]]] = None, device: str = "cpu") -> BranchShares:
    """Branch shares and path-length moments of the paths from every token of ``start``
    (default: the first branch point, i.e. the residual stream entering layer 0) to the QoI, in
    one backward pass. Each token pools the elements along the start node's last axis."""
    if isinstance(qoi, str):
        qoi = parse(qoi)
    points = branch_points(graph, groups)
    try:
        start_node = graph.node(start if start is not None else points[0].node)
    except KeyError as e:
        raise KQVError(f"branch shares: {e.args[0]}") from None
    if not is_float(start_node.dtype) or not start_node.shape:
        raise KQVError(f"branch shares start from a floating-point node with a hidden axis; '{start_node.name}' is "
                       f"{start_node.dtype} of shape {list(start_node.shape)}")
    feats = FeatureExpectation(branch_features(points), order=1, name="branch_shares")
    r = backward(graph, activations, qoi, semirings=[feats, PathLength()], retain=[start_node.id], device=device,
                 prune=True)
    shape = start_node.shape[:-1]
    try:
        b = pooled_moments(r.components(start_node.id, feats.name), axis=-1)
        n = pooled_moments(r.components(start_node.id, "pathlength"), axis=-1)
    except KeyError:  # nothing from the start reaches the QoI
        nan = np.full(shape, np.nan)
        return BranchShares(start_node.name, list(feats.feature_names), np.full(shape + (len(feats.feature_names),),
                                                                              np.nan), nan, nan, np.zeros(shape))
    share = np.stack([b[f"mean:{k}"] for k in feats.feature_names], axis=-1)
    return BranchShares(start_node.name, list(feats.feature_names), share, n["mean:length"], n["var:length"], b["Z"])
