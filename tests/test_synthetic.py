"""Synthetic graphs with known answers, the analysis helpers built on them, and smoke runs of
the synthetic-* experiments (graphengine/experiments: planted_path, equal_weights, scaling,
underflow) through ``graphengine experiment``."""

import itertools
import json
import math

import networkx as nx
import numpy as np
import pytest

from graphengine.analysis import underflow_report, vector_entropy
from graphengine.cli import main
from graphengine.models.synthetic import (count_paths, enumerate_paths, layer_weights, layered_dag, output_qoi,
                                            planted_path, random_weights, unit_graph)
from graphengine.engine import backward, forward, select
from graphengine.errors import GraphValidationError
from graphengine.paths import best_input_path, top_path


def run(dag, semirings, retain=("x",)):
    return backward(dag.graph, forward(dag.graph, dag.feeds), output_qoi(dag.graph, dag.output),
                    semirings=semirings, retain=list(retain) if retain != "all" else "all")


# ------------------------------------------------------------------------------- generators

def test_layered_dag_structure_and_forward():
    rng = np.random.default_rng(0)
    dag = layered_dag([3, 5, 2], rng=rng)
    g = dag.graph
    assert dag.output == "h2" and g.outputs == [g["h2"].id]
    assert [n.name for n in g] == ["x", "W1", "h1", "W2", "h2"]
    assert g["W1"].shape == (5, 3) and g["h1"].shape == (1, 5) and g["h2"].scope == "layer.2"
    W = layer_weights(g)
    assert all(0.1 <= np.abs(w).min() and np.abs(w).max() <= 0.5 for w in W)
    acts = forward(g, dag.feeds)
    np.testing.assert_allclose(acts[g["h2"].id], np.ones((1, 3)) @ W[0].T @ W[1].T)
    g.validate()


def test_layered_dag_weight_specs_and_errors():
    dag = layered_dag([2, 3], weights=0.7, weights_as="constant")
    assert dag.graph["W1"].op == "constant" and np.all(layer_weights(dag.graph)[0] == 0.7)
    mats = [np.arange(6.0).reshape(3, 2)]
    assert np.array_equal(layer_weights(layered_dag([2, 3], mats).graph)[0], mats[0])
    assert all((w > 0).all() for w in random_weights([4, 4, 4], np.random.default_rng(1), signs="positive"))
    with pytest.raises(ValueError, match="one \\(widths"):
        layered_dag([2, 3], [np.ones((2, 3))])
    with pytest.raises(ValueError, match="skip"):
        layered_dag([2, 2, 2], weights=1.0, skips=[(0, 1)])
    with pytest.raises(ValueError):
        layered_dag([2], weights=1.0)


def test_skips_identity_and_projection():
    dag = layered_dag([2, 3, 2, 3], weights=1.0, skips=[(0, 2), (1, 3)])
    g = dag.graph
    # widths 2 -> 2 at (0, 2): identity add; 3 -> 3 at (1, 3): identity; no projections
    assert "P0_2" not in [n.name for n in g] and g["h2"].op == "add" and g["h3"].op == "add"
    dag2 = layered_dag([2, 3, 4], weights=0.5, skips=[(0, 2)])
    assert dag2.graph["skip0_2"].op == "linear" and np.all(dag2.graph.arrays[dag2.graph["P0_2"].id] == 0.5)
    acts = forward(dag2.graph, dag2.feeds)
    expect = np.ones((1, 2)) @ np.full((3, 2), 0.5).T @ np.full((4, 3), 0.5).T + np.ones((1, 2)) @ np.full((4, 2), 0.5).T
    np.testing.assert_allclose(acts[dag2.graph["h2"].id], expect)


def test_count_paths_closed_form_networkx_and_enumeration():
    assert count_paths([3, 4, 5]) == 60
    for widths, skips in [([2, 3, 2], [(0, 2)]), ([3, 3, 4, 3], [(0, 2), (1, 3), (0, 3)]), ([2, 2, 2, 2], [])]:
        G = unit_graph(widths, skips)
        brute = sum(1 for s in range(widths[0]) for t in range(widths[-1])
                    for _ in nx.all_simple_paths(G, (0, s), (len(widths) - 1, t)))
        assert count_paths(widths, skips) == brute


def test_enumerate_paths_matches_itertools():
    W = random_weights([2, 3, 2], np.random.default_rng(3))
    units, prods = enumerate_paths(W)
    assert len(units) == 12
    for u, p in zip(units, prods):
        assert math.isclose(p, W[0][u[1], u[0]] * W[1][u[2], u[1]])
    assert sorted(map(tuple, units.tolist())) == list(itertools.product(range(2), range(3), range(2)))


def test_planted_path_sign_and_uniqueness():
    for sign in ("positive", "negative"):
        p = planted_path(4, 3, np.random.default_rng(5), sign=sign)
        prod = np.prod([p.weights[k][p.path[k + 1], p.path[k]] for k in range(4)])
        assert (prod > 0) == (sign == "positive")
        units, prods = enumerate_paths(p.weights)
        assert tuple(units[np.argmax(np.abs(prods))]) == p.path
        assert p.graph.meta["planted"] == list(p.path)
    with pytest.raises(ValueError, match="heavy"):
        planted_path(3, 3, np.random.default_rng(0), heavy=0.4)


