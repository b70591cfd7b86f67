"""Semirings: the algebra a backward pass runs in (one module per family).

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
count          number of paths (float64)
logcount       log number of paths
bool           reachability (backpointers)
kbest:K        the K largest signed path products (backpointers with ranks)
kbestabs:K     the K largest |path products| (backpointers with ranks)
=============  ==========================================================================

>>> get_semiring("entropy").components
('Z', 'R')
"""

from .absolute import Absolute, LogAbsolute
from .base import Semiring, Value
from .counting import Boolean, Counting, LogCounting
from .expectation import Entropy, LogEntropy
from .kbest import KBestAbs, KBestSigned
from .maxproduct import MaxAbs, MaxPlus, SignedMaxPair
from .real import Real

SEMIRINGS = {cls.name: cls for cls in (Real, Absolute, LogAbsolute, SignedMaxPair, MaxAbs, MaxPlus,
                                       Entropy, LogEntropy, Counting, LogCounting, Boolean)}


def get_semiring(spec) -> Semiring:
    """A semiring instance from an instance or a name like ``"real"``."""
    if isinstance(spec, Semiring):
        return spec
    if isinstance(spec, str) and spec in SEMIRINGS:
        return SEMIRINGS[spec]()
    if isinstance(spec, str) and spec.split(":")[0] in ("kbest", "kbestabs"):
        head, _, k = spec.partition(":")
        if not k.isdigit() or int(k) < 1:
            raise ValueError(f"bad semiring {spec!r}: expected {head}:K with K a positive integer")
        return (KBestSigned if head == "kbest" else KBestAbs)(int(k))
    raise ValueError(f"unknown semiring {spec!r} (known: {', '.join(sorted(SEMIRINGS))}, kbest:K, kbestabs:K)")


__all__ = ["Semiring", "Value", "Real", "Absolute", "LogAbsolute", "SignedMaxPair", "MaxAbs", "MaxPlus",
           "Entropy", "LogEntropy", "KBestSigned", "KBestAbs", "Counting", "LogCounting", "Boolean", "SEMIRINGS", "get_semiring"]
