"""Pieces the IR model builders share: activation names as IR ops, and checked parameter nodes.

>>> activation("gelu_new")
('gelu', {'approximate': 'tanh'})
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence, Tuple

import numpy as np

from ..ir import Graph
from ..ir.graph import Node

__all__ = ["Weights", "ACTIVATIONS", "activation", "weight_parameter"]

#: A model's weights: ``{parameter name: array}``.
Weights = Dict[str, np.ndarray]

#: Activation names (Hugging Face's ``hidden_act`` spellings) -> (IR op, attributes).
ACTIVATIONS = {
    "relu": ("relu", {}),
    "tanh": ("tanh", {}),
    "gelu": ("gelu", {"approximate": "none"}),
    "gelu_new": ("gelu", {"approximate": "tanh"}),
    "gelu_pytorch_tanh": ("gelu", {"approximate": "tanh"}),
    "sigmoid": ("sigmoid", {}),
}


def activation(name: str) -> Tuple[str, Dict[str, Any]]:
    """The IR op and attributes of the activation ``name``; ValueError for an unknown name."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r} (known: {', '.join(ACTIVATIONS)})") from None


def weight_parameter(g: Graph, weights: Mapping[str, np.ndarray], key: str, shape: Sequence[int], dtype: str,
                     scope: str) -> Node:
    """A parameter node named ``key`` holding ``weights[key]`` as ``dtype``, after checking that
    the weight exists and has ``shape`` (ValueError otherwise). ``scope`` is absolute."""
    if key not in weights:
        raise ValueError(f"weight {key!r} is missing")
    arr = np.asarray(weights[key])
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"weight {key!r} has shape {list(arr.shape)}, expected {list(shape)}")
    return g.parameter(key, arr.astype(dtype), scope=scope)