# ------------------------------------------------------------------------- planted recovery

@pytest.mark.parametrize("seed", range(4))
def test_planted_path_is_recovered(seed):
    rng = np.random.default_rng(seed)
    for sign in ("positive", "negative"):
        p = planted_path(5, 4, rng, sign=sign)
        r = run(p, ["max", "maxabs", "maxplus"])
        found = [best_input_path(r, "maxabs"), best_input_path(r, "maxplus")]
        if sign == "positive":
            found.append(best_input_path(r, "max"))
        else:
            mins = r.components("x", "max")["min"]
            found.append(top_path(r, "x", np.unravel_index(int(np.argmin(mins)), mins.shape), "max", component=1))
        planted_w = np.prod([p.weights[k][p.path[k + 1], p.path[k]] for k in range(5)])
        for path in found:
            assert tuple(st.element[1] for st in path.steps) == p.path
            assert [st.name for st in path.steps] == ["x", "h1", "h2", "h3", "h4", "h5"]
            assert math.isclose(path.weight, planted_w, rel_tol=1e-12)


def test_unplanted_extremes_match_brute_force():
    dag = layered_dag([3, 4, 3, 4], rng=np.random.default_rng(11))
    r = run(dag, ["max", "maxabs", "maxplus"])
    units, prods = enumerate_paths(layer_weights(dag.graph))
    per = prods.reshape(3, -1)
    np.testing.assert_allclose(r.components("x", "max")["max"][0], per.max(1))
    np.testing.assert_allclose(r.components("x", "max")["min"][0], per.min(1))
    np.testing.assert_allclose(r.get("x", "maxplus")[0], np.log(np.abs(per)).max(1))
    p = best_input_path(r, "max")
    assert tuple(st.element[1] for st in p.steps) == tuple(units[np.argmax(prods)])


# -------------------------------------------------------------------- entropy and counting

