"""The K/Q/V/skip summary (docs/method.md) on tiny IR-built BERTs, against brute-force recomputation
from the backward result's raw values and backpointers, against path walking, and on models
whose weights force a known winning branch."""

import json

import numpy as np
import pytest

from graphengine.analysis import kqv as kqv_mod
from graphengine.analysis.kqv import (BRANCHES, COLUMNS, SHORT, KQVCredits, KQVError, find_layer_inputs, kqv_credits,
                                      kqv_retain, kqv_summary, path_crossings)
from graphengine.engine import backward, batch, forward, select
from graphengine.models import (BertConfig, MLPConfig, bert_feeds, build_bert, build_mlp,
                                         random_bert_weights, random_mlp_weights)
from graphengine.paths import top_path

T = 5
IDS = np.array([[3, 7, 1, 7, 9], [5, 2, 2, 8, 4], [11, 6, 3, 1, 12]])
LABELS = [1, 0, 1]


def config(layers):
    return BertConfig.mini(vocab_size=20, hidden_size=8, num_layers=layers, num_heads=2, intermediate_size=16,
                           max_position=8)


def model(layers=2, batch_size=3, zero=(), seed=0):
    cfg = config(layers)
    w = random_bert_weights(cfg, seed, head="classification", std=0.5)
    for key in zero:  # e.g. "encoder.layer.0.attention.self.value.weight"
        w[key] = np.zeros_like(w[key])
    return build_bert(cfg, w, batch_size, T, head="classification"), w


def run(g, ids, granularity="scalar", semirings=("max",)):
    acts = forward(g, bert_feeds(ids))
    qoi = batch([select("logits", (b, LABELS[b] if len(ids) > 1 else 1)) for b in range(len(ids))])
    return backward(g, acts, qoi, semirings=list(semirings), retain=kqv_retain(g), granularity=granularity)


def branch_by_hand(node):
    """The test's own reading of a consumer node (names as build_bert makes them)."""
    if node.op == "add" and node.name.endswith("attention.output.residual"):
        return "skip"
    for b in ("query", "key", "value"):
        if node.op == "linear" and node.name.endswith(f"attention.self.{b}.output"):
            return b
    raise AssertionError(f"unexpected consumer {node.name}")


LAYER_INPUTS = ["embeddings.output", "encoder.layer.0.output"]


# ------------------------------------------------------------------ finding layer inputs
def test_find_layer_inputs_in_build_bert():
    g, _ = model(layers=2)
    found = find_layer_inputs(g)
    assert [(li.layer, li.name) for li in found] == [(0, "embeddings.output"), (1, "encoder.layer.0.output")]
    for li in found:
        named = {g.nodes[c].name: b for c, b in li.branches.items()}
        p = f"encoder.layer.{li.layer}"
        assert named == {f"{p}.attention.self.query.output": "query", f"{p}.attention.self.key.output": "key",
                         f"{p}.attention.self.value.output": "value", f"{p}.attention.output.residual": "skip"}
    assert kqv_retain(g) == LAYER_INPUTS


def test_scope_prefix_does_not_matter():
    plain, _ = model(layers=2)
    prefixed, _ = model(layers=2)
    for n in prefixed.nodes:
        if n.scope:
            n.scope = "bert." + n.scope
    assert prefixed.nodes[find_layer_inputs(prefixed)[1].node].scope.startswith("bert.encoder.layer.0")
    a = kqv_summary(run(plain, IDS))
    b = kqv_summary(run(prefixed, IDS))
    assert [li.name for li in find_layer_inputs(prefixed)] == LAYER_INPUTS
    np.testing.assert_array_equal(a.mean["all"], b.mean["all"])


def test_custom_patterns_for_other_naming_schemes():
    g, _ = model(layers=1)
    rename = {"attention.self.query": "attn.q_proj", "attention.self.key": "attn.k_proj",
              "attention.self.value": "attn.v_proj", "attention.output": "attn.out"}
    for n in g.nodes:
        for old, new in rename.items():
            n.scope = n.scope.replace(old, new)
        n.scope = n.scope.replace("encoder.layer.", "model.h.")
    with pytest.raises(KQVError, match="no attention layer input found"):
        find_layer_inputs(g)
    pats = {"query": r"h\.(?P<layer>\d+)\.attn\.q_proj$", "key": r"h\.(?P<layer>\d+)\.attn\.k_proj$",
            "value": r"h\.(?P<layer>\d+)\.attn\.v_proj$", "skip": r"h\.(?P<layer>\d+)\.attn\.out$"}
    assert [li.name for li in find_layer_inputs(g, pats)] == ["embeddings.output"]
    with pytest.raises(KQVError, match="needs a \\(\\?P<layer>"):
        find_layer_inputs(g, {**pats, "key": r"k_proj"})


