"""Integer and boolean ops (comparisons, bitwise, logical, cumsum): forward against torch, no
Jacobian, and in exported graphs a mask computed from the data routes the gradient like torch."""

import numpy as np
import pytest

from graphengine.engine import backward, forward, weighted
from graphengine.errors import GraphValidationError
from graphengine.ir import Graph, get_op

from test_ops_fd import NO_GRADIENT

torch = pytest.importorskip("torch")

INTS = np.array([[0, 3, -2, 7], [5, 5, 1, -1]])
OTHER = np.array([[1, 3, 4, -7], [5, 0, 1, 2]])
BOOLS = np.array([[True, False, True, False], [False, False, True, True]])

# (op, numpy inputs, torch function)
CASES = [
    ("eq", (INTS, OTHER), torch.eq), ("ne", (INTS, OTHER), torch.ne), ("lt", (INTS, OTHER), torch.lt),
    ("le", (INTS, OTHER), torch.le), ("gt", (INTS, OTHER), torch.gt), ("ge", (INTS, OTHER), torch.ge),
    ("lt", (INTS.astype(float) / 3, np.array(0.5)), torch.lt),
    ("bitwise_and", (INTS, OTHER), torch.bitwise_and), ("bitwise_or", (INTS, OTHER), torch.bitwise_or),
    ("bitwise_xor", (INTS, OTHER), torch.bitwise_xor), ("bitwise_not", (INTS,), torch.bitwise_not),
    ("bitwise_and", (BOOLS, BOOLS[::-1].copy()), torch.bitwise_and), ("bitwise_not", (BOOLS,), torch.bitwise_not),
    ("bitwise_and", (INTS.astype(np.int32), np.array(6, dtype=np.int32)), torch.bitwise_and),
    ("logical_and", (INTS, BOOLS), torch.logical_and), ("logical_or", (INTS, OTHER), torch.logical_or),
    ("logical_xor", (BOOLS, OTHER), torch.logical_xor), ("logical_not", (INTS,), torch.logical_not),
    ("cumsum", (INTS,), lambda x: torch.cumsum(x, 1)), ("cumsum", (BOOLS,), lambda x: torch.cumsum(x, 1)),
    ("cumsum", (INTS.astype(np.int32),), lambda x: torch.cumsum(x, 1)),
    ("argmax", (INTS,), lambda x: torch.argmax(x, 1)), ("argmin", (INTS,), lambda x: torch.argmin(x, 1)),
    ("argmax", (np.array([[0.5, 2.0, 2.0], [-1.0, -3.0, 4.0]]),), lambda x: torch.argmax(x, 1)),  # first on ties
]


def test_every_no_gradient_op_has_a_case():
    assert {c[0] for c in CASES} == NO_GRADIENT


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_forward_and_dtype_match_torch_and_there_is_no_jacobian(case):
    op, arrays, fn = case
    g = Graph()
    refs = [g.constant(a, name=f"c{i}") for i, a in enumerate(arrays)]
    y = g.call(op, *refs, name="y", **({"axis": 1} if op in ("cumsum", "argmax", "argmin") else {}))
    want = fn(*[torch.from_numpy(np.asarray(a)) for a in arrays]).numpy()
    got = forward(g, {})[y.id]
    assert y.dtype == got.dtype.name == want.dtype.name.replace("uint8", "bool")
    np.testing.assert_array_equal(got, want)
    values = [np.asarray(a) for a in arrays]
    assert all(get_op(op).jacobian(slot, values, got, y.attrs) is None for slot in range(len(arrays)))


def test_argmax_over_all_elements_and_keepdim():
    g = Graph()
    c = g.constant(INTS)
    flat, keep = g.call("argmax", c), g.call("argmin", c, axis=0, keepdim=True)
    acts = forward(g, {})
    assert flat.shape == () and int(acts[flat.id]) == int(torch.argmax(torch.from_numpy(INTS)))
    np.testing.assert_array_equal(acts[keep.id], torch.argmin(torch.from_numpy(INTS), 0, keepdim=True).numpy())


def test_float_operands_of_bitwise_ops_and_cumsum_are_refused():
    g = Graph()
    x = g.input("x", (2, 3))
    with pytest.raises(GraphValidationError, match="bitwise_and.*integer or bool"):
        g.call("bitwise_and", x, x)
    with pytest.raises(GraphValidationError, match="cumsum.*integer or bool"):
        g.call("cumsum", x, axis=0)


def test_comparison_mask_routes_the_gradient_like_a_finite_difference():
    """y = where(a > b, a·a, 3b): the comparison carries no gradient, the where routes it."""
    rng = np.random.default_rng(0)
    g = Graph()
    a, b = g.input("a", (3, 4)), g.input("b", (3, 4))
    mask = g.call("gt", a, b, name="mask")
    y = g.call("where", mask, g.call("mul", a, a), g.call("mul", b, g.constant(np.array(3.0))), name="y")
    feeds = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=(3, 4))}
    acts = forward(g, feeds)
    assert acts[mask.id].any() and not acts[mask.id].all()
    coef = rng.normal(size=(3, 4))
    res = backward(g, acts, weighted("y", coef), retain=["a", "b"])
    m = acts[mask.id]
    np.testing.assert_allclose(res.grad("a"), np.where(m, 2 * feeds["a"] * coef, 0.0), rtol=1e-14)
    np.testing.assert_allclose(res.grad("b"), np.where(m, 0.0, 3 * coef), rtol=1e-14)


def test_exported_data_dependent_mask_matches_autograd():
    from graphengine.frontends.torch import from_torch

    class Gate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 5)

        def forward(self, x, keep):
            h = self.lin(x)
            on = (h > 0.1) & (keep[:, None, :] != 0)          # gt, ne, bitwise_and on bool tensors
            pos = torch.cumsum(keep, dim=-1) * keep           # integer cumsum, int mul
            return torch.where(on, h * h, -h) + pos[:, None, :].to(h.dtype)

    torch.manual_seed(0)
    model = Gate().double().eval()
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    keep = torch.tensor([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0]])
    g = from_torch(model, (x, keep))
    assert {"gt", "ne", "bitwise_and", "cumsum"} <= set(g.op_histogram())
    for k in (keep, 1 - keep):  # the integer input changes without a re-export
        leaf = x.clone().requires_grad_(True)
        ref = model(leaf, k)
        acts = forward(g, {"x": x.numpy(), "keep": k.numpy()})
        np.testing.assert_allclose(acts[g.outputs[0]], ref.detach().numpy(), rtol=1e-12, atol=1e-12)
        coef = np.random.default_rng(1).normal(size=ref.shape)
        (want,) = torch.autograd.grad((ref * torch.from_numpy(coef)).sum(), leaf)
        got = backward(g, acts, weighted(g.nodes[g.outputs[0]].name, coef)).grad("x")
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12 * np.abs(want.numpy()).max())
