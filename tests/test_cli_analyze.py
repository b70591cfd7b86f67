"""``graphengine analyze``: top paths and per-node summaries, JSON output, one-line errors."""

import json

import numpy as np
import pytest

import graphengine as ge
from graphengine.cli import main


@pytest.fixture
def two_layer(tmp_path):
    g = ge.Graph()
    x = g.input("x", (1, 2))
    W = g.parameter("W", np.array([[1.0, 1.0], [2.0, -3.0]]), scope="l1")
    h = g.call("linear", x, W, name="h", scope="l1")
    V = g.parameter("V", np.array([[1.0, 1.0]]), scope="l2")
    g.call("linear", h, V, name="q", scope="l2")
    path = tmp_path / "g.ge"
    ge.save(g, str(path))
    return path


def test_analyze_prints_top_paths_and_writes_json(two_layer, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["analyze", str(two_layer), "--qoi", "q[0,0]", "--input", "x=[[1, 1]]",
               "--semiring", "max,entropy,kbest:2,count", "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "max top path (max), weight 2" in text
    doc = json.loads(out.read_text())
    best = doc["paths"]["max"][0]
    assert best["weight"] == 2.0
    assert [(s["name"], s["element"]) for s in best["steps"]] == [("x", [0, 0]), ("h", [0, 1]), ("q", [0, 0])]
    # k-best from the same start: the two paths of x0 (2 and 1), in order
    assert [p["weight"] for p in doc["paths"]["kbest:2"]] == [2.0, 1.0]
    assert doc["nodes"]["x"]["count"]["paths"]["max"] == 2.0
    # x0 has paths of weight 2 and 1, x1 of |1| and |-3|: entropies of (2/3, 1/3) and (1/4, 3/4)
    h0 = -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3))
    h1 = -(1 / 4 * np.log(1 / 4) + 3 / 4 * np.log(3 / 4))
    ent = doc["nodes"]["x"]["entropy"]["entropy"]
    assert abs(ent["max"] - h0) < 1e-12 and abs(ent["min"] - h1) < 1e-12 and ent["argmax"] == [0, 0]


def test_analyze_paper_granularity(two_layer, capsys):
    assert main(["analyze", str(two_layer), "--qoi", "q[0,0]", "--input", "x=[[1, 1]]",
                 "--semiring", "max", "--granularity", "paper"]) == 0
    text = capsys.readouterr().out
    assert "max: max 3" in text           # the paper's in-matmul sum: the gradient of x0


@pytest.mark.parametrize("args,needle", [
    (["--semiring", "max,nope"], "unknown semiring"),
    (["--semiring", "kbest:0"], "positive integer"),
    (["--semiring", "max,max"], "listed twice"),
    (["--semiring", "kbest:2", "--granularity", "paper"], "scalar granularity only"),
    (["--nodes", "zzz"], "--nodes zzz"),
    (["--from", "zzz"], "--from zzz"),
])
def test_analyze_bad_arguments_one_line(two_layer, capsys, args, needle):
    rc = main(["analyze", str(two_layer), "--qoi", "q[0,0]", "--input", "x=[[1, 1]]"] + args)
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("flag", ["-o", "--html", "--graph-json", "--dot"])
def test_unwritable_output_refused_before_the_analysis(two_layer, capsys, monkeypatch, flag):
    """/proc refuses new files even for root: the check probes the directory, not permission bits."""
    import graphengine.analysis.report as report

    def must_not_run(*a, **k):
        raise AssertionError("the analysis ran before the output path was checked")
    monkeypatch.setattr(report, "analyze", must_not_run)
    rc = main(["analyze", str(two_layer), "--qoi", "q[0,0]", "--input", "x=[[1, 1]]", flag, "/proc/ge-out.x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("graphengine: error:") and "/proc/ge-out.x" in err[0] and "cannot write" in err[0]
