"""Local-Jacobian structures: how an op's output depends on one of its inputs.

An op does not compute vector-Jacobian products itself. For each differentiable input slot it
returns one of the five structures below, holding *real* local derivatives; the engine combines
the structure with a semiring's algebra (lift, ⊗, ⊕) to push an adjoint from the output to that
input. Writing a new op therefore never requires touching a semiring, and vice versa.

Notation: ``y`` is the op's output, ``x`` the input in the slot, ``adj`` the adjoint of ``y``
(a semiring value shaped like ``y``) and ``lift(w)`` a real derivative lifted into the semiring.

=================  =====================================================================
structure          contribution to x
=================  =====================================================================
``Diagonal``       ``x[i] ⊕= ⊕_{j ~ i} adj[j] ⊗ lift(w[j])``; x broadcasts to y numpy-style
``Reduction``      ``x[i] = adj[r(i)] ⊗ lift(w[i])``; y is x reduced over ``axes``
``Contraction``    ``X[.., m, k] = ⊕_n A[.., m, n] ⊗ lift(W[.., n, k])`` with ``A = view_adjoint(adj)``
                   and ``x = reduce_to_shape(view_result(X))``
``Movement``       ``x[s] = ⊕_{j: index[j] = s} adj[j]`` (weight-one edges, an index map)
``DenseBlock``     ``x[.., c] = ⊕_r adj[.., r] ⊗ lift(J[.., r, c])`` over the block dims ``axes``
=================  =====================================================================

``view_adjoint`` and ``view_result`` of a contraction must be pure index movements (reshape,
transpose, swapaxes): the engine applies them to backpointer index arrays as well as to values.

One edge at a time: every structure has ``entry(y, x, out_shape, in_shape)``, the real local
derivative ∂y[y]/∂x[x] of one scalar edge (flat indices into the output and the input), read
off the structure without pushing an adjoint through it. It is 0.0 where ``y`` does not depend
on ``x``; a path walker only asks about edges that exist.

>>> Diagonal(np.array([2.0, -3.0])).entry(1, 1, (2,), (2,))
-3.0
>>> Reduction((1,), False, 0.5).entry(1, 3, (2,), (2, 2))      # y[1] = mean of x[1, :]
0.5
>>> Contraction(np.array([[1.0, 2.0], [3.0, 4.0]])).entry(1, 0, (1, 2), (1, 2))  # x̄ = ȳ W: W[1, 0]
3.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple, Union

import numpy as np

ArrayLike = Union[np.ndarray, float]


def _identity(a):
    return a


def _unravel(flat: int, shape) -> Tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat), tuple(shape)))


def _ravel(index, shape) -> int:
    return int(np.ravel_multi_index(tuple(index), tuple(shape)))


def _at(values: ArrayLike, shape, index) -> float:
    """``values`` broadcast to ``shape``, read at ``index``."""
    return float(np.broadcast_to(np.asarray(values), tuple(shape))[tuple(index)])


def _broadcast_source(out_index, in_shape) -> Tuple[int, ...]:
    """The element of an array of ``in_shape`` that numpy broadcasting copies to ``out_index``."""
    lead = len(out_index) - len(in_shape)
    return tuple(0 if s == 1 else out_index[lead + i] for i, s in enumerate(in_shape))


def _sum_to_shape(a: np.ndarray, shape) -> np.ndarray:
    """Real sum over the axes along which ``shape`` broadcasts to ``a.shape``."""
    shape = tuple(shape)
    lead = a.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and a.shape[lead + i] != 1)
    return a.sum(axis=axes).reshape(shape) if axes else a.reshape(shape)


@dataclass(frozen=True)
class Diagonal:
    """Elementwise dependence, with the input broadcast to the output (also ``expand``).

    ``weight`` is ∂y[j]/∂x[i(j)], broadcastable to the output shape. ``edges`` (boolean,
    broadcastable to the output shape, ``None`` = all) marks which output elements depend on
    the input at all: ``where`` with a constant mask declares no edge for unselected elements,
    whereas ``relu`` declares an edge of weight 0 for a dead unit (it still counts as a path).
    """

    weight: ArrayLike
    edges: Optional[np.ndarray] = None

    def entry(self, y: int, x: int, out_shape, in_shape) -> float:
        """∂y[y]/∂x[x]: ``weight[y]`` if ``x`` is the element broadcast to ``y`` and the edge is
        declared, else 0.0."""
        yi = _unravel(y, out_shape)
        if _ravel(_broadcast_source(yi, in_shape), in_shape) != x:
            return 0.0
        if self.edges is not None and not np.broadcast_to(self.edges, tuple(out_shape))[yi]:
            return 0.0
        return _at(self.weight, out_shape, yi)


@dataclass(frozen=True)
class Reduction:
    """The output is the input reduced over ``axes`` (sum, mean, amax).

    ``weight`` is ∂y[r(i)]/∂x[i], broadcastable to the input shape; ``keepdim`` says whether the
    reduced axes are kept (as size 1) in the output.
    """

    axes: Tuple[int, ...]
    keepdim: bool
    weight: ArrayLike

    def entry(self, y: int, x: int, out_shape, in_shape) -> float:
        """∂y[y]/∂x[x]: ``weight[x]`` if ``x`` is reduced into ``y``, else 0.0."""
        xi = _unravel(x, in_shape)
        axes = {a % len(xi) for a in self.axes} if xi else set()
        if self.keepdim:
            target = tuple(0 if a in axes else i for a, i in enumerate(xi))
        else:
            target = tuple(i for a, i in enumerate(xi) if a not in axes)
        if _ravel(target, out_shape) != y:
            return 0.0
        return _at(self.weight, in_shape, xi)


@dataclass(frozen=True)
class Contraction:
    """A (batched) matrix product in which the *other* operand supplies the edge weights."""

    weight: np.ndarray
    view_adjoint: Callable[[np.ndarray], np.ndarray] = _identity
    view_result: Callable[[np.ndarray], np.ndarray] = _identity

    def entry(self, y: int, x: int, out_shape, in_shape) -> float:
        """∂y[y]/∂x[x]: output element ``y`` sits at ``A[b, m, n]`` of the viewed adjoint, so it
        reaches ``X[b', m, k]`` (``b'`` broadcast from ``b``) with weight ``W[b', n, k]``; those
        are moved by ``view_result`` and summed into ``x`` over broadcast axes, as the engine
        does. Only the row of ``W`` on the edge is read: a NaN elsewhere in ``W`` stays out.

        Costs one pass over an array shaped like the result, no matrix product.
        """
        hit = np.zeros(tuple(out_shape), dtype=bool)
        hit.flat[y] = True
        a = self.view_adjoint(hit)
        n = int(np.argwhere(a)[0, -1])
        w = np.asarray(self.weight)
        row = a[..., n][..., None]                            # [*batch_a, M, 1]: True at (b, m)
        edge = w[..., n, :][..., None, :]                     # [*batch_w, 1, K]: W[., n, :]
        grid = np.where(row, edge, np.zeros((), dtype=w.dtype))
        return float(_sum_to_shape(self.view_result(grid), in_shape).flat[x])


class Movement:
    """Weight-one edges given by an index map.

    ``index`` has the output's shape; ``index[j]`` is the flat index into the input of the
    element that output element ``j`` copies, or -1 when it copies nothing from this input.

    Optional fast path: a *bijective* movement (reshape, permute, squeeze...) may give
    ``transform``, a pure index movement taking an array shaped like the output to the array
    shaped like the input with ``x[index[j]] = y[j]``; the engine then moves adjoints (and their
    backpointer indices) with it instead of scattering, which is exact in every semiring. The
    index map may then be given lazily as ``index_fn()``.

    >>> m = Movement(transform=lambda a: a.reshape(2, 2), index_fn=lambda: np.arange(4))
    >>> m.index.tolist()
    [0, 1, 2, 3]
    """

    __slots__ = ("_index", "transform", "_index_fn")

    def __init__(self, index: Optional[np.ndarray] = None,
                 transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 index_fn: Optional[Callable[[], np.ndarray]] = None):
        if index is None and index_fn is None:
            raise ValueError("Movement needs an index map or an index_fn")
        self._index, self.transform, self._index_fn = index, transform, index_fn

    @property
    def index(self) -> np.ndarray:
        if self._index is None:
            self._index = np.asarray(self._index_fn(), dtype=np.int64)
        return self._index

    def entry(self, y: int, x: int, out_shape=None, in_shape=None) -> float:
        """∂y[y]/∂x[x]: 1.0 if output element ``y`` copies input element ``x``, else 0.0."""
        return 1.0 if int(self.index.reshape(-1)[y]) == x else 0.0

    def __repr__(self) -> str:
        return f"Movement(index shape {tuple(self.index.shape)}, bijective={self.transform is not None})"


@dataclass(frozen=True)
class LowRankBlock:
    """A Jacobian block in factored form: ``J[..., r, c] = δ_rc·diag[..., r] + Σ_t u[..., r, t]·v[..., c, t]``.

    ``diag`` is ``(*batch, n)``, ``u`` and ``v`` are ``(*batch, n, R)``. Softmax, log-softmax
    (R = 1) and layer norm (R = 2) have this form. Kernels evaluate the entries on the fly in
    exactly the order :meth:`dense` does (the diagonal or 0, then the rank-one terms in order,
    no fused multiply-add), so both give the same floating-point numbers.

    >>> s = np.array([0.25, 0.75])
    >>> LowRankBlock(s, -s[:, None], s[:, None]).dense()          # softmax: diag(s) - s sᵀ
    array([[ 0.1875, -0.1875],
           [-0.1875,  0.1875]])
    """

    diag: np.ndarray
    u: np.ndarray
    v: np.ndarray

    def dense(self) -> np.ndarray:
        """The ``(*batch, n, n)`` float64 matrix."""
        d, u, v = (np.asarray(f, dtype=np.float64) for f in (self.diag, self.u, self.v))
        n = d.shape[-1]
        jac = np.zeros(np.broadcast_shapes(d.shape[:-1], u.shape[:-2], v.shape[:-2]) + (n, n))
        i = np.arange(n)
        jac[..., i, i] = d
        for t in range(u.shape[-1]):
            jac += u[..., :, None, t] * v[..., None, :, t]
        return jac

    def entry(self, batch: Tuple[int, ...], r: int, c: int, batch_shape: Tuple[int, ...]) -> float:
        """``dense()[batch + (r, c)]``, summed in the same order, without building the matrix.

        >>> s = np.array([0.25, 0.75])
        >>> LowRankBlock(s, -s[:, None], s[:, None]).entry((), 0, 1, ())
        -0.1875
        """
        n = self.diag.shape[-1]
        d = np.broadcast_to(self.diag, batch_shape + (n,))
        u = np.broadcast_to(self.u, batch_shape + (n, self.u.shape[-1]))
        v = np.broadcast_to(self.v, batch_shape + (n, self.v.shape[-1]))
        value = float(d[batch + (r,)]) if r == c else 0.0
        for t in range(u.shape[-1]):
            value += float(u[batch + (r, t)]) * float(v[batch + (c, t)])
        return value


class DenseBlock:
    """A full Jacobian per slice over the dims ``axes`` (softmax, log-softmax, layer norm).

    With the block dims moved last (in order) and flattened to ``n`` elements, ``jacobian`` has
    shape ``(*batch, n, n)`` and ``jacobian[..., r, c] = ∂y[..., r]/∂x[..., c]``. An op may give
    ``factors`` (a :class:`LowRankBlock`) instead; ``jacobian`` is then materialized from them
    on first use, and kernels can work from the factors without materializing it.
    """

    __slots__ = ("_jacobian", "axes", "factors")

    def __init__(self, jacobian: Optional[np.ndarray] = None, axes: Tuple[int, ...] = (),
                 factors: Optional[LowRankBlock] = None):
        if jacobian is None and factors is None:
            raise ValueError("DenseBlock needs a jacobian or factors")
        self._jacobian, self.axes, self.factors = jacobian, tuple(axes), factors

    @property
    def jacobian(self) -> np.ndarray:
        if self._jacobian is None:
            self._jacobian = self.factors.dense()
        return self._jacobian

    @property
    def size(self) -> int:
        """``n``, the number of elements of one block."""
        return (self.factors.diag if self._jacobian is None else self._jacobian).shape[-1]

    def entry(self, y: int, x: int, out_shape, in_shape=None) -> float:
        """∂y[y]/∂x[x] (input and output have one shape): the block entry ``[r, c]`` when ``y``
        and ``x`` lie in one block, else 0.0. Works from the factors when there are any, so a
        layer norm over a whole batch is never materialized as ``[tokens, H, H]``.

        >>> s = np.array([[0.25, 0.75]])                         # softmax over the last axis
        >>> DenseBlock(axes=(1,), factors=LowRankBlock(s, -s[..., None], s[..., None])).entry(0, 1, (1, 2))
        -0.1875
        """
        shape = tuple(out_shape)
        yi, xi = _unravel(y, shape), _unravel(x, shape)
        axes = tuple(a % len(shape) for a in self.axes)
        other = [a for a in range(len(shape)) if a not in axes]
        if any(yi[a] != xi[a] for a in other):
            return 0.0
        batch_shape = tuple(shape[a] for a in other)
        block_shape = tuple(shape[a] for a in axes)
        batch = tuple(yi[a] for a in other)
        r, c = _ravel([yi[a] for a in axes], block_shape), _ravel([xi[a] for a in axes], block_shape)
        if self.factors is not None:
            return self.factors.entry(batch, r, c, batch_shape)
        n = self.size
        return _at(self._jacobian, batch_shape + (n, n), batch + (r, c))

    def __repr__(self) -> str:
        return f"DenseBlock(axes={self.axes}, n={self.size}, factored={self.factors is not None})"


Structure = Union[Diagonal, Reduction, Contraction, Movement, DenseBlock]
STRUCTURES = (Diagonal, Reduction, Contraction, Movement, DenseBlock)
OptionalStructure = Optional[Structure]
