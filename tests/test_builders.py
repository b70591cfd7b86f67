"""Models built directly in the IR (graphengine.models) and the demo.

Structure tests (names, scopes, shapes, consumers, validation, files) need only numpy. The
parity tests compare forward values and real-semiring gradients with an independent PyTorch
implementation (tests/torch_reference.py) in float64 and are skipped without torch.
"""

import io
import math
import os

import numpy as np
import pytest

from graphengine.cli import demo
from graphengine.engine import backward, batch, difference, forward, select
from graphengine.models import (BertConfig, MLPConfig, bert_feeds, bert_weight_shapes, build_bert, build_bert_from_hf,
                                         build_mlp, mask_fill_value, random_bert_weights, random_mlp_weights)
from graphengine.ir import load, save

ACTIVATIONS = ("relu", "tanh", "gelu")
HEADS = ("mlm", "classification", "token_classification", None)
B, T = 2, 6
CFG = BertConfig.mini(vocab_size=30, hidden_size=16, num_heads=4, intermediate_size=24, max_position=8,
                      num_labels=3)
MASK = np.array([[1, 1, 0, 1, 1, 1],
                 [1, 1, 1, 1, 0, 0]], dtype=bool)


def _inputs(seed=0, cfg=CFG):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, size=(B, T))
    types = rng.integers(0, cfg.type_vocab_size, size=(B, T))
    return ids, types


def _bert(head, mask=False, seed=0, dtype="float64", cfg=CFG, std=0.2):
    w = random_bert_weights(cfg, seed=seed, head=head, std=std)
    return build_bert(cfg, w, batch=B, seq_len=T, head=head, dtype=dtype, attention_mask=mask), w


def _feeds(mask=False, seed=0):
    ids, types = _inputs(seed)
    return bert_feeds(ids, types, MASK if mask else None)


def _layer_inputs(cfg=CFG):
    return ["embeddings.output"] + [f"encoder.layer.{i}.output" for i in range(cfg.num_layers - 1)]


# =============================================================================== structure
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_mlp_structure(act):
    cfg = MLPConfig(in_features=5, hidden_sizes=(7, 6), out_features=3, activation=act)
    w = random_mlp_weights(cfg, seed=1)
    assert sorted(w) == sorted(f"layers.{i}.{k}" for i in range(3) for k in ("weight", "bias"))
    g = build_mlp(cfg, w, batch=4)
    g.validate()
    assert [n.name for n in g.inputs()] == ["x"] and g["x"].shape == (4, 5)
    assert [g.nodes[o].name for o in g.outputs] == ["logits"] and g["logits"].shape == (4, 3)
    assert g.scopes() == ["layers.0", "layers.1", "layers.2"]
    for i in range(3):
        assert g[f"layers.{i}.weight"].scope == f"layers.{i}"
    assert g["layers.1.output"].op == act and g["layers.1.output"].scope == "layers.1"
    assert g.op_histogram()["linear"] == 3
    x = np.random.default_rng(2).normal(size=(4, 5))
    h = x
    for i in range(3):
        h = h @ w[f"layers.{i}.weight"].T + w[f"layers.{i}.bias"]
        if i < 2:
            h = _NP_ACT[act](h)
    np.testing.assert_allclose(forward(g, {"x": x})[g["logits"].id], h, rtol=1e-12, atol=1e-14)


_NP_ACT = {"relu": lambda a: np.maximum(a, 0.0), "tanh": np.tanh,
           "gelu": lambda a: 0.5 * a * (1.0 + np.vectorize(math.erf)(a / math.sqrt(2.0)))}


def test_mlp_save_load_round_trip(tmp_path):
    cfg = MLPConfig(activation="gelu")
    g = build_mlp(cfg, random_mlp_weights(cfg, 3), batch=2)
    path = os.path.join(tmp_path, "mlp.ge")
    save(g, path)
    h = load(path)
    assert h.meta == g.meta and [n.to_json() for n in h] == [n.to_json() for n in g]
    x = np.random.default_rng(4).normal(size=(2, cfg.in_features))
    np.testing.assert_array_equal(forward(h, {"x": x})[h["logits"].id], forward(g, {"x": x})[g["logits"].id])


