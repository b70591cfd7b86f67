"""The ``graphengine`` command: every subcommand, and every bad-input path ends in exactly one
``graphengine: error:`` line on stderr, exit status 2, no traceback, no partial output file."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import graphengine as ge
from graphengine.cli import main, scope_tree
from graphengine.ir import Graph, save

W = np.arange(12.0).reshape(4, 3) / 10 - 0.5
B = np.array([0.1, -0.2, 0.3, 0.0])
TABLE = np.arange(15.0).reshape(5, 3) / 7


def _graph() -> Graph:
    g = Graph(meta={"policy": "fused", "model": "toy"})
    x = g.input("x", (2, 3))
    ids = g.input("ids", (2,), dtype="int64")
    with g.scope("embeddings"):
        table = g.parameter("table", TABLE, scope="word")
        e = g.call("embedding", table, ids, name="e", scope="word")
    with g.scope("encoder.layer.0"):
        w = g.parameter("w", W, scope="fc")
        b = g.parameter("b", B, scope="fc")
        h = g.call("add", x, e, name="h")
        logits = g.call("linear", h, w, b, name="logits", scope="fc")
    p = g.call("softmax", logits, name="p")
    g.mark_output(logits, p)
    return g


X = np.linspace(-1, 1, 6).reshape(2, 3)
IDS = np.array([1, 4])


@pytest.fixture
def files(tmp_path):
    graph = tmp_path / "toy.ge"
    save(_graph(), str(graph))
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, x=X, ids=IDS)
    return graph, feeds


def cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_error(capsys, *args, match=None):
    rc, out, err = cli(capsys, *args)
    assert rc == 2, (rc, out, err)
    assert err.startswith("graphengine: error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err + out
    if match:
        assert match in err, err
    return err


def _expected_logits():
    h = X + TABLE[IDS]
    return h @ W.T + B


# ----------------------------------------------------------------------------- info
def test_info_text(capsys, files):
    rc, out, err = cli(capsys, "info", files[0])
    assert rc == 0 and err == ""
    assert "nodes:       9" in out
    assert "parameters:  3 (31 elements)" in out
    assert "x  [2, 3] float64" in out and "ids  [2] int64" in out
    assert "logits  [2, 4] float64" in out and "p  [2, 4] float64" in out
    assert "parameter  3" in out and "embedding  1" in out
    assert "embeddings  (2 nodes)" in out and "encoder  (4 nodes)" in out
    assert 'policy: "fused"' in out


def test_info_json(capsys, files):
    rc, out, err = cli(capsys, "info", files[0], "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["nodes"] == 9 and doc["parameters"] == 3 and doc["parameter_elements"] == 31
    assert doc["ops"]["parameter"] == 3 and doc["ops"]["softmax"] == 1
    assert doc["inputs"] == {"x": {"shape": [2, 3], "dtype": "float64"}, "ids": {"shape": [2], "dtype": "int64"}}
    assert doc["outputs"] == {"logits": {"shape": [2, 4], "dtype": "float64"}, "p": {"shape": [2, 4], "dtype": "float64"}}
    assert doc["meta"] == {"policy": "fused", "model": "toy"}
    assert doc["format_version"] == 1
    assert doc["scope_tree"]["encoder.layer"] == 4 and doc["scope_tree"]["embeddings.word"] == 2
    assert "encoder.layer.0.fc" in doc["scopes"]


def test_scope_tree_truncates_depth():
    from collections import Counter
    tree = scope_tree(Counter({"a.b.c.d": 2, "a.x": 1}), depth=3)
    assert tree == {"a": 3, "a.b": 2, "a.b.c": 2, "a.x": 1}


# ----------------------------------------------------------------------------- run
def test_run_prints_and_writes(capsys, files, tmp_path):
    out_path = tmp_path / "out.npz"
    rc, out, err = cli(capsys, "run", files[0], "--inputs", files[1], "-o", out_path)
    assert rc == 0 and err == ""
    assert "logits: shape [2, 4] float64" in out and "p: shape [2, 4] float64" in out
    assert "min" in out and "max" in out
    with np.load(out_path, allow_pickle=False) as z:
        assert sorted(z.files) == ["logits", "p"]
        np.testing.assert_allclose(z["logits"], _expected_logits())
        np.testing.assert_allclose(z["p"].sum(axis=1), 1.0)
    assert sorted(os.listdir(tmp_path)) == ["feeds.npz", "out.npz", "toy.ge"]  # no temp files


def test_run_with_json_inputs_and_override(capsys, files, tmp_path):
    out_path = tmp_path / "o.npz"
    rc, out, err = cli(capsys, "run", files[0], "--input", f"x={json.dumps(X.tolist())}", "--input", "ids=[1, 4]",
                       "-o", out_path)
    assert rc == 0, err
    with np.load(out_path) as z:
        np.testing.assert_allclose(z["logits"], _expected_logits())
    # --input overrides the same name from --inputs
    rc, out, err = cli(capsys, "run", files[0], "--inputs", files[1], "--input", "ids=[0, 0]", "-o", out_path)
    assert rc == 0
    with np.load(out_path) as z:
        np.testing.assert_allclose(z["logits"], (X + TABLE[[0, 0]]) @ W.T + B)


def test_run_overwrites_existing_output_on_success(capsys, files, tmp_path):
    out_path = tmp_path / "o.npz"
    out_path.write_bytes(b"old")
    rc, _, _ = cli(capsys, "run", files[0], "--inputs", files[1], "-o", out_path)
    assert rc == 0
    with np.load(out_path) as z:
        assert "logits" in z.files


def test_run_large_output_shows_first_values(capsys, tmp_path):
    g = Graph()
    x = g.input("x", (10, 10))
    g.mark_output(g.call("exp", x, name="y"))
    save(g, str(tmp_path / "big.ge"))
    np.savez(tmp_path / "f.npz", x=np.zeros((10, 10)))
    rc, out, _ = cli(capsys, "run", tmp_path / "big.ge", "--inputs", tmp_path / "f.npz")
    assert rc == 0 and "first 6 of 100" in out


# ----------------------------------------------------------------------------- grad
def test_grad_difference_qoi(capsys, files, tmp_path):
    out_path = tmp_path / "g.npz"
    rc, out, err = cli(capsys, "grad", files[0], "--inputs", files[1], "--qoi", "logits[0,3] - logits[0,1]",
                       "-o", out_path)
    assert rc == 0, err
    logits = _expected_logits()
    assert f"= {logits[0, 3] - logits[0, 1]:.6g}" in out
    for name in ("x", "table", "w", "b"):
        assert f"d/d {name}: shape" in out
    assert "d/d ids" not in out          # integer inputs have no gradient
    with np.load(out_path) as z:
        assert sorted(z.files) == ["b", "table", "w", "x"]
        gx = np.zeros((2, 3)); gx[0] = W[3] - W[1]
        np.testing.assert_allclose(z["x"], gx)
        gt = np.zeros((5, 3)); gt[IDS[0]] = W[3] - W[1]
        np.testing.assert_allclose(z["table"], gt)
        np.testing.assert_allclose(z["b"], [0, -1, 0, 1])
        gw = np.zeros((4, 3)); h0 = X[0] + TABLE[IDS[0]]; gw[3] = h0; gw[1] = -h0
        np.testing.assert_allclose(z["w"], gw)
    norm = np.linalg.norm(gx)
    assert f"d/d x: shape [2, 3]  L2 norm {norm:.6g}" in out


def test_grad_wrt_intermediate(capsys, files, tmp_path):
    out_path = tmp_path / "g.npz"
    rc, out, err = cli(capsys, "grad", files[0], "--inputs", files[1], "--qoi", "p[1,2]",
                       "--wrt", "logits", "--wrt", "x", "-o", out_path)
    assert rc == 0, err
    with np.load(out_path) as z:
        assert sorted(z.files) == ["logits", "x"]
        p = np.exp(_expected_logits()[1]); p /= p.sum()
        expect = np.zeros((2, 4)); expect[1] = p[2] * (np.eye(4)[2] - p)
        np.testing.assert_allclose(z["logits"], expect, atol=1e-15)
    assert "d/d logits: shape [2, 4]" in out


def test_grad_unreached_node_is_zero(capsys, tmp_path):
    g = Graph()
    a = g.input("a", (2,))
    b = g.input("b", (2,))
    g.mark_output(g.call("exp", a, name="y"), g.call("tanh", b, name="z"))
    save(g, str(tmp_path / "two.ge"))
    rc, out, err = cli(capsys, "grad", tmp_path / "two.ge", "--input", "a=[0, 0]", "--input", "b=[1, 2]",
                       "--qoi", "y[1]", "-o", tmp_path / "g.npz")
    assert rc == 0, err
    assert "no path to the QoI" in out
    with np.load(tmp_path / "g.npz") as z:
        np.testing.assert_array_equal(z["b"], [0, 0])
        np.testing.assert_array_equal(z["a"], [0, 1])


# ----------------------------------------------------------------------------- errors
def test_missing_graph_file(capsys, tmp_path):
    for cmd in (["info"], ["run"], ["grad", "--qoi", "y[0]"]):
        assert_error(capsys, *cmd, tmp_path / "nope.ge", match="no such file")


def test_truncated_graph_file(capsys, files, tmp_path):
    data = files[0].read_bytes()
    bad = tmp_path / "trunc.ge"
    for n in (0, 10, len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:n])
        assert_error(capsys, "info", bad, match=str(bad))
        assert_error(capsys, "run", bad, "--inputs", files[1], match=str(bad))


def test_non_zip_graph_file(capsys, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a graph\n" * 10)
    assert_error(capsys, "info", bad, match="not a readable graphengine file")
    assert_error(capsys, "info", tmp_path, match="directory")


def _edit(src, dst, edit):
    with zipfile.ZipFile(src) as z:
        doc = json.loads(z.read("graph.json"))
        npz = z.read("arrays.npz")
    edit(doc)
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("graph.json", json.dumps(doc))
        z.writestr("arrays.npz", npz)
    return dst


def _node(doc, name):
    return next(n for n in doc["nodes"] if n["name"] == name)


def test_unknown_op_in_edited_file(capsys, files, tmp_path):
    bad = _edit(files[0], tmp_path / "op.ge", lambda d: _node(d, "h").__setitem__("op", "frobnicate"))
    err = assert_error(capsys, "info", bad, match="unknown op 'frobnicate'")
    assert "'h'" in err and "encoder.layer.0" in err


def test_cycle_in_edited_file(capsys, files, tmp_path):
    def edit(doc):
        _node(doc, "h")["inputs"] = [_node(doc, "logits")["id"], _node(doc, "e")["id"]]
    bad = _edit(files[0], tmp_path / "cyc.ge", edit)
    err = assert_error(capsys, "run", bad, "--inputs", files[1], match="cycle")
    assert "h -> logits -> h" in err


def test_bad_qoi_syntax(capsys, files):
    for q in ("logits(0,1)", "logits[0,1", "[0,1]", "logits[a]", "logits[0,1] + logits[0,2]", ""):
        assert_error(capsys, "grad", files[0], "--inputs", files[1], "--qoi", q, match="QoI")
    assert_error(capsys, "grad", files[0], "--inputs", files[1], "--qoi", "logits[0,1] - p[0,1]",
                 match="same node")


def test_qoi_out_of_range_or_unknown(capsys, files):
    assert_error(capsys, "grad", files[0], "--inputs", files[1], "--qoi", "logits[0,4]", match="out of range")
    assert_error(capsys, "grad", files[0], "--inputs", files[1], "--qoi", "logits[2,0]", match="out of range")
    assert_error(capsys, "grad", files[0], "--inputs", files[1], "--qoi", "logits[0]", match="out of range")
    assert_error(capsys, "grad", files[0], "--inputs", files[1], "--qoi", "logits[0,1] - logits[0,9]",
                 match="out of range")
    assert_error(capsys, "grad", files[0], "--inputs", files[1], "--qoi", "nope[0]", match="no node named 'nope'")
    assert_error(capsys, "grad", files[0], "--inputs", files[1], "--qoi", "ids[0]", match="not floating point")


def test_bad_wrt(capsys, files):
    assert_error(capsys, "grad", files[0], "--inputs", files[1], "--qoi", "p[0,0]", "--wrt", "nope",
                 match="no node named 'nope'")
    assert_error(capsys, "grad", files[0], "--inputs", files[1], "--qoi", "p[0,0]", "--wrt", "ids",
                 match="int64")


def test_wrong_feed_shape(capsys, files, tmp_path):
    assert_error(capsys, "run", files[0], "--inputs", files[1], "--input", "x=[1, 2, 3]",
                 match="feed 'x' has shape [3], the graph expects [2, 3]")
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 2)), ids=IDS)
    assert_error(capsys, "grad", files[0], "--inputs", tmp_path / "bad.npz", "--qoi", "p[0,0]",
                 match="feed 'x' has shape [3, 2]")


def test_unknown_feed_name(capsys, files, tmp_path):
    assert_error(capsys, "run", files[0], "--inputs", files[1], "--input", "y=1", match="feed(s) y name no input")
    np.savez(tmp_path / "extra.npz", x=X, ids=IDS, bogus=np.zeros(1))
    assert_error(capsys, "run", files[0], "--inputs", tmp_path / "extra.npz", match="bogus")


def test_other_feed_errors(capsys, files):
    g, f = files
    assert_error(capsys, "run", g, match="missing feed for input 'x'")
    assert_error(capsys, "run", g, "--inputs", f, "--input", "ids=[0.5, 1]", match="integers")
    assert_error(capsys, "run", g, "--inputs", f, "--input", "ids=[0, 5]", match="index 5")
    assert_error(capsys, "run", g, "--inputs", f, "--input", "x", match="NAME=JSON")
    assert_error(capsys, "run", g, "--inputs", f, "--input", "=1", match="empty input name")
    assert_error(capsys, "run", g, "--inputs", f, "--input", "x=[[1, 2, 3], [4]", match="not valid JSON")
    assert_error(capsys, "run", g, "--inputs", f, "--input", "x=[[1, 2, 3], [4]]", match="rectangular")
    assert_error(capsys, "run", g, "--inputs", f, "--input", 'x=[["a", "b", "c"], ["d", "e", "f"]]',
                 match="numbers or booleans")


def test_unreadable_feed_files(capsys, files, tmp_path):
    g, _ = files
    assert_error(capsys, "run", g, "--inputs", tmp_path / "missing.npz", match="no such file")
    (tmp_path / "text.npz").write_text("not an npz")
    assert_error(capsys, "run", g, "--inputs", tmp_path / "text.npz", match="not an .npz file")
    data = files[1].read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    assert_error(capsys, "run", g, "--inputs", tmp_path / "trunc.npz", match="not a readable .npz")
    np.save(tmp_path / "one.npy", X)
    assert_error(capsys, "run", g, "--inputs", tmp_path / "one.npy", match="single array")
    assert_error(capsys, "run", g, "--inputs", g, match="not a .npy array")  # a zip, but not of arrays
    assert_error(capsys, "run", g, "--inputs", tmp_path, match="directory")


def test_pickled_feed_file_is_refused_without_running_code(capsys, files, tmp_path):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))
    obj = np.empty(1, dtype=object)
    obj[0] = Evil()
    np.savez(tmp_path / "evil.npz", x=obj, ids=IDS)
    assert_error(capsys, "run", files[0], "--inputs", tmp_path / "evil.npz", match="allow_pickle=False")
    assert not marker.exists()


def test_error_never_clobbers_existing_output(capsys, files, tmp_path):
    out_path = tmp_path / "precious.npz"
    out_path.write_bytes(b"precious bytes")
    g, f = files
    assert_error(capsys, "run", g, "--inputs", f, "--input", "x=[1]", "-o", out_path)
    assert_error(capsys, "grad", g, "--inputs", f, "--qoi", "logits[9,9]", "-o", out_path)
    assert_error(capsys, "grad", g, "--inputs", f, "--qoi", "bad qoi", "-o", out_path)
    assert_error(capsys, "run", tmp_path / "nope.ge", "-o", out_path)
    assert out_path.read_bytes() == b"precious bytes"
    assert sorted(os.listdir(tmp_path)) == ["feeds.npz", "precious.npz", "toy.ge"]


def test_failed_write_leaves_old_output_and_no_temp(capsys, files, tmp_path, monkeypatch):
    out_path = tmp_path / "precious.npz"
    out_path.write_bytes(b"precious bytes")

    def broken_savez(f, **arrays):
        f.write(b"PK partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", broken_savez)
    assert_error(capsys, "run", files[0], "--inputs", files[1], "-o", out_path, match="No space left")
    assert out_path.read_bytes() == b"precious bytes"
    assert sorted(os.listdir(tmp_path)) == ["feeds.npz", "precious.npz", "toy.ge"]


def test_bad_output_path(capsys, files, tmp_path):
    assert_error(capsys, "run", files[0], "--inputs", files[1], "-o", tmp_path / "no" / "dir" / "o.npz",
                 match="does not exist")
    assert_error(capsys, "run", files[0], "--inputs", files[1], "-o", tmp_path, match="is a directory")


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["info"], ["grad", "g.ge"], ["run", "g.ge", "--bogus"],
                                  ["info", "a.ge", "b.ge"]])
def test_usage_errors_exit_2(capsys, args):
    assert_error(capsys, *args)


def test_help_and_version(capsys):
    rc, out, _ = cli(capsys, "--help")
    assert rc == 0 and "info" in out and "grad" in out
    rc, out, _ = cli(capsys, "grad", "--help")
    assert rc == 0 and "--qoi" in out
    rc, out, _ = cli(capsys, "--version")
    assert rc == 0 and ge.__version__ in out


def _parsers(parser, path=("graphengine",)):
    """Every parser reachable from ``parser`` with its command path (argparse keeps sub-parsers in
    the ``choices`` of its sub-parsers action)."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_every_option_of_every_command_has_help():
    import argparse

    from graphengine.cli.main import build_parser
    from graphengine.experiments import EXPERIMENTS

    seen = set()
    for path, parser in _parsers(build_parser()):
        seen.add(path)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                described = {a.dest for a in action._choices_actions if a.help}
                assert described == set(action.choices), (path, set(action.choices) - described)
            else:
                assert action.help and action.help != argparse.SUPPRESS, (path, action.option_strings or action.dest)
    assert {("graphengine", "experiment", name) for name in EXPERIMENTS} <= seen
    assert {("graphengine", c) for c in ("info", "run", "grad", "analyze", "demo", "export")} <= seen
    assert ("graphengine", "export", "onnx") in seen


