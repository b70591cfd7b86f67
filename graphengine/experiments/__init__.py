"""The experiments: a registry of studies, each one module run as ``graphengine experiment NAME``.

=========================  ===================================================  =====================================
name                       module                                               what
=========================  ===================================================  =====================================
synthetic-paths            :mod:`graphengine.experiments.synthetic_paths`       paper §5.1: top path through K/Q/V
entropy-mdl                :mod:`graphengine.experiments.entropy_mdl`           paper §5.3: entropy vs MDL
ffoom                      :mod:`graphengine.experiments.ffoom`                 paper App. B.1: entropy vs model size
synthetic-planted-path     :mod:`graphengine.experiments.planted_path`          a planted heavy path is recovered
synthetic-equal-weights    :mod:`graphengine.experiments.equal_weights`         equal weights: H = log #paths
synthetic-scaling          :mod:`graphengine.experiments.scaling`               backward time vs number of edges
synthetic-underflow        :mod:`graphengine.experiments.underflow`             plain vs log-space semirings, 200 layers
sva                        :mod:`graphengine.experiments.sva.study`             paper §5.2: subject–verb agreement
sva-train-a                :mod:`graphengine.experiments.sva.model_a`           train model A for ``sva``
sva-train-b                :mod:`graphengine.experiments.sva.model_b`           fine-tune model B for ``sva``
=========================  ===================================================  =====================================

(The paper's method and experiments as this project implements them: docs/method.md.)

A study module defines

- ``NAME`` (the registered name) and ``DESCRIPTION`` (one line, shown by ``graphengine experiment --help``);
- ``add_arguments(parser)``: the options only this study has (the command line adds the common
  ones: ``--out DIR``, ``--quick``, ``--no-progress`` and, unless ``SEEDED = False``, ``--seed S``);
- ``run(out=None, quick=False, seed=0, progress=True, **options) -> dict``: runs it, writes its
  files under ``out`` (default ``results/NAME``) and returns the results document, whose
  ``files`` entry names what was written and whose ``passed`` entry, where present, is the
  study's own correctness check (the command exits 1 when it is false). A study without a seed
  (``SEEDED = False``) takes no ``seed`` argument;
- optionally ``summary(doc) -> list of str``: the lines the command prints after it ran.

Studies import torch, transformers or scipy only inside ``run``, so listing and parsing them
needs none of the extras. :func:`register_experiment` adds a study from outside the package.

>>> sorted(EXPERIMENTS)[:4]
['entropy-mdl', 'ffoom', 'sva', 'sva-train-a']
>>> experiment("ffoom").DESCRIPTION
'paper App. B.1: path entropy of the input features vs hidden size (FFOOM MLPs, torch)'
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Dict

from .common import ExperimentError

__all__ = ["EXPERIMENTS", "experiment", "register_experiment", "run_experiment", "ExperimentError"]

#: Registered name -> module path (imported on first use).
EXPERIMENTS: Dict[str, str] = {
    "synthetic-paths": "graphengine.experiments.synthetic_paths",
    "entropy-mdl": "graphengine.experiments.entropy_mdl",
    "ffoom": "graphengine.experiments.ffoom",
    "synthetic-planted-path": "graphengine.experiments.planted_path",
    "synthetic-equal-weights": "graphengine.experiments.equal_weights",
    "synthetic-scaling": "graphengine.experiments.scaling",
    "synthetic-underflow": "graphengine.experiments.underflow",
    "sva": "graphengine.experiments.sva.study",
    "sva-train-a": "graphengine.experiments.sva.model_a",
    "sva-train-b": "graphengine.experiments.sva.model_b",
}

_REQUIRED = ("NAME", "DESCRIPTION", "add_arguments", "run")


def _check(module: ModuleType, name: str) -> ModuleType:
    missing = [a for a in _REQUIRED if not hasattr(module, a)]
    if missing:
        raise ExperimentError(f"experiment {name!r}: module {module.__name__} lacks {', '.join(missing)}")
    if module.NAME != name:
        raise ExperimentError(f"experiment {name!r}: module {module.__name__} is named {module.NAME!r}")
    return module


def experiment(name: str) -> ModuleType:
    """The study module registered as ``name``."""
    if name not in EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r} (known: {', '.join(EXPERIMENTS)})")
    return _check(importlib.import_module(EXPERIMENTS[name]), name)


def register_experiment(module_path: str) -> str:
    """Register the study module at ``module_path`` under its ``NAME`` (imported now, so a
    module that does not follow the protocol fails here); returns the name. Registering a name
    twice is an error."""
    module = importlib.import_module(module_path)
    name = getattr(module, "NAME", None)
    if not isinstance(name, str) or not name:
        raise ExperimentError(f"module {module_path} has no NAME")
    if name in EXPERIMENTS and EXPERIMENTS[name] != module_path:
        raise ExperimentError(f"experiment {name!r} is already registered ({EXPERIMENTS[name]})")
    _check(module, name)
    EXPERIMENTS[name] = module_path
    return name


def run_experiment(name: str, **kwargs) -> Dict[str, Any]:
    """Run experiment ``name``; ``kwargs`` go to its ``run``."""
    return experiment(name).run(**kwargs)