def test_mlp_without_bias_and_bad_activation():
    cfg = MLPConfig(in_features=2, hidden_sizes=(3,), out_features=1, bias=False)
    g = build_mlp(cfg, random_mlp_weights(cfg, 0), batch=1)
    assert [p.name for p in g.parameters()] == ["layers.0.weight", "layers.1.weight"]
    with pytest.raises(ValueError, match="unknown activation"):
        random_mlp_weights(MLPConfig(activation="swish"), 0)
    with pytest.raises(ValueError, match="layers.0.weight"):
        build_mlp(cfg, {}, batch=1)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("mask", [False, True])
def test_bert_structure(head, mask):
    g, w = _bert(head, mask)
    g.validate()
    assert [n.name for n in g.inputs()] == ["input_ids", "token_type_ids"] + (["attention_mask"] if mask else [])
    assert g["input_ids"].dtype == "int64" and g["token_type_ids"].dtype == "int64"
    if mask:
        assert g["attention_mask"].dtype == "bool" and g["attention_mask"].shape == (B, T)
    # parameter names are exactly the HF state_dict keys, each in its module's scope
    names = [p.name for p in g.parameters()]
    assert sorted(names) == sorted(bert_weight_shapes(CFG, head)) == sorted(w)
    for p in g.parameters():
        assert p.scope == p.name.rsplit(".", 1)[0]
        np.testing.assert_array_equal(g.arrays[p.id], w[p.name])
    out_name = "last_hidden_state" if head is None else "logits"
    assert [g.nodes[o].name for o in g.outputs] == [out_name]
    expect = {"mlm": (B, T, CFG.vocab_size), "classification": (B, CFG.num_labels),
              "token_classification": (B, T, CFG.num_labels), None: (B, T, CFG.hidden_size)}
    assert g[out_name].shape == expect[head]
    assert g["embeddings.output"].shape == (B, T, CFG.hidden_size)
    assert g["embeddings.position_ids"].op == "constant"
    for i in range(CFG.num_layers):
        p = f"encoder.layer.{i}"
        assert g[f"{p}.output"].shape == (B, T, CFG.hidden_size) and g[f"{p}.output"].op == "layer_norm"
        assert g[f"{p}.attention.self.probs"].shape == (B, CFG.num_heads, T, T)
        assert g[f"{p}.attention.self.probs"].scope == f"{p}.attention.self"
        for m in ("query", "key", "value"):
            assert {n.op for n in g.find(f"{p}.attention.self.{m}")} == {"linear", "parameter"}
        assert {n.op for n in g.find(f"{p}.intermediate")} >= {"linear", "gelu"}
    scopes = set(g.scopes())
    assert {"embeddings", "embeddings.LayerNorm", "encoder.layer.1.attention.self",
            "encoder.layer.1.attention.output", "encoder.layer.1.attention.output.LayerNorm",
            "encoder.layer.1.output.dense"} <= scopes
    if head == "mlm":
        assert {"cls.predictions", "cls.predictions.transform.LayerNorm", "cls.predictions.decoder"} <= scopes
        logits = g["logits"]
        # the decoder is tied: the same parameter node as the word-embedding table
        assert g.nodes[logits.inputs[1]].name == "embeddings.word_embeddings.weight"
        assert g.nodes[logits.inputs[2]].name == "cls.predictions.bias"
    if head == "classification":
        assert {"pooler", "pooler.dense", "pooler.activation", "classifier"} <= scopes
    if head == "token_classification":
        # the classifier reads the last layer's output at every position; there is no pooler
        logits = g["logits"]
        assert logits.scope == "classifier" and g.nodes[logits.inputs[0]].name == f"encoder.layer.{CFG.num_layers - 1}.output"
        assert "pooler" not in scopes


