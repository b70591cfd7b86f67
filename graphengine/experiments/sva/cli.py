"""``graphengine experiment sva``: the agreement analysis from the command line.

::

    graphengine experiment sva [--model A|B|DIR|PATH.ge] [--data FILE.tsv] [--limit N] [--out DIR]
                               [--granularity scalar|paper] [--batch-size B] [--no-progress]

``--model``: ``A`` (``results/sva/model_a``, trained by ``scripts/sva_train_model_a.py``), ``B``
(``results/sva/model_b``, ``scripts/sva_finetune_model_b.py``), a model directory or a graph file
from :func:`graphengine.experiments.sva.models.export_ge`. ``--data`` defaults to the model's own test split
(``test.tsv`` in its directory). Results go to ``--out`` (default
``results/sva/<model>_<data>_<granularity>``); a rerun resumes.

Two ways to wire it into a parser: :func:`add_arguments` adds the options to an existing
``experiment NAME`` parser (``run`` then handles ``NAME == "sva"``); :func:`add_parser` adds a
``sva`` sub-command to a sub-parsers object.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from ...errors import GraphEngineError
from .analysis import GRANULARITIES

__all__ = ["add_arguments", "add_parser", "run", "run_experiment"]


class SVACLIError(GraphEngineError):
    """A bad ``experiment sva`` argument."""


def add_arguments(p, with_common: bool = False) -> None:
    """Add the sva options to parser ``p`` (``--out`` and ``--no-progress`` too if ``with_common``)."""
    p.add_argument("--model", default=None, metavar="A|B|PATH",
                   help="sva: model A, model B, a model directory or a .ge graph file (default A)")
    p.add_argument("--data", default=None, metavar="FILE.tsv",
                   help="sva: agreement TSV (5 columns, or the grammar's 8); default the model's test.tsv")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="sva: only the first N usable sentences")
    p.add_argument("--granularity", choices=GRANULARITIES, default="scalar",
                   help="sva: scalar (exact) or paper (the original implementation's)")
    p.add_argument("--batch-size", type=int, default=8, metavar="B",
                   help="sva: sentences of one length per backward pass (default 8)")
    if with_common:
        p.add_argument("--out", metavar="DIR", help="results directory (default results/sva/MODEL_DATA_GRANULARITY)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parser(sub):
    """Add an ``sva`` sub-command to the sub-parsers object ``sub``; returns the parser."""
    p = sub.add_parser("sva", help="subject-verb agreement analysis (PAPER.md §5.2, App. B.2) on model A or B")
    add_arguments(p, with_common=True)
    return p


def _default_data(model: str) -> str:
    from .run import DEFAULT_MODELS

    folder = DEFAULT_MODELS.get(model, model)
    if not os.path.isdir(folder):
        raise SVACLIError(f"--data is needed with --model {model} (no model directory with a test.tsv)")
    path = os.path.join(folder, "test.tsv")
    if not os.path.exists(path):
        raise SVACLIError(f"--data is needed: {path} does not exist")
    return path


def run_experiment(model: Optional[str] = None, data: Optional[str] = None, out: Optional[str] = None,
                   limit: Optional[int] = None, granularity: str = "scalar", batch_size: int = 8,
                   show_progress: bool = True, quick: bool = False, **_ignored) -> Dict[str, Any]:
    """Python entry point (the keyword arguments of ``run_experiment`` elsewhere are accepted;
    ``quick`` caps the run at 50 sentences)."""
    from .run import run_sva

    model = model or "A"
    if limit is not None and limit < 1:
        raise SVACLIError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise SVACLIError(f"--batch-size must be >= 1, got {batch_size}")
    if quick:
        limit = min(limit or 50, 50)
    data = data or _default_data(model)
    return run_sva(model, data, out=out, limit=limit, granularity=granularity, batch_size=batch_size,
                   show_progress=show_progress)


def run(args, out) -> int:
    """Run from parsed arguments; print where the results went and the headline numbers."""
    doc = run_experiment(model=args.model, data=args.data, out=getattr(args, "out", None), limit=args.limit,
                         granularity=args.granularity, batch_size=args.batch_size,
                         show_progress=not getattr(args, "no_progress", False), quick=getattr(args, "quick", False))
    run_ = doc["run"]
    out.write(f"sva: {doc['sentences']} sentences ({run_['new_rows_this_run']} new, {run_['seconds_this_run']:.1f} s)"
              f" -> {run_['out']}: {', '.join(f for f in doc['files'].values() if f)}\n")
    acc = doc.get("accuracy")
    if acc:
        out.write(f"  accuracy {100 * acc['accuracy']:.1f}% (majority baseline "
                  f"{100 * (acc['majority_baseline'] or 0):.1f}%)\n")
    kqv = doc.get("kqv", {}).get("subsets", {})
    if "subject" in kqv:
        L = doc["kqv"]["layers"]
        out.write(f"  subject, last layer: {100 * (kqv['subject']['share'][L - 1][1] or 0):.1f}% keys (paper 76.1%)\n")
    return 0
