"""Shared helpers of the experiments: errors, optional imports, progress bars, result files.

Nothing here imports torch; :func:`require_torch` does, when an experiment needs it.

>>> print(markdown_table(["task", "MDL"], [["contains_1", 12.5], ["bin_count_ones:2", None]]))
| task | MDL |
|---|---|
| contains_1 | 12.5 |
| bin_count_ones:2 | – |
>>> list(progress(range(3), desc="demo", enabled=False))
[0, 1, 2]
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence

import numpy as np

from .. import io as files
from ..errors import GraphEngineError

__all__ = ["ExperimentError", "require_torch", "require_transformers", "progress", "markdown_table", "fmt",
           "write_json", "write_text", "read_json", "results_dir", "Timer", "pyplot", "save_figure", "config_hash",
           "jsonable", "add_log_probs", "feeds_for", "load_model_graph", "settings",
           "add_retrain_argument", "save_results", "single_thread"]


class ExperimentError(GraphEngineError):
    """An experiment cannot run: a missing optional dependency, a bad argument or result file."""


def require_torch(experiment: str):
    """Import torch or raise one line saying that ``experiment`` needs it."""
    try:
        import torch
    except ImportError:
        raise ExperimentError(f"experiment {experiment!r} trains models and needs torch "
                              "(pip install -e '.[experiments]'); saved model files are reused without it") from None
    return torch


def require_transformers(experiment: str):
    """Import transformers (after torch) or raise one line saying that ``experiment`` needs it."""
    require_torch(experiment)
    try:
        import transformers
    except ImportError:
        raise ExperimentError(f"experiment {experiment!r} trains BERT with transformers, which is not installed "
                              "(pip install -e '.[experiments]'); saved model files are reused without it") from None
    return transformers


# ----------------------------------------------------------------------------- settings
def settings(experiment: str, defaults: Dict[str, Any], quick_changes: Dict[str, Any], quick: bool,
             overrides: Dict[str, Any]) -> Dict[str, Any]:
    """An experiment's settings: ``defaults``, then ``quick_changes`` if ``quick``, then
    ``overrides``; a key ``defaults`` does not have is an error (never silently ignored).

    >>> settings("demo", {"a": 1, "b": 2}, {"b": 3}, True, {"a": 0})
    {'a': 0, 'b': 3}
    >>> settings("demo", {"a": 1}, {}, False, {"c": 1})
    Traceback (most recent call last):
    ...
    graphengine.experiments.common.ExperimentError: experiment 'demo' has no setting 'c' (known: a)
    """
    unknown = [k for k in overrides if k not in defaults]
    if unknown:
        raise ExperimentError(f"experiment {experiment!r} has no setting {', '.join(map(repr, unknown))} "
                              f"(known: {', '.join(defaults)})")
    return {**defaults, **(quick_changes if quick else {}), **overrides}


def add_retrain_argument(parser) -> None:
    """``--retrain`` for the experiments that save trained models and reuse them."""
    parser.add_argument("--retrain", action="store_true", help="train again even if a saved model fits")


# ----------------------------------------------------------------------------- progress
class _Printer:
    """A minimal progress bar for when tqdm is absent: a line on stderr at most every 10 s."""

    def __init__(self, iterable, total, desc, stream):
        self.iterable, self.total, self.desc, self.stream = iterable, total, desc, stream

    def __iter__(self):
        start = last = time.perf_counter()
        n = 0
        for item in self.iterable:
            yield item
            n += 1
            now = time.perf_counter()
            if now - last >= 10.0 or n == self.total:
                of = f"/{self.total}" if self.total else ""
                self.stream.write(f"{self.desc}: {n}{of} ({now - start:.0f} s)\n")
                self.stream.flush()
                last = now


def progress(iterable: Iterable, total: Optional[int] = None, desc: str = "", enabled: bool = True) -> Iterable:
    """Wrap ``iterable`` in a tqdm bar (if tqdm is installed) or a plain stderr printer."""
    if not enabled:
        return iterable
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Printer(iterable, total, desc, sys.stderr)
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)


# ----------------------------------------------------------------------------- formatting
def fmt(x: Any, digits: int = 3) -> str:
    """A table cell: ``–`` for None/NaN, ``digits`` significant digits for floats."""
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if math.isnan(x):
        return "–"
    return f"{x:.{digits}g}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 3) -> str:
    """A GitHub Markdown table; cells go through :func:`fmt`."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c, digits) for c in row) + " |")
    return "\n".join(lines)


