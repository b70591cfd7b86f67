"""Exact path sampling: random paths from an element to the QoI, drawn with probability
proportional to their mass in a path-summing semiring.

With ``semiring="absolute"`` a path is drawn with probability ``|Π w| / Z`` (the distribution
whose entropy the ``entropy`` semiring computes and whose expectations
:mod:`graphengine.semirings.features` computes); with ``"signedmass"`` and ``component="Z+"``
only paths with a positive product are drawn, ∝ Π w (``"Z-"``: the negative ones, ∝ |Π w|);
with ``"count"`` every path is equally likely. The QoI coefficient is part of the product.

How: one backward pass keeps the semiring's value Z at every element (the mass of all paths
from it to the QoI). A path at element x of node u continues into consumer (v, slot) with
probability ``mass(v, slot, all of v)[x] / Σ`` and then into v's element y by halving v's
elements: the mass of a range S of v at x is the semiring's own propagation of ``Z_v``
restricted to S through the op's Jacobian structure, read at x. Those range masses are cached
(shared by all samples), so a path costs O(length × log(size)) cached look-ups. The walk
continues in ``semiring.next_component(component, w)`` (the sign rule of ``signedmass``). The
samples are exact: no Monte Carlo chain, no approximation beyond floating point.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import forward, select
>>> g = Graph(); x = g.input("x", (1, 2)); W = g.constant(np.array([[3.0, 1.0], [-1.0, 0.0]]))
>>> h = g.call("linear", x, W, name="h"); s = g.call("sum", h, name="s")
>>> acts = forward(g, {"x": np.ones((1, 2))})
>>> paths = PathSampler(g, acts, select("s", ())).sample("x", (0, 0), 1000, seed=0)
>>> [st.name for st in paths[0].steps]                # x[0,0] has two paths: 3 via h[0,0], -1 via h[0,1]
['x', 'h', 's']
>>> abs(sum(p.weight == 3.0 for p in paths) / 1000 - 0.75) < 0.05   # probability 3/4
True
>>> pos = PathSampler(g, acts, select("s", ()), semiring="signedmass")
>>> {p.weight for p in pos.sample("x", (0, 0), 50, seed=1, component="Z+")}
{3.0}
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..engine import backward
from ..engine.propagate import Adjoint, propagate
from ..engine.qoi import QoI, parse
from ..errors import GraphEngineError
from ..ir import Graph, get_op
from ..semirings import LinearSemiring, get_semiring
from .top import Path, PathStep

__all__ = ["PathSampler", "SamplingError", "sample_paths"]


class SamplingError(GraphEngineError):
    """Nothing to sample: no path of non-zero mass, a semiring that is not a path sum."""


class PathSampler:
    """Draw paths ∝ their mass in ``semiring`` (``absolute``, ``signedmass``, ``count`` or any
    linear, non-cancelling semiring whose components are path sums).

    One backward pass (``retain="all"``) at construction; :meth:`sample` reuses it and the cache
    of range masses for any number of starts and draws.
    """

    def __init__(self, graph: Graph, activations, qoi: Union[QoI, str], semiring="absolute", device: str = "cpu"):
        sr = get_semiring(semiring)
        if not isinstance(sr, LinearSemiring) or sr.may_cancel or sr.log_space:
            raise SamplingError(f"semiring '{sr.name}' is not a sum of non-negative path masses "
                                "(use absolute, signedmass or count)")
        self.graph, self.activations, self.semiring = graph, activations, sr
        self.qoi = parse(qoi) if isinstance(qoi, str) else qoi
        self.result = backward(graph, activations, self.qoi, semirings=[sr], retain="all", device=device)
        self.values = self.result.semiring_result(sr.name).values
        self.qnode = self.result.qoi_node
        self._consumers = graph.consumers()
        self._structures: Dict[Tuple[int, int], object] = {}
        self._mass: Dict[Tuple[int, int, int, int], Tuple[np.ndarray, ...]] = {}

    # ------------------------------------------------------------------ masses
    def _structure(self, v: int, slot: int):
        key = (v, slot)
        if key not in self._structures:
            node = self.graph.nodes[v]
            xs = [self.activations[i] for i in node.inputs]
            self._structures[key] = get_op(node.op).jacobian(slot, xs, self.activations[v], node.attrs)
        return self._structures[key]

    def range_mass(self, v: int, slot: int, lo: int, hi: int) -> Tuple[np.ndarray, ...]:
        """Per component, flat over the input in ``slot``: the mass of the paths entering
        consumer ``v`` at one of its flat elements ``lo..hi-1`` (cached)."""
        key = (v, slot, lo, hi)
        if key not in self._mass:
            node, sr = self.graph.nodes[v], self.semiring
            seed = tuple(np.zeros(node.size) for _ in sr.components)
            for s, c in zip(seed, self.values[v]):
                s[lo:hi] = np.asarray(c).reshape(-1)[lo:hi]
            seed = tuple(s.reshape(node.shape) for s in seed)
            in_shape = self.graph.nodes[node.inputs[slot]].shape
            with np.errstate(all="ignore"):
                contrib = propagate(self._structure(v, slot), Adjoint(seed), in_shape, sr).value
                factor = sr.edge_factor(node, slot)
                if factor is not None:
                    contrib = sr.times(contrib, factor)
            self._mass[key] = tuple(np.asarray(c, np.float64).reshape(-1) for c in contrib)
        return self._mass[key]

    def _edges(self, u: int):
        return [(v, slot) for v, slot in self._consumers[u]
                if v <= self.qnode and v in self.values and self._structure(v, slot) is not None]

    # ------------------------------------------------------------------ sampling
    def sample(self, node, index: Sequence[int] = (), n: int = 1, seed=None, component: Union[int, str] = 0,
               rng: Optional[np.random.Generator] = None) -> List[Path]:
        """``n`` independent paths from ``node[index]`` to the QoI. An ``index`` shorter than the
        node's rank pools the trailing axes: the start element is drawn ∝ its mass too (a
        token's paths from all its hidden units). ``component``: index or name (``"Z+"``)."""
        sr, graph = self.semiring, self.graph
        c0 = sr.components.index(component) if component in sr.components else \
            (int(component) if not isinstance(component, str) else -1)
        if not 0 <= c0 < len(sr.components):
            raise SamplingError(f"component {component!r} is not one of {sr.components}")
        rng = rng if rng is not None else np.random.default_rng(seed)
        u = graph.node(node).id
        shape = graph.nodes[u].shape
        index = tuple(int(i) for i in index)
        if len(index) > len(shape) or any(not 0 <= i < s for i, s in zip(index, shape)):
            raise SamplingError(f"index {list(index)} is out of range for '{graph.nodes[u].name}' of shape {list(shape)}")
        if u not in self.values:
            raise SamplingError(f"no path from '{graph.nodes[u].name}' reaches the QoI")
        starts = np.ravel_multi_index(tuple(np.broadcast_arrays(*np.ix_(*[[i] for i in index], *[range(s) for s in
                                      shape[len(index):]]))), shape).reshape(-1) if shape else np.array([0])
        start_mass = np.asarray(self.values[u][c0], np.float64).reshape(-1)[starts]
        if not np.isfinite(start_mass).all() or start_mass.sum() <= 0:
            raise SamplingError(f"no path of non-zero finite mass from {graph.nodes[u].name}{list(index)} "
                                f"(component {sr.components[c0]})")
        return [self._one(u, int(starts[_pick(rng, start_mass)]), c0, rng) for _ in range(n)]

    def _one(self, u: int, x: int, c: int, rng) -> Path:
        from .top import local_derivative

        graph, sr = self.graph, self.semiring
        c_start = c
        steps, weight = [], 1.0
        coef = self.result.qoi_coefficients
        while True:
            node = graph.nodes[u]
            elem = tuple(int(i) for i in np.unravel_index(x, node.shape)) if node.shape else ()
            if u == self.qnode:
                steps.append(PathStep(u, node.name, node.scope, elem, None))
                weight *= float(coef.reshape(-1)[x])
                break
            edges = self._edges(u)
            masses = np.array([self.range_mass(v, s, 0, graph.nodes[v].size)[c][x] for v, s in edges])
            if not edges or not np.isfinite(masses).all() or masses.sum() <= 0:
                raise SamplingError(f"no path of non-zero finite mass continues from {node.name}{list(elem)}")
            v, slot = edges[_pick(rng, masses)]
            lo, hi = 0, graph.nodes[v].size
            while hi - lo > 1:
                mid = (lo + hi) // 2
                halves = np.array([self.range_mass(v, slot, lo, mid)[c][x], self.range_mass(v, slot, mid, hi)[c][x]])
                lo, hi = (lo, mid) if _pick(rng, halves) == 0 else (mid, hi)
            w = local_derivative(self.result, v, slot, lo, x)
            steps.append(PathStep(u, node.name, node.scope, elem, w))
            weight *= w
            c = sr.next_component(c, w)
            u, x = v, lo
        return Path(steps, weight, sr.name, sr.components[c_start])


def _pick(rng, masses) -> int:
    p = np.asarray(masses, np.float64)
    total = p.sum()
    if not total > 0:
        raise SamplingError("no mass to sample from")
    return int(min(np.searchsorted(np.cumsum(p), rng.random() * total, side="right"), len(p) - 1))


def sample_paths(graph: Graph, activations, qoi: Union[QoI, str], node, index: Sequence[int] = (), n: int = 1,
                 semiring="absolute", seed=None, component: Union[int, str] = 0) -> List[Path]:
    """``n`` paths from ``node[index]`` ∝ their mass (see :class:`PathSampler`, which keeps the
    backward pass for further draws)."""
    return PathSampler(graph, activations, qoi, semiring).sample(node, index, n, seed=seed, component=component)
