"""Fuzz the graph-file reader: load >= 10,000 mutated ``.ge`` files (tests/fuzz_cases.py: bit
flips, truncation, JSON type changes, huge/negative shapes, Infinity/NaN ids, cycles, dangling
ids, zip bombs, non-npy members, hostile npy headers) plus devices, a FIFO and a directory, in
worker processes under a memory cap, and print the counts by outcome as JSON.

Outcomes: ``loaded``; ``refused`` (a GraphEngineError of one line under 1,000 characters);
``long_error`` (a GraphEngineError of several lines or a longer one); ``traceback`` (any other
exception); ``hang`` (over ``--timeout`` seconds); ``memory_error``; ``crash`` (the worker died).
Bombs inflate just past the limits the workers run with (``--max-member-mib`` and
``--max-json-mib``, which set :data:`graphengine.io.LIMITS`; the defaults of the library are
larger, and a bomb sized past those would only take longer). The peak resident memory of the
workers is reported as ``peak_rss_mib``.

    python scripts/fuzz_files.py --count 10000 [--workers 2] [--seed 0] [--mem-mib 1024] [-o out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPECIAL = ("/dev/zero", "/dev/null", "/dev/urandom", "FIFO", "DIRECTORY")


class _Hang(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


def _limit_memory(mib: int) -> None:
    """Cap the address space at what the process already maps plus ``mib``."""
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    cap = vm + mib * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def worker(args) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from fuzz_cases import base_graphs, mutants

    from graphengine import io as files
    from graphengine.errors import GraphEngineError
    from graphengine.ir import load

    files.LIMITS.max_json_bytes = args.max_json_mib << 20
    files.LIMITS.max_member_bytes = args.max_member_mib << 20
    files.LIMITS.memory_budget = args.memory_budget_mib << 20
    bomb = max(files.LIMITS.max_json_bytes, files.LIMITS.max_member_bytes) + 4096
    bases = base_graphs()
    _limit_memory(args.mem_mib)
    signal.signal(signal.SIGALRM, _on_alarm)
    tmp = tempfile.mkdtemp(prefix="graphengine-fuzz-")
    path = os.path.join(tmp, "m.ge")
    fifo = os.path.join(tmp, "fifo")
    os.mkfifo(fifo)

    def cases():
        if args.start == 0:
            for s in SPECIAL:
                yield "special", {"FIFO": fifo, "DIRECTORY": tmp}.get(s, s), None
        for kind, data in mutants(args.seed, args.count, bomb, start=args.start, bases=bases):
            yield kind, path, data

    for kind, target, data in cases():
        if data is not None:
            with open(path, "wb") as f:
                f.write(data)
        t = time.perf_counter()
        sample = ""
        signal.alarm(args.timeout)
        try:
            load(target)
            outcome = "loaded"
        except GraphEngineError as e:
            msg = str(e)
            outcome = "refused" if "\n" not in msg and len(msg) < 1000 else "long_error"
            sample = msg[:300]
        except _Hang:
            outcome = "hang"
        except MemoryError:
            outcome = "memory_error"
        except Exception as e:  # noqa: BLE001 - the point is to count them
            outcome, sample = "traceback", f"{type(e).__name__}: {e}"[:300]
        finally:
            signal.alarm(0)
        print(json.dumps({"kind": kind, "outcome": outcome, "seconds": round(time.perf_counter() - t, 4),
                          "sample": sample if outcome not in ("loaded", "refused") else ""}), flush=True)
    os.remove(fifo)
    if os.path.exists(path):
        os.remove(path)
    os.rmdir(tmp)


def run(args) -> dict:
    per = -(-args.count // args.workers)
    jobs = [(i * per, min(per, args.count - i * per)) for i in range(args.workers) if i * per < args.count]
    counts, by_kind, samples, slowest = Counter(), {}, [], 0.0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    start_time = time.perf_counter()
    pending = list(jobs)
    while pending:
        running = []
        for start, count in pending[:args.workers]:
            cmd = [sys.executable, __file__, "--worker", "--start", str(start), "--count", str(count)]
            for k in ("seed", "mem_mib", "timeout", "max_json_mib", "max_member_mib", "memory_budget_mib"):
                cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
            running.append((start, count, subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)))
        pending = pending[args.workers:]
        for start, count, proc in running:
            done = 0
            for line in proc.stdout:
                rec = json.loads(line)
                counts[rec["outcome"]] += 1
                by_kind.setdefault(rec["kind"], Counter())[rec["outcome"]] += 1
                slowest = max(slowest, rec["seconds"])
                if rec["sample"] and len(samples) < 20:
                    samples.append(rec)
                done += 1 if rec["kind"] != "special" else 0
            proc.wait()
            if proc.returncode != 0 and done < count:  # died on file start + done: count it, go on after it
                counts["crash"] += 1
                samples.append({"outcome": "crash", "file": start + done, "returncode": proc.returncode})
                if done + 1 < count:
                    pending.append((start + done + 1, count - done - 1))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"files": sum(counts.values()), "outcomes": dict(counts),
            "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
            "peak_rss_mib": round(peak, 1), "slowest_file_s": slowest,
            "wall_s": round(time.perf_counter() - start_time, 1),
            "settings": {k: getattr(args, k) for k in ("count", "seed", "workers", "mem_mib", "timeout",
                                                       "max_json_mib", "max_member_mib", "memory_budget_mib")},
            "samples": samples}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=10000, help="mutated files (default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--mem-mib", type=int, default=1024, help="address space each worker may add after start-up")
    p.add_argument("--timeout", type=int, default=10, help="seconds before a file counts as a hang")
    p.add_argument("--max-json-mib", type=int, default=64, help="graphengine.io.LIMITS.max_json_bytes in MiB")
    p.add_argument("--max-member-mib", type=int, default=64, help="graphengine.io.LIMITS.max_member_bytes in MiB")
    p.add_argument("--memory-budget-mib", type=int, default=256, help="graphengine.io.LIMITS.memory_budget in MiB")
    p.add_argument("-o", "--output", help="also write the JSON report here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    report = run(args)
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        sys.path.insert(0, str(REPO))
        from graphengine.io import write_text
        write_text(args.output, text + "\n")
    bad = sum(report["outcomes"].get(k, 0) for k in ("long_error", "traceback", "hang", "memory_error", "crash"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