def jsonable(x: Any) -> Any:
    """Numpy scalars/arrays to Python; NaN/inf to None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def config_hash(config: Dict[str, Any]) -> str:
    """A short stable hash of a JSON-able configuration (to tell whether a saved model fits)."""
    return hashlib.sha256(json.dumps(jsonable(config), sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- files
def results_dir(out: Optional[str], experiment: str) -> str:
    """``out`` or ``results/<experiment>``, created if needed."""
    path = out or os.path.join("results", experiment)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ExperimentError(f"--out {path}: cannot create the directory ({e.strerror or e})") from None
    if not os.path.isdir(path):
        raise ExperimentError(f"--out {path}: not a directory")
    return path


def _make_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise ExperimentError(f"cannot write {path} (cannot create {parent}: {e.strerror or e})") from None


def write_json(path: str, doc: Any) -> None:
    """Write strict JSON atomically (NaN becomes null; :func:`graphengine.io.write_json`),
    creating the directory if needed."""
    _make_parent(path)
    files.write_json(path, jsonable(doc), allow_nan=False)


def write_text(path: str, text: str) -> None:
    """Write ``text`` atomically (:func:`graphengine.io.write_text`), creating the directory if
    needed."""
    _make_parent(path)
    files.write_text(path, text)


def read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ExperimentError(f"cannot read result file {path} ({e})") from None


# ----------------------------------------------------------------------------- timing, threads, plots
def single_thread():
    """A context limiting BLAS to one thread (threadpoolctl), and a note saying what was done."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=1), "threadpoolctl"
    except ImportError:
        return contextlib.nullcontext(), "not limited (threadpoolctl is not installed)"



class Timer:
    """Named wall-clock timings: ``with timer("train"): ...``; ``timer.seconds`` sums repeats."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def pyplot():
    """matplotlib.pyplot with the Agg backend, or None (plots are then skipped, with a note)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write("graphengine: note: matplotlib is not installed; PNG plots are skipped\n")
        return None
    return plt


def save_results(out: str, doc: Dict[str, Any], plot=None, png: Optional[str] = None) -> Dict[str, Any]:
    """Finish a study with one results file and at most one plot: ``plot(doc, path)`` draws
    ``out/png`` (returning None when matplotlib is absent), ``doc["files"]`` records what was
    written and ``out/results.json`` gets ``doc``; returns ``doc``."""
    drawn = plot(doc, os.path.join(out, png)) if plot is not None else None
    doc["files"] = {"json": "results.json", "plot": drawn and os.path.basename(drawn)}
    write_json(os.path.join(out, "results.json"), doc)
    return doc


def save_figure(fig, path: str) -> str:
    fig.savefig(path, dpi=130, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path



# ----------------------------------------------------------------------------- IR helpers
def feeds_for(graph, x: np.ndarray) -> Dict[str, np.ndarray]:
    """Feeds for a classifier graph: ``x`` goes to the first input; ``token_type_ids`` (a graph
    rebuilt with the IR builder has one) gets zeros."""
    inputs = graph.inputs()
    feeds = {inputs[0].name: np.asarray(x)}
    for n in inputs[1:]:
        if n.name == "token_type_ids":
            feeds[n.name] = np.zeros(n.shape, np.int64)
        else:
            raise ExperimentError(f"graph input '{n.name}' is not one the experiment can feed")
    return feeds


def add_log_probs(graph):
    """Append ``log_probs = log_softmax(logits, -1)`` to a classifier graph and mark it as an
    output (in place; returns the graph)."""
    logits = graph.nodes[graph.outputs[0]]
    lp = graph.call("log_softmax", logits, name="log_probs", scope=logits.scope, axis=-1)
    graph.mark_output(lp)
    return graph


def load_model_graph(path: str, config_hash_value: str):
    """The saved IR graph at ``path`` if it exists and was trained with the same configuration."""
    if not os.path.exists(path):
        return None
    from ..ir import load

    g = load(path)
    if g.meta.get("experiment", {}).get("config_hash") != config_hash_value:
        return None
    return g
