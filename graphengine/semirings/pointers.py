"""Backpointer policies: how a semiring records the winners of its ⊕, chosen once per semiring
(its ``pointers`` attribute).

The backward walk (:mod:`graphengine.engine`) carries, next to each adjoint value, an *index*
per component naming the consumer element the value came from, and keeps for every reached
element the winning edge: consumer node, input slot and consumer element. The walk only calls
the policy; what the indices encode is the policy's business:

- :class:`NoPointers` records nothing (the linear and log-linear semirings: ⊕ does not pick).
- :class:`ElementPointers`: component ``c`` of a value came from component ``c`` of one
  consumer element (max, maxabs, maxplus, bool). Positions returned by a reduction pick, per
  component, the winning index along the reduced axis.
- :class:`PairPointers`: element pointers for the signed max pair, where a −∞ path is a path.
- :class:`RankedPointers`: a component's value may come from *any* component of the consumer
  (k-best: top-3 at an input may extend the consumer's 1st path). Indices encode
  ``element * n_components + component`` and reduction positions ``n * n_components + source
  component``; :meth:`RankedPointers.finish` decodes them into ``element`` and ``rank``.

Ties keep the first candidate (the earlier consumer, the lower index), as the semirings do.

Finished records are stored compactly: element indices as int32 where they fit, a record that
holds one value everywhere as a read-only broadcast view, and a large record of which at most
1/8 of the elements are reached (an embedding table, of which a sentence reaches a few rows)
written sparsely, -1 everywhere and then the reached elements only (the same arrays as the
dense finish, without its passes over the whole table).

>>> import numpy as np
>>> ElementPointers().seed((2,), 2)
(array([0, 1]), array([0, 1]))
>>> RankedPointers().seed((2,), 2)
(array([0, 2]), array([1, 3]))
>>> bp = ElementPointers().first(7, 0, None, (2,), 1)
>>> ElementPointers().finish((np.array([1.0, -np.inf]),), (-np.inf,), bp).node
(array([ 7, -1], dtype=int32),)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

Index = Optional[Tuple[np.ndarray, ...]]


@dataclass
class Backpointers:
    """For each component: the consumer node id, the consumer's input slot and the flat
    consumer element index of the edge that won the ⊕ at every element (-1 where there is no
    path, and at the QoI node itself; ``element`` is -1 everywhere at ``paper`` granularity,
    whose backpointers name only the consumer node)."""

    node: Tuple[np.ndarray, ...]
    slot: Tuple[np.ndarray, ...]
    element: Tuple[np.ndarray, ...]
    rank: Optional[Tuple[np.ndarray, ...]] = None  # k-best: the consumer path's component


# Storage of a finished record (what a backward result keeps for every reached node): ``node``
# is int32 and ``slot`` int16; ``element`` is int32 when every index fits (a consumer with fewer
# than 2**31 elements), else int64 (k-best keeps int64). An array that holds one value
# everywhere (the consumer and slot of a node with one consumer, or -1 at a node no path
# reaches, such as the QoI node) is a read-only broadcast view that takes no memory: copy an
# array before writing into it.


def _shaped(arr, shape, dtype) -> np.ndarray:
    """``arr`` broadcast to ``shape`` as ``dtype`` (no copy when it already is)."""
    arr = arr if arr.shape == shape else np.broadcast_to(arr, shape)
    return arr if arr.dtype == dtype else arr.astype(dtype)


@functools.lru_cache(maxsize=4096)
def _constant(value, shape) -> np.ndarray:
    """A read-only array of ``shape`` holding ``value`` everywhere (a broadcast view, no memory)."""
    return np.broadcast_to(value, shape)


def _copy_shaped(arr, shape, dtype) -> np.ndarray:
    """A fresh array: ``arr`` broadcast to ``shape`` as ``dtype``."""
    return np.array(arr if arr.shape == shape else np.broadcast_to(arr, shape), dtype=dtype)


_INT32_MAX = np.iinfo(np.int32).max


def _element_dtype(arr) -> type:
    """int32 when every element index in ``arr`` fits it, else int64."""
    arr = np.asarray(arr)
    return np.int32 if arr.dtype.itemsize <= 4 or arr.size == 0 or int(arr.max()) <= _INT32_MAX else np.int64


def _uniform(arr) -> bool:
    """True when ``arr`` is a broadcast view of one value (all strides 0)."""
    return arr.ndim == 0 or not any(arr.strides)


def _kept(arr, shape, dtype) -> np.ndarray:
    """The stored form of ``arr`` broadcast to ``shape`` as ``dtype``: a read-only view of one
    value when it holds one value (no memory), else a fresh array."""
    if _uniform(arr):
        return _constant(dtype(arr[(0,) * arr.ndim] if arr.size else -1), tuple(shape))
    return _copy_shaped(arr, shape, dtype)


SPARSE_FINISH_MIN = 1 << 14  # records at least this large, with at most 1/8 of their elements
                             # reached, are finished by writing only the reached elements


def _live(dead) -> Optional[Tuple[np.ndarray, ...]]:
    """The indices (``np.nonzero``) of the elements that are not ``dead``, when they are few
    enough for a sparse finish to pay (an embedding table of which a sentence reaches a few
    rows), else ``None``."""
    if dead.size < SPARSE_FINISH_MIN or (dead.size - np.count_nonzero(dead)) * 8 > dead.size:
        return None
    return np.nonzero(~dead)


def _finished(arr, dead, fill_dead: bool, shape, dtype, live=None) -> np.ndarray:
    """``arr`` (shape ``shape``) with -1 where ``dead``; ``fill_dead``: whether any element is;
    ``live``: :func:`_live` of ``dead`` when the sparse finish applies (the same array: -1
    everywhere, then the reached elements written)."""
    if not fill_dead:
        return _kept(arr, shape, dtype)
    if (dead.all() if live is None else live[0].size == 0) or (
            _uniform(arr) and (arr.size == 0 or arr[(0,) * arr.ndim] == -1)):  # -1 everywhere
        return _constant(dtype(-1), tuple(shape))
    if live is not None:
        return _written(np.broadcast_to(arr, shape)[live], live, shape, dtype)
    return np.where(dead, dtype(-1), _shaped(arr, shape, dtype))


def _written(values, live, shape, dtype) -> np.ndarray:
    """A fresh ``dtype`` array of ``shape``: -1, with ``values`` at the indices ``live``."""
    out = np.full(shape, -1, dtype)
    out[live] = values
    return out


class NoPointers:
    """Nothing is recorded: every method returns ``None`` (or the value unchanged)."""

    kept = False    # does the semiring keep backpointers at all?
    ranked = False  # may a component's winner come from another component?

    def seed(self, shape: Sequence[int], n: int) -> Index:
        """The indices of a consumer's own adjoint: every element names itself."""
        return None

    def gather(self, idx: Index, pos, take: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Index:
        """Indices after a reduction whose winning positions are ``pos`` (one array per component,
        or ``None``); ``take(i, p)`` gathers an index array at positions along the reduced axis."""
        return None

    def scale(self, sr, value, idx: Index, w):
        """``value ⊗ lift(w)`` and the indices that go with it."""
        return sr.scale(value, w), idx

    def first(self, consumer: int, slot: int, idx: Index, shape, n: int) -> Optional[Backpointers]:
        """The record of an input's first contribution (from ``consumer`` through ``slot``)."""
        return None

    def merge(self, old: Optional[Backpointers], consumer: int, slot: int, idx: Index, picks, shape,
              n: int) -> Optional[Backpointers]:
        """The record after ``old ⊕ contribution``; ``picks`` is what the semiring's ``plus`` said."""
        return None

    def empty(self, shape, n: int) -> Optional[Backpointers]:
        """The record of the QoI node (no consumer)."""
        return None

    def finish(self, value, zero_elements, record: Optional[Backpointers]) -> Optional[Backpointers]:
        """The user-facing backpointers of a complete adjoint (-1 where there is no path)."""
        return None


class ElementPointers(NoPointers):
    """Per component, the consumer element whose same component won."""

    kept = True

    def seed(self, shape, n):
        idx = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)
        return (idx,) * n

    def gather(self, idx, pos, take):
        if idx is None or pos is None:
            return None
        return tuple(i if p is None else take(i, p) for i, p in zip(idx, pos))

    def _elements(self, idx, shape, n):
        return idx if idx is not None else (_constant(np.int64(-1), tuple(shape)),) * n

    def first(self, consumer, slot, idx, shape, n):
        idx = self._elements(idx, shape, n)
        shape = tuple(shape)
        node = _constant(np.int32(consumer), shape)  # read-only views: written only
        slots = _constant(np.int16(slot), shape)     # through np.where / masking copies
        return Backpointers((node,) * n, (slots,) * n, tuple(_shaped(np.asarray(i), shape, np.int64) for i in idx))

    def merge(self, old, consumer, slot, idx, picks, shape, n):
        if picks is None:
            return old
        idx = self._elements(idx, shape, n)
        nodes, slots, elems = list(old.node), list(old.slot), list(old.element)
        for c, p in enumerate(picks):
            if p is not None:
                nodes[c] = np.where(p, np.int32(consumer), nodes[c])
                slots[c] = np.where(p, np.int16(slot), slots[c])
                elems[c] = np.where(p, idx[c], elems[c])
        return Backpointers(tuple(nodes), tuple(slots), tuple(elems))

    def empty(self, shape, n):
        shape = tuple(shape)
        return Backpointers(*((_constant(dtype(-1), shape),) * n for dtype in (np.int32, np.int16, np.int64)))

    @staticmethod
    def _masked(value, zero, record, c):
        """Component ``c``'s node, slot and element arrays, -1 where ``value == zero``."""
        dead = np.asarray(value) == zero
        shape, any_dead = dead.shape, bool(dead.any())
        live = _live(dead) if any_dead else None
        return tuple(_finished(arr, dead, any_dead, shape, dtype, live)
                     for arr, dtype in ((record.node[c], np.int32), (record.slot[c], np.int16),
                                        (record.element[c], _element_dtype(record.element[c]))))

    def finish(self, value, zero_elements, record):
        parts = [self._masked(value[c], zero_elements[c], record, c) for c in range(len(value))]
        return Backpointers(*(tuple(p[j] for p in parts) for j in range(3)))


