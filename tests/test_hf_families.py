"""Each named language-model family from a local directory written by ``save_pretrained``
(random tiny config, made here): forward and gradient parity against transformers + torch.autograd
in float32 and float64, a real/max/entropy backward, masks as inputs, and the CLI flow."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import hf_tiny as H  # noqa: E402
from graphengine.cli.main import main  # noqa: E402
from graphengine.engine import backward, forward  # noqa: E402
from graphengine.errors import GraphEngineError  # noqa: E402
from graphengine.frontends.hf import from_hf_dir  # noqa: E402
from graphengine.paths import top_path  # noqa: E402

FAMILIES = list(H.FAMILIES)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    dirs = {}
    for fam in FAMILIES:
        (root / fam).mkdir()
        dirs[fam] = H.write_family(fam, root / fam)
    return dirs


def _token_lookup(g):
    (node,) = [n for n in g.find(op="embedding") if g.nodes[n.inputs[1]].op == "input"]
    return node


def _torch_qoi(model, ids, qoi_terms, emb=None):
    out = model(inputs_embeds=emb).logits if emb is not None else model(torch.from_numpy(ids)).logits
    return sum(c * out[tuple(i)] for i, c in qoi_terms)


@pytest.mark.parametrize("family", FAMILIES)
def test_float32_parity_and_three_semirings(checkpoints, family):
    _, head, text, target, foil = H.FAMILIES[family]
    g, feeds, tokens = from_hf_dir(checkpoints[family], text=text, head=head, target=target, foil=foil)
    assert g.meta["hf_model_type"] == family and g.meta["decomposition"] == "fused" and g.meta["tokens"] == tokens
    ref = H.reference(checkpoints[family], head)
    ids = feeds["input_ids"]
    acts = forward(g, feeds)
    with torch.no_grad():
        want = ref(torch.from_numpy(ids)).logits.numpy()
    assert acts[g.outputs[0]].shape == want.shape
    assert np.max(np.abs(acts[g.outputs[0]] - want)) <= 1e-5

    from graphengine.engine import parse
    qoi = parse(g.meta["qoi"])
    pos = (ids.shape[1] - 1) if head == "causal_lm" else tokens.index("<mask>")
    assert [i for i, _ in qoi.terms] == [(0, pos, 8 if target == "sat" else 11), (0, pos, 9 if foil == "is" else 7)]
    lookup = _token_lookup(g)
    result = backward(g, acts, qoi, semirings=["real", "max", "entropy"], retain=[lookup.name])
    emb = H.token_embedding(ref)(torch.from_numpy(ids)).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(_torch_qoi(ref, ids, qoi.terms, emb), emb)
    got = result.grad(lookup.name)
    assert H.rel_err(got, grad.numpy()) <= 1e-4
    assert np.count_nonzero(np.abs(got[0, 0]) > 1e-3 * np.abs(got).max()) > 0  # the first token reaches the QoI

    comps = result.components(lookup.name, "max")
    hi, lo = (np.asarray(v) for v in list(comps.values())[:2])
    assert np.all(hi >= lo) and np.all(np.isfinite(hi))
    best = np.unravel_index(int(np.argmax(hi)), hi.shape)
    path = top_path(result, lookup.id, best, "max")
    assert abs(path.weight - hi[best]) <= 1e-9 * abs(hi[best])
    assert path.steps[-1].name == "logits"
    ent = result.components(lookup.name, "entropy")["entropy"]
    assert np.all(np.isfinite(ent)) and np.all(ent >= -1e-9) and np.max(ent) > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_float64_end_to_end_parity(checkpoints, family):
    _, head, text, *_ = H.FAMILIES[family]
    ids = np.array([[5, 6, 8, 10, 5, 11, 7]])
    g, feeds, _ = from_hf_dir(checkpoints[family], input_ids=ids[0], head=head, dtype="float64",
                              promote_float32=True)
    assert {n.dtype for n in g if n.dtype.startswith("float")} == {"float64"}
    if family == "gpt2":  # its spelled-out tanh GELU is one node, as in BERT
        assert g.op_histogram()["gelu"] == 2 and "tanh" not in g.op_histogram()
    ref = H.reference(checkpoints[family], head, torch.float64)
    acts = forward(g, feeds)
    lookup = _token_lookup(g)
    coef = np.random.default_rng(0).normal(size=acts[g.outputs[0]].shape)
    from graphengine.engine import weighted

    got = backward(g, acts, weighted("logits", coef), retain=[lookup.name]).grad(lookup.name)
    with H.Float64Everywhere():
        emb = H.token_embedding(ref)(torch.from_numpy(ids)).detach().requires_grad_(True)
        out = ref(inputs_embeds=emb).logits
        (grad,) = torch.autograd.grad((out * torch.from_numpy(coef)).sum(), emb)
    assert H.rel_err(acts[g.outputs[0]], out.detach().numpy()) <= 1e-10
    assert H.rel_err(got, grad.numpy()) <= 1e-10


@pytest.mark.parametrize("family", ["gpt_neox", "llama"])
def test_promoted_float64_matches_an_fx_rewritten_float64_program(checkpoints, family):
    """transformers computes GPT-NeoX's and Llama's softmax / RMSNorm / rotary tables in float32
    even in a float64 model, so torch as is is no float64 oracle. The oracle here is the model's
    own torch.export program with every float32 cast rewritten to float64 (hf_tiny.export_in_float64),
    run by torch with autograd; the IR exported with promote_float32 must match it to 1e-10."""
    _, head, *_ = H.FAMILIES[family]
    ids = np.array([[5, 6, 8, 10, 5, 11, 7]])
    g, feeds, _ = from_hf_dir(checkpoints[family], input_ids=ids, head=head, dtype="float64", promote_float32=True)
    assert g.meta["promote_float32"] and {n.dtype for n in g if n.dtype.startswith("float")} == {"float64"}
    ref = H.reference(checkpoints[family], head, torch.float64)
    emb = H.token_embedding(ref)(torch.from_numpy(ids)).detach()
    program, rewritten = H.export_in_float64(ref, {"inputs_embeds": emb})
    assert rewritten >= 4                                    # casts, softmax dtypes, dtype assertions
    emb.requires_grad_(True)
    want = program(inputs_embeds=emb).logits
    assert want.dtype == torch.float64
    with torch.no_grad():                                     # torch as is keeps its float32 islands
        assert H.rel_err(ref(inputs_embeds=emb).logits.numpy(), want.detach().numpy()) > 1e-9

    acts = forward(g, feeds)
    assert H.rel_err(acts[g.outputs[0]], want.detach().numpy()) <= 1e-10
    coef = np.random.default_rng(1).normal(size=tuple(want.shape))
    params = dict(program.named_parameters())
    wrt = [emb] + list(params.values())
    grads = torch.autograd.grad((want * torch.from_numpy(coef)).sum(), wrt, allow_unused=True)
    from graphengine.engine import weighted

    lookup = _token_lookup(g)
    result = backward(g, acts, weighted("logits", coef), retain=[lookup.name] + [p.name for p in g.parameters()])
    assert H.rel_err(result.grad(lookup.name), grads[0].numpy()) <= 1e-10
    torch_grads = {name: gr for name, gr in zip(params, grads[1:]) if gr is not None}
    prefix = ref.base_model_prefix + "."
    table = g.nodes[lookup.inputs[0]].name                   # the program reads inputs_embeds, not the table
    pairs = [(p.name, torch_grads.get(p.name, torch_grads.get(prefix + p.name))) for p in g.parameters()
             if p.name != table]
    assert all(gr is not None for _, gr in pairs) and len(pairs) == len(torch_grads) > 10
    scale = max(float(gr.abs().max()) for _, gr in pairs)   # analytic zeros: absolute against all gradients
    for name, gr in pairs:
        err = np.max(np.abs(result.grad(name) - gr.numpy()))
        # relative 1e-10 for every parameter whose gradient is at least 1e-4 of the largest; below that
        # (e.g. an analytically zero part) 1e-14 of the largest gradient, absolute: rounding noise
        assert err <= 1e-10 * max(float(gr.abs().max()), 1e-4 * scale), name


@pytest.mark.parametrize("family", ["gpt_neox", "llama"])
def test_float64_follows_torch_dtypes(checkpoints, family):
    """Without promotion the IR keeps torch's float32 islands inside a float64 model."""
    _, head, *_ = H.FAMILIES[family]
    ids = np.array([[5, 6, 8, 10]])
    g, feeds, _ = from_hf_dir(checkpoints[family], input_ids=ids, head=head, dtype="float64")
    assert g.nodes[g.outputs[0]].dtype == "float64"
    assert {n.dtype for n in g.find(op="softmax")} == {"float32"}
    if family == "llama":
        assert {n.dtype for n in g.find(op="rms_norm")} == {"float32"}
    ref = H.reference(checkpoints[family], head, torch.float64)
    with torch.no_grad():
        want = ref(torch.from_numpy(ids)).logits.numpy()
    assert np.max(np.abs(forward(g, feeds)[g.outputs[0]] - want)) <= 1e-5


