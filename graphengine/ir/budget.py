"""The memory a graph declares: every node's shape × item size, checked against
``graphengine.io.LIMITS.memory_budget`` before anything is allocated.

``load`` checks a file's graph with it (a :class:`~graphengine.errors.GraphFormatError`) and
``forward`` checks any graph, built in memory or loaded, before evaluating it (a
:class:`~graphengine.errors.ResourceLimitError`): a graph declaring ``[10**12, 4]`` is one line,
not numpy's allocation error.

>>> from graphengine.ir import Graph
>>> g = Graph(); _ = g.input("x", (1000, 4))
>>> declared_bytes(g)
32000
>>> from graphengine.io import limits
>>> with limits(memory_budget=1000):
...     check_declared(g, ValueError)
Traceback (most recent call last):
ValueError: node 0 'x' (op input) declares [1000, 4] float64 (31.2 KiB), over the memory budget of 1000 B (graphengine.io.LIMITS.memory_budget)
"""

from __future__ import annotations

import math
from typing import Type

import numpy as np

from .. import io as files


def node_bytes(node) -> int:
    """Bytes of one node's declared value (an unknown dtype name counts 8 bytes an element;
    validation reports it)."""
    try:
        itemsize = np.dtype(node.dtype).itemsize
    except TypeError:
        itemsize = 8
    return math.prod(node.shape) * itemsize


def declared_bytes(graph) -> int:
    """Bytes of every node's declared value together: what ``forward`` holds at the end."""
    return sum(node_bytes(n) for n in graph.nodes)


def budget_setting() -> str:
    """How an error line names the limit: ``the memory budget of 8 GiB (graphengine.io...)``."""
    return f"the memory budget of {files.format_bytes(files.LIMITS.memory_budget)} (graphengine.io.LIMITS.memory_budget)"


def check_declared(graph, error: Type[Exception]) -> None:
    """Raise ``error`` (one line) if one node's declared value, or all of them together, exceed
    ``graphengine.io.LIMITS.memory_budget``."""
    budget = files.LIMITS.memory_budget
    total, big = 0, []
    for node in graph.nodes:
        nbytes = node_bytes(node)
        total += nbytes
        if nbytes > budget:
            big.append((node, nbytes))
    if big:
        node, nbytes = big[0]
        more = f" (and {len(big) - 1:,} more nodes)" if len(big) > 1 else ""
        raise error(f"{node.where()} declares {list(node.shape)} {node.dtype} "
                    f"({files.format_bytes(nbytes)}), over {budget_setting()}{more}")
    if total > budget:
        raise error(f"the graph's {len(graph.nodes):,} tensors declare {files.format_bytes(total)} in "
                    f"all, over {budget_setting()}")
