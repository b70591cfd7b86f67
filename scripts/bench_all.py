"""Issue 11's performance table, P0–P8, measured in one run against torch / sgemm.

Every job is defined so that both sides do the same work:

- **P0** cold vs warm: ``graphengine analyze`` on a 4-node graph file (default kernel threshold,
  and again with every operation forced onto a kernel, ``GRAPHENGINE_KERNEL_MIN_WORK=0``), on
  the P2b BERT block (55 nodes), and (not ``--quick``) ``graphengine demo``, each run as a
  subprocess with an empty Numba cache directory (``NUMBA_CACHE_DIR`` set in the subprocess's
  environment only) and again with the now-populated one. Whole-command wall time, and whether
  the compile notice was printed.
- **P1** all-MiniLM-L6-v2 exported through the hf frontend (the graph users run), 12 tokens,
  QoI ``last_hidden_state[0,0,0]``, forward + ONE backward computing {real, signed max pair
  with element backpointers, entropy}. Two jobs:
  *attribution to the token embeddings*: torch with every parameter frozen and the embedding
  output (``model.embeddings``'s output, replaced by a leaf that requires grad) requiring grad,
  forward + backward; graphengine retaining the embedding output (pruned to its cone).
  *all parameters retained*: torch with every parameter requiring grad; graphengine retaining
  inputs and parameters (``retain=None``). Each job again with real and entropy in float32
  (``real:float32, max, entropy:float32``: the ``_float32`` lines).
  Not ``--quick``: the same two jobs on the built MiniLM-size encoder, seq 32
  (``bench_bert.bench_speed``).
- **P1b** the demo's job: the same exported graph, retaining only the layer inputs; torch
  with frozen parameters, the embedding output a leaf and every layer input ``retain_grad()``.
  Given again with ``backward(..., prune=False)`` (the walk before pruning became the default:
  it also scatters the max pair into the 30522×384 word-embedding table).
- **P2** 2-layer hidden-128 BERT, 16 tokens, {real, max, absolute, entropy}
  (``bench_bert.bench_tiny``): retaining parameters, and pruned to the embeddings; torch
  forward + backward with parameters requiring grad.
- **P2b** per-node overhead: a one-layer hidden-16 BERT block (4 tokens) with the four values;
  backward time divided by the number of nodes (best wall time, and best process CPU time),
  the walk plan cached as for every example after the first; the reference device beside it.
- **P3** real-semiring backward only vs torch backward only, all parameters retained, on the
  exported MiniLM; graphengine's values in float64 (``real``) and, as a second line, in float32
  (``real:float32``, the same job). The float32 line records its accuracy on this job: the
  largest |g32 − g64| over all parameter gradients, relative to the largest |g64| and to the
  absolute semiring's Z at that element (the scale of the documented bound, docs/method.md
  "Value dtype"), beside torch float32's own |g_torch − g64|.
- **P4** argmax max-times / max-pair contraction vs numpy sgemm, 512² and 1024²
  (``bench_contraction.run``).
- **P5** peak memory of P1 (built MiniLM-size, all parameters) vs torch, each in a fresh
  spawned process, and RSS over repeated analyses (``bench_bert.bench_memory``); graphengine
  also with real and entropy in float32 (``graphengine_float32``).
- **P6** time ∝ |E|: the log-log slope from ``graphengine.experiments.scaling`` (real).
- **P8** GPT-2 small (12 layers, hidden 768, 12 heads, vocab 50257) with random weights from a
  transformers config, seq ``--gpt2-seq`` (default 64; 32 with ``--quick``), QoI the last
  position's logit of token 0, {real, max, entropy} w.r.t. the token embeddings (the ``wte``
  lookup output; torch: that output a leaf requiring grad, parameters frozen). Each side runs in
  a fresh spawned process; time is forward + backward after one warm-up, memory is the process's
  peak RSS (``VmHWM``; not ``ru_maxrss``, which in a spawned child includes the parent's RSS at
  fork) and the rise of the peak over the RSS before the timed run. Two graphengine lines:
  *in-process*: the process builds the torch model, exports it with the torch frontend
  (``from_torch``), drops the model, then runs forward + backward (its peak includes the export);
  *graph file*: exported once in another process and saved (what ``graphengine export`` gives a
  user), the measured process (which imports no torch) loads the file and runs forward +
  backward. torch's process builds the model and runs forward + backward in both. Every process
  records ``stages``: the RSS after each stage (after ``gc.collect()``) and the peak during it.

torch runs in float32, graphengine in float64 (semiring values) unless a line says float32; one
thread on both sides
(``torch.set_num_threads(1)``, BLAS limited by threadpoolctl, ``numba.set_num_threads(1)``).
Best of ``--repeat``. The JSON records the machine (platform, cpu count), threads and dtypes,
and the load average at the start and the end of the run.

    python scripts/bench_all.py [--quick] [--out results/bench/all.json] [--repeat 3]
    python scripts/bench_table.py          # regenerate the README's performance table
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_common as bc  # noqa: F401  (sets thread env vars first)

import numpy as np

TEXT = "The keys to the cabinet are on the table."
THREE = ["real", "max", "entropy"]
THREE_FLOAT32 = ["real:float32", "max", "entropy:float32"]  # max stays float64: selections are exact
FOUR = ["real", "max", "absolute", "entropy"]
QOI = "last_hidden_state[0,0,0]"


def _load():
    return list(os.getloadavg())


# ------------------------------------------------------------------ P0
def _cli(args, cache_dir, env_extra=None):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(bc.REPO))
    env.pop("GRAPHENGINE_KERNEL_MIN_WORK", None)
    env.update(env_extra or {})
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "graphengine", *args], env=env, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"graphengine {' '.join(args)} failed: {p.stderr[-2000:]}")
    return time.perf_counter() - t, "compiling kernels" in p.stderr


def _p0_graphs(tmp):
    from graphengine.ir import Graph
    from graphengine.ir.serialize import save
    from graphengine.models import BertConfig, build_bert, random_bert_weights
    g = Graph()
    x = g.input("x", (1, 3))
    w = g.parameter("w", np.arange(6.0).reshape(3, 2) - 2.5)
    h = g.call("matmul", x, w, name="h")
    g.call("tanh", h, name="y")
    small = os.path.join(tmp, "small.json")
    save(g, small)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position=8)
    block = build_bert(cfg, random_bert_weights(cfg, seed=0, head=None), batch=1, seq_len=4, head=None)
    path = os.path.join(tmp, "block.json")
    save(block, path)
    return small, path, len(block)


def bench_p0(quick: bool) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        small, block, block_nodes = _p0_graphs(tmp)
        opts = ["--semiring", "real,max,entropy", "-o", os.path.join(tmp, "r.json")]
        on_small = ["analyze", small, "--qoi", "y[0,1]", "--input", "x=[[1,2,3]]"] + opts
        cmds = {"analyze_4_nodes": (on_small, None),
                "analyze_4_nodes_kernels_forced": (on_small, {"GRAPHENGINE_KERNEL_MIN_WORK": "0"}),
                f"analyze_bert_block_{block_nodes}_nodes": (
                    ["analyze", block, "--qoi", "last_hidden_state[0,0,0]", "--input", "input_ids=[[1,2,3,4]]",
                     "--input", "token_type_ids=[[0,0,0,0]]"] + opts, None)}
        if not quick:
            cmds["demo_minilm"] = (["demo"], None)
        for name, (cmd, env) in cmds.items():
            cache = tempfile.mkdtemp(dir=tmp)
            cold, cold_notice = _cli(cmd, cache, env)
            warm, warm_notice = _cli(cmd, cache, env)
            out[name] = {"cold_s": cold, "warm_s": warm, "cold_over_warm": cold / warm,
                         "compile_notice_cold": cold_notice, "compile_notice_warm": warm_notice}
            print("P0", name, out[name], flush=True)
    out["method"] = ("whole command as a subprocess; cold: NUMBA_CACHE_DIR an empty directory; warm: a second "
                     "process with the directory the cold run populated; default kernel threshold unless the "
                     "name says kernels_forced (GRAPHENGINE_KERNEL_MIN_WORK=0: every operation on a kernel)")
    out["target"] = "cold <= 1.5x warm; a <= 50-node graph analyzed cold in <= 5 s"
    return out


# ------------------------------------------------------------------ P1, P1b, P3 on the exported MiniLM
def _minilm():
    import torch
    import transformers
    from graphengine.analysis.kqv import find_layer_inputs
    from graphengine.frontends.hf import from_hf_dir
    from graphengine.models.minilm import minilm_path
    graph, feeds, tokens = from_hf_dir(minilm_path(), text=TEXT)
    model = transformers.AutoModel.from_pretrained(minilm_path()).eval()
    kwargs = {k: torch.tensor(v) for k, v in feeds.items()}
    return graph, feeds, model, kwargs, [li.node for li in find_layer_inputs(graph)]


class _LeafAt:
    """Forward hook replacing a module's output with a detached leaf that requires grad."""

    def __init__(self, module):
        self.leaf = None
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, args, output):
        self.leaf = output.detach().requires_grad_(True)
        return self.leaf


