"""§5.3 of the paper (docs/method.md): path entropy of the input tokens vs task difficulty (MDL).

For every task family (:data:`graphengine.datasets.SECTION5_TASKS`: length 36, ids 1–59,
3,600 / 360 / 360, data seed 0) and training seed:

1. **MDL** (:mod:`graphengine.experiments.mdl`): the online code over the 3,600 training
   examples with the paper's blocks ``[2, 2, 4, 4, 8, 16, 36, 72, 72, 144, 288, 576, 576, 1800]``;
   each block is scored by a fresh BERT classifier (2 layers, hidden 64, 4 heads, intermediate
   32, dropout 0, 36 output labels for every task; AdamW lr 1e-3 with ``transformers.AdamW``'s
   defaults weight decay 0 and eps 1e-6, batch 32, 50 epochs, reshuffled every epoch) trained on
   all earlier blocks. Reported ``mdl`` = 2·ln 36 + Σ per-block **mean** cross-entropy in nats
   (the paper's quantity, 12–51 nats); ``codelength`` = the same with the per-block losses
   **summed over examples** (the textbook online codelength) is reported beside it.
2. The model trained on all blocks (the last MDL model, as in the authors' code) is exported with
   the torch frontend at the validation batch shape (360 × 36) with a ``log_probs`` node and
   saved as ``models/<task>_seed<s>.ge``.
3. **Entropy** (graphengine only): QoI = the summed cross-entropy of the validation set,
   −Σ_b log_probs[b, y_b], one expectation-semiring backward. The per-position (Z, R) of the
   word-embedding lookup output, summed over the 64 hidden units, give a token entropy
   H = ΣR/ΣZ + log ΣZ. Run entropy = Σ over examples and positions / #examples.

   - ``paper`` (the paper's numbers): the paper's decomposition and granularity, and — as the
     original, which pooled adjoints into the embedding *table* — a token's entropy is that of
     its vocabulary row, pooled over all positions with that token id within each batch of
     ``entropy_batch`` = 4 examples (the authors' ``BF_BATCH_SIZE``). For the linear entropy
     semiring pooling a row is exactly summing the per-position (Z, R), so one backward over
     all 360 examples gives the batch-of-4 numbers (tested against the table parameter).
   - ``paper_per_position``: the same graph, entropy per position (no pooling).
   - ``scalar``: the exported graph (fused softmax / layer norm / GELU, exact Jacobians) at
     scalar granularity, entropy per position — the exact statistic. Per position and per
     vocabulary row differ because a row's paths are the union of several positions' paths.

Outputs (:mod:`graphengine.experiments.entropy_mdl_report`): per task the MDL, entropies and
accuracy (mean over seeds); the Spearman correlation of entropy and MDL; BinCountOnes entropy and
MDL vs the number of classes; the per-example entropy of correctly vs incorrectly classified
validation examples with Welch's t test and the Mann–Whitney U test
(:mod:`graphengine.experiments.stats`), pooled over runs both raw and centred per run; the
paper's three claims tested with n stated.

**Jobs, workers, resume.** Each (task, seed) is one job; the jobs run through the dataset
runner's executors (:mod:`graphengine.runner.execute`): with ``workers`` ≥ 2 on a Dask
``LocalCluster`` of that many spawned single-threaded worker processes, with 0 or 1 in this
process. Default: the usable cores, capped at the number of pending jobs. Every job runs with
one torch, Numba and BLAS thread wherever it runs, and training is seeded by (task, seed)
alone, so the run records do not depend on the number of workers. Each finished job writes its
run record ``runs/<task>_seed<s>.json`` at once (atomically, from this process); the trained
model goes to ``models/<task>_seed<s>.ge``. A rerun skips every job whose record matches the
settings (``config_hash``) and reuses a saved model whose training settings match, so an
interrupted run resumes where it stopped. A record made here also holds ``timings_s`` (the
job's phases in seconds; records of earlier versions lack it, and nothing needs it).
``aggregate_only`` (``--aggregate-only``) runs
nothing: it reports on the records present and lists the (task, seed) runs missing.

>>> len(DEFAULTS["tasks"]), QUICK["n_seeds"]
(27, 1)
>>> pool_rows(np.array([[1, 2, 1]]), np.array([[1.0, 1.0, 1.0]]), np.zeros((1, 3)), 4).round(4).tolist()
[[0.6931, 0.0, 0.6931]]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..analysis.entropy import grouped_entropy, pooled_entropy
from ..datasets import SECTION5_TASKS, get_dataset
from ..engine import backward, forward, weighted
from ..ir import save
from ..ir.passes import decompose
from ..models.bert import word_embedding_lookup
from .common import (ExperimentError, Timer, add_retrain_argument, config_hash, feeds_for, jsonable, load_model_graph,
                     progress as progress_bar, read_json, require_transformers, results_dir, settings, single_thread,
                     write_json)
from .entropy_mdl_report import PAPER, VARIANTS, coverage_text, write_report
from .mdl import block_sizes, prequential_mdl

__all__ = ["run", "token_entropies", "pool_rows", "run_path", "record_hash", "collect_runs", "worker_count",
           "DEFAULTS", "QUICK", "QUICK_TASKS", "PAPER"]

NAME = "entropy-mdl"
DESCRIPTION = "paper §5.3: path entropy of the input tokens vs task difficulty (MDL), BERT classifiers"
QUICK_HELP = "8 tasks, 1 seed, 20 epochs, MDL over 1,800 examples"
QUICK_TASKS = ("contains_1", "first_token_repeated_last", "adjacent_duplicate", "contains_token_set:5",
               "contains_token_set_ood:10", "bin_count_ones:2", "bin_count_ones:6", "bin_count_ones:36")
DEFAULTS: Dict[str, Any] = dict(data_seed=0, sizes=(3600, 360, 360), length=36, vocab_size=60, tasks=SECTION5_TASKS,
                                n_seeds=3, num_layers=2, hidden_size=64, num_heads=4, intermediate_size=32,
                                num_labels=36, epochs=50, batch_size=32, lr=1e-3, optimizer="adamw", shuffle=True,
                                n_train=None, entropy_batch=4, min_accuracy=0.9)
#: ``--quick``: 8 tasks, one seed, 20 epochs, MDL (and the final model) on the first 1,800 training
#: examples (at 10 epochs most models were still at chance: BERT here learns in a burst after ~600–1,100 steps).
QUICK: Dict[str, Any] = dict(tasks=QUICK_TASKS, n_seeds=1, epochs=20, n_train=1800)


# ----------------------------------------------------------------------------- entropy
def pool_rows(x: np.ndarray, Z: np.ndarray, R: np.ndarray, batch: int) -> np.ndarray:
    """Token entropies [N, T] when (Z, R) are pooled per vocabulary row within consecutive
    batches of ``batch`` examples: every position gets the entropy of its row,
    ΣR/ΣZ + log ΣZ over the positions of the batch holding that token id."""
    x = np.asarray(x)
    n = len(x)
    chunk = np.repeat(np.arange(math.ceil(n / batch)), batch)[:n, None] * np.ones_like(x)
    key = chunk.astype(np.int64) * (int(x.max()) + 1) + x
    return grouped_entropy(Z, R, key)


def token_entropies(graph, x: np.ndarray, y: np.ndarray, policy: str, granularity: str,
                    entropy_batch: int = 4) -> Dict[str, Any]:
    """Per-token entropies [N, T] of a classifier graph with a ``log_probs`` output for the
    examples ``x`` (its batch shape), QoI = Σ_b CE_b: ``per_position`` and ``per_row`` (pooled per
    vocabulary row within batches of ``entropy_batch``), plus ``logits``-based correctness."""
    g = decompose(graph, policy)
    acts = forward(g, feeds_for(g, x))
    lp = np.asarray(acts[g.node("log_probs").id], np.float64)
    y = np.asarray(y)
    coef = np.zeros(lp.shape)
    coef[np.arange(len(y)), y] = -1.0
    lookup = word_embedding_lookup(g)
    res = backward(g, acts, weighted("log_probs", coef), semirings=["entropy"], retain=[lookup.name],
                   granularity=granularity)
    c = res.components(lookup.name, "entropy")
    Z = np.asarray(c["Z"], np.float64).sum(-1)
    R = np.asarray(c["R"], np.float64).sum(-1)
    return {"per_position": pooled_entropy(Z, R, axis=()), "per_row": pool_rows(x, Z, R, entropy_batch),
            "correct": lp.argmax(-1) == y, "mean_ce": float(-lp[np.arange(len(y)), y].mean())}


# ----------------------------------------------------------------------------- one run
def _slug(task: str) -> str:
    return task.replace(":", "_")


def _train_config(cfg, task: str, seed: int) -> Dict[str, Any]:
    keys = ("data_seed", "sizes", "length", "vocab_size", "num_layers", "hidden_size", "num_heads",
            "intermediate_size", "num_labels", "epochs", "batch_size", "lr", "optimizer", "shuffle", "n_train")
    return {"task": task, "seed": seed, **{k: cfg[k] for k in keys}}


def _mdl_and_export(data, cfg, task: str, seed: int, meta: Dict[str, Any], show: bool):
    require_transformers(NAME)
    from . import training

    n = len(data.train) if cfg["n_train"] is None else min(int(cfg["n_train"]), len(data.train))
    x, y = data.train.x[:n], data.train.y[:n]

    def fit_and_score(train_idx, test_idx, block):
        model = training.bert_classifier(cfg["vocab_size"], cfg["hidden_size"], cfg["num_layers"], cfg["num_heads"],
                                         cfg["intermediate_size"], cfg["num_labels"], seed=seed * 1000 + block)
        training.train(model, x[train_idx], y[train_idx], cfg["epochs"], cfg["batch_size"], cfg["lr"],
                       cfg["optimizer"], seed=seed * 1000 + block, shuffle=cfg["shuffle"])
        return training.evaluate(model, x[test_idx], y[test_idx])["mean_ce"], model

    prog = (lambda it, desc="": progress_bar(it, desc=f"{task} seed {seed}: MDL blocks")) if show else (lambda it, **k: it)
    mdl, model = prequential_mdl(y, cfg["num_labels"], fit_and_score, np.random.default_rng(seed),
                                 sizes=block_sizes(n), progress=prog)
    meta = dict(meta, mdl=mdl.to_dict(), n_train_used=n, torch_val=training.evaluate(model, data.val.x, data.val.y),
                torch_test=training.evaluate(model, data.test.x, data.test.y))
    return training.export(model, data.val.x, log_probs=True, meta=meta)



def run_path(out: str, task: str, seed: int) -> str:
    """Where the run record of (``task``, ``seed``) lives under the results folder ``out``."""
    return os.path.join(out, "runs", f"{_slug(task)}_seed{seed}.json")


def record_hash(cfg: Dict[str, Any], task: str, seed: int) -> str:
    """The ``config_hash`` a run record of (``task``, ``seed``) made with settings ``cfg`` holds."""
    return config_hash({**_train_config(cfg, task, seed), "entropy_batch": cfg["entropy_batch"]})


def _compute_one(out: str, cfg, task: str, seed: int, retrain: bool, show: bool, timer: Timer) -> Dict[str, Any]:
    """The run record of one job: MDL, training and export (or the saved model), entropies."""
    tcfg = _train_config(cfg, task, seed)
    with timer("data"):
        data = get_dataset(task, seed=cfg["data_seed"], sizes=tuple(cfg["sizes"]), length=cfg["length"],
                           vocab_size=cfg["vocab_size"])
    model_path = os.path.join(out, "models", f"{_slug(task)}_seed{seed}.ge")
    mh = config_hash(tcfg)
    g = None if retrain else load_model_graph(model_path, mh)
    reused = g is not None
    if g is None:
        with timer("mdl+train+export"):
            g = _mdl_and_export(data, cfg, task, seed, {"config": tcfg, "config_hash": mh}, show)
        os.makedirs(os.path.dirname(model_path), exist_ok=True)
        save(g, model_path)
    em = g.meta["experiment"]
    rec: Dict[str, Any] = {"task": task, "seed": seed, "config_hash": record_hash(cfg, task, seed),
                           "model_file": os.path.relpath(model_path, out),
                           "model_reused": reused, "exporter": em.get("exporter"), "mdl": em["mdl"]["mdl"],
                           "codelength": em["mdl"]["codelength"], "mdl_detail": em["mdl"],
                           "n_train_used": em["n_train_used"], "val_accuracy_torch": em["torch_val"]["accuracy"],
                           "test_accuracy_torch": em["torch_test"]["accuracy"], "num_classes": data.num_classes}
    n = len(data.val)
    with timer("entropy"):
        for v, policy, gran in VARIANTS:
            te = token_entropies(g, data.val.x, data.val.y, policy, gran, cfg["entropy_batch"])
            main = te["per_row"] if v == "paper" else te["per_position"]
            rec[v] = {"run_entropy": float(main.sum() / n), "per_example": main.sum(1).tolist(),
                      "run_entropy_per_position": float(te["per_position"].sum() / n),
                      "run_entropy_per_row": float(te["per_row"].sum() / n),
                      "mean_token_entropy": float(main.mean())}
            if v == "scalar":
                rec["correct"] = te["correct"].astype(int).tolist()
                rec["val_accuracy_ir"] = float(te["correct"].mean())
                rec["val_mean_ce_ir"] = te["mean_ce"]
    rec["entropy_paper"] = rec["paper"]["run_entropy"]
    rec["entropy_paper_per_position"] = rec["paper"]["run_entropy_per_position"]
    rec["entropy_scalar"] = rec["scalar"]["run_entropy"]
    return rec


# ----------------------------------------------------------------------------- jobs
@contextlib.contextmanager
def _single_numba_thread() -> Iterator[None]:
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)


def _worker_setup(directory: str) -> Dict[str, Any]:
    """The runner's per-worker "model" of these jobs: nothing to load; imports torch and the
    training code once (which makes torch single-threaded)."""
    require_transformers(NAME)
    from . import training

    return {"pid": os.getpid(), "torch_threads": training.torch.get_num_threads()}


def _job(setup: Dict[str, Any], payload: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One (task, seed) job on a runner executor: its run record and phase timings. Runs with one
    torch, Numba and BLAS thread, so its numbers are those of any worker."""
    import torch

    timer = Timer()
    blas, _ = single_thread()
    threads = torch.get_num_threads()
    start = time.perf_counter()
    with blas, _single_numba_thread():
        torch.set_num_threads(1)
        try:
            rec = _compute_one(payload["out"], payload["cfg"], payload["task"], payload["seed"], payload["retrain"],
                               payload["show"], timer)
        finally:
            torch.set_num_threads(threads)
    rec["timings_s"] = {**timer.seconds, "job": time.perf_counter() - start}
    return [rec]


