"""Token attributions and deletion/insertion curves: integrated gradients against Captum on a
torch model exported to the IR, completeness, curve endpoints, and a planted token that a
faithful ranking must put first."""

import numpy as np
import pytest

from graphengine.analysis.faithfulness import (FaithfulnessError, curves, faithfulness, integrated_gradients,
                                               ranking, token_scores)
from graphengine.engine import forward, select
from graphengine.ir import Graph

torch = pytest.importorskip("torch")


def _mlp_graph(seed=0):
    from graphengine.frontends.torch import from_torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    return model, x, from_torch(model, (x,))


def test_integrated_gradients_equal_captum():
    captum = pytest.importorskip("captum.attr")
    model, x, g = _mlp_graph()
    inp = g.inputs()[0].name
    out = [n for n in g.nodes if n.shape == (1, 3, 2)][-1].name
    steps = 16
    ours = integrated_gradients(g, {inp: x.numpy()}, select(out, (0, 2, 1)), inp, steps=steps)
    ig = captum.IntegratedGradients(lambda t: model(t)[:, 2, 1])
    theirs = ig.attribute(x, baselines=torch.zeros_like(x), n_steps=steps, method="riemann_middle").numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12 * np.abs(theirs).max())


def test_integrated_gradients_are_complete():
    model, x, g = _mlp_graph(1)
    inp = g.inputs()[0].name
    out = [n for n in g.nodes if n.shape == (1, 3, 2)][-1].name
    q = select(out, (0, 0, 0))
    ig = integrated_gradients(g, {inp: x.numpy()}, q, inp, steps=64)
    full = float(forward(g, {inp: x.numpy()})[g[out].id][0, 0, 0])
    zero = float(forward(g, {inp: np.zeros((1, 3, 4))})[g[out].id][0, 0, 0])
    assert abs(ig.sum() - (full - zero)) <= 1e-3 * max(1.0, abs(full - zero))


def _planted(T=5, d=3, heavy=2):
    """q = Σ_t tanh(e_t · w_t) with token ``heavy`` weighted 20× the others."""
    rng = np.random.default_rng(0)
    g = Graph(); e = g.input("e", (1, T, d))
    w = rng.uniform(0.2, 0.4, size=(1, T, d)); w[0, heavy] *= 20
    h = g.call("tanh", g.call("sum", g.call("mul", e, g.constant(w)), axes=[2], keepdim=True), name="h")
    g.call("sum", h, axes=[1, 2], name="q")
    return g, {"e": rng.uniform(0.05, 0.1, size=(1, T, d))}, select("q", (0,))


def test_a_planted_token_ranks_first_and_curves_have_the_right_ends():
    g, feeds, q = _planted()
    methods = ("gradient", "grad_input", "integrated_gradients", "max", "mass", "random")
    scores = token_scores(g, feeds, q, "e", methods=methods)
    for m in methods[:-1]:
        assert ranking(scores[m])[0] == 2, m
    c = curves(g, feeds, q, "e", ranking(scores["gradient"]))
    clean = float(forward(g, feeds)[g["q"].id][0])
    assert abs(c["deletion"][0] - clean) <= 1e-12 and abs(c["insertion"][-1] - clean) <= 1e-12
    assert abs(c["deletion"][-1]) <= 1e-12 * clean and abs(c["insertion"][0]) <= 1e-12 * clean   # tanh(0) = 0
    table = faithfulness(g, [(feeds, q)], "e", methods=("gradient", "random"), ig_steps=4)
    assert table.deletion_area[0, 0] < table.deletion_area[0, 1]
    assert table.insertion_area[0, 0] > table.insertion_area[0, 1]
    assert "| gradient |" in table.to_markdown()


def test_entropy_ranking_equals_enumerated_path_entropy():
    """Each token's score is the entropy of all its paths (units pooled), computed here
    from the enumerated path products; a token with no path of non-zero weight ranks last."""
    from oracle import enumerate_paths, scalar_graph

    rng = np.random.default_rng(7)
    T, d = 4, 2
    g = Graph(); e = g.input("e", (1, T, d))
    w = rng.uniform(-1.5, 1.5, size=(1, T, d)); w[0, 1] = 0.0           # token 1: every path has weight 0
    h = g.call("tanh", g.call("mul", e, g.constant(w)), name="h")
    mix = g.call("matmul", g.call("reshape", h, shape=[1, T * d]), g.constant(rng.normal(size=(T * d, 3))))
    g.call("sum", g.call("tanh", mix), axes=[1], name="q")
    feeds = {"e": rng.normal(size=(1, T, d))}
    acts = forward(g, feeds)
    scores = token_scores(g, feeds, select("q", (0,)), "e", methods=("entropy", "entropy_low"))
    paths = enumerate_paths(scalar_graph(g, acts), {(g["q"].id, 0): 1.0})
    for t in range(T):
        a = np.abs([p for k in range(d) for p, _ in paths[(g["e"].id, t * d + k)]])
        if t == 1:
            assert a.sum() == 0 and scores["entropy"][t] == -np.inf and scores["entropy_low"][t] == -np.inf
            continue
        p = a / a.sum()
        want = float(-np.sum(p[p > 0] * np.log(p[p > 0])))
        assert abs(scores["entropy"][t] - want) <= 1e-9 * max(1.0, want), (t, scores["entropy"][t], want)
        assert scores["entropy_low"][t] == -scores["entropy"][t]
    assert ranking(scores["entropy"])[-1] == 1 and ranking(scores["entropy_low"])[-1] == 1


