"""The paper-reproduction experiments (graphengine/experiments): statistics and MDL code against
hand computations, the entropy labelling against independent computations, and tiny end-to-end
runs of the three experiments checking the structure of what they write (not the science)."""

import json
import math
import os

import numpy as np
import pytest

from graphengine.cli import main
from graphengine.engine import backward, forward, weighted
from graphengine.experiments import common, mdl, stats
from graphengine.experiments.common import ExperimentError, add_log_probs
from graphengine.experiments.entropy_mdl import pool_rows, token_entropies
from graphengine.experiments.ffoom import feature_entropy
from graphengine.models import (BertConfig, MLPConfig, bert_feeds, build_bert, build_mlp, random_bert_weights,
                                         random_mlp_weights)
from graphengine.ir.passes import decompose

from oracle import enumerate_paths, scalar_graph, statistics


# ============================================================================ statistics
def _t_pdf(x, df):
    return math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2)) * (1 + x * x / df) ** (-(df + 1) / 2)


@pytest.mark.parametrize("x,y", [([1, 2, 3], [1, 3, 2]), ([1, 2, 3], [2, 3, 1]), ([1, 2, 3, 4], [1, 3, 2, 4]),
                                 ([1, 2, 3, 4], [4, 1, 3, 2]), ([1, 2, 3, 4], [2, 1, 4, 3])])
def test_spearman_p_against_t_closed_forms(x, y):
    """With n = 3 and 4 the p value's t distribution has 1 and 2 degrees of freedom, whose tails
    have closed forms (Cauchy: 1/2 - arctan(t)/pi; df 2: 1/2 - t / (2 sqrt(2 + t^2)))."""
    n = len(x)
    d2 = sum((a - b) ** 2 for a, b in zip(x, y))                 # no ties: x, y are ranks
    rho = 1 - 6 * d2 / (n * (n * n - 1))
    t = abs(rho) * math.sqrt((n - 2) / (1 - rho * rho))
    p = 1 - 2 * math.atan(t) / math.pi if n == 3 else 1 - t / math.sqrt(2 + t * t)
    r = stats.spearman(x, y)
    assert r["rho"] == pytest.approx(rho, abs=1e-12)
    assert r["p"] == pytest.approx(p, rel=1e-10)


def test_welch_t_against_hand_computation():
    a = [2.1, 3.4, 1.9, 5.0, 4.2, 3.3]
    b = [6.0, 5.5, 7.1, 4.9, 8.2]
    ma, mb = sum(a) / 6, sum(b) / 5
    va = sum((v - ma) ** 2 for v in a) / 5 / 6
    vb = sum((v - mb) ** 2 for v in b) / 4 / 5
    t = (ma - mb) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 5 + vb ** 2 / 4)
    x = np.linspace(abs(t), 4000.0, 2_000_001)
    p = 2 * np.trapezoid(_t_pdf(x, df), x)   # numerical tail integral as the oracle
    r = stats.welch_t(a, b)
    assert r["t"] == pytest.approx(t, rel=1e-12)
    assert r["df"] == pytest.approx(df, rel=1e-12)
    assert r["diff"] == pytest.approx(ma - mb)
    assert r["p"] == pytest.approx(p, rel=1e-5)
    assert stats.welch_t([1.0], b)["p"] != stats.welch_t([1.0], b)["p"]  # NaN with one value


def test_mann_whitney_u_against_hand_computation():
    a = [1.0, 3.0, 3.0, 7.0]
    b = [2.0, 3.0, 5.0, 6.0, 8.0]
    u = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)   # pair counting
    n1, n2, n = 4, 5, 9
    ties = 3 ** 3 - 3                                                           # three 3.0s
    sd = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = (u - n1 * n2 / 2 + 0.5) / sd                                            # u < mean: +0.5
    r = stats.mann_whitney_u(a, b)
    assert r["U"] == u == 7.0
    assert r["z"] == pytest.approx(z, rel=1e-12)
    assert r["p"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-12)