def test_the_output_dense_projection_is_not_the_skip_branch():
    assert kqv_mod._classify("encoder.layer.3.attention.output.dense", kqv_mod._compile(None)) is None
    assert kqv_mod._classify("x.encoder.layer.3.attention.output", kqv_mod._compile(None)) == ("skip", 3)
    assert kqv_mod._classify("bert.encoder.layer.12.attention.self.key", kqv_mod._compile(None)) == ("key", 12)
    assert kqv_mod._classify("encoder.layer.1.attention.self.keys", kqv_mod._compile(None)) is None


# ------------------------------------------------------------------ brute force
def brute_force(result, semiring):
    """oplus credits [L, B, T, 4] and bucket sums, recomputed element by element."""
    g = result.graph
    comp = "max" if semiring == "max" else "max_abs"
    oplus = np.zeros((2, len(IDS), T, 4))
    bucket = np.zeros((2, len(IDS), T, 4))
    winners = {}
    for L, name in enumerate(LAYER_INPUTS):
        m = result.components(name, semiring)[comp]
        consumer = result.backpointers(name, semiring).node[0]
        for b in range(len(IDS)):
            for t in range(T):
                best_h, best = 0, -np.inf
                for h in range(m.shape[-1]):
                    if m[b, t, h] > best:
                        best_h, best = h, m[b, t, h]
                    bucket[L, b, t, BRANCHES.index(branch_by_hand(g.nodes[consumer[b, t, h]]))] += m[b, t, h]
                br = branch_by_hand(g.nodes[consumer[b, t, best_h]])
                oplus[L, b, t, BRANCHES.index(br)] = best
                winners[L, b, t] = (name, best_h, br, best)
    return oplus, bucket, winners


@pytest.mark.parametrize("granularity", ["scalar", "paper"])
@pytest.mark.parametrize("semiring", ["max", "maxabs"])
def test_credits_and_means_match_brute_force(granularity, semiring):
    g, _ = model(layers=2)
    r = run(g, IDS, granularity, semirings=[semiring, "real"])
    oplus, bucket, _ = brute_force(r, semiring)
    c = kqv_credits(r)
    assert c.layers == (0, 1)
    np.testing.assert_array_equal(c.oplus[..., :4], oplus)
    np.testing.assert_array_equal(c.oplus[..., 4], 0.0)
    np.testing.assert_allclose(c.bucket[..., :4], bucket, rtol=1e-12, atol=0)
    assert (c.count.sum(-1) == 8).all()  # every hidden unit has a branch

    first = np.zeros((len(IDS), T), bool)
    first[:, 0] = True
    repeat = np.zeros_like(first)
    repeat[0, 3] = repeat[1, 2] = True  # an arbitrary per-sentence subset
    s = kqv_summary(r, subsets={"first": first, "repeat": repeat, "other": ~first})
    for name, mask in (("first", first), ("repeat", repeat), ("other", ~first)):
        sel = [(b, t) for b in range(len(IDS)) for t in range(T) if mask[b, t]]
        assert s.n_tokens[name] == len(sel)
        for L in range(2):
            want = sum(oplus[L, b, t] for b, t in sel) / len(sel)
            np.testing.assert_allclose(s.mean[name][L, :4], want, rtol=1e-12, atol=1e-300)
            np.testing.assert_allclose(s.total[name][L, :4], want * len(sel), rtol=1e-12, atol=1e-300)
            np.testing.assert_allclose(s.bucket_mean[name][L, :4], sum(bucket[L, b, t] for b, t in sel) / len(sel),
                                       rtol=1e-12, atol=1e-300)
            wins = [int(np.argmax(np.abs(oplus[L, b, t]) > 0)) if oplus[L, b, t].any() else None for b, t in sel]
            for k in range(4):
                if all(w is not None for w in wins):
                    assert s.top_share[name][L, k] == pytest.approx(wins.count(k) / len(sel))
            ks = s.share(name, "key")[L]
            tot = s.mean[name][L].sum()
            assert ks == pytest.approx(s.mean[name][L, 1] / tot) if tot != 0 else np.isnan(ks)