def test_bad_requests():
    g, feeds, q = _planted()
    with pytest.raises(FaithfulnessError, match="unknown attribution"):
        token_scores(g, feeds, q, "e", methods=("lime",))
    with pytest.raises(FaithfulnessError, match="replacement"):
        curves(g, feeds, q, "e", [0, 1], replacement=np.zeros(7))
    with pytest.raises(FaithfulnessError, match="batch, tokens, hidden"):
        token_scores(g, feeds, q, "q")


def test_attention_rollout_equals_rollout_of_the_transformers_attentions(tmp_path):
    transformers = pytest.importorskip("transformers")
    from graphengine.analysis.faithfulness import attention_rollout
    from graphengine.frontends.hf import from_hf_dir

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=16,
                                  attn_implementation="eager")   # sdpa returns no attention probabilities
    model = transformers.BertModel(cfg).eval()
    model.save_pretrained(tmp_path)
    ids = np.array([[2, 7, 5, 9, 3]])
    g, feeds, _ = from_hf_dir(tmp_path, input_ids=ids, dtype="float64")
    ours = attention_rollout(g, forward(g, feeds))
    with torch.no_grad():
        att = model.double()(torch.tensor(ids), output_attentions=True).attentions
    want = np.eye(5)
    assert len(att) == 2
    for a in att:                       # independent: transformers' own attention probabilities
        a = 0.5 * np.eye(5) + 0.5 * a[0].numpy().mean(axis=0)
        want = (a / a.sum(-1, keepdims=True)) @ want
    np.testing.assert_allclose(ours, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.sum(-1), 1.0, rtol=1e-12)
    with pytest.raises(FaithfulnessError, match="no attention softmax"):
        attention_rollout(_planted()[0], forward(*_planted()[:2]))


def test_batched_faithfulness_equals_one_example_at_a_time():
    from graphengine.analysis.faithfulness import batch_faithfulness
    from graphengine.engine import batch

    rng = np.random.default_rng(4)
    g = Graph(); e = g.input("e", (2, 4, 3))
    w = g.constant(rng.normal(size=(2, 4, 3)))
    h = g.call("tanh", g.call("sum", g.call("mul", e, w), axes=[2], keepdim=True), name="h")
    g.call("sum", h, axes=[1, 2], name="q")
    feeds = {"e": rng.normal(size=(2, 4, 3))}
    methods = ("gradient", "grad_input", "integrated_gradients", "max", "mass", "entropy")
    both = batch_faithfulness(g, feeds, batch([select("q", (0,)), select("q", (1,))]), "e", methods, ig_steps=4,
                              replacement=np.ones(3))
    for b in range(2):
        one = faithfulness(g, [(feeds, select("q", (b,)))], "e", methods, example=b, ig_steps=4, replacement=np.ones(3))
        np.testing.assert_allclose(both.deletion_area[b], one.deletion_area[0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(both.insertion_area[b], one.insertion_area[0], rtol=1e-12, atol=1e-15)


def test_batched_rollout_takes_one_position_per_example():
    from graphengine.analysis.faithfulness import attention_rollout, batch_faithfulness
    from graphengine.engine import batch
    from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights

    cfg = BertConfig.mini(num_layers=2, hidden_size=8, num_heads=2, intermediate_size=16)
    g = build_bert(cfg, random_bert_weights(cfg, 1, head="classification", std=0.5), 2, 5, head="classification")
    feeds = bert_feeds(np.array([[2, 7, 5, 9, 3], [2, 4, 4, 8, 3]]))
    node = next(n.name for n in g.nodes if n.op == "embedding" and n.scope.endswith("word_embeddings"))
    q = batch([select("logits", (0, 1)), select("logits", (1, 0))])
    both = batch_faithfulness(g, feeds, q, node, ("attention_rollout",), position=[3, 1])
    acts = forward(g, feeds)
    for b, pos in enumerate((3, 1)):
        one = faithfulness(g, [(feeds, select("logits", (b, 1 - b)))], node, ("attention_rollout",), example=b,
                           position=pos)
        np.testing.assert_allclose(both.deletion_area[b], one.deletion_area[0], rtol=1e-12, atol=1e-15)
        order = ranking(attention_rollout(g, acts, b)[pos])
        assert both.orders["attention_rollout"][b].tolist() == order.tolist()
        want = curves(g, feeds, select("logits", (b, 1 - b)), node, order, example=b)
        np.testing.assert_allclose(both.deletion_curves[b]["attention_rollout"], want["deletion"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(both.insertion_curves[b]["attention_rollout"], want["insertion"], rtol=1e-12,
                                   atol=1e-12)
