"""Semirings: the algebra a backward pass runs in (one module per family of statistics).

=============  ==========================================================================
name           statistic
=============  ==========================================================================
real           the gradient (Σ over paths of Π w)
absolute       Z = Σ over paths of Π |w|
log            log Z, in log space
max            ⟨M⁺, M⁻⟩: the largest and most negative path product (backpointers)
maxabs         the largest |path product| (backpointers)
maxplus        max over paths of Σ log|w| (backpointers, log space)
entropy        entropy of the path distribution p ∝ Π|w| (nats), with Z and R
logentropy     the same in log space
signedmass     ⟨Z⁺, Z⁻⟩: the mass of the positive and of the negative path products
pathlength     expected number of edges of a path (p ∝ Π|w|) and its variance
count          number of paths (float64)
logcount       log number of paths
bool           reachability (backpointers)
kbest:K        the K largest signed path products (backpointers with ranks)
kbestabs:K     the K largest |path products| (backpointers with ranks)
=============  ==========================================================================

**Value dtype**: ``NAME:float32`` (``real:float32``, ``absolute:float32``, ``entropy:float32``,
``count:float32``) holds that semiring's values in float32 (:meth:`Semiring.with_dtype`;
results are keyed by the spec, as ``kbest:K``'s are); ``NAME:float64`` is ``NAME``, the
default. float32 roughly halves the time and memory of the values, at a rounding error bounded
in docs/method.md ("Value dtype").

Modules: :mod:`~graphengine.semirings.base` (the interface and its declared attributes),
:mod:`~graphengine.semirings.families` (linear, log-linear and selective bases that derive ⊕ and
every reduction), :mod:`~graphengine.semirings.pointers` (backpointer policies),
:mod:`~graphengine.semirings.reductions` (numpy building blocks).

**Adding a semiring** touches one file plus registration: subclass a family base (or
:class:`Semiring` for an algebra of your own), declare ``name``, ``components``,
``zero_elements``, ``one_elements`` (``directions`` for a selective one), write ``lift``,
``times`` and ``finalize``, and call :func:`register_semiring`. ``backward`` then runs it on
every device: without a ``kernel`` family the compiled devices use its numpy methods (the
reference fallback of :mod:`graphengine.kernels.dispatch`), and ``graphengine analyze --semiring
NAME`` accepts it. Compiled kernels are an optional second step (a family in
:mod:`graphengine.kernels.families`). tests/test_extensibility.py does this for min-plus
shortest paths from outside the package.

>>> get_semiring("entropy").components
('Z', 'R')
>>> get_semiring("kbest:2").components
('top1', 'top2', 'rest1', 'rest2')
>>> get_semiring("entropy:float32")
Entropy(dtype=float32)
"""

from typing import Callable, Dict

import numpy as np

from .absolute import Absolute, LogAbsolute
from .base import Semiring, Value
from .counting import Boolean, Counting, LogCounting
from .expectation import Entropy, LogEntropy
from .features import FeatureExpectation, PathLength
from .signedmass import SignedMass
from .families import LinearSemiring, LogLinearSemiring, SelectiveSemiring
from .kbest import KBestAbs, KBestSigned
from .maxproduct import MaxAbs, MaxPlus, SignedMaxPair
from .pointers import Backpointers, ElementPointers, NoPointers, PairPointers, RankedPointers
from .real import Real

SEMIRINGS: Dict[str, Callable[[], Semiring]] = {}
PARAMETRIC: Dict[str, Callable[[int], Semiring]] = {}  # "name:K" -> cls(K)


def register_semiring(cls, name: str = None, parametric: bool = False):
    """Make ``get_semiring(name)`` (and so ``backward(..., semirings=[name])`` and the CLI's
    ``--semiring``) build ``cls()``; ``name`` defaults to ``cls.name``. With ``parametric=True``
    the spec is ``name:K`` and builds ``cls(K)`` for a positive integer K. Returns ``cls`` (usable
    as a class decorator); raises ``ValueError`` if the name is taken.

    >>> import numpy as np
    >>> @register_semiring
    ... class Squares(Real):          # Σ over paths of Π w²
    ...     name = "squares_doc"
    ...     def lift(self, w): return (np.square(np.asarray(w, dtype=float)),)
    >>> s = get_semiring("squares_doc")
    >>> s.lift(np.array([1.5])), s.kernel     # a subclass does not inherit Real's kernels
    ((array([2.25]),), None)
    >>> unregister_semiring("squares_doc")
    """
    name = name or cls.name
    if name in SEMIRINGS or name in PARAMETRIC or ":" in name:
        raise ValueError(f"cannot register semiring {name!r}: the name is taken or contains ':'")
    (PARAMETRIC if parametric else SEMIRINGS)[name] = cls
    return cls


def unregister_semiring(name: str) -> None:
    """Remove a name added by :func:`register_semiring`."""
    if SEMIRINGS.pop(name, None) is None and PARAMETRIC.pop(name, None) is None:
        raise ValueError(f"unknown semiring {name!r}")


VALUE_DTYPES = ("float64", "float32")  # the ``NAME:DTYPE`` spec suffixes


def get_semiring(spec) -> Semiring:
    """A semiring instance from an instance or a name like ``"real"``, ``"kbest:5"`` or
    ``"real:float32"`` (values held in float32, for the semirings whose ``value_dtypes`` allow it).

    >>> get_semiring("max:float32")
    Traceback (most recent call last):
    ...
    ValueError: bad semiring 'max:float32': semiring 'max' holds its values in float64, not float32
    """
    if isinstance(spec, Semiring):
        return spec
    if isinstance(spec, str) and spec in SEMIRINGS:
        return SEMIRINGS[spec]()
    head, _, option = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if head in SEMIRINGS and option in VALUE_DTYPES:
        try:
            return SEMIRINGS[head]().with_dtype(option)
        except ValueError as e:
            raise ValueError(f"bad semiring {spec!r}: {e}") from None
    if isinstance(spec, str) and spec.split(":")[0] in PARAMETRIC:
        head, _, k = spec.partition(":")
        if not k.isdigit() or int(k) < 1:
            raise ValueError(f"bad semiring {spec!r}: expected {head}:K with K a positive integer")
        return PARAMETRIC[head](int(k))
    known = sorted(SEMIRINGS) + [f"{p}:K" for p in sorted(PARAMETRIC)]
    raise ValueError(f"unknown semiring {spec!r} (known: {', '.join(known)}; NAME:float32 for "
                     f"{', '.join(n for n in sorted(SEMIRINGS) if np.float32 in SEMIRINGS[n].value_dtypes)})")


for _cls in (Real, Absolute, LogAbsolute, SignedMaxPair, MaxAbs, MaxPlus, Entropy, LogEntropy, Counting,
             LogCounting, Boolean, PathLength, SignedMass):
    register_semiring(_cls)
register_semiring(KBestSigned, "kbest", parametric=True)
register_semiring(KBestAbs, "kbestabs", parametric=True)

__all__ = ["Semiring", "Value", "LinearSemiring", "LogLinearSemiring", "SelectiveSemiring", "Real", "Absolute",
           "LogAbsolute", "SignedMaxPair", "MaxAbs", "MaxPlus", "Entropy", "LogEntropy", "KBestSigned", "KBestAbs",
           "FeatureExpectation", "PathLength", "SignedMass",
           "Counting", "LogCounting", "Boolean", "NoPointers", "ElementPointers", "PairPointers", "RankedPointers",
           "Backpointers",
           "SEMIRINGS", "PARAMETRIC", "VALUE_DTYPES", "get_semiring", "register_semiring", "unregister_semiring"]
