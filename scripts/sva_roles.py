"""Mass shares, failures and successes of an agreement model (docs/sva.md; issues 12 and 16).

For model A or B (``results/sva/model_a`` / ``model_b``, or a model directory) on an agreement
TSV with role positions (the grammar's 8 columns), one scalar-granularity backward pass per
batch of equal-length sentences gives every role token's statistics
(:mod:`graphengine.experiments.sva.roles`): path-mass share, entropy, signed balance, M⁺/M⁻,
k-best origins, and per layer the exact branch mass shares and the top path's branch.

Printed (and written to ``--out`` as JSON, with every row):

1. the construction split of accuracy by competitor noun
   (:mod:`graphengine.experiments.sva.competitors`);
2. per role (subject, attractors, [MASK], competitors) and layer: the mean mass share of the
   query / key / value / skip branch beside the fraction of the role's tokens whose top path
   leaves through it, for all sentences and for the wrong ones;
3. for every construction with at least ``--min-wrong`` wrong sentences: the role statistics of
   the wrong sentences beside the correct ones, and their last-layer mass and top-path shares.

``--from-json FILE`` prints the tables of an earlier run's JSON without computing anything.

    python scripts/sva_roles.py A --data results/sva/model_a/test.tsv --limit 400 --out results/sva/roles_a.json
    python scripts/sva_roles.py A --data results/sva/model_a/test.tsv --limit 200 --construction sent_comp --k 3
"""

from __future__ import annotations

import argparse
import json
import time

from graphengine import io as files
from graphengine.experiments.common import fmt, markdown_table
from graphengine.experiments.sva.competitors import construction_split, split_markdown
from graphengine.experiments.sva.data import read_tsv
from graphengine.experiments.sva.roles import STATS, role_statistics, share_table, summarize
from graphengine.experiments.sva.run import resolve_model, sentence_batches

SHOWN = ("subject", "attractors", "mask", "before_subject", "first_between", "last_between")


def _shares_md(rows, role: str) -> str:
    t = share_table(rows, role)
    heads = ["layer", "mass Q", "mass K", "mass V", "mass skip", "top Q", "top K", "top V", "top skip"]
    return markdown_table(heads, [[r["layer"]] + [fmt(r[f"{kind} {b}"], 3) for kind in ("mass", "top")
                                                  for b in ("query", "key", "value", "skip")] for r in t])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="A, B, or a model directory")
    ap.add_argument("--data", required=True, help="agreement TSV with role positions (the grammar's 8 columns)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    ap.add_argument("--construction", default=None, help="only the sentences of this construction")
    ap.add_argument("--k", type=int, default=0, help="k of the k-best paths (default 0: leave them out; the "
                                                      "kbest semiring makes the pass about 5x slower)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--min-wrong", type=int, default=5, help="constructions with at least this many wrong sentences")
    ap.add_argument("--out", default=None, help="JSON output (default results/sva/roles_<model>.json)")
    ap.add_argument("--from-json", default=None, metavar="FILE",
                    help="print the tables of an earlier run's JSON (same model and data) instead of computing")
    args = ap.parse_args(argv)
    model, path = resolve_model(args.model)
    data = read_tsv(args.data, limit=args.limit)
    out = args.out or f"results/sva/roles_{model.name}.json"
    t0 = time.perf_counter()
    rows, items = [], {}
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            old = json.load(f)
        rows, seconds = old["rows"], old["seconds"]
        items = {it.row: it for it in data.items}
        out = args.out or args.from_json
    else:
        chosen = [it for it in data.items if args.construction in (None, it.construction)]
        for part in sentence_batches(model, chosen, args.batch_size):
            if part[0] == "skipped":
                continue
            its, encs = part
            rows += role_statistics(model, its, encs, k=args.k)
            items.update({it.row: it for it in its})
        seconds = time.perf_counter() - t0
    order = [r["id"] for r in rows]
    split = construction_split([items[i] for i in order], [r["correct"] for r in rows])
    held = (getattr(model, "info", {}) or {}).get("held_out") or []
    doc = {"model": path, "data": args.data, "limit": args.limit, "construction": args.construction,
           "sentences": len(rows), "k": args.k, "seconds": seconds,
           "accuracy": sum(r["correct"] for r in rows) / max(len(rows), 1), "construction_split": split,
           "shares": {}, "shares_wrong": {}, "by_construction": {}, "rows": rows}
    print(f"{len(rows)} sentences, {seconds:.0f} s; accuracy {100 * doc['accuracy']:.1f}%\n")
    print("## Accuracy by construction and competitor noun (match / mismatch of the subject's number)\n")
    print(split_markdown(split, held) + "\n")
    wrong = [r for r in rows if not r["correct"]]
    for role in SHOWN:
        doc["shares"][role] = share_table(rows, role)
        doc["shares_wrong"][role] = share_table(wrong, role)
        if doc["shares"][role]:
            print(f"## {role}: mass share vs top path per layer (all {doc['shares'][role][0]['sentences']} sentences)\n")
            print(_shares_md(rows, role) + "\n")
        if doc["shares_wrong"][role]:
            print(f"{role}, wrong sentences only ({doc['shares_wrong'][role][0]['sentences']}):\n")
            print(_shares_md(wrong, role) + "\n")
    for cons in sorted({r["construction"] for r in rows}):
        sel = [r for r in rows if r["construction"] == cons]
        bad = [r for r in sel if not r["correct"]]
        if len(bad) < args.min_wrong:
            continue
        good = [r for r in sel if r["correct"]]
        doc["by_construction"][cons] = {"wrong": summarize(bad), "correct": summarize(good)}
        print(f"## {cons}: {len(bad)} wrong vs {len(good)} correct sentences (means per role)\n")
        lines = []
        for role in SHOWN + ("rest",):
            w, c = doc["by_construction"][cons]["wrong"].get(role), doc["by_construction"][cons]["correct"].get(role)
            if w or c:
                lines.append([role] + [f"{fmt((w or {}).get(s), 3)} / {fmt((c or {}).get(s), 3)}" for s in STATS])
        print(markdown_table(["role (wrong / correct)"] + list(STATS), lines) + "\n")
        last = []
        for role in SHOWN:
            w, c = share_table(bad, role), share_table(good, role)
            if w and c:
                last.append([role] + [f"{fmt(w[-1][f'{kind} {b}'], 3)} / {fmt(c[-1][f'{kind} {b}'], 3)}"
                                      for kind in ("mass", "top") for b in ("query", "key", "value", "skip")])
        print(f"{cons}, last layer, wrong / correct:\n")
        print(markdown_table(["role", "mass Q", "mass K", "mass V", "mass skip", "top Q", "top K", "top V", "top skip"],
                             last) + "\n")
    files.write_json(out, doc)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
