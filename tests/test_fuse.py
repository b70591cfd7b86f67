"""RMS-norm fusion: the primitive spelling (Llama's RMSNorm, torch.nn.RMSNorm) becomes one
``rms_norm`` node under ``fused`` with torch's values and gradients; nothing else is touched."""

import numpy as np
import pytest

from graphengine.engine import backward, forward, select, weighted
from graphengine.ir import Graph
from graphengine.ir.passes import fuse_rms_norm

torch = pytest.importorskip("torch")
from graphengine.frontends.torch import from_torch  # noqa: E402


class LlamaStyle(torch.nn.Module):
    def __init__(self, n=6, eps=1e-5):
        super().__init__()
        self.weight = torch.nn.Parameter(1 + 0.3 * torch.randn(n))
        self.eps = eps

    def forward(self, x):
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class Block(torch.nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.norm, self.up, self.gate = norm, torch.nn.Linear(6, 8), torch.nn.Linear(6, 8)

    def forward(self, x):
        h = self.norm(x)
        return torch.nn.functional.silu(self.gate(h)) * self.up(h)


@pytest.mark.parametrize("make,dtype,tol", [(lambda: LlamaStyle(), torch.float32, 1e-5),
                                             (lambda: torch.nn.RMSNorm(6, eps=1e-5), torch.float64, 1e-10)],
                         ids=["llama-style-float32", "torch.nn.RMSNorm-float64"])
def test_rms_norm_and_silu_are_one_node_each_with_torch_gradients(make, dtype, tol):
    torch.manual_seed(0)
    model = Block(make()).to(dtype).eval()
    if isinstance(model.norm, torch.nn.RMSNorm):
        with torch.no_grad():
            model.norm.weight.mul_(1 + 0.3 * torch.randn(6, dtype=dtype))
    x = torch.randn(2, 3, 6, dtype=dtype)
    g = from_torch(model, (x,))
    hist = g.op_histogram()
    assert hist["rms_norm"] == 1 and hist["silu"] == 1
    assert not {"pow", "rsqrt", "sigmoid", "mean"} & set(hist)
    (norm,) = g.find(op="rms_norm")
    assert norm.scope == "norm" and g.nodes[norm.inputs[1]].name == "norm.weight" and abs(norm.attrs["eps"] - 1e-5) < 1e-11
    leaf = x.clone().requires_grad_(True)
    ref = model(leaf)
    acts = forward(g, {"x": x.numpy()})
    assert np.max(np.abs(acts[g.outputs[0]] - ref.detach().numpy())) <= tol
    coef = np.random.default_rng(0).normal(size=ref.shape)
    wants = torch.autograd.grad((ref * torch.from_numpy(coef)).sum(), [leaf, model.norm.weight])
    res = backward(g, acts, weighted(g.nodes[g.outputs[0]].name, coef))
    for name, want in zip(("x", "norm.weight"), wants):
        want = want.numpy()
        assert np.max(np.abs(res.grad(name) - want)) <= 10 * tol * np.max(np.abs(want))


def test_float32_island_in_a_float64_model_keeps_its_dtype():
    torch.manual_seed(0)
    model = LlamaStyle().double().eval()
    x = torch.randn(2, 6, dtype=torch.float64)
    g = from_torch(model, (x,))
    (norm,) = g.find(op="rms_norm")
    assert norm.dtype == "float32" and len(norm.inputs) == 1  # the weight multiplies after the cast back
    p = from_torch(model, (x,), promote_float32=True)
    (norm,) = p.find(op="rms_norm")
    assert norm.dtype == "float64" and p.nodes[norm.inputs[1]].name == "weight"


def test_a_shared_intermediate_is_not_fused():
    g = Graph()
    x = g.input("x", (2, 4))
    v = g.call("mean", g.call("pow", x, exponent=2.0), axes=[1], keepdim=True, name="v")
    y = g.call("mul", x, g.call("rsqrt", g.call("add", v, g.constant(np.array(1e-6)))), name="y")
    g.mark_output(y, v)  # the mean square is an output too: the pattern must stay spelled out
    assert fuse_rms_norm(g) is g
    h = Graph()
    x = h.input("x", (2, 4))
    v = h.call("mean", h.call("pow", x, exponent=3.0), axes=[1], keepdim=True)  # not a square
    h.mark_output(h.call("mul", x, h.call("rsqrt", h.call("add", v, h.constant(np.array(1e-6))))))
    assert fuse_rms_norm(h) is h


def test_spelled_out_tanh_gelu_becomes_one_gelu_node():
    transformers = pytest.importorskip("transformers")
    from transformers.activations import NewGELUActivation

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), NewGELUActivation(), torch.nn.Linear(6, 3)).double().eval()
    x = torch.randn(2, 4, dtype=torch.float64)
    g = from_torch(model, (x,))
    assert g.op_histogram()["gelu"] == 1 and not {"tanh", "pow"} & set(g.op_histogram())
    (gelu,) = g.find(op="gelu")
    assert gelu.attrs["approximate"] == "tanh" and gelu.scope == "1"
    leaf = x.clone().requires_grad_(True)
    ref = model(leaf)
    acts = forward(g, {"input": x.numpy()})
    np.testing.assert_allclose(acts[g.outputs[0]], ref.detach().numpy(), rtol=1e-12, atol=1e-13)
    (want,) = torch.autograd.grad(ref[1, 2], leaf)
    got = backward(g, acts, select(g.nodes[g.outputs[0]].name, (1, 2)))
    np.testing.assert_allclose(got.grad("input"), want.numpy(), rtol=1e-10, atol=1e-13)


def test_primitive_tanh_gelu_round_trips_through_fuse():
    from graphengine.ir.passes import decompose, fuse_gelu_tanh

    g = Graph()
    x = g.input("x", (3,))
    g.mark_output(g.call("gelu", x, name="y", approximate="tanh"))
    spelled = decompose(g, "primitive")
    assert "gelu" not in spelled.op_histogram()
    back = fuse_gelu_tanh(spelled)
    assert [n.op for n in back if n.op != "input"] == ["gelu"] and back["y"].attrs["approximate"] == "tanh"
    v = np.array([-1.5, 0.2, 2.0])
    np.testing.assert_allclose(forward(back, {"x": v})[back["y"].id], forward(g, {"x": v})[g["y"].id], rtol=1e-15)
