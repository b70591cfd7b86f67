"""Vision models through the torch frontend, against torch: a plain CNN (Conv2d with stride,
padding, dilation and groups, BatchNorm2d in eval, ReLU, MaxPool2d, AvgPool2d,
AdaptiveAvgPool2d, Flatten, Linear), a Conv1d network and a Hugging Face ViT saved with
``save_pretrained`` and loaded back. Forward and gradient parity (float32: forward ≤ 1e-5 abs,
gradients ≤ 1e-4 relative to the largest; float64 ≤ 1e-10 relative), a real + max + entropy
backward, and ``graphengine analyze`` on an image from the command line."""

import json
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch frontend needs torch")

import graphengine as ge  # noqa: E402
from graphengine.cli import main  # noqa: E402
from graphengine.engine import backward, forward, weighted  # noqa: E402
from graphengine.errors import GraphEngineError  # noqa: E402
from graphengine.frontends.torch import from_torch  # noqa: E402
from graphengine.paths import top_path  # noqa: E402

nn = torch.nn

CNN_SOURCE = textwrap.dedent("""
    import torch
    from torch import nn

    def make_cnn():
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=3), nn.BatchNorm2d(6), nn.ReLU(),
            nn.Conv2d(6, 8, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            nn.AvgPool2d(2, stride=1),
            nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(), nn.Linear(48, 4))
        with torch.no_grad():                  # non-trivial running statistics, as after training
            for bn in (net[1], net[4]):
                bn.running_mean.normal_(); bn.running_var.uniform_(0.5, 2.0)
                bn.weight.normal_(); bn.bias.normal_()
        return net.eval()

    def make_conv1d():
        torch.manual_seed(1)
        net = nn.Sequential(
            nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), nn.BatchNorm1d(6, affine=False), nn.ReLU(),
            nn.MaxPool1d(3, stride=2, padding=1), nn.AvgPool1d(2, ceil_mode=True),
            nn.AdaptiveMaxPool1d(4), nn.AdaptiveAvgPool1d(3), nn.Flatten(), nn.Linear(18, 2))
        with torch.no_grad():
            net[1].running_mean.normal_(); net[1].running_var.uniform_(0.5, 2.0)
        return net.eval()
""")


@pytest.fixture(scope="module")
def factories(tmp_path_factory):
    path = tmp_path_factory.mktemp("vision") / "vision_models.py"
    path.write_text(CNN_SOURCE)
    namespace = {}
    exec(compile(CNN_SOURCE, str(path), "exec"), namespace)
    return path, namespace


def _check_parity(model, x, dtype, semirings=("real", "max", "entropy")):
    """Export ``model`` at ``dtype``, compare forward and input/parameter gradients with torch,
    run a multi-semiring backward; return (graph, acts, result)."""
    tdtype = getattr(torch, dtype)
    model = model.to(tdtype).eval()
    xt = torch.from_numpy(x.astype(dtype))
    g = from_torch(model, (xt,))
    (inp,) = g.inputs()
    acts = forward(g, {inp.name: xt.numpy()})
    out = g.nodes[g.outputs[0]]
    ref_model_out = model(xt)
    ref = (ref_model_out.logits if hasattr(ref_model_out, "logits") else ref_model_out).detach().numpy()
    y = acts[out.id]
    if dtype == "float32":
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5)
    else:
        np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())

    coef = np.random.default_rng(0).normal(size=y.shape)
    xg = xt.clone().requires_grad_(True)
    model.zero_grad()
    res = model(xg)
    res = res.logits if hasattr(res, "logits") else res
    (res * torch.from_numpy(coef.astype(dtype))).sum().backward()
    result = backward(g, acts, weighted(out.name, coef), semirings=list(semirings))
    tol = 1e-4 if dtype == "float32" else 1e-10
    pairs = [(inp.name, xg.grad)] + [(name, p.grad) for name, p in model.named_parameters()]
    names = {n.name for n in g.parameters()}
    pairs = [(name, want.numpy()) for name, want in pairs if name in names or name == inp.name]
    # a gradient that is zero analytically (an attention key bias: softmax ignores a shift of
    # every key) is rounding noise in both: it is compared against the scale of all gradients
    floor = 1e-6 * max(np.abs(want).max() for _, want in pairs)
    checked = 0
    for name, want in pairs:
        got = result.grad(name)
        scale = max(np.abs(want).max(), floor)
        assert np.abs(got - want).max() <= tol * scale, f"{dtype} gradient of {name}"
        checked += 1
    assert checked == 1 + len(list(model.parameters()))
    for s in semirings:
        assert result.retained(s)
    return g, acts, result


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cnn_matches_torch(factories, dtype):
    g, acts, result = _check_parity(factories[1]["make_cnn"](), np.random.default_rng(2).normal(size=(2, 3, 13, 11)), dtype)
    ops = {n.op for n in g}
    assert {"windows", "conv", "batch_norm", "max_pool", "window_mean"} <= ops
    assert [n.scope for n in g if n.op == "conv"] == ["0", "3"]
    (inp,) = g.inputs()
    for component in result.components(inp.id, "entropy").values():
        assert np.isfinite(component).all()
    path = top_path(result, inp.id, (0, 0, 6, 5), "max")
    assert path.steps[-1].name == g.nodes[g.outputs[0]].name
    assert path.weight == pytest.approx(result.components(inp.id, "max")["max"][0, 0, 6, 5], rel=1e-9)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv1d_matches_torch(factories, dtype):
    g, _, _ = _check_parity(factories[1]["make_conv1d"](), np.random.default_rng(3).normal(size=(2, 4, 17)), dtype)
    pools = [n.attrs for n in g if n.op == "max_pool"]             # torch lowers 1-d max pools to 2-d
    assert [len(a["kernel"] or []) for a in pools] == [2, 0] and pools[1]["output_size"] == [1, 4]
    assert [len(n.attrs["kernel"]) for n in g if n.op == "windows" and n.attrs["kernel"]][:1] == [1]


