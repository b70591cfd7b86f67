"""``graphengine dataset``: analyse every example of a data file, and summarize the results.

::

    graphengine dataset run MODEL_OR_GE --data FILE.tsv|FILE.jsonl (--qoi TEMPLATE | --target COL [--foil COL])
                            [--semiring real,max,entropy] [--node NAME] [--head auto|none|mlm|classification]
                            [--tokenizer tokenizer.json] [--columns A,B,...] [--text-column text]
                            [--mask-literal STR] [--limit N] [--workers N | --scheduler ADDRESS] [--quiet] -o OUTDIR
    graphengine dataset summarize OUTDIR [--quiet]

``run`` (:func:`graphengine.runner.run.run_dataset`) writes ``OUTDIR/records.jsonl`` (one
record per example, format in docs/dataset.md) and ``OUTDIR/manifest.json``; a rerun resumes,
a concurrent run on the same OUTDIR is refused. ``summarize``
(:func:`graphengine.runner.summary.summarize`) writes ``summary.json``, ``summary.md``, PNG
plots and ``summary.html``. Progress (rate, ETA) and stage notices go to stderr; ``--quiet``
silences them.

>>> p = build_parser_for_doc()
>>> a = p.parse_args(["run", "g.ge", "--data", "d.tsv", "--qoi", "y[0]", "-o", "out"])
>>> a.semiring, a.workers, a.head
('real,max,entropy', None, 'auto')
"""

from __future__ import annotations

import argparse

from .. import progress as prog

__all__ = ["add_parser", "run", "build_parser_for_doc"]


def add_parser(sub) -> None:
    p = sub.add_parser("dataset", help="analyse every example of a data file (on Dask), summarize the results")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    r = dsub.add_parser("run", help="analyse every example into OUTDIR (resumable, locked)")
    r.add_argument("model", metavar="MODEL_OR_GE", help="a .ge graph file, a Hugging Face BERT directory, or minilm")
    r.add_argument("--data", required=True, metavar="FILE", help=".tsv (header row or --columns) or .jsonl examples")
    q = r.add_mutually_exclusive_group(required=True)
    q.add_argument("--qoi", metavar="TEMPLATE",
                   help="QoI with {COLUMN}, {tok:COLUMN}, {mask}, {last}, {T} filled per example")
    q.add_argument("--target", metavar="COL", help="column with the word (MLM) or label (classification) to explain")
    r.add_argument("--foil", metavar="COL", help="column with the contrast word/label: QoI = target - foil, "
                                                 "correct when > 0")
    r.add_argument("--semiring", default="real,max,entropy", metavar="LIST",
                   help="semirings of the one backward pass: real (gradient statistics), max (M+, top path, "
                        "branches), entropy, kbest:K (default real,max,entropy)")
    r.add_argument("--node", metavar="NAME", help="node of the per-token statistics (default the word-embedding lookup)")
    r.add_argument("--head", default="auto", choices=("auto", "none", "mlm", "classification"),
                   help="head of a Hugging Face model (default auto: mlm when its weights are there)")
    r.add_argument("--tokenizer", metavar="tokenizer.json", help="tokenizer for a .ge file (or to override a model's)")
    r.add_argument("--columns", metavar="A,B,...", help="column names of a .tsv without a header row")
    r.add_argument("--text-column", default="text", metavar="COL", help="column holding the text (default text)")
    r.add_argument("--mask-literal", metavar="STR", help="text standing for the mask token, e.g. '***mask***'")
    r.add_argument("--limit", type=int, metavar="N", help="only the first N examples")
    ex = r.add_mutually_exclusive_group()
    ex.add_argument("--workers", type=int, metavar="N",
                    help="LocalCluster workers (default one per core; 0: run in this process)")
    ex.add_argument("--scheduler", metavar="ADDRESS", help="use an existing Dask cluster (tcp://host:8786)")
    r.add_argument("--quiet", action="store_true", help="no progress or notices on stderr")
    r.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output directory (a rerun resumes)")
    s = dsub.add_parser("summarize", help="tables, plots and an HTML page over OUTDIR's records")
    s.add_argument("outdir", metavar="OUTDIR", help="the output directory of a dataset run")
    s.add_argument("--quiet", action="store_true", help="no notices on stderr")


def build_parser_for_doc() -> argparse.ArgumentParser:
    """The ``dataset`` parser alone (for the docstring example)."""
    p = argparse.ArgumentParser(prog="graphengine")
    sub = p.add_subparsers(dest="command")
    add_parser(sub)
    return sub.choices["dataset"]


def run(args, out) -> int:
    prog.set_quiet(bool(args.quiet))
    if args.dataset_command == "summarize":
        from ..runner.summary import summarize

        doc = summarize(args.outdir)
        out.write(f"{doc['records']} records ({doc['skipped']} skipped) -> "
                  f"{', '.join(doc['files'].values())} in {args.outdir}\n")
        return 0
    from ..runner.run import run_dataset
    from .main import _parse_semirings

    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    res = run_dataset(args.model, args.data, args.out, qoi=args.qoi, target=args.target, foil=args.foil,
                      semirings=_parse_semirings(args.semiring), node=args.node, head=args.head, tokenizer=args.tokenizer,
                      columns=columns, text_column=args.text_column, mask_literal=args.mask_literal,
                      limit=args.limit, workers=args.workers, scheduler=args.scheduler, quiet=args.quiet)
    out.write(f"{res['records']} of {res['examples']} examples done ({res['new_records']} new in "
              f"{res['seconds']:.1f} s) -> {res['records_path']}\n")
    return 0
