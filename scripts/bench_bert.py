"""Benchmarks (b)-(e) of the kernels issue: graphengine vs torch autograd on BERT encoders.

(b) MiniLM-size encoder (6 layers, hidden 384, 12 heads, FFN 1536, vocab 30522, 32 tokens,
    random weights, ``head=None``): graphengine forward + ONE backward computing {real, signed
    max pair with element backpointers, entropy} vs torch forward + backward of the same model
    and weights (tests/torch_reference.py). Target ≤ 4× torch.
(c) the real semiring alone vs torch (backward only, and forward + backward). Target ≤ 1.5×.
(d) peak memory of (b) vs torch's, each measured in a fresh process as the rise of the peak RSS
    (VmHWM, reset through /proc/self/clear_refs) over the RSS after setup and one warm-up run;
    plus the RSS after each of ``--repeats`` analyses in one process. Target ≤ 2× and flat.
    graphengine is measured twice: values in float64, and real/entropy in float32
    (``real:float32, max, entropy:float32``; the max pair stays float64).
(e) a 2-layer, hidden-128 BERT (2 heads, FFN 512, vocab 30522) at 16 tokens with the four
    statistics of the original implementation (gradient, max pair, absolute, entropy), forward
    + backward, absolute time. Target ≤ 20 ms.

Numbers: torch runs in float32 (its usual precision), graphengine's forward and semiring values
in float64. One thread on both sides (torch.set_num_threads(1), BLAS limited by threadpoolctl,
numba.set_num_threads(1)); the graphengine figures are also given with two numba threads.
The QoI is one output element, ``last_hidden_state[0, 0, 0]`` (``out[0, 0, 0].backward()`` in
torch); graphengine retains the parameters' values (like torch's ``.grad``) unless a figure
says otherwise. Best of ``--repeat`` runs.

    python scripts/bench_bert.py [--out results/bench/bert.json] [--repeat 5] [--repeats 200]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time

import bench_common as bc  # noqa: F401  (sets thread env vars first)

import numpy as np

sys.path.insert(0, str(bc.REPO / "tests"))

MINILM = dict(vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536,
              max_position=512)
TINY = dict(vocab_size=30522, hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512, max_position=512)
QOI = "last_hidden_state[0,0,0]"
# P5's graphengine jobs: semiring values in float64, and real/entropy in float32 (max stays exact)
MEMORY_SEMIRINGS = {"graphengine": ["real", "max", "entropy"],
                    "graphengine_float32": ["real:float32", "max", "entropy:float32"]}
_TORCH_PARAMS: list = []


def _setup(cfg_kwargs, seq_len, seed=0):
    from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights
    cfg = BertConfig(**cfg_kwargs)
    weights = random_bert_weights(cfg, seed=seed, head=None)
    g = build_bert(cfg, weights, batch=1, seq_len=seq_len, head=None)
    ids = np.random.default_rng(seed).integers(0, cfg.vocab_size, size=(1, seq_len))
    return cfg, weights, g, bert_feeds(ids), ids


def _ours(g, feeds, semirings, retain=None, prune=False):
    from graphengine.engine import backward, forward

    def fwd():
        return forward(g, feeds)

    def run():
        acts = forward(g, feeds)
        return backward(g, acts, QOI, semirings=semirings, retain=retain, prune=prune)
    return fwd, run


def _torch(cfg, weights, ids):
    import torch
    from torch_reference import bert_forward
    torch.set_num_threads(1)
    params = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in weights.items()}
    _TORCH_PARAMS[:] = list(params.values())

    def fwd():
        with torch.no_grad():
            return bert_forward(cfg, params, ids, head=None)[0]

    def run():
        for p in params.values():
            p.grad = None
        out, _ = bert_forward(cfg, params, ids, head=None)
        out[0, 0, 0].backward()

    state = {}

    def prep():
        for p in params.values():
            p.grad = None
        state["out"] = bert_forward(cfg, params, ids, head=None)[0]

    def bwd_only():
        state["out"][0, 0, 0].backward()
    return fwd, run, prep, bwd_only


def _best_backward_only(prep, bwd, repeat):
    times = []
    for i in range(repeat + 1):
        prep()
        t = time.perf_counter()
        bwd()
        if i:
            times.append(time.perf_counter() - t)
    return min(times)


def bench_speed(repeat: int) -> dict:
    import numba
    from graphengine.engine import backward, forward
    cfg, weights, g, feeds, ids = _setup(MINILM, 32)
    bc.limit_threads(1)
    t_fwd, t_run, t_prep, t_bwd = _torch(cfg, weights, ids)
    torch_fb, _ = bc.best_of(t_run, repeat)
    torch_b = _best_backward_only(t_prep, t_bwd, repeat)
    torch_f, _ = bc.best_of(t_fwd, repeat)
    out = {"torch_float32": {"forward_s": torch_f, "backward_s": torch_b, "forward_backward_s": torch_fb}}

    three = ["real", "max", "entropy"]
    for threads in (1, 2):
        numba.set_num_threads(threads)
        fwd, run3 = _ours(g, feeds, three)
        _, run1 = _ours(g, feeds, ["real"])
        ours_f, _ = bc.best_of(fwd, repeat)
        ours_3, _ = bc.best_of(run3, repeat)
        ours_1, _ = bc.best_of(run1, repeat)
        acts = forward(g, feeds)
        ours_1b, _ = bc.best_of(lambda: backward(g, acts, QOI, semirings=["real"]), repeat)
        ours_3b, _ = bc.best_of(lambda: backward(g, acts, QOI, semirings=three), repeat)
        others = [n.name for n in g.nodes if n.op == "parameter" and n.name != "embeddings.word_embeddings.weight"]
        _, run3x = _ours(g, feeds, three, retain=others, prune=True)
        ours_3x, _ = bc.best_of(run3x, repeat)
        per = {}
        for s in three:
            per[s], _ = bc.best_of(lambda: backward(g, acts, QOI, semirings=[s]), max(2, repeat // 2))
        out[f"graphengine_float64_numba{threads}"] = {
            "forward_s": ours_f, "fwd_bwd_real_max_entropy_s": ours_3, "bwd_real_max_entropy_s": ours_3b,
            "fwd_bwd_real_s": ours_1, "bwd_real_s": ours_1b, "bwd_single_semiring_s": per,
            "fwd_bwd_real_max_entropy_all_parameters_but_word_table_s": ours_3x}
    numba.set_num_threads(1)
    one = out["graphengine_float64_numba1"]
    out["b_ratio_vs_torch"] = one["fwd_bwd_real_max_entropy_s"] / torch_fb
    out["b_ratio_vs_torch_numba2"] = out["graphengine_float64_numba2"]["fwd_bwd_real_max_entropy_s"] / torch_fb
    out["c_ratio_backward_real_vs_torch_backward"] = one["bwd_real_s"] / torch_b
    out["c_ratio_fwd_bwd_real_vs_torch_fwd_bwd"] = one["fwd_bwd_real_s"] / torch_fb
    out["targets"] = {"b": "<= 4x torch", "c": "<= 1.5x torch"}
    return out


def bench_tiny(repeat: int) -> dict:
    import numba
    cfg, weights, g, feeds, ids = _setup(TINY, 16)
    bc.limit_threads(1)
    four = ["real", "max", "absolute", "entropy"]
    emb = ["embeddings.word", "embeddings.position", "embeddings.token_type", "embeddings.output"]
    out = {"config": TINY, "seq_len": 16, "semirings": four, "target_s": 0.020}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        _, run_all = _ours(g, feeds, four)
        _, run_emb = _ours(g, feeds, four, retain=emb, prune=True)
        t_all, _ = bc.best_of(run_all, repeat)
        t_emb, _ = bc.best_of(run_emb, repeat)
        out[f"numba{threads}"] = {"fwd_bwd_retain_parameters_s": t_all,
                                  "fwd_bwd_retain_embeddings_pruned_s": t_emb}
    numba.set_num_threads(1)
    cfg2, w2, g2, f2, ids2 = cfg, weights, g, feeds, ids
    t_fwd, t_run, _, _ = _torch(cfg2, w2, ids2)
    out["torch_float32_fwd_bwd_s"], _ = bc.best_of(t_run, repeat)
    return out


# ------------------------------------------------------------------ memory (fresh processes)
def _mem_worker(kind: str, q):
    import tracemalloc
    cfg, weights, g, feeds, ids = _setup(MINILM, 32)
    bc.limit_threads(1)
    if kind == "torch":
        _, run, _, _ = _torch(cfg, weights, ids)
    else:
        _, run = _ours(g, feeds, MEMORY_SEMIRINGS[kind])
    run()  # warm-up: compiled kernels loaded, allocator warm
    if kind == "torch":
        import torch
        for t in _TORCH_PARAMS:
            t.grad = None  # the warm-up's gradients would otherwise be counted in the baseline
        del torch
    base = bc.rss_bytes()
    ok = bc.reset_peak_rss()
    if kind != "torch":
        tracemalloc.start()
    result = run()
    peak = bc.peak_rss_bytes()
    traced = tracemalloc.get_traced_memory()[1] if kind != "torch" else None
    del result
    q.put({"rss_before": base, "peak_rss": peak, "peak_rss_delta": peak - base if ok else None,
           "tracemalloc_peak": traced, "peak_reset_supported": ok})


def _rss_worker(repeats: int, q):
    import gc
    cfg, weights, g, feeds, ids = _setup(MINILM, 32)
    bc.limit_threads(1)
    _, run = _ours(g, feeds, ["real", "max", "entropy"])
    rss = []
    for _ in range(repeats):
        r = run()
        del r
        gc.collect()
        rss.append(bc.rss_bytes())
    q.put(rss)


def _in_fresh_process(target, *args):
    ctx = mp.get_context("spawn")  # never fork after numba's parallel kernels ran
    q = ctx.Queue()
    p = ctx.Process(target=target, args=args + (q,))
    p.start()
    out = q.get()
    p.join()
    return out


def bench_memory(repeats: int) -> dict:
    ours = _in_fresh_process(_mem_worker, "graphengine")
    ours32 = _in_fresh_process(_mem_worker, "graphengine_float32")
    theirs = _in_fresh_process(_mem_worker, "torch")
    rss = _in_fresh_process(_rss_worker, repeats)
    mib = 1 << 20
    out = {"method": "peak RSS (VmHWM after /proc/self/clear_refs=5) minus RSS before one analysis, "
                     "fresh spawned process per side, after one warm-up analysis; tracemalloc peak for numpy",
           "graphengine": ours, "graphengine_float32": ours32, "torch": theirs,
           "semirings": MEMORY_SEMIRINGS,
           "ratio_peak_delta": (ours["peak_rss_delta"] / theirs["peak_rss_delta"]
                                if ours["peak_rss_delta"] and theirs["peak_rss_delta"] else None),
           "ratio_peak_delta_float32": (ours32["peak_rss_delta"] / theirs["peak_rss_delta"]
                                        if ours32["peak_rss_delta"] and theirs["peak_rss_delta"] else None),
           "repeated_rss_mib": {"repeats": repeats, "first": rss[0] / mib, "last": rss[-1] / mib,
                                "max": max(rss) / mib, "min": min(rss) / mib,
                                "growth_last_half_mib": (rss[-1] - rss[len(rss) // 2]) / mib,
                                "samples_every_10": [r / mib for r in rss[::10]]},
           "target": "peak <= 2x torch, flat RSS"}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="", help="JSON file (default results/bench/bert.json)")
    ap.add_argument("--repeat", type=int, default=5, help="best of N timings")
    ap.add_argument("--repeats", type=int, default=200, help="analyses in the RSS-flatness run")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: speed,tiny,memory")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    result = {"description": __doc__}
    if "speed" not in skip:
        result["b_c_speed"] = bench_speed(args.repeat)
        print("speed", result["b_c_speed"], flush=True)
    if "tiny" not in skip:
        result["e_tiny"] = bench_tiny(args.repeat)
        print("tiny", result["e_tiny"], flush=True)
    if "memory" not in skip:
        result["d_memory"] = bench_memory(args.repeats)
        print("memory", {k: v for k, v in result["d_memory"].items() if k != "repeated_rss_mib"}, flush=True)
    print("wrote", bc.write(result, args.out, "bert.json"))


if __name__ == "__main__":
    main()
