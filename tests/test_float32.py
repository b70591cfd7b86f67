"""float32 values for the linear semirings (``real:float32``, ``absolute:float32``,
``entropy:float32``, ``count:float32``): dtype end to end on every device, the rounding-error
bound of docs/method.md ("Value dtype") checked against brute-force path sums (tests/oracle.py),
parity with torch.autograd in float32, NaN, the memory estimate, the spec and the CLI.
"""

import math

import networkx as nx
import numpy as np
import pytest

from graphengine.engine import backward, forward, select
from graphengine.engine.budget import per_element
from graphengine.ir import Graph
from graphengine.kernels import cuda as cuda_backend
from graphengine.kernels.dispatch import kernels_for_all
from graphengine.semirings import get_semiring

from oracle import scalar_graph

LINEAR = ["real", "absolute", "entropy", "count"]
U32, U64 = 2.0 ** -24, 2.0 ** -53


def gamma(m, u):
    return m * u / (1 - m * u)


def program(rng, width=8, rows=3, depth=6):
    """A random float64 program of the ops whose Jacobians are explicit weights (no factored dense
    block): linear, elementwise, products of two activations, broadcast sums, gathers with
    repeated indices."""
    g = Graph()
    x = g.input("x", (rows, width))
    feeds = {"x": rng.normal(size=(rows, width))}
    h = x
    pool = [x]
    for i in range(depth):
        kind = ["linear", "unary", "binary", "reduce", "gather", "linear"][i % 6] if i else "linear"
        if kind == "linear":
            w = g.parameter(f"w{i}", rng.normal(size=(width, width)) / math.sqrt(width))
            h = g.call("linear", h, w, g.parameter(f"b{i}", rng.normal(size=width)))
        elif kind == "unary":
            h = g.call(str(rng.choice(["tanh", "sigmoid", "gelu"])), h)
        elif kind == "binary":
            h = g.call(str(rng.choice(["mul", "add"])), h, pool[int(rng.integers(len(pool)))])
        elif kind == "reduce":
            h = g.call("add", h, g.call("expand", g.call("sum", h, axes=[1], keepdim=True), shape=[rows, width]))
        else:
            h = g.call("index_select", h, g.constant(rng.integers(0, rows, size=rows)), dim=0)
        pool.append(h)
    g.mark_output(h)
    return g, feeds, h.name


def bound_terms(g, acts, qoi_node, qoi_index):
    """Per scalar vertex, from the explicit scalar graph only: ``m`` (roundings a path sum can
    meet: each vertex adds its out-degree, the terms summed into it, plus two per edge: the
    product and the weight's rounding to float32), ``Z`` = Σ_paths Π|w| and ``Rt`` = Σ_paths
    Π|w|·Σ_e (|log|w_e|| + 1), the scale of the entropy semiring's R."""
    sg = scalar_graph(g, acts)
    sink = (qoi_node, int(np.ravel_multi_index(qoi_index, g.nodes[qoi_node].shape)))
    m, Z, Rt = {sink: 0}, {sink: 1.0}, {sink: 0.0}
    for x in reversed(list(nx.topological_sort(sg))):
        outs = [(v, abs(d["weight"])) for _, v, d in sg.out_edges(x, data=True) if v in Z]
        if not outs:
            continue
        logs = [(abs(math.log(w)) + 1.0) if w > 0 else 0.0 for _, w in outs]
        Z[x] = sum(w * Z[v] for v, w in outs)
        Rt[x] = sum(w * Rt[v] + Z[v] * w * lg for (v, w), lg in zip(outs, logs))
        m[x] = len(outs) + 2 + max(m[v] for v, _ in outs)
    return m, Z, Rt


def per_element_bound(g, nid, terms, slack=0):
    """(γ_m(float32) + γ_m(float64))·scale per element of node ``nid`` (0 where no path)."""
    m, Z, Rt = terms
    out_z, out_r = np.zeros(g.nodes[nid].size), np.zeros(g.nodes[nid].size)
    for e in range(g.nodes[nid].size):
        if (nid, e) in m:
            k = m[(nid, e)] + slack
            c = gamma(k, U32) + gamma(k, U64)
            out_z[e], out_r[e] = c * Z[(nid, e)], c * Rt[(nid, e)]
    return out_z.reshape(g.nodes[nid].shape), out_r.reshape(g.nodes[nid].shape)


