"""Run tasks over a dataset, in this process or on Dask distributed, and store each result once.

A run is a list of :class:`Task` (each produces the records of one or more examples), a task
function ``function(model, payload) -> [record, ...]`` (a module-level function, so Dask sends
it by reference) and a :class:`Bundle`: the files a worker needs to build the model (a graph
file, or a checkpoint's config, weights and tokenizer), as bytes. The bundle travels to each
worker once (``client.scatter(..., broadcast=True)``); a worker writes it to a private
temporary directory and calls the bundle's loader on it once, then keeps the model for every
later task (:func:`worker_model`).

Results are written by the caller's process only, as futures complete
(:func:`run_tasks` → :meth:`graphengine.runner.store.RunStore.append`), so a worker that dies
mid-run loses nothing: the scheduler reruns its tasks elsewhere, and the store skips any id it
already holds, so every example is stored exactly once.

Executors: :class:`SerialExecutor` (this process, in order) and :class:`DaskExecutor` (a
``LocalCluster`` started here, one single-threaded worker process per core, started with the
``spawn`` method; or an existing cluster given by its scheduler address).

>>> b = Bundle("graphengine.runner.execute:_read_text", {"a.txt": b"hello"})
>>> def shout(model, payload):
...     return [{"id": payload, "text": model.upper()}]
>>> [r for _, r in SerialExecutor().map(shout, b, [Task("k1", "x")])]
[[{'id': 'x', 'text': 'HELLO'}]]
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import GraphEngineError
from .. import progress as prog

__all__ = ["Task", "Bundle", "worker_model", "SerialExecutor", "DaskExecutor", "ExecutorError", "run_tasks",
           "WORKER_ENV"]

#: Environment of every worker process the LocalCluster starts: one thread each (numba's
#: parallel kernels, BLAS and OpenMP would otherwise start a thread per core in every worker).
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class ExecutorError(GraphEngineError):
    """The cluster cannot be reached or started, or a task failed."""


@dataclass
class Task:
    """``key``: unique within the run; ``payload``: what the task function gets (small)."""

    key: str
    payload: Any


@dataclass
class Bundle:
    """Files (name → bytes) and the ``"module:function"`` that builds the model from a directory
    holding them."""

    loader: str
    files: Dict[str, bytes]
    digest: str = field(default="")

    def __post_init__(self):
        if not self.digest:
            h = hashlib.sha256(self.loader.encode())
            for name in sorted(self.files):
                h.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
            self.digest = h.hexdigest()


def _read_text(directory: str) -> str:
    """A loader for the module's example: the text of ``a.txt``."""
    with open(os.path.join(directory, "a.txt"), encoding="utf-8") as f:
        return f.read()


_models: Dict[str, Any] = {}
_models_lock = threading.Lock()
_dirs: List[str] = []


@atexit.register
def _remove_dirs() -> None:
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)


def worker_model(bundle: Bundle) -> Any:
    """The model of ``bundle`` in this process, built once (files written to a private temporary
    directory, removed at exit)."""
    with _models_lock:
        hit = _models.get(bundle.digest)
        if hit is not None:
            return hit
        d = tempfile.mkdtemp(prefix="graphengine-bundle-")
        _dirs.append(d)
        for name, data in bundle.files.items():
            if os.path.basename(name) != name or name in ("", ".", ".."):
                raise ExecutorError(f"bundle file name {name!r} is not a plain file name")
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        module, _, fn = bundle.loader.partition(":")
        model = getattr(importlib.import_module(module), fn)(d)
        _models.clear()  # one model per worker at a time
        _models[bundle.digest] = model
        return model


def _run_on_worker(function: Callable, bundle: Bundle, payload: Any, quiet: bool = True) -> List[Dict[str, Any]]:
    prog.set_quiet(quiet)  # worker output would interleave with the caller's progress bar
    return function(worker_model(bundle), payload)


