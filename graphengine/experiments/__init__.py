"""Reproductions of the paper's synthetic findings (PAPER.md §3, §5, App. B.1).

Each experiment trains small models in torch (the optional ``experiments`` extra), exports them
to the IR with the torch frontend, saves them as graph files and analyses them with graphengine
alone; a rerun reuses the saved graphs, so the analyses need no torch.

=================  =====================================================  ==========================
name               module                                                 paper
=================  =====================================================  ==========================
synthetic-paths    :mod:`graphengine.experiments.synthetic_paths`          §5.1 (top path, K/Q/V)
entropy-mdl        :mod:`graphengine.experiments.entropy_mdl`              §5.3 (entropy vs MDL)
ffoom              :mod:`graphengine.experiments.ffoom`                    App. B.1 (entropy vs size)
=================  =====================================================  ==========================

``graphengine experiment NAME [--quick] [--out DIR] [--seed S] [--retrain]`` runs one; results
go to ``results/NAME/`` (``results.json``, ``table.md``, PNG plots, ``models/*.ge``).

>>> sorted(EXPERIMENTS)
['entropy-mdl', 'ffoom', 'synthetic-paths']
"""

from __future__ import annotations

import importlib
from typing import Any, Dict

EXPERIMENTS = {
    "synthetic-paths": "graphengine.experiments.synthetic_paths",
    "entropy-mdl": "graphengine.experiments.entropy_mdl",
    "ffoom": "graphengine.experiments.ffoom",
}

__all__ = ["EXPERIMENTS", "run_experiment"]


def run_experiment(name: str, **kwargs) -> Dict[str, Any]:
    """Run experiment ``name`` (see :data:`EXPERIMENTS`); ``kwargs`` go to its ``run``."""
    from .common import ExperimentError

    if name not in EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r} (known: {', '.join(EXPERIMENTS)})")
    return importlib.import_module(EXPERIMENTS[name]).run(**kwargs)