@pytest.mark.parametrize("device", ["reference", "cpu"])
@pytest.mark.parametrize("seed", range(3))
def test_float32_error_within_the_documented_bound(seed, device):
    rng = np.random.default_rng(seed)
    g, feeds, out = program(rng)
    acts = forward(g, feeds)
    index = (int(rng.integers(3)), int(rng.integers(8)))
    qoi = select(out, index)
    names = LINEAR + [f"{s}:float32" for s in LINEAR]
    with kernels_for_all():
        res = backward(g, acts, qoi, semirings=names, retain="all", prune=False, device=device)
    terms = bound_terms(g, acts, g.node(out).id, index)
    worst = 0.0
    for nid in res.retained("real"):
        bz, br = per_element_bound(g, nid, terms)
        bz8, br8 = per_element_bound(g, nid, terms, slack=8)  # entropy's lift: a log, rounded
        for s, bounds in (("real", (bz,)), ("absolute", (bz,)), ("entropy", (bz, br8))):
            for c64, c32, b in zip(res.raw(nid, s), res.raw(nid, s + ":float32"), bounds):
                assert c32.dtype == np.float32 and c64.dtype == np.float64, (s, c32.dtype, c64.dtype)
                err = np.abs(c32.astype(np.float64) - c64)
                assert np.all(err <= b), f"{s} at {g.nodes[nid].name}: error {err.max():.3g} over the bound"
                worst = max(worst, float(np.max(err / np.where(b > 0, b, np.inf))))
        for c64, c32 in zip(res.raw(nid, "count"), res.raw(nid, "count:float32")):
            np.testing.assert_array_equal(c32, c64)  # small integers: exact in float32
    assert worst > 0  # float32 rounding is visible: the values were not computed in float64


def tiny_bert_checkpoint(tmp_path):
    import hf_tiny as H
    return H.write_family("bert", tmp_path)


