"""Graph's public editing methods (rename, truncate): what frontends use instead of its internals."""

import numpy as np
import pytest

from graphengine.engine import forward
from graphengine.errors import GraphValidationError
from graphengine.ir import Graph, load, save


def _graph():
    g = Graph()
    x = g.input("x", (2, 3))
    w = g.parameter("w", np.arange(12.0).reshape(4, 3), scope="fc")
    h = g.call("linear", x, w, name="h", scope="fc")
    c = g.constant(np.array(2.0), name="two")
    y = g.call("mul", h, c, name="y")
    g.mark_output(h, y)
    return g


def test_rename_moves_the_lookup_and_frees_the_old_name(tmp_path):
    g = _graph()
    h = g["h"]
    assert g.rename(h, "hidden") is h
    assert g["hidden"] is h and h.name == "hidden"
    with pytest.raises(KeyError, match="'h'"):
        g.node("h")
    assert g.call("tanh", h, name="h").id == len(g) - 1  # the old name is free again
    g.validate()
    save(g, str(tmp_path / "g.ge"))
    assert load(str(tmp_path / "g.ge"))["hidden"].op == "linear"


def test_rename_refuses_a_name_another_node_holds_and_leaves_the_graph_unchanged():
    g = _graph()
    with pytest.raises(GraphValidationError, match=r"node 2 'h'.*'w': node 1 holds that name"):
        g.rename("h", "w")
    assert g["h"].id == 2 and g["w"].id == 1
    assert g.rename(2, "h").name == "h"  # its own name: nothing to do
    g.validate()


def test_truncate_drops_the_tail_with_its_arrays_and_output_marks():
    g = _graph()
    kept = list(g)[:3]
    g.truncate(3)
    assert list(g) == kept and [n.id for n in g] == [0, 1, 2]
    assert sorted(g.arrays) == [1] and g.outputs == [2]
    with pytest.raises(KeyError):
        g.node("two")
    assert g.constant(np.array(3.0), name="two").id == 3  # removed names are free again
    g.validate()
    acts = forward(g, {"x": np.ones((2, 3))})
    np.testing.assert_allclose(acts[2], np.ones((2, 3)) @ np.arange(12.0).reshape(4, 3).T)


@pytest.mark.parametrize("length", [0, 5])
def test_truncate_to_nothing_or_everything(length):
    g = _graph()
    g.truncate(length)
    assert len(g) == length and len(g.outputs) == (2 if length else 0)
    g.validate()


@pytest.mark.parametrize("length", [-1, 6])
def test_truncate_out_of_range_is_refused(length):
    g = _graph()
    with pytest.raises(ValueError, match="5 nodes"):
        g.truncate(length)
    assert len(g) == 5
