"""Route a semiring's heavy reductions to compiled kernels for one device.

``on_device(semiring, device)`` returns an object with the semiring's full interface. Its
``sum_last``, ``matmul``, ``matmul_block``, ``scatter``, ``scale``... go to the kernels of the
semiring's *family* (its ``kernel`` attribute, see :mod:`graphengine.kernels.families`) on the
chosen back end (a module implementing :class:`graphengine.kernels.backend.Backend`); every
method without a kernel, and every semiring without a family, falls back to the numpy
reference. Results are the reference's: bit-identical for the selective and counting
semirings, equal up to summation order otherwise.

Devices: ``"reference"`` (the numpy methods themselves), ``"cpu"`` (Numba ``@njit``) and
``"cuda"`` (``numba.cuda``; also runs in the Numba CUDA simulator, ``NUMBA_ENABLE_CUDASIM=1``).

>>> from graphengine.semirings import get_semiring
>>> s = on_device(get_semiring("max"), "cpu")
>>> s.name, s.components, s.selective
('max', ('max', 'min'), True)
>>> on_device(get_semiring("max"), "tpu")
Traceback (most recent call last):
...
graphengine.kernels.dispatch.DeviceError: unknown device 'tpu' (known: reference, cpu, cuda)
"""

from __future__ import annotations

from typing import Optional

from ..errors import GraphEngineError
from ..semirings.base import Semiring
from .backend import Backend
from .families import FAMILIES

DEVICES = ("reference", "cpu", "cuda")
_ROUTED = ("sum_last", "matmul", "matmul_block", "scatter", "scale", "scale_with_sources", "plus")


class DeviceError(GraphEngineError):
    """An unknown device, or CUDA requested where it is not available."""


def backend(device: str) -> Optional[Backend]:
    """The kernel back end (a module) for ``device``; ``None`` for the reference."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r} (known: {', '.join(DEVICES)})")
    if device == "reference":
        return None
    if device == "cpu":
        from . import cpu
        return cpu
    from . import cuda
    cuda.require()
    return cuda


class DeviceSemiring(Semiring):
    """A semiring whose reductions run on a kernel back end (same interface, same results)."""

    def __init__(self, base: Semiring, be: Backend):
        self.base = base
        self.device = be.NAME
        for attr in ("name", "components", "zero_elements", "one_elements", "pointers", "dtype"):
            setattr(self, attr, getattr(base, attr))
        family = FAMILIES.get(getattr(base, "kernel", None))
        ops = family(base, be) if family is not None else None
        for name in _ROUTED:
            impl = getattr(ops, name, None) if ops is not None else None
            setattr(self, name, impl if impl is not None else getattr(base, name))

    def __getattr__(self, attr):  # k, signed, next_component, finalize... come from the base
        return getattr(self.base, attr)

    def lift(self, w):
        return self.base.lift(w)

    def times(self, a, b):
        return self.base.times(a, b)

    def finalize(self, v):
        return self.base.finalize(v)

    def paper_view(self) -> Semiring:
        return self.base.paper_view()

    def next_component(self, component, w):
        return self.base.next_component(component, w)

    def where(self, mask, a, b):
        return self.base.where(mask, a, b)

    def __repr__(self) -> str:
        return f"{self.base!r}@{self.device}"


def on_device(sr: Semiring, device: str = "cpu") -> Semiring:
    """``sr`` with its reductions on ``device``; the reference semiring itself for
    ``"reference"``."""
    be = backend(device)
    if be is None:
        return sr
    return DeviceSemiring(sr, be)
