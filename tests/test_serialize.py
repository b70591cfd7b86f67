"""Graph files: exact round trips, and refusal (one GraphFormatError line) of damaged,
hostile or malformed files. Loading a file must never run code."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import graphengine as ge
from graphengine.errors import GraphEngineError, GraphFormatError, GraphValidationError
from graphengine.ir import FORMAT_VERSION, Graph, load, save


def _rich_graph() -> Graph:
    """Every leaf dtype, 0-d arrays, scopes, attrs with non-default values, several outputs."""
    rng = np.random.default_rng(0)
    g = Graph(meta={"policy": "fused", "source": {"model": "toy", "layers": [1, 2]}, "ok": True})
    x = g.input("x", (2, 3), scope="embeddings")
    ids = g.input("ids", (2,), dtype="int64", scope="embeddings")
    with g.scope("embeddings"):
        table = g.parameter("table", rng.normal(size=(5, 3)).astype(np.float32), scope="word")
        e = g.call("embedding", table, ids, name="e")
    with g.scope("encoder.layer.0"):
        w = g.parameter("w", rng.normal(size=(4, 3)), scope="dense")
        b = g.parameter("b", np.array([np.nan, -0.0, np.inf, 1e-300]), scope="dense")
        h = g.call("add", x, e, name="h")
        y = g.call("linear", h, w, b, name="y", scope="dense")
        act = g.call("gelu", y, name="act", approximate="tanh")
        mask = g.constant(np.array([[True, False, True, True]] * 2), name="mask")
        fill = g.constant(np.array(-1.5), name="fill")       # 0-d float64
        z = g.call("where", mask, act, fill, name="z")
        s = g.call("softmax", z, name="p", axis=0)
    g.constant(np.array(7, dtype=np.int64), name="seven")    # 0-d int64
    g.constant(np.arange(6, dtype=np.int32).reshape(2, 3), name="i32")
    g.constant(np.array(True), name="flag")                  # 0-d bool
    total = g.call("sum", s, name="total", axes=[1], keepdim=True)
    g.mark_output(s, total, y)
    return g


def _assert_same(a: Graph, b: Graph) -> None:
    assert len(a) == len(b)
    for na, nb in zip(a.nodes, b.nodes):
        for field in ("id", "op", "inputs", "attrs", "shape", "dtype", "name", "scope"):
            va, vb = getattr(na, field), getattr(nb, field)
            assert va == vb and type(va) is type(vb), (na.name, field, va, vb)
    assert a.outputs == b.outputs
    assert a.meta == b.meta
    assert sorted(a.arrays) == sorted(b.arrays)
    for k in a.arrays:
        x, y = a.arrays[k], b.arrays[k]
        assert x.dtype == y.dtype and x.shape == y.shape, k
        assert x.tobytes() == y.tobytes(), k                # bitwise, NaN and -0.0 included


def _rewrite(src, dst, edit_doc=None, members=None, arrays=None):
    """Copy a graph file, editing graph.json (``edit_doc(doc)``) and/or replacing members."""
    with zipfile.ZipFile(src) as z:
        content = {n: z.read(n) for n in z.namelist()}
    if edit_doc is not None:
        doc = json.loads(content["graph.json"])
        edit_doc(doc)
        content["graph.json"] = json.dumps(doc).encode()
    if arrays is not None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        content["arrays.npz"] = buf.getvalue()
    if members is not None:
        content = members(content)
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in content.items():
            z.writestr(name, data)
    return str(dst)


@pytest.fixture
def saved(tmp_path):
    g = _rich_graph()
    path = str(tmp_path / "g.ge")
    save(g, path)
    return g, path


def _refused(path, match=None, cls=GraphFormatError):
    with pytest.raises(cls) as info:
        load(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    if match:
        assert match in msg, msg
    return msg


# ----------------------------------------------------------------------------- round trip
def test_round_trip_is_exact(saved):
    g, path = saved
    g2 = load(path)
    _assert_same(g, g2)
    assert g2.arrays[g2["table"].id].dtype == np.float32
    assert g2.arrays[g2["seven"].id].shape == () and g2.arrays[g2["seven"].id].dtype == np.int64
    assert g2.arrays[g2["flag"].id].dtype == np.bool_ and g2.arrays[g2["flag"].id].shape == ()
    assert g2.arrays[g2["i32"].id].dtype == np.int32
    assert g2["fill"].shape == ()
    assert g2["p"].attrs == {"axis": 0} and g2["act"].attrs == {"approximate": "tanh"}
    assert g2["w"].scope == "encoder.layer.0.dense" and g2["e"].scope == "embeddings"
    assert g2.summary() == g.summary()
    # a second round trip changes nothing either, byte for byte in graph.json
    path2 = path + ".2"
    save(g2, path2)
    with zipfile.ZipFile(path) as z1, zipfile.ZipFile(path2) as z2:
        assert z1.read("graph.json") == z2.read("graph.json")
    _assert_same(g, load(path2))


def test_round_trip_computes_the_same(saved):
    g, path = saved
    g2 = load(path)
    feeds = {"x": np.linspace(-1, 1, 6).reshape(2, 3), "ids": np.array([4, 0])}
    a1, a2 = ge.forward(g, feeds), ge.forward(g2, feeds)
    for n in g.nodes:
        np.testing.assert_array_equal(a1[n.id], a2[n.id])
    r1 = ge.backward(g, a1, "p[1,2]")
    r2 = ge.backward(g2, a2, "p[1,2]")
    for name in ("x", "w", "table"):
        np.testing.assert_array_equal(r1.grad(name), r2.grad(name))


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    g = _rich_graph()
    path = tmp_path / "g.ge"
    path.write_bytes(b"old")
    save(g, str(path))
    assert load(str(path)).summary() == g.summary()
    assert os.listdir(tmp_path) == ["g.ge"]


def test_file_layout(saved):
    _, path = saved
    with zipfile.ZipFile(path) as z:
        assert set(z.namelist()) == {"graph.json", "arrays.npz"}
        doc = json.loads(z.read("graph.json"))
        with np.load(io.BytesIO(z.read("arrays.npz")), allow_pickle=False) as npz:
            keys = set(npz.files)
    assert doc["format"] == "graphengine.graph" and doc["version"] == FORMAT_VERSION
    assert keys == {f"n{n['id']}" for n in doc["nodes"] if n["op"] in ("parameter", "constant")}


def test_to_networkx_view(saved):
    g = load(saved[1])
    G = g.to_networkx()
    assert G.number_of_nodes() == len(g)
    assert G.number_of_edges() == sum(len(n.inputs) for n in g.nodes)
    y = g["y"]
    assert G.nodes[y.id]["op"] == "linear"
    assert G.nodes[y.id]["shape"] == (2, 4)
    assert G.nodes[y.id]["scope"] == "encoder.layer.0.dense"
    assert G.nodes[y.id]["dtype"] == "float64" and G.nodes[y.id]["name"] == "y"
    assert sorted(((u, G.edges[u, y.id]["slot"]) for u in G.predecessors(y.id)), key=lambda e: e[1]) == [
        (g["h"].id, 0), (g["w"].id, 1), (g["b"].id, 2)]
    import networkx as nx
    assert nx.is_directed_acyclic_graph(G)


# ----------------------------------------------------------------------------- refusals
class _Evil:
    """Unpickling this would create a directory: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_object_array_is_refused_without_running_code(saved, tmp_path):
    _, path = saved
    marker = str(tmp_path / "PWNED")
    evil = np.empty(1, dtype=object)
    evil[0] = _Evil(marker)
    buf = io.BytesIO()
    np.savez(buf, n2=evil)  # savez pickles object arrays
    assert b"mkdir" in buf.getvalue()
    bad = _rewrite(path, tmp_path / "evil.ge", members=lambda c: {**c, "arrays.npz": buf.getvalue()})
    _refused(bad, "arrays.npz")
    assert not os.path.exists(marker)
    # a raw pickle in place of the npz is refused too
    raw = pickle.dumps(_Evil(marker))
    bad2 = _rewrite(path, tmp_path / "evil2.ge", members=lambda c: {**c, "arrays.npz": raw})
    _refused(bad2, "arrays.npz")
    assert not os.path.exists(marker)


