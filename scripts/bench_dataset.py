"""Dataset-run throughput on Dask: N natural agreement sentences through all-MiniLM-L6-v2 with
1 and then 2 LocalCluster workers (top path + entropy: semirings max, entropy), and the speed-up.

    python scripts/bench_dataset.py [--n 200] [--data ../shared/data/sva/linzen_agreement.tsv] [--out results/bench/dataset.json]

Data: the natural sentences of ``../shared/data/sva/`` when present (CC BY-NC 4.0, see its
README; read, never copied into the repository), else sentences of the agreement grammar
(:mod:`graphengine.datasets.sva_grammar`). MiniLM has no masked-LM head, so the QoI is one unit
of the final hidden state at the masked verb: ``last_hidden_state[0,{mask},0]`` (the work per
sentence, one backward pass in max and entropy, is what the benchmark measures). Each
configuration runs into a fresh output directory; the seconds are the wall time of the whole
run (cluster start included), and ``per_example`` the mean backward+forward time the workers
report. Writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from graphengine import io as files  # noqa: E402
from graphengine.runner.run import run_dataset  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(HERE), "..", "shared", "data", "sva", "linzen_agreement.tsv")
COLUMNS = ("n_attractors", "sentence", "text", "good", "bad")


def grammar_tsv(n: int, path: str) -> None:
    from graphengine.datasets.sva_grammar import sva_grammar, tsv_rows

    rows = tsv_rows(sva_grammar(seed=0, sizes=(10, 10, n)).test)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows[:n]:
            f.write("\t".join([r[0], r[1], r[2].replace("***mask***", "[MASK]"), r[3], r[4]]) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--out", default=os.path.join("results", "bench", "dataset.json"))
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench-dataset-")
    try:
        if os.path.exists(args.data):
            data, source, mask_literal = args.data, "natural (../shared/data/sva, CC BY-NC 4.0)", "***mask***"
        else:
            data, source, mask_literal = os.path.join(tmp, "grammar.tsv"), "agreement grammar", None
            grammar_tsv(args.n, data)
        runs = {}
        for w in [int(x) for x in args.workers.split(",")]:
            out = os.path.join(tmp, f"w{w}")
            t0 = time.perf_counter()
            res = run_dataset("minilm", data, out, qoi="last_hidden_state[0,{mask},0]", semirings=["max", "entropy"],
                              columns=COLUMNS, mask_literal=mask_literal, limit=args.n, workers=w)
            seconds = time.perf_counter() - t0
            recs = [json.loads(line) for line in open(res["records_path"], encoding="utf-8")]
            done = [r for r in recs if "skipped" not in r]
            runs[str(w)] = {"workers": w, "seconds": seconds, "examples": len(recs), "analysed": len(done),
                            "examples_per_second": len(recs) / seconds,
                            "per_example_seconds": sum(r["timing"]["total"] for r in done) / max(len(done), 1),
                            "distinct_workers": len({r["timing"]["worker"] for r in done})}
            print(f"{w} worker(s): {len(recs)} examples in {seconds:.1f} s", flush=True)
        doc = {"benchmark": "dataset", "n": args.n, "data": source, "model": "all-MiniLM-L6-v2",
               "qoi": "last_hidden_state[0,{mask},0]", "semirings": ["max", "entropy"], "runs": runs,
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "load_average": list(os.getloadavg())}}
        if "1" in runs and "2" in runs:
            doc["speedup_2_over_1"] = runs["1"]["seconds"] / runs["2"]["seconds"]
            print(f"speed-up 1 -> 2 workers: {doc['speedup_2_over_1']:.2f}x")
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        files.write_json(args.out, doc)
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
