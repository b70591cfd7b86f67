"""graphengine: semiring backpropagation over explicit model graphs.

Backpropagation is a dynamic program over the gradient graph; swapping (+, ×) for another
semiring computes other path statistics (heaviest path, path entropy, path counts) in the same
reverse walk (Du et al., ACL 2023).

>>> import numpy as np
>>> import graphengine as ge
>>> g = ge.Graph(); x = g.input("x", (3,)); y = g.call("sum", g.call("exp", x), name="y")
>>> ge.backward(g, ge.forward(g, {"x": np.zeros(3)}), "y[]" if False else ge.select("y", ())).grad("x")
array([1., 1., 1.])
"""

from .errors import (FeedError, GraphEngineError, GraphFormatError, GraphValidationError, QoIError,
                     UnknownOpError)
from .ir import Graph, Node, load, register_op, save
from .engine import backward, batch, difference, forward, parse, select, weighted
from .semirings import Real, Semiring, get_semiring, register_semiring

__version__ = "0.1.0"

__all__ = ["Graph", "Node", "load", "save", "forward", "backward", "select", "difference", "weighted",
           "batch", "parse", "Semiring", "Real", "get_semiring", "register_semiring", "register_op",
           "GraphEngineError", "GraphFormatError", "GraphValidationError", "UnknownOpError", "FeedError", "QoIError",
           "__version__"]
