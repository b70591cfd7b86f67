"""graphengine.report: the HTML page (parsed, and loaded in headless Chromium), the attribution
graph against brute-force path enumeration, and the analyze options."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from graphengine.engine import forward, select
from graphengine.ir import save
from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights
from graphengine.paths import k_best_paths
from graphengine.report import attribution_graph, figures, render_html, report_backward, write_html
from graphengine.report.figures import best_starts, position_layout, start_node

import oracle

TOKENS = ["[CLS]", "the", "keys", "are", "[SEP]"]
IDS = [[2, 5, 7, 6, 3]]


def mini_bert(T=5, layers=2, hidden=8, heads=2, intermediate=12):
    cfg = BertConfig.mini(num_layers=layers, vocab_size=10, hidden_size=hidden, num_heads=heads,
                          intermediate_size=intermediate, max_position=8)
    g = build_bert(cfg, random_bert_weights(cfg, 0, head="mlm", std=0.5), 1, T, head="mlm")
    feeds = bert_feeds(np.array([IDS[0][:T]]))
    return g, feeds


@pytest.fixture(scope="module")
def bert_result():
    g, feeds = mini_bert()
    return report_backward(g, forward(g, feeds), select("logits", (0, 2, 3)), kbest="kbest:3")


class Page(HTMLParser):
    """Elements (tag, attrs) and the text of each token span."""

    def __init__(self):
        super().__init__()
        self.elements, self.tokens, self.scripts = [], [], []
        self._in_tok = self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        self._in_tok = tag == "span" and "tok" in (attrs.get("class") or "").split()
        if self._in_tok:
            self.tokens.append("")
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append((attrs, ""))

    def handle_endtag(self, tag):
        self._in_tok = self._in_tok and tag != "span"
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_tok:
            self.tokens[-1] += data
        if self._in_script:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def parse(page: str) -> Page:
    p = Page()
    p.feed(page)
    p.close()
    return p


# ----------------------------------------------------------------------------- the page
def test_page_is_self_contained_and_shows_the_tokens(bert_result):
    page = render_html(bert_result, tokens=TOKENS, title="mini")
    p = parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert p.tokens == TOKENS
    for tag, attrs in p.elements:  # nothing is fetched: no src, no href, no external stylesheet
        assert "src" not in attrs and "href" not in attrs, (tag, attrs)
    assert "http" not in page.replace("http-equiv", "")
    assert "Content-Security-Policy" in page
    data = json.loads(next(text for attrs, text in p.scripts if attrs.get("id") == "report-data"))
    assert data["schema_version"] == 1 and data["tokens"] == TOKENS
    assert {k: len(v) for k, v in data["stats"].items()} == {k: 5 for k in data["stats"]}
    assert len(data["branches"]) == 5 and all(len(row) == 2 for row in data["branches"])
    assert set(b for row in data["branches"] for b in row) <= {"Q", "K", "V", "skip"}
    assert np.allclose(np.sum(data["flow"]["top_share"], axis=1), 1.0)


def test_token_strings_are_escaped(bert_result):
    tokens = ["<script>", "a&b", '"q"', "</span>", "ü"]
    p = parse(render_html(bert_result, tokens=tokens))
    assert p.tokens == tokens
    assert [attrs.get("id") for attrs, _ in p.scripts] == ["report-data", None]  # no injected script
    assert json.loads(p.scripts[0][1])["tokens"] == tokens


def test_summary_figures_are_exact(bert_result):
    r = bert_result
    f = figures(r, tokens=TOKENS)
    sid = start_node(r.graph)
    comps = r.components(sid, "entropy")
    Z, R = comps["Z"].sum(), comps["R"].sum()
    assert f["summary"]["Z"] == pytest.approx(Z, rel=1e-12)
    assert f["summary"]["entropy"] == pytest.approx(R / Z + math.log(Z), rel=1e-12)
    assert f["summary"]["effective_paths"] == pytest.approx(math.exp(f["summary"]["entropy"]), rel=1e-12)
    qoi = r.activations[r.graph.node("logits").id][0, 2, 3]
    assert f["summary"]["qoi"] == pytest.approx(qoi, rel=1e-12)
    grad = r.grad(sid)[0]
    assert f["stats"]["grad_norm"] == pytest.approx(np.linalg.norm(grad, axis=-1).tolist())
    assert f["stats"]["grad_x_input"] == pytest.approx((grad * r.activations[sid][0]).sum(-1).tolist())
    axis, T, _ = position_layout(r.graph, sid, TOKENS)
    for t, index in enumerate(best_starts(r, sid, "max", axis, T)):
        drawn = f["paths"][t]
        assert drawn[0]["weight"] == pytest.approx(r.get(sid, "max")[index])  # the top path is M⁺
        ks = k_best_paths(r, sid, index, "kbest:3")
        mass = sum({tuple((s.node, s.element) for s in p.steps): abs(p.weight) for p in ks}.values())
        assert f["summary"]["drawn_share"][t] == pytest.approx(mass / Z, rel=1e-9)
        # the grid: one point per layer input, then the QoI row at the QoI's position
        assert [pt[0] for pt in drawn[0]["points"]] == [0, 1, 2] and drawn[0]["points"][-1][1] == 2


def test_nan_in_gives_nan_out():
    from graphengine.ir import Graph

    g = Graph(); x = g.input("x", (1, 3))
    y = g.call("linear", x, g.parameter("W", np.ones((2, 3))), name="y")
    g.call("sum", y, name="q")
    r = report_backward(g, forward(g, {"x": np.array([[1.0, np.nan, 2.0]])}), select("q", ()))
    f = figures(r, tokens=["a", "b", "c"])
    assert f["stats"]["grad_x_input"][1] == "NaN" and f["summary"]["qoi"] == "NaN"
    assert parse(render_html(r, tokens=["a", "b", "c"])).tokens == ["a", "b", "c"]


def test_graph_without_attention_layers_degrades_with_a_note():
    from graphengine.ir import Graph

    g = Graph(); x = g.input("x", (1, 2))
    y = g.call("linear", x, g.parameter("W", np.array([[1.0, 2.0], [3.0, -1.0]])), name="y")
    g.call("sum", y, name="q")
    r = report_backward(g, forward(g, {"x": np.ones((1, 2))}), select("q", ()))
    f = figures(r)
    assert f["tokens"] == ["[0, 0]", "[0, 1]"] and f["branches"] is None and f["flow"] is None
    assert "no BERT attention layers" in f["notes"][0]
    assert [p[0]["weight"] for p in f["paths"]] == [3.0, 2.0]
    with pytest.raises(ValueError, match="3 tokens do not match"):
        figures(r, tokens=["a", "b", "c"])


# ----------------------------------------------------------------------------- attribution graph
def test_attribution_graph_rolls_up_exact_path_products():
    """Every rolled-up path is a real path whose product the brute-force oracle confirms; the
    k best are the oracle's k best; edge weights are sums of those products."""
    g, feeds = mini_bert(T=2, layers=1, hidden=2, heads=1, intermediate=2)
    acts = forward(g, feeds)
    q = g.node("logits")
    r = report_backward(g, acts, select("logits", (0, 1, 3)), kbest="kbest:4")
    sinks = {(q.id, int(np.ravel_multi_index((0, 1, 3), q.shape))): 1.0}
    memo = oracle.enumerate_paths(oracle.scalar_graph(g, acts), sinks, limit=2_000_000)
    sid = start_node(g)
    ag = attribution_graph(r, tokens=["the", "keys"])
    axis, T, _ = position_layout(g, sid, ["the", "keys"])
    total = 0.0
    for t, index in enumerate(best_starts(r, sid, "kbest:4", axis, T)):
        flat = int(np.ravel_multi_index(index, g.nodes[sid].shape))
        products = {seq: p for p, seq in memo[(sid, flat)]}
        ks = k_best_paths(r, sid, index, "kbest:4")
        assert len(ks) == 4
        for p in ks:
            seq = tuple((s.node, int(np.ravel_multi_index(s.element, g.nodes[s.node].shape))) for s in p.steps)
            assert p.weight == pytest.approx(products[seq], rel=1e-9, abs=1e-300)
            total += products[seq]
        assert [p.weight for p in ks] == pytest.approx(oracle.kbest(memo[(sid, flat)], 4, False)[:4], rel=1e-9)
    assert ag.num_paths == 8 and ag.mass == pytest.approx(total, rel=1e-12)
    into_logit = sum(e["weight"] for e in ag.edges if ag.nodes[e["target"]]["component"] == "logit")
    assert into_logit == pytest.approx(total, rel=1e-12)
    out_of_embedding = sum(e["weight"] for e in ag.edges if ag.nodes[e["source"]]["component"] == "embedding")
    assert out_of_embedding == pytest.approx(total, rel=1e-12)
    check_conservation(ag)


