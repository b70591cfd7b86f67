"""Devices: the numba.cuda kernels (run in the Numba CUDA simulator, sizes ≤ 16) against the
numpy reference, and the whole engine on the reference, CPU and CUDA paths giving the same
values and backpointers (bit-identical for the selective and counting semirings, ≤ 1e-12
relative otherwise) on a small BERT and on the oracle's random programs.

tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1 before numba is imported; these tests need no GPU.
"""

import numpy as np
import pytest

from graphengine.engine import backward, forward, weighted
from graphengine.errors import GraphEngineError
from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights
from graphengine.kernels import backend
from graphengine.kernels import cuda as cuda_backend
from graphengine.kernels.dispatch import on_device
from graphengine.semirings import get_semiring

from kernel_cases import ALL, EXACT, assert_same, check_all_methods, check_nan_propagates
from test_oracle import random_program

pytestmark = pytest.mark.skipif(not cuda_backend.available(), reason="numba.cuda simulator not available")


@pytest.mark.parametrize("name", ALL)
def test_cuda_kernels_match_the_reference(name):
    check_all_methods(name, on_device(get_semiring(name), "cuda"), np.random.default_rng(7), M=2, N=5, K=3)


def test_cuda_back_end_implements_the_interface():
    assert backend.missing(cuda_backend) == []


def test_cuda_nan_in_gives_nan_out_through_the_log_kernels():
    check_nan_propagates(lambda sr: on_device(sr, "cuda"))


def test_cuda_kbest_beyond_local_list_size_runs_on_cpu_kernels():
    check_all_methods("kbest:9", on_device(get_semiring("kbest:9"), "cuda"), np.random.default_rng(1), M=2, N=3, K=2,
                      batch_a=(1, 1), batch_w=())


def _compare(g, acts, qoi, semirings, devices=("cpu", "cuda"), retain="all", prune=False):
    ref = backward(g, acts, qoi, semirings=semirings, retain=retain, prune=prune, device="reference")
    for device in devices:
        got = backward(g, acts, qoi, semirings=semirings, retain=retain, prune=prune, device=device)
        for s in semirings:
            assert got.retained(s) == ref.retained(s), (device, s)
            for nid in ref.retained(s):
                what = f"{device} {s} at {g.nodes[nid].name}"
                assert_same(s, got.raw(nid, s), ref.raw(nid, s), what)
            bps_ref, bps = ref.by_semiring[s].backpointers, got.by_semiring[s].backpointers
            assert sorted(bps) == sorted(bps_ref), what
            for nid, bp in bps_ref.items():
                for field in ("node", "slot", "element", "rank"):
                    want, have = getattr(bp, field), getattr(bps[nid], field)
                    if want is None:
                        assert have is None
                        continue
                    for c, (x, y) in enumerate(zip(have, want)):
                        np.testing.assert_array_equal(x, y, err_msg=f"{device} {s} {field}[{c}] at {g.nodes[nid].name}")


def test_mini_bert_same_on_reference_cpu_and_cuda():
    # the simulator runs every CUDA thread as a Python thread: the activations' cone only
    # (prune), which still crosses every op kind of the model (the parameters' adjoints are
    # covered by the random programs and by the CPU test below)
    cfg = BertConfig.mini()
    g = build_bert(cfg, random_bert_weights(cfg, seed=3), batch=1, seq_len=3, head="mlm", attention_mask=True)
    acts = forward(g, bert_feeds(np.array([[2, 5, 7]]), attention_mask=np.array([[1, 1, 0]])))
    retain = ["embeddings.word", "embeddings.output", "encoder.layer.0.attention.self.probs", "encoder.layer.1.output"]
    _compare(g, acts, "logits[0,1,4] - logits[0,1,3]", ALL, retain=retain, prune=True)


def test_mini_bert_batch_same_on_reference_and_cpu():
    cfg = BertConfig.mini()
    weights = random_bert_weights(cfg, seed=0, head="classification")
    g = build_bert(cfg, weights, batch=2, seq_len=5, head="classification")
    acts = forward(g, bert_feeds(np.array([[2, 5, 3, 1, 9], [4, 4, 8, 0, 2]])))
    _compare(g, acts, "logits[0,1] - logits[1,0]", ALL, devices=("cpu",))


@pytest.mark.parametrize("seed", range(6))
def test_random_programs_same_on_every_device(seed):
    rng = np.random.default_rng(seed)
    g, feeds, out = random_program(rng)
    acts = forward(g, feeds)
    q = weighted(out, rng.normal(size=g[out].shape))
    _compare(g, acts, q, ALL)


def test_paper_granularity_runs_on_devices():
    rng = np.random.default_rng(4)
    g, feeds, out = random_program(rng)
    acts = forward(g, feeds)
    q = weighted(out, rng.normal(size=g[out].shape))
    sr = ["real", "max", "entropy", "bool"]
    ref = backward(g, acts, q, semirings=sr, retain="all", granularity="paper", device="reference")
    got = backward(g, acts, q, semirings=sr, retain="all", granularity="paper", device="cpu")
    for s in sr:
        for nid in ref.retained(s):
            assert_same(s if s in EXACT else "real", got.raw(nid, s), ref.raw(nid, s), s)


def test_cuda_unavailable_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(cuda_backend, "available", lambda: False)
    g, feeds, out = random_program(np.random.default_rng(0))
    with pytest.raises(GraphEngineError, match="device 'cuda' is not available.*NUMBA_ENABLE_CUDASIM"):
        backward(g, forward(g, feeds), weighted(out, np.ones(g[out].shape)), device="cuda")


def test_prune_changes_nothing_that_is_retained():
    cfg = BertConfig.mini()
    g = build_bert(cfg, random_bert_weights(cfg, seed=1), batch=1, seq_len=4, head="mlm")
    acts = forward(g, bert_feeds(np.array([[3, 1, 4, 1]])))
    retain = ["embeddings.output", "encoder.layer.1.attention.self.probs"]
    full = backward(g, acts, "logits[0,2,5]", semirings=["real", "max", "entropy"], retain=retain, prune=False)
    pruned = backward(g, acts, "logits[0,2,5]", semirings=["real", "max", "entropy"], retain=retain)  # the default
    for s in ("real", "max", "entropy"):
        assert pruned.retained(s) == full.retained(s)
        for nid in full.retained(s):
            assert_same(s if s != "entropy" else "max", pruned.raw(nid, s), full.raw(nid, s), s)
    assert g["embeddings.word_embeddings.weight"].id in full.by_semiring["max"].backpointers
    assert g["embeddings.word_embeddings.weight"].id not in pruned.by_semiring["max"].backpointers
