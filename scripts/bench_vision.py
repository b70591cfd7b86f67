"""Vision models: graphengine vs torch autograd on a small CNN and a small ViT (random weights).

For each model: export time (torch.export + mapping), graphengine forward + ONE backward with
{real, signed max pair with element backpointers, entropy}, the real semiring alone, and torch
forward + backward of the same model on the same image, in float32. One thread on both sides;
best of ``--repeat``. The QoI is one logit (``logits[0, 1]`` / the output's element [0, 1]).
Also checks that the gradient with respect to the image agrees with torch (≤ 1e-4 relative).

    python scripts/bench_vision.py [--out results/bench/vision.json] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import bench_common as bc  # noqa: F401  (sets thread env vars first)

import numpy as np


def _cnn(torch):
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, groups=2), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()


def _vit(torch):
    import transformers
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=32, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=4,
                                 num_attention_heads=4, intermediate_size=128, num_labels=10)
    return transformers.ViTForImageClassification(cfg).eval()


def _measure(name, model, torch, repeat):
    from graphengine.engine import backward, forward, select
    from graphengine.frontends.torch import from_torch

    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype("float32"))
    t = time.perf_counter()
    g = from_torch(model, (x,))
    export_s = time.perf_counter() - t
    (inp,) = g.inputs()
    out = g.nodes[g.outputs[0]].name
    feeds = {inp.name: x.numpy()}

    def ours(semirings):
        def run():
            acts = forward(g, feeds)
            return backward(g, acts, select(out, (0, 1)), semirings=semirings, retain=[inp.name])
        return run

    three, _ = bc.best_of(ours(["real", "max", "entropy"]), repeat)
    real, _ = bc.best_of(ours(["real"]), repeat)

    def theirs():
        xg = x.clone().requires_grad_(True)
        y = model(xg)
        (y.logits if hasattr(y, "logits") else y)[0, 1].backward()
        return xg.grad

    torch_s, _ = bc.best_of(theirs, repeat)
    grad = ours(["real"])().grad(inp.name)
    want = theirs().numpy()
    err = float(np.abs(grad - want).max() / np.abs(want).max())
    return {"model": name, "nodes": len(g.nodes), "ops": sorted({n.op for n in g}), "export_s": export_s,
            "graphengine_real_max_entropy_s": three, "graphengine_real_s": real, "torch_fwd_bwd_s": torch_s,
            "ratio_three": three / torch_s, "ratio_real": real / torch_s, "grad_rel_error": err,
            "grad_ok": err <= 1e-4}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    _limits = bc.limit_threads(1)  # noqa: F841  (kept alive for the run)
    rows = [_measure("cnn", _cnn(torch), torch, args.repeat), _measure("vit", _vit(torch), torch, args.repeat)]
    for r in rows:
        print(f"{r['model']}: {r['nodes']} nodes, export {r['export_s']:.2f}s, real+max+entropy "
              f"{r['graphengine_real_max_entropy_s'] * 1e3:.1f} ms ({r['ratio_three']:.1f}x torch), real "
              f"{r['graphengine_real_s'] * 1e3:.1f} ms ({r['ratio_real']:.1f}x), torch {r['torch_fwd_bwd_s'] * 1e3:.1f} ms, "
              f"grad rel error {r['grad_rel_error']:.1e}")
    path = bc.write({"models": rows}, args.out, "vision.json")
    print(f"wrote {path}")
    return 0 if all(r["grad_ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