class PairPointers(ElementPointers):
    """:class:`ElementPointers` for the signed max pair ⟨M⁺, M⁻⟩, where a path of weight −∞ is a
    path: M⁺ = −∞ is 0̄ of its component, so an element has no path only where *both*
    components are 0̄ (M⁺ = −∞ and M⁻ = +∞). Where one component sits at its 0̄ value although
    paths exist (M⁺ = −∞: every path from there weighs −∞, so M⁻ = −∞ too; likewise M⁻ = +∞),
    that component's best path is the other component's, and its record is copied from it.

    >>> import numpy as np
    >>> bp = PairPointers().first(7, 0, (np.array([0, 1]), np.array([2, 3])), (2,), 2)
    >>> out = PairPointers().finish((np.array([-np.inf, -np.inf]), np.array([-np.inf, np.inf])), (-np.inf, np.inf), bp)
    >>> out.element   # element 0 has a path of weight -inf (M⁺ takes M⁻'s record); element 1 none
    (array([ 2, -1], dtype=int32), array([ 2, -1], dtype=int32))
    """

    def finish(self, value, zero_elements, record):
        at_zero = [np.asarray(v) == z for v, z in zip(value, zero_elements)]
        edtype = _element_dtype(record.element[0]) if _element_dtype(record.element[1]) is np.int32 else np.int64
        if not (at_zero[0].any() or at_zero[1].any()):  # every element reached in both components
            shape = at_zero[0].shape
            return Backpointers(*(tuple(_kept(arr[c], shape, dtype) for c in range(len(value)))
                                  for arr, dtype in ((record.node, np.int32), (record.slot, np.int16),
                                                     (record.element, edtype))))
        dead = np.logical_and.reduce(at_zero)
        any_dead = bool(dead.any())
        live = _live(dead) if any_dead else None
        parts = []
        for c in range(len(value)):
            other = 1 - c
            shape = dead.shape
            part = []
            # sparse: only the reached elements are read and written
            borrow = at_zero[c][live] if live is not None else at_zero[c] & ~dead
            lend = borrow.any()
            for arr, dtype in ((record.node, np.int32), (record.slot, np.int16), (record.element, edtype)):
                own = arr[c]
                if live is not None and lend:
                    taken = np.where(borrow, np.broadcast_to(arr[other], shape)[live],
                                     np.broadcast_to(own, shape)[live])
                    part.append(_written(taken, live, shape, dtype))
                    continue
                if lend:
                    own = np.where(borrow, _shaped(arr[other], shape, dtype), _shaped(own, shape, dtype))
                part.append(_finished(own, dead, any_dead, shape, dtype, live))
            parts.append(part)
        return Backpointers(*(tuple(p[j] for p in parts) for j in range(3)))


