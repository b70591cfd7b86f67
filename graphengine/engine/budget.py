"""What a backward pass will hold, estimated from the graph's declared shapes before it starts.

The walk holds, per semiring, the adjoint of every node it has reached and not yet pushed, the
values of the retained nodes (one array per component: a k-best value is 2K arrays, whose
object overhead dominates on small tensors) and (selective semirings) the backpointers of every reached node;
an ⊕ briefly holds two operands and the result, and a k-best ⊕ also sorts 2·(2K) candidates per
element. :func:`backward_estimate` adds these up from the declared shapes (a lower bound of the
real peak: the activations, already allocated, are not counted) and :func:`check_backward`
refuses a pass whose estimate exceeds ``graphengine.io.LIMITS.memory_budget`` with one line.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.semirings import get_semiring
>>> g = Graph(); x = g.input("x", (1000, 100)); y = g.call("exp", x, name="y")
>>> backward_estimate(g, [get_semiring("real")], keep={0})
3200512
>>> from graphengine.io import limits
>>> with limits(memory_budget=10**6):
...     check_backward(g, [get_semiring("kbest:8")], keep={0})
Traceback (most recent call last):
graphengine.errors.ResourceLimitError: backward in kbest:8 (K = 8: 16 values per element) needs an estimated 150 MiB for the values and backpointers of 100,000-element tensors, over the memory budget of 977 KiB (graphengine.io.LIMITS.memory_budget)
"""

from __future__ import annotations

import math
from typing import Collection, Optional, Sequence

import numpy as np

from .. import io as files
from ..errors import ResourceLimitError
from ..ir.budget import budget_setting

POINTER_BYTES = 4 + 2 + 4        # consumer node (int32), slot (int16), element (int32) per component
RANK_BYTES = 2 + 4               # k-best: the consumer path's rank (int16); its element stays int64
SORT_BYTES = 8 + 1 + 8           # a k-best candidate: value, presence flag, sort position
ARRAY_BYTES = 128                # one numpy array object: k-best keeps 2K arrays per value, 4 per backpointer


def per_element(sr) -> dict:
    """Bytes per tensor element of one semiring: its ``value``, its ``pointers`` and the
    ``working`` set of one ⊕ (two operands and the result, plus k-best's candidates)."""
    n = len(sr.components)
    value_bytes = np.dtype(getattr(sr, "dtype", np.float64)).itemsize  # float32 values: 4
    pointers = n * (POINTER_BYTES + (RANK_BYTES if sr.cross_components else 0)) if sr.selective else 0
    working = 3 * n * value_bytes + (2 * n * SORT_BYTES if sr.cross_components else 0)
    return {"value": n * value_bytes, "pointers": pointers, "working": working}


def per_tensor(sr) -> dict:
    """Bytes per tensor of one semiring whatever its size: the array objects of a ``value``
    (one per component) and of its ``pointers`` (four per component)."""
    n = len(sr.components)
    return {"value": n * ARRAY_BYTES, "pointers": 4 * n * ARRAY_BYTES if sr.selective else 0}


def backward_estimate(graph, semirings: Sequence, keep: Collection[int], reached: Optional[np.ndarray] = None,
                      keep_backpointers: bool = True) -> int:
    """Bytes the walk will hold at least: the working set on the largest reached tensor, the
    retained values (``keep``) and the backpointers of every reached node (``reached[i]``:
    node i may get an adjoint; default every node)."""
    sizes = [math.prod(n.shape) for n in graph.nodes]
    live = [i for i in range(len(sizes)) if reached is None or reached[i]]
    largest = max((sizes[i] for i in live), default=0)
    total = 0
    for sr in semirings:
        b, t = per_element(sr), per_tensor(sr)
        total += largest * b["working"] + 3 * t["value"]
        total += sum(sizes[i] * b["value"] + t["value"] for i in keep)
        if keep_backpointers:
            total += sum(sizes[i] * b["pointers"] + t["pointers"] for i in live)
    return total


def check_backward(graph, semirings: Sequence, keep: Collection[int], reached: Optional[np.ndarray] = None,
                   keep_backpointers: bool = True) -> None:
    """Raise :class:`~graphengine.errors.ResourceLimitError` (one line naming the semirings, K for
    k-best, the estimate and the limit) if :func:`backward_estimate` exceeds the memory budget."""
    estimate = backward_estimate(graph, semirings, keep, reached, keep_backpointers)
    if estimate <= files.LIMITS.memory_budget:
        return
    names = []
    for sr in semirings:
        k = getattr(sr, "k", None)
        names.append(f"{sr.name} (K = {k:,}: {len(sr.components):,} values per element)" if k else sr.name)
    sizes = [math.prod(n.shape) for n in graph.nodes]
    largest = max((s for i, s in enumerate(sizes) if reached is None or reached[i]), default=0)
    raise ResourceLimitError(f"backward in {', '.join(names)} needs an estimated {files.format_bytes(estimate)} for "
                             f"the values and backpointers of {largest:,}-element tensors, over {budget_setting()}")
