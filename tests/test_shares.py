"""Branch shares against brute-force path enumeration on a tiny BERT built in the IR."""

import networkx as nx
import numpy as np
import pytest

from graphengine.analysis.kqv import KQVError
from graphengine.analysis.shares import branch_points, branch_shares
from graphengine.engine import forward, select
from graphengine.ir import Graph
from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights

from oracle import enumerate_paths, scalar_graph


@pytest.fixture(scope="module")
def tiny():
    cfg = BertConfig.mini(num_layers=1, hidden_size=2, num_heads=1, intermediate_size=2)
    g = build_bert(cfg, random_bert_weights(cfg, 3, head="classification", std=0.7), 1, 2, head="classification")
    return g, forward(g, bert_feeds(np.array([[5, 7]])))


def test_branch_shares_equal_enumeration(tiny):
    g, acts = tiny
    s = branch_shares(g, acts, select("logits", (0, 1)))
    points = branch_points(g)
    start = points[0].node
    sg = scalar_graph(g, acts)
    keep = set().union(*({v} | nx.descendants(sg, v) for v in sg if v[0] == start))
    paths = enumerate_paths(sg.subgraph(keep), {(g["logits"].id, 1): 1.0}, limit=2_000_000)
    for t in range(2):
        ps = [p for e in range(2) for p in paths[(start, t * 2 + e)]]
        a = np.abs([q for q, _ in ps])
        for j, col in enumerate(s.columns):
            layer, branch = col[1:].split(".", 1)
            point = next(p for p in points if p.layer == int(layer) and branch in p.branches.values())
            ids = {c for c, b in point.branches.items() if b == branch}
            through = np.array([any(u[0] == point.node and v[0] in ids for u, v in zip(seq, seq[1:]))
                                for _, seq in ps])
            want = a[through].sum() / a.sum()
            assert abs(s.share[0, t, j] - want) <= 1e-9, (t, col, s.share[0, t, j], want)
        lengths = np.array([len(seq) - 1 for _, seq in ps])
        mean = np.sum(a * lengths) / a.sum()
        assert abs(s.length_mean[0, t] - mean) <= 1e-9 * mean
        assert abs(s.length_var[0, t] - np.sum(a * (lengths - mean) ** 2) / a.sum()) <= 1e-9 * mean ** 2
        assert abs(s.Z[0, t] - a.sum()) <= 1e-9 * a.sum()


def test_shares_of_one_branch_point_add_up_and_table_and_json(tiny):
    g, acts = tiny
    s = branch_shares(g, acts, select("logits", (0, 0)))
    np.testing.assert_allclose(s.share[..., :4].sum(-1), 1.0, rtol=0, atol=1e-12)
    assert s.to_dict()["columns"] == s.columns and len(s.to_markdown().splitlines()) == 2 + 2


def test_a_start_without_a_hidden_axis_is_refused(tiny):
    g, acts = tiny
    with pytest.raises(KQVError, match="input_ids"):
        branch_shares(g, acts, select("logits", (0, 0)), start="input_ids")


def test_a_graph_without_attention_blocks_is_refused():
    g = Graph(); x = g.input("x", (2, 3)); g.call("sum", g.call("tanh", x), name="s")
    with pytest.raises(KQVError, match="no branch point"):
        branch_shares(g, forward(g, {"x": np.zeros((2, 3))}), select("s", ()))


def test_cli_analyze_shares_prints_and_writes_them(tiny, tmp_path, capsys):
    import json

    import graphengine as ge
    from graphengine.cli import main

    g, _ = tiny
    path = tmp_path / "bert.ge"
    ge.save(g, str(path))
    out = tmp_path / "r.json"
    rc = main(["analyze", str(path), "--qoi", "logits[0,1]", "--input", "input_ids=[[5, 7]]",
               "--input", "token_type_ids=[[0, 0]]", "--semiring", "max", "--shares", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "branch shares" in text and "L0.key" in text
    doc = json.loads(out.read_text())
    want = branch_shares(g, forward(g, bert_feeds(np.array([[5, 7]]))), select("logits", (0, 1)))
    np.testing.assert_allclose(doc["branch_shares"]["share"]["L0.key"], want.share[0, :, 1], rtol=1e-12)


def test_cli_analyze_shares_on_a_graph_without_layers_is_one_line(tmp_path, capsys):
    import graphengine as ge
    from graphengine.cli import main

    g = Graph(); x = g.input("x", (1, 2)); g.call("tanh", x, name="s")
    ge.save(g, str(tmp_path / "g.ge"))
    rc = main(["analyze", str(tmp_path / "g.ge"), "--qoi", "s[0,1]", "--input", "x=[[1, 2]]",
               "--shares"])
    err = capsys.readouterr().err
    assert rc == 2 and "no branch point" in err and len(err.strip().splitlines()) == 1
