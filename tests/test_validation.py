"""Graph validation and feed errors: one line each, naming the node and its scope."""

import json
import zipfile

import numpy as np
import pytest

import graphengine as ge
from graphengine.errors import (FeedError, GraphEngineError, GraphFormatError, GraphValidationError,
                                UnknownOpError)
from graphengine.ir import Graph, load, save


def _graph() -> Graph:
    g = Graph()
    x = g.input("x", (2, 3), scope="inputs")
    ids = g.input("ids", (2,), dtype="int64", scope="inputs")
    with g.scope("enc"):
        table = g.parameter("table", np.ones((5, 3)), scope="emb")
        e = g.call("embedding", table, ids, name="e", scope="emb")
        h = g.call("tanh", x, name="h")
        s = g.call("add", h, e, name="s", scope="mix")
        y = g.call("exp", s, name="y", scope="act")
    g.mark_output(y)
    return g


def _one_line(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def _edit_file(tmp_path, edit):
    g = _graph()
    path = tmp_path / "g.ge"
    save(g, str(path))
    with zipfile.ZipFile(path) as z:
        doc = json.loads(z.read("graph.json"))
        npz = z.read("arrays.npz")
    edit(doc)
    out = tmp_path / "edited.ge"
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("graph.json", json.dumps(doc))
        z.writestr("arrays.npz", npz)
    return str(out)


def _node(doc, name):
    return next(n for n in doc["nodes"] if n["name"] == name)


# ----------------------------------------------------------------------------- structure
def test_cycle_in_memory():
    g = _graph()
    g["h"].inputs = (g["y"].id,)       # h <- y <- s <- h
    with pytest.raises(GraphValidationError) as e:
        g.validate()
    msg = _one_line(e, "cycle", "'h'", "scope 'enc'")
    assert "h -> s -> y -> h" in msg


def test_cycle_in_file(tmp_path):
    def edit(doc):
        _node(doc, "h")["inputs"] = [_node(doc, "y")["id"]]
    with pytest.raises(GraphValidationError) as e:
        load(_edit_file(tmp_path, edit))
    _one_line(e, "cycle", "'h'", "scope 'enc'", "edited.ge")


def test_out_of_order_acyclic():
    g = Graph()
    a = g.input("a", (2,))
    b = g.call("exp", a, name="b")
    c = g.call("tanh", a, name="c", scope="blk")
    g.nodes[1].inputs = (2,)           # b <- c, and c <- a: no cycle, but c comes later
    with pytest.raises(GraphValidationError) as e:
        g.validate()
    _one_line(e, "'b'", "topological order", "'c'")
    del b, c


@pytest.mark.parametrize("bad", [99, -1, "x", 1.0, None, True])
def test_dangling_input(tmp_path, bad):
    def edit(doc):
        _node(doc, "s")["inputs"] = [_node(doc, "h")["id"], bad]
    with pytest.raises(GraphValidationError) as e:
        load(_edit_file(tmp_path, edit))
    _one_line(e, "dangling input", "'s'", "scope 'enc.mix'")


def test_unknown_op_in_file(tmp_path):
    def edit(doc):
        _node(doc, "h")["op"] = "frobnicate"
    with pytest.raises(UnknownOpError) as e:
        load(_edit_file(tmp_path, edit))
    _one_line(e, "unknown op 'frobnicate'", "'h'", "scope 'enc'")


def test_unknown_op_when_building():
    g = _graph()
    with pytest.raises(UnknownOpError) as e:
        g.call("frobnicate", g["x"], name="f", scope="blk")
    _one_line(e, "unknown op 'frobnicate'", "'f'", "scope 'blk'")
    assert isinstance(e.value, GraphValidationError) and isinstance(e.value, GraphEngineError)
    assert "f" not in [n.name for n in g.nodes]  # a refused node is not added


def test_duplicate_names():
    g = _graph()
    with pytest.raises(GraphValidationError) as e:
        g.call("exp", g["x"], name="h", scope="blk")
    _one_line(e, "duplicate node name 'h'", "scope 'blk'")


def test_duplicate_names_in_file(tmp_path):
    def edit(doc):
        _node(doc, "y")["name"] = "h"
    with pytest.raises(GraphValidationError) as e:
        load(_edit_file(tmp_path, edit))
    _one_line(e, "duplicate node name 'h'", "scope 'enc.act'")


def test_bad_output_reference(tmp_path):
    with pytest.raises(GraphValidationError) as e:
        load(_edit_file(tmp_path, lambda d: d.__setitem__("outputs", [42])))
    _one_line(e, "output 42")


# ----------------------------------------------------------------------------- shapes / dtypes
def test_matmul_inner_dims():
    g = Graph()
    a = g.input("a", (2, 3))
    b = g.parameter("b", np.ones((4, 5)))
    with pytest.raises(GraphValidationError) as e:
        g.call("matmul", a, b, name="mm", scope="layer.0.fc")
    _one_line(e, "'mm'", "op matmul", "scope 'layer.0.fc'", "[2, 3]", "[4, 5]")


def test_broadcast_mismatch():
    g = Graph()
    a = g.input("a", (2, 3))
    b = g.input("b", (4,))
    with pytest.raises(GraphValidationError) as e:
        g.call("add", a, b, name="s", scope="blk")
    _one_line(e, "'s'", "scope 'blk'", "broadcast")


def test_float_op_on_int_input():
    g = Graph()
    i = g.input("i", (3,), dtype="int64")
    with pytest.raises(GraphValidationError) as e:
        g.call("exp", i, name="ex", scope="blk")
    _one_line(e, "'ex'", "scope 'blk'", "int64")


def test_embedding_with_float_ids():
    g = Graph()
    table = g.parameter("table", np.ones((5, 3)))
    ids = g.input("ids", (2,))                      # float64 by default
    with pytest.raises(GraphValidationError) as e:
        g.call("embedding", table, ids, name="emb", scope="embeddings")
    _one_line(e, "'emb'", "scope 'embeddings'", "integers", "float64")


def test_stored_shape_not_matching_inference(tmp_path):
    def edit(doc):
        _node(doc, "s")["shape"] = [3, 2]
    with pytest.raises(GraphValidationError) as e:
        load(_edit_file(tmp_path, edit))
    _one_line(e, "'s'", "scope 'enc.mix'", "stored type [3, 2] float64", "infers [2, 3] float64")


def test_stored_dtype_not_matching_inference(tmp_path):
    def edit(doc):
        _node(doc, "y")["dtype"] = "float32"
    with pytest.raises(GraphValidationError) as e:
        load(_edit_file(tmp_path, edit))
    _one_line(e, "'y'", "scope 'enc.act'", "float32", "float64")


def test_wrong_number_of_inputs(tmp_path):
    def edit(doc):
        _node(doc, "s")["inputs"] = _node(doc, "s")["inputs"][:1]
    with pytest.raises(GraphValidationError) as e:
        load(_edit_file(tmp_path, edit))
    _one_line(e, "'s'", "takes 2 inputs, got 1")


# ----------------------------------------------------------------------------- attributes
@pytest.mark.parametrize("op, attrs, needle", [
    ("softmax", {"dim": 1}, "unknown attribute(s) dim"),
    ("softmax", {"axis": "1"}, "attribute 'axis' of op 'softmax' must be int"),
    ("softmax", {"axis": 1.0}, "must be int"),
    ("softmax", {"axis": True}, "must be int"),
    ("softmax", {"axis": 7}, "out of range"),
    ("pow", {}, "missing required attribute 'exponent'"),
    ("pow", {"exponent": "2"}, "must be float"),
    ("gelu", {"approximate": "fast"}, "must be one of"),
    ("sum", {"axes": [0, 0]}, "repeated axis"),
    ("reshape", {"shape": [7]}, "'r'"),
])
def test_bad_attributes(op, attrs, needle):
    g = Graph()
    x = g.input("x", (2, 3))
    with pytest.raises(GraphValidationError) as e:
        g.call(op, x, name="r", scope="blk.sub", **attrs)
    _one_line(e, needle, "'r'", "scope 'blk.sub'")


def test_bad_attributes_in_file(tmp_path):
    def edit(doc):
        _node(doc, "h")["attrs"] = {"bogus": 1}
    with pytest.raises(GraphValidationError) as e:
        load(_edit_file(tmp_path, edit))
    _one_line(e, "unknown attribute(s) bogus", "'h'", "scope 'enc'")


def test_bad_input_declaration(tmp_path):
    def edit(doc):
        _node(doc, "x")["attrs"]["dtype"] = "complex64"
    with pytest.raises(GraphValidationError) as e:
        load(_edit_file(tmp_path, edit))
    _one_line(e, "'x'", "scope 'inputs'", "dtype")


def test_valid_edit_still_loads(tmp_path):
    """The helper itself: an unedited copy loads and validates."""
    g = load(_edit_file(tmp_path, lambda d: None))
    g.validate()
    assert [n.name for n in g.nodes] == [n.name for n in _graph().nodes]
    assert not isinstance(GraphFormatError("x"), GraphValidationError)


# ----------------------------------------------------------------------------- feeds
FEEDS = {"x": np.zeros((2, 3)), "ids": np.array([0, 4])}


def test_good_feeds():
    g = _graph()
    acts = ge.forward(g, FEEDS)
    np.testing.assert_allclose(acts[g["y"].id], np.full((2, 3), np.e))


@pytest.mark.parametrize("feeds, needles", [
    ({"x": np.zeros((2, 3))}, ["missing feed", "'ids'"]),
    (dict(FEEDS, z=np.zeros(1)), ["z", "name no input", "x, ids"]),
    (dict(FEEDS, x=np.zeros((3, 2))), ["'x'", "[3, 2]", "[2, 3]"]),
    (dict(FEEDS, x=np.zeros(6)), ["'x'", "[6]"]),
    (dict(FEEDS, ids=np.array([0.5, 1.0])), ["'ids'", "integers"]),
])
def test_feed_errors(feeds, needles):
    with pytest.raises(FeedError) as e:
        ge.forward(_graph(), feeds)
    _one_line(e, *needles)


def test_out_of_range_ids_name_the_node():
    with pytest.raises(GraphEngineError) as e:
        ge.forward(_graph(), dict(FEEDS, ids=np.array([0, 5])))
    _one_line(e, "'e'", "scope 'enc.emb'", "index 5")
