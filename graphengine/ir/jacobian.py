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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple, Union

import numpy as np

ArrayLike = Union[np.ndarray, float]


def _identity(a):
    return a


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


@dataclass(frozen=True)
class Reduction:
    """The output is the input reduced over ``axes`` (sum, mean, amax).

    ``weight`` is ∂y[r(i)]/∂x[i], broadcastable to the input shape; ``keepdim`` says whether the
    reduced axes are kept (as size 1) in the output.
    """

    axes: Tuple[int, ...]
    keepdim: bool
    weight: ArrayLike


@dataclass(frozen=True)
class Contraction:
    """A (batched) matrix product in which the *other* operand supplies the edge weights."""

    weight: np.ndarray
    view_adjoint: Callable[[np.ndarray], np.ndarray] = _identity
    view_result: Callable[[np.ndarray], np.ndarray] = _identity


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

    def __repr__(self) -> str:
        return f"DenseBlock(axes={self.axes}, n={self.size}, factored={self.factors is not None})"


Structure = Union[Diagonal, Reduction, Contraction, Movement, DenseBlock]
STRUCTURES = (Diagonal, Reduction, Contraction, Movement, DenseBlock)
OptionalStructure = Optional[Structure]