@pytest.mark.parametrize("keep", [0, 1, 10, 100, 0.25, 0.5, 0.9, -1])
def test_truncated_file(saved, tmp_path, keep):
    _, path = saved
    data = open(path, "rb").read()
    n = keep if isinstance(keep, int) and keep >= 0 else (len(data) - 1 if keep == -1 else int(len(data) * keep))
    bad = tmp_path / "t.ge"
    bad.write_bytes(data[:n])
    _refused(str(bad))


def test_corrupted_bytes_never_escape_as_other_errors(saved, tmp_path):
    _, path = saved
    data = open(path, "rb").read()
    rng = np.random.default_rng(5)
    bad = tmp_path / "c.ge"
    for _ in range(300):
        d = bytearray(data)
        for pos in rng.integers(0, len(d), size=rng.integers(1, 5)):
            d[pos] = rng.integers(0, 256)
        bad.write_bytes(bytes(d))
        try:
            load(str(bad))
        except GraphEngineError as e:  # anything else is a bug
            assert "\n" not in str(e)


def test_not_a_zip_missing_file_directory(tmp_path):
    p = tmp_path / "text.ge"
    p.write_text("hello, I am not a graph\n")
    _refused(str(p), "not a readable graphengine file")
    _refused(str(tmp_path / "missing.ge"), "no such file")
    _refused(str(tmp_path), "directory")


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_wrong_format_version(saved, tmp_path, version):
    def edit(doc):
        doc["version"] = version
    _refused(_rewrite(saved[1], tmp_path / "v.ge", edit), "format version")