def test_llama_granularity_matches_bert_under_each_policy(checkpoints):
    ids = [5, 6, 8, 10]
    grads = {}
    for policy in ("fused", "primitive", "paper"):
        g, feeds, _ = from_hf_dir(checkpoints["llama"], input_ids=ids, head="causal_lm", decompose=policy,
                                  dtype="float64", promote_float32=True)
        hist = g.op_histogram()
        assert g.meta["decomposition"] == policy
        if policy == "fused":
            assert hist["rms_norm"] == 2 * 2 + 1 and hist["silu"] == 2 and "sigmoid" not in hist and "rsqrt" not in hist
            (final,) = g.find("norm", op="rms_norm")
            assert g.nodes[final.inputs[1]].name == "norm.weight"
        else:
            assert "rms_norm" not in hist and "silu" not in hist and hist["sigmoid"] == 2
        acts = forward(g, feeds)
        lookup = _token_lookup(g)
        grads[policy] = backward(g, acts, "logits[0,3,7] - logits[0,3,9]", retain=[lookup.name]).grad(lookup.name)
    assert H.rel_err(grads["primitive"], grads["fused"]) <= 1e-6
    assert H.rel_err(grads["paper"], grads["fused"]) <= 1e-6


@pytest.mark.parametrize("family", ["roberta", "llama"])
def test_attention_mask_as_input_changes_without_reexport(checkpoints, family):
    _, head, *_ = H.FAMILIES[family]
    ids = np.array([[0, 5, 6, 8, 10, 2, 1]]) if family == "roberta" else np.array([[5, 6, 8, 10, 7, 1, 1]])
    g, feeds, _ = from_hf_dir(checkpoints[family], input_ids=ids, head=head, mask_input=True)
    assert [n.name for n in g.inputs()] == ["input_ids", "attention_mask"]
    assert feeds["attention_mask"].tolist() == [[1] * 7]
    ref = H.reference(checkpoints[family], head)
    for mask in ([[1] * 7], [[1, 1, 1, 1, 1, 0, 0]]):
        mask = np.array(mask)
        got = forward(g, {"input_ids": ids, "attention_mask": mask})[g.outputs[0]]
        with torch.no_grad():
            want = ref(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
        assert np.max(np.abs(got - want)) <= 1e-5
    assert np.max(np.abs(got - forward(g, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[g.outputs[0]])) > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_export_then_analyze(checkpoints, family, tmp_path, capsys):
    _, head, text, target, foil = H.FAMILIES[family]
    out = tmp_path / "m.ge"
    # --quiet silences graphengine's own progress notices (an export over a second announces
    # itself); third-party warnings and logs ignore it, so stderr must then be empty
    assert main(["--quiet", "export", "hf", checkpoints[family], "--text", text, "--head", head, "--target", target,
                 "--foil", foil, "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "qoi: logits[0," in printed.out and printed.err == ""  # nothing leaks onto the console
    report = tmp_path / "r.json"
    assert main(["analyze", str(out), "--inputs", str(tmp_path / "m.inputs.npz"), "--semiring", "real,max,entropy",
                 "-o", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert doc["semirings"] == ["real", "max", "entropy"]
    (name,) = doc["nodes"]  # default: the token-embedding lookup (no float input)
    assert doc["nodes"][name]["entropy"]["whole_node_entropy"] > 0
    assert doc["paths"]["max"] and doc["paths"]["max"][0]["steps"][0]["name"] == name
    ref = H.reference(checkpoints[family], head)
    ids = np.load(tmp_path / "m.inputs.npz")["input_ids"]
    with torch.no_grad():
        want = float(_torch_qoi(ref, ids, [(tuple(t[0]), t[1]) for t in doc["qoi"]["terms"]]))
    assert abs(doc["qoi"]["value"] - want) <= 1e-5


def test_info_scope_and_grep(checkpoints, tmp_path, capsys):
    out = tmp_path / "l.ge"
    assert main(["export", "hf", checkpoints["llama"], "--input-ids", "5,6,8", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--scope", "layers.1.mlp"]) == 0
    text = capsys.readouterr().out
    assert "silu" in text and "layers.1.mlp.down_proj" in text and "layers.0" not in text
    assert main(["info", str(out), "--grep", "^rms_norm$", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 5 and {r["op"] for r in rows} == {"rms_norm"} and rows[-1]["scope"] == "norm"
    assert main(["info", str(out), "--grep", "("]) == 2
    assert "not a regular expression" in capsys.readouterr().err


def test_errors_name_the_problem(checkpoints, tmp_path):
    d = checkpoints["gpt2"]
    with pytest.raises(GraphEngineError, match=r"'cabinet table' is 2 tokens"):
        from_hf_dir(d, text="the cat", head="causal_lm", target="cabinet table")
    with pytest.raises(GraphEngineError, match="exactly one <mask>"):
        from_hf_dir(checkpoints["bert"], text="the cat", head="mlm", target="sat")
    with pytest.raises(GraphEngineError, match="language-model head"):
        from_hf_dir(d, text="the cat", target="sat")
    with pytest.raises(GraphEngineError, match="lacks .* weight"):
        from_hf_dir(checkpoints["llama"], input_ids=[5, 6], head="classification")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-arch"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(GraphEngineError, match="no-such-arch"):
        from_hf_dir(tmp_path, input_ids=[1, 2])


def test_pytorch_bin_checkpoint_loads_with_weights_only(tmp_path):
    d = H.write_family("bert", tmp_path, seed=3, safetensors=False)
    assert (tmp_path / "pytorch_model.bin").exists() and not (tmp_path / "model.safetensors").exists()
    g, feeds, _ = from_hf_dir(d, input_ids=[0, 5, 6, 2], head="mlm")
    with torch.no_grad():
        want = H.reference(d, "mlm")(torch.from_numpy(feeds["input_ids"])).logits.numpy()
    assert np.max(np.abs(forward(g, feeds)[g.outputs[0]] - want)) <= 1e-5


@pytest.mark.parametrize("family,head", [("llama", "classification"), ("gpt2", "classification"),
                                         ("gpt2", "token_classification"), ("roberta", None)])
def test_other_heads_and_the_base_model(family, head, tmp_path):
    """Sequence classification of a decoder reads the last non-padding token, found in the graph
    (ne, argmax, a computed index): a different padding of the same length needs no re-export."""
    config = H.FAMILIES[family][0]()
    config.num_labels = 3
    cls = {"classification": transformers.AutoModelForSequenceClassification,
           "token_classification": transformers.AutoModelForTokenClassification, None: transformers.AutoModel}[head]
    torch.manual_seed(2)
    model = cls.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    model.save_pretrained(str(tmp_path))
    g, feeds, tokens = from_hf_dir(tmp_path, input_ids=[5, 6, 7, 1], head=head)
    assert tokens is None and g.nodes[g.outputs[0]].name == ("last_hidden_state" if head is None else "logits")
    ref = cls.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    for ids in ([[5, 6, 7, 1]], [[5, 6, 1, 1]]):
        ids = np.array(ids)
        with torch.no_grad():
            out = ref(torch.from_numpy(ids))
            want = (out.last_hidden_state if head is None else out.logits).numpy()
        assert np.max(np.abs(forward(g, {"input_ids": ids})[g.outputs[0]] - want)) <= 1e-5


def test_vocabulary_files_without_tokenizer_json(checkpoints, tmp_path):
    """A directory with vocab.txt + tokenizer_config.json is tokenized by transformers, locally."""
    import shutil

    for name in ("config.json", "model.safetensors"):
        shutil.copy(f"{checkpoints['bert']}/{name}", tmp_path / name)
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + H.WORDS) + "\n")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    g, feeds, tokens = from_hf_dir(tmp_path, text="the cat [MASK] on the table", head="mlm", target="sat", foil="is")
    assert tokens == ["[CLS]", "the", "cat", "[MASK]", "on", "the", "table", "[SEP]"]
    assert feeds["input_ids"].tolist() == [[2, 5, 6, 4, 10, 5, 11, 3]]
    assert g.meta["qoi"] == "logits[0,3,8] - logits[0,3,9]"
