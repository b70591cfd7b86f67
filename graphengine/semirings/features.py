"""Expectations of additive edge features over the path distribution p(path) ∝ |Π w|.

A *feature* gives every edge a number depending on where the edge is in the graph: its
consumer node and the input slot it enters (so also the op and the scope of the consumer, and
the input node ``node.inputs[slot]``). Along a path the feature adds up, and the first-order
expectation semiring computes, in one backward pass, ``⟨Z, R⟩ = ⟨Σ_paths |Π w|, Σ_paths |Π w|·F⟩``
with ``F`` the path's feature sum, so that ``E[F] = R/Z``. The second-order semiring
(``order=2``) adds ``T = Σ_paths |Π w|·F²``, giving ``Var[F] = T/Z − (R/Z)²``. Several features
ride in one pass (one ``R`` (and ``T``) component each).

How the feature reaches the walk: an edge's semiring value is ``lift(w) ⊗ edge_factor(node,
slot)``. The walk (:mod:`graphengine.engine.backward`) only knows the weight ``w`` and calls
:meth:`~graphengine.semirings.base.Semiring.edge_factor` once per (consumer, slot) — ``None``
for every weight-only semiring. Here ``lift(w) = ⟨|w|, 0, 0⟩`` and the factor is
``⟨1, f, f²⟩``; the expectation semiring is commutative and ⊗ distributes over ⊕, so
multiplying the consumer's whole contribution by the factor equals multiplying every edge.
Features that depend on the weight itself are the entropy semiring's business
(:mod:`graphengine.semirings.expectation`, feature −log|w|).

The distribution is over paths with a non-zero product; ``E[F]`` is NaN where no such path
exists (Z = 0): there is nothing to average.

``pathlength`` (registered) is the second-order semiring with the single feature 1 per edge:
the expected number of edges of a path and its variance (a path through k ops has k edges:
``len(path.steps) − 1`` for :class:`graphengine.paths.Path`).

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import forward, backward, select
>>> g = Graph(); x = g.input("x", (2,))
>>> a = g.call("tanh", x, name="a"); b = g.call("mul", a, g.constant(np.array([1.0, 3.0])), name="b")
>>> s = g.call("sum", g.call("add", b, x), name="s")
>>> through_a = FeatureExpectation({"via_a": lambda node, slot: float(node.inputs[slot] == a.id)})
>>> r = backward(g, forward(g, {"x": np.zeros(2)}), select("s", ()), semirings=[through_a, "pathlength"])
>>> r.components("x", through_a.name)["mean:via_a"]   # x[1]: weights 3 (via a) and 1 (skip)
array([0.5 , 0.75])
>>> r.components("x", "pathlength")["mean:length"]   # 4 edges via a, 2 by the skip
array([3. , 3.5])
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Union

import numpy as np

from .families import LinearSemiring

Feature = Union[float, Callable[[object, int], float]]


class FeatureExpectation(LinearSemiring):
    """``⟨Z, R_1…R_m⟩`` (``order=1``) or ``⟨Z, R_1…R_m, T_1…T_m⟩`` (``order=2``) for the named
    additive edge ``features`` (a mapping name → constant or ``f(consumer_node, slot) -> float``).

    ``finalize`` gives ``mean:NAME`` (the headline is the first feature's mean), ``var:NAME``
    (order 2), ``Z``, and the raw sums ``R:NAME`` / ``T:NAME`` (pool them over elements by adding
    before dividing by the pooled Z: :func:`pooled_moments`).
    """

    name = "features"

    def __init__(self, features: Mapping[str, Feature], order: int = 1, name: Optional[str] = None):
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order!r}")
        if not features:
            raise ValueError("FeatureExpectation needs at least one feature")
        self.features = dict(features)
        self.order = order
        self.feature_names = tuple(self.features)
        if name is not None:
            self.name = name
        m = len(self.feature_names)
        self.components = ("Z",) + tuple(f"R:{k}" for k in self.feature_names) + \
            (tuple(f"T:{k}" for k in self.feature_names) if order == 2 else ())
        self.zero_elements = (0.0,) * len(self.components)
        self.one_elements = (1.0,) + (0.0,) * (len(self.components) - 1)
        self._m = m

    def lift(self, w):
        aw = np.abs(np.asarray(w, dtype=self.dtype))
        z = np.zeros_like(aw)
        return (aw,) + (z,) * (len(self.components) - 1)

    def times(self, a, b):
        m = self._m
        Z = a[0] * b[0]
        R = tuple(a[0] * b[1 + i] + a[1 + i] * b[0] for i in range(m))
        if self.order == 1:
            return (Z,) + R
        T = tuple(a[0] * b[1 + m + i] + 2.0 * a[1 + i] * b[1 + i] + a[1 + m + i] * b[0] for i in range(m))
        return (Z,) + R + T

    def matmul(self, a, w):  # lifted edges carry only Z: one BLAS call per component
        aw = np.abs(np.asarray(w, dtype=self.dtype))
        return tuple(np.matmul(c, aw) for c in a), None

    def scale(self, a, w):
        aw = np.abs(np.asarray(w, dtype=self.dtype))
        return tuple(c * aw for c in a)

    def edge_factor(self, node, slot):
        f = [float(v(node, slot)) if callable(v) else float(v) for v in self.features.values()]
        return (1.0,) + tuple(f) + (tuple(x * x for x in f) if self.order == 2 else ())

    def finalize(self, v):
        return moments(v[0], dict(zip(self.feature_names, v[1:1 + self._m])),
                       dict(zip(self.feature_names, v[1 + self._m:])) if self.order == 2 else None)

    def path_magnitude(self, finalized):
        return np.asarray(finalized["Z"], np.float64)

    def __repr__(self):
        return f"FeatureExpectation({list(self.feature_names)}, order={self.order})"


def moments(Z, R: Mapping[str, np.ndarray], T: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
    """``mean:NAME = R/Z`` and ``var:NAME = T/Z − mean²`` (NaN where Z = 0), with the raw sums."""
    Z = np.asarray(Z, np.float64)
    ok = Z > 0
    safe = np.where(ok, Z, 1.0)
    out: Dict[str, np.ndarray] = {}
    for k, r in R.items():
        mean = np.where(ok, np.asarray(r) / safe, np.nan)
        out[f"mean:{k}"] = mean
        if T is not None:
            out[f"var:{k}"] = np.where(ok, np.maximum(np.asarray(T[k]) / safe - mean * mean, 0.0), np.nan)
    out["Z"] = Z
    out.update({f"R:{k}": r for k, r in R.items()})
    if T is not None:
        out.update({f"T:{k}": t for k, t in T.items()})
    return out


def pooled_moments(finalized: Mapping[str, np.ndarray], axis=None) -> Dict[str, np.ndarray]:
    """The moments of the paths starting anywhere in a group of elements (summed over ``axis``;
    all of them by default): sums of Z, R and T, then divided — not a mean of per-element means.

    >>> f = moments(np.array([1.0, 3.0]), {"x": np.array([0.0, 3.0])})
    >>> float(pooled_moments(f)["mean:x"])
    0.75
    """
    names = [k[2:] for k in finalized if k.startswith("R:")]
    Z = np.sum(finalized["Z"], axis=axis)
    R = {k: np.sum(finalized[f"R:{k}"], axis=axis) for k in names}
    T = {k: np.sum(finalized[f"T:{k}"], axis=axis) for k in names} if any(k.startswith("T:") for k in finalized) \
        else None
    return moments(Z, R, T)


class PathLength(FeatureExpectation):
    """Expected number of edges of a path (p ∝ |Π w|) and its variance: ``mean:length``,
    ``var:length``."""

    name = "pathlength"

    def __init__(self):
        super().__init__({"length": 1.0}, order=2, name="pathlength")
