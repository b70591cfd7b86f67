"""Giving the memory a backward pass freed back to the operating system.

A walk allocates and frees many adjoints of a few MiB each. glibc's ``malloc`` serves arrays
below its mmap threshold from its heap, and raises that threshold (up to 32 MiB) each time a
larger mmapped array is freed; freed heap memory stays in the process, so after one backward
of a large model the process keeps the walk's peak as resident memory and a second pass adds
its own fragmentation on top (GPT-2 small at 128 tokens: 2.1 GiB kept after the results were
dropped). :func:`release` asks glibc to return its free pages (``malloc_trim``); with another
C library it does nothing. ``backward`` calls it before and after walking a :func:`large` graph,
``forward`` before evaluating one (a small graph's pass frees little, and trimming costs a walk
over the heap's free lists).

>>> from graphengine.ir import Graph
>>> g = Graph(); _ = g.input("x", (1000, 1000))
>>> large(g), release() in (True, False)
(False, True)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math


@functools.lru_cache(maxsize=1)
def _trim():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc.malloc_trim if libc is not None else None
    except (OSError, AttributeError):  # not glibc: no malloc_trim
        return None


LARGE_ELEMENTS = 1 << 24  # elements over all nodes: 128 MiB of float64 values


def large(graph) -> bool:
    """Does ``graph`` hold at least :data:`LARGE_ELEMENTS` elements over all its nodes?"""
    return sum(math.prod(n.shape) for n in graph.nodes) >= LARGE_ELEMENTS


def release() -> bool:
    """Return the heap's free memory to the operating system; True when glibc released some."""
    trim = _trim()
    return bool(trim(0)) if trim is not None else False