def test_spearman_against_textbook_formula():
    x = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0]
    y = [2.0, 7.0, 1.0, 8.0, 2.5, 8.5, 3.0]
    rx, ry = np.argsort(np.argsort(x)) + 1, np.argsort(np.argsort(y)) + 1   # no ties
    d2 = float(((rx - ry) ** 2).sum())
    assert stats.spearman(x, y)["rho"] == pytest.approx(1 - 6 * d2 / (7 * 48), rel=1e-12)
    assert stats.spearman([1, 2, 3], [3, 2, 1])["rho"] == -1.0
    assert math.isnan(stats.spearman([1, 2], [2, 1])["rho"]) and math.isnan(stats.spearman([1, 1, 1], [1, 2, 3])["p"])


def test_mann_whitney_u_degenerate_samples_are_nan():
    assert math.isnan(stats.mann_whitney_u([], [1.0])["p"])
    r = stats.mann_whitney_u([2.0, 2.0], [2.0])
    assert r["U"] == 1.0 and math.isnan(r["z"]) and math.isnan(r["p"])
    r = stats.welch_t([1.0, 1.0], [2.0, 2.0])
    assert r["diff"] == -1.0 and math.isnan(r["t"]) and math.isnan(r["p"])


# ============================================================================ MDL
def test_block_sizes_are_the_papers():
    assert mdl.block_sizes(3600) == [2, 2, 4, 4, 8, 16, 36, 72, 72, 144, 288, 576, 576, 1800]
    for n in (24, 100, 900, 1799):
        assert sum(mdl.block_sizes(n)) == n and min(mdl.block_sizes(n)) >= 1
    with pytest.raises(ExperimentError):
        mdl.block_sizes(14)  # the ceilings leave nothing for the last block


def test_prequential_mdl_on_a_toy():
    y = np.array([0, 1, 2] * 6 + [0, 0])  # 20 examples, class 0 in excess
    sizes = [3, 3, 6, 8]
    calls = []
    losses = {0: 0.9, 1: 0.6, 2: 0.3, 3: 0.1}

    def fit_and_score(train_idx, test_idx, block):
        calls.append((train_idx.copy(), test_idx.copy()))
        return losses[block], f"model{block}"

    res, model = mdl.prequential_mdl(y, 36, fit_and_score, np.random.default_rng(0), sizes=sizes)
    blocks = res.extra["blocks"]
    assert sorted(i for b in blocks for i in b) == list(range(20))          # a partition
    assert [len(b) for b in blocks] == sizes
    assert all(sorted(y[b].tolist()) == [0, 1, 2] for b in blocks[:2])     # early blocks balanced
    for i, (tr, te) in enumerate(calls):
        assert sorted(tr.tolist()) == sorted(i for b in blocks[: i + 1] for i in b)  # all earlier blocks
        assert sorted(te.tolist()) == (sorted(tr.tolist()) if i == 3 else sorted(blocks[i + 1]))
    assert model == "model3"
    assert res.next_block_losses == [0.9, 0.6, 0.3]
    assert res.mdl == pytest.approx(3 * math.log(36) + 0.9 + 0.6 + 0.3)
    assert res.codelength == pytest.approx(3 * math.log(36) + 3 * 0.9 + 6 * 0.6 + 8 * 0.3)
    assert res.final_loss == 0.1 and res.model_cost == pytest.approx(res.mdl - 0.1)


# ============================================================================ entropy labelling
def _tiny_bert(batch, seq_len, seed=0, num_labels=5):
    cfg = BertConfig.mini(vocab_size=9, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=8,
                          max_position=seq_len, num_labels=num_labels)
    w = random_bert_weights(cfg, seed, head="classification", std=0.4)
    return add_log_probs(build_bert(cfg, w, batch, seq_len, head="classification")), w