class SerialExecutor:
    """Runs every task in this process, in order. ``model``: use this model instead of building
    one from the bundle (then ``function`` may be any callable, a closure included)."""

    workers = 1
    address = None

    def __init__(self, model: Any = None):
        self.model = model

    def __enter__(self) -> "SerialExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def map(self, function: Callable, bundle: Bundle, tasks: Sequence[Task]) -> Iterator[Tuple[Task, List[Dict]]]:
        model = self.model if self.model is not None else worker_model(bundle)
        for t in tasks:
            with prog.quiet(True):
                yield t, function(model, t.payload)


class DaskExecutor:
    """Tasks on Dask distributed: an existing cluster (``scheduler`` address) or a LocalCluster
    started here with ``workers`` worker processes (default: one per core), one thread each,
    spawned (never forked: a forked Numba parallel runtime can hang), with :data:`WORKER_ENV`.

    ``retries``: how often a task that raised is retried (a worker that dies is handled by the
    scheduler: its tasks are rescheduled on the others, up to ``distributed.scheduler.allowed-failures``).
    """

    def __init__(self, scheduler: Optional[str] = None, workers: Optional[int] = None, retries: int = 2,
                 timeout: float = 60.0):
        if workers is not None and workers < 1:
            raise ExecutorError(f"--workers must be >= 1, got {workers}")
        self.scheduler, self.n_workers, self.retries, self.timeout = scheduler, workers, retries, timeout
        self.client = None
        self.cluster = None

    def __enter__(self) -> "DaskExecutor":
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise ExecutorError("running on Dask needs the dist extra (pip install 'graphengine[dist]')") from None
        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout=self.timeout)
            except (OSError, TimeoutError) as e:
                raise ExecutorError(f"--scheduler {self.scheduler}: cannot connect ({' '.join(str(e).split())})") from None
            return self
        n = self.n_workers or os.cpu_count() or 1
        with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
            # loopback only; the scheduler's HTTP endpoint on a free port (a fixed one may be taken)
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                        dashboard_address="127.0.0.1:0", env=dict(WORKER_ENV), silence_logs=40)
            self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    @property
    def address(self) -> Optional[str]:
        return self.client.scheduler.address if self.client is not None else None

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"]) if self.client is not None else 0

    def worker_pids(self) -> Dict[str, int]:
        """Worker address → process id (to watch or, in tests, kill a worker)."""
        return self.client.run(os.getpid)

    def map(self, function: Callable, bundle: Bundle, tasks: Sequence[Task]) -> Iterator[Tuple[Task, List[Dict]]]:
        from distributed import as_completed

        client = self.client
        shared = client.scatter(bundle, broadcast=True, hash=False)
        prefix = f"graphengine-{bundle.digest[:12]}-{os.getpid()}-{id(tasks):x}"
        by_key = {}
        futures = []
        for t in tasks:
            fut = client.submit(_run_on_worker, function, shared, t.payload, key=f"{prefix}-{t.key}",
                                retries=self.retries, pure=False)
            by_key[fut.key] = t
            futures.append(fut)
        try:
            for fut in as_completed(futures):
                try:
                    records = fut.result()
                except GraphEngineError:
                    raise
                except Exception as e:  # noqa: BLE001 - a task's own failure, after its retries
                    raise ExecutorError(f"task {by_key[fut.key].key} failed: {type(e).__name__}: "
                                        f"{' '.join(str(e).split())}") from None
                yield by_key[fut.key], records
                fut.release()
        finally:
            for fut in futures:
                fut.cancel()
            shared.release()


def run_tasks(store, executor, function: Callable, bundle: Optional[Bundle], tasks: Sequence[Task], bar=None,
              on_records: Optional[Callable[[Task, List[Dict]], None]] = None) -> int:
    """Run ``tasks`` on ``executor`` and append their records to ``store`` as they complete;
    returns how many records were written. ``bar`` (a :class:`graphengine.progress.Progress`)
    advances by each task's record count; ``on_records`` sees every completed task."""
    written = 0
    for task, records in executor.map(function, bundle, tasks):
        written += store.extend(records)
        if bar is not None:
            bar.update(len(records))
        if on_records is not None:
            on_records(task, records)
    return written
