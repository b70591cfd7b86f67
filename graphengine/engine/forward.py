"""Numpy forward evaluation of a graph.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> g = Graph(); x = g.input("x", (3,)); y = g.call("exp", x, name="y"); g.mark_output(y)
>>> acts = forward(g, {"x": np.zeros(3)})
>>> acts[y.id]
array([1., 1., 1.])

Before anything is allocated, the graph's declared shapes are checked against
``graphengine.io.LIMITS.memory_budget`` (:func:`graphengine.ir.budget.check_declared`):

>>> big = Graph(); _ = big.input("x", (10**12, 4))
>>> forward(big, {"x": np.zeros(1)})
Traceback (most recent call last):
graphengine.errors.ResourceLimitError: node 0 'x' (op input) declares [1000000000000, 4] float64 (29.1 TiB), over the memory budget of 8 GiB (graphengine.io.LIMITS.memory_budget)

A boolean input (a mask) takes booleans only: integers, floats or NaN are refused, not cast:

>>> m = Graph(); _ = m.input("mask", (2,), dtype="bool")
>>> forward(m, {"mask": np.array([1, 0])})
Traceback (most recent call last):
graphengine.errors.FeedError: feed 'mask' must be booleans (bool), got int64: a mask is not cast from numbers
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Union

import numpy as np

from ..errors import FeedError, GraphEngineError, ResourceLimitError
from ..ir import Graph, get_op
from ..ir.budget import check_declared
from . import heap

Activations = Dict[int, np.ndarray]


def check_feeds(graph: Graph, feeds: Mapping[str, np.ndarray]) -> Dict[int, np.ndarray]:
    """Match feeds to input nodes by name, checking shape and casting to the declared dtype."""
    out = {}
    inputs = graph.inputs()
    unknown = sorted(set(feeds) - {n.name for n in inputs})
    if unknown:
        raise FeedError(f"feed(s) {', '.join(unknown)} name no input of the graph "
                        f"(inputs: {', '.join(n.name for n in inputs) or 'none'})")
    for node in inputs:
        if node.name not in feeds:
            raise FeedError(f"missing feed for input '{node.name}' (shape {list(node.shape)}, {node.dtype})")
        value = np.asarray(feeds[node.name])
        if tuple(value.shape) != tuple(node.shape):
            raise FeedError(f"feed '{node.name}' has shape {list(value.shape)}, the graph expects {list(node.shape)}")
        if node.dtype.startswith("int") and not np.issubdtype(value.dtype, np.integer):
            raise FeedError(f"feed '{node.name}' must be integers ({node.dtype}), got {value.dtype}")
        if node.dtype == "bool" and value.dtype != np.bool_:
            raise FeedError(f"feed '{node.name}' must be booleans (bool), got {value.dtype}: "
                            "a mask is not cast from numbers")
        out[node.id] = value.astype(node.dtype, copy=False)
    return out


Intervention = Callable[[np.ndarray], np.ndarray]


def forward(graph: Graph, feeds: Mapping[str, np.ndarray],
            interventions: Optional[Mapping[Union[int, str], Intervention]] = None) -> Activations:
    """Evaluate every node; returns ``{node id: value}`` for all nodes (the backward pass needs
    the inputs and outputs of every op it differentiates).

    ``interventions`` maps a node (name or id) to a function of its computed value returning
    the value that replaces it for every later node (causal interventions: zero or mean
    ablation, patching in another input's activation; :mod:`graphengine.analysis.causal`). The
    function gets a copy it may modify; its result must keep the node's shape.

    >>> from graphengine.ir import Graph
    >>> g = Graph(); x = g.input("x", (2,)); y = g.call("exp", x, name="y"); z = g.call("sum", y, name="z")
    >>> def zero_first(v): v[0] = 0.0; return v
    >>> float(forward(g, {"x": np.zeros(2)}, {"y": zero_first})[z.id])
    1.0

    The declared shapes must fit ``graphengine.io.LIMITS.memory_budget`` (else
    :class:`~graphengine.errors.ResourceLimitError`, before any allocation). Floating-point
    exceptions (overflow, 0/0, log 0) give inf/NaN values without numpy warnings;
    :func:`graphengine.analysis.numerics.forward_report` says where they appeared."""
    check_declared(graph, ResourceLimitError)
    if heap.large(graph):
        heap.release()  # what an earlier pass's results, since dropped, left in the heap
    acts: Activations = dict(check_feeds(graph, feeds))
    hooks = {}
    for ref, fn in (interventions or {}).items():
        try:
            hooks[graph.node(ref).id] = fn
        except KeyError as e:
            raise GraphEngineError(f"intervention on {ref!r}: {e.args[0]}") from None
    for node in graph.nodes:
        if node.op == "input":
            pass
        elif node.op in ("parameter", "constant"):
            acts[node.id] = graph.arrays[node.id]
        else:
            opdef = get_op(node.op)
            try:
                with np.errstate(all="ignore"):
                    value = opdef.forward([acts[i] for i in node.inputs], node.attrs)
            except (IndexError, ValueError) as e:
                raise GraphEngineError(f"{node.where()}: forward failed: {e}") from None
            acts[node.id] = np.asarray(value).astype(node.dtype, copy=False)
        if node.id in hooks:
            new = np.asarray(hooks[node.id](np.array(acts[node.id], copy=True)))
            if new.shape != tuple(node.shape):
                raise GraphEngineError(f"{node.where()}: an intervention returned shape {list(new.shape)}, "
                                       f"expected {list(node.shape)}")
            acts[node.id] = new.astype(node.dtype, copy=False)
    return acts