def test_scalar_winners_are_real_paths_through_the_named_branch():
    """Walk each credited top path: its first edge leaves through the credited branch's module
    and the product of its local derivatives is the credited M⁺."""
    g, _ = model(layers=2)
    r = run(g, IDS)
    _, _, winners = brute_force(r, "max")
    c = kqv_credits(r)
    for (L, b, t), (name, h, br, best) in winners.items():
        path = top_path(r, name, (b, t, h), "max")
        assert path.steps[0].name == name
        scope = path.steps[1].scope
        expected = {"query": "attention.self.query", "key": "attention.self.key",
                    "value": "attention.self.value", "skip": "attention.output"}[br]
        assert scope == f"encoder.layer.{L}.{expected}"
        assert path.weight == pytest.approx(best, rel=1e-9)
        assert c.unit[L, b, t] == h and COLUMNS[c.branch[L, b, t]] == br


def test_branch_labels_and_path_crossings_match_the_backpointers_read_by_hand():
    g, _ = model(layers=2)
    r = run(g, IDS)
    layers = find_layer_inputs(g)
    for li in layers:
        consumers = np.array(sorted(li.branches) + [-1, li.node])
        want = [COLUMNS.index(branch_by_hand(g.nodes[c])) for c in consumers[:-2]] + [-1, -1]
        assert li.columns(consumers).tolist() == want
        assert li.branch(-1) is None and li.branch(li.node) is None
    _, _, winners = brute_force(r, "max")
    c = kqv_credits(r)
    for b in range(len(IDS)):
        labels = c.labels(b)
        assert len(labels) == T and all(len(row) == len(layers) for row in labels)
    for (L, b, t), (name, h, br, best) in winners.items():
        assert c.labels(b)[t][L] == SHORT[COLUMNS.index(br)]
        path = top_path(r, name, (b, t, h), "max")
        crossings = path_crossings(path, layers)
        assert crossings[L] == (br, (b, t, h))
        by_hand = [None] * len(layers)
        for step, nxt in zip(path.steps, path.steps[1:]):
            for k, li in enumerate(layers):
                if step.node == li.node:
                    by_hand[k] = (branch_by_hand(g.nodes[nxt.node]), step.element)
        assert crossings == by_hand
        assert all(x is None for x in crossings[:L])  # a path never goes back to an earlier layer


# ------------------------------------------------------------------ known winners
def single_layer_cases(zero_branches):
    keys = [f"encoder.layer.0.attention.self.{b}.weight" for b in zero_branches]
    g, _ = model(layers=1, zero=keys, seed=1)
    return g


def test_one_layer_later_tokens_reach_the_pooler_only_through_keys_and_values():
    """Only position 0 feeds the classifier after the single layer, so a later token's query and
    skip branches have no path at all; with the value weights zero, the key carries the max."""
    g = single_layer_cases(["value"])
    r = run(g, IDS)
    m = r.get("embeddings.output", "max")
    consumers = r.backpointers("embeddings.output", "max").node[0]
    later = {branch_by_hand(g.nodes[cn]) for cn in np.unique(consumers[:, 1:])}
    assert later <= {"key", "value"}
    s = kqv_summary(r, subsets={"first": np.arange(T) == 0, "later": np.arange(T) > 0})
    assert (m[:, 1:].max(-1) > 0).all()
    k = BRANCHES.index("key")
    assert s.top_share["later"][0, k] == 1.0
    np.testing.assert_allclose(s.mean["later"][0, k], m[:, 1:].max(-1).mean(), rtol=1e-12)
    assert s.mean["later"][0, [0, 2, 3]].tolist() == [0.0, 0.0, 0.0]
    assert s.share("later", "key")[0] == 1.0


def test_zero_key_weights_hand_later_tokens_to_the_values():
    g = single_layer_cases(["key"])
    s = kqv_summary(run(g, IDS), subsets={"later": np.arange(T) > 0})
    assert s.top_share["later"][0].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert s.mean["later"][0, BRANCHES.index("value")] > 0
    assert s.share("later", "key")[0] == 0.0


def test_zero_query_key_value_weights_leave_only_the_skip_path():
    g = single_layer_cases(["query", "key", "value"])
    r = run(g, IDS)
    c = kqv_credits(r)
    m = r.get("embeddings.output", "max")
    # position 0: only its skip path has a non-zero product
    assert (c.branch[0, :, 0] == BRANCHES.index("skip")).all()
    np.testing.assert_array_equal(c.value[0, :, 0], m[:, 0].max(-1))
    assert (c.value[0, :, 0] > 0).all()
    # later positions: only zero-weight paths (through K or V) remain
    np.testing.assert_array_equal(c.value[0, :, 1:], 0.0)
    assert set(COLUMNS[i] for i in np.unique(c.branch[0, :, 1:])) <= {"key", "value"}
    s = kqv_summary(r, subsets={"first": np.arange(T) == 0})
    assert s.top_share["first"][0, BRANCHES.index("skip")] == 1.0