def _torch_job(model, kwargs, qoi_index, params: bool, leaf_module=None, layer_inputs=False):
    import torch
    for p in model.parameters():
        p.requires_grad_(params)
    hook = _LeafAt(leaf_module) if leaf_module is not None else None

    def run():
        model.zero_grad(set_to_none=True)
        out = model(**kwargs, output_hidden_states=layer_inputs)
        if layer_inputs:
            for h in out.hidden_states[1:-1]:
                h.retain_grad()
        out[0][qoi_index].backward()
    state = {}

    def prep():
        model.zero_grad(set_to_none=True)
        state["out"] = model(**kwargs)[0]

    def bwd():
        state["out"][qoi_index].backward()
    torch.set_num_threads(1)
    return run, prep, bwd, hook


def _ours(g, feeds, qoi, semirings, retain, prune=True):
    from graphengine.engine import backward, forward

    def run():
        return backward(g, forward(g, feeds), qoi, semirings=semirings, retain=retain, prune=prune)
    return run


def _bwd_only(prep, bwd, repeat):
    times = []
    for _ in range(repeat):
        prep()
        t = time.perf_counter()
        bwd()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_minilm(repeat: int) -> dict:
    from graphengine.engine import backward, forward
    graph, feeds, model, kwargs, layers = _minilm()
    bc.limit_threads(1)
    idx = (0, 0, 0)
    emb = layers[0]
    out = {"graph": "all-MiniLM-L6-v2 via the hf frontend", "tokens": int(feeds["input_ids"].shape[1]),
           "nodes": len(graph), "semirings": THREE}
    jobs = {
        "P1_embeddings": (dict(params=False, leaf_module=model.embeddings), [emb]),
        "P1_all_parameters": (dict(params=True), None),
        "P1b_layer_inputs": (dict(params=False, leaf_module=model.embeddings, layer_inputs=True), layers),
        "P1b_layer_inputs_prune_false": (dict(params=False, leaf_module=model.embeddings, layer_inputs=True), layers),
    }
    for name, (tkw, retain) in jobs.items():
        run_t, _, _, hook = _torch_job(model, kwargs, idx, **tkw)
        t_torch, _ = bc.best_of(run_t, repeat)
        if hook is not None:
            hook.handle.remove()
        variants = {"": THREE, "_float32": THREE_FLOAT32} if name.startswith("P1_") else {"": THREE}
        for suffix, semirings in variants.items():
            t_ours, _ = bc.best_of(_ours(graph, feeds, QOI, semirings, retain,
                                         prune=not name.endswith("prune_false")), repeat)
            out[name + suffix] = {"torch_s": t_torch, "graphengine_s": t_ours, "ratio": t_ours / t_torch,
                                  "semirings": semirings}
            print(name + suffix, out[name + suffix], flush=True)
    _, prep, bwd, _ = _torch_job(model, kwargs, idx, params=True)
    t_torch_b = _bwd_only(prep, bwd, repeat)
    acts = forward(graph, feeds)
    for key, sr in (("P3_real_backward", "real"), ("P3_real_backward_float32", "real:float32")):
        t_ours_b, _ = bc.best_of(lambda: backward(graph, acts, QOI, semirings=[sr]), repeat)
        out[key] = {"torch_s": t_torch_b, "graphengine_s": t_ours_b, "ratio": t_ours_b / t_torch_b, "semiring": sr}
        print(key, out[key], flush=True)
    out["P3_real_backward_float32"]["accuracy"] = _float32_accuracy(graph, acts, model)
    return out


