"""Benchmark (a) of the kernels issue: the argmax-tracking max-times contraction against numpy's
float32 matrix product (sgemm) at 256², 512², 1024².

Throughput is reported as GFLOP/s-equivalent, ``2·M·N·K / time``, for: sgemm (numpy float32
matmul, one BLAS thread), dgemm, the max-abs contraction kernel (one max component with its
argmax, float64 — the engine's semiring dtype), the signed max-pair kernel (two components, M⁺
and M⁻ with their argmaxes, counted as 2·(2·M·N·K)), and the numpy reference's chunked
broadcast for the max-abs contraction (at 256² only: it is slow). Numba with one thread, and the
kernels again with two threads. Best of ``--repeat``. Target: max-times ≥ 30% of sgemm.

Also the dense-block kernels at the shape of a MiniLM layer norm (12 tokens, n = 384, rank 2:
each token's 384×384 Jacobian from its factors), one thread: milliseconds per call of the signed
max pair and max-abs blocks (``dense_blocks``).

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


def run_blocks(repeat, tokens=12, n=384, rank=2):
    from graphengine.kernels import cpu
    bc.limit_threads(1)
    rng = np.random.default_rng(1)
    a0 = rng.normal(size=(tokens, n))
    a1 = a0 - np.abs(rng.normal(size=(tokens, n)))
    d, u, v = rng.normal(size=(tokens, n)), rng.normal(size=(tokens, n, rank)), rng.normal(size=(tokens, n, rank))
    o0, o1 = np.empty((tokens, n)), np.empty((tokens, n))
    p0, p1 = np.empty((tokens, n), np.int64), np.empty((tokens, n), np.int64)
    row = {"tokens": tokens, "n": n, "rank": rank}
    row["block_pair_ms"] = 1e3 * bc.best_of(lambda: cpu.block_pair(a0, a1, d, u, v, o0, o1, p0, p1), repeat)[0]
    row["block_maxabs_ms"] = 1e3 * bc.best_of(lambda: cpu.block_maxabs(np.abs(a0), d, u, v, o0, p0), repeat)[0]
    print(row, flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="", help="JSON file (default results/bench/contraction.json)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", default="256,512,1024")
    args = ap.parse_args(argv)
    rows = run([int(s) for s in args.sizes.split(",")], args.repeat)
    blocks = run_blocks(args.repeat)
    print("wrote", bc.write({"description": __doc__, "target": "max-times >= 0.30 of sgemm", "rows": rows,
                             "dense_blocks": blocks}, args.out, "contraction.json"))


if __name__ == "__main__":
    main()
