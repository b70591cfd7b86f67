"""Decomposition policies (graphengine.ir.passes.decompose): the expansions compute the same
values and the same gradient as the fused ops; max paths and entropy differ between policies;
under every policy the engine is exact against brute-force path enumeration (tests/oracle.py)."""

import numpy as np
import pytest

from graphengine.engine import backward, forward, select, weighted
from graphengine.errors import GraphEngineError
from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights
from graphengine.ir import Graph
from graphengine.ir.passes import POLICIES, decompose, prune

from oracle import enumerate_paths, scalar_graph, statistics
from test_oracle import check_program

FUSED = {"softmax", "log_softmax", "layer_norm", "gelu"}


def block_graph(rows=2, cols=3, seed=0):
    """Every fused op once (both GELU variants, layer norm with and without affine), chained."""
    rng = np.random.default_rng(seed)
    g = Graph(meta={"model": "block"})
    x = g.input("x", (rows, cols))
    h = g.call("layer_norm", x, g.parameter("ln.weight", 1 + 0.3 * rng.normal(size=cols), scope="ln"),
               g.parameter("ln.bias", 0.3 * rng.normal(size=cols), scope="ln"), name="ln", scope="ln",
               normalized_shape=[cols], eps=1e-5)
    h = g.call("linear", h, g.parameter("fc.weight", rng.normal(size=(cols, cols)), scope="fc"), name="fc", scope="fc")
    h = g.call("gelu", h, name="act", scope="act")
    p = g.call("softmax", h, name="attn.probs", scope="attn", axis=0)
    h = g.call("mul", p, g.call("gelu", h, name="act2", scope="act2", approximate="tanh"), name="mix")
    h = g.call("layer_norm", h, name="ln2", scope="ln2", normalized_shape=[cols], eps=1e-3)
    h = g.call("mean", h, name="pool", axes=[0], keepdim=True)
    y = g.call("log_softmax", h, name="logp", scope="head", axis=-1)
    g.mark_output(y)
    return g, {"x": rng.normal(size=(rows, cols))}


def tiny_bert(seq=3, hidden=4, heads=2, seed=0):
    cfg = BertConfig(vocab_size=5, hidden_size=hidden, num_layers=1, num_heads=heads, intermediate_size=hidden,
                     max_position=4)
    g = build_bert(cfg, random_bert_weights(cfg, seed=seed, head=None, std=0.5), batch=1, seq_len=seq, head=None)
    return g, bert_feeds(np.array([[1, 3, 2, 4][:seq]]))


def tiny_transformer(T=2, H=2, seed=0):
    """One attention layer small enough to enumerate under every policy: query/key projections,
    softmax attention, residual, layer norm, GELU feed-forward, log-softmax head. (A 1-layer
    BERT of hidden 2 already has ~10^7 paths once its three layer norms are decomposed.)"""
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.input("x", (T, H))

    def P(name, shape):
        return g.parameter(name, rng.normal(scale=0.8, size=shape), scope=name.rsplit(".", 1)[0])

    q = g.call("linear", x, P("attn.query.weight", (H, H)), name="q", scope="attn.query")
    k = g.call("linear", x, P("attn.key.weight", (H, H)), name="k", scope="attn.key")
    s = g.call("matmul", q, g.call("transpose", k, dim0=0, dim1=1, scope="attn"), name="scores", scope="attn")
    p = g.call("softmax", s, name="probs", scope="attn", axis=-1)
    h = g.call("add", x, g.call("matmul", p, x, name="context", scope="attn"), name="residual", scope="attn")
    h = g.call("layer_norm", h, P("ln.weight", (H,)), normalized_shape=[H], name="ln", scope="ln")
    h = g.call("gelu", g.call("linear", h, P("ffn.weight", (H, H)), name="ffn", scope="ffn"), name="act", scope="ffn")
    g.mark_output(g.call("log_softmax", h, name="logp", scope="head", axis=-1))
    return g, {"x": rng.normal(size=(T, H))}


