"""``graphengine experiment sva``: the subject–verb agreement analysis (paper §5.2, App. B.2).

::

    graphengine experiment sva [--model A|B|DIR|PATH.ge] [--data FILE.tsv] [--limit N] [--out DIR]
                               [--granularity scalar|paper] [--batch-size B] [--quick] [--no-progress]

``--model``: ``A`` (``results/sva/model_a``, trained by ``graphengine experiment sva-train-a``),
``B`` (``results/sva/model_b``, ``graphengine experiment sva-train-b TSV``), a model directory
or a graph file from :func:`graphengine.experiments.sva.models.export_ge`. ``--data`` defaults
to the model's own test split (``test.tsv`` in its directory). Results go to ``--out`` (default
``results/sva/<model>_<data>_<granularity>``); a rerun resumes. ``--quick`` caps the run at 50
sentences. The analysis is deterministic, so the study has no ``--seed`` (``SEEDED = False``).
The paper's method as this project implements it: docs/method.md.

>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_arguments(p)
>>> vars(p.parse_args(["--model", "B", "--limit", "5"]))["granularity"]
'scalar'
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from ...errors import GraphEngineError
from .analysis import GRANULARITIES

__all__ = ["NAME", "DESCRIPTION", "add_arguments", "run", "summary"]

NAME = "sva"
DESCRIPTION = "paper §5.2: subject-verb agreement, K/Q/V credit and entropy on model A or B (docs/sva.md)"
SEEDED = False
QUICK_HELP = "at most 50 sentences"
OUT_HELP = "results directory (default results/sva/MODEL_DATA_GRANULARITY); a rerun resumes"
QUICK_LIMIT = 50


class SVACLIError(GraphEngineError):
    """A bad ``experiment sva`` argument."""


def add_arguments(p) -> None:
    """The options of ``graphengine experiment sva`` beyond the common ones."""
    p.add_argument("--model", default=None, metavar="A|B|PATH",
                   help="model A, model B, a model directory or a .ge graph file (default A)")
    p.add_argument("--data", default=None, metavar="FILE.tsv",
                   help="agreement TSV (5 columns, or the grammar's 8); default the model's test.tsv")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N usable sentences")
    p.add_argument("--granularity", choices=GRANULARITIES, default="scalar",
                   help="scalar (exact) or paper (the original implementation's; docs/granularity.md)")
    p.add_argument("--batch-size", type=int, default=8, metavar="B",
                   help="sentences of one length per backward pass (default 8)")


def _default_data(model: str) -> str:
    from .run import DEFAULT_MODELS

    folder = DEFAULT_MODELS.get(model, model)
    if not os.path.isdir(folder):
        raise SVACLIError(f"--data is needed with --model {model} (no model directory with a test.tsv)")
    path = os.path.join(folder, "test.tsv")
    if not os.path.exists(path):
        raise SVACLIError(f"--data is needed: {path} does not exist")
    return path


def run(out: Optional[str] = None, quick: bool = False, progress: bool = True, model: Optional[str] = None,
        data: Optional[str] = None, limit: Optional[int] = None, granularity: str = "scalar",
        batch_size: int = 8) -> Dict[str, Any]:
    """Run (or resume) the analysis; the results document (``out`` in it: where the files went)."""
    from .run import run_sva

    model = model or "A"
    if limit is not None and limit < 1:
        raise SVACLIError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise SVACLIError(f"--batch-size must be >= 1, got {batch_size}")
    if quick:
        limit = min(limit or QUICK_LIMIT, QUICK_LIMIT)
    data = data or _default_data(model)
    doc = run_sva(model, data, out=out, limit=limit, granularity=granularity, batch_size=batch_size,
                  show_progress=progress)
    doc["out"] = doc["run"]["out"]
    return doc


def summary(doc: Dict[str, Any]) -> List[str]:
    """The headline numbers ``graphengine experiment sva`` prints."""
    run_ = doc["run"]
    lines = [f"{doc['sentences']} sentences ({run_['new_rows_this_run']} new, {run_['seconds_this_run']:.1f} s)"]
    acc = doc.get("accuracy")
    if acc:
        lines.append(f"accuracy {100 * acc['accuracy']:.1f}% (majority baseline "
                     f"{100 * (acc['majority_baseline'] or 0):.1f}%)")
    kqv = doc.get("kqv", {}).get("subsets", {})
    if "subject" in kqv:
        L = doc["kqv"]["layers"]
        lines.append(f"subject, last layer: {100 * (kqv['subject']['share'][L - 1][1] or 0):.1f}% keys (paper 76.1%)")
    return lines