def test_conv3d_and_3d_pools_match_torch():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv3d(2, 3, (2, 3, 2), stride=(1, 2, 1), padding=(1, 0, 1)), nn.ReLU(),
                        nn.MaxPool3d(2, ceil_mode=True), nn.AvgPool3d((1, 2, 2), padding=(0, 1, 1)),
                        nn.AdaptiveAvgPool3d((1, 2, 1)), nn.Flatten(), nn.Linear(6, 2))
    _check_parity(net, np.random.default_rng(7).normal(size=(1, 2, 4, 7, 5)), "float64")


def test_unbatched_image_and_reflect_padding_match_torch():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), nn.MaxPool2d(2),
                        nn.AvgPool2d(2, stride=1), nn.AdaptiveAvgPool2d((2, 1)), nn.AdaptiveMaxPool2d(1))
    g, _, _ = _check_parity(net, np.random.default_rng(9).normal(size=(2, 8, 7)), "float64")
    assert g.inputs()[0].shape == (2, 8, 7) and g.nodes[g.outputs[0]].shape == (3, 1, 1)


def test_cnn_under_every_policy_and_granularity(factories):
    model = factories[1]["make_cnn"]().double()
    x = torch.from_numpy(np.random.default_rng(8).normal(size=(1, 3, 9, 9)))
    grads = []
    for policy in ("fused", "paper"):
        g = from_torch(model, (x,), decompose=policy)
        assert g.meta["decomposition"] == policy
        acts = forward(g, {"input": x.numpy()})
        for granularity in ("scalar", "paper"):
            r = backward(g, acts, weighted(g.nodes[g.outputs[0]].name, np.ones((1, 4))),
                         semirings=["real", "max", "entropy"], granularity=granularity)
            grads.append(r.grad("input"))
    for grad in grads[1:]:
        np.testing.assert_allclose(grad, grads[0], rtol=1e-10, atol=1e-12 * np.abs(grads[0]).max())


def _vit_dir(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=24, num_labels=3)
    torch.manual_seed(0)
    transformers.ViTForImageClassification(cfg).save_pretrained(tmp_path / "vit")
    return tmp_path / "vit"


def _load_vit(path):
    """With transformers' default attention (sdpa), which torch.export lowers to float ops of
    the model's dtype; eager attention computes its softmax in float32 even in a float64 model."""
    import transformers
    return transformers.ViTForImageClassification.from_pretrained(path).eval()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hf_vit_matches_torch(tmp_path, dtype):
    model = _load_vit(_vit_dir(tmp_path))
    g, _, result = _check_parity(model, np.random.default_rng(4).normal(size=(1, 3, 8, 8)), dtype)
    patch = [n for n in g if n.op == "conv"]
    assert [n.scope for n in patch] == ["vit.embeddings.patch_embeddings.projection"]
    (win,) = [g.nodes[i] for i in patch[0].inputs if g.nodes[i].op == "windows"]
    assert win.attrs["kernel"] == [4, 4] and win.attrs["stride"] == [4, 4]


def test_transposed_conv_names_the_op_and_module_and_batch_norm_exports_in_eval_mode():
    with pytest.raises(GraphEngineError) as err:
        from_torch(nn.Sequential(nn.ConvTranspose2d(2, 2, 3)).eval(), (torch.randn(1, 2, 4, 4),))
    msg = str(err.value)
    assert "\n" not in msg and msg.endswith("aten.convolution.default (transposed convolution) at 0")
    g = from_torch(nn.Sequential(nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2)).train(), (torch.randn(2, 2, 4, 4),))
    assert [n.op for n in g if n.scope == "1" and n.op not in ("reshape", "constant")] == ["parameter", "parameter", "batch_norm"]


