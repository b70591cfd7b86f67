"""Graph files: one zip holding ``graph.json`` (structure, with a format version) and
``arrays.npz`` (parameters and constants, keyed ``n<id>``).

Loading parses ``graph.json`` with ``json`` and each array's ``.npy`` header with
``ast.literal_eval`` (:mod:`graphengine.io`; object arrays are refused, nothing is unpickled), so
reading a file never runs code. Every problem is reported as one :class:`GraphFormatError` line
naming the file; reading is bounded by :data:`graphengine.io.LIMITS`. The format is described in
docs/file-format.md.

>>> import numpy as np, tempfile, os
>>> from graphengine.ir import Graph, save, load
>>> g = Graph(); x = g.input("x", (2,)); c = g.constant(np.arange(2.0)); g.mark_output(g.call("add", x, c))
>>> path = os.path.join(tempfile.mkdtemp(), "g.ge"); save(g, path)
>>> load(path).summary()["ops"]
{'add': 1, 'constant': 1, 'input': 1}
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any, Dict

import numpy as np

from .. import io as files
from ..errors import GraphEngineError, GraphFormatError, name_some
from .budget import check_declared
from .graph import Graph, Node

FORMAT = "graphengine.graph"
FORMAT_VERSION = 1


def save(graph: Graph, path: str) -> None:
    """Write ``graph`` to ``path`` atomically (see :func:`graphengine.io.atomic_write`); a
    failure raises :class:`~graphengine.errors.WriteError` and leaves the old file as it was."""
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "meta": graph.meta,
        "outputs": list(graph.outputs),
        "nodes": [n.to_json() for n in graph.nodes],
    }
    buf = io.BytesIO()
    np.savez(buf, **{f"n{k}": np.asarray(v) for k, v in graph.arrays.items()})  # not ascontiguousarray: it makes 0-d arrays 1-d
    with files.atomic_write(path) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("graph.json", json.dumps(doc, indent=1))
            z.writestr("arrays.npz", buf.getvalue())


def load(path: str) -> Graph:
    """Read a graph file written by :func:`save`, validating it completely.

    Reading is bounded by :data:`graphengine.io.LIMITS`: ``graph.json`` and ``arrays.npz`` are
    streamed and refused beyond their limits, array headers are checked before anything is
    allocated, and the tensors the graph declares must fit the memory budget (so ``forward``
    and ``backward`` are not asked for a 29 TiB activation).
    """
    with files.open_regular(path, path, GraphFormatError) as f:
        with files.zip_errors(path, GraphFormatError, "not a readable graphengine file (bad or truncated zip)"):
            with zipfile.ZipFile(f) as z:
                listed = z.namelist()
                names = set(listed)
                if len(names) != len(listed):
                    raise GraphFormatError(f"{path}: a member name appears twice in the archive")
                for member in ("graph.json", "arrays.npz"):
                    if member not in names:
                        raise GraphFormatError(f"{path}: not a graphengine file (no {member} inside)")
                doc = files.read_json_member(z, "graph.json", path, GraphFormatError)
                with files.spool_member(z, "arrays.npz", path, GraphFormatError) as npz:
                    arrays = files.read_npz(npz, f"{path}: arrays.npz", GraphFormatError)
    try:
        return from_document(doc, arrays)
    except GraphEngineError as e:
        raise type(e)(f"{path}: {e}") from None


def _natural(value: Any, what: str) -> int:
    """``value`` if it is a JSON integer >= 0 (not a bool, float, NaN or Infinity)."""
    if type(value) is not int or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {json.dumps(value)[:40]}")
    return value


def _node(pos: int, nd: Any) -> Node:
    try:
        shape = nd["shape"]
        if not isinstance(shape, list):
            raise TypeError(f"shape must be a list, got {json.dumps(shape)[:40]}")
        return Node(
            id=_natural(nd["id"], "id"), op=str(nd["op"]), inputs=tuple(nd["inputs"]),
            attrs=dict(nd.get("attrs") or {}), shape=tuple(_natural(s, "a shape entry") for s in shape),
            dtype=str(nd["dtype"]), name=str(nd["name"]), scope=str(nd.get("scope") or ""))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise GraphFormatError(f"node entry {pos} in graph.json is malformed ({type(e).__name__}: {e})") from None


def check_memory_budget(graph: Graph) -> None:
    """Refuse a loaded graph whose declared tensors do not fit ``graphengine.io.LIMITS.memory_budget``
    (:func:`graphengine.ir.budget.check_declared` with the file error type).

    >>> g = Graph(); _ = g.input("x", (10**12, 4))
    >>> check_memory_budget(g)
    Traceback (most recent call last):
    graphengine.errors.GraphFormatError: node 0 'x' (op input) declares [1000000000000, 4] float64 (29.1 TiB), over the memory budget of 8 GiB (graphengine.io.LIMITS.memory_budget)
    """
    check_declared(graph, GraphFormatError)


def from_document(doc: Any, arrays: Dict[str, np.ndarray]) -> Graph:
    """Build and validate a graph from a parsed ``graph.json`` and its arrays."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise GraphFormatError("graph.json is not a graphengine graph (missing format tag)")
    if doc.get("version") != FORMAT_VERSION or type(doc.get("version")) is not int:
        raise GraphFormatError(f"unsupported format version {_short(doc.get('version'))} (this build reads {FORMAT_VERSION})")
    meta = doc.get("meta") or {}
    if not isinstance(meta, dict):
        raise GraphFormatError("graph.json 'meta' is not an object")
    g = Graph(meta=meta)
    nodes = doc.get("nodes")
    if not isinstance(nodes, list):
        raise GraphFormatError("graph.json has no node list")
    for pos, nd in enumerate(nodes):
        node = _node(pos, nd)
        g.nodes.append(node)
        key = f"n{node.id}"
        if key in arrays:
            g.arrays[node.id] = arrays[key]
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list):
        raise GraphFormatError("graph.json 'outputs' is not a list")
    unknown = [k for k in arrays if not (k[:1] == "n" and k[1:].isdigit() and int(k[1:]) < len(nodes))]
    if unknown:
        raise GraphFormatError(f"arrays.npz holds arrays that belong to no node: {name_some(unknown)}")
    g.outputs = list(outputs)
    check_memory_budget(g)
    g._rebuild_index()
    g.validate()
    return g


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."
