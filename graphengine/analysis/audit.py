"""Structural audits: prove that given tokens have no path to a QoI, or list the paths that leak.

Every token (an index prefix of a node: ``(batch, position)`` of a ``[B, T, d]`` embedding
pools all its hidden units) gets one of three verdicts from one backward pass of the ``count``,
``bool`` and ``absolute`` semirings:

- ``"no path"``: the graph has no path at all from the token to the QoI (count = 0). This is a
  proof for *every* input, because edges an op declares absent (``where`` with a constant mask,
  out-of-range movements) are absent whatever the values.
- ``"zero mass"``: paths exist, but the product of local derivatives of every one of them is
  exactly 0 at this input (Z = Σ|Π w| = 0): e.g. an additive −∞/−10⁹ attention mask makes the
  masked attention probabilities exactly 0, yet the matmul with the values still declares
  the edge. The token has no first-order influence *at this input*; not a proof for others.
- ``"leak"``: some path has a non-zero product. The heaviest leaking paths (``maxabs``) are
  listed, with their weights; where only structural paths exist, one reaching path (``bool``)
  is listed.

``passed`` is true when no token leaks (``strict=True``: when every token has no path at all).
Future positions in a decoder (:func:`future_tokens`), padding and masked positions are the
usual token sets.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import forward, select
>>> g = Graph(); x = g.input("x", (1, 3, 2))
>>> keep = g.constant(np.array([[[True, True], [True, True], [False, False]]]))
>>> y = g.call("where", keep, x, g.constant(np.zeros((1, 3, 2))), name="y")
>>> s = g.call("sum", y, axes=[1, 2], name="s")
>>> rep = audit(g, forward(g, {"x": np.ones((1, 3, 2))}), select("s", (0,)), "x", [(0, 1), (0, 2)])
>>> [(t.token, t.verdict) for t in rep.tokens], rep.passed
([((0, 1), 'leak'), ((0, 2), 'no path')], False)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from ..engine import backward
from ..engine.qoi import QoI, parse
from ..errors import GraphEngineError
from ..ir import Graph
from ..paths import Path, top_path

__all__ = ["AuditError", "TokenAudit", "AuditReport", "audit", "future_tokens"]


class AuditError(GraphEngineError):
    """A bad audit request (a token index out of range, a node that is not floating point)."""


@dataclass
class TokenAudit:
    token: Tuple[int, ...]
    verdict: str            # "no path", "zero mass" or "leak"
    paths: float            # number of paths (float64; inf beyond 1.8e308)
    mass: float             # Σ |Π w| over them
    leaks: List[Path] = field(default_factory=list)

    def to_dict(self) -> Dict:
        from .report import path_to_dict

        return {"token": list(self.token), "verdict": self.verdict, "paths": self.paths, "mass": self.mass,
                "leaks": [path_to_dict(p) for p in self.leaks]}


@dataclass
class AuditReport:
    node: str
    qoi: QoI
    strict: bool
    tokens: List[TokenAudit]

    @property
    def passed(self) -> bool:
        bad = ("leak", "zero mass") if self.strict else ("leak",)
        return not any(t.verdict in bad for t in self.tokens)

    def to_dict(self) -> Dict:
        return {"node": self.node, "qoi": {"node": str(self.qoi.node), "terms": [[list(i), c] for i, c in self.qoi.terms]},
                "strict": self.strict, "passed": self.passed, "tokens": [t.to_dict() for t in self.tokens]}


def _elements(shape, token: Tuple[int, ...]) -> List[Tuple[int, ...]]:
    return [tuple(token) + rest for rest in np.ndindex(*shape[len(token):])]


def audit(graph: Graph, activations, qoi: Union[QoI, str], node, tokens: Sequence[Sequence[int]],
          strict: bool = False, max_paths: int = 3, device: str = "cpu") -> AuditReport:
    """Audit ``tokens`` (index prefixes of ``node``) against ``qoi`` (see the module
    docstring); up to ``max_paths`` leaking paths are listed per token, heaviest first."""
    qoi = parse(qoi) if isinstance(qoi, str) else qoi
    try:
        n = graph.node(node)
    except KeyError as e:
        raise AuditError(f"audit: {e.args[0]}") from None
    toks = [tuple(int(i) for i in t) for t in tokens]
    for t in toks:
        if len(t) > len(n.shape) or any(not 0 <= i < s for i, s in zip(t, n.shape)):
            raise AuditError(f"token {list(t)} is out of range for '{n.name}' of shape {list(n.shape)}")
    r = backward(graph, activations, qoi, semirings=["count", "bool", "absolute", "maxabs"], retain=[n.id],
                 device=device, prune=True)
    have = n.id in r.retained("count")
    count = r.get(n.id, "count") if have else np.zeros(n.shape)
    mass = r.get(n.id, "absolute") if have else np.zeros(n.shape)
    out = []
    for t in toks:
        c, z = float(np.sum(count[t])), float(np.sum(mass[t]))
        verdict = "no path" if c == 0 else ("zero mass" if z == 0 else "leak")
        leaks: List[Path] = []
        if c > 0:
            elems = _elements(n.shape, t)
            if z != 0:
                top = np.asarray(r.get(n.id, "maxabs"))
                order = sorted((e for e in elems if top[e] > 0), key=lambda e: -float(top[e]))
                leaks = [top_path(r, n.id, e, "maxabs") for e in order[:max_paths]]
            else:
                leaks = [top_path(r, n.id, e, "bool") for e in elems if count[e] > 0][:max_paths]
        out.append(TokenAudit(t, verdict, c, z, leaks))
    return AuditReport(n.name, qoi, strict, out)


def future_tokens(graph: Graph, node, qoi: Union[QoI, str], axis: int = 1) -> List[Tuple[int, ...]]:
    """The tokens of ``node`` after the QoI's position, per example: for every QoI term with
    index ``(b, t, ...)`` (``t`` on ``axis`` of the QoI node), the prefixes ``(b, t')`` of
    ``node`` with ``t < t' < T`` (a decoder must not see them)."""
    qoi = parse(qoi) if isinstance(qoi, str) else qoi
    shape = graph.node(node).shape
    if len(shape) <= axis:
        raise AuditError(f"'{graph.node(node).name}' of shape {list(shape)} has no position axis {axis}")
    out = []
    for index, _ in qoi.terms:
        if len(index) <= axis:
            raise AuditError(f"QoI index {list(index)} has no position axis {axis}")
        prefix = tuple(index[:axis])
        out += [prefix + (p,) for p in range(index[axis] + 1, shape[axis])]
    return list(dict.fromkeys(out))