def check_conservation(ag):
    """Each path enters and leaves every inner node once: inflow = outflow = the node's weight."""
    for nid, n in ag.nodes.items():
        if n["component"] in ("embedding", "logit"):
            continue
        inflow = sum(e["weight"] for e in ag.edges if e["target"] == nid)
        outflow = sum(e["weight"] for e in ag.edges if e["source"] == nid)
        assert inflow == pytest.approx(outflow, rel=1e-9, abs=1e-15) == pytest.approx(n["weight"], rel=1e-9, abs=1e-15)


def test_attribution_graph_outputs(bert_result):
    ag = attribution_graph(bert_result, tokens=TOKENS)
    comps = {n["component"] for n in ag.nodes.values()}
    assert {"embedding", "logit"} <= comps and comps <= {
        "embedding", "query", "key", "value", "attention", "attention_output", "attention_residual", "mlp",
        "residual", "head", "logit"}
    nxg = ag.to_networkx()
    import networkx as nx

    assert nx.is_directed_acyclic_graph(nxg)
    assert nxg.number_of_edges() == len(ag.edges) and nxg.graph["num_paths"] == ag.num_paths == 15
    dot = ag.to_dot()
    assert dot.startswith("digraph attribution {") and dot.count("->") == len(ag.edges)
    doc = ag.to_json(slug="mini")
    assert doc["metadata"]["prompt_tokens"] == TOKENS and doc["metadata"]["graphengine"]["schema_version"] == 1
    ids = {n["node_id"] for n in doc["nodes"]}
    assert all(link["source"] in ids and link["target"] in ids for link in doc["links"])
    assert sum(1 for n in doc["nodes"] if n["is_target_logit"]) == 1
    check_circuit_tracer_schema(doc)
    one = attribution_graph(bert_result, tokens=TOKENS, positions=[2])
    assert one.num_paths == 3 and one.meta["positions"] == [2]
    assert {n["position"] for n in one.nodes.values() if n["component"] == "embedding"} == {2}
    with pytest.raises(ValueError, match="positions 0..4"):
        attribution_graph(bert_result, tokens=TOKENS, positions=[5])


