"""Pushing an adjoint through one Jacobian structure in one semiring.

This is where a structure (declared by the op) meets an algebra (declared by the semiring).
Nothing here knows about specific ops or specific semirings.

An :class:`Adjoint` carries, for selective semirings, the flat index of the *consumer element*
each value came from (``idx``, one array per component). Every movement applied to values is
applied to ``idx`` too, and every selective ⊕ gathers ``idx`` at the winner; so after a
structure has been applied, ``idx`` names the consumer element of the winning edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from ..kernels.pointers import take_or_minus1
from ..ir.jacobian import Contraction, DenseBlock, Diagonal, Movement, Reduction
from ..semirings.base import Semiring, Value


@dataclass
class Adjoint:
    value: Value
    idx: Optional[Tuple[np.ndarray, ...]] = None

    @property
    def shape(self):
        return self.value[0].shape

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> "Adjoint":
        """Apply an index movement (reshape, transpose, broadcast) to values and indices."""
        return Adjoint(tuple(fn(c) for c in self.value),
                       None if self.idx is None else tuple(fn(i) for i in self.idx))


def seed_index(shape, sr: Semiring) -> Tuple[np.ndarray, ...]:
    """Every element names itself: the starting index of a consumer's adjoint. For
    cross-component semirings (k-best) the index also encodes the component (the rank):
    ``element * n_components + component``."""
    idx = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)
    k = len(sr.components)
    if sr.cross_components:
        return tuple(idx * k + c for c in range(k))
    return (idx,) * k


def _gather(idx, pos, fn, sr: Semiring):
    """New indices after a selective reduction along the last axis: ``fn(idx_c, pos_c)`` per
    component. For cross-component semirings positions index the last axis *and* the source
    component (``n * n_components + c``), so ``fn`` gets the components stacked that way."""
    if idx is None or pos is None:
        return None
    if sr.cross_components:
        stacked = np.stack(np.broadcast_arrays(*idx), axis=-1)
        stacked = stacked.reshape(stacked.shape[:-2] + (-1,))
        return tuple(np.where(p >= 0, fn(stacked, np.maximum(p, 0)), -1) for p in pos)
    return tuple(i if p is None else fn(i, p) for i, p in zip(idx, pos))


def _scale(adj: Adjoint, weight, sr: Semiring) -> Adjoint:
    """``adj ⊗ lift(weight)`` elementwise, keeping indices aligned with their components."""
    value, src = sr.scale_with_sources(adj.value, weight)
    if adj.idx is None or src is None:
        return Adjoint(value, adj.idx)
    stacked = np.stack(np.broadcast_arrays(*adj.idx, value[0])[:-1], axis=-1)
    idx = tuple(np.where(s >= 0, np.take_along_axis(stacked, np.maximum(s, 0)[..., None], -1)[..., 0], -1)
                for s in src)
    return Adjoint(value, idx)


def reduce_last(adj: Adjoint, sr: Semiring) -> Adjoint:
    value, pos = sr.sum_last(adj.value)
    idx = _gather(adj.idx, pos, lambda i, p: np.take_along_axis(np.broadcast_to(i, p.shape + i.shape[-1:]), p[..., None], -1)[..., 0], sr)
    return Adjoint(value, idx)


def reduce_to_shape(adj: Adjoint, shape: Sequence[int], sr: Semiring) -> Adjoint:
    """⊕ over the axes along which ``shape`` was broadcast to ``adj.shape``."""
    shape = tuple(shape)
    if adj.shape == shape:
        return adj
    lead = len(adj.shape) - len(shape)
    axes = list(range(lead)) + [lead + i for i, s in enumerate(shape) if s == 1 and adj.shape[lead + i] != 1]
    if not axes:
        return adj.map(lambda a: a.reshape(shape))
    keep = [i for i in range(len(adj.shape)) if i not in axes]
    n_red = int(np.prod([adj.shape[a] for a in axes], dtype=np.int64))
    moved = adj.map(lambda a: np.transpose(np.broadcast_to(a, adj.shape), keep + axes)
                    .reshape([adj.shape[k] for k in keep] + [n_red]))
    return reduce_last(moved, sr).map(lambda a: a.reshape(shape))


def through_diagonal(s: Diagonal, adj: Adjoint, in_shape, sr: Semiring) -> Adjoint:
    out = _scale(adj, s.weight, sr)
    if s.edges is not None:
        edges = np.broadcast_to(s.edges, out.shape)
        out = Adjoint(sr.where(edges, out.value, sr.zeros(out.shape)), out.idx)
    return reduce_to_shape(out, in_shape, sr)


def through_reduction(s: Reduction, adj: Adjoint, in_shape, sr: Semiring) -> Adjoint:
    def expand(a):
        if not s.keepdim:
            a = np.expand_dims(a, s.axes)
        return np.broadcast_to(a, in_shape)
    adj = adj.map(expand)
    if isinstance(s.weight, (int, float)) and s.weight == 1.0:
        return adj.map(np.array)
    return _scale(adj.map(np.array), s.weight, sr)


def through_contraction(s: Contraction, adj: Adjoint, in_shape, sr: Semiring) -> Adjoint:
    a = adj.map(s.view_adjoint)
    value, pos = sr.matmul(a.value, s.weight)
    out_shape = value[0].shape

    def pick(i, p):
        i = np.broadcast_to(i, out_shape[:-2] + i.shape[-2:])
        return np.take_along_axis(i, p, axis=-1)

    out = Adjoint(value, _gather(a.idx, pos, pick, sr)).map(s.view_result)
    return reduce_to_shape(out, in_shape, sr)


def through_movement(s: Movement, adj: Adjoint, in_shape, sr: Semiring) -> Adjoint:
    if s.transform is not None:  # bijective: every semiring's scatter is then a pure movement
        return adj.map(lambda a: s.transform(a).reshape(in_shape))
    index = s.index.reshape(-1)
    keep = index >= 0
    flat = adj.map(lambda a: np.broadcast_to(a, s.index.shape).reshape(-1)[keep])
    size = int(np.prod(in_shape, dtype=np.int64))
    value, pos = sr.scatter(flat.value, index[keep], size)

    def pick(i, p):
        return take_or_minus1(i, p)

    return Adjoint(value, _gather(flat.idx, pos, pick, sr)).map(lambda a: a.reshape(in_shape))


def through_dense_block(s: DenseBlock, adj: Adjoint, in_shape, sr: Semiring) -> Adjoint:
    k = len(s.axes)
    dst = list(range(len(in_shape) - k, len(in_shape)))
    moved_shape = np.moveaxis(np.empty(in_shape, np.int8), s.axes, dst).shape
    n = s.size
    rows = adj.map(lambda a: np.moveaxis(a, s.axes, dst).reshape(moved_shape[: len(in_shape) - k] + (1, n)))
    value, pos = sr.matmul_block(rows.value, s)

    def pick(i, p):
        return np.take_along_axis(i, p, axis=-1)

    out = Adjoint(value, _gather(rows.idx, pos, pick, sr))
    return out.map(lambda a: np.moveaxis(a.reshape(moved_shape), dst, s.axes))


THROUGH = {
    Diagonal: through_diagonal,
    Reduction: through_reduction,
    Contraction: through_contraction,
    Movement: through_movement,
    DenseBlock: through_dense_block,
}


def propagate(structure, adj: Adjoint, in_shape, sr: Semiring) -> Adjoint:
    """The contribution of one consumer's adjoint to one of its inputs."""
    return THROUGH[type(structure)](structure, adj, tuple(in_shape), sr)
