"""Graph files: one zip holding ``graph.json`` (structure, with a format version) and
``arrays.npz`` (parameters and constants, keyed ``n<id>``).

Loading uses ``json`` and ``numpy.load(allow_pickle=False)`` only, so reading a file never runs
code; every problem is reported as one :class:`GraphFormatError` line naming the file.

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
import os
import zipfile
import zlib
from typing import Any, Dict

import numpy as np

from ..errors import GraphEngineError, GraphFormatError
from .graph import Graph, Node

FORMAT = "graphengine.graph"
FORMAT_VERSION = 1

# What reading a damaged or hostile zip/npz can raise (zlib.error for corrupt deflate data,
# NotImplementedError for unknown compression methods, RuntimeError for encrypted members,
# ValueError (incl. UnicodeDecodeError) for bad headers, MemoryError for absurd array shapes).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                RuntimeError, ValueError, KeyError, MemoryError)


def save(graph: Graph, path: str) -> None:
    """Write ``graph`` to ``path`` atomically (a temp file renamed into place)."""
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "meta": graph.meta,
        "outputs": list(graph.outputs),
        "nodes": [n.to_json() for n in graph.nodes],
    }
    buf = io.BytesIO()
    np.savez(buf, **{f"n{k}": np.asarray(v) for k, v in graph.arrays.items()})  # not ascontiguousarray: it makes 0-d arrays 1-d
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("graph.json", json.dumps(doc, indent=1))
            z.writestr("arrays.npz", buf.getvalue())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load(path: str) -> Graph:
    """Read a graph file written by :func:`save`, validating it completely."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            for member in ("graph.json", "arrays.npz"):
                if member not in names:
                    raise GraphFormatError(f"{path}: not a graphengine file (no {member} inside)")
            raw = z.read("graph.json")
            npz = z.read("arrays.npz")
    except GraphFormatError:
        raise
    except FileNotFoundError:
        raise GraphFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GraphFormatError(f"{path}: is a directory, not a graph file") from None
    except _READ_ERRORS as e:
        raise GraphFormatError(f"{path}: not a readable graphengine file (bad or truncated zip: {_one_line(e)})") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise GraphFormatError(f"{path}: graph.json is not valid JSON ({_one_line(e)})") from None
    try:
        arrays = _read_arrays(npz)
    except _READ_ERRORS as e:
        raise GraphFormatError(f"{path}: arrays.npz is unreadable ({_one_line(e)})") from None
    try:
        return from_document(doc, arrays)
    except GraphEngineError as e:
        raise type(e)(f"{path}: {e}") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _read_arrays(npz_bytes: bytes) -> Dict[str, np.ndarray]:
    with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def from_document(doc: Any, arrays: Dict[str, np.ndarray]) -> Graph:
    """Build and validate a graph from a parsed ``graph.json`` and its arrays."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise GraphFormatError("graph.json is not a graphengine graph (missing format tag)")
    if doc.get("version") != FORMAT_VERSION:
        raise GraphFormatError(f"unsupported format version {doc.get('version')!r} (this build reads {FORMAT_VERSION})")
    meta = doc.get("meta") or {}
    if not isinstance(meta, dict):
        raise GraphFormatError("graph.json 'meta' is not an object")
    g = Graph(meta=meta)
    nodes = doc.get("nodes")
    if not isinstance(nodes, list):
        raise GraphFormatError("graph.json has no node list")
    for pos, nd in enumerate(nodes):
        try:
            node = Node(
                id=int(nd["id"]), op=str(nd["op"]), inputs=tuple(nd["inputs"]), attrs=dict(nd.get("attrs") or {}),
                shape=tuple(int(s) for s in nd["shape"]), dtype=str(nd["dtype"]), name=str(nd["name"]),
                scope=str(nd.get("scope") or ""))
        except (KeyError, TypeError, ValueError) as e:
            raise GraphFormatError(f"node entry {pos} in graph.json is malformed ({type(e).__name__}: {e})") from None
        g.nodes.append(node)
        key = f"n{node.id}"
        if key in arrays:
            g.arrays[node.id] = arrays[key]
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list):
        raise GraphFormatError("graph.json 'outputs' is not a list")
    g.outputs = list(outputs)
    g._rebuild_index()
    g.validate()
    return g
