"""The semiring interface.

A semiring value for a tensor is a tuple of numpy arrays of the tensor's shape, one per
*component* (the real semiring has one, the expectation semiring two: ⟨Z, R⟩; the signed
max-product pair two: ⟨M⁺, M⁻⟩). The engine never looks inside: it only calls the methods
below, always with the real local derivatives an op declared (see
:mod:`graphengine.ir.jacobian`).

Selective semirings (⊕ picks one operand: max, min, Boolean) report *which* operand or index
won in each ⊕; their backpointer policy (``pointers``, :mod:`graphengine.semirings.pointers`)
turns that into element backpointers. The others report ``None``. Ties keep the first operand /
the lowest index (documented tie-breaking).

Methods with a reduction return ``(value, pos)`` where ``pos`` is ``None`` for non-selective
semirings and otherwise a tuple, one entry per component, of integer arrays (or ``None`` for a
component that is not selective).

Only :meth:`Semiring.lift`, :meth:`Semiring.times`, :meth:`Semiring.plus`,
:meth:`Semiring.sum_last`, :meth:`Semiring.scatter` and :meth:`Semiring.finalize` are
required; :meth:`Semiring.matmul` and :meth:`Semiring.scale` are derived from ⊗ and the
reduction. The family base classes in :mod:`graphengine.semirings.families` derive ⊕ and the
reductions as well, so a semiring of a known family declares only its constants, ``lift``,
``times`` and ``finalize``.

The other declared attributes say what the rest of the package needs to know about a semiring
(instead of testing its name): ``directions``, ``log_space``, ``log_twin``, ``weighted``,
``is_entropy``, ``may_cancel``, ``paper_granularity``, ``kernel``, ``value_dtypes``.

Value dtype: every semiring holds its values in float64 (``dtype``) unless asked otherwise. A
semiring that lists float32 in ``value_dtypes`` (the linear ones: real, absolute, entropy,
count) can run in float32 instead: :meth:`Semiring.with_dtype` (or the spec ``"real:float32"``
of :func:`graphengine.semirings.get_semiring`) returns a copy whose lifts, contractions (float32
BLAS), dense blocks, scatters and results are float32. float64 stays the default: it keeps the
reference engine's exactness and parity guarantees; float32 roughly halves the memory and time
of the values, at a documented rounding error (docs/method.md, "Value dtype").

>>> import numpy as np
>>> class MaxTimes(Semiring):   # the largest |path product|, no backpointers: six methods
...     name, components, zero_elements, one_elements = "maxtimes", ("max_abs",), (0.0,), (1.0,)
...     def lift(self, w): return (np.abs(np.asarray(w, dtype=float)),)
...     def times(self, a, b): return (a[0] * b[0],)
...     def plus(self, a, b): return (np.maximum(a[0], b[0]),), None
...     def sum_last(self, a): return (a[0].max(axis=-1, initial=0.0),), None
...     def scatter(self, a, index, size):
...         out = np.zeros(size); np.maximum.at(out, index, a[0]); return (out,), None
...     def finalize(self, v): return {"max_abs": v[0]}
>>> MaxTimes().matmul((np.array([[1.0, 2.0]]),), np.array([[3.0], [-4.0]]))[0][0]
array([[8.]])
"""

from __future__ import annotations

import copy
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .pointers import NO_POINTERS, NoPointers
from .reductions import contract

Value = Tuple[np.ndarray, ...]
Picks = Optional[Tuple[Optional[np.ndarray], ...]]


