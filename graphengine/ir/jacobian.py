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


@dataclass(frozen=True)
class Movement:
    """Weight-one edges given by an index map.

    ``index`` has the output's shape; ``index[j]`` is the flat index into the input of the
    element that output element ``j`` copies, or -1 when it copies nothing from this input.
    """

    index: np.ndarray


@dataclass(frozen=True)
class DenseBlock:
    """A full Jacobian per slice over the dims ``axes`` (softmax, log-softmax, layer norm).

    With the block dims moved last (in order) and flattened to ``n`` elements, ``jacobian`` has
    shape ``(*batch, n, n)`` and ``jacobian[..., r, c] = ∂y[..., r]/∂x[..., c]``.
    """

    jacobian: np.ndarray
    axes: Tuple[int, ...]


Structure = Union[Diagonal, Reduction, Contraction, Movement, DenseBlock]
STRUCTURES = (Diagonal, Reduction, Contraction, Movement, DenseBlock)
OptionalStructure = Optional[Structure]
