"""The semiring interface.

A semiring value for a tensor is a tuple of numpy arrays of the tensor's shape, one per
*component* (the real semiring has one, the expectation semiring two: ⟨Z, R⟩; the signed
max-product pair two: ⟨M⁺, M⁻⟩). The engine never looks inside: it only calls the methods
below, always with the real local derivatives an op declared (see
:mod:`graphengine.ir.jacobian`).

Selective semirings (⊕ picks one operand: max, min, Boolean) report *which* operand or index
won in each ⊕ so that the engine can keep element backpointers; the others report ``None``.
Ties keep the first operand / the lowest index (documented tie-breaking).

Methods with a reduction return ``(value, pos)`` where ``pos`` is ``None`` for non-selective
semirings and otherwise a tuple, one entry per component, of integer arrays (or ``None`` for a
component that is not selective).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

Value = Tuple[np.ndarray, ...]
Picks = Optional[Tuple[Optional[np.ndarray], ...]]


class Semiring:
    """Base class: subclasses define the algebra.

    Required: ``name``, ``components``, ``zero_elements``/``one_elements`` (per-component scalars of
    0̄ and 1̄), :meth:`lift`, :meth:`times`, :meth:`plus`, :meth:`sum_last`, :meth:`matmul`,
    :meth:`scatter`, :meth:`finalize`.
    """

    name: str = "semiring"
    components: Tuple[str, ...] = ("value",)
    zero_elements: Tuple[float, ...] = (0.0,)
    one_elements: Tuple[float, ...] = (1.0,)
    selective: bool = False
    cross_components: bool = False  # a component's winner may come from another component (k-best)
    dtype = np.float64
    kernel: Optional[str] = None  # the family of compiled kernels (graphengine.kernels.families)

    # ---- constants
    def zeros(self, shape: Sequence[int]) -> Value:
        return tuple(np.full(shape, z, dtype=self.dtype) for z in self.zero_elements)

    def ones(self, shape: Sequence[int]) -> Value:
        return tuple(np.full(shape, o, dtype=self.dtype) for o in self.one_elements)

    def is_zero(self, v: Value) -> np.ndarray:
        """Elementwise: is the value 0̄ (no path)?"""
        out = np.ones(v[0].shape, dtype=bool)
        for c, z in zip(v, self.zero_elements):
            out &= (c == z)
        return out

    # ---- algebra (override)
    def lift(self, w: np.ndarray) -> Value:
        """A real local derivative (array) as a semiring value."""
        raise NotImplementedError

    def times(self, a: Value, b: Value) -> Value:
        """⊗, elementwise with numpy broadcasting."""
        raise NotImplementedError

    def plus(self, a: Value, b: Value) -> Tuple[Value, Picks]:
        """⊕, elementwise; picks[c] is True where ``b`` won (strictly) in component c."""
        raise NotImplementedError

    def sum_last(self, a: Value) -> Tuple[Value, Picks]:
        """⊕-reduce over the last axis; pos[c] is the winning index along it."""
        raise NotImplementedError

    def matmul(self, a: Value, w: np.ndarray) -> Tuple[Value, Picks]:
        """``out[..., m, k] = ⊕_n a[..., m, n] ⊗ lift(w[..., n, k])`` (batch dims broadcast);
        pos[c][..., m, k] is the winning n."""
        raise NotImplementedError

    def scatter(self, a: Value, index: np.ndarray, size: int) -> Tuple[Value, Picks]:
        """1-D ``out[s] = ⊕_{j: index[j] = s} a[j]`` (0̄ where no j); pos[c][s] is the winning j
        (-1 where none)."""
        raise NotImplementedError

    def finalize(self, v: Value) -> Dict[str, np.ndarray]:
        """Named, user-facing arrays (the first one is the semiring's headline statistic)."""
        raise NotImplementedError

    # ---- derived (may be overridden for speed)
    def scale(self, a: Value, w) -> Value:
        """``a ⊗ lift(w)`` for a real derivative ``w`` (broadcasting)."""
        return self.times(a, self.lift(np.asarray(w, dtype=self.dtype)))

    def matmul_block(self, a: Value, block) -> Tuple[Value, Picks]:
        """:meth:`matmul` with a dense Jacobian block (:class:`graphengine.ir.jacobian.DenseBlock`)
        as the weights. Compiled back ends override it to work from the block's factors."""
        return self.matmul(a, block.jacobian)

    def scale_with_sources(self, a: Value, w) -> Tuple[Value, Picks]:
        """:meth:`scale`, plus (for ``cross_components`` semirings) the source component of each
        output component per element (-1: none)."""
        return self.scale(a, w), None

    def paper_view(self) -> "Semiring":
        """The semiring as the original implementation applied it *inside* one op (PAPER.md
        §1): contractions, broadcast reductions and scatters sum instead of taking ⊕, and no
        element backpointers are kept. Linear semirings are unchanged."""
        return self

    def next_component(self, component: int, w: float) -> int:
        """Which component of the consumer a path continues in, after an edge of weight ``w``
        (the signed max pair swaps M⁺/M⁻ on negative edges)."""
        return component

    def where(self, mask: np.ndarray, a: Value, b: Value) -> Value:
        return tuple(np.where(mask, x, y) for x, y in zip(a, b))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
