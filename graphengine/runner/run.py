"""``graphengine dataset run``: analyse every example of a data file into one output directory.

:func:`run_dataset` reads the examples, locks ``OUTDIR`` (:class:`~graphengine.runner.store.RunStore`),
checks or writes ``manifest.json``, analyses the first pending example in this process (so a
first-time kernel compilation happens once, here, with its notice, and fills Numba's on-disk
cache for the workers), then sends the rest to the executor (a Dask LocalCluster by default)
and appends each record to ``records.jsonl`` as it arrives, with a progress bar (count, rate,
ETA) on stderr. A rerun with the same model, data and options resumes: it computes only the
examples whose ids are not yet stored. ``manifest.json`` keeps the run's identity and one
entry per run (started, finished, new records, workers, status).
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from .. import __version__
from .. import progress as prog
from ..errors import GraphEngineError
from .analysis import STATISTICS, analyze_example, target_template
from .examples import read_examples
from .execute import DaskExecutor, SerialExecutor, Task, run_tasks, worker_model
from .model import HEADS, make_bundle
from .schema import MANIFEST_FORMAT, MANIFEST_VERSION
from .store import RunStore, check_identity

__all__ = ["run_dataset", "RunOptionsError", "RECORDS"]

RECORDS = "records.jsonl"


class RunOptionsError(GraphEngineError):
    """Options of a dataset run that cannot work together."""


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_semirings(semirings: Sequence[str]) -> List[str]:
    from numpy import float64

    from ..semirings import get_semiring

    names = list(semirings)
    try:
        for name in names:
            if get_semiring(name).dtype is not float64:  # records name their statistics by semiring
                raise ValueError(f"{name}: dataset runs hold semiring values in float64; give "
                                 f"{name.partition(':')[0]!r}")
    except ValueError as e:
        raise RunOptionsError(f"semirings: {' '.join(str(e).split())}") from None
    if not names or len(set(names)) != len(names):
        raise RunOptionsError(f"semirings {names}: give each semiring once, at least one")
    return names


def run_dataset(model: str, data: str, out: str, qoi: Optional[str] = None, target: Optional[str] = None,
                foil: Optional[str] = None, semirings: Sequence[str] = ("real", "max", "entropy"),
                node: Optional[str] = None, head: str = "auto", tokenizer: Optional[str] = None,
                columns: Optional[Sequence[str]] = None, text_column: str = "text",
                mask_literal: Optional[str] = None, limit: Optional[int] = None, workers: Optional[int] = None,
                scheduler: Optional[str] = None, quiet: bool = False,
                on_records: Optional[Callable] = None) -> Dict[str, Any]:
    """Run (or resume) the analysis; returns what happened (counts, seconds, paths).

    ``workers``: ``0`` runs in this process; ``None`` (default) a LocalCluster with one worker per
    core; N a LocalCluster of N workers. ``scheduler``: the address of an existing Dask cluster.
    """
    if (qoi is None) == (target is None):
        raise RunOptionsError("give exactly one of --qoi TEMPLATE and --target COLUMN")
    if foil is not None and target is None:
        raise RunOptionsError("--foil needs --target")
    if head not in HEADS:
        raise RunOptionsError(f"--head must be one of {', '.join(HEADS)}, got {head!r}")
    if limit is not None and limit < 1:
        raise RunOptionsError(f"--limit must be >= 1, got {limit}")
    if workers is not None and workers < 0:
        raise RunOptionsError(f"--workers must be >= 0, got {workers}")
    if scheduler and workers == 0:
        raise RunOptionsError("--scheduler and --workers 0 (run in this process) contradict each other")
    with prog.quiet(quiet or prog.is_quiet()):
        return _run(model, data, out, qoi, target, foil, _check_semirings(semirings), node, head, tokenizer, columns,
                    text_column, mask_literal, limit, workers, scheduler, on_records)


def _run(model, data, out, qoi, target, foil, names, node, head, tokenizer, columns, text_column, mask_literal,
         limit, workers, scheduler, on_records) -> Dict[str, Any]:
    examples = read_examples(data, columns=columns, limit=limit)
    options = {"semirings": names, "node": node, "head": head, "text_column": text_column,
               "mask_literal": mask_literal, "columns": list(columns) if columns else None,
               "target": target, "foil": foil, "qoi": qoi}
    started = time.time()
    t0 = time.perf_counter()
    with RunStore(out, RECORDS) as store:  # the lock first: a concurrent run is refused before any work
        prog.notice(f"loading the model ({model})")
        bundle, model_info = make_bundle(model, options, tokenizer)
        local = worker_model(bundle)
        if target is not None:
            options["qoi"] = target_template(target, foil, local.head)
            bundle, model_info = make_bundle(model, options, tokenizer)
            local = worker_model(bundle)
        identity = {"model_sha256": model_info["sha256"], "data_sha256": _sha256(data), **options}
        manifest = store.read_manifest()
        if manifest is not None:
            check_identity(store.manifest_path, manifest.get("identity", {}), identity)
        else:
            manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "identity": identity,
                        "graphengine_version": __version__, "model": model_info,
                        "data": {"path": os.path.abspath(data), "sha256": identity["data_sha256"]},
                        "statistics": [k for k, s in STATISTICS.items() if s in names], "runs": []}
        run_entry = {"started": started, "finished": None, "status": "running", "examples": len(examples),
                     "done_before": len(store.done & {e.id for e in examples}), "new_records": 0, "seconds": None,
                     "executor": None, "workers": None, "graphengine_version": __version__,
                     "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
        manifest["runs"].append(run_entry)
        store.write_manifest(manifest)
        pending = [e for e in examples if e.id not in store.done]
        bar = prog.Progress(len(examples), "examples", unit="ex", initial=len(examples) - len(pending))
        status = "interrupted"
        try:
            if pending:  # the first one here: compiles kernels once (with a notice) and warms Numba's cache
                first = pending[0]
                records = analyze_example(local, first.payload())
                store.extend(records)
                bar.update()
                if on_records is not None:
                    on_records(Task(first.id, first.payload()), records)
                pending = pending[1:]
            executor = SerialExecutor() if workers == 0 else DaskExecutor(scheduler=scheduler, workers=workers)
            run_entry["executor"] = "serial" if workers == 0 else ("dask:" + scheduler if scheduler else "dask:local")
            if pending:
                if workers != 0:
                    prog.notice("starting the Dask cluster" if not scheduler else f"connecting to {scheduler}")
                with executor:
                    run_entry["workers"] = executor.workers
                    run_tasks(store, executor, analyze_example, bundle,
                              [Task(e.id, e.payload()) for e in pending], bar=bar, on_records=on_records)
            status = "complete"
        finally:
            bar.close()
            run_entry.update(finished=time.time(), status=status, new_records=store.appended,
                             seconds=round(time.perf_counter() - t0, 3))
            manifest["records"] = len(store.done)
            store.write_manifest(manifest)
        return {"out": out, "examples": len(examples), "new_records": store.appended, "records": len(store.done),
                "seconds": run_entry["seconds"], "workers": run_entry["workers"],
                "records_path": store.records_path, "manifest_path": store.manifest_path}