def test_cnn_and_vit_analyze_an_image_from_the_cli(factories, tmp_path, capsys):
    path, _ = factories
    cnn = tmp_path / "cnn.ge"
    assert main(["export", "torch", f"{path}:make_cnn", "--example", "float32[1,3,13,11]", "-o", str(cnn)]) == 0
    g = ge.load(str(cnn))
    (inp,) = g.inputs()
    capsys.readouterr()
    assert main(["info", str(cnn), "--json"]) == 0
    ops = json.loads(capsys.readouterr().out)["ops"]
    assert {"windows": 5, "conv": 2, "batch_norm": 2, "max_pool": 1, "window_mean": 3} == {
        k: v for k, v in ops.items() if k in ("windows", "conv", "batch_norm", "max_pool", "window_mean")}
    image = tmp_path / "image.npz"
    np.savez(image, **{inp.name: np.random.default_rng(5).normal(size=(1, 3, 13, 11)).astype("float32")})
    out = g.nodes[g.outputs[0]].name
    report = tmp_path / "cnn.json"
    assert main(["analyze", str(cnn), "--inputs", str(image), "--qoi", f"{out}[0,1] - {out}[0,0]",
                 "--semiring", "real,max,entropy", "--nodes", inp.name, "-o", str(report)]) == 0
    doc = json.loads(report.read_text())
    steps = doc["paths"]["max"][0]["steps"]
    assert steps[0]["name"] == inp.name and steps[-1]["name"] == out
    assert {"conv", "max_pool"} <= {g[s["name"]].op for s in steps}
    assert doc["nodes"][inp.name]["entropy"]["whole_node_entropy"] > 0

    vit_dir = _vit_dir(tmp_path)
    factory = tmp_path / "vit_factory.py"
    factory.write_text(textwrap.dedent(f"""
        import transformers

        def make():
            return transformers.ViTForImageClassification.from_pretrained({str(vit_dir)!r}).eval()
    """))
    vit, picture = tmp_path / "vit.ge", tmp_path / "picture.npy"
    pixels = np.random.default_rng(6).normal(size=(1, 3, 8, 8)).astype("float32")
    np.save(picture, pixels)
    assert main(["export", "torch", f"{factory}:make", "--example", str(picture), "-o", str(vit)]) == 0
    g = ge.load(str(vit))
    (inp,) = g.inputs()
    assert inp.shape == (1, 3, 8, 8) and inp.dtype == "float32"
    np.savez(image, **{inp.name: pixels})
    report = tmp_path / "vit.json"
    assert main(["analyze", str(vit), "--inputs", str(image), "--qoi", "logits[0,2]",
                 "--semiring", "real,max,entropy", "--nodes", inp.name, "-o", str(report)]) == 0
    doc = json.loads(report.read_text())
    steps = doc["paths"]["max"][0]["steps"]
    assert steps[1]["scope"] == "vit.embeddings.patch_embeddings.projection" and steps[-1]["name"] == "logits"
    capsys.readouterr()
    assert main(["export", "torch", f"{path}:make_cnn", "--example", str(tmp_path / "none.npy"), "-o", str(cnn)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphengine: error: --example") and "no such file" in err and err.count("\n") == 1


# ================================================================ export hf DIR --image / --pixels
LABELS = {0: "cat", 1: "dog", 2: "bird"}


@pytest.fixture(scope="module")
def vit_with_processor(tmp_path_factory):
    """A random ViT classifier (16×16 images, 8×8 patches, hidden 32) with named labels and a
    ViTImageProcessor saved next to it, and a 20×24 RGB PNG written with Pillow."""
    transformers = pytest.importorskip("transformers")
    image_mod = pytest.importorskip("PIL.Image", reason="reading PNG files needs Pillow")
    root = tmp_path_factory.mktemp("vit_dir")
    cfg = transformers.ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=48, num_labels=3, id2label=LABELS,
                                 label2id={v: k for k, v in LABELS.items()})
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    model.save_pretrained(root / "vit")
    transformers.ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(root / "vit")
    pixels = np.random.default_rng(11).integers(0, 256, size=(20, 24, 3)).astype(np.uint8)
    image_mod.fromarray(pixels).save(root / "picture.png")
    return root / "vit", root / "picture.png"


def test_export_hf_image_then_analyze_from_the_cli(vit_with_processor, tmp_path, capsys):
    import transformers
    from PIL import Image

    vit_dir, picture = vit_with_processor
    out = tmp_path / "vit.ge"
    assert main(["--quiet", "export", "hf", str(vit_dir), "--image", str(picture), "--head", "image_classification",
                 "--target", "dog", "--foil", "cat", "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "qoi: logits[0,1] - logits[0,0]" in printed.out and printed.err == ""
    g = ge.load(str(out))
    feeds = dict(np.load(tmp_path / "vit.inputs.npz"))
    assert list(feeds) == ["pixel_values"] and [n.name for n in g.inputs()] == ["pixel_values"]
    # the inputs are the directory's processor applied to the picture, computed independently here
    processor = transformers.AutoImageProcessor.from_pretrained(str(vit_dir), local_files_only=True)
    want_pixels = processor(images=Image.open(picture).convert("RGB"), return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(feeds["pixel_values"], want_pixels)
    assert feeds["pixel_values"].shape == (1, 3, 16, 16) and feeds["pixel_values"].dtype == np.float32

    ref = transformers.ViTForImageClassification.from_pretrained(str(vit_dir), attn_implementation="eager").eval()
    with torch.no_grad():
        want = ref(torch.from_numpy(feeds["pixel_values"])).logits.numpy()
    got = forward(g, feeds)[g.outputs[0]]
    assert np.max(np.abs(got - want)) <= 1e-5

    report = tmp_path / "vit.json"
    assert main(["analyze", str(out), "--inputs", str(tmp_path / "vit.inputs.npz"), "--semiring", "real,max,entropy",
                 "-o", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert abs(doc["qoi"]["value"] - float(want[0, 1] - want[0, 0])) <= 1e-5
    assert list(doc["nodes"]) == ["pixel_values"]                  # default: the float input
    assert doc["nodes"]["pixel_values"]["entropy"]["whole_node_entropy"] > 0
    steps = doc["paths"]["max"][0]["steps"]
    assert steps[0]["name"] == "pixel_values" and steps[1]["scope"] == "embeddings.patch_embeddings.projection"
    assert steps[-1]["name"] == "logits"


def test_export_hf_pixels_raw_arrays_and_label_indices(vit_with_processor, tmp_path):
    """--pixels feeds preprocessed values as they are (also where there is no processor); a raw
    [H, W, C] array goes through the processor; labels may be given by index."""
    import shutil

    import transformers

    from graphengine.frontends.hf import from_hf_dir

    vit_dir, _ = vit_with_processor
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(vit_dir / name, bare / name)
    pixels = np.random.default_rng(12).normal(size=(1, 3, 16, 16))
    g, feeds, tokens = from_hf_dir(bare, pixels=pixels, head="image_classification", target="2", dtype="float64")
    assert tokens is None and g.meta["qoi"] == "logits[0,2]" and feeds["pixel_values"].dtype == np.float64
    ref = transformers.ViTForImageClassification.from_pretrained(str(bare), attn_implementation="eager").eval()
    with torch.no_grad():
        want = ref.float()(torch.from_numpy(pixels.astype(np.float32))).logits.numpy()
    assert np.max(np.abs(forward(g, feeds)[g.outputs[0]] - want)) <= 1e-5

    raw = np.random.default_rng(13).integers(0, 256, size=(18, 18, 3)).astype(np.uint8)
    g, feeds, _ = from_hf_dir(vit_dir, image=raw)                # base model: last_hidden_state
    processor = transformers.AutoImageProcessor.from_pretrained(str(vit_dir), local_files_only=True)
    np.testing.assert_array_equal(feeds["pixel_values"], processor(images=raw, return_tensors="np")["pixel_values"])
    assert g.nodes[g.outputs[0]].name == "last_hidden_state" and not g.find("pooler")


def test_export_hf_image_errors_are_one_line(vit_with_processor, tmp_path, capsys):
    import shutil

    vit_dir, picture = vit_with_processor
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(vit_dir / name, bare / name)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    np.save(tmp_path / "gray.npy", np.zeros((1, 1, 16, 16), np.float32))
    cases = [(["--image", str(tmp_path / "broken.png")], str(vit_dir), "not an image Pillow can read"),
             (["--image", str(picture)], str(bare), "no preprocessor_config.json .* --pixels FILE.npy"),
             (["--pixels", str(tmp_path / "gray.npy")], str(vit_dir), r"must be shaped \[N, 3, H, W\].*\[1, 1, 16, 16\]"),
             (["--image", str(tmp_path / "none.png")], str(vit_dir), "no such file"),
             (["--image", str(picture), "--head", "image_classification", "--target", "fish"], str(vit_dir),
              r"label 'fish' is neither a name in the config's id2label \(cat, dog, bird\)")]
    import re

    for args, directory, match in cases:
        capsys.readouterr()
        assert main(["--quiet", "export", "hf", directory, *args, "-o", str(tmp_path / "x.ge")]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("graphengine: error: ") and err.count("\n") == 1 and re.search(match, err), err
