"""The Numba CPU kernels against the numpy reference semirings.

Every semiring (through :func:`graphengine.kernels.dispatch.on_device`) and every routed method:
contractions with broadcast and transposed batch operands, reductions, scatters with empty
segments, scaling, k-best ⊕, factored dense blocks (softmax, layer norm). Values are
bit-identical for the selective and counting semirings, ≤ 1e-12 relative otherwise; positions
are identical, ties going to the lowest index.
"""

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
    # N > 4 live rows (the 4-wide tournament), K > the 512-column tile, dead rows in between
    rng = np.random.default_rng(3)
    ref, dev = get_semiring(name), on_device(get_semiring(name), "cpu")
    from kernel_cases import assert_same, assert_same_pos, semiring_value, weights
    K = 600 if not name.startswith("kbest") else 7
    a = semiring_value(ref, (2, 11), rng, dead=0.3)
    w = weights((11, K), rng)
    got, want = dev.matmul(a, w), ref.matmul(a, w)
    assert_same(name, got[0], want[0], "matmul")
    assert_same_pos(got[1], want[1], "matmul")


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
    cpu.matmul_pair(a, -np.abs(a), -w, np.arange(2), np.zeros(2, np.int64), hi, lo, ph, pl)
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