def worker_count(workers: Optional[int], pending: int) -> int:
    """Worker processes for ``pending`` jobs: ``workers`` (default: the usable cores), at most one
    per pending job; 0 or 1 means this process.

    >>> worker_count(8, 3), worker_count(0, 5), worker_count(None, 0)
    (3, 0, 0)
    """
    if workers is not None and workers < 0:
        raise ExperimentError(f"entropy-mdl: --workers must be >= 0, got {workers}")
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(workers, pending)


def _run_jobs(out: str, cfg: Dict[str, Any], jobs: List[Tuple[str, int]], retrain: bool, workers: Optional[int],
              show: bool, timer: Timer) -> Dict[str, Any]:
    """Run the pending jobs; every job's record (resumed or new) and how they ran."""
    from ..runner.execute import Bundle, DaskExecutor, SerialExecutor, Task

    records: Dict[Tuple[str, int], Dict[str, Any]] = {}
    pending = []
    for t, s in jobs:
        path = run_path(out, t, s)
        rec = None if retrain or not os.path.exists(path) else read_json(path)
        if rec is not None and rec.get("config_hash") == record_hash(cfg, t, s):
            records[(t, s)] = {**rec, "resumed": True}
        else:
            pending.append((t, s))
    n = worker_count(workers, len(pending))
    if pending:
        require_transformers(NAME)
        plain = jsonable(cfg)  # what a worker receives; this process uses the same, so the hashes agree
        tasks = [Task(f"{_slug(t)}_seed{s}", {"out": os.path.abspath(out), "cfg": plain, "task": t, "seed": s,
                                              "retrain": retrain, "show": show and n <= 1}) for t, s in pending]
        executor = SerialExecutor() if n <= 1 else DaskExecutor(workers=n, retries=0)
        with executor:
            done = executor.map(_job, Bundle(f"{__name__}:_worker_setup", {}), tasks)
            for _, (rec,) in progress_bar(done, total=len(tasks), desc=f"entropy-mdl jobs ({max(n, 1)} at a time)",
                                          enabled=show):
                write_json(run_path(out, rec["task"], rec["seed"]), rec)
                for k, v in rec["timings_s"].items():
                    timer.seconds[k] = timer.seconds.get(k, 0.0) + v
                records[(rec["task"], rec["seed"])] = rec
    return {"records": records, "workers": n, "pending": len(pending)}