class RankedPointers(ElementPointers):
    """Per component, the consumer element *and component* (the rank) whose path was extended."""

    ranked = True

    def seed(self, shape, n):
        idx = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)
        return tuple(idx * n + c for c in range(n))

    def gather(self, idx, pos, take):
        if idx is None or pos is None:
            return None
        stacked = np.stack(np.broadcast_arrays(*idx), axis=-1)   # positions are n * n_comp + c
        stacked = stacked.reshape(stacked.shape[:-2] + (-1,))
        return tuple(np.where(p >= 0, take(stacked, np.maximum(p, 0)), -1) for p in pos)

    def scale(self, sr, value, idx, w):
        out, src = sr.scale_with_sources(value, w)
        if idx is None or src is None:
            return out, idx
        stacked = np.stack(np.broadcast_arrays(*idx, out[0])[:-1], axis=-1)
        return out, tuple(np.where(s >= 0, np.take_along_axis(stacked, np.maximum(s, 0)[..., None], -1)[..., 0], -1)
                          for s in src)

    def merge(self, old, consumer, slot, idx, picks, shape, n):
        # picks index the candidates [old components..., new components...]
        new = (tuple(np.full(shape, consumer, np.int32) for _ in range(n)),
               tuple(np.full(shape, slot, np.int16) for _ in range(n)), self._elements(idx, shape, n))
        merged = []
        for old_parts, new_parts in zip((old.node, old.slot, old.element), new):
            stacked = np.stack(np.broadcast_arrays(*old_parts, *new_parts), axis=-1)
            merged.append(tuple(np.take_along_axis(stacked, np.maximum(p, 0)[..., None], -1)[..., 0] for p in picks))
        return Backpointers(*merged)

    def finish(self, value, zero_elements, record):
        n = len(value)
        nodes, slots, elems, ranks = [], [], [], []
        for c in range(n):
            dead = value[c] == zero_elements[c]
            nodes.append(np.where(dead, record.node[c].dtype.type(-1), record.node[c]))
            slots.append(np.where(dead, record.slot[c].dtype.type(-1), record.slot[c]))
            enc = np.where(dead, record.element[c].dtype.type(-1), record.element[c])
            elems.append(np.where(enc >= 0, enc // n, -1))
            ranks.append(np.where(enc >= 0, enc % n, -1).astype(np.int16))
        return Backpointers(tuple(nodes), tuple(slots), tuple(elems), rank=tuple(ranks))


NO_POINTERS = NoPointers()
ELEMENT_POINTERS = ElementPointers()
PAIR_POINTERS = PairPointers()
RANKED_POINTERS = RankedPointers()
