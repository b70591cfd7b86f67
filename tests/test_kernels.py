"""The Numba CPU kernels against the numpy reference semirings.

Every semiring (through :func:`graphengine.kernels.dispatch.on_device`) and every routed method:
contractions with broadcast and transposed batch operands, reductions, scatters with empty
segments, scaling, k-best ⊕, factored dense blocks (softmax, layer norm). Values are
bit-identical for the selective and counting semirings, ≤ 1e-12 relative otherwise; positions
are identical, ties going to the lowest index.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graphengine.kernels import backend, cpu
from graphengine.kernels.dispatch import DeviceError, on_device
from graphengine.semirings import get_semiring

from kernel_cases import ALL, check_all_methods, check_nan_propagates


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("seed", [0, 1])
def test_every_method_matches_the_reference(name, seed):
    check_all_methods(name, on_device(get_semiring(name), "cpu"), np.random.default_rng(seed))


@pytest.mark.parametrize("name", ["max", "maxabs", "maxplus", "kbest:3"])
def test_larger_contraction_exercises_the_blocked_path(name):
    # N > 4 live rows (steps of four contracted rows), K > the 256-column tile, dead rows in between
    rng = np.random.default_rng(3)
    ref, dev = get_semiring(name), on_device(get_semiring(name), "cpu")
    from kernel_cases import assert_same, assert_same_pos, semiring_value, weights
    K = 600 if not name.startswith("kbest") else 7
    a = semiring_value(ref, (2, 11), rng, dead=0.3)
    w = weights((11, K), rng)
    got, want = dev.matmul(a, w), ref.matmul(a, w)
    assert_same(name, got[0], want[0], "matmul")
    assert_same_pos(got[1], want[1], "matmul")


@pytest.mark.parametrize("name", ["max", "maxabs", "maxplus"])
def test_blocked_contraction_across_row_blocks_panels_tiles_and_threads(name, monkeypatch):
    # M = 7: a partial block of four output rows, one of them dead throughout; N = 300 > one
    # 256-row panel of w; K = 260 > one 256-column tile; w broadcast over the batch. One and two
    # threads (the gate lowered so the parallel jobs run) give the reference's values and positions.
    import numba
    from kernel_cases import assert_same, assert_same_pos, semiring_value, weights
    rng = np.random.default_rng(5)
    ref, dev = get_semiring(name), on_device(get_semiring(name), "cpu")
    a = semiring_value(ref, (2, 7, 300), rng, dead=0.3)
    for c, z in zip(a, ref.zero_elements):
        c[1, 5] = z
    w = weights((300, 260), rng)
    want = ref.matmul(a, w)
    monkeypatch.setattr(cpu, "PARALLEL_MIN_WORK", 0)
    threads = numba.get_num_threads()
    try:
        for t in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(t)
            got = dev.matmul(a, w)
            assert_same(name, got[0], want[0], f"matmul, {t} threads")
            assert_same_pos(got[1], want[1], f"matmul, {t} threads")
    finally:
        numba.set_num_threads(threads)


_KEEPS_OMP = """
import torch
torch.set_num_threads(1)
assert torch.get_num_threads() == 1  # torch has applied its count to this thread
import numba, numpy as np
from graphengine.kernels import cpu
o = np.empty(2); p = np.empty(2, np.int64)
cpu.select_last(np.ones((2, 3)), 1, o, p)  # the first parallel kernel starts Numba's pool
print(numba.get_num_threads(), torch.get_num_threads())
"""


def test_the_first_parallel_kernel_keeps_torchs_thread_count():
    # Numba's OpenMP layer sets the shared runtime's thread count to its own when its pool
    # starts; before the fix a caller's torch.set_num_threads(1) became 2 (a fresh process:
    # the pool starts once per process)
    pytest.importorskip("torch")
    env = dict(os.environ, NUMBA_NUM_THREADS="2", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    p = subprocess.run([sys.executable, "-c", _KEEPS_OMP], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["2", "1"]


def test_a_nan_product_never_wins_a_contraction():
    # the selection rule (scalar.improves): only a strictly better product replaces the running
    # best, so a NaN product, wherever it falls among the four rows of a step, is passed over
    x = np.array([[[1.0, 2.0, 3.0, 4.0, 5.0, 0.5]]])
    w = np.ones((1, 6, 6))
    for k in range(6):
        w[0, k, k] = np.nan
    ia, iw = np.zeros(1, np.int64), np.zeros(1, np.int64)
    o, p = np.empty((1, 1, 6)), np.empty((1, 1, 6), np.int64)
    cpu.matmul_max(x, w, ia, iw, False, o, p)
    assert o[0, 0].tolist() == [5.0, 5.0, 5.0, 5.0, 4.0, 5.0] and p[0, 0].tolist() == [4, 4, 4, 4, 3, 4]
    hi, lo = np.empty((1, 1, 6)), np.empty((1, 1, 6))
    ph, pl = np.empty((1, 1, 6), np.int64), np.empty((1, 1, 6), np.int64)
    cpu.matmul_pair(x, x, w, ia, iw, hi, lo, ph, pl)
    assert hi[0, 0].tolist() == [5.0, 5.0, 5.0, 5.0, 4.0, 5.0] and lo[0, 0].tolist() == [0.5, 0.5, 0.5, 0.5, 0.5, 1.0]
    assert ph[0, 0].tolist() == [4, 4, 4, 4, 3, 4] and pl[0, 0].tolist() == [5, 5, 5, 5, 5, 0]


def test_entropy_lifts_each_weight_once_per_call_and_blocks_in_chunks(monkeypatch):
    from kernel_cases import assert_same, layer_norm_block, semiring_value, weights
    rng = np.random.default_rng(2)
    ref = get_semiring("entropy")
    dev = on_device(ref, "cpu")
    a = semiring_value(ref, (3, 6), rng)
    w = weights((6, 5), rng)
    first, again = dev.matmul(a, w), dev.matmul(a, w)
    assert_same("entropy", first[0], ref.matmul(a, w)[0], "matmul")
    assert_same("entropy", again[0], first[0], "matmul again")
    assert dev.kernels.lifted.misses == 1   # the second contraction reused the lifted weights
    assert on_device(ref, "cpu").kernels.lifted.misses == 0   # a new call starts afresh
    monkeypatch.setattr(cpu, "BLOCK_CHUNK", 30)   # one 5 x 5 block per chunk: six chunks
    block = layer_norm_block((2, 3), 5, rng)
    rows = semiring_value(ref, (2, 3, 1, 5), rng)
    assert_same("entropy", dev.matmul_block(rows, block)[0], ref.matmul(rows, block.jacobian)[0], "dense block")


def test_ties_go_to_the_lowest_index_and_all_dead_gives_zero_at_zero():
    a = np.array([[[2.0, 2.0, 1.0, 2.0, 2.0, -np.inf]], [[-np.inf] * 6]])   # (2, 1, 6)
    w = np.ones((1, 6, 3))
    w[0, 0] = 0.0
    o, p = np.empty((2, 1, 3)), np.empty((2, 1, 3), np.int64)
    cpu.matmul_max(a, w, np.arange(2), np.zeros(2, np.int64), False, o, p)
    assert p[0].tolist() == [[1, 1, 1]] and o[0].tolist() == [[2.0, 2.0, 2.0]]
    assert p[1].tolist() == [[0, 0, 0]] and np.all(o[1] == -np.inf)
    hi, lo = np.empty((2, 1, 3)), np.empty((2, 1, 3))
    ph, pl = np.empty((2, 1, 3), np.int64), np.empty((2, 1, 3), np.int64)
    dead_lo = np.where(np.isneginf(a), np.inf, -np.abs(a))   # the pair's 0̄ is ⟨−∞, +∞⟩; ⟨−∞, −∞⟩ is a path
    cpu.matmul_pair(a, dead_lo, -w, np.arange(2), np.zeros(2, np.int64), hi, lo, ph, pl)
    assert ph[0].tolist() == [[1, 1, 1]] and pl[0].tolist() == [[1, 1, 1]]
    assert np.all(hi[1] == -np.inf) and np.all(lo[1] == np.inf)


def test_scatter_select_empty_segments_and_ties():
    o, p = np.empty(4), np.empty(4, np.int64)
    cpu.scatter_select(np.array([1.0, 3.0, 3.0, -np.inf]), np.array([2, 0, 0, 3]), 1, -np.inf, o, p)
    assert o.tolist() == [3.0, -np.inf, 1.0, -np.inf] and p.tolist() == [1, -1, 0, 3]


def test_kbest_rows_distinct_paths_with_ties():
    cand = np.array([[2.0, 2.0, 2.0, 1.0, np.inf]])
    o, p = np.empty((1, 6)), np.empty((1, 6), np.int64)
    cpu.kbest_rows(cand, np.isfinite(cand), 3, True, o, p)
    assert o.tolist() == [[2.0, 2.0, 2.0, 1.0, np.inf, np.inf]]
    assert p.tolist() == [[0, 1, 2, 3, -1, -1]]


def test_unknown_device_is_one_clear_error():
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        on_device(get_semiring("real"), "gpu")
    assert on_device(get_semiring("real"), "reference").__class__.__name__ == "Real"


def test_cpu_back_end_implements_the_interface():
    assert backend.missing(cpu) == []
    # the check can fail: a back end without a kernel, or with a kernel's arguments renamed
    partial = type("Partial", (), {"NAME": "x", "HOST_LINEAR": True,
                                    "select_last": staticmethod(lambda a, sign, out, p: None)})
    gaps = backend.missing(partial)
    assert "select_last(a, sign, o, p)" in gaps and "matmul_pair" in gaps and "NAME" not in gaps


def test_cpu_matmul_sum_contracts_through_the_batch_maps():
    rng = np.random.default_rng(5)
    a, w = rng.normal(size=(2, 3, 4)), rng.normal(size=(3, 4, 5))
    ia, iw = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2])
    o = np.empty((6, 3, 5))
    cpu.matmul_sum(a, w, ia, iw, o)
    want = np.einsum("bmn,bnk->bmk", a[ia], w[iw])
    np.testing.assert_allclose(o, want, rtol=1e-13, atol=1e-13)


def test_nan_in_gives_nan_out_through_the_log_kernels():
    check_nan_propagates(lambda sr: on_device(sr, "cpu"))


@pytest.mark.parametrize("name", ["max", "maxabs"])
def test_dense_blocks_built_from_factors_match_the_reference_on_edge_values(name):
    # rows of J are built from the factors (diag + u vᵀ) inside the kernel: a zero row (signed
    # zero products), an infinite row, ties between sources, dead sources and a −∞ path
    # must give the reference's values (signs of zeros included) and positions
    from kernel_cases import assert_same, assert_same_pos, layer_norm_block, semiring_value
    rng = np.random.default_rng(7)
    ref, dev = get_semiring(name), on_device(get_semiring(name), "cpu")
    n = 11
    block = layer_norm_block((2, 3), n, rng)
    f = block.factors                          # the jacobian is materialised on first use, after this
    f.u[..., 4, :] = 0.0
    f.diag[..., 4] = 0.0                       # row 4 of J is exactly +0.0: products ±0.0 by the source's sign
    f.u[..., 6, 0] = np.inf                    # row 6 of J is +inf (v[..., 0] = 1 in a layer-norm block)
    rows = semiring_value(ref, (2, 3, 1, n), rng, dead=0.2)
    for c in rows:
        c[..., 8] = c[..., 9]                  # tied sources
        c[..., 6] = np.where(c[..., 6] == 0.0, 1.0, c[..., 6])   # no 0 · inf
    rows[0][0, 0, 0, 3] = 0.0
    if name == "max":
        rows[1][0, 0, 0, 3] = -0.0
        rows[0][0, 1, 0, 7] = rows[1][0, 1, 0, 7] = -np.inf     # a path of weight −∞
    with np.errstate(invalid="ignore"):
        got, want = dev.matmul_block(rows, block), ref.matmul(rows, block.jacobian)
    assert_same(name, got[0], want[0], "dense block")
    assert_same_pos(got[1], want[1], "dense block")
    for g, w in zip(got[0], want[0]):
        np.testing.assert_array_equal(np.signbit(g), np.signbit(w))


def test_a_nan_entry_never_wins_a_dense_block():
    # J = diag(d) with d[2] = NaN: the NaN product is passed over, source 1 keeps column 1 ...
    d = np.array([[1.0, 2.0, np.nan]])
    u = np.zeros((1, 3, 1))
    v = np.zeros((1, 3, 1))
    a = np.array([[1.0, 3.0, 5.0]])
    o0, o1 = np.empty((1, 3)), np.empty((1, 3))
    p0, p1 = np.empty((1, 3), np.int64), np.empty((1, 3), np.int64)
    cpu.block_pair(a, a, d, u, v, o0, o1, p0, p1)
    # column 2: sources 0, 1 give 0.0, source 2 gives NaN: 0.0 at source 0 for both components
    assert o0.tolist() == [[1.0, 6.0, 0.0]] and p0.tolist() == [[0, 1, 0]]
    assert o1.tolist() == [[0.0, 0.0, 0.0]] and p1.tolist() == [[1, 0, 0]]
    o, p = np.empty((1, 3)), np.empty((1, 3), np.int64)
    cpu.block_maxabs(a, d, u, v, o, p)
    assert o.tolist() == [[1.0, 6.0, 0.0]] and p.tolist() == [[0, 1, 0]]


def test_pair_contraction_takes_float32_weights_as_they_are():
    # a torch model's weights are float32: the kernel reads them as they are and widens each
    # weight in its products (exact), so values and positions equal the reference's on the
    # float64 conversion, −0.0 weights included
    from kernel_cases import assert_same, assert_same_pos, semiring_value, weights
    rng = np.random.default_rng(11)
    ref, dev = get_semiring("max"), on_device(get_semiring("max"), "cpu")
    a = semiring_value(ref, (2, 7, 300), rng, dead=0.3)
    w = weights((300, 260), rng).astype(np.float32)
    w[5, :7] = -0.0
    got, want = dev.matmul(a, w), ref.matmul(a, w)
    assert_same("max", got[0], want[0], "float32 weights")
    assert_same_pos(got[1], want[1], "float32 weights")
    for g, r in zip(got[0], want[0]):
        np.testing.assert_array_equal(np.signbit(g), np.signbit(r))