def _rel(a, b, floor=1e-300):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), floor))


# ------------------------------------------------------------------------------ structure
def test_policies_and_meta():
    g, _ = block_graph()
    assert POLICIES == ("fused", "primitive", "paper")
    assert decompose(g, "fused") is g and g.meta["decomposition"] == "fused"
    for policy in ("primitive", "paper"):
        d = decompose(g, policy)
        d.validate()
        assert d.meta["decomposition"] == policy and d.meta["model"] == "block"
        assert not FUSED & set(d.op_histogram())
        assert g.meta["decomposition"] == "fused" and FUSED <= set(g.op_histogram())  # input untouched
        # the fused node's name is kept by the expansion's result; every part has its scope
        assert d["attn.probs"].scope == "attn" and d["logp"].scope == "head" and d["ln"].scope == "ln"
        for n in d.nodes:
            if n.name.startswith("attn.probs."):
                assert n.scope == "attn"
            if n.name.startswith("ln."):
                assert n.scope == "ln"
        assert [d.nodes[o].name for o in d.outputs] == ["logp"]
    assert "mean" in decompose(g, "primitive").op_histogram()
    assert "mean" not in decompose(g, "paper").op_histogram()


def test_exact_expansions():
    def ops(policy, op, **attrs):
        g = Graph()
        x = g.input("x", (2, 4))
        g.mark_output(g.call(op, x, name="y", **attrs))
        return [n.op for n in decompose(g, policy).nodes if n.op not in ("input", "constant")]

    assert ops("primitive", "softmax", axis=-1) == ["amax", "sub", "exp", "sum", "div"]
    assert ops("paper", "softmax", axis=-1) == ["amax", "sub", "exp", "sum", "log", "add", "sub", "exp"]
    assert ops("primitive", "log_softmax", axis=-1) == ["amax", "sub", "exp", "sum", "log", "sub"]
    assert ops("paper", "log_softmax", axis=-1) == ["amax", "sub", "exp", "sum", "log", "add", "sub"]
    assert ops("primitive", "layer_norm", normalized_shape=[4]) == [
        "mean", "sub", "pow", "mean", "add", "rsqrt", "mul", "reshape"]
    assert ops("paper", "layer_norm", normalized_shape=[4]) == [
        "sum", "div", "pow", "sum", "div", "pow", "sub", "sub", "add", "sqrt", "div", "reshape"]
    assert ops("paper", "gelu") == ["mul", "erf", "add", "mul", "mul"]
    assert ops("primitive", "gelu", approximate="tanh") == ["pow", "mul", "add", "mul", "tanh", "add", "mul", "mul"]
    assert ops("paper", "mean", axes=[1]) == ["sum", "div"]
    assert ops("primitive", "rms_norm", normalized_shape=[4]) == ["pow", "mean", "add", "rsqrt", "mul"]
    assert ops("paper", "rms_norm", normalized_shape=[4]) == ["pow", "sum", "div", "add", "rsqrt", "mul"]
    assert ops("primitive", "silu") == ops("paper", "silu") == ["sigmoid", "mul"]


def test_errors():
    g, _ = block_graph()
    with pytest.raises(GraphEngineError, match="unknown decomposition policy"):
        decompose(g, "tiny")
    with pytest.raises(GraphEngineError, match="already decomposed"):
        decompose(decompose(g, "primitive"), "paper")
    d = decompose(g, "paper")
    assert decompose(d, "paper") is d


def test_prune_drops_dead_nodes_and_renames():
    g = Graph()
    x = g.input("x", (2,))
    g.input("unused", (1,))
    g.call("exp", x, name="dead")
    y = g.call("tanh", x, name="t")
    g.mark_output(y)
    h = prune(g, rename={y.id: "x"})  # clashes with the input's name: made unique
    assert [n.name for n in h] == ["x", "unused", "x_1"] and h.outputs == [2]
    assert [n.name for n in prune(g, keep_inputs=False)] == ["x", "t"]