@pytest.mark.parametrize("command", [[], ["analyze"], ["export", "hf"], ["experiment"], ["experiment", "sva"],
                                     ["experiment", "synthetic-scaling"]])
def test_help_of_every_level_describes_its_options(capsys, command):
    rc, out, _ = cli(capsys, *command, "--help")
    assert rc == 0 and out.startswith("usage: graphengine")


# ----------------------------------------------------------------------------- demo
def test_demo(capsys):
    pytest.importorskip("graphengine.cli.demo")
    rc, out, err = cli(capsys, "demo")
    assert rc == 0, err
    assert out.strip()


# ----------------------------------------------------------------------------- real processes
def _console_script():
    here = Path(sys.executable).parent / "graphengine"
    if here.exists():
        return str(here)
    found = shutil.which("graphengine")
    if not found:
        pytest.skip("the graphengine console script is not installed")
    return found


def test_console_script(files, tmp_path):
    exe = _console_script()
    ok = subprocess.run([exe, "grad", str(files[0]), "--inputs", str(files[1]), "--qoi", "logits[1,0]",
                         "-o", str(tmp_path / "g.npz")], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "d/d x" in ok.stdout
    with np.load(tmp_path / "g.npz") as z:
        np.testing.assert_allclose(z["b"], [1, 0, 0, 0])
    bad = subprocess.run([exe, "info", str(tmp_path / "missing.ge")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.startswith("graphengine: error: ") and bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr
    usage = subprocess.run([exe, "frobnicate"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1


def test_python_dash_m(files):
    r = subprocess.run([sys.executable, "-m", "graphengine", "info", str(files[0]), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["nodes"] == 9