def test_row_pooling_equals_the_embedding_table_in_batches(rng):
    """Paper granularity: a token's entropy is its embedding *row's*, pooled per batch of 4 —
    pooling per-position (Z, R) must equal the table parameter's values batch by batch."""
    x = rng.integers(1, 9, size=(8, 5))
    y = rng.integers(0, 5, size=8)
    g8, w = _tiny_bert(8, 5)
    got = token_entropies(g8, x, y, "paper", "paper", entropy_batch=4)["per_row"]
    for start in (0, 4):
        g4, _ = _tiny_bert(4, 5)
        g4 = decompose(g4, "paper")
        xb, yb = x[start:start + 4], y[start:start + 4]
        acts = forward(g4, bert_feeds(xb))
        coef = np.zeros((4, 5))
        coef[np.arange(4), yb] = -1.0
        r = backward(g4, acts, weighted("log_probs", coef), semirings=["entropy"], granularity="paper",
                     retain=["embeddings.word_embeddings.weight"])
        c = r.components("embeddings.word_embeddings.weight", "entropy")
        Z, R = c["Z"].sum(-1), c["R"].sum(-1)
        row_h = R[xb] / Z[xb] + np.log(Z[xb])
        np.testing.assert_allclose(got[start:start + 4], row_h, rtol=1e-10)
    assert not np.allclose(got, token_entropies(g8, x, y, "paper", "paper")["per_position"])
    # batches of 8 pool more positions per row than batches of 4
    assert not np.allclose(got, token_entropies(g8, x, y, "paper", "paper", entropy_batch=8)["per_row"])


def test_pool_rows_by_hand():
    x = np.array([[1, 2, 1], [1, 3, 3]])
    Z = np.array([[1.0, 2.0, 3.0], [4.0, 1.0, 1.0]])
    R = np.array([[0.5, 0.0, 1.0], [2.0, 0.0, 0.2]])
    h = pool_rows(x, Z, R, batch=1)   # each example alone
    assert h[0, 0] == h[0, 2] == pytest.approx(1.5 / 4 + math.log(4))
    assert h[1, 1] == h[1, 2] == pytest.approx(0.2 / 2 + math.log(2))
    h2 = pool_rows(x, Z, R, batch=2)  # row of token 1 pooled over both examples
    assert h2[0, 0] == h2[1, 0] == pytest.approx(3.5 / 8 + math.log(8))


