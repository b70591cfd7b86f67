"""Analyses on top of backward results: pooled path entropy, numerical health, synthetic
graphs with known answers."""

from .entropy import grouped_entropy, pooled_entropy, vector_entropy
from .numerics import underflow_report

__all__ = ["pooled_entropy", "grouped_entropy", "vector_entropy", "underflow_report"]
