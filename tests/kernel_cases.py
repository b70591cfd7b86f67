"""Inputs shared by tests/test_kernels.py and tests/test_devices.py: semiring values with 0̄
entries and ties, weights with exact zeros, batch dims that broadcast, factored dense blocks,
and comparisons against the numpy reference (exact for the selective and counting semirings)."""

from __future__ import annotations

import numpy as np

from graphengine.ir.jacobian import DenseBlock, LowRankBlock
from graphengine.semirings import SEMIRINGS, get_semiring

ALL = sorted(SEMIRINGS) + ["kbest:3", "kbestabs:2", "kbest:1"]
EXACT = {"max", "maxabs", "maxplus", "bool", "count", "kbest:3", "kbestabs:2", "kbest:1"}


def semiring_value(sr, shape, rng, dead=0.25, ties=True):
    """A reachable-looking value: ⊕ of two lifted random weights, some entries 0̄, and (with
    ``ties``) entry 2 equal to entry 1 along the last axis, so that reductions see ties."""
    v = sr.plus(sr.lift(rng.normal(size=shape)), sr.lift(rng.normal(size=shape)))[0]
    v = tuple(np.array(c) for c in sr.where(rng.random(shape) < dead, sr.zeros(shape), v))
    if ties and shape and shape[-1] > 2:
        for c in v:
            c[..., 2] = c[..., 1]
    return v


def weights(shape, rng, ties=True):
    """Random weights with an exact-zero row 0 and (with ``ties``) row 2 equal to row 1, so
    that with :func:`semiring_value` the products of n = 1 and n = 2 tie."""
    w = rng.normal(size=shape)
    if shape[-2] > 1:
        w[..., 0, :] = 0.0
    if ties and shape[-2] > 2:
        w[..., 2, :] = w[..., 1, :]
    return w


def softmax_block(batch, n, rng):
    s = rng.random(batch + (n,)) + 0.05
    s /= s.sum(-1, keepdims=True)
    return DenseBlock(axes=(len(batch),), factors=LowRankBlock(s, -s[..., None], s[..., None]))


def layer_norm_block(batch, n, rng):
    x = rng.normal(size=batch + (n,))
    xhat = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)
    g = rng.normal(size=batch + (n,))
    u = np.stack([-g / n, -g * xhat / n], axis=-1)
    v = np.stack([np.ones_like(xhat), xhat], axis=-1)
    return DenseBlock(axes=(len(batch),), factors=LowRankBlock(g, u, v))


def assert_same(name, got, want, what=""):
    """Values: bit-identical for EXACT semirings, else ≤ 1e-12 relative to the array's largest
    finite magnitude (infinities must match exactly)."""
    assert len(got) == len(want), what
    for c, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, f"{what} component {c}: shape {g.shape} vs {w.shape}"
        if name in EXACT:
            np.testing.assert_array_equal(g, w, err_msg=f"{name} {what} component {c}")
            continue
        np.testing.assert_array_equal(np.isinf(g), np.isinf(w), err_msg=f"{name} {what} component {c}: infinities")
        np.testing.assert_array_equal(g[np.isinf(g)], w[np.isinf(w)])
        fin = np.isfinite(w)
        scale = max(1.0, float(np.max(np.abs(w[fin]), initial=0.0)))
        np.testing.assert_allclose(g[fin], w[fin], rtol=0, atol=1e-12 * scale, err_msg=f"{name} {what} component {c}")


def assert_same_pos(got, want, what=""):
    if want is None:
        assert got is None or all(p is None for p in got), what
        return
    assert got is not None, what
    for c, (g, w) in enumerate(zip(got, want)):
        if w is None:
            assert g is None
            continue
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=f"{what} positions, component {c}")


def check_all_methods(name, dev, rng, M=3, N=5, K=4, batch_a=(2, 1), batch_w=(3,)):
    """Every routed method of ``dev`` (a semiring on some device) against the reference."""
    ref = get_semiring(name)
    a = semiring_value(ref, batch_a + (M, N), rng)
    w = weights(batch_w + (N, K), rng)
    for what, args in (("matmul", (a, w)), ("matmul 2-D", (tuple(c.reshape((-1,) + c.shape[-2:])[0] for c in a), w.reshape((-1,) + w.shape[-2:])[0])),
                       ("matmul transposed", (tuple(np.swapaxes(c, -1, -2) for c in a), np.swapaxes(weights(batch_w + (K, M), rng), -1, -2)))):
        got, want = dev.matmul(*args), ref.matmul(*args)
        assert_same(name, got[0], want[0], what)
        assert_same_pos(got[1], want[1], what)
    got, want = dev.sum_last(a), ref.sum_last(a)
    assert_same(name, got[0], want[0], "sum_last")
    assert_same_pos(got[1], want[1], "sum_last")
    flat = tuple(c.reshape(-1) for c in a)
    index = rng.integers(0, 7, size=flat[0].size)
    got, want = dev.scatter(flat, index, 9), ref.scatter(flat, index, 9)   # segments 7, 8 are empty
    assert_same(name, got[0], want[0], "scatter")
    assert_same_pos(got[1], want[1], "scatter")
    ws = weights((M, N), rng)
    assert_same(name, dev.scale(a, ws), ref.scale(a, ws), "scale")
    if ref.cross_components:
        got, want = dev.scale_with_sources(a, ws), ref.scale_with_sources(a, ws)
        assert_same(name, got[0], want[0], "scale_with_sources")
        assert_same_pos(got[1], want[1], "scale_with_sources")
        b = semiring_value(ref, a[0].shape, rng)
        got, want = dev.plus(a, b), ref.plus(a, b)
        assert_same(name, got[0], want[0], "plus")
        assert_same_pos(got[1], want[1], "plus")
    for make in (softmax_block, layer_norm_block):
        block = make((2, 3), N, rng)
        rows = semiring_value(ref, (2, 3, 1, N), rng)
        got, want = dev.matmul_block(rows, block), ref.matmul(rows, block.jacobian)
        assert_same(name, got[0], want[0], make.__name__)
        assert_same_pos(got[1], want[1], make.__name__)


def check_nan_propagates(dev):
    """NaN in gives NaN out through the log-space kernels of ``dev``, as in the reference (the
    max pass of a log-sum-exp skips NaN; the sum must not turn it into 0̄)."""
    for name in ("log", "logentropy"):
        ref, sr = get_semiring(name), dev(get_semiring(name))
        a = tuple(np.array([[[np.nan, 0.5, -np.inf], [0.25, 0.5, -np.inf]]]) if c == 0 else np.full((1, 2, 3), 0.1)
                  for c in range(len(ref.components)))
        w = np.array([[[1.0], [2.0], [3.0]]])
        for what, got, want in (("matmul", sr.matmul(a, w)[0], ref.matmul(a, w)[0]),
                                ("sum_last", sr.sum_last(a)[0], ref.sum_last(a)[0])):
            for g, r in zip(got, want):
                np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=f"{name} {what}")
                np.testing.assert_allclose(g[~np.isnan(g)], r[~np.isnan(r)], rtol=1e-12, err_msg=f"{name} {what}")
        assert np.isnan(sr.matmul(a, w)[0][0][0, 0, 0]), name
