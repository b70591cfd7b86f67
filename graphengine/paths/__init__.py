"""Paths recovered from backpointers: the heaviest path from any vertex to the QoI.

Random paths drawn exactly ∝ their mass: :mod:`~graphengine.paths.sample`.

A path is the ordered list of scalar vertices from a starting element to the QoI element, each
with the local derivative of the edge leaving it; its weight is the product of those
derivatives and the QoI coefficient.
"""

from .sample import PathSampler, SamplingError, sample_paths
from .top import Path, PathStep, best_input_path, best_start, k_best_paths, local_derivative, top_path

__all__ = ["Path", "PathStep", "top_path", "best_input_path", "best_start", "k_best_paths", "local_derivative",
           "PathSampler", "SamplingError", "sample_paths"]