def test_missing_format_tag(saved, tmp_path):
    _refused(_rewrite(saved[1], tmp_path / "f.ge", lambda d: d.pop("format")), "format tag")
    bad = _rewrite(saved[1], tmp_path / "list.ge", members=lambda c: {**c, "graph.json": b"[1, 2, 3]"})
    _refused(bad, "format tag")


@pytest.mark.parametrize("member", ["graph.json", "arrays.npz"])
def test_missing_members(saved, tmp_path, member):
    bad = _rewrite(saved[1], tmp_path / "m.ge", members=lambda c: {k: v for k, v in c.items() if k != member})
    _refused(bad, f"no {member} inside")


def test_bad_json_and_bad_npz(saved, tmp_path):
    bad = _rewrite(saved[1], tmp_path / "j.ge", members=lambda c: {**c, "graph.json": b"{not json"})
    _refused(bad, "not valid JSON")
    deep = b"[" * 100000 + b"]" * 100000
    bad = _rewrite(saved[1], tmp_path / "deep.ge", members=lambda c: {**c, "graph.json": deep})
    _refused(bad, "not valid JSON")
    bad = _rewrite(saved[1], tmp_path / "n.ge", members=lambda c: {**c, "arrays.npz": b"PK\x03\x04garbage"})
    _refused(bad, "arrays.npz")


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["nodes"][3].pop("op"), "node entry 3"),
    (lambda d: d["nodes"][3].pop("shape"), "node entry 3"),
    (lambda d: d["nodes"][3].__setitem__("shape", "abc"), "node entry 3"),
    (lambda d: d["nodes"][3].__setitem__("shape", [[1]]), "node entry 3"),
    (lambda d: d["nodes"][3].__setitem__("inputs", 5), "node entry 3"),
    (lambda d: d["nodes"][3].__setitem__("id", "three"), "node entry 3"),
    (lambda d: d["nodes"].__setitem__(2, "a string"), "node entry 2"),
    (lambda d: d["nodes"].__setitem__(2, None), "node entry 2"),
    (lambda d: d.__setitem__("nodes", {"0": {}}), "no node list"),
    (lambda d: d.__setitem__("outputs", "y"), "'outputs' is not a list"),
    (lambda d: d.__setitem__("meta", [1, 2]), "'meta' is not an object"),
])
def test_malformed_node_entries(saved, tmp_path, edit, match):
    _refused(_rewrite(saved[1], tmp_path / "e.ge", edit), match)


def test_missing_and_stray_arrays(saved, tmp_path):
    g, path = saved
    arrays = {f"n{k}": v for k, v in g.arrays.items()}
    w = g["w"].id
    missing = {k: v for k, v in arrays.items() if k != f"n{w}"}
    msg = _refused(_rewrite(path, tmp_path / "a.ge", arrays=missing), cls=GraphValidationError)
    assert "'w'" in msg and "array is missing" in msg
    stray = dict(arrays, **{f"n{g['y'].id}": np.zeros((2, 4))})
    _refused(_rewrite(path, tmp_path / "s.ge", arrays=stray), "arrays stored for non-leaf", cls=GraphValidationError)
    wrong = dict(arrays, **{f"n{w}": np.zeros((4, 5))})
    msg = _refused(_rewrite(path, tmp_path / "w.ge", arrays=wrong), cls=GraphValidationError)
    assert "'w'" in msg and "[4, 5]" in msg  # the stored node type no longer matches its array


def test_unsupported_array_dtype_is_refused(saved, tmp_path):
    g, path = saved
    arrays = {f"n{k}": v for k, v in g.arrays.items()}
    arrays[f"n{g['w'].id}"] = arrays[f"n{g['w'].id}"].astype(np.complex128)
    msg = _refused(_rewrite(path, tmp_path / "c.ge", arrays=arrays), cls=GraphValidationError)
    assert "'w'" in msg and "complex128" in msg


def test_loaded_attrs_get_defaults(saved, tmp_path):
    """A hand-written file may omit attributes that have defaults; they are filled on load."""
    g, path = saved

    def edit(doc):
        for n in doc["nodes"]:
            if n["name"] in ("p", "act"):
                n["attrs"] = {}
    g2 = load(_rewrite(path, tmp_path / "d.ge", edit))
    assert g2["p"].attrs == {"axis": -1}
    assert g2["act"].attrs == {"approximate": "none"}


def test_loaded_defaults_run(tmp_path):
    g = Graph()
    x = g.input("x", (2, 3))
    g.mark_output(g.call("softmax", x, name="p"))
    path = str(tmp_path / "g.ge")
    save(g, path)
    g2 = load(_rewrite(path, tmp_path / "d.ge", lambda d: d["nodes"][1].__setitem__("attrs", {})))
    out = ge.forward(g2, {"x": np.zeros((2, 3))})[g2["p"].id]
    np.testing.assert_allclose(out, np.full((2, 3), 1 / 3))
