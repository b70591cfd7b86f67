"""Causal checks of a path: does intervening on the elements it visits move the QoI more than
intervening on other paths?

A path explains the QoI *structurally* (its product is large); a causal check asks whether the
forward computation actually depends on it. :func:`path_effect` re-runs the forward pass with
every element the path visits (all steps but the QoI itself) replaced, and returns
ΔQoI = QoI(intervened) − QoI(clean). Replacements (``mode``):

- ``"zero"``: 0 (zero ablation);
- ``"mean"``: the mean of that node's activation over all its elements in the clean run (mean
  ablation: keeps the scale of the node, removes what is specific to the element);
- ``"counterfactual"``: the same element's activation on another input (``counterfactual``
  feeds; activation patching).

:func:`causal_check` puts the effect among alternatives: paths drawn uniformly at random among
all paths from the same start node with the same number of steps (exact uniform sampling with
the ``count`` semiring, :mod:`graphengine.paths.sample`), and the k best paths by |product|
from the same start element. ``percentile`` is the fraction of random paths whose |ΔQoI| is at
most the path's; ``kbest_rank`` is 1 + the number of k-best paths with a strictly larger
|ΔQoI|. A path that is heavy but causally inert (low percentile) should not be trusted as an
explanation; elements shared by many paths (the QoI's own inputs) make every effect large, so
compare against the alternatives rather than reading the effect alone.

>>> from graphengine.engine import forward, backward
>>> from graphengine.models.synthetic import planted_path, output_qoi
>>> from graphengine.paths import best_input_path
>>> p = planted_path(3, 4, np.random.default_rng(0))      # linear layers, one heavy path
>>> q = output_qoi(p.graph, p.output)
>>> best = best_input_path(backward(p.graph, forward(p.graph, p.feeds), q, ["maxabs"]), "maxabs")
>>> check = causal_check(p.graph, p.feeds, q, best, n_random=50, k=3)
>>> round(check.effect, 2), check.kbest_rank, check.percentile >= 0.75
(-630.34, 1, True)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Union

import numpy as np

from ..engine import backward, forward
from ..engine.qoi import QoI, parse
from ..errors import GraphEngineError
from ..ir import Graph
from ..paths import Path, PathSampler, k_best_paths

__all__ = ["MODES", "CausalCheck", "qoi_value", "path_interventions", "path_effect", "causal_check"]

MODES = ("zero", "mean", "counterfactual")


class CausalError(GraphEngineError):
    """A bad intervention request (unknown mode, missing counterfactual input)."""


def qoi_value(graph: Graph, acts, qoi: QoI) -> float:
    """Σ c·y of ``qoi`` on the activations ``acts``."""
    node = graph.node(qoi.node)
    coef, mask = qoi.coefficients(node.shape)
    return float(np.sum(coef[mask] * np.asarray(acts[node.id], np.float64)[mask]))


def path_interventions(graph: Graph, path: Path, mode: str, clean, counterfactual=None) -> Dict[int, object]:
    """The ``forward(..., interventions=...)`` argument replacing every element ``path`` visits
    but its last (the QoI), from the clean activations (``mode="mean"``) or the counterfactual
    ones (``mode="counterfactual"``)."""
    if mode not in MODES:
        raise CausalError(f"unknown intervention mode {mode!r} (known: {', '.join(MODES)})")
    if mode == "counterfactual" and counterfactual is None:
        raise CausalError("mode 'counterfactual' needs the counterfactual input's activations")
    elements: Dict[int, List] = defaultdict(list)
    for st in path.steps[:-1]:
        elements[st.node].append(tuple(st.element))
    hooks = {}
    for nid, elems in elements.items():
        idx = tuple(np.array(ix) for ix in zip(*elems)) if elems[0] else ()
        if mode == "zero":
            new = 0.0
        elif mode == "mean":
            new = float(np.mean(clean[nid]))
        else:
            new = np.asarray(counterfactual[nid])[idx]

        def hook(v, idx=idx, new=new):
            v[idx] = new
            return v
        hooks[nid] = hook
    return hooks


def path_effect(graph: Graph, feeds: Mapping[str, np.ndarray], qoi: Union[QoI, str], path: Path, mode: str = "zero",
                counterfactual: Optional[Mapping[str, np.ndarray]] = None, clean=None, counterfactual_acts=None) -> float:
    """ΔQoI when every element ``path`` visits (but the QoI) is replaced (see the module
    docstring). ``clean``/``counterfactual_acts``: activations already computed, to save passes."""
    qoi = parse(qoi) if isinstance(qoi, str) else qoi
    clean = clean if clean is not None else forward(graph, feeds)
    if mode == "counterfactual" and counterfactual_acts is None and counterfactual is not None:
        counterfactual_acts = forward(graph, counterfactual)
    hooks = path_interventions(graph, path, mode, clean, counterfactual_acts)
    return qoi_value(graph, forward(graph, feeds, hooks), qoi) - qoi_value(graph, clean, qoi)


@dataclass
class CausalCheck:
    """One path's intervention effect among alternatives (see :func:`causal_check`)."""

    mode: str
    qoi: float
    effect: float
    random_effects: np.ndarray
    kbest_effects: np.ndarray
    percentile: float
    kbest_rank: int
    n_steps: int = field(default=0)

    def to_dict(self) -> Dict:
        return {"mode": self.mode, "qoi": self.qoi, "effect": self.effect, "steps": self.n_steps,
                "percentile_among_random": self.percentile, "rank_among_kbest": self.kbest_rank,
                "random_effects": [float(v) for v in self.random_effects],
                "kbest_effects": [float(v) for v in self.kbest_effects]}


def causal_check(graph: Graph, feeds: Mapping[str, np.ndarray], qoi: Union[QoI, str], path: Path, mode: str = "zero",
                 counterfactual: Optional[Mapping[str, np.ndarray]] = None, n_random: int = 100, k: int = 5,
                 seed: int = 0, max_draws: int = 50) -> CausalCheck:
    """ΔQoI of ``path`` beside ``n_random`` uniformly random paths of the same length from the
    same start node and the ``k`` best paths (by |product|) from the same start element.

    Random paths are drawn until ``n_random`` have the path's length or ``max_draws × n_random``
    draws were made (then fewer are compared; ``percentile`` is NaN when none was found)."""
    qoi = parse(qoi) if isinstance(qoi, str) else qoi
    if mode not in MODES:
        raise CausalError(f"unknown intervention mode {mode!r} (known: {', '.join(MODES)})")
    clean = forward(graph, feeds)
    cf = forward(graph, counterfactual) if counterfactual is not None else None

    def effect(p):
        return path_effect(graph, feeds, qoi, p, mode, clean=clean, counterfactual_acts=cf)

    start = path.steps[0]
    own = effect(path)
    rng = np.random.default_rng(seed)
    sampler = PathSampler(graph, clean, qoi, semiring="count")
    same: List[Path] = []
    for _ in range(max_draws):
        same += [p for p in sampler.sample(start.node, (), n_random, rng=rng) if len(p.steps) == len(path.steps)]
        if len(same) >= n_random:
            break
    rand = np.array([effect(p) for p in same[:n_random]])
    kb = backward(graph, clean, qoi, semirings=[f"kbestabs:{k}"], retain=[start.node])
    best = np.array([effect(p) for p in k_best_paths(kb, start.node, start.element)])
    pct = float(np.mean(np.abs(rand) <= abs(own))) if rand.size else float("nan")
    return CausalCheck(mode, qoi_value(graph, clean, qoi), own, rand, best, pct,
                       1 + int(np.sum(np.abs(best) > abs(own) * (1 + 1e-12))), len(path.steps))