def _float32_accuracy(graph, acts, model) -> dict:
    """|g32 − g64| over every parameter gradient of the P3 job (torch's ``.grad`` from the last
    backward beside it): the largest, relative to the largest |g64|, and the largest ratio to Z."""
    from graphengine.engine import backward
    r = backward(graph, acts, QOI, semirings=["real", "real:float32", "absolute"])
    named = dict(model.named_parameters())
    prefix = model.base_model_prefix + "."
    err = err_torch = scale = to_z = 0.0
    for p in graph.parameters():
        if p.id not in r.by_semiring["real"].values:
            continue
        g64 = r.grad(p.name)
        diff = np.abs(r.get(p.name, "real:float32").astype(np.float64) - g64)
        z = r.get(p.name, "absolute")
        err, scale = max(err, float(diff.max())), max(scale, float(np.abs(g64).max()))
        to_z = max(to_z, float(np.max(np.where(z > 0, diff / np.where(z > 0, z, 1.0), 0.0))))
        t = named.get(p.name, named.get(prefix + p.name))
        if t is not None and t.grad is not None:
            err_torch = max(err_torch, float(np.max(np.abs(t.grad.numpy().astype(np.float64) - g64))))
    return {"max_abs_error_vs_float64": err, "relative_to_largest_gradient": err / scale,
            "max_error_over_Z": to_z, "torch_float32_max_abs_error_vs_graphengine_float64": err_torch,
            "torch_relative_to_largest_gradient": err_torch / scale}