@pytest.mark.parametrize("policy", ["fused", "paper"])
def test_feature_entropy_against_path_enumeration(policy, rng):
    cfg = MLPConfig(in_features=3, hidden_sizes=(3,), out_features=2, activation="tanh")
    g = add_log_probs(build_mlp(cfg, random_mlp_weights(cfg, 1), batch=2))
    x, y = rng.normal(size=(2, 3)), np.array([1, 0])
    got = feature_entropy(g, x, y, policy, "scalar")
    gd = decompose(g, policy)
    acts = forward(gd, {"x": x})
    lp = gd.node("log_probs")
    sinks = {(lp.id, b * 2 + int(y[b])): -0.5 for b in range(2)}
    memo = enumerate_paths(scalar_graph(gd, acts), sinks)
    xid = gd.node("x").id
    want = [np.mean([statistics(memo[(xid, b * 3 + j)])["entropy"] for b in range(2)]) for j in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    if policy == "paper":   # entropy is linear: the paper's granularity changes nothing by itself
        np.testing.assert_allclose(feature_entropy(g, x, y, policy, "paper"), got, rtol=1e-10)


# ============================================================================ helpers, errors
def test_missing_torch_is_one_line(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(ExperimentError, match="needs torch") as e:
        common.require_torch("ffoom")
    assert "\n" not in str(e.value)


def test_cli_rejects_unknown_experiment(capsys):
    assert main(["experiment", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphengine: error:") and err.count("\n") == 1


def test_every_registered_experiment_follows_the_protocol():
    import inspect

    from graphengine.experiments import EXPERIMENTS, experiment

    assert {"synthetic-paths", "entropy-mdl", "ffoom", "synthetic-planted-path", "synthetic-equal-weights",
            "synthetic-scaling", "synthetic-underflow", "sva", "sva-train-a", "sva-train-b"} <= set(EXPERIMENTS)
    for name in EXPERIMENTS:
        m = experiment(name)
        assert m.NAME == name and m.DESCRIPTION and "\n" not in m.DESCRIPTION
        params = inspect.signature(m.run).parameters
        common = ["out", "quick", "seed", "progress"] if getattr(m, "SEEDED", True) else ["out", "quick", "progress"]
        assert list(params)[:len(common)] == common, name


def test_cli_experiment_help_lists_every_experiment(capsys):
    from graphengine.experiments import EXPERIMENTS

    assert main(["experiment", "--help"]) == 0
    out = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert f"    {name} " in out or f"    {name}\n" in out, name


@pytest.mark.parametrize("args", [["ffoom", "--granularity", "paper"], ["ffoom", "--model", "A"],
                                  ["sva", "--seed", "1"], ["sva", "--retrain"], ["entropy-mdl", "--limit", "3"],
                                  ["synthetic-equal-weights", "--trials", "2"]])
def test_cli_experiment_rejects_options_it_does_not_use(capsys, args):
    assert main(["experiment", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphengine: error: unrecognized arguments:") and err.count("\n") == 1


def test_settings_reject_unknown_keys():
    from graphengine.experiments import ffoom

    with pytest.raises(ExperimentError, match="has no setting 'hidden'"):
        ffoom.run(hidden=(4,))
    assert common.settings("x", {"a": 1, "b": 2}, {"b": 3}, False, {}) == {"a": 1, "b": 2}


def test_register_experiment_from_outside(tmp_path, monkeypatch, capsys):
    import sys

    from graphengine.experiments import EXPERIMENTS, register_experiment

    (tmp_path / "my_study.py").write_text(
        "NAME = 'my-study'\nDESCRIPTION = 'a study defined outside the package'\n"
        "def add_arguments(p):\n    p.add_argument('--n', type=int, default=2, help='how many')\n"
        "def run(out=None, quick=False, seed=0, progress=True, n=2):\n"
        "    return {'files': {}, 'passed': n == 3, 'seed': seed}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("graphengine.experiments.EXPERIMENTS", dict(EXPERIMENTS))
    from graphengine import experiments

    assert register_experiment("my_study") == "my-study" and "my-study" in experiments.EXPERIMENTS
    with pytest.raises(ExperimentError, match="already registered"):
        experiments.EXPERIMENTS["my-study"] = "elsewhere"
        register_experiment("my_study")
    experiments.EXPERIMENTS["my-study"] = "my_study"
    assert main(["experiment", "my-study", "--n", "3", "--out", str(tmp_path)]) == 0
    assert main(["experiment", "my-study", "--out", str(tmp_path)]) == 1
    assert "FAIL" in capsys.readouterr().out
    sys.modules.pop("my_study", None)


def test_json_is_strict(tmp_path):
    p = tmp_path / "a.json"
    common.write_json(str(p), {"x": float("nan"), "y": np.float64(2.5), "z": np.arange(2)})
    assert json.loads(p.read_text()) == {"x": None, "y": 2.5, "z": [0, 1]}


# ============================================================================ end to end (tiny)
def _files(out, doc):
    for f in doc["files"].values():
        if f and not f.endswith("/"):
            assert os.path.exists(os.path.join(out, f)), f


def test_ffoom_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("torch", reason="training needs the torch extra")
    pytest.importorskip("matplotlib", reason="plots need matplotlib")
    from graphengine.experiments import ffoom

    out = str(tmp_path / "ffoom")
    kw = dict(sizes=(70, 10, 20), hidden_sizes=(4, 8), n_seeds=2, progress=False)
    doc = ffoom.run(out=out, **kw)
    _files(out, doc)
    assert len(doc["runs"]) == 4 and doc["models_reused"] == 0
    for r in doc["runs"]:
        assert r["last_batch_size"] == 70 - 64
        assert len(r["scalar"]["per_feature"]) == 4 and len(r["paper"]["per_feature"]) == 4
        assert r["scalar"]["x0"] == r["scalar"]["per_feature"][0] > 0
    assert set(doc["aggregate"]) >= {"4", "8", "slope_per_ln_h_scalar", "slope_per_ln_h_paper"}
    table = open(os.path.join(out, "table.md")).read()
    assert "2.2–2.55" in table and "2.7–3.0" in table   # the paper's numbers beside ours
    # the analysis re-runs from the saved IR files without training (no torch needed)
    monkeypatch.setattr(ffoom, "require_torch", lambda name: (_ for _ in ()).throw(AssertionError("trained")))
    again = ffoom.run(out=out, **kw)
    assert again["models_reused"] == 4
    assert again["runs"][0]["scalar"] == doc["runs"][0]["scalar"]


def test_synthetic_paths_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("transformers", reason="BERT training needs the experiments extra (transformers)")
    pytest.importorskip("matplotlib", reason="plots need matplotlib")
    from graphengine.experiments import synthetic_paths as sp

    out = str(tmp_path / "sp")
    kw = dict(sizes=(64, 24, 8), epochs=1, progress=False)
    doc = sp.run(out=out, **kw)
    _files(out, doc)
    assert doc["exporter"] == "graphengine.frontends.torch.from_torch"
    assert doc["accuracy"]["val_ir"] == pytest.approx(doc["accuracy"]["val_torch"])
    for name in ("scalar", "paper", "paper_ops_scalar"):
        v = doc["variants"][name]
        assert v["summary"]["n_tokens"]["all"] == 24 * 10
        assert v["summary"]["n_tokens"]["FirstToken"] == 24
        assert v["summary"]["n_tokens"]["RepeatToken"] == doc["validation"]["n_with_repeat"]
        assert sum(v["summary"]["top_share"]["all"][0]) == pytest.approx(1.0)
        assert set(v["findings"]) and set(v["top_tokens"]) >= {"label0", "label1"}
    assert "≈0.27" in open(os.path.join(out, "table.md")).read()
    monkeypatch.setattr(sp, "require_transformers", lambda name: (_ for _ in ()).throw(AssertionError("trained")))
    assert sp.run(out=out, **kw)["model_reused"]


def test_entropy_mdl_end_to_end(tmp_path):
    pytest.importorskip("transformers", reason="BERT training needs the experiments extra (transformers)")
    pytest.importorskip("matplotlib", reason="plots need matplotlib")
    from graphengine.experiments import entropy_mdl as em

    out = str(tmp_path / "em")
    kw = dict(tasks=("contains_1", "bin_count_ones:2", "bin_count_ones:3"), sizes=(24, 12, 12), epochs=1, n_seeds=1,
              hidden_size=8, num_heads=2, num_layers=1, intermediate_size=8, progress=False)
    doc = em.run(out=out, **kw)
    _files(out, doc)
    assert len(doc["runs"]) == 3 and all(r["exporter"] == "graphengine.frontends.torch.from_torch" for r in doc["runs"])
    for r in doc["runs"]:
        d = r["mdl_detail"]
        assert d["block_sizes"] == mdl.block_sizes(24) and len(d["next_block_losses"]) == 13
        assert r["mdl"] == pytest.approx(d["block_sizes"][0] * math.log(36) + sum(d["next_block_losses"]))
        assert r["entropy_paper"] > 0 and r["entropy_scalar"] > 0
    agg = doc["aggregate"]
    assert agg["bin_count_ones"]["classes"] == [2, 3]
    c = agg["correct_vs_incorrect"]["paper"]
    assert c["n_correct"] + c["n_incorrect"] == 3 * 12
    again = em.run(out=out, **kw)
    assert again["n_resumed"] == 3


def test_cli_experiment_ffoom_quick(tmp_path, capsys):
    pytest.importorskip("torch", reason="training needs the torch extra")
    pytest.importorskip("matplotlib", reason="plots need matplotlib")
    out = str(tmp_path / "ff")
    assert main(["experiment", "ffoom", "--quick", "--out", out, "--seed", "3", "--no-progress"]) == 0
    doc = json.load(open(os.path.join(out, "results.json")))
    assert doc["seeds"] == [3] and doc["quick"] and len(doc["runs"]) == 6
    assert "wrote results.json" in capsys.readouterr().out