def test_bert_layer_input_has_four_consumers():
    g, _ = _bert("mlm")
    consumers = g.consumers()
    for i, name in enumerate(_layer_inputs()):
        p = f"encoder.layer.{i}"
        cons = consumers[g[name].id]
        assert len(cons) == 4, name
        got = sorted((g.nodes[c].op, g.nodes[c].scope) for c, _ in cons)
        assert got == sorted([("linear", f"{p}.attention.self.query"), ("linear", f"{p}.attention.self.key"),
                              ("linear", f"{p}.attention.self.value"), ("add", f"{p}.attention.output")])


def test_bert_save_load_round_trip(tmp_path):
    g, _ = _bert("mlm", mask=True)
    path = os.path.join(tmp_path, "bert.ge")
    save(g, path)
    h = load(path)
    assert [n.to_json() for n in h] == [n.to_json() for n in g]
    assert h.outputs == g.outputs and h.meta == g.meta
    feeds = _feeds(mask=True)
    a, b = forward(g, feeds), forward(h, feeds)
    np.testing.assert_array_equal(a[g["logits"].id], b[h["logits"].id])
    ra = backward(g, a, "logits[1,2,3]", retain=["embeddings.output"])
    rb = backward(h, b, "logits[1,2,3]", retain=["embeddings.output"])
    np.testing.assert_array_equal(ra.grad("embeddings.output"), rb.grad("embeddings.output"))


def test_bert_accepts_hf_state_dict_layout():
    w = random_bert_weights(CFG, seed=3, head="mlm")
    hf = {("bert." + k if not k.startswith("cls.") else k): v for k, v in w.items()}
    hf["cls.predictions.decoder.weight"] = w["embeddings.word_embeddings.weight"].copy()
    hf["cls.predictions.decoder.bias"] = w["cls.predictions.bias"].copy()
    hf["bert.embeddings.position_ids"] = np.arange(CFG.max_position)[None]
    g = build_bert(CFG, hf, batch=B, seq_len=T)
    g0 = build_bert(CFG, w, batch=B, seq_len=T)
    feeds = _feeds()
    np.testing.assert_array_equal(forward(g, feeds)[g["logits"].id], forward(g0, feeds)[g0["logits"].id])
    hf["cls.predictions.decoder.weight"] = hf["cls.predictions.decoder.weight"] + 1.0
    with pytest.raises(ValueError, match="tied"):
        build_bert(CFG, hf, batch=B, seq_len=T)


def test_bert_weight_errors():
    w = random_bert_weights(CFG, seed=0, head="classification")
    with pytest.raises(ValueError, match="classifier.weight"):
        build_bert(CFG, {k: v for k, v in w.items() if k != "classifier.weight"}, B, T, head="classification")
    bad = dict(w, **{"encoder.layer.1.attention.self.key.bias": np.zeros(3)})
    with pytest.raises(ValueError, match=r"key.bias.*shape \[3\]"):
        build_bert(CFG, bad, B, T, head="classification")
    with pytest.raises(ValueError, match="head"):
        build_bert(CFG, w, B, T, head="ner")
    with pytest.raises(ValueError, match="max_position"):
        build_bert(CFG, w, B, CFG.max_position + 1, head="classification")
    with pytest.raises(ValueError, match="multiple"):
        BertConfig.mini(hidden_size=30, num_heads=4)


def test_random_weights_are_deterministic_and_nontrivial():
    a, b = random_bert_weights(CFG, 5), random_bert_weights(CFG, 5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["cls.predictions.bias"], random_bert_weights(CFG, 6)["cls.predictions.bias"])
    ln = a["encoder.layer.0.output.LayerNorm.weight"]
    assert abs(ln.mean() - 1) < 0.1 and ln.std() > 0.01
    assert abs(a["encoder.layer.0.attention.self.query.weight"].std() - 0.02) < 0.005
    assert BertConfig.from_hf({"vocab_size": 9, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                               "intermediate_size": 4, "max_position_embeddings": 5}).num_heads == 2