def collect_runs(out: str, cfg: Dict[str, Any], jobs: Sequence[Tuple[str, int]]) -> Tuple[List[Dict], Dict[str, Any]]:
    """The run records under ``out`` of the (task, seed) ``jobs`` made with settings ``cfg``, by
    task then seed, and the coverage: ``expected``, ``present`` and the ``missing`` and ``stale``
    (a record of other settings) jobs."""
    runs, missing, stale = [], [], []
    order = {t: i for i, t in enumerate(dict.fromkeys(t for t, _ in jobs))}
    for t, s in sorted(jobs, key=lambda j: (order[j[0]], j[1])):
        path = run_path(out, t, s)
        if not os.path.exists(path):
            missing.append([t, s])
            continue
        rec = read_json(path)
        if rec.get("config_hash") == record_hash(cfg, t, s):
            runs.append(rec)
        else:
            stale.append([t, s])
    return runs, {"expected": len(jobs), "present": len(runs), "missing": missing, "stale": stale}


# ----------------------------------------------------------------------------- command
def _task_list(text: str) -> Tuple[str, ...]:
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    if not tasks:
        raise argparse.ArgumentTypeError("expected comma-separated task names, e.g. contains_1,bin_count_ones:6")
    return tasks


def add_arguments(parser) -> None:
    """The options of ``graphengine experiment entropy-mdl`` beyond the common ones."""
    add_retrain_argument(parser)
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes (Dask LocalCluster, one thread each); 0 or 1: this process; "
                             "default: the usable cores, at most one per pending job")
    parser.add_argument("--tasks", type=_task_list, metavar="A,B,...", default=argparse.SUPPRESS,
                        help="these tasks only, e.g. contains_1,bin_count_ones:6 (default: the paper's 27, "
                             "graphengine.datasets.SECTION5_TASKS)")
    parser.add_argument("--seeds", type=int, metavar="N", dest="n_seeds", default=argparse.SUPPRESS,
                        help="training seeds S, S+1, ..., S+N-1 (default 3; --quick 1)")
    parser.add_argument("--aggregate-only", action="store_true",
                        help="train nothing: report on the run records under --out, listing the missing runs")