class Semiring:
    """Base class: subclasses define the algebra.

    Required: ``name``, ``components``, ``zero_elements``/``one_elements`` (per-component scalars of
    0̄ and 1̄), :meth:`lift`, :meth:`times`, :meth:`plus`, :meth:`sum_last`, :meth:`scatter`,
    :meth:`finalize`. Everything else has a default.
    """

    name: str = "semiring"
    components: Tuple[str, ...] = ("value",)
    zero_elements: Tuple[float, ...] = (0.0,)
    one_elements: Tuple[float, ...] = (1.0,)
    dtype = np.float64
    pointers: NoPointers = NO_POINTERS  # how ⊕ winners are recorded (graphengine.semirings.pointers)
    kernel: Optional[str] = None  # compiled family (graphengine.kernels.families), not inherited; None: reference
    directions: Tuple[str, ...] = ()  # selective semirings: "max" or "min" per component, the way ⊕ picks
    log_space: bool = False  # values are logarithms: they neither under- nor overflow
    log_twin: Optional[str] = None  # the log-space semiring computing the same paths (numerical reference)
    weighted: bool = True  # False: every declared edge counts whatever its weight (path counts, reachability)
    is_entropy: bool = False  # finalize gives "entropy", and ⊕-pooling elements gives their joint entropy
    may_cancel: bool = False  # the headline may be 0 by cancellation of signed paths, not only by underflow
    paper_granularity: bool = True  # has a meaning at granularity="paper" (see paper_view)
    value_dtypes: Tuple[type, ...] = (np.float64,)  # the dtypes its values may be held in (with_dtype)

    def __init_subclass__(cls, **kwargs):
        # A kernel family hard-codes its semiring's algebra: a subclass that changes the algebra
        # (say, Real with another lift) must not inherit it, so it runs on the reference unless
        # it names a family itself.
        super().__init_subclass__(**kwargs)
        if "kernel" not in cls.__dict__:
            cls.kernel = None

    def with_dtype(self, dtype) -> "Semiring":
        """This semiring with its values held in ``dtype`` (``"float32"``, ``np.float32``...): a
        copy named ``NAME:float32`` (results are keyed by that name, as ``kbest:K``'s are, so one
        backward may compute ``real`` and ``real:float32`` side by side), or ``self`` when the
        dtype is already its own. Raises ``ValueError`` for a dtype not in ``value_dtypes``.

        >>> from graphengine.semirings import Real
        >>> r32 = Real().with_dtype("float32")
        >>> r32.name, r32.lift(np.array([0.1]))[0].dtype, r32.with_dtype("float64").name
        ('real:float32', dtype('float32'), 'real')
        >>> Real().with_dtype("float16")
        Traceback (most recent call last):
        ...
        ValueError: semiring 'real' holds its values in float64 or float32, not float16
        """
        dt = np.dtype(dtype)
        if dt == np.dtype(self.dtype):
            return self
        if dt not in [np.dtype(d) for d in self.value_dtypes]:
            allowed = " or ".join(np.dtype(d).name for d in self.value_dtypes)
            raise ValueError(f"semiring '{self.name}' holds its values in {allowed}, not {dt.name}")
        out = copy.copy(self)
        out.dtype = dt.type
        out.name = type(self).name if dt == np.float64 else f"{type(self).name}:{dt.name}"
        return out

    @property
    def selective(self) -> bool:
        """Does ⊕ pick a winner (so that the walk keeps backpointers)?"""
        return self.pointers.kept

    @property
    def cross_components(self) -> bool:
        """May a component's winner come from another component (k-best ranks)?"""
        return self.pointers.ranked

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
        """A real local derivative (array) as a semiring value. It must be multiplicative:
        ``lift(1) = 1̄`` and ``lift(x·y) = lift(x) ⊗ lift(y)``, because the walk never lifts the
        unit edges of movements and unit-weight reductions."""
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
        pos[c][..., m, k] is the winning n. Derived from :meth:`times` and :meth:`sum_last`
        (chunked broadcasting); families and semirings override it for speed."""
        return contract(a, self.lift(np.asarray(w, dtype=self.dtype)), self.times, self.sum_last,
                        self.zeros, self.selective)

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
        """:meth:`scale`, plus the source component of each output component per element (-1:
        none) for semirings whose components trade places (k-best; see
        :class:`~graphengine.semirings.pointers.RankedPointers`), ``None`` otherwise."""
        return self.scale(a, w), None

    def close_op(self, v: Value) -> Value:
        """The contribution of one op to one of its inputs, after the op's structure was applied
        (called once per op and input by :func:`graphengine.engine.propagate.propagate`). The
        identity, except for paper views that order their components only after summing."""
        return v

    def paper_view(self) -> "Semiring":
        """The semiring as the original implementation applied it *inside* one op
        (docs/granularity.md): contractions, broadcast reductions and scatters sum instead of
        taking ⊕, and no element backpointers are kept. Linear semirings are unchanged, and so is
        a semiring that does not override this (its own ⊕ is then used inside ops too)."""
        if not self.paper_granularity:
            raise ValueError(f"semiring '{self.name}' has no paper-granularity meaning; use granularity='scalar'")
        return self

    def edge_factor(self, node, slot: int) -> Optional[Value]:
        """A value that every edge into ``node`` through input ``slot`` carries besides
        ``lift(w)``: the walk ⊗-multiplies the consumer's contribution to that input by it
        (per-component scalars). ``None`` (the default): an edge is its weight alone. Semirings
        of additive edge features (:mod:`graphengine.semirings.features`) use it, so that the
        walk needs no op- or semiring-specific code."""
        return None

    def next_component(self, component: int, w: float) -> int:
        """Which component of the consumer a path continues in, after an edge of weight ``w``
        (the signed max pair swaps M⁺/M⁻ on negative edges)."""
        return component

    def path_magnitude(self, finalized: Dict[str, np.ndarray]) -> np.ndarray:
        """From :meth:`finalize`'s arrays, the quantity that is non-zero and finite wherever a
        path exists unless it under- or overflowed (NaN where it is not defined)."""
        return np.asarray(next(iter(finalized.values())), np.float64)

    def path_mask(self, v: Value) -> Optional[np.ndarray]:
        """Where a path exists, *exactly* (a log-space value cannot underflow), or ``None`` when
        this semiring cannot tell (a plain product may underflow to 0̄)."""
        return np.isfinite(v[0]) if self.log_space else None

    def where(self, mask: np.ndarray, a: Value, b: Value) -> Value:
        return tuple(np.where(mask, x, y) for x, y in zip(a, b))

    def __repr__(self) -> str:
        dt = np.dtype(self.dtype)
        return f"{type(self).__name__}()" if dt == np.float64 else f"{type(self).__name__}(dtype={dt.name})"