def test_attention_mask_zeroes_masked_keys_and_hides_their_tokens():
    g, _ = _bert("mlm", mask=True)
    feeds = _feeds(mask=True)
    acts = forward(g, feeds)
    assert g.meta["mask_fill_value"] == mask_fill_value("float64") == np.finfo(np.float64).min
    for i in range(CFG.num_layers):
        probs = acts[g[f"encoder.layer.{i}.attention.self.probs"].id]
        np.testing.assert_array_equal(np.moveaxis(probs, 3, 1)[~MASK], 0.0)   # masked keys get exactly 0
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-14)
    # changing masked tokens changes nothing at unmasked positions
    feeds2 = dict(feeds, input_ids=np.where(MASK, feeds["input_ids"], (feeds["input_ids"] + 7) % CFG.vocab_size))
    l1, l2 = acts[g["logits"].id], forward(g, feeds2)[g["logits"].id]
    np.testing.assert_allclose(l1[MASK], l2[MASK], rtol=1e-13, atol=1e-13)
    assert not np.allclose(l1[~MASK], l2[~MASK])
    # ... and the gradient of a QoI at an unmasked position never reaches a masked token's embedding
    r = backward(g, acts, "logits[1,1,4]", retain=["embeddings.output"])
    ge = r.grad("embeddings.output")
    assert ge[1][MASK[1]].any() and np.all(ge[1][~MASK[1]] == 0) and not ge[0].any()


def test_float32_build_matches_float64():
    g64, w = _bert("classification", mask=True)
    g32 = build_bert(CFG, w, B, T, head="classification", dtype="float32", attention_mask=True)
    g32.validate()
    assert g32["logits"].dtype == "float32" and g32["embeddings.word_embeddings.weight"].dtype == "float32"
    feeds = _feeds(mask=True)
    np.testing.assert_allclose(forward(g32, feeds)[g32["logits"].id], forward(g64, feeds)[g64["logits"].id],
                               rtol=1e-4, atol=1e-5)


# =============================================================================== demo
def test_demo_runs_and_last_layer_isolates_the_mask():
    buf = io.StringIO()
    out = demo.run_demo(buf)
    text = buf.getvalue()
    assert "random" in text.lower() and "'are'" in text and demo.SENTENCE in text
    assert out["tokens"] == demo.SENTENCE.split()
    rows = [r for r in (line.split() for line in text.splitlines()) if len(r) == 6 and r[0].isdigit()]
    assert [r[1] for r in rows] == out["tokens"]           # one printed row per token, in order
    norms = np.array(out["grad_norm"])
    assert norms.shape == (len(out["tokens"]), len(out["columns"])) == (11, 3)
    m = out["mask_position"]
    assert out["tokens"][m] == "[MASK]" and out["target"] == "are"
    # a token's last-layer output feeds only its own logits: other rows are exactly zero there
    assert norms[m, -1] > 0 and np.all(np.delete(norms[:, -1], m) == 0)
    assert np.all(norms[:, :-1] > 0)                        # attention mixes tokens in earlier layers
    assert len(out["grad_x_input"]) == 11 and np.all(np.isfinite(out["grad_x_input"]))
    assert out["seconds"] < 2.0
    for r in rows:                                           # printed numbers are the returned ones
        np.testing.assert_allclose([float(v) for v in r[2:5]], norms[int(r[0])], rtol=1e-3)


# =============================================================================== torch parity
@pytest.fixture(scope="module")
def tr():
    pytest.importorskip("torch", reason="the parity tests compare with a PyTorch reference (pip install torch)")
    import torch_reference
    return torch_reference


