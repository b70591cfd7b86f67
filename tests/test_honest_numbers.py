"""Issue 15's "silently wrong numbers" and "unbounded resources": each case is a one-line error
or an honest NaN (never 0, never a finite winner), in the library and in the CLI (exit 2)."""

import json
import math
import warnings

import numpy as np
import pytest

import graphengine as ge
from graphengine.analysis.report import analyze
from graphengine.cli.main import main
from graphengine.engine import backward, forward, select
from graphengine.errors import FeedError, GraphValidationError, ResourceLimitError
from graphengine.io import LIMITS, limits
from graphengine.paths import best_input_path, k_best_paths, top_path
from graphengine.semirings import get_semiring

from oracle import enumerate_paths, scalar_graph

WEIGHTED = ["real", "absolute", "log", "max", "maxabs", "maxplus", "entropy", "logentropy", "kbest:2",
            "kbestabs:2"]


def cli(capsys, *args):
    """Run the command with --quiet: graphengine's own notices (kernel compilation, progress)
    are off, so whatever reaches stderr is an error line or a leaked warning."""
    rc = main(["--quiet"] + [str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(capsys, *args, match):
    rc, out, err = cli(capsys, *args)
    assert rc == 2, (rc, out, err)
    assert err.startswith("graphengine: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in out + err
    assert match in err, err
    return err


def neg_log():
    """z = −log(x): at x = [0, 1] the path from x[0] to z[0] has weight −1/0 · ... = −inf."""
    g = ge.Graph()
    x = g.input("x", (2,))
    z = g.call("neg", g.call("log", x, name="l"), name="z")
    g.mark_output(z)
    return g


def softmax3():
    g = ge.Graph()
    g.mark_output(g.call("softmax", g.input("x", (3,)), name="p", axis=-1))
    return g


def mlp():
    g = ge.Graph()
    x = g.input("x", (1, 3))
    h = g.call("linear", x, g.parameter("W1", np.arange(12.0).reshape(4, 3) / 10 - 0.5), name="h")
    r = g.call("relu", h, name="r")
    g.mark_output(g.call("linear", r, g.parameter("W2", np.linspace(-1, 1, 8).reshape(2, 4)), name="y"))
    return g


# ------------------------------------------------------------------ NaN in, NaN out
@pytest.mark.parametrize("eps", [math.nan, -1.0, 0.0, math.inf])
def test_layer_norm_eps_must_be_finite_and_positive(eps):
    g = ge.Graph()
    x = g.input("x", (2, 3))
    with pytest.raises(GraphValidationError, match="attribute 'eps' of op 'layer_norm' must be"):
        g.call("layer_norm", x, normalized_shape=[3], eps=eps)


def test_layer_norm_eps_nan_in_a_file_is_one_line(tmp_path, capsys):
    g = ge.Graph()
    g.mark_output(g.call("layer_norm", g.input("x", (2, 3)), name="ln", normalized_shape=[3]))
    path = tmp_path / "ln.ge"
    ge.save(g, path)
    import zipfile
    with zipfile.ZipFile(path) as z:
        doc = json.loads(z.read("graph.json"))
        arrays = z.read("arrays.npz")
    for node in doc["nodes"]:
        if node["op"] == "layer_norm":
            node["attrs"]["eps"] = float("nan")
    bad = tmp_path / "bad.ge"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("graph.json", json.dumps(doc))   # json writes NaN, as the file had
        z.writestr("arrays.npz", arrays)
    assert_one_line_error(capsys, "analyze", bad, "--qoi", "ln[0,0]", "--input", "x=[[1,2,3],[4,5,6]]",
                          match="must be a finite number")


def test_entropy_of_nan_is_nan_never_zero():
    for name in ("entropy", "logentropy"):
        s = get_semiring(name)
        nan = s.lift(np.array([np.nan, 0.5]))
        h = s.finalize(nan)["entropy"]
        assert np.isnan(h[0]) and h[1] == 0.0


@pytest.mark.parametrize("device", ["reference", "cpu"])
def test_softmax_of_minus_inf_gives_nan_entropy(device):
    g = softmax3()
    acts = forward(g, {"x": np.array([-1e400] * 3)})
    assert np.isnan(acts[g.node("p").id]).all()
    r = backward(g, acts, select("p", (0,)), semirings=["entropy", "logentropy", "real", "max", "kbest:2"],
                 device=device)
    for s in ("entropy", "logentropy"):
        comps = r.components("x", s)
        assert np.isnan(comps["entropy"]).all(), (s, comps)
    assert np.isnan(r.components("x", "logentropy")["log_Z"]).all()   # not -inf
    assert np.isnan(r.get("x", "real")).all()
    assert all(np.isnan(c).all() for c in r.raw("x", "max"))
    assert all(np.isnan(c).all() for c in r.raw("x", "kbest:2"))
    rep = analyze(g, acts, select("p", (0,)), ["entropy", "max"])
    assert math.isnan(rep["nodes"]["x"]["entropy"]["whole_node_entropy"])
    assert rep["paths"]["max"] == [] and "NaN" in rep["path_notes"]["max"]


@pytest.mark.parametrize("device", ["reference", "cpu"])
def test_nan_input_gives_nan_in_every_weighted_semiring_and_no_finite_top_path(device):
    g = mlp()
    acts = forward(g, {"x": np.array([[np.nan, 1.0, 2.0]])})
    r = backward(g, acts, select("y", (0, 0)), semirings=WEIGHTED + ["count", "bool"], device=device)
    for s in WEIGHTED:
        for c in r.raw("x", s):
            assert np.isnan(c).all(), (s, c)
    # structural semirings count edges whatever their weights: 4 hidden units, one path each
    assert r.get("x", "count").tolist() == [[4.0, 4.0, 4.0]]
    with pytest.raises(ValueError, match="NaN"):
        best_input_path(r, "max")
    with pytest.raises(ValueError, match="NaN"):
        top_path(r, "x", (0, 1), "max")
    with pytest.raises(ValueError, match="NaN"):
        k_best_paths(r, "x", (0, 1), "kbest:2")


def test_nan_elsewhere_leaves_clean_elements_exact():
    """Only elements with a path through NaN become NaN: y[0,0] depends on x[0,0] only here."""
    g = ge.Graph()
    x = g.input("x", (1, 2))
    y = g.call("mul", x, g.constant(np.array([[2.0, 3.0]])), name="y")
    g.mark_output(y)
    acts = forward(g, {"x": np.array([[1.0, np.nan]])})
    r = backward(g, acts, select("y", (0, 0)), semirings=["real", "max", "entropy"])
    assert r.get("x", "real").tolist() == [[2.0, 0.0]]
    assert r.raw("x", "max")[0].tolist() == [[2.0, -np.inf]]
    r = backward(g, acts, select("y", (0, 1)), semirings=["real", "max"])
    assert np.isnan(r.get("x", "real")[0, 1]) and r.get("x", "real")[0, 0] == 0.0


# ------------------------------------------------------------------ -inf-weight paths are paths
@pytest.mark.parametrize("device", ["reference", "cpu"])
def test_minus_inf_weight_path_is_a_path(device):
    g = neg_log()
    acts = forward(g, {"x": np.array([0.0, 1.0])})
    r = backward(g, acts, select("z", (0,)), semirings=["max", "maxplus", "real"], device=device)
    # oracle: enumerate the paths of the explicit scalar graph
    with np.errstate(all="ignore"):   # the oracle evaluates 1/x at 0 itself
        memo = enumerate_paths(scalar_graph(g, acts), {(g.node("z").id, 0): 1.0})
    weights = [p for p, _ in memo[(g.node("x").id, 0)]]
    assert weights == [-math.inf]
    assert r.raw("x", "max")[0][0] == -math.inf and r.raw("x", "max")[1][0] == -math.inf
    assert r.raw("x", "max")[0][1] == -math.inf and r.raw("x", "max")[1][1] == math.inf   # no path
    p = top_path(r, "x", (0,), "max")
    assert [s.name for s in p.steps] == ["x", "l", "z"] and p.weight == -math.inf and p.value == -math.inf
    with pytest.raises(ValueError, match="no path"):
        top_path(r, "x", (1,), "max")
    q = best_input_path(r, "maxplus")
    assert q.value == math.inf and math.log(abs(q.weight)) == q.value
    rep = analyze(g, acts, select("z", (0,)), ["max", "maxplus"])
    assert rep["paths"]["max"][0]["weight"] == -math.inf
    assert rep["paths"]["maxplus"][0]["value"] == math.inf


def test_infinite_paths_through_a_contraction_agree_on_every_device():
    """z = −log(W x) with (W x)[0] = 0: x[0] has a path of weight −∞, x[1] one of +∞; the
    contraction W must carry the ⟨−∞, −∞⟩ adjoint of h[0] (a path, not 0̄)."""
    g = ge.Graph()
    x = g.input("x", (1, 2))
    h = g.call("linear", x, g.parameter("W", np.array([[1.0, -1.0], [1.0, 1.0]])), name="h")
    g.mark_output(g.call("neg", g.call("log", h, name="l"), name="z"))
    acts = forward(g, {"x": np.ones((1, 2))})
    from graphengine.kernels import cuda as cuda_backend
    values = {}
    for device in ("reference", "cpu") + (("cuda",) if cuda_backend.available() else ()):
        r = backward(g, acts, select("z", (0, 0)), semirings=["max"], device=device)
        values[device] = [c.tolist() for c in r.raw("x", "max")]
        assert top_path(r, "x", (0, 0), "max").weight == -math.inf
        assert top_path(r, "x", (0, 1), "max").weight == math.inf
    assert all(v == [[[-math.inf, math.inf]], [[-math.inf, math.inf]]] for v in values.values()), values
    assert len(values) >= 2


def test_minus_inf_path_cli_prints_path_and_value(tmp_path, capsys):
    path = tmp_path / "neglog.ge"
    ge.save(neg_log(), path)
    rc, out, err = cli(capsys, "analyze", path, "--qoi", "z[0]", "--input", "x=[0, 1]", "--semiring",
                       "max,maxplus", "-o", tmp_path / "a.json")
    assert rc == 0 and err == "", err
    assert "no path from the chosen start nodes" not in out
    assert "max top path (max), weight -inf, value -inf:" in out
    assert "maxplus top path (max_log_abs), weight -inf, value inf = log|weight|:" in out
    report = json.loads((tmp_path / "a.json").read_text())
    origins = [n["name"] for n in report["numerics"]["forward"]["nodes"] if n["origin"]]
    assert origins == ["l"]


def test_path_value_agrees_with_its_weight_on_an_mlp():
    g = mlp()
    acts = forward(g, {"x": np.array([[0.3, -1.0, 2.0]])})
    names = ["max", "maxabs", "maxplus", "kbest:3", "kbestabs:2"]
    r = backward(g, acts, select("y", (0, 1)), semirings=names)
    memo = enumerate_paths(scalar_graph(g, acts), {(g.node("y").id, 1): 1.0})
    for s in names:
        sr = get_semiring(s)
        for comp in range(getattr(sr, "k", 1)):
            p = top_path(r, "x", (0, 2), s, component=comp)
            assert p.value == pytest.approx(float(sr.lift(np.array(p.weight))[0]), rel=1e-12), (s, comp)
    products = sorted(q for q, _ in memo[(g.node("x").id, 2)])
    assert top_path(r, "x", (0, 2), "max").value == pytest.approx(products[-1], rel=1e-12)


# ------------------------------------------------------------------ numerics report, no warnings
def test_no_numpy_warnings_and_a_numerics_report():
    g = neg_log()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        acts = forward(g, {"x": np.array([0.0, -1.0])})
        rep = analyze(g, acts, select("z", (0,)), ["max", "entropy", "absolute", "log"])
    rows = {n["name"]: n for n in rep["numerics"]["forward"]["nodes"]}
    assert rows["l"]["origin"] and rows["l"]["nan"] == 1 and rows["l"]["inf"] == 1
    assert not rows["z"]["origin"]


def test_cli_analyze_prints_numerics_and_no_warnings(tmp_path, capsys):
    path = tmp_path / "s.ge"
    ge.save(softmax3(), path)
    rc, out, err = cli(capsys, "analyze", path, "--qoi", "p[0]", "--input", "x=[-1e400, -1e400, -1e400]",
                       "--semiring", "max,entropy")
    assert rc == 0 and err == "", err
    assert "QoI p[0] = nan" in out
    assert "whole-node entropy nan" in out and "whole-node entropy 0" not in out
    assert "numerics:" in out and "p (softmax: 3 NaN, 0 inf of 3)" in out
    assert "max: no best path in max" in out


def test_underflow_is_reported_by_analyze():
    g = ge.Graph()
    h = g.input("x", (1, 1))
    for k in range(200):
        h = g.call("linear", h, g.parameter(f"W{k}", np.full((1, 1), 0.01)), name=f"h{k}")
    rep = analyze(g, forward(g, {"x": np.ones((1, 1))}), select("h199", (0, 0)), ["absolute", "log"], nodes=["x"])
    assert [r["name"] for r in rep["numerics"]["underflow"]["absolute"]] == ["x"]
    assert "log" not in rep["numerics"]["underflow"]


# ------------------------------------------------------------------ masks are bool
@pytest.mark.parametrize("value", [np.array([1, 0]), np.array([1.0, 0.0]), np.array([np.nan, 1.0])])
def test_mask_must_be_bool(value):
    g = ge.Graph()
    m = g.input("mask", (2,), dtype="bool")
    g.mark_output(g.call("where", m, g.input("x", (2,)), g.constant(np.zeros(2)), name="y"))
    with pytest.raises(FeedError, match="feed 'mask' must be booleans"):
        forward(g, {"mask": value, "x": np.ones(2)})
    assert forward(g, {"mask": np.array([True, False]), "x": np.ones(2)})[g.node("y").id].tolist() == [1.0, 0.0]


def test_mask_must_be_bool_cli(tmp_path, capsys):
    g = ge.Graph()
    m = g.input("mask", (2,), dtype="bool")
    g.mark_output(g.call("where", m, g.input("x", (2,)), g.constant(np.zeros(2)), name="y"))
    path = tmp_path / "m.ge"
    ge.save(g, path)
    assert_one_line_error(capsys, "run", path, "--input", "mask=[1, 0]", "--input", "x=[1, 2]",
                          match="feed 'mask' must be booleans")


# ------------------------------------------------------------------ unbounded resources
def test_kbest_k_is_capped():
    assert LIMITS.max_k == 4096
    for spec in ("kbest:1000000000", "kbestabs:100000"):
        with pytest.raises(ResourceLimitError, match=r"over the limit of 4,096 \(graphengine.io.LIMITS.max_k\)"):
            get_semiring(spec)
    with limits(max_k=100_000):
        assert get_semiring("kbest:100000").k == 100_000


def test_kbest_memory_estimated_before_allocating():
    g = mlp()
    acts = forward(g, {"x": np.ones((1, 3))})
    with limits(max_k=10**6):
        with pytest.raises(ResourceLimitError, match=r"backward in kbest:1000000 \(K = 1,000,000: 2,000,000 values "
                                                      r"per element\) needs an estimated .* over the memory budget"):
            backward(g, acts, select("y", (0, 0)), semirings=["kbest:1000000"])


def test_cli_refuses_huge_k_at_once(tmp_path, capsys):
    path = tmp_path / "mlp.ge"
    ge.save(mlp(), path)
    err = assert_one_line_error(capsys, "analyze", path, "--qoi", "y[0,0]", "--input", "x=[[1, 2, 3]]",
                                "--semiring", "kbest:1000000000", match="K = 1,000,000,000")
    assert "estimated" in err and "LIMITS.max_k" in err


def test_forward_checks_declared_shapes_against_the_budget():
    g = ge.Graph()
    x = g.input("x", (10**12, 4))
    g.mark_output(g.call("exp", x, name="y"))
    with pytest.raises(ResourceLimitError, match=r"declares \[1000000000000, 4\] float64 \(29.1 TiB\), over the "
                                                  r"memory budget"):
        forward(g, {"x": np.zeros((1, 4))})


def test_backward_checks_its_estimate_against_the_budget():
    g = mlp()
    acts = forward(g, {"x": np.ones((1, 3))})
    with limits(memory_budget=1000):
        with pytest.raises(ResourceLimitError, match="backward in real, max needs an estimated"):
            backward(g, acts, select("y", (0, 0)), semirings=["real", "max"])
    backward(g, acts, select("y", (0, 0)), semirings=["real", "max"])


def test_cli_refuses_over_budget_graphs_and_passes(tmp_path, capsys):
    g = ge.Graph()
    g.mark_output(g.call("exp", g.input("x", (10**12, 4)), name="y"))
    big = tmp_path / "big.ge"
    ge.save(g, big)
    for command in ("grad", "analyze"):
        assert_one_line_error(capsys, command, big, "--qoi", "y[0,0]", "--input", "x=[[1, 2, 3, 4]]",
                              match="29.1 TiB), over the memory budget")
    path = tmp_path / "mlp.ge"
    ge.save(mlp(), path)
    with limits(memory_budget=2000):
        assert_one_line_error(capsys, "analyze", path, "--qoi", "y[0,0]", "--input", "x=[[1, 2, 3]]",
                              "--semiring", "max,kbest:4", match="backward in max, kbest:4 (K = 4: 8 values per element)")
