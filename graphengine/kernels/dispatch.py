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

Small operations stay on the reference (``"cpu"`` only). Each routed call estimates its work
(elements × contracted length for a contraction, elements × block size for a dense block,
elements otherwise); below :func:`min_work` (default 2¹⁴, ``$GRAPHENGINE_KERNEL_MIN_WORK``,
:func:`set_min_work`, 0 for CUDA) it runs the numpy method, which needs no compilation and on arrays this
small costs no more than the kernel's glue. A graph whose operations are all small therefore
never imports or compiles a kernel: its first run on a machine is as fast as its second.
Results are unchanged: the reference's (bit-identical for the selective and counting semirings,
equal up to summation order otherwise, as for the kernels). The back end is imported and the
family's glue built on the first call that reaches a kernel; ``graphengine warmup`` sets the
threshold to 0 to compile every kernel.

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

import contextlib
import os
from typing import Callable, Dict, Iterator, Optional

import numpy as np

from ..errors import GraphEngineError
from ..progress import announce_compilation
from ..semirings.base import Semiring
from .backend import Backend
from .families import FAMILIES

DEVICES = ("reference", "cpu", "cuda")
_ROUTED = ("sum_last", "matmul", "matmul_block", "scatter", "scale", "scale_with_sources", "plus")


def _size(x) -> int:
    return x.size if isinstance(x, np.ndarray) else int(np.size(x))


# the work of one routed call, from its arguments (the reference's cost grows with it)
WORK: Dict[str, Callable[..., int]] = {
    "sum_last": lambda a: _size(a[0]),
    "matmul": lambda a, w: _size(a[0]) * int(np.shape(w)[-1]),
    "matmul_block": lambda a, block: _size(a[0]) * int(block.size),
    "scatter": lambda a, index, size: max(_size(a[0]), int(size)),
    "scale": lambda a, w: max(_size(a[0]), _size(w)),
    "scale_with_sources": lambda a, w: max(_size(a[0]), _size(w)),
    "plus": lambda a, b: max(_size(a[0]), _size(b[0])),
}
DEFAULT_MIN_WORK = 1 << 14
_min_work: Dict[str, int] = {"cuda": 0}  # "cpu": read from the environment on first use


class DeviceError(GraphEngineError):
    """An unknown device, or CUDA requested where it is not available."""


def min_work(device: str = "cpu") -> int:
    """Calls on ``device`` whose work is below this run on the reference (0 for CUDA; for the
    CPU ``$GRAPHENGINE_KERNEL_MIN_WORK`` if set, else :data:`DEFAULT_MIN_WORK`)."""
    n = _min_work.get(device)
    if n is None:
        n = _min_work[device] = _from_environment() if device == "cpu" else 0
    return n


def _from_environment() -> int:
    text = os.environ.get("GRAPHENGINE_KERNEL_MIN_WORK", "").strip()
    if not text:
        return DEFAULT_MIN_WORK
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise DeviceError(f"GRAPHENGINE_KERNEL_MIN_WORK must be a non-negative integer, got {text!r}")
    return n


def set_min_work(n: int, device: str = "cpu") -> int:
    """Set :func:`min_work` for ``device`` (0: every call that has a kernel uses it); returns
    the previous value."""
    old = min_work(device)
    _min_work[device] = int(n)
    return old


@contextlib.contextmanager
def kernels_for_all(device: str = "cpu") -> Iterator[None]:
    """Within the block every routed call on ``device`` uses its kernel, however small.

    >>> with kernels_for_all():
    ...     min_work()
    0
    """
    old = set_min_work(0, device)
    try:
        yield
    finally:
        set_min_work(old, device)


def backend(device: str) -> Optional[Backend]:
    """The kernel back end (a module) for ``device``; ``None`` for the reference."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r} (known: {', '.join(DEVICES)})")
    if device == "reference":
        return None
    announce_compilation()  # one stderr line when Numba compiles (not when its disk cache has the kernels)
    if device == "cpu":
        from . import cpu
        return cpu
    from . import cuda
    cuda.require()
    return cuda


class DeviceSemiring(Semiring):
    """A semiring whose reductions run on a kernel back end (same interface, same results).

    The back end and the family's glue are made on the first call big enough for a kernel
    (:func:`min_work`); smaller calls run the reference's method.
    """

    def __init__(self, base: Semiring, device: str):
        self.base = base
        self.device = device
        for attr in ("name", "components", "zero_elements", "one_elements", "pointers", "dtype"):
            setattr(self, attr, getattr(base, attr))
        self._family = FAMILIES.get(getattr(base, "kernel", None))
        self._ops = None
        for name in _ROUTED:
            routed = self._family is not None and getattr(self._family, name, None) is not None
            setattr(self, name, self._route(name) if routed else getattr(base, name))

    @property
    def kernels(self):
        """The family's kernel glue for this semiring and call (made on first use; ``None`` for
        a semiring without a kernel family), e.g. to inspect its per-call lift cache."""
        if self._ops is None and self._family is not None:
            self._ops = self._family(self.base, backend(self.device))
        return self._ops

    def _kernel(self, name: str):
        return getattr(self.kernels, name)

    def _route(self, name: str):
        reference, work, device = getattr(self.base, name), WORK[name], self.device
        impl = []

        def call(*args, **kwargs):
            if not kwargs and work(*args) < min_work(device):
                return reference(*args)
            if not impl:
                impl.append(self._kernel(name))
            return impl[0](*args, **kwargs)
        call.__name__ = name
        return call

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

    def close_op(self, v):
        return self.base.close_op(v)

    def where(self, mask, a, b):
        return self.base.where(mask, a, b)

    def __repr__(self) -> str:
        return f"{self.base!r}@{self.device}"


def on_device(sr: Semiring, device: str = "cpu") -> Semiring:
    """``sr`` with its reductions on ``device``; the reference semiring itself for
    ``"reference"``."""
    if device == "cpu":  # the back end is imported on the first call that needs a kernel
        return DeviceSemiring(sr, device)
    if backend(device) is None:
        return sr
    return DeviceSemiring(sr, device)
