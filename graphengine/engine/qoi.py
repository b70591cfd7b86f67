"""Quantities of interest: the scalar(s) a backward pass explains.

A QoI is a linear functional ``Σ_i c[i] · y[i]`` of one node ``y`` with sparse coefficients:
the seed of the backward pass puts ``lift(c[i])`` on the chosen elements and 0̄ elsewhere. A
*batch* QoI seeds one functional per example in a single pass; since no path joins two
examples, per-example results for activations are exact (parameter adjoints are pooled).

>>> q = difference("logits", (0, 3, 1), (0, 3, 0))
>>> q.terms
(((0, 3, 1), 1.0), ((0, 3, 0), -1.0))
>>> parse("logits[0,3,1] - logits[0,3,0]") == q
True
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Sequence, Tuple, Union

import numpy as np

from ..errors import QoIError

Index = Tuple[int, ...]


@dataclass(frozen=True)
class QoI:
    node: Union[int, str]
    terms: Tuple[Tuple[Index, float], ...]

    def coefficients(self, shape) -> Tuple[np.ndarray, np.ndarray]:
        """Dense coefficient array and the mask of elements that carry an edge to the QoI."""
        coef = np.zeros(shape, dtype=np.float64)
        mask = np.zeros(shape, dtype=bool)
        for index, c in self.terms:
            if len(index) != len(shape) or any(not -s <= i < s for i, s in zip(index, shape)):
                raise QoIError(f"QoI index {list(index)} is out of range for node '{self.node}' of shape {list(shape)}")
            coef[index] += c
            mask[index] = True
        return coef, mask

    def seed(self, sr, shape):
        """The adjoint the backward pass starts from: ``lift(c[i])`` on the chosen elements and
        ``sr``'s 0̄ elsewhere. Seeded with a paper view (docs/granularity.md) whose 0̄ is a path of
        weight 0, this is the original implementation's dense seed.

        >>> from graphengine.semirings import get_semiring
        >>> q = difference("y", (0,), (2,))
        >>> [c.tolist() for c in q.seed(get_semiring("max"), (3,))]
        [[1.0, -inf, -1.0], [1.0, inf, -1.0]]
        >>> [c.tolist() for c in q.seed(get_semiring("max").paper_view(), (3,))]
        [[1.0, 0.0, -1.0], [1.0, 0.0, -1.0]]
        """
        coef, mask = self.coefficients(shape)
        return sr.where(mask, sr.scale(sr.ones(shape), coef), sr.zeros(shape))


def select(node, index: Sequence[int]) -> QoI:
    """One output scalar, e.g. ``select("logits", (b, pos, cls))``."""
    return QoI(node, ((tuple(int(i) for i in index), 1.0),))


def difference(node, good: Sequence[int], bad: Sequence[int]) -> QoI:
    """``y[good] − y[bad]``, e.g. logit(good verb) − logit(bad verb) at the [MASK]."""
    return QoI(node, ((tuple(int(i) for i in good), 1.0), (tuple(int(i) for i in bad), -1.0)))


def weighted(node, coefficients: np.ndarray) -> QoI:
    """``Σ c[i] y[i]`` over the nonzero entries of a dense coefficient array."""
    c = np.asarray(coefficients, dtype=np.float64)
    if c.ndim == 0:
        return QoI(node, (((), float(c)),)) if c != 0 else QoI(node, ())
    return QoI(node, tuple((tuple(int(i) for i in ix), float(c[ix])) for ix in zip(*np.nonzero(c))))


def batch(qois: Sequence[QoI]) -> QoI:
    """Seed several QoIs of the same node (one per example) in one backward pass."""
    nodes = {q.node for q in qois}
    if len(nodes) != 1:
        raise QoIError(f"a batch QoI needs one node, got {sorted(map(str, nodes))}")
    return QoI(qois[0].node, tuple(t for q in qois for t in q.terms))


_TERM = r"\s*([^\[\]\s][^\[\]]*?)\s*\[\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*\]\s*"


@functools.lru_cache(maxsize=256)  # a QoI is immutable; a data set reuses a few texts many times
def parse(text: str) -> QoI:
    """Parse ``name[i,j,k]`` or ``name[i,j] - name[k,l]`` (one node)."""
    m = re.fullmatch(_TERM + r"(?:-" + _TERM + r")?", text)
    if not m:
        raise QoIError(f"cannot parse QoI {text!r}: expected 'node[i,j,...]' or 'node[i,...] - node[k,...]'")
    name, idx = m.group(1), tuple(int(i) for i in m.group(2).split(","))
    if m.group(3) is None:
        return select(name, idx)
    if m.group(3) != name:
        raise QoIError(f"QoI {text!r}: both terms must name the same node")
    return difference(name, idx, tuple(int(i) for i in m.group(4).split(",")))
