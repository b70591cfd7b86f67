"""Shared helpers of the ``bench_*.py`` scripts: thread pinning, best-of-N timing, memory
probes and the JSON result file.

Import this module *before* numpy/numba/torch: it sets ``NUMBA_NUM_THREADS`` (default 2, so
that a run can compare numba with one thread and with two; kernels run with one thread unless
a figure says otherwise) and limits BLAS to one thread with threadpoolctl (the ``bench``
extra).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "bench"


def limit_threads(numba_threads: int = 1):
    """One BLAS thread (threadpoolctl) and ``numba_threads`` Numba threads; returns the
    threadpoolctl limiter (keep a reference to it)."""
    import numba
    from threadpoolctl import threadpool_limits
    numba.set_num_threads(numba_threads)
    return threadpool_limits(limits=1)


def best_of(fn, repeat: int = 5, warmup: int = 1):
    """Best wall time of ``repeat`` calls after ``warmup`` calls, and all the times."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), times


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def machine() -> dict:
    import numba
    info = {"python": sys.version.split()[0], "numpy": np.__version__, "numba": numba.__version__,
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "gpu": "none"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def write(result: dict, out: str, default_name: str) -> Path:
    path = Path(out) if out else RESULTS / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    result = dict(result, machine=machine(), written=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    from graphengine.io import write_json

    write_json(str(path), result, indent=2, default=float)
    return path