# ------------------------------------------------------------------ P2b
def bench_overhead(repeat: int) -> dict:
    from graphengine.engine import backward, forward
    from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                     max_position=8)
    g = build_bert(cfg, random_bert_weights(cfg, seed=0, head=None), batch=1, seq_len=4, head=None)
    feeds = bert_feeds(np.arange(4).reshape(1, 4) % cfg.vocab_size)
    acts = forward(g, feeds)
    bc.limit_threads(1)
    t, _ = bc.best_of(lambda: backward(g, acts, QOI, semirings=FOUR), repeat * 3)
    cpu = []
    for _ in range(repeat * 3):  # process CPU time: less disturbed than wall time on a shared machine
        c = time.process_time()
        backward(g, acts, QOI, semirings=FOUR)
        cpu.append(time.process_time() - c)
    t_ref, _ = bc.best_of(lambda: backward(g, acts, QOI, semirings=FOUR, device="reference"), repeat * 3)
    out = {"nodes": len(g), "semirings": FOUR, "backward_s": t, "per_node_us": t / len(g) * 1e6,
           "backward_cpu_s": min(cpu), "per_node_cpu_us": min(cpu) / len(g) * 1e6,
           "reference_device_backward_s": t_ref, "target": "<= 1 ms (<= 30 us per node)"}
    print("P2b", out, flush=True)
    return out


# ------------------------------------------------------------------ P6
def bench_scaling(quick: bool) -> dict:
    from graphengine.experiments import scaling
    with tempfile.TemporaryDirectory() as tmp:
        doc = scaling.run(out=tmp, quick=quick, progress=False, semirings=["real"])
    out = {"config": doc["config"], "fits": {kind: fam["fits"]["real"] for kind, fam in doc["families"].items()},
           "edges": {kind: [r["edges"] for r in fam["rows"]] for kind, fam in doc["families"].items()}}
    print("P6", out["fits"], flush=True)
    return out


# ------------------------------------------------------------------ P8
MIB = 1 << 20


class _Stages:
    """The RSS after each stage of a P8 process (after ``gc.collect()``) and the peak RSS during
    it (VmHWM, reset at the start of every stage)."""

    def __init__(self):
        self.rows = []
        bc.reset_peak_rss()

    def __call__(self, name: str) -> None:
        gc.collect()
        self.rows.append({"stage": name, "rss_mib": bc.rss_bytes() / MIB, "peak_mib": bc.peak_rss_bytes() / MIB})
        bc.reset_peak_rss()