@pytest.mark.parametrize("widths,w", [([3, 3, 3], 1.0), ([2, 5, 3, 4], 0.7), ([4] * 11, 1.3)])
def test_vector_entropy_equal_weights_is_log_paths(widths, w):
    dag = layered_dag(widths, weights=w)
    r = run(dag, ["entropy", "logentropy", "count", "logcount"])
    n = count_paths(widths)
    assert vector_entropy(r, "x") == pytest.approx(math.log(n), abs=1e-12 * max(1, math.log(n)))
    assert vector_entropy(r, "x", "logentropy") == pytest.approx(math.log(n), abs=1e-11 * max(1, math.log(n)))
    assert r.get("x", "count").sum() == n
    # per-unit entropies are log(#paths from that unit), not the pooled value
    np.testing.assert_allclose(r.get("x", "entropy"), math.log(n // widths[0]))


def test_equal_weight_identity_with_skips():
    widths, skips = [3, 4, 3, 4, 3], [(0, 2), (1, 3), (0, 4), (2, 4)]
    dag = layered_dag(widths, weights=1.0, skips=skips)
    r = run(dag, ["entropy", "logentropy", "count"])
    n = count_paths(widths, skips)
    assert n > math.prod(widths)
    assert r.get("x", "count").sum() == n
    assert vector_entropy(r, "x") == pytest.approx(math.log(n), abs=1e-12)
    assert vector_entropy(r, "x", "logentropy") == pytest.approx(math.log(n), abs=1e-12)


def test_vector_entropy_random_weights_entropy_equals_logentropy():
    dag = layered_dag([4, 6, 5, 3], rng=np.random.default_rng(2))
    r = run(dag, ["entropy", "logentropy"])
    # brute force: distribution over all paths ∝ |product|
    _, prods = enumerate_paths(layer_weights(dag.graph))
    p = np.abs(prods) / np.abs(prods).sum()
    H = float(-(p * np.log(p)).sum())
    assert vector_entropy(r, "x") == pytest.approx(H, abs=1e-12)
    assert vector_entropy(r, "x", "logentropy") == pytest.approx(H, abs=1e-12)
    with pytest.raises(ValueError, match="entropy semiring"):
        vector_entropy(run(dag, ["count"]), "x", "count")


# -------------------------------------------------------------------------------- numerics

def test_underflow_report_deep_graph_flags_plain_semirings():
    dag = layered_dag([2] * 201, weights=0.01)   # Z = 0.02**200 ~ 1e-340, max path 1e-400
    sems = ["real", "absolute", "log", "max", "maxabs", "maxplus", "entropy", "logentropy", "count",
            "logcount", "bool"]
    r = run(dag, sems)
    rep = underflow_report(r, "x")
    flagged = {s for s, e in rep.items() if e["degenerate"]}
    assert flagged == {"real", "absolute", "max", "maxabs", "entropy"}
    assert rep["absolute"]["reference"] == "log" and rep["entropy"]["reference"] == "logentropy"
    assert rep["max"]["reference"] == "maxplus" and rep["count"]["reference"] == "logcount"
    assert rep["absolute"]["underflow"] == 2 and rep["absolute"]["of"] == 2
    np.testing.assert_allclose(r.get("x", "log"), 200 * math.log(0.02), rtol=1e-13)
    np.testing.assert_allclose(r.get("x", "maxplus"), 200 * math.log(0.01), rtol=1e-13)
    np.testing.assert_allclose(r.get("x", "logcount"), 200 * math.log(2), rtol=1e-13)
    np.testing.assert_allclose(r.get("x", "logentropy"), 200 * math.log(2), rtol=1e-9)
    assert np.all(r.get("x", "count") == 2.0 ** 200)


def test_underflow_report_shallow_graph_and_missing_reference():
    dag = layered_dag([2] * 11, weights=0.5)
    r = run(dag, ["real", "absolute", "log", "max", "maxplus", "count", "logcount"])
    assert not any(e["degenerate"] for e in underflow_report(r, "x").values())
    r2 = run(dag, ["absolute", "count"])
    assert all(e["degenerate"] is None for e in underflow_report(r2, "x").values())
    # overflow: 3**120 paths per unit are fine for count, but Z = 3000**120 ~ 1e417 is inf
    big = layered_dag([3] * 121, weights=1e3)
    rep = underflow_report(run(big, ["absolute", "log", "count", "logcount"]), "x")
    assert rep["absolute"]["degenerate"] and rep["absolute"]["overflow"] == 3
    assert not rep["count"]["degenerate"] and not rep["log"]["degenerate"]


def test_underflow_report_real_zero_by_cancellation_is_not_flagged():
    from graphengine import Graph
    g = Graph(); x = g.input("x", (1, 1))
    h = g.call("linear", x, g.parameter("W1", np.array([[1.0], [-1.0]])), name="h1")
    g.call("linear", h, g.parameter("W2", np.array([[1.0, 1.0]])), name="h2")
    r = backward(g, forward(g, {"x": np.ones((1, 1))}), select("h2", (0, 0)), semirings=["real", "log"])
    assert r.grad("x")[0, 0] == 0.0
    assert underflow_report(r, "x")["real"]["degenerate"] is False


# ------------------------------------------------------------------------- experiment smoke

@pytest.mark.parametrize("name,extra,keys,plot", [
    ("synthetic-planted-path", ["--trials", "2"], {"settings", "recovery_rate", "brute_force", "passed"},
     "planted_path.png"),
    ("synthetic-equal-weights", [], {"summary", "graphs", "passed"}, "equal_weights.png"),
    ("synthetic-scaling", ["--repeats", "1", "--max-edges", "1e4", "--semirings", "real", "max", "logentropy"],
     {"families", "config", "passed"}, "scaling.png"),
    ("synthetic-underflow", ["--layers", "200", "--width", "2"], {"summary", "graphs", "passed"}, "underflow.png"),
])
def test_experiment_quick_smoke(name, extra, keys, plot, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    rc = main(["experiment", name, "--quick", "--out", str(tmp_path), "--seed", "1", "--no-progress"] + extra)
    out = capsys.readouterr().out
    assert rc == 0, out
    res = json.loads((tmp_path / "results.json").read_text())
    assert keys <= set(res) and res["passed"] is True and res["experiment"] == name
    assert res["config"]["seed"] == 1 and res["config"]["quick"] is True
    assert res["files"] == {"json": "results.json", "plot": plot}
    png = tmp_path / plot
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "PASS" in out and f"{name}: wrote results.json, {plot}" in out


def test_experiment_failed_check_exits_1(tmp_path, monkeypatch, capsys):
    from graphengine.experiments import equal_weights

    monkeypatch.setattr(equal_weights, "count_paths", lambda widths, skips=(): 7)   # a wrong oracle
    rc = main(["experiment", "synthetic-equal-weights", "--quick", "--out", str(tmp_path), "--no-progress"])
    assert rc == 1 and "FAIL" in capsys.readouterr().out
    assert json.loads((tmp_path / "results.json").read_text())["passed"] is False


@pytest.mark.parametrize("args,match", [
    (["synthetic-scaling", "--semirings", "nope"], "unknown nope"),
    (["synthetic-planted-path", "--trials", "0"], "--trials must be >= 1"),
    (["synthetic-underflow", "--layers", "0"], "must be >= 1"),
    (["synthetic-underflow", "--retrain"], "unrecognized arguments: --retrain"),
    (["synthetic-equal-weights", "--seed", "-1"], "--seed must be >= 0"),
])
def test_experiment_bad_arguments_are_one_line(args, match, tmp_path, capsys):
    assert main(["experiment", *args, "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphengine: error:") and err.count("\n") == 1 and match in err


def test_analysis_doctests():
    import doctest

    from graphengine.analysis import entropy, numerics
    from graphengine.models import synthetic
    for mod in (entropy, numerics, synthetic):
        res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert res.failed == 0 and res.attempted > 0, mod.__name__
