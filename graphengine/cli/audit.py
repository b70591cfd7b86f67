"""``graphengine audit``: prove that tokens have no path to a QoI, or list the paths that leak.

::

    graphengine audit FILE --qoi QOI --node NAME (--token I,J ... | --future [--axis 1])
                      [--strict] [--max-paths N] [--inputs FEEDS.npz] [--input NAME=JSON ...] [-o OUT.json]

``--token I,J`` (repeatable) is an index prefix of ``--node`` (``0,5``: example 0, position 5,
all hidden units); ``--future`` audits every position after the QoI's (a decoder's causal
mask). Verdicts per token (:mod:`graphengine.analysis.audit`): ``no path`` (a proof for every
input), ``zero mass`` (paths exist but every product is exactly 0 at this input), ``leak``
(with the heaviest leaking paths). Exit status 0 when the audit passes (no leak; with
``--strict``, no path at all), 1 when it fails, 2 on bad input.
"""

from __future__ import annotations

from typing import List, Tuple

from ..errors import GraphEngineError

__all__ = ["add_parser", "run"]


class AuditCLIError(GraphEngineError):
    """A bad ``audit`` argument."""


def add_parser(sub) -> None:
    p = sub.add_parser("audit", help="prove tokens have no path to a QoI (padding, masks, future positions)")
    p.add_argument("file", metavar="FILE", help="graph file written by graphengine.save")
    p.add_argument("--qoi", required=True, metavar="QOI", help="'node[i,j]' or 'node[i,j] - node[k,l]'")
    p.add_argument("--node", required=True, metavar="NAME", help="the node whose tokens are audited (an input)")
    p.add_argument("--token", action="append", metavar="I,J", help="an index prefix of --node (repeatable)")
    p.add_argument("--future", action="store_true", help="audit every position after the QoI's position")
    p.add_argument("--axis", type=int, default=1, help="the position axis for --future (default 1)")
    p.add_argument("--strict", action="store_true", help="fail unless no path exists at all (a proof for every input)")
    p.add_argument("--max-paths", type=int, default=3, metavar="N", help="leaking paths listed per token (default 3)")
    p.add_argument("--inputs", metavar="FEEDS.npz", help=".npz of input values keyed by input name")
    p.add_argument("--input", action="append", metavar="NAME=JSON", help="one input value as JSON (repeatable)")
    p.add_argument("-o", "--output", metavar="OUT.json", help="write the audit as JSON (atomically)")


def _tokens(texts) -> List[Tuple[int, ...]]:
    out = []
    for t in texts or ():
        try:
            out.append(tuple(int(i) for i in t.split(",")))
        except ValueError:
            raise AuditCLIError(f"--token {t!r}: expected comma-separated integers, e.g. 0,5") from None
    return out


def run(args, out) -> int:
    from .. import io as files
    from ..analysis.audit import audit, future_tokens
    from ..engine import forward, parse
    from ..errors import QoIError
    from .main import _check_output_path, _feeds, _fmt, _load_graph

    _check_output_path(args.output, args.file, args.inputs)
    if not args.token and not args.future:
        raise AuditCLIError("give the tokens to audit: --token or --future")
    if args.max_paths < 0:
        raise AuditCLIError(f"--max-paths must be >= 0, got {args.max_paths}")
    qoi = parse(args.qoi)
    g = _load_graph(args.file)
    try:
        qoi.coefficients(g.node(qoi.node).shape)
        g.node(args.node)
    except KeyError as e:
        raise QoIError(f"audit: {e.args[0]}") from None
    tokens = _tokens(args.token) + (future_tokens(g, args.node, qoi, args.axis) if args.future else [])
    report = audit(g, forward(g, _feeds(args)), qoi, args.node, tokens, strict=args.strict, max_paths=args.max_paths)
    w = out.write
    w(f"audit of {len(tokens)} token(s) of {report.node} against {args.qoi}"
      f"{' (strict)' if args.strict else ''}\n")
    for t in report.tokens:
        w(f"  {','.join(map(str, t.token)):<8} {t.verdict:<10} paths {_fmt(t.paths)}  mass {_fmt(t.mass)}\n")
        kind = "leaking path" if t.verdict == "leak" else "path of weight 0 at this input"
        for p in t.leaks:
            w(f"    {kind}, weight {_fmt(p.weight)}: "
              + " -> ".join(f"{st.name}{list(st.element)}" for st in p.steps) + "\n")
    w("passed\n" if report.passed else "FAILED: some tokens reach the QoI\n")
    if args.output:
        files.write_json(args.output, {"file": args.file, **report.to_dict()})
        w(f"wrote {args.output}\n")
    return 0 if report.passed else 1
