"""``audit``: a causal attention block built in the IR; a broken mask is found, a correct one
passes (structurally when the probabilities are masked too)."""

import json

import numpy as np
import pytest

import graphengine as ge
from graphengine.analysis.audit import AuditError, audit, future_tokens
from graphengine.cli import main
from graphengine.engine import forward, select
from graphengine.ir import Graph
from graphengine.paths import Path

T, D = 4, 3


def attention(mask: np.ndarray, structural: bool = False, seed: int = 0) -> Graph:
    """One causal self-attention head over x [1, T, D]: scores where ``mask`` else −10⁹,
    softmax, times the values; with ``structural`` the probability × value terms are also
    masked, so that masked pairs have no edge at all (a matmul declares every edge)."""
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.input("x", (1, T, D))
    q = g.call("linear", x, g.parameter("Wq", rng.normal(size=(D, D))), name="q")
    k = g.call("linear", x, g.parameter("Wk", rng.normal(size=(D, D))), name="k")
    v = g.call("linear", x, g.parameter("Wv", rng.normal(size=(D, D))), name="v")
    scores = g.call("matmul", q, g.call("transpose", k, dim0=1, dim1=2), name="scores")
    m = g.constant(mask[None], name="mask")
    masked = g.call("where", m, scores, g.constant(np.full((1, T, T), -1e9)), name="masked")
    probs = g.call("softmax", masked, axis=2, name="probs")
    if not structural:
        g.call("matmul", probs, v, name="out")
        return g
    # the same product as masked terms: out[i] = Σ_j where(mask[i, j], probs[i, j] v[j], 0)
    terms = g.call("mul", g.call("unsqueeze", probs, dim=3), g.call("unsqueeze", v, dim=1), name="terms")
    m4 = g.constant(np.broadcast_to(mask[None, :, :, None], (1, T, T, D)).copy(), name="mask4")
    kept = g.call("where", m4, terms, g.constant(np.zeros((1, T, T, D))), name="kept")
    g.call("sum", kept, axes=[2], name="out")
    return g


CAUSAL = np.tril(np.ones((T, T), dtype=bool))
FEEDS = {"x": np.random.default_rng(1).normal(size=(1, T, D))}


def test_a_correct_mask_passes_and_a_broken_one_leaks():
    q = select("out", (0, 1, 0))
    good = attention(CAUSAL)
    rep = audit(good, forward(good, FEEDS), q, "x", future_tokens(good, "x", q))
    assert [t.token for t in rep.tokens] == [(0, 2), (0, 3)]
    assert rep.passed and {t.verdict for t in rep.tokens} == {"zero mass"}   # v's edges exist, weight 0
    assert not audit(good, forward(good, FEEDS), q, "x", [(0, 3)], strict=True).passed

    broken = CAUSAL.copy(); broken[1, 3] = True      # position 1 may look at position 3
    bad = attention(broken)
    rep = audit(bad, forward(bad, FEEDS), q, "x", future_tokens(bad, "x", q))
    verdicts = {t.token: t.verdict for t in rep.tokens}
    assert not rep.passed and verdicts == {(0, 2): "zero mass", (0, 3): "leak"}
    leak = rep.tokens[1]
    assert leak.mass > 0 and leak.paths > 0 and 1 <= len(leak.leaks) <= 3
    for p in leak.leaks:
        assert isinstance(p, Path) and p.steps[0].element[:2] == (0, 3) and p.weight != 0
        assert p.steps[-1].name == "out" and p.steps[-1].element == (0, 1, 0)


def test_a_structural_mask_is_proved():
    q = select("out", (0, 0, 2))
    g = attention(CAUSAL, structural=True)
    rep = audit(g, forward(g, FEEDS), q, "x", future_tokens(g, "x", q), strict=True)
    assert rep.passed and all(t.verdict == "no path" and t.paths == 0 and not t.leaks for t in rep.tokens)
    assert [t.token for t in rep.tokens] == [(0, 1), (0, 2), (0, 3)]
    past = audit(g, forward(g, FEEDS), q, "x", [(0, 0)])
    assert past.tokens[0].verdict == "leak"   # the token itself does reach the QoI


def test_paths_count_matches_a_hand_count():
    # one head, token 3 at query position 1 with the broken mask: paths from x[0,3,i] to out[0,1,0]
    # go through k[0,3,:] (D) → scores[0,1,3] → masked → probs[0,1,:] (T) → out, and v[0,3,0] → out
    broken = CAUSAL.copy(); broken[1, 3] = True
    g = attention(broken)
    rep = audit(g, forward(g, FEEDS), select("out", (0, 1, 0)), "x", [(0, 3, 0)])
    assert rep.tokens[0].paths == D * 1 * T + 1


def test_cli_audit_exit_status_and_json(tmp_path, capsys):
    good, bad = tmp_path / "good.ge", tmp_path / "bad.ge"
    broken = CAUSAL.copy(); broken[0, 2] = True
    ge.save(attention(CAUSAL), str(good))
    ge.save(attention(broken), str(bad))
    x = json.dumps(FEEDS["x"].tolist())
    assert main(["audit", str(good), "--qoi", "out[0,0,1]", "--input", f"x={x}", "--node", "x", "--future"]) == 0
    assert "passed" in capsys.readouterr().out
    out = tmp_path / "a.json"
    rc = main(["audit", str(bad), "--qoi", "out[0,0,1]", "--input", f"x={x}", "--node", "x", "--future", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 1 and "leak" in text and "FAILED" in text
    doc = json.loads(out.read_text())
    assert doc["passed"] is False and [t["verdict"] for t in doc["tokens"]] == ["zero mass", "leak", "zero mass"]
    rc = main(["audit", str(good), "--qoi", "out[0,0,1]", "--input", f"x={x}", "--node", "x", "--token", "0,9"])
    err = capsys.readouterr().err
    assert rc == 2 and "out of range" in err and len(err.strip().splitlines()) == 1
    rc = main(["audit", str(good), "--qoi", "out[0,0,1]", "--input", f"x={x}", "--node", "x"])
    assert rc == 2 and "--token or --future" in capsys.readouterr().err


def test_bad_tokens_are_refused():
    g = attention(CAUSAL)
    with pytest.raises(AuditError, match="out of range"):
        audit(g, forward(g, FEEDS), select("out", (0, 0, 0)), "x", [(1, 0)])
    with pytest.raises(AuditError, match="position axis"):
        future_tokens(g, "x", select("out", (0, 0, 0)), axis=3)