# ------------------------------------------------------------------ sentences, batches, subsets
def test_a_batch_equals_the_same_sentences_run_one_by_one():
    g3, w = model(layers=2, batch_size=3)
    g1 = build_bert(config(2), w, 1, T, head="classification")
    batched = run(g3, IDS)
    singles = []
    for b in range(3):
        acts = forward(g1, bert_feeds(IDS[b:b + 1]))
        singles.append(backward(g1, acts, select("logits", (0, LABELS[b])), semirings=["max"],
                                retain=kqv_retain(g1)))
    mask = np.zeros((3, T), bool)
    mask[0, 1] = mask[2, 4] = mask[1, 0] = True
    subsets = {"all": np.ones(T, bool), "some": mask}
    a = kqv_summary(batched, subsets)
    b = kqv_summary(singles, subsets)
    c = kqv_summary([kqv_credits(x) for x in singles], subsets)
    for stat in ("mean", "total", "bucket_mean", "top_share"):
        for name in subsets:
            np.testing.assert_allclose(getattr(a, stat)[name], getattr(b, stat)[name], rtol=1e-12, atol=1e-300)
            np.testing.assert_array_equal(getattr(b, stat)[name], getattr(c, stat)[name])
    assert a.n_sentences == b.n_sentences == 3 and a.n_tokens == {"all": 15, "some": 3}
    # pooling weighs tokens, not sentences: the mean over all 15 tokens
    per_sentence = [kqv_summary(x).total["all"] for x in singles]
    np.testing.assert_allclose(a.mean["all"], sum(per_sentence) / 15, rtol=1e-12, atol=1e-300)


def test_unreached_tokens_count_with_zero_credit():
    value = np.array([[[2.0, -np.inf, 0.5]]])
    branch = np.array([[[1, -1, 3]]])
    z = np.zeros((1, 1, 3, 5))
    c = KQVCredits((0,), value, branch, np.zeros((1, 1, 3), np.int64), z, z.astype(np.int64))
    s = kqv_summary(c)
    assert s.n_tokens == {"all": 3} and s.n_unreached["all"].tolist() == [1]
    np.testing.assert_allclose(s.mean["all"][0], [0, 2 / 3, 0, 0.5 / 3, 0])
    np.testing.assert_allclose(s.top_share["all"][0], [0, 1 / 3, 0, 1 / 3, 0])
    assert s.share("all", "key")[0] == pytest.approx(2 / 2.5)
    empty = kqv_summary(c, subsets={"none": np.zeros(3, bool)})
    assert empty.n_tokens == {"none": 0} and np.isnan(empty.mean["none"]).all()


def test_tables_and_json():
    g, _ = model(layers=2)
    s = kqv_summary(run(g, IDS), subsets={"first": np.arange(T) == 0, "all": np.ones(T, bool)})
    md = s.to_markdown()
    lines = md.splitlines()
    assert lines[0] == "| subset | layer | tokens | query | key | value | skip | % keys |"
    assert len(lines) == 2 + 2 * 2
    rows = s.rows()
    assert [(r["subset"], r["layer"]) for r in rows] == [("first", 0), ("first", 1), ("all", 0), ("all", 1)]
    r = rows[3]
    assert r["key"] == s.mean["all"][1, 1] and r["tokens"] == 15
    assert f"{r['key']:.3g}" in lines[5] and lines[5].startswith("| all | 1 | 15 |")
    d = json.loads(json.dumps(s.to_dict()))
    assert d["branches"] == list(COLUMNS) and d["n_tokens"] == {"first": 3, "all": 15}
    np.testing.assert_array_equal(np.array(d["mean"]["all"]), s.mean["all"])
    assert "% keys" in s.to_markdown("top_share")
    with pytest.raises(KQVError, match="unknown statistic"):
        s.to_markdown("median")


