"""The pruned max-pair and max-abs dense-block kernels (:mod:`graphengine.kernels.cpu_block`)
against the plain ascending scan and the numpy reference on the dense Jacobian: bit-identical
values (signs of zeros included) and positions, on blocks where the bounds prune, where they
give up, with ties, and with ±0, ±inf and NaN in every input; and a built BERT whose layer norms
are pruned, on the CPU against the reference engine."""

import numpy as np
import pytest

from graphengine.ir.jacobian import LowRankBlock
from graphengine.kernels import cpu, cpu_block
from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights
from graphengine.engine import forward
from graphengine.semirings import get_semiring

from kernel_cases import assert_same, assert_same_pos
from test_devices import _compare


def _pair_out(B, n):
    return [np.empty((B, n)), np.empty((B, n)), np.empty((B, n), np.int64), np.empty((B, n), np.int64)]


def _check(a0, a1, d, u, v, oracle=False):
    """Pruned (from n = 1) == scan, for the pair on ⟨a0, a1⟩ and max-abs on |a0| (0̄ where the
    pair is 0̄); with ``oracle`` (inputs without NaN products: the reference lets a NaN
    candidate win, the kernels pass it over) also == the numpy reference on the dense block."""
    B, n = a0.shape
    got, want = _pair_out(B, n), _pair_out(B, n)
    with np.errstate(invalid="ignore", over="ignore"):
        cpu_block.block_pair(a0, a1, d, u, v, *got, 1)
        cpu_block.block_pair_scan(a0, a1, d, u, v, *want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(np.signbit(g), np.signbit(w))
    x = np.where((a0 == -np.inf) & (a1 == np.inf), -np.inf, np.abs(a0))
    go, gp, wo, wp = np.empty((B, n)), np.empty((B, n), np.int64), np.empty((B, n)), np.empty((B, n), np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        cpu_block.block_maxabs(x, d, u, v, go, gp, 1)
        cpu_block.block_maxabs_scan(x, d, u, v, wo, wp)
    np.testing.assert_array_equal(go, wo)
    np.testing.assert_array_equal(gp, wp)
    if oracle:
        dense = LowRankBlock(d, u, v).dense()
        with np.errstate(invalid="ignore", over="ignore"):
            ref = get_semiring("max").matmul((a0[:, None], a1[:, None]), dense)
            ref_abs = get_semiring("maxabs").matmul((x[:, None],), dense)
        assert_same("max", got[:2], [c[:, 0] for c in ref[0]], "pair vs reference")
        assert_same_pos(got[2:], [c[:, 0] for c in ref[1]], "pair vs reference")
        assert_same("maxabs", [go], [ref_abs[0][0][:, 0]], "maxabs vs reference")
        assert_same_pos([gp], [ref_abs[1][0][:, 0]], "maxabs vs reference")


def _layer_norm(rng, B, n, R):
    """Factors shaped like a layer norm's (R = 2) or a softmax's (R = 1)."""
    if R == 1:
        s = np.exp(rng.normal(size=(B, n)))
        s /= s.sum(-1, keepdims=True)
        return s, -s[..., None], s[..., None].copy()
    x = rng.normal(size=(B, n))
    xhat = (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-3)
    g = 1 + 0.2 * rng.normal(size=(B, n))
    return g.copy(), np.stack([-g / n, -g * xhat / n], -1), np.stack([np.ones_like(xhat), xhat], -1)


@pytest.mark.parametrize("style", ["prunes", "signed", "ties"])
def test_pruned_blocks_equal_the_scan_on_random_blocks(style):
    rng = np.random.default_rng({"prunes": 0, "signed": 1, "ties": 2}[style])
    for n in (1, 2, 3, 31, 64, 65, 200):
        for R in (1, 2):
            B = int(rng.integers(1, 6))
            d, u, v = _layer_norm(rng, B, n, R)
            if style == "signed":      # M⁺ negative at about half the sources: rows are scanned
                a0 = rng.normal(size=(B, n))
                a1 = a0 - np.abs(rng.normal(size=(B, n)))
            else:                      # paths of both signs at every source: the diagonal wins, bounds prune
                a0, a1 = np.abs(rng.standard_cauchy((B, n))), -np.abs(rng.normal(size=(B, n)))
            if style == "ties":        # repeated sources (equal candidates everywhere) and columns, a zero
                a0[:, 1::3], a1[:, 1::3] = a0[:, :1], a1[:, :1]     # row, ±0 adjoints, constant v
                u[:, 1::3], d[:, 1::3] = u[:, :1], d[:, :1]
                v[:, : n // 2] = v[:, :1]
                if n > 5:
                    u[:, 2] = 0.0
                    d[:, 2] = 0.0
                    a0[:, 3], a1[:, 3] = 0.0, -0.0
                    v[0] = 1.0
            dead = rng.random((B, n)) < 0.2
            a0[dead], a1[dead] = -np.inf, np.inf
            _check(a0, a1, d, u, v, oracle=n <= 65)


@pytest.mark.parametrize("where", ["a0", "a1", "d", "u", "v"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan, -0.0])
def test_edge_values_in_any_input_give_the_scan_result(where, value):
    rng = np.random.default_rng(3)
    B, n = 3, 70
    d, u, v = _layer_norm(rng, B, n, 2)
    a0, a1 = np.abs(rng.normal(size=(B, n))) + 0.5, -np.abs(rng.normal(size=(B, n)))
    arr = {"a0": a0, "a1": a1, "d": d, "u": u, "v": v}[where]
    arr[1, 5] = value                  # row 1 hit, rows 0 and 2 clean (and pruned)
    arr[2, 40] = -0.0 if value != -0.0 else 0.0
    if where == "a0" and value == -np.inf:
        a1[1, 5] = -np.inf             # a path of weight -inf (⟨-inf, +inf⟩ would be 0̄)
    _check(a0, a1, d, u, v, oracle=value == 0.0)


def test_sources_taken_out_of_order_keep_the_lowest_r_on_a_tie():
    # column 0 gets the same candidate 5.0 from sources 2 and 3; source 3's bound is larger
    # (|u[3, 1]| and max |v[:, 1]| over the row are large), so it is folded first: the tie
    # must still go to source 2, as in the ascending scan
    n = 8
    d = np.full((1, n), 1e-3)
    u = np.zeros((1, n, 2))
    v = np.zeros((1, n, 2))
    v[0, :, 0] = 1.0
    v[0, 1:, 1] = 1.0                  # column 0 has v = (1, 0): J[r, 0] = u[r, 0]
    u[0, 2] = (1.0, 0.0)
    u[0, 3] = (1.0, 4.0)
    a = np.full((1, n), 5.0)
    got = _pair_out(1, n)
    cpu_block.block_pair(a, a, d, u, v, *got, 1)
    assert got[0][0, 0] == 5.0 and got[2][0, 0] == 2
    o, p = np.empty((1, n)), np.empty((1, n), np.int64)
    cpu_block.block_maxabs(a, d, u, v, o, p, 1)
    assert o[0, 0] == 5.0 and p[0, 0] == 2
    _check(a, a, d, u, v, oracle=True)


@pytest.mark.parametrize("hidden", [64, 128])
def test_built_bert_with_pruned_layer_norms_matches_the_reference_engine(hidden, monkeypatch):
    monkeypatch.setattr(cpu_block, "PRUNE_FROM", 1)   # prune every block, softmax and layer norm
    widths = []
    for name in ("block_pair", "block_maxabs"):
        kernel = getattr(cpu, name)
        monkeypatch.setattr(cpu, name, lambda a, *r, k=kernel: (widths.append(a.shape[1]), k(a, *r))[1])
    cfg = BertConfig(hidden_size=hidden, num_layers=1, num_heads=2, intermediate_size=2 * hidden)
    g = build_bert(cfg, random_bert_weights(cfg, seed=hidden), batch=1, seq_len=4, head="mlm")
    acts = forward(g, bert_feeds(np.array([[2, 5, 7, 1]])))
    retain = ["embeddings.word", "embeddings.output", "encoder.layer.0.attention.self.probs"]
    _compare(g, acts, "logits[0,1,4] - logits[0,1,3]", ["max", "maxabs"], devices=("cpu",), retain=retain,
             prune=True)
    assert hidden in widths and 4 in widths        # the layer norms and the softmaxes went through them
