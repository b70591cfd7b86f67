"""Analyses on top of backward results: pooled path entropy, numerical health, synthetic
graphs with known answers."""

from .entropy import vector_entropy
from .numerics import underflow_report

__all__ = ["vector_entropy", "underflow_report"]