def run(out: Optional[str] = None, quick: bool = False, seed: int = 0, progress: bool = True,
        retrain: bool = False, workers: Optional[int] = None, aggregate_only: bool = False,
        **overrides) -> Dict[str, Any]:
    """Every (task, seed) job not done yet (``workers``: see the module docstring), then the
    report over all of them: ``results.json``, ``table.md``, ``entropy_vs_mdl.png``,
    ``bincountones.png``, ``correct_vs_incorrect.png`` under ``out``. With ``aggregate_only``
    the report covers the records present and names the missing runs."""
    cfg = settings(NAME, DEFAULTS, QUICK, quick, overrides)
    cfg["tasks"] = tuple(cfg["tasks"])
    known = {s.split(":")[0] for s in SECTION5_TASKS}
    unknown = [t for t in cfg["tasks"] if t.split(":")[0] not in known]
    if unknown:
        raise ExperimentError(f"entropy-mdl: unknown task(s) {', '.join(unknown)} (known families: "
                              f"{', '.join(sorted(known))})")
    if int(cfg["n_seeds"]) < 1:
        raise ExperimentError(f"entropy-mdl: --seeds must be >= 1, got {cfg['n_seeds']}")
    worker_count(workers, 0)  # a bad --workers fails before anything runs
    if aggregate_only and (retrain or workers is not None):
        raise ExperimentError(f"entropy-mdl: --aggregate-only trains nothing; "
                              f"{'--retrain' if retrain else '--workers'} contradicts it")
    out = results_dir(out, NAME)
    timer = Timer()
    start = time.perf_counter()
    seeds = [seed + i for i in range(int(cfg["n_seeds"]))]
    jobs = [(t, s) for s in seeds for t in cfg["tasks"]]
    ran = None if aggregate_only else _run_jobs(out, cfg, jobs, retrain, workers, progress, timer)
    runs, cov = collect_runs(out, cfg, jobs)
    if ran is not None:  # this process's copies carry the "resumed" flag
        runs = [ran["records"][(r["task"], r["seed"])] for r in runs]
    heading = ("# §5.3 entropy vs MDL (graphengine vs paper)\n\n"
               f"{'Quick mode: ' if quick else ''}{len(cfg['tasks'])} tasks, seeds {seeds}, {cfg['epochs']} epochs, "
               f"MDL over {cfg['n_train'] or cfg['sizes'][0]} training examples. Entropies in nats per example.")
    doc = {"experiment": NAME, "paper_section": "§5.3 (docs/method.md)", "quick": quick, "seeds": seeds,
           "config": jsonable(cfg), "aggregate_only": aggregate_only,
           "units": "nats; MDL = n_1 ln 36 + sum over blocks of the mean CE (paper); codelength = the same with "
                    "per-block CE summed over examples; run entropy = sum over examples and positions / #examples",
           "n_resumed": sum(1 for r in runs if r.get("resumed")),
           "workers": None if ran is None else ran["workers"], "jobs_run": None if ran is None else ran["pending"],
           "timings_s": {**timer.seconds, "wall (this command, before the report)": time.perf_counter() - start}}
    return write_report(out, runs, cfg["tasks"], cfg["min_accuracy"], cov, heading, doc, folders=("runs/", "models/"))


def summary(doc: Dict[str, Any]) -> List[str]:
    """What ``graphengine experiment entropy-mdl`` prints after the files: coverage and claims."""
    lines = [coverage_text(doc["coverage"])]
    if doc.get("workers") is not None:
        where = "this process" if doc["workers"] <= 1 else f"{doc['workers']} workers"
        lines.append(f"jobs run now: {doc['jobs_run']} ({where}), resumed: {doc['n_resumed']}")
    lines += [f"claim {i}: {c['verdict']}" for i, c in enumerate(doc["aggregate"]["claims"], 1)]
    return lines
