"""Graph-to-graph passes: decomposition policies for fused ops, fusion of spelled-out RMS norm and tanh GELU, dead-node pruning.

Every pass returns a new :class:`~graphengine.ir.Graph` (the input is left unchanged) and keeps
node names and scopes, so nodes can still be found by the names and module paths they had.
"""

from .decompose import POLICIES, decompose
from .fuse import fuse, fuse_gelu_tanh, fuse_rms_norm
from .prune import prune, unique_name

__all__ = ["POLICIES", "decompose", "fuse", "fuse_gelu_tanh", "fuse_rms_norm", "prune", "unique_name"]
