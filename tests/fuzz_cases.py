"""Mutated graph files, shared by tests/test_fuzz.py (a fast deterministic subset) and
scripts/fuzz_files.py (>= 10,000 under a memory cap).

``mutants(seed, n)`` yields ``(kind, bytes)`` pairs, reproducible from the seed: bit flips and
truncation of a whole file, JSON type changes, huge/negative/non-integer shapes, Infinity/NaN/1e400
ids, cycles and dangling ids in ``graph.json``, and ``arrays.npz`` replaced by zip bombs, members
that are not ``.npy``, a plain ``.npy``, truncated or hostile ``.npy`` headers, object dtype.
Bombs inflate past ``bomb_bytes`` (give a little more than the limit the reader runs with).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tempfile
import warnings
import zipfile

import numpy as np

from graphengine.ir import Graph, save

KINDS = ("bitflip", "truncate", "json_value", "json_shape", "json_id", "json_cycle", "json_dangling",
         "json_drop", "json_bomb", "npz_bomb", "npy_bomb", "npz_member", "npy_header", "npz_bitflip",
         "npz_plain_npy", "npz_object", "npy_huge_shape", "zip_members")

ODD_VALUES = [None, True, "x", 1.5, -1, -7, 0, 2 ** 40, 10 ** 12, -(10 ** 12), [], {}, [1, [2]], "Infinity",
              float("inf"), float("-inf"), float("nan"), "1e400"]


def base_graphs():
    """Two small valid graphs as file bytes: a scoped MLP with every leaf kind, and a chain."""
    rng = np.random.default_rng(0)
    g = Graph(meta={"model": "fuzz"})
    x = g.input("x", (2, 3))
    ids = g.input("ids", (2,), dtype="int64")
    table = g.parameter("table", rng.normal(size=(5, 3)).astype(np.float32), scope="emb")
    e = g.call("embedding", table, ids, name="e")
    w = g.parameter("w", rng.normal(size=(4, 3)), scope="fc")
    b = g.parameter("b", rng.normal(size=(4,)), scope="fc")
    h = g.call("add", x, g.call("cast", e, dtype="float64"), name="h")
    y = g.call("linear", h, w, b, name="y", scope="fc")
    mask = g.constant(np.array([[True, False, True, True]] * 2), name="mask")
    z = g.call("where", mask, g.call("tanh", y), g.constant(np.array(-1.5)), name="z")
    g.mark_output(g.call("softmax", z, name="p", axis=-1))
    c = Graph()
    v = c.call("mul", c.input("v", (4,)), c.parameter("scale", np.linspace(0.5, 2, 4)))
    for i in range(6):
        v = c.call("exp" if i % 2 else "tanh", v, name=f"c{i}")
    c.mark_output(c.call("sum", v, name="s"))
    out = []
    with tempfile.TemporaryDirectory() as d:
        for graph in (g, c):
            path = os.path.join(d, "g.ge")
            save(graph, path)
            with open(path, "rb") as f:
                out.append(f.read())
    return out


def members(data: bytes):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def pack(content, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", compression=compression) as z:
        warnings.simplefilter("ignore")  # duplicate member names are one of the mutations
        for name, data in content.items() if isinstance(content, dict) else content:
            z.writestr(name, data)
    return buf.getvalue()


def npy_bytes(header: str, data: bytes = b"", version=(1, 0)) -> bytes:
    raw = header.encode("latin1")
    size = struct.pack("<H", len(raw)) if version[0] == 1 else struct.pack("<I", len(raw))
    return b"\x93NUMPY" + bytes(version) + size + raw + data


def npz_of(members_) -> bytes:
    return pack(members_, compression=zipfile.ZIP_STORED)


class Bombs:
    """Zip bombs built once per size (deflate of zeros is ~1000:1) and reused."""

    def __init__(self, bomb_bytes: int):
        self.n = bomb_bytes
        self._json = self._npz = self._npy = None

    def json_member(self) -> bytes:
        if self._json is None:
            self._json = pack({"graph.json": b" " * self.n, "arrays.npz": npz_of({})})
        return self._json

    def npz_member(self, graph_json: bytes) -> bytes:
        # arrays.npz itself inflates past the limit
        if self._npz is None:
            self._npz = b"\0" * self.n
        return pack({"graph.json": graph_json, "arrays.npz": self._npz})

    def npy_member(self, graph_json: bytes) -> bytes:
        # one honest-looking array whose declared size is past the limit (bytes of zeros follow)
        if self._npy is None:
            count = self.n // 8 + 1
            self._npy = npy_bytes(f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({count},), }}",
                                  b"\0" * (count * 8))
        return pack({"graph.json": graph_json, "arrays.npz": npz_of({"n2.npy": self._npy})})


def _json_text(doc) -> bytes:
    text = json.dumps(doc)  # Infinity/NaN written as JSON extensions, as Python does
    return text.replace('"1e400"', "1e400").replace('"Infinity"', "Infinity").encode()


def _mutate_doc(kind, doc, rng):
    nodes = doc["nodes"]
    i = int(rng.integers(len(nodes)))
    nd = nodes[i]
    pick = ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]
    if kind == "json_value":
        key = ["op", "inputs", "attrs", "dtype", "name", "scope", "shape", "id"][int(rng.integers(8))]
        if rng.random() < 0.2:
            doc[["outputs", "meta", "version", "nodes"][int(rng.integers(4))]] = pick
        else:
            nd[key] = pick
    elif kind == "json_shape":
        dims = [10 ** 12, 2 ** 62, -1, -(2 ** 31), 1.5, "Infinity", "1e400", float("nan"), 0, 10 ** 6, True, None]
        shape = list(nd["shape"]) or [1]
        shape[int(rng.integers(len(shape)))] = dims[int(rng.integers(len(dims)))]
        nd["shape"] = shape
        if nd["op"] == "input" and rng.random() < 0.5:
            nd["attrs"]["shape"] = shape
    elif kind == "json_id":
        ids = ["Infinity", float("nan"), "1e400", float("-inf"), -1, 10 ** 9, 2.0, "0", None]
        target = ["id", "inputs", "outputs"][int(rng.integers(3))]
        value = ids[int(rng.integers(len(ids)))]
        if target == "id":
            nd["id"] = value
        elif target == "inputs" and nd["inputs"]:
            nd["inputs"] = [value] + nd["inputs"][1:]
        else:
            doc["outputs"] = [value]
    elif kind == "json_cycle":
        j = int(rng.integers(i, len(nodes)))
        nd["inputs"] = [j] + nd["inputs"][1:] if nd["inputs"] else [j]
    elif kind == "json_dangling":
        nd["inputs"] = list(nd["inputs"]) + [len(nodes) + int(rng.integers(1, 100))]
    elif kind == "json_drop":
        key = ["id", "op", "inputs", "shape", "dtype", "name", "attrs"][int(rng.integers(7))]
        nd.pop(key, None)
        if rng.random() < 0.3:
            del nodes[i]
    return doc


def mutant(kind: str, base: bytes, rng, bombs: Bombs) -> bytes:
    """One mutated file of ``kind`` made from ``base``."""
    if kind == "bitflip":
        d = bytearray(base)
        for pos in rng.integers(0, len(d), size=int(rng.integers(1, 9))):
            d[pos] ^= 1 << int(rng.integers(8))
        return bytes(d)
    if kind == "truncate":
        return base[:int(rng.integers(0, len(base)))]
    content = members(base)
    if kind.startswith("json_") and kind != "json_bomb":
        doc = _mutate_doc(kind, json.loads(content["graph.json"]), rng)
        return pack({**content, "graph.json": _json_text(doc)})
    if kind == "json_bomb":
        return bombs.json_member()
    if kind == "npz_bomb":
        return bombs.npz_member(content["graph.json"])
    if kind == "npy_bomb":
        return bombs.npy_member(content["graph.json"])
    arrays = members(content["arrays.npz"])
    names = sorted(arrays)
    name = names[int(rng.integers(len(names)))]
    if kind == "npz_member":
        arrays[name[:-4] if rng.random() < 0.5 else "extra.txt"] = b"not an array"
    elif kind == "npy_header":
        headers = ["{'descr': '<f8', 'fortran_order': False, 'shape': (16, 4",
                   "{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 4), }",
                   "{'descr': '<f8', 'fortran_order': False, 'shape': (1.5,), }",
                   "{'descr': 'garbage', 'fortran_order': False, 'shape': (2,), }",
                   "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (2,), }",
                   "{'descr': '<f8', 'fortran_order': 3, 'shape': (2,), }",
                   "{'descr': '<f8', 'shape': (2,), }",
                   "__import__('os').system('false')",
                   "[" * 5000,
                   "{'descr': '<f8', 'fortran_order': False, 'shape': (" + "9" * 5000 + ",), }",
                   "\x00\xff" * 10]
        h = headers[int(rng.integers(len(headers)))]
        arrays[name] = npy_bytes(h, b"\0" * 64, version=(1, 0) if rng.random() < 0.7 else (2, 0))
        if rng.random() < 0.2:
            arrays[name] = arrays[name][:int(rng.integers(0, 12))]
    elif kind == "npz_bitflip":
        npz = bytearray(content["arrays.npz"])
        for pos in rng.integers(0, len(npz), size=int(rng.integers(1, 6))):
            npz[pos] ^= 1 << int(rng.integers(8))
        return pack({**content, "arrays.npz": bytes(npz)})
    elif kind == "npz_plain_npy":
        buf = io.BytesIO()
        np.save(buf, np.zeros((16, 4)))
        return pack({**content, "arrays.npz": buf.getvalue()})
    elif kind == "npz_object":
        body = pickle.dumps([1, 2], protocol=2)
        arrays[name] = npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", body)
    elif kind == "npy_huge_shape":
        shape = ["(10**12, 4)", "(1000000000000, 4)", "(4611686018427387904, 4)", "(65536, 65536, 65536)"]
        text = "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }" % shape[int(rng.integers(4))].replace(
            "10**12", "1000000000000")
        arrays[name] = npy_bytes(text, b"\0" * 64)
    elif kind == "zip_members":
        choice = int(rng.integers(4))
        if choice == 0:
            return pack({"graph.json": content["graph.json"]})
        if choice == 1:
            return pack([("graph.json", content["graph.json"]), ("graph.json", b"{}"),
                         ("arrays.npz", content["arrays.npz"])])
        if choice == 2:
            return pack({**content, "arrays.npz": content["graph.json"]})
        return pack({"arrays.npz": content["arrays.npz"], "graph.json": content["arrays.npz"]})
    return pack({**content, "arrays.npz": npz_of(arrays)})


def mutants(seed: int, n: int, bomb_bytes: int, start: int = 0, bases=None):
    """Mutated files ``start .. start + n - 1`` as ``(kind, bytes)``; file ``i`` depends only on
    ``seed`` and ``i``."""
    bases = bases or base_graphs()
    bombs = Bombs(bomb_bytes)
    weights = np.array([6, 3, 6, 4, 3, 2, 2, 2, 0.3, 0.3, 0.3, 1, 2, 2, 0.5, 0.5, 1, 1], dtype=float)
    weights /= weights.sum()
    for i in range(start, start + n):
        rng = np.random.default_rng([seed, i])
        kind = KINDS[int(rng.choice(len(KINDS), p=weights))]
        base = bases[int(rng.integers(len(bases)))]
        yield kind, mutant(kind, base, rng, bombs)


FEED_KINDS = ("bitflip", "truncate", "npy_header", "npz_member", "npz_object", "npy_huge_shape", "npy_bomb",
              "plain_npy")


def feed_mutants(seed: int, n: int, bomb_bytes: int):
    """``n`` mutated ``--inputs`` files ``(kind, bytes)``, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    np.savez(buf, x=np.linspace(-1, 1, 6).reshape(2, 3), ids=np.array([1, 4]))
    base = buf.getvalue()
    bomb = None
    for _ in range(n):
        kind = FEED_KINDS[int(rng.integers(len(FEED_KINDS)))]
        if kind in ("bitflip", "truncate"):
            yield kind, mutant(kind, base, rng, None)
            continue
        arrays = members(base)
        if kind == "plain_npy":
            yield kind, arrays["x.npy"]
            continue
        if kind == "npy_bomb":
            if bomb is None:
                count = bomb_bytes // 8 + 1
                bomb = pack({"x.npy": npy_bytes(f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({count},), }}",
                                                b"\0" * (count * 8))})
            yield kind, bomb
            continue
        fake = pack({"graph.json": b"{}", "arrays.npz": base})
        yield kind, members(mutant(kind, fake, rng, None))["arrays.npz"]
