"""What a backward pass returns: per semiring, per retained node, the semiring value and (for
semirings that keep them) element backpointers (:class:`Backpointers`, recorded by the
semiring's backpointer policy, :mod:`graphengine.semirings.pointers`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ..ir import Graph
from ..semirings.base import Semiring, Value
from ..semirings.pointers import Backpointers


@dataclass
class SemiringResult:
    semiring: Semiring
    values: Dict[int, Value] = field(default_factory=dict)
    backpointers: Dict[int, Backpointers] = field(default_factory=dict)

    def finalized(self, node_id: int) -> Dict[str, np.ndarray]:
        return self.semiring.finalize(self.values[node_id])


class BackwardResult:
    """Results of one backward pass.

    >>> # result.get("embeddings", "real") is the gradient of the QoI w.r.t. that node
    """

    def __init__(self, graph: Graph, qoi_node: int, semirings: List[Semiring], granularity: str = "scalar",
                 activations=None):
        self.graph = graph
        self.qoi_node = qoi_node
        self.granularity = granularity
        self.activations = activations
        self.by_semiring: Dict[str, SemiringResult] = {s.name: SemiringResult(s) for s in semirings}
        self.cone: Optional[np.ndarray] = None  # set by a pruned backward: cone[i] = node i was walked

    def pruned_away(self, node) -> bool:
        """True when ``backward`` (``prune=True``) skipped ``node``: no retained node depends on
        it, so it has no value and no backpointers in this result."""
        return self.cone is not None and not bool(self.cone[self.graph.node(node).id])

    @property
    def semirings(self) -> List[str]:
        return list(self.by_semiring)

    def semiring_result(self, semiring: Optional[str] = None) -> SemiringResult:
        """The raw per-semiring record (values, backpointers, the semiring object) of ``semiring``
        (may be omitted when only one semiring was computed)."""
        if semiring is None:
            if len(self.by_semiring) != 1:
                raise KeyError(f"several semirings in this result ({', '.join(self.by_semiring)}): name one")
            return next(iter(self.by_semiring.values()))
        if semiring not in self.by_semiring:
            raise KeyError(f"semiring '{semiring}' was not computed (have: {', '.join(self.by_semiring)})")
        return self.by_semiring[semiring]

    def retained(self, semiring: Optional[str] = None) -> List[int]:
        return sorted(self.semiring_result(semiring).values)

    def components(self, node, semiring: Optional[str] = None) -> Dict[str, np.ndarray]:
        """All finalized arrays (e.g. ``{"grad": ...}``, ``{"entropy": ..., "Z": ..., "R": ...}``)."""
        sr = self.semiring_result(semiring)
        nid = self.graph.node(node).id
        if nid not in sr.values:
            name = self.graph.node(node).name
            raise KeyError(f"node '{name}' was not retained (pass retain=[...]) or no path reaches the QoI from it")
        return sr.finalized(nid)

    def get(self, node, semiring: Optional[str] = None) -> np.ndarray:
        """The headline statistic of ``semiring`` at ``node`` (the gradient, for ``real``)."""
        return next(iter(self.components(node, semiring).values()))

    def grad(self, node) -> np.ndarray:
        return self.get(node, "real")

    def raw(self, node, semiring: Optional[str] = None) -> Value:
        return self.semiring_result(semiring).values[self.graph.node(node).id]

    def backpointers(self, node, semiring: Optional[str] = None) -> Backpointers:
        return self.semiring_result(semiring).backpointers[self.graph.node(node).id]
