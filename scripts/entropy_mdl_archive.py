"""Archive the §5.3 run records and regenerate the §5.3 full-run section of docs/paper-results.md.

    python scripts/entropy_mdl_archive.py [--from OUT] [--started ISO] [--note TEXT]
                                          [--archive docs/results/entropy-mdl] [--doc docs/paper-results.md]
                                          [--no-plots]

``--from OUT`` copies the finished run records of an ``entropy-mdl`` results folder (``OUT`` is
only read) into the archive (graphengine.experiments.entropy_mdl_archive); then the archive is
aggregated (results.json, table.md, plots in the archive folder) and the generated section of
the document is replaced. Without ``--from`` only the section is regenerated. ``--started``
(when the run began, ISO 8601, UTC) and ``--note`` (how it ran, e.g. its workers) are kept in
the archive for the wall-time line. Errors are one line, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO))
    from graphengine.errors import GraphEngineError
    from graphengine.experiments.entropy_mdl_archive import ARCHIVE, copy_runs, write_section

    p = argparse.ArgumentParser(prog="entropy_mdl_archive.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", metavar="OUT", help="an entropy-mdl --out folder to copy run records from")
    p.add_argument("--archive", default=str(REPO / ARCHIVE), metavar="DIR", help="the archive folder (default %(default)s)")
    p.add_argument("--doc", default=str(REPO / "docs" / "paper-results.md"), metavar="FILE",
                   help="the Markdown file with the generated section (default %(default)s)")
    p.add_argument("--started", metavar="ISO", help="when the run began, e.g. 2026-12-01T17:34:00Z")
    p.add_argument("--note", metavar="TEXT", help="how the run ran (kept in the archive, printed after the wall time)")
    p.add_argument("--no-plots", action="store_true", help="no PNG plots in the archive")
    args = p.parse_args(argv)
    try:
        if args.source:
            rep = copy_runs(args.source, args.archive, started=args.started, note=args.note)
            print(f"copied {len(rep['copied'])}, replaced {len(rep['replaced'])}, unchanged {len(rep['unchanged'])}, "
                  f"skipped {len(rep['skipped'])}" + (f": {'; '.join(rep['skipped'])}" if rep["skipped"] else ""))
        elif args.started or args.note:
            p.error("--started and --note go with --from")
        section = write_section(args.doc, args.archive, plots=not args.no_plots)
    except GraphEngineError as e:
        sys.stderr.write(f"entropy_mdl_archive.py: error: {' '.join(str(e).split())}\n")
        return 2
    print(f"wrote {args.doc} ({section.splitlines()[0][:100]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
