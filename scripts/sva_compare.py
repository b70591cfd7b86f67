"""Side-by-side K/Q/V/skip statistics of several ``graphengine experiment sva`` runs (docs/sva.md).

Each argument is ``LABEL=PATH`` with PATH a run's ``results.json`` (or its directory); the
table has one column per run and the rows of docs/sva.md's results table: the subject's and the
preceding attractors' last-layer "% keys" (K / (K + Q + V + skip) of the mean credited M⁺), the
share of subject tokens whose top path leaves the last layer through K / V, the subject's skip
share in layers 0..L−2, the [MASK] token's top share through the skip connection per layer, the
[MASK] top path staying on the skip connection in every layer (scalar runs) and the accuracy.

    python scripts/sva_compare.py "A scalar=results/sva/new/a_grammar_scalar" \\
        "A paper, before=results/sva/old/a_grammar_paper" "A paper, after=results/sva/new/a_grammar_paper"
"""

from __future__ import annotations

import argparse
import json
import os

BRANCHES = ("query", "key", "value", "skip", "other")


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x, digits=2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def rows_of(doc) -> dict:
    kqv = doc.get("kqv", {})
    L = kqv.get("layers")
    sub = kqv.get("subsets", {})
    out = {"sentences": str(doc.get("sentences")), "accuracy": _pct((doc.get("accuracy") or {}).get("accuracy"))}
    K, V, S = BRANCHES.index("key"), BRANCHES.index("value"), BRANCHES.index("skip")
    s = sub.get("subject")
    if s:
        out["subject, last layer, % keys"] = _pct(s["share"][L - 1][K])
        out["subject, last layer, top path through K / V"] = (f"{_pct(s['top_share'][L - 1][K])} / "
                                                             f"{_pct(s['top_share'][L - 1][V])}")
        out["subject skip share, layers 0..L-2"] = ", ".join(_num(s["share"][k][S]) for k in range(L - 1))
    a = sub.get("attractors")
    if a:
        out["preceding attractors, last layer, % keys"] = _pct(a["share"][L - 1][K])
    m = sub.get("mask")
    if m:
        out["[MASK] top share through skip, per layer"] = ", ".join(_num(m["top_share"][k][S]) for k in range(L))
        out["[MASK] top share through query, last layer"] = _num(m["top_share"][L - 1][BRANCHES.index("query")])
    mp = doc.get("mask_top_path")
    out["[MASK] top path on skip in all layers (scalar)"] = _pct(mp["all_skip_fraction"]) if mp else "–"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="LABEL=PATH")
    args = ap.parse_args(argv)
    cols, tables = [], []
    for spec in args.runs:
        label, _, path = spec.partition("=")
        if not path:
            ap.error(f"{spec!r}: expected LABEL=PATH")
        if os.path.isdir(path):
            path = os.path.join(path, "results.json")
        with open(path, encoding="utf-8") as f:
            tables.append(rows_of(json.load(f)))
        cols.append(label)
    keys = list(dict.fromkeys(k for t in tables for k in t))
    print("| statistic | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for k in keys:
        print(f"| {k} | " + " | ".join(t.get(k, "–") for t in tables) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