# ------------------------------------------------------------------------------ values
@pytest.mark.parametrize("model", ["block", "bert"])
def test_forward_and_gradient_identical_under_every_policy(model):
    if model == "block":
        g, feeds = block_graph(rows=3, cols=4, seed=1)
        qoi = weighted("logp", np.array([[0.7, -1.2, 0.0, 0.4]]))
    else:
        cfg = BertConfig.mini(num_layers=2)
        g = build_bert(cfg, random_bert_weights(cfg, seed=2, head="mlm", std=0.3), batch=2, seq_len=5,
                       head="mlm", attention_mask=True)
        feeds = bert_feeds(np.array([[2, 5, 3, 1, 7], [4, 4, 9, 0, 2]]),
                           attention_mask=np.array([[1, 1, 1, 0, 1], [1, 1, 1, 1, 1]]))
        qoi = weighted("logits", np.where(np.arange(2 * 5 * 40).reshape(2, 5, 40) % 37 == 3, 1.0, 0.0))
    results = {}
    for policy in POLICIES:
        d = decompose(g, policy)
        acts = forward(d, feeds)
        results[policy] = (acts[d.outputs[0]], backward(d, acts, qoi, retain="all"), d)
    y0, r0, g0 = results["fused"]
    params = [n.name for n in g0.parameters()] + [n.name for n in g0.inputs() if n.dtype == "float64"]
    # Some gradients are exactly 0 in exact arithmetic (a key bias: softmax is shift-invariant),
    # so every program computes them as rounding noise whose size depends on the BLAS summation
    # order of the machine. Rounding error scales with the whole result, not with the entry:
    # each difference is bounded by 1e-10 of its own gradient plus 1e-12 of the largest gradient.
    scale = max(float(np.max(np.abs(r0.grad(name)))) for name in params)
    for policy in ("primitive", "paper"):
        y, r, d = results[policy]
        assert _rel(y, y0) <= 1e-12
        for name in params:
            got, want = r.grad(name), r0.grad(name)
            err = float(np.max(np.abs(got - want)))
            assert err <= 1e-10 * float(np.max(np.abs(want))) + 1e-12 * scale, (policy, name, err, scale)
        # named intermediates (fused nodes' results) keep their gradient too
        for n in g0.nodes:
            if n.op in FUSED and n.id in r0.retained("real"):
                assert _rel(r.grad(n.name), r0.grad(n.name)) <= 1e-9, (policy, n.name)


def test_max_paths_and_entropy_differ_between_policies():
    g, feeds = block_graph(rows=2, cols=3, seed=3)
    stats = {}
    for policy in POLICIES:
        d = decompose(g, policy)
        acts = forward(d, feeds)
        r = backward(d, acts, select("logp", (0, 1)), semirings=["real", "max", "entropy", "count"])
        stats[policy] = {s: np.asarray(r.get("x", s)) for s in ("real", "max", "entropy", "count")}
    for a, b in (("fused", "primitive"), ("fused", "paper"), ("primitive", "paper")):
        assert _rel(stats[a]["real"], stats[b]["real"]) <= 1e-10
        for s in ("max", "entropy", "count"):
            assert not np.allclose(stats[a][s], stats[b][s], rtol=1e-6), (a, b, s)
    # decomposing only adds paths: every fused-graph path becomes one or more primitive paths
    assert np.all(stats["primitive"]["count"] > stats["fused"]["count"])
    assert np.all(stats["paper"]["count"] > stats["fused"]["count"])


def test_max_paths_and_entropy_differ_on_a_tiny_bert():
    g, feeds = tiny_bert()
    table = "embeddings.word_embeddings.weight"
    stats = {}
    for policy in POLICIES:
        d = decompose(g, policy)
        acts = forward(d, feeds)
        r = backward(d, acts, select("last_hidden_state", (0, 2, 1)), semirings=["real", "max", "entropy"])
        stats[policy] = {s: np.asarray(r.get(table, s)) for s in ("real", "max", "entropy")}
    rows = [1, 3, 2]  # the table rows the sentence uses
    for a, b in (("fused", "primitive"), ("fused", "paper"), ("primitive", "paper")):
        np.testing.assert_allclose(stats[a]["real"], stats[b]["real"], rtol=1e-9, atol=1e-12)
        for s in ("max", "entropy"):
            assert not np.allclose(stats[a][s][rows], stats[b][s][rows], rtol=1e-6), (a, b, s)


