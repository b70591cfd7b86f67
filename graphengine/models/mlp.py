"""A multi-layer perceptron built directly in the IR from numpy weights.

>>> cfg = MLPConfig(in_features=2, hidden_sizes=(3,), out_features=1)
>>> sorted(random_mlp_weights(cfg))
['layers.0.bias', 'layers.0.weight', 'layers.1.bias', 'layers.1.weight']
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Tuple

import numpy as np

from ..ir import Graph
from .layers import Weights, activation, weight_parameter

__all__ = ["MLPConfig", "random_mlp_weights", "build_mlp"]


@dataclass(frozen=True)
class MLPConfig:
    """A stack of ``linear`` layers with an activation between them (none after the last).

    ``hidden_sizes=(16, 16)`` with ``in_features=4, out_features=3`` gives three linear layers
    ``layers.0`` (4→16), ``layers.1`` (16→16), ``layers.2`` (16→3).
    """

    in_features: int = 4
    hidden_sizes: Tuple[int, ...] = (16, 16)
    out_features: int = 3
    activation: str = "relu"
    bias: bool = True

    @property
    def sizes(self) -> Tuple[int, ...]:
        return (self.in_features, *self.hidden_sizes, self.out_features)

    @property
    def num_layers(self) -> int:
        return len(self.hidden_sizes) + 1


def random_mlp_weights(config: MLPConfig, seed: int = 0) -> Weights:
    """``layers.{i}.weight`` [out, in] ~ N(0, 1/in) and ``layers.{i}.bias`` ~ N(0, 0.1²)."""
    activation(config.activation)
    rng = np.random.default_rng(seed)
    out: Weights = {}
    for i, (n_in, n_out) in enumerate(zip(config.sizes[:-1], config.sizes[1:])):
        out[f"layers.{i}.weight"] = rng.normal(0.0, 1.0 / math.sqrt(n_in), size=(n_out, n_in))
        if config.bias:
            out[f"layers.{i}.bias"] = rng.normal(0.0, 0.1, size=(n_out,))
    return out


def build_mlp(config: MLPConfig, weights: Mapping[str, np.ndarray], batch: int, dtype: str = "float64") -> Graph:
    """The MLP as a graph: input ``x`` [batch, in_features], output ``logits`` [batch, out_features].

    Layer ``i`` lives in scope ``layers.{i}``: parameters ``layers.{i}.weight`` / ``.bias``, the
    linear node ``layers.{i}.linear`` and the activation node ``layers.{i}.output`` (the last
    layer's linear node is ``logits`` and has no activation).

    >>> cfg = MLPConfig(in_features=3, hidden_sizes=(5,), out_features=2, activation="tanh")
    >>> g = build_mlp(cfg, random_mlp_weights(cfg, seed=1), batch=4)
    >>> [n.name for n in g if n.op not in ("parameter", "input")]
    ['layers.0.linear', 'layers.0.output', 'logits']
    >>> g["logits"].shape
    (4, 2)
    """
    act_op, act_attrs = activation(config.activation)
    meta_config = dict(asdict(config), hidden_sizes=list(config.hidden_sizes))  # JSON-native
    g = Graph(meta={"model": "mlp", "config": meta_config, "decomposition": "fused"})
    h = g.input("x", (batch, config.in_features), dtype=dtype)
    n = config.num_layers
    for i, (n_in, n_out) in enumerate(zip(config.sizes[:-1], config.sizes[1:])):
        scope = f"layers.{i}"
        w = weight_parameter(g, weights, f"{scope}.weight", (n_out, n_in), dtype, scope)
        args = [h, w]
        if config.bias:
            args.append(weight_parameter(g, weights, f"{scope}.bias", (n_out,), dtype, scope))
        last = i == n - 1
        h = g.call("linear", *args, name="logits" if last else f"{scope}.linear", scope=scope)
        if not last:
            h = g.call(act_op, h, name=f"{scope}.output", scope=scope, **act_attrs)
    g.mark_output(h)
    return g
