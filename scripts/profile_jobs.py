"""Where the time goes in issue 11's jobs: one warm backward of each job, split by semiring,
by op kind and into the ops' Jacobian structures and the rest of the walk.

The jobs are ``bench_all.py``'s (its docstring defines them), backward only, after one
warm-up backward (kernels loaded, the walk plan cached):

- ``p1``  all-MiniLM-L6-v2 (hf export), {real, max, entropy} w.r.t. the token embeddings
- ``p1_float32``  the same with ``real:float32`` and ``entropy:float32``
- ``p1_all``  the same, every parameter retained
- ``p1b``  the same, retaining the layer inputs (the demo's job)
- ``p2``  2-layer hidden-128 BERT, 16 tokens, {real, max, absolute, entropy}, parameters retained
- ``p2b``  the one-block BERT of P2b (55 nodes), the four values
- ``p3``  the real semiring alone on the exported MiniLM, every parameter retained
- ``p8``  GPT-2 small, random weights, ``--seq`` tokens, {real, max, entropy} w.r.t. ``wte``

Method: :func:`profile_backward` wraps the walk's ``propagate`` (one push of an adjoint
through one op's Jacobian structure in one semiring) and each op's ``jacobian`` (building
that structure) with timers; what is left of the backward's wall time (``rest``) is the walk
itself: ⊕ across consumers, backpointer records, the NaN scan, results. The wrappers' own
overhead (about 1 µs per call) lands in the total, so per-node figures of small graphs read
slightly high. One thread everywhere.

    python scripts/profile_jobs.py [--jobs p1,p1b,p2,p2b,p3,p8] [--seq 64] [--out results/bench/profile.json]
    python scripts/bench_table.py   # the README's "where the time goes" table from profile.json
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections import defaultdict

import bench_common as bc  # noqa: F401  (sets thread env vars first)

JOBS = ("p1", "p1_float32", "p1_all", "p1b", "p2", "p2b", "p3", "p8")


def profile_backward(g, acts, qoi, semirings, retain=None, prune=True) -> dict:
    """One timed backward (after a warm-up) with its time split by semiring, op kind,
    Jacobian structures and the rest of the walk (seconds)."""
    walk = importlib.import_module("graphengine.engine.backward")  # the module, not the function
    kwargs = dict(semirings=semirings, retain=retain, prune=prune)
    walk.backward(g, acts, qoi, **kwargs)  # warm-up: kernels loaded, plan cached
    pushes = defaultdict(float)
    structures = defaultdict(float)
    current = {}
    real_propagate, real_get_op = walk.propagate, walk.get_op

    def timed_propagate(structure, start, in_shape, sr):
        t = time.perf_counter()
        out = real_propagate(structure, start, in_shape, sr)
        pushes[(current["op"], sr.name)] += time.perf_counter() - t
        return out

    class TimedOp:
        def __init__(self, opdef, op):
            self.opdef, self.op = opdef, op

        def jacobian(self, *args):
            current["op"] = self.op
            t = time.perf_counter()
            out = self.opdef.jacobian(*args)
            structures[self.op] += time.perf_counter() - t
            return out

    walk.propagate = timed_propagate
    walk.get_op = lambda op: TimedOp(real_get_op(op), op)
    try:
        t = time.perf_counter()
        walk.backward(g, acts, qoi, **kwargs)
        total = time.perf_counter() - t
    finally:
        walk.propagate, walk.get_op = real_propagate, real_get_op
    by_semiring, by_op = defaultdict(float), defaultdict(float)
    for (op, sr), s in pushes.items():
        by_semiring[sr] += s
        by_op[op] += s
    pushed, structured = sum(pushes.values()), sum(structures.values())

    def ranked(d):
        return dict(sorted(d.items(), key=lambda kv: -kv[1]))
    return {"nodes": len(g), "semirings": list(semirings), "backward_s": total,
            "pushes_s": pushed, "structures_s": structured, "rest_s": total - pushed - structured,
            "pushes_by_semiring_s": ranked(by_semiring), "pushes_by_op_s": ranked(by_op),
            "pushes_by_op_and_semiring_s": {f"{op} {sr}": s for (op, sr), s in ranked(pushes).items()},
            "structures_by_op_s": ranked(structures)}


def _minilm(semirings, retain_kind):
    from bench_all import QOI, _minilm as load
    from graphengine.engine import forward
    graph, feeds, _, _, layers = load()
    retain = {"embeddings": [layers[0]], "layers": layers, "all": None}[retain_kind]
    return graph, forward(graph, feeds), QOI, semirings, retain


def _tiny_bert():
    from bench_bert import QOI, TINY, _setup
    from bench_all import FOUR
    from graphengine.engine import forward
    _, _, g, feeds, _ = _setup(TINY, 16)
    return g, forward(g, feeds), QOI, FOUR, None


def _block():
    from bench_all import FOUR, QOI
    from graphengine.engine import forward
    from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights
    import numpy as np
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                     max_position=8)
    g = build_bert(cfg, random_bert_weights(cfg, seed=0, head=None), batch=1, seq_len=4, head=None)
    return g, forward(g, bert_feeds(np.arange(4).reshape(1, 4) % cfg.vocab_size)), QOI, FOUR, None


def _gpt2(seq):
    from bench_all import THREE, _gpt2_model, _token_embedding
    from graphengine.engine import forward
    from graphengine.frontends.torch import from_torch
    model, ids = _gpt2_model(seq)
    g = from_torch(model, (ids,))
    del model
    acts = forward(g, {g.inputs()[0].name: ids.numpy()})
    return g, acts, f"logits[0,{seq - 1},0]", THREE, [_token_embedding(g).id]


def setup(job: str, seq: int):
    """(graph, activations, QoI, semirings, retain) of ``job``."""
    from bench_all import THREE, THREE_FLOAT32
    return {
        "p1": lambda: _minilm(THREE, "embeddings"),
        "p1_float32": lambda: _minilm(THREE_FLOAT32, "embeddings"),
        "p1_all": lambda: _minilm(THREE, "all"),
        "p1b": lambda: _minilm(THREE, "layers"),
        "p2": _tiny_bert,
        "p2b": _block,
        "p3": lambda: _minilm(["real"], "all"),
        "p8": lambda: _gpt2(seq),
    }[job]()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", default=",".join(JOBS), help=f"comma list of {', '.join(JOBS)}")
    ap.add_argument("--seq", type=int, default=64, help="GPT-2 tokens (p8)")
    ap.add_argument("--out", default="", help="JSON file (default results/bench/profile.json)")
    args = ap.parse_args(argv)
    jobs = [j for j in args.jobs.split(",") if j]
    unknown = sorted(set(jobs) - set(JOBS))
    if unknown:
        ap.error(f"unknown job(s) {', '.join(unknown)}; choose from {', '.join(JOBS)}")
    if not 1 <= args.seq <= 1024:
        ap.error(f"--seq must be between 1 and 1024 (GPT-2's positions), got {args.seq}")
    sys.path.insert(0, str(bc.REPO / "scripts"))
    import torch
    bc.limit_threads(1)
    torch.set_num_threads(1)
    res = {"description": __doc__, "threads": 1, "gpt2_seq": args.seq, "load_average_start": list(os.getloadavg()),
           "jobs": {}}
    path = None
    for job in jobs:
        g, acts, qoi, semirings, retain = setup(job, args.seq)
        r = profile_backward(g, acts, qoi, semirings, retain)
        res["jobs"][job] = r
        print(f"{job}: backward {r['backward_s'] * 1e3:.1f} ms; pushes {r['pushes_s'] * 1e3:.1f}, structures "
              f"{r['structures_s'] * 1e3:.1f}, rest {r['rest_s'] * 1e3:.1f}", flush=True)
        for key in ("pushes_by_semiring_s", "pushes_by_op_s", "structures_by_op_s"):
            print("  ", key, {k: round(v * 1e3, 1) for k, v in list(r[key].items())[:6]})
        path = bc.write(res, args.out, "profile.json")  # after every job: a later failure loses nothing
    print("wrote", path)


if __name__ == "__main__":
    main()