# ------------------------------------------------------------------------------ oracle
OP_PROGRAMS = [
    ("softmax", {"axis": -1}, 0), ("log_softmax", {"axis": 0}, 0), ("layer_norm", {"normalized_shape": [3]}, 2),
    ("layer_norm", {"normalized_shape": [3], "eps": 0.5}, 0), ("gelu", {}, 0), ("gelu", {"approximate": "tanh"}, 0),
    ("mean", {"axes": [1], "keepdim": True}, 0), ("rms_norm", {"normalized_shape": [3]}, 1),
    ("rms_norm", {"normalized_shape": [3], "eps": 0.5}, 0), ("silu", {}, 0),
]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("op,attrs,n_affine", OP_PROGRAMS, ids=[f"{o}-{i}" for i, (o, _, _) in enumerate(OP_PROGRAMS)])
def test_each_fused_op_exact_against_enumeration(op, attrs, n_affine, policy):
    rng = np.random.default_rng(len(op) + n_affine)
    g = Graph()
    x = g.input("x", (2, 3))
    extra = [g.parameter(f"p{i}", rng.normal(size=3)) for i in range(n_affine)]
    y = g.call(op, x, *extra, name="y", **attrs)
    g.call("mul", y, g.call("tanh", y, name="t"), name="z")  # y fans out to two consumers
    d = decompose(g, policy)
    assert check_program(d, {"x": rng.normal(size=(2, 3))}, "z", rng, n_terms=2) > 0


@pytest.mark.parametrize("policy", POLICIES)
def test_tiny_transformer_exact_against_enumeration(policy):
    g, feeds = tiny_transformer()
    d = decompose(g, policy)
    assert check_program(d, feeds, "logp", np.random.default_rng(1), n_terms=1) > 0


def test_softmax_worked_example_of_the_granularity_docs():
    """docs/granularity.md: softmax(1, 2, 3), QoI y[2], under the fused and the paper policy."""
    g = Graph()
    g.mark_output(g.call("softmax", g.input("x", (3,)), name="y", axis=-1))
    xv = np.array([1.0, 2.0, 3.0])
    p = np.exp(xv) / np.exp(xv).sum()
    grad = p[2] * ((np.arange(3) == 2) - p)  # the closed-form softmax Jacobian row
    shown = {  # the numbers the docs print (4 decimals, entropy 2)
        "fused": {"max": grad, "min": grad, "count": [1, 1, 1], "entropy": [0, 0, 0]},
        "paper": {"max": [0, 0, 0.6652], "min": [-0.0599, -0.1628, -0.6652], "count": [5, 5, 6],
                  "entropy": [0, 0, 1.60]},
    }
    np.testing.assert_allclose(grad, [-0.0599, -0.1628, 0.2227], atol=5e-5)
    for policy, want in shown.items():
        d = decompose(g, policy)
        acts = forward(d, {"x": xv})
        r = backward(d, acts, select("y", (2,)), semirings=["real", "max", "entropy", "count"])
        paths = enumerate_paths(scalar_graph(d, acts), {(d["y"].id, 2): 1.0})
        oracle = [statistics(paths[(d["x"].id, j)]) for j in range(3)]
        got = {"max": r.components("x", "max")["max"], "min": r.components("x", "max")["min"],
               "count": r.get("x", "count"), "entropy": r.get("x", "entropy")}
        np.testing.assert_allclose(r.grad("x"), grad, rtol=1e-12, atol=1e-15)
        for key, values in got.items():
            np.testing.assert_allclose(values, [o[key] for o in oracle], rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(values, want[key], atol=5e-5 if key != "entropy" else 5e-3)