# ------------------------------------------------------------------ errors
def test_errors_are_one_line_and_name_the_problem():
    g, _ = model(layers=2)
    acts = forward(g, bert_feeds(IDS))
    q = batch([select("logits", (b, 1)) for b in range(3)])
    not_retained = backward(g, acts, q, semirings=["max"])
    with pytest.raises(KQVError, match="'embeddings.output' \\(layer 0\\) has no retained 'max' values"):
        kqv_summary(not_retained)
    real_only = backward(g, acts, q, retain=kqv_retain(g))
    with pytest.raises(KQVError, match="needs a 'max'"):
        kqv_summary(real_only)
    r = run(g, IDS)
    with pytest.raises(KQVError, match="supports the semirings"):
        kqv_credits(r, semiring="entropy")
    with pytest.raises(KQVError, match="'maxabs' was not computed"):
        kqv_credits(r, semiring="maxabs")
    with pytest.raises(KQVError, match="mask shape \\[3, 4\\] does not match \\[3, 5\\]"):
        kqv_summary(r, subsets={"x": np.ones((3, 4), bool)})
    with pytest.raises(KQVError, match="must be boolean"):
        kqv_summary(r, subsets={"x": np.ones(T)})
    mlp = build_mlp(MLPConfig(), random_mlp_weights(MLPConfig()), batch=2)
    with pytest.raises(KQVError, match="no attention layer input found"):
        find_layer_inputs(mlp)
    g1, _ = model(layers=1)
    r1 = run(g1, IDS)
    with pytest.raises(KQVError, match="cannot pool results"):
        kqv_summary([r, r1])
    for e in (KQVError("x"),):
        assert "\n" not in str(e)


def test_first_token_repeated_once_setup_end_to_end():
    """The paper's §3 set-up with random weights: 1 layer, hidden 16, 2 heads, FFN 32, vocab 20,
    the pooler on position 0. Later tokens (repeat or other) can reach the logit only through
    the key and value projections, so their skip and query credits are exactly 0."""
    from graphengine.datasets import first_token_roles, get_dataset

    val = get_dataset("first_token_repeated_once").val.subset(slice(0, 8))
    cfg = BertConfig.mini(vocab_size=20, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                          max_position=10)
    g = build_bert(cfg, random_bert_weights(cfg, 0, head="classification", std=0.3), 8, 10, head="classification")
    acts = forward(g, bert_feeds(val.x))
    r = backward(g, acts, batch([select("logits", (b, int(val.y[b]))) for b in range(8)]),
                 semirings=["max"], retain=kqv_retain(g))
    s = kqv_summary(r, subsets=first_token_roles(val))
    assert s.subsets == ("FirstToken", "RepeatToken", "OtherToken")
    assert s.n_tokens == {"FirstToken": 8, "RepeatToken": int(val.y.sum()), "OtherToken": 72 - int(val.y.sum())}
    for name in ("RepeatToken", "OtherToken"):
        q, sk = BRANCHES.index("query"), BRANCHES.index("skip")
        assert s.top_share[name][0, q] == 0 and s.top_share[name][0, sk] == 0
        assert s.top_share[name][0].sum() == pytest.approx(1.0)
    assert s.top_share["FirstToken"][0].sum() == pytest.approx(1.0)
    assert "| RepeatToken | 0 |" in s.to_markdown()


def test_hugging_face_bert_through_the_torch_frontend_keeps_its_bert_prefix():
    """A real transformers BertForSequenceClassification exported by the torch frontend (scopes
    'bert.encoder.layer.0.attention.self.query', ...): the layer inputs are found by structure."""
    torch = pytest.importorskip("torch", reason="the torch frontend needs torch")
    transformers = pytest.importorskip("transformers", reason="needs transformers for a Hugging Face BERT")
    from graphengine.frontends.torch import from_torch

    cfg = transformers.BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, attn_implementation="eager")
    torch.manual_seed(0)
    ids = torch.tensor([[3, 4, 5, 3, 7]])
    g = from_torch(transformers.BertForSequenceClassification(cfg).eval(), (ids,))
    found = find_layer_inputs(g)
    assert [li.layer for li in found] == [0, 1]
    assert g.nodes[found[0].node].scope == "bert.embeddings.LayerNorm"
    assert g.nodes[found[1].node].scope == "bert.encoder.layer.0.output.LayerNorm"
    for li in found:
        scopes = {b: g.nodes[c].scope for c, b in li.branches.items()}
        p = f"bert.encoder.layer.{li.layer}.attention"
        assert scopes == {"query": f"{p}.self.query", "key": f"{p}.self.key", "value": f"{p}.self.value",
                          "skip": f"{p}.output"}
    acts = forward(g, {"input_ids": ids.numpy()})
    r = backward(g, acts, select("logits", (0, 1)), semirings=["max"], retain=kqv_retain(g))
    s = kqv_summary(r)
    assert s.n_tokens == {"all": 5}
    np.testing.assert_allclose(s.top_share["all"].sum(-1), 1.0)
