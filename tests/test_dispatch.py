"""Small operations on the reference, large ones on the kernels (graphengine.kernels.dispatch):
the results are the reference's either way, and a graph of small operations imports and
compiles nothing (the suite's conftest sets the threshold to 0; these tests set it
themselves)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graphengine.engine import backward, forward
from graphengine.ir import Graph
from graphengine.kernels import dispatch
from graphengine.kernels.pointers import take_or_minus1
from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights

REPO = Path(__file__).resolve().parents[1]
SELECTIVE = ["max", "maxabs", "kbest:2", "bool", "count"]
LINEAR = ["real", "absolute", "entropy", "log"]
DEFAULT = 1 << 14


@pytest.fixture
def default_threshold():
    old = dispatch.set_min_work(DEFAULT)
    yield
    dispatch.set_min_work(old)


def _block(hidden=8, seq=3):
    cfg = BertConfig(vocab_size=13, hidden_size=hidden, num_layers=1, num_heads=2, intermediate_size=2 * hidden,
                     max_position=8)
    g = build_bert(cfg, random_bert_weights(cfg, seed=1, head=None), batch=1, seq_len=seq, head=None)
    return g, forward(g, bert_feeds(np.arange(seq).reshape(1, seq) % 13))


def _values(r, name):
    return r.by_semiring[name].values


def test_small_graph_on_cpu_is_the_reference_bit_for_bit(default_threshold):
    g, acts = _block()
    qoi = "last_hidden_state[0,1,2]"
    cpu = backward(g, acts, qoi, semirings=SELECTIVE + LINEAR, retain="all", device="cpu")
    ref = backward(g, acts, qoi, semirings=SELECTIVE + LINEAR, retain="all", device="reference")
    for name in SELECTIVE + LINEAR:
        for nid, value in _values(ref, name).items():
            for a, b in zip(_values(cpu, name)[nid], value):
                np.testing.assert_array_equal(a, b)
    for nid, bp in ref.by_semiring["max"].backpointers.items():
        got = cpu.by_semiring["max"].backpointers[nid]
        for a, b in zip(got.element + got.node + got.slot, bp.element + bp.node + bp.slot):
            np.testing.assert_array_equal(a, b)


def test_threshold_splits_one_graph_and_keeps_the_reference_results(default_threshold):
    # hidden 64, 8 tokens: the feed-forward contractions (8·64·128 = 65536) are above the
    # threshold, the attention scores (2 heads · 8·32·8) below
    g, acts = _block(hidden=64, seq=8)
    qoi = "last_hidden_state[0,3,7]"
    split = backward(g, acts, qoi, semirings=SELECTIVE + LINEAR, retain="all", device="cpu")
    ref = backward(g, acts, qoi, semirings=SELECTIVE + LINEAR, retain="all", device="reference")
    with dispatch.kernels_for_all():
        kernels = backward(g, acts, qoi, semirings=SELECTIVE + LINEAR, retain="all", device="cpu")
    for name in SELECTIVE:
        for nid, value in _values(ref, name).items():
            for a, b, c in zip(_values(split, name)[nid], _values(kernels, name)[nid], value):
                np.testing.assert_array_equal(a, c)
                np.testing.assert_array_equal(b, c)
    for name in LINEAR:  # summation order differs: compare against the scale of the whole result
        ref_values, got = _values(ref, name), _values(split, name)
        for comp in range(len(next(iter(ref_values.values())))):
            scale = max(float(np.max(np.abs(v[comp][np.isfinite(v[comp])]), initial=0.0)) for v in ref_values.values())
            for nid, value in ref_values.items():
                a, c = got[nid][comp], value[comp]
                finite = np.isfinite(c)
                np.testing.assert_array_equal(np.isfinite(a), finite)
                np.testing.assert_array_equal(a[~finite], c[~finite])
                assert np.max(np.abs(a[finite] - c[finite]), initial=0.0) <= 1e-12 * scale


def test_work_of_a_routed_call_and_the_threshold_api():
    a = (np.zeros((4, 3)),)
    assert dispatch.WORK["matmul"](a, np.zeros((3, 5))) == 60
    assert dispatch.WORK["sum_last"](a) == 12
    assert dispatch.WORK["scatter"](a, np.zeros(12, np.int64), 40) == 40
    old = dispatch.set_min_work(7)
    try:
        assert dispatch.min_work() == 7
        with dispatch.kernels_for_all():
            assert dispatch.min_work() == 0
        assert dispatch.min_work() == 7
    finally:
        dispatch.set_min_work(old)
    assert dispatch.min_work("cuda") == 0


def test_take_or_minus1_numpy_and_compiled_paths_agree():
    rng = np.random.default_rng(0)
    i = rng.integers(0, 100, size=50)
    p = rng.integers(-1, 50, size=(6, 7))
    old = dispatch.set_min_work(10 ** 9)
    try:
        small = take_or_minus1(i, p)
    finally:
        dispatch.set_min_work(old)
    with dispatch.kernels_for_all():
        compiled = take_or_minus1(i, p)
    expect = np.where(p >= 0, i[np.maximum(p, 0)], -1)
    np.testing.assert_array_equal(small, expect)
    np.testing.assert_array_equal(compiled, expect)
    assert small.dtype == compiled.dtype == np.int64


PROBE = """
import json, sys
import numpy as np
from graphengine.engine import backward, forward
from graphengine.ir import Graph
g = Graph(); ids = g.input("ids", (1, 3), dtype="int64")
table = g.parameter("table", np.linspace(-1, 1, 8 * N).reshape(N, 8))
y = g.call("tanh", g.call("embedding", table, ids), name="y")
r = backward(g, forward(g, {"ids": np.array([[0, 2, 0]])}), "y[0,2,1]", semirings=["real", "max", "entropy"])
print(json.dumps({"numba": "numba" in sys.modules, "kernels": "graphengine.kernels.cpu" in sys.modules,
                  "grad": r.grad("table")[:3].tolist()}))
"""


def _probe(tmp_path, n):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO),
               GRAPHENGINE_KERNEL_MIN_WORK=str(DEFAULT))
    p = subprocess.run([sys.executable, "-c", f"N = {n}\n" + PROBE], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), p.stderr


def test_a_small_graph_imports_and_compiles_nothing(tmp_path):
    out, err = _probe(tmp_path, 4)
    assert out["numba"] is False and out["kernels"] is False
    assert out["grad"][1] == out["grad"][2] == [0.0] * 8 and out["grad"][0][1] != 0.0
    assert "compiling" not in err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.nbc"))


def test_a_large_operation_loads_the_kernels_and_says_so_once(tmp_path):
    out, err = _probe(tmp_path, 4000)  # the max pair's scatter into the 4000×8 table: ≥ 2¹⁴ elements
    assert out["kernels"] and out["numba"]
    assert err.count("compiling kernels") == 1


def test_a_bad_threshold_in_the_environment_is_one_clear_line(tmp_path):
    from graphengine.ir.serialize import save
    g = Graph()
    x = g.input("x", (1, 2))
    g.call("tanh", x, name="y")
    save(g, str(tmp_path / "g.json"))
    env = dict(os.environ, PYTHONPATH=str(REPO), GRAPHENGINE_KERNEL_MIN_WORK="lots")
    p = subprocess.run([sys.executable, "-m", "graphengine", "analyze", str(tmp_path / "g.json"), "--qoi", "y[0,1]",
                        "--input", "x=[[1,2]]", "-o", str(tmp_path / "r.json")], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 2
    assert p.stderr == ("graphengine: error: GRAPHENGINE_KERNEL_MIN_WORK must be a non-negative integer, "
                        "got 'lots'\n")