def _gpt2_worker(side: str, seq: int, graph_file: str, q):
    try:
        q.put(_gpt2_job(side, seq, graph_file))
    except Exception as e:  # the parent waits on the queue: always answer
        q.put({"error": f"{type(e).__name__}: {e}"})


def _gpt2_model(seq: int):
    import torch
    import transformers
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024,
                                  use_cache=False)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    return model, torch.randint(0, cfg.vocab_size, (1, seq), generator=torch.Generator().manual_seed(0))


def _token_embedding(g):
    """The node of the ``wte`` lookup: an embedding of a vocabulary-sized table by the graph input."""
    return next(n for n in g.nodes if n.op == "embedding" and g.nodes[n.inputs[1]].op == "input"
                and g.nodes[n.inputs[0]].shape[0] == 50257)


def _gpt2_export_worker(seq: int, path: str, q):
    """Export once (what ``graphengine export`` does for a user) and save the graph file."""
    try:
        from graphengine.frontends.torch import from_torch
        from graphengine.ir.serialize import save
        model, ids = _gpt2_model(seq)
        t = time.perf_counter()
        save(from_torch(model, (ids,)), path)
        np.save(path + ".ids.npy", ids.numpy())  # the measured process then needs no torch
        q.put({"export_and_save_s": time.perf_counter() - t, "file_mib": os.path.getsize(path) / MIB})
    except Exception as e:  # the parent waits on the queue: always answer
        q.put({"error": f"{type(e).__name__}: {e}"})


def _gpt2_job(side: str, seq: int, graph_file: str = "") -> dict:
    stage = _Stages()
    bc.limit_threads(1)
    qoi_index = (0, seq - 1, 0)
    export_s = 0.0
    if side == "graphengine_file":  # no torch in this process
        import graphengine.engine  # noqa: F401  (its imports counted in the first stage)
        from graphengine.ir.serialize import load
        stage("imports")
        g = load(graph_file)
        ids = np.load(graph_file + ".ids.npy")
        stage("graph file loaded")
    else:
        import torch
        torch.set_num_threads(1)
        stage("imports")
        model, ids = _gpt2_model(seq)
        stage("torch model built")
    if side == "torch":
        run, _, _, _ = _torch_job(model, {"input_ids": ids}, qoi_index, params=False,
                                  leaf_module=model.transformer.wte)
        run()
        stage("forward + backward (warm-up)")
    else:
        from graphengine.engine import backward, forward
        if side == "graphengine":
            from graphengine.frontends.torch import from_torch
            t = time.perf_counter()
            g = from_torch(model, (ids,))
            export_s = time.perf_counter() - t
            stage("exported to the IR (torch.export + conversion)")
            ids = ids.numpy()
            del model
            stage("torch model dropped")
        feeds = {g.inputs()[0].name: ids}
        qoi, retain = f"logits[0,{seq - 1},0]", [_token_embedding(g).id]
        acts = forward(g, feeds)
        stage("forward (activations held)")
        result = backward(g, acts, qoi, semirings=THREE, retain=retain)
        stage("backward (results held)")
        del acts, result
        stage("activations and results dropped")
        run = _ours(g, feeds, qoi, THREE, retain)
    # The process's own peak is VmHWM (this process's memory since exec): ru_maxrss of a spawned
    # child also counts the parent's RSS at the moment it forked, so it is not used.
    base = bc.rss_bytes()
    ok = bc.reset_peak_rss()
    t = time.perf_counter()
    run()
    secs = time.perf_counter() - t
    timed_peak = bc.peak_rss_bytes()
    process_peak = int(max([r["peak_mib"] * MIB for r in stage.rows] + [timed_peak]))
    return {"seconds": secs, "export_s": export_s, "rss_before": base,
            "peak_rss_delta": timed_peak - base if ok else None, "process_peak_rss": process_peak,
            "stages": stage.rows}