def test_tiny_bert_float32_as_accurate_as_torch_float32(tmp_path):
    """All parameter gradients of an exported float32 BERT: graphengine's float32 values against
    torch.autograd in float32, both measured against torch in float64 on the same weights."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import hf_tiny as H
    from graphengine.frontends.hf import from_hf_dir

    path = tiny_bert_checkpoint(tmp_path)
    g, feeds, _ = from_hf_dir(path, text="the cat <mask> on the table", head="mlm", target="sat", foil="is")
    from graphengine.engine import parse
    qoi = parse(g.meta["qoi"])
    acts = forward(g, feeds)
    params = [p for p in g.parameters()]
    res = backward(g, acts, qoi, semirings=["real", "real:float32"], retain=[p.name for p in params])
    ids = torch.from_numpy(feeds["input_ids"])
    grads = {}
    for dtype in (torch.float32, torch.float64):
        model = H.reference(path, "mlm", dtype)
        logits = model(ids).logits
        (logits[qoi.terms[0][0]] - logits[qoi.terms[1][0]]).backward()
        prefix = model.base_model_prefix + "."
        named = dict(model.named_parameters())
        grads[dtype] = {p.name: named.get(p.name, named.get(prefix + p.name)).grad for p in params}
    mine32, mine64, theirs32, exact = [], [], [], []
    for p in params:
        t64 = grads[torch.float64][p.name]
        if t64 is None:
            continue
        exact.append(t64.numpy().ravel())
        theirs32.append(grads[torch.float32][p.name].numpy().astype(np.float64).ravel())
        got32 = res.get(p.name, "real:float32")
        assert got32.dtype == np.float32
        mine32.append(got32.astype(np.float64).ravel())
        mine64.append(res.grad(p.name).ravel())
    exact, theirs32, mine32, mine64 = map(np.concatenate, (exact, theirs32, mine32, mine64))
    assert len(exact) > 1000
    scale = np.max(np.abs(exact))
    err_theirs = np.max(np.abs(theirs32 - exact))
    err_mine = np.max(np.abs(mine32 - exact))
    # both float32 errors are rounding noise against the scale of the whole result...
    assert err_theirs <= 1e-5 * scale and err_mine <= 1e-5 * scale, (err_mine / scale, err_theirs / scale)
    # ...of the same order (graphengine's float32 values do not lose accuracy beyond torch's)
    assert err_mine <= 4 * err_theirs, (err_mine, err_theirs)
    # the float32 forward dominates both; the float32 values' own share is rounding noise too
    print(f"\nerrors / scale: graphengine float32 {err_mine / scale:.2e}, torch float32 {err_theirs / scale:.2e}, "
          f"float32 vs float64 values {np.max(np.abs(mine32 - mine64)) / scale:.2e}")
    assert 0 < np.max(np.abs(mine32 - mine64)) <= 1e-5 * scale


def test_nan_in_gives_nan_out_in_float32():
    g = Graph()
    x = g.input("x", (2, 3))
    w = g.parameter("w", np.array([[1.0, np.nan, 2.0], [0.5, 1.0, -1.0]]))
    y = g.call("matmul", x, g.call("transpose", w, dim0=0, dim1=1), name="y")
    acts = forward(g, {"x": np.ones((2, 3))})
    for device in ("reference", "cpu"):
        res = backward(g, acts, select("y", (0, 1)), semirings=LINEAR + [f"{s}:float32" for s in LINEAR],
                       retain=["x", "w"], device=device)
        for s in ("real", "absolute", "entropy"):
            for node in ("x", "w"):
                for c64, c32 in zip(res.raw(node, s), res.raw(node, s + ":float32")):
                    assert c32.dtype == np.float32
                    np.testing.assert_array_equal(np.isnan(c32), np.isnan(c64))
        assert np.isnan(res.get("x", "real:float32")[0, 1])


@pytest.mark.skipif(not cuda_backend.available(), reason="numba.cuda simulator not available")
def test_float32_on_cuda_matches_the_reference():
    from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights
    cfg = BertConfig.mini()
    g = build_bert(cfg, random_bert_weights(cfg, seed=3), batch=1, seq_len=3, head="mlm", attention_mask=True)
    acts = forward(g, bert_feeds(np.array([[2, 5, 7]]), attention_mask=np.array([[1, 1, 0]])))
    retain = ["embeddings.word", "embeddings.output", "encoder.layer.0.attention.self.probs"]
    names = [f"{s}:float32" for s in ("real", "absolute", "entropy")]
    ref = backward(g, acts, "logits[0,1,4] - logits[0,1,3]", semirings=names + ["real"], retain=retain,
                   device="reference")
    got = backward(g, acts, "logits[0,1,4] - logits[0,1,3]", semirings=names, retain=retain, device="cuda")
    for s in names:
        assert got.retained(s) == ref.retained(s)
        for nid in ref.retained(s):
            for want, have in zip(ref.raw(nid, s), got.raw(nid, s)):
                assert have.dtype == np.float32
                scale = float(np.max(np.abs(want)))  # summation order differs: float32 noise of the scale
                np.testing.assert_allclose(have, want, rtol=0, atol=1e-5 * scale, err_msg=f"{s} {g.nodes[nid].name}")
    want64 = ref.raw("embeddings.word", "real")[0]
    have32 = got.raw("embeddings.word", "real:float32")[0]
    assert np.max(np.abs(have32 - want64)) <= 1e-5 * np.max(np.abs(want64))


def test_float64_default_and_values_unchanged_by_the_option():
    g = Graph()
    x = g.input("x", (2, 4))
    w = g.parameter("w", np.random.default_rng(0).normal(size=(3, 4)))
    g.call("tanh", g.call("linear", x, w, g.parameter("b", np.zeros(3))), name="y")
    acts = forward(g, {"x": np.random.default_rng(1).normal(size=(2, 4))})
    a = backward(g, acts, select("y", (1, 2)), semirings=["real", "entropy"], retain="all")
    b = backward(g, acts, select("y", (1, 2)), semirings=["real:float64", "entropy:float64"], retain="all")
    for s in ("real", "entropy"):
        assert get_semiring(s).dtype is np.float64
        for nid in a.retained(s):
            for p, q in zip(a.raw(nid, s), b.raw(nid, s)):
                assert p.dtype == np.float64
                np.testing.assert_array_equal(p, q)


def test_spec_names_errors_and_memory_estimate():
    r32 = get_semiring("real:float32")
    assert r32.name == "real:float32" and r32.dtype is np.float32 and r32.kernel == "real"
    assert get_semiring("entropy:float64").name == "entropy"
    assert per_element(r32)["value"] == 4 and per_element(get_semiring("real"))["value"] == 8
    assert per_element(get_semiring("entropy:float32"))["working"] == 3 * 2 * 4
    for bad, msg in (("max:float32", "holds its values in float64, not float32"),
                     ("kbest:3:float32", "expected kbest:K"), ("real:float16", "unknown semiring")):
        with pytest.raises(ValueError, match=msg):
            get_semiring(bad)


def test_cli_analyze_accepts_float32_specs(tmp_path, capsys):
    import graphengine as ge
    from graphengine.cli import main

    g = ge.Graph()
    x = g.input("x", (1, 2))
    h = g.call("linear", x, g.parameter("W", np.array([[1.0, 1.0], [2.0, -3.0]])), name="h")
    g.call("linear", h, g.parameter("V", np.array([[1.0, 1.0]])), name="q")
    path = str(tmp_path / "g.ge")
    ge.save(g, path)
    out = tmp_path / "r.json"
    assert main(["analyze", path, "--qoi", "q[0,0]", "--input", "x=[[1, 1]]",
                 "--semiring", "real:float32,entropy:float32,max,entropy", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "real:float32" in text and "entropy:float32" in text
    import json
    doc = json.loads(out.read_text())["nodes"]["x"]
    assert doc["real:float32"]["grad"]["max"] == 3.0      # 1·1 + 2·1 at x0: exact in float32 too
    h32, h64 = doc["entropy:float32"]["entropy"]["max"], doc["entropy"]["entropy"]["max"]
    assert h32 != h64 and abs(h32 - h64) <= 1e-6 * abs(h64)
    rc = main(["analyze", path, "--qoi", "q[0,0]", "--input", "x=[[1, 1]]", "--semiring", "max:float32"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("graphengine: error: --semiring:") and "float64, not float32" in err
    assert err.count("\n") == 1


def test_dataset_runs_refuse_float32_specs(tmp_path):
    from graphengine.runner.run import RunOptionsError, run_dataset
    msg = "real:float32: dataset runs hold semiring values in float64; give 'real'"
    with pytest.raises(RunOptionsError, match=msg):
        run_dataset(str(tmp_path / "model"), str(tmp_path / "data.jsonl"), str(tmp_path / "out"),
                    target="label", semirings=["real:float32", "max"])


def test_float32_underflow_is_reported_where_float64_still_holds_the_value():
    from graphengine.analysis.numerics import underflow_report
    g = Graph()
    h = x = g.input("x", (1, 1))
    for k in range(30):  # one path of weight 1e-60: below float32's 1.4e-45, far above float64's range end
        h = g.call("linear", h, g.parameter(f"W{k}", np.full((1, 1), 0.01)), name=f"h{k}")
    r = backward(g, forward(g, {"x": np.ones((1, 1))}), select("h29", (0, 0)),
                 semirings=["real", "real:float32", "absolute:float32", "log"])
    assert r.get("x", "real:float32")[0, 0] == 0 and r.get("x", "real")[0, 0] > 0
    rep = underflow_report(r, "x")
    assert rep["real:float32"]["underflow"] == 1 and rep["absolute:float32"]["underflow"] == 1
    assert not rep["real"]["degenerate"] and not rep["log"]["degenerate"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_scan_is_exact_on_large_arrays(dtype):
    from graphengine.engine.nan_paths import has_nan
    a = (np.random.default_rng(0).normal(size=(200, 300)) * 1e30).astype(dtype)  # squares overflow: no NaN
    a[17, 3], a[5, 5] = np.inf, -np.inf
    assert not has_nan(a) and not has_nan(a[:, ::2])
    for pos in [(0, 0), (199, 299), (100, 7)]:
        b = a.copy()
        b[pos] = np.nan
        assert has_nan(b) and has_nan(b[::-1])
    assert not has_nan(np.arange(10, dtype=np.int64))
