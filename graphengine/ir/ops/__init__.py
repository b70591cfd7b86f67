"""Op definitions; importing this package registers every op."""

from . import blocks, conv, elementwise, leaves, linalg, logic, movement, reductions, windows  # noqa: F401
from . import onnx_ops  # noqa: F401