def test_attribution_graph_when_heads_equal_tokens():
    """[B, T, heads, d] with heads == T: the attention block still sits at one position per
    path segment, so the graph stays acyclic (all-MiniLM-L6-v2 has 12 heads; 12 tokens are common)."""
    import networkx as nx

    g, feeds = mini_bert(T=4, layers=2, hidden=8, heads=4, intermediate=12)
    r = report_backward(g, forward(g, feeds), select("logits", (0, 1, 3)), kbest="kbest:4")
    ag = attribution_graph(r, tokens=TOKENS[:4])
    assert ag.num_paths == 16 and nx.is_directed_acyclic_graph(ag.to_networkx())
    check_conservation(ag)
    assert {n["position"] for n in ag.nodes.values() if n["component"] == "attention"} <= set(range(4))


def check_circuit_tracer_schema(doc):
    """Validate ``doc`` against circuit-tracer's viewer model (circuit_tracer/frontend/
    graph_models.py: Metadata, QParams, Node, Link, Model), restated here as pydantic models so
    that the test needs no torch-heavy package."""
    pydantic = pytest.importorskip("pydantic")
    from typing import List, Optional

    class Metadata(pydantic.BaseModel):
        slug: str
        scan: str
        transcoder_list: List[str]
        prompt_tokens: List[str]
        prompt: str
        node_threshold: Optional[float] = None
        schema_version: Optional[int] = 1

    class QParams(pydantic.BaseModel):
        pinnedIds: List[str]
        supernodes: List[List[str]]
        linkType: str
        clickedId: str
        sg_pos: str

    class Node(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(strict=True)
        node_id: str
        feature: int
        layer: str
        ctx_idx: int
        feature_type: str
        token_prob: float = 0.0
        is_target_logit: bool = False
        run_idx: int = 0
        reverse_ctx_idx: int = 0
        jsNodeId: str
        clerp: str = ""
        influence: Optional[float] = None
        activation: Optional[float] = None

    class Link(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(strict=True)
        source: str
        target: str
        weight: float

    class Model(pydantic.BaseModel):
        metadata: Metadata
        qParams: QParams
        nodes: List[Node]
        links: List[dict]

    Model.model_validate(doc)
    for link in doc["links"]:
        Link.model_validate(link)
    assert doc["metadata"]["schema_version"] == 1


# ----------------------------------------------------------------------------- the command
def _write_bert(tmp_path):
    g, feeds = mini_bert()
    path = str(tmp_path / "mini.ge")
    save(g, path)
    np.savez(tmp_path / "mini.inputs.npz", **feeds)
    return path, str(tmp_path / "mini.inputs.npz")


def test_analyze_writes_html_graph_json_and_dot(tmp_path, capsys):
    from graphengine.cli.main import main

    ge, inputs = _write_bert(tmp_path)
    vocab = tmp_path / "vocab"
    vocab.mkdir()
    (vocab / "vocab.txt").write_text("\n".join(["[PAD]", "x", "[CLS]", "[SEP]", "y", "the", "are", "keys", "z", "w"]))
    html_path, gj, dot = tmp_path / "r.html", tmp_path / "g.json", tmp_path / "g.dot"
    rc = main(["analyze", ge, "--inputs", inputs, "--qoi", "logits[0,2,3]", "--semiring", "max,kbest:3",
               "--html", str(html_path), "--graph-json", str(gj), "--dot", str(dot), "--tokenizer", str(vocab)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"wrote {html_path}" in out.out and f"wrote {gj}: " in out.out
    assert parse(html_path.read_text(encoding="utf-8")).tokens == TOKENS
    doc = json.loads(gj.read_text())
    check_circuit_tracer_schema(doc)
    assert doc["metadata"]["prompt_tokens"] == TOKENS
    assert dot.read_text().startswith("digraph")
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".graphengine-")]


@pytest.mark.parametrize("extra, message", [
    (["--tokens", "a b"], "report: 2 tokens do not match start node 'embeddings.output'"),
    (["--tokens", '["a", 1]'], "--tokens: the JSON value must be a list of strings"),
    (["--tokenizer", "/no/such/dir"], "--tokenizer /no/such/dir: no tokenizer.json or vocab.txt there"),
])
def test_analyze_report_option_errors(tmp_path, capsys, extra, message):
    from graphengine.cli.main import main

    ge, inputs = _write_bert(tmp_path)
    rc = main(["analyze", ge, "--inputs", inputs, "--qoi", "logits[0,2,3]", "--html", str(tmp_path / "r.html")] + extra)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "r.html").exists()


def test_analyze_checks_report_paths_first(tmp_path, capsys):
    from graphengine.cli.main import main

    rc = main(["analyze", "/no/such.ge", "--qoi", "q[0]", "--html", str(tmp_path / "missing" / "r.html")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


# ----------------------------------------------------------------------------- a real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args, timeout=120):
    """Run headless Chromium; returns (stdout, stderr)."""
    cmd = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--enable-logging=stderr",
           "--v=0", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return done.stdout, done.stderr


def console_errors(stderr: str):
    """Console messages and uncaught exceptions Chromium logged for the page."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package 'chromium')")
def test_page_in_headless_chromium(bert_result, tmp_path):
    page = tmp_path / "report.html"
    write_html(bert_result, str(page), tokens=TOKENS, title="mini BERT")
    url = page.as_uri()
    dom, err = chromium("--dump-dom", url)
    assert console_errors(err) == []
    p = parse(dom)
    assert p.tokens == TOKENS
    tags = [tag for tag, _ in p.elements]
    assert tags.count("svg") >= 2  # the grid and the per-layer flow were drawn by the script
    assert any(tag == "polyline" and attrs.get("class") == "top-path" for tag, attrs in p.elements)
    assert sum(1 for tag, attrs in p.elements if tag == "polyline" and attrs.get("class") == "kbest-path") >= 1
    assert sum(1 for tag, _ in p.elements if tag == "rect") >= 2
    shot = tmp_path / "shot.png"
    _, err = chromium(f"--screenshot={shot}", "--window-size=1100,900", url)
    assert console_errors(err) == []
    import matplotlib.image

    img = matplotlib.image.imread(str(shot))[..., :3]
    assert img.shape[:2] == (900, 1100)
    ink = np.any(img < 0.9, axis=-1).mean()  # share of pixels that are not (near) white
    assert 0.02 < ink < 0.6 and img.std() > 0.05
    dom, err = chromium("--dump-dom", url + "#token=1&mode=branch")  # the fragment picks token and view
    assert console_errors(err) == []
    assert 'id="chosen-token">"the" (position 1)<' in dom
    assert dom.count("<td") > 10 and 'data-mode="branch" class="on"' in dom


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package 'chromium')")
def test_console_error_detection_works(tmp_path):
    """The control for the check above: a page whose script throws is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>null.f();</script></body></html>")
    _, err = chromium("--dump-dom", page.as_uri())
    assert console_errors(err)


def test_effective_number_of_paths_past_the_float_range():
    from graphengine.report.html import page_from_figures

    data = {"summary": {"qoi": 1.0, "Z": 1.0, "entropy": 800.0, "effective_paths": "inf",
                        "log10_effective_paths": 800 / math.log(10), "drawn_share": [None]},
            "chosen": 0, "tokens": ["a"], "branches": None, "notes": [], "kbest": None, "start": "x",
            "start_shape": [1], "qoi_node": "q"}
    assert "10^347.4" in page_from_figures(data, "t", "")