def assert_rel(actual, expected, rtol=1e-10, what=""):
    """max |a - e| <= rtol * max |e| (exact zeros must be exact)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = np.max(np.abs(expected)) if expected.size else 0.0
    err = np.max(np.abs(actual - expected)) if expected.size else 0.0
    assert err <= rtol * scale, f"{what}: max error {err:.3e} vs scale {scale:.3e}"


def _torch_grads(tr, fwd, params, terms, hidden_names):
    """Run ``fwd`` (→ logits, hidden) and backprop Σ c·logits[idx]; return {name: grad}."""
    for p in params.values():
        p.grad = None
    logits, hidden = fwd()
    q = sum(c * logits[idx] for idx, c in terms)
    q.backward()
    grads = {k: (p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape))) for k, p in params.items()}
    for n in hidden_names:
        grads[n] = hidden[n].grad.numpy()
    return logits.detach().numpy(), grads


def _check_parity(tr, g, acts, out_name, fwd, params, qois, hidden_names, extra_inputs=()):
    ours = acts[g[out_name].id]
    logits_t, _ = fwd()
    assert_rel(ours, logits_t.detach().numpy(), what="forward")
    retain = [p.name for p in g.parameters()] + list(hidden_names) + list(extra_inputs)
    for qoi in qois:
        r = backward(g, acts, qoi, semirings=["real"], retain=retain)
        _, expect = _torch_grads(tr, fwd, params, qoi.terms, hidden_names)
        for name in [p.name for p in g.parameters()] + list(hidden_names):
            if name.endswith("attention.self.key.bias"):
                # softmax is shift-invariant per query row, so this gradient is 0 mathematically:
                # both sides must be rounding noise relative to the key weight's gradient
                ref = np.max(np.abs(expect[name.replace(".bias", ".weight")]))
                assert np.max(np.abs(r.grad(name))) <= 1e-12 * ref and np.max(np.abs(expect[name])) <= 1e-12 * ref
                continue
            assert_rel(r.grad(name), expect[name], what=f"{qoi} d/d{name}")
            assert np.any(expect[name] != 0), f"{qoi} d/d{name} is zero: the test would be vacuous"


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_mlp_parity_with_torch(tr, act):
    import torch

    cfg = MLPConfig(in_features=5, hidden_sizes=(8, 7), out_features=4, activation=act)
    w = random_mlp_weights(cfg, seed=11)
    g = build_mlp(cfg, w, batch=3)
    x = np.random.default_rng(12).normal(size=(3, 5))
    acts = forward(g, {"x": x})
    params = tr.torch_params(w)
    xt = torch.tensor(x, requires_grad=True)

    def fwd():
        xt.grad = None
        logits, hidden = tr.mlp_forward(cfg, params, xt, retain_grad=True)
        hidden["x"] = xt
        return logits, hidden

    qois = [select("logits", (0, 1)), difference("logits", (1, 2), (1, 0)),
            batch([select("logits", (0, 3)), select("logits", (2, 1))])]
    _check_parity(tr, g, acts, "logits", fwd, params, qois, ["layers.0.output", "layers.1.output", "x"])


BERT_CASES = [("mlm", False), ("classification", False), ("mlm", True), ("classification", True), (None, True),
              ("token_classification", True)]


@pytest.mark.parametrize("head,mask", BERT_CASES)
def test_bert_parity_with_torch(tr, head, mask):
    g, w = _bert(head, mask, seed=21)
    feeds = _feeds(mask, seed=22)
    acts = forward(g, feeds)
    params = tr.torch_params(w)

    def fwd():
        return tr.bert_forward(CFG, params, feeds["input_ids"], feeds["token_type_ids"],
                               feeds.get("attention_mask"), head=head, retain_grad=True)

    hidden = ["embeddings.output"] + [f"encoder.layer.{i}.{s}" for i in range(CFG.num_layers)
                                      for s in ("output", "attention.output", "attention.self.probs",
                                                "attention.self.output", "intermediate.output")]
    out = "logits" if head is not None else "last_hidden_state"
    if head == "classification":
        qois = [select(out, (0, 1)), difference(out, (1, 2), (1, 0)),
                batch([select(out, (0, 2)), select(out, (1, 1))])]
    elif head == "token_classification":
        qois = [select(out, (0, 3, 1)), difference(out, (1, 1, 2), (1, 1, 0)),
                batch([select(out, (0, 0, 2)), select(out, (1, 4, 0))])]
    else:
        last = 5 if head == "mlm" else 7
        qois = [select(out, (0, 3, last)), difference(out, (1, 1, 4), (1, 1, 9)),
                batch([select(out, (0, 0, 2)), select(out, (1, 3, last))])]
    _check_parity(tr, g, acts, out, fwd, params, qois, hidden)


def test_demo_numbers_match_torch(tr):
    import torch

    out = demo.run_demo(io.StringIO())
    cfg = BertConfig.mini(vocab_size=len(demo.VOCAB), max_position=16)
    params = tr.torch_params(random_bert_weights(cfg, seed=demo.SEED, head="mlm", std=demo.WEIGHT_STD))
    logits, hidden = tr.bert_forward(cfg, params, np.array([out["token_ids"]]), head="mlm", retain_grad=True)
    logits[0, out["mask_position"], demo.VOCAB.index("are")].backward()
    names = ["embeddings.output"] + [f"encoder.layer.{i}.output" for i in range(cfg.num_layers)]
    norms = np.stack([torch.linalg.norm(hidden[n].grad[0], dim=-1).numpy() for n in names], axis=1)
    assert_rel(out["grad_norm"], norms, what="demo grad norms")
    gxi = (hidden["embeddings.output"].grad[0] * hidden["embeddings.output"][0]).sum(-1).detach().numpy()
    assert_rel(out["grad_x_input"], gxi, what="demo grad.input")
    assert_rel(out["qoi_value"], logits[0, out["mask_position"], demo.VOCAB.index("are")].item(), what="qoi")


# =============================================================================== Hugging Face models
HF_CLASSES = {"mlm": "BertForMaskedLM", "classification": "BertForSequenceClassification",
              "token_classification": "BertForTokenClassification", None: "BertModel"}


def _hf_model(head, seed=0):
    torch = pytest.importorskip("torch", reason="the Hugging Face parity tests need torch")
    transformers = pytest.importorskip("transformers", reason="the Hugging Face parity tests need transformers")
    cfg = transformers.BertConfig(vocab_size=CFG.vocab_size, hidden_size=CFG.hidden_size, num_hidden_layers=CFG.num_layers,
                                  num_attention_heads=CFG.num_heads, intermediate_size=CFG.intermediate_size,
                                  max_position_embeddings=CFG.max_position, num_labels=CFG.num_labels,
                                  hidden_act="gelu", layer_norm_eps=1e-12)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = getattr(transformers, HF_CLASSES[head])(cfg).double().eval()
    with torch.no_grad():   # HF zero-initialises biases: randomise everything so no term vanishes
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return torch, model


def _hf_output(torch, model, feeds, head):
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(feeds["input_ids"]), token_type_ids=torch.from_numpy(feeds["token_type_ids"]),
                    attention_mask=torch.from_numpy(feeds["attention_mask"].astype(np.int64)))
    return (out.last_hidden_state if head is None else out.logits).numpy()


@pytest.mark.parametrize("head", HEADS)
def test_build_bert_from_hf_matches_transformers(head):
    torch, model = _hf_model(head, seed=31)
    g = build_bert_from_hf(model, B, T, head=head, attention_mask=True)
    feeds = _feeds(mask=True, seed=32)
    ours = forward(g, feeds)[g["last_hidden_state" if head is None else "logits"].id]
    assert_rel(ours, _hf_output(torch, model, feeds, head), rtol=1e-10, what=f"{HF_CLASSES[head]} forward")


def test_read_hf_checkpoint_round_trip(tmp_path):
    from graphengine.errors import ModelError
    from graphengine.models import read_hf_checkpoint

    pytest.importorskip("safetensors", reason="checkpoints are read with safetensors")
    torch, model = _hf_model("token_classification", seed=33)
    model.save_pretrained(str(tmp_path))
    config, weights = read_hf_checkpoint(str(tmp_path))
    assert config["num_hidden_layers"] == CFG.num_layers
    assert not any(k.startswith("bert.") for k in weights) and "embeddings.position_ids" not in weights
    g = build_bert(BertConfig.from_hf(config), weights, B, T, head="token_classification", attention_mask=True)
    feeds = _feeds(mask=True, seed=34)
    assert_rel(forward(g, feeds)[g["logits"].id], _hf_output(torch, model, feeds, "token_classification"),
               rtol=1e-10, what="checkpoint forward")
    with pytest.raises(ModelError, match="cannot read"):
        read_hf_checkpoint(str(tmp_path / "missing"))
