"""The op registry: for every op, its attributes, shape/dtype inference, numpy forward and the
structure of its local Jacobian (see :mod:`graphengine.ir.jacobian`).

Ops are plain data (:class:`OpDef`) registered by the modules in :mod:`graphengine.ir.ops`.

Adding an op touches one place: an :class:`OpDef` (shape inference, numpy forward, the Jacobian
*structure* of each input from :mod:`graphengine.ir.jacobian`) passed to :func:`register_op`,
in a module of :mod:`graphengine.ir.ops` or in user code imported before graphs using the op are
built or loaded. The engine, every semiring and every device then handle it (the structures are
what they know); tests/test_extensibility.py adds ``softplus`` this way from outside the
package. Only an op whose Jacobian fits no existing structure needs a new structure class and
its ``THROUGH`` entry in :mod:`graphengine.engine.propagate`.

>>> import numpy as np
>>> from graphengine.ir import Diagonal, Graph, get_op
>>> get_op("softmax").structure
'dense_block'
>>> cube = register_op(OpDef("cube_doc", "diagonal", 1, 1, lambda ts, a: ts[0], lambda xs, a: xs[0] ** 3,
...                          lambda slot, xs, y, a: Diagonal(3 * xs[0] ** 2)))
>>> g = Graph(); x = g.input("x", (2,)); y = g.call("cube_doc", x, name="y")
>>> from graphengine.engine import backward, forward, select
>>> backward(g, forward(g, {"x": np.array([1.0, 2.0])}), select("y", (1,))).grad("x")
array([ 0., 12.])
>>> unregister_op("cube_doc")
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import UnknownOpError
from .jacobian import Structure

# "none": integer/boolean ops, whose outputs carry no gradient (their jacobian is always None)
STRUCTURE_KINDS = ("diagonal", "contraction", "reduction", "movement", "dense_block", "leaf", "none")


@dataclass(frozen=True)
class TensorType:
    """Static type of a node's value."""

    shape: Tuple[int, ...]
    dtype: str

    @property
    def ndim(self) -> int:
        return len(self.shape)


class AttrError(ValueError):
    """Bad attribute; the graph adds the node and scope to the message."""


class ShapeError(ValueError):
    """Inputs of the wrong shape or dtype for an op; the graph adds node and scope."""


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


_KINDS: Dict[str, Callable[[Any], bool]] = {
    "int": _is_int,
    "float": lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "ints": lambda v: isinstance(v, (list, tuple)) and all(_is_int(i) for i in v),
    "int_or_ints": lambda v: _is_int(v) or (isinstance(v, (list, tuple)) and all(_is_int(i) for i in v)),
}


@dataclass(frozen=True)
class Attr:
    """Specification of one attribute: its kind, whether it is required, its default.

    A ``float`` attribute must be finite (NaN or ±inf in an attribute makes every value of the
    op NaN or inf); ``positive=True`` also requires it to be > 0 (an epsilon).
    """

    kind: str
    required: bool = False
    default: Any = None
    choices: Optional[Sequence[Any]] = None
    positive: bool = False


@dataclass(frozen=True)
class OpDef:
    """One op.

    - ``infer(types, attrs) -> TensorType`` raises :class:`ShapeError` on bad inputs;
    - ``forward(values, attrs) -> ndarray`` (numpy);
    - ``jacobian(slot, values, output, attrs) -> Structure | None`` for differentiable slots
      (``None``: no gradient flows into that slot, e.g. integer indices, boolean masks);
    - ``structure`` names the Jacobian kind of the op's main input, for documentation and
      ``graphengine info``.
    """

    name: str
    structure: str
    min_inputs: int
    max_inputs: Optional[int]
    infer: Callable[[List[TensorType], Dict[str, Any]], TensorType]
    forward: Callable[[List[np.ndarray], Dict[str, Any]], np.ndarray]
    jacobian: Optional[Callable[[int, List[np.ndarray], np.ndarray, Dict[str, Any]], Optional[Structure]]] = None
    attrs: Dict[str, Attr] = field(default_factory=dict)
    doc: str = ""

    def check_attrs(self, attrs: Dict[str, Any]) -> Dict[str, Any]:
        """Return ``attrs`` with defaults filled in; raise :class:`AttrError` if any is bad."""
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            raise AttrError(f"unknown attribute(s) {', '.join(unknown)} for op '{self.name}'")
        out = {}
        for key, spec in self.attrs.items():
            if key not in attrs or attrs[key] is None:
                if spec.required:
                    raise AttrError(f"missing required attribute '{key}' for op '{self.name}'")
                out[key] = spec.default
                continue
            value = attrs[key]
            if not _KINDS[spec.kind](value):
                raise AttrError(f"attribute '{key}' of op '{self.name}' must be {spec.kind}, got {value!r}")
            if spec.kind == "float" and not math.isfinite(value):
                raise AttrError(f"attribute '{key}' of op '{self.name}' must be a finite number, got {value!r}")
            if spec.positive and not value > 0:
                raise AttrError(f"attribute '{key}' of op '{self.name}' must be > 0, got {value!r}")
            if spec.choices is not None and value not in spec.choices:
                raise AttrError(f"attribute '{key}' of op '{self.name}' must be one of {list(spec.choices)}, got {value!r}")
            if isinstance(value, tuple):
                value = list(value)
            if isinstance(value, list):
                value = [int(v) for v in value]
            elif spec.kind == "int":
                value = int(value)
            elif spec.kind == "float":
                value = float(value)
            out[key] = value
        return out


_REGISTRY: Dict[str, OpDef] = {}


def register_op(opdef: OpDef, *aliases: str) -> OpDef:
    """Add an op (and optional alias names) to the registry; raise ``ValueError`` for a name
    already taken or an unknown structure kind."""
    if opdef.structure not in STRUCTURE_KINDS:
        raise ValueError(f"op {opdef.name!r}: structure must be one of {STRUCTURE_KINDS}, got {opdef.structure!r}")
    names = (opdef.name,) + aliases
    for name in names:
        if name in _REGISTRY:
            raise ValueError(f"op {name!r} registered twice")
    for name in names:
        _REGISTRY[name] = opdef
    return opdef


def unregister_op(name: str) -> None:
    """Remove an op registered by :func:`register_op` (with its aliases); graphs already built
    with it can no longer run."""
    opdef = get_op(name)
    for key in [k for k, v in _REGISTRY.items() if v is opdef]:
        del _REGISTRY[key]


def get_op(name: str) -> OpDef:
    """Look up an op by name; raise :class:`UnknownOpError` if it does not exist."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownOpError(f"unknown op '{name}'") from None


def op_names() -> List[str]:
    """All registered op names (aliases included), sorted."""
    return sorted(_REGISTRY)
