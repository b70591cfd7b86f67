"""Where P8's backward time goes: GPT-2 small (random weights, the job of ``bench_all.py``'s P8)
at ``--seq`` tokens, {real, max, entropy} w.r.t. the token embeddings; after one warm-up pass,
one timed backward with the walk's pushes timed per op kind and semiring, the ops' Jacobian
structures per op kind, and the rest (backpointer records, ⊕ across consumers, the walk itself).

    python scripts/profile_gpt2.py [--seq 64] [--out results/bench/p8_profile.json]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections import defaultdict

import bench_common as bc  # noqa: F401  (sets thread env vars first)


def profile(seq: int) -> dict:
    import torch
    from bench_all import THREE, _gpt2_model, _token_embedding
    walk = importlib.import_module("graphengine.engine.backward")  # the module, not the function
    from graphengine.engine import forward
    from graphengine.frontends.torch import from_torch
    bc.limit_threads(1)
    torch.set_num_threads(1)
    model, ids = _gpt2_model(seq)
    g = from_torch(model, (ids,))
    del model
    acts = forward(g, {g.inputs()[0].name: ids.numpy()})
    qoi, retain = f"logits[0,{seq - 1},0]", [_token_embedding(g).id]
    walk.backward(g, acts, qoi, semirings=THREE, retain=retain)  # warm-up: kernels loaded

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
        walk.backward(g, acts, qoi, semirings=THREE, retain=retain)
        total = time.perf_counter() - t
    finally:
        walk.propagate, walk.get_op = real_propagate, real_get_op
    by_semiring = defaultdict(float)
    by_op = defaultdict(float)
    for (op, sr), s in pushes.items():
        by_semiring[sr] += s
        by_op[op] += s
    pushed, structured = sum(pushes.values()), sum(structures.values())
    return {"seq": seq, "semirings": THREE, "backward_s": total,
            "pushes_s": pushed, "structures_s": structured, "rest_s": total - pushed - structured,
            "pushes_by_semiring_s": dict(sorted(by_semiring.items(), key=lambda kv: -kv[1])),
            "pushes_by_op_s": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
            "pushes_by_op_and_semiring_s": {f"{op} {sr}": s for (op, sr), s in
                                            sorted(pushes.items(), key=lambda kv: -kv[1])},
            "structures_by_op_s": dict(sorted(structures.items(), key=lambda kv: -kv[1])),
            "method": "one backward after a warm-up; propagate() and each op's jacobian() timed by wrappers "
                      "(their overhead is in the total); rest = backpointer records, ⊕ across consumers, the walk"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--out", default="", help="JSON file (default results/bench/p8_profile.json)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(bc.REPO / "scripts"))
    res = profile(args.seq)
    print(f"backward {res['backward_s']:.2f} s: pushes {res['pushes_s']:.2f}, structures {res['structures_s']:.2f}, "
          f"rest {res['rest_s']:.2f}")
    for key in ("pushes_by_semiring_s", "pushes_by_op_s", "structures_by_op_s"):
        print(key, {k: round(v, 3) for k, v in list(res[key].items())[:8]})
    print("wrote", bc.write(res, args.out, "p8_profile.json"))


if __name__ == "__main__":
    main()
