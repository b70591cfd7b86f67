"""The engine: numpy forward and the semiring backward walk.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> g = Graph(); x = g.input("x", (2,)); y = g.call("tanh", x, name="y")
>>> r = backward(g, forward(g, {"x": np.zeros(2)}), "y[0]")
>>> r.grad("x")
array([1., 0.])
"""

from .backward import backward, differentiable_nodes
from .forward import Activations, forward
from .qoi import QoI, batch, difference, parse, select, weighted
from .result import Backpointers, BackwardResult

__all__ = ["forward", "backward", "differentiable_nodes", "Activations", "QoI", "select", "difference",
           "weighted", "batch", "parse", "BackwardResult", "Backpointers"]
