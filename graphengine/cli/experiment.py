"""``graphengine experiment NAME ...``: one sub-command per registered experiment.

Every study in :data:`graphengine.experiments.EXPERIMENTS` gets a parser with the common options
(``--out``, ``--quick``, ``--no-progress`` and, for seeded studies, ``--seed``) and exactly the
options its own ``add_arguments`` adds, so an option a study would ignore is a usage error.
After the run the command prints where the files went, the study's summary lines and the
timings; it exits 1 when the results document says ``"passed": false``.

>>> import argparse
>>> p = argparse.ArgumentParser(prog="graphengine")
>>> _ = add_parser(p.add_subparsers(dest="command"))
>>> args = p.parse_args(["experiment", "synthetic-underflow", "--width", "2", "--no-progress"])
>>> args.name, args.width, options(args)
('synthetic-underflow', 2, {'layers': 200, 'width': 2})
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict

from ..errors import GraphEngineError

__all__ = ["add_parser", "options", "run"]

_COMMON = ("command", "name", "out", "quick", "seed", "no_progress")


class ExperimentCLIError(GraphEngineError):
    """A bad common ``experiment`` argument."""


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``experiment`` with one sub-parser per registered study to the sub-parsers ``sub``."""
    from ..experiments import EXPERIMENTS, experiment

    p = sub.add_parser("experiment", help="run one of the registered experiments (see 'experiment --help')",
                       description="Run a registered experiment. Training needs the experiments extra "
                                   "(pip install -e '.[experiments]'); saved models are reused without it.")
    studies = p.add_subparsers(dest="name", metavar="NAME", required=True, title="experiments")
    for name in EXPERIMENTS:
        module = experiment(name)
        q = studies.add_parser(name, help=module.DESCRIPTION, description=module.DESCRIPTION)
        q.add_argument("--out", metavar="DIR", help=getattr(module, "OUT_HELP", f"results directory (default results/{name})"))
        q.add_argument("--quick", action="store_true",
                       help=getattr(module, "QUICK_HELP", "small settings that finish in minutes"))
        if getattr(module, "SEEDED", True):
            q.add_argument("--seed", type=int, default=0, metavar="S",
                           help="random seed (studies with several seeds use S, S+1, ...; default 0)")
        q.add_argument("--no-progress", action="store_true", help="no progress bars or progress lines")
        module.add_arguments(q)
    return p


def options(args) -> Dict[str, Any]:
    """The study's own options from parsed arguments (everything but the common ones)."""
    return {k: v for k, v in vars(args).items() if k not in _COMMON}


def run(args, out) -> int:
    """Run the study named in parsed ``args``; print a summary to ``out``; the exit status."""
    from ..experiments import experiment

    module = experiment(args.name)
    common: Dict[str, Any] = {"out": args.out, "quick": args.quick, "progress": not args.no_progress}
    if getattr(module, "SEEDED", True):
        if args.seed < 0:
            raise ExperimentCLIError(f"--seed must be >= 0, got {args.seed}")
        common["seed"] = args.seed
    doc = module.run(**common, **options(args))
    folder = doc.get("out") or args.out or os.path.join("results", args.name)
    files = [str(f) for f in doc.get("files", {}).values() if f]
    out.write(f"{args.name}: wrote {', '.join(files)} in {folder}\n")
    for line in (module.summary(doc) if hasattr(module, "summary") else ()):
        out.write(f"  {line}\n")
    for name, seconds in doc.get("timings_s", {}).items():
        out.write(f"  {name}: {seconds:.1f} s\n")
    if doc.get("passed") is False:
        out.write("  FAIL: the experiment's own checks did not pass\n")
        return 1
    if doc.get("passed") is True:
        out.write("  PASS\n")
    return 0