def bench_gpt2(seq: int) -> dict:
    from bench_bert import _in_fresh_process
    ours = _in_fresh_process(_gpt2_worker, "graphengine", seq, "")
    theirs = _in_fresh_process(_gpt2_worker, "torch", seq, "")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gpt2.ge")
        exported = _in_fresh_process(_gpt2_export_worker, seq, path)
        from_file = (_in_fresh_process(_gpt2_worker, "graphengine_file", seq, path) if "error" not in exported
                     else {"error": exported["error"]})
    if "error" in ours or "error" in theirs:
        raise RuntimeError(f"graphengine: {ours.get('error')}; torch: {theirs.get('error')}")
    out = {"seq": seq, "semirings": THREE, "graphengine": ours, "torch": theirs,
           "time_ratio": ours["seconds"] / theirs["seconds"],
           "process_peak_ratio": ours["process_peak_rss"] / theirs["process_peak_rss"],
           "graph_file": {"export": exported, "graphengine": from_file},
           "target": "<= 5x torch's time, <= 2x its peak memory"}
    if "error" not in from_file:
        out["graph_file"].update(time_ratio=from_file["seconds"] / theirs["seconds"],
                                 process_peak_ratio=from_file["process_peak_rss"] / theirs["process_peak_rss"])
    for side, rec in (("graphengine", ours), ("graphengine_file", from_file), ("torch", theirs)):
        for row in rec.get("stages", []):
            print(f"P8 {side:17s} {row['stage']:48s} rss {row['rss_mib']:7.0f} MiB  peak {row['peak_mib']:7.0f} MiB")
    print("P8", {k: v for k, v in out.items() if k not in ("graphengine", "torch", "graph_file")}, flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="", help="JSON file (default results/bench/all.json)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings")
    ap.add_argument("--quick", action="store_true", help="skip the built-MiniLM speed run and the demo in "
                    "P0, fewer RSS repeats, GPT-2 at seq 32, scaling to 1e5 edges")
    ap.add_argument("--gpt2-seq", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: P0,P1,P2,P2b,P4,P5,P6,P8")
    ap.add_argument("--only", default="", help="comma list of parts to run, merged into the existing --out "
                    "file (the other parts' figures are kept)")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    only = set(filter(None, args.only.split(",")))
    sys.path.insert(0, str(bc.REPO / "scripts"))
    import bench_bert
    import bench_contraction
    out_path = Path(args.out) if args.out else bc.RESULTS / "all.json"
    res = json.loads(out_path.read_text()) if only and out_path.exists() else {}
    res.update({"description": __doc__, "threads": {"torch": 1, "blas": 1, "numba": 1},
                "dtypes": {"torch": "float32", "graphengine": "float64",
                           "graphengine_float32_lines": "real and entropy float32 (NAME:float32), max float64"},
                "load_average_start": _load()})
    parts = {
        "P0": lambda: bench_p0(args.quick),
        "P1": lambda: bench_minilm(args.repeat),
        "P1_built": (lambda: bench_bert.bench_speed(args.repeat)) if not args.quick else None,
        "P2": lambda: bench_bert.bench_tiny(args.repeat),
        "P2b": lambda: bench_overhead(args.repeat),
        "P4": lambda: bench_contraction.run([512, 1024], args.repeat),
        "P5": lambda: bench_bert.bench_memory(10 if args.quick else 50),
        "P6": lambda: bench_scaling(args.quick),
        "P8": lambda: bench_gpt2(args.gpt2_seq or (32 if args.quick else 64)),
    }
    for name, fn in parts.items():
        if fn is None or name in skip or name.split("_")[0] in skip or (only and name not in only):
            continue
        t = time.perf_counter()
        res.setdefault("load_per_part", {})[name] = _load()[0]
        try:
            res[name] = fn()
            res.setdefault("quick_parts", {})[name] = args.quick
        except Exception as e:  # one failing part must not lose the others' figures
            res[name] = {"error": f"{type(e).__name__}: {e}"}
            print(name, "failed:", e, flush=True)
        res.setdefault("part_seconds", {})[name] = time.perf_counter() - t
        res["load_average_end"] = _load()
        bc.write(res, str(out_path), "all.json")  # after every part: a later failure loses nothing
    print("wrote", out_path)


if __name__ == "__main__":
    mp.freeze_support()
    main()
