"""Semirings: the algebra a backward pass runs in (one module per family).

>>> from graphengine.semirings import get_semiring
>>> get_semiring("real").name
'real'
"""

from .base import Semiring, Value
from .real import Real

SEMIRINGS = {"real": Real}


def get_semiring(spec) -> Semiring:
    """A semiring instance from an instance or a name like ``"real"``."""
    if isinstance(spec, Semiring):
        return spec
    if isinstance(spec, str) and spec in SEMIRINGS:
        return SEMIRINGS[spec]()
    raise ValueError(f"unknown semiring {spec!r} (known: {', '.join(sorted(SEMIRINGS))})")


__all__ = ["Semiring", "Value", "Real", "SEMIRINGS", "get_semiring"]
