"""The IR: graphs, nodes, the op registry, Jacobian structures and graph files."""

from . import ops  # noqa: F401  (registers every op)
from .dtypes import DTYPES, FLOAT_DTYPES
from .graph import Graph, Node
from .jacobian import Contraction, DenseBlock, Diagonal, Movement, Reduction, Structure
from .registry import Attr, OpDef, TensorType, get_op, op_names, register_op, unregister_op
from .serialize import FORMAT_VERSION, load, save

__all__ = [
    "Graph", "Node", "OpDef", "Attr", "TensorType", "get_op", "op_names", "register_op", "unregister_op", "load",
    "save", "Diagonal", "Reduction", "Contraction", "Movement", "DenseBlock", "Structure", "DTYPES",
    "FLOAT_DTYPES", "FORMAT_VERSION",
]
