"""Pushing an adjoint through one Jacobian structure in one semiring.

This is where a structure (declared by the op) meets an algebra (declared by the semiring).
Nothing here knows about specific ops or specific semirings.

An :class:`Adjoint` carries, for semirings that keep backpointers, the index of the *consumer
element* each value came from (``idx``, one array per component; what it encodes is the
semiring's backpointer policy, :mod:`graphengine.semirings.pointers`). Every movement applied to
values is applied to ``idx`` too, and after every reduction the policy gathers ``idx`` at the
winning positions; so after a structure has been applied, ``idx`` names the consumer element of
the winning edge.
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


def _scale(adj: Adjoint, weight, sr: Semiring) -> Adjoint:
    """``adj ⊗ lift(weight)`` elementwise, keeping indices aligned with their components."""
    return Adjoint(*sr.pointers.scale(sr, adj.value, adj.idx, weight))


def reduce_last(adj: Adjoint, sr: Semiring) -> Adjoint:
    value, pos = sr.sum_last(adj.value)
    def pick(i, p):
        return np.take_along_axis(np.broadcast_to(i, p.shape + i.shape[-1:]), p[..., None], -1)[..., 0]

    idx = sr.pointers.gather(adj.idx, pos, pick)
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


SPARSE_FRACTION = 0.25  # contract over the adjoint's support when it is at most this share of the axis
SPARSE_MIN_AXIS = 256   # ... and the contracted axis at least this long


def _support(a: Adjoint, weight, sr: Semiring):
    """Positions along the contracted (last) axis of the viewed adjoint where some component is
    not 0̄, when restricting the contraction to them pays and gives the same result; else ``None``.

    A position whose adjoint is 0̄ in every row and component contributes 0̄ ⊗ w = 0̄ to every
    output element, which changes no ⊕ (and, for selective semirings, can win only where the
    result is 0̄, whose backpointers are -1 or borrowed). 0̄ ⊗ w = 0̄ needs a finite ``w``: with a
    NaN or ±∞ in the dropped rows of the weight the full product is taken, as before. Typical
    case: the QoI selects one logit, so the output projection's adjoint has one non-0̄ column of
    the vocabulary and only that row of the (vocabulary × hidden) weight is lifted and read.
    """
    n = a.value[0].shape[-1]
    zeros = getattr(sr, "zero_elements", None)
    if n < SPARSE_MIN_AXIS or zeros is None or len(zeros) != len(a.value):
        return None
    values = [np.asarray(c) for c in a.value]
    for c, z in zip(values, zeros):  # a dense adjoint is turned down after two of its rows
        for row in (c[(0,) * (c.ndim - 1)], c[(-1,) * (c.ndim - 1)]):
            if np.count_nonzero(row != z) > SPARSE_FRACTION * n:
                return None
    live = np.zeros(n, dtype=bool)
    for c, z in zip(values, zeros):
        live |= (c != z).reshape(-1, n).any(axis=0)
    sup = np.flatnonzero(live)
    if sup.size == 0 or sup.size > SPARSE_FRACTION * n:
        return None
    w = np.asarray(weight)
    with np.errstate(all="ignore"):
        finite = np.isfinite(np.sum(w))  # a NaN or ±∞ anywhere makes the sum non-finite
    if not finite:  # (or an overflow of finite values): look at the dropped rows themselves
        dropped = np.ones(n, dtype=bool)
        dropped[sup] = False
        if not np.isfinite(w[..., dropped, :]).all():
            return None
    return sup


def through_contraction(s: Contraction, adj: Adjoint, in_shape, sr: Semiring) -> Adjoint:
    a = adj.map(s.view_adjoint)
    weight = s.weight
    sup = _support(a, weight, sr)
    if sup is not None:
        n = a.value[0].shape[-1]
        a = a.map(lambda x: np.take(x, sup, axis=-1) if x.shape[-1] == n else x)  # size 1: broadcast
        weight = np.take(np.asarray(weight), sup, axis=-2)
    value, pos = sr.matmul(a.value, weight)
    out_shape = value[0].shape

    def pick(i, p):
        i = np.broadcast_to(i, out_shape[:-2] + i.shape[-2:])
        return np.take_along_axis(i, p, axis=-1)

    out = Adjoint(value, sr.pointers.gather(a.idx, pos, pick)).map(s.view_result)
    return reduce_to_shape(out, in_shape, sr)


def through_movement(s: Movement, adj: Adjoint, in_shape, sr: Semiring) -> Adjoint:
    if s.transform is not None:  # bijective: every semiring's scatter is then a pure movement
        return adj.map(lambda a: s.transform(a).reshape(in_shape))
    index = s.index.reshape(-1)
    keep = index >= 0
    flat = adj.map(lambda a: np.broadcast_to(a, s.index.shape).reshape(-1)[keep])
    size = int(np.prod(in_shape, dtype=np.int64))
    value, pos = sr.scatter(flat.value, index[keep], size)

    return Adjoint(value, sr.pointers.gather(flat.idx, pos, take_or_minus1)).map(lambda a: a.reshape(in_shape))


def through_dense_block(s: DenseBlock, adj: Adjoint, in_shape, sr: Semiring) -> Adjoint:
    nd, k = len(in_shape), len(s.axes)
    axes = tuple(a % nd for a in s.axes)
    dst = tuple(range(nd - k, nd))
    last = axes == dst  # the usual case (softmax, layer norm over the last axis): no axis moves
    moved_shape = in_shape if last else tuple(in_shape[i] for i in range(nd) if i not in axes) + tuple(
        in_shape[a] for a in axes)
    rows_shape = moved_shape[: nd - k] + (1, s.size)
    if last:
        rows = adj.map(lambda a: a.reshape(rows_shape))
    else:
        rows = adj.map(lambda a: np.moveaxis(a, axes, dst).reshape(rows_shape))
    value, pos = sr.matmul_block(rows.value, s)

    def pick(i, p):
        return np.take_along_axis(i, p, axis=-1)

    out = Adjoint(value, sr.pointers.gather(rows.idx, pos, pick))
    if last:
        return out.map(lambda a: a.reshape(in_shape))
    return out.map(lambda a: np.moveaxis(a.reshape(moved_shape), dst, axes))


THROUGH = {
    Diagonal: through_diagonal,
    Reduction: through_reduction,
    Contraction: through_contraction,
    Movement: through_movement,
    DenseBlock: through_dense_block,
}


def propagate(structure, adj: Adjoint, in_shape, sr: Semiring) -> Adjoint:
    """The contribution of one consumer's adjoint to one of its inputs: the structure, then the
    semiring's per-op closing step (:meth:`~graphengine.semirings.base.Semiring.close_op`)."""
    out = THROUGH[type(structure)](structure, adj, tuple(in_shape), sr)
    closed = sr.close_op(out.value)
    return out if closed is out.value else Adjoint(closed, out.idx)
