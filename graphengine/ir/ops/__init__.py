"""Op definitions; importing this package registers every op."""

from . import blocks, elementwise, leaves, linalg, logic, movement, reductions  # noqa: F401
from . import onnx_ops  # noqa: F401
