"""``graphengine dataset summarize OUTDIR``: aggregate tables, plots and an HTML page.

Reads ``manifest.json`` and ``records.jsonl`` (the first record of each id; every record is
validated, a broken one is a one-line error naming its line) and writes, atomically:

- ``summary.json`` (``"format": "graphengine.dataset.summary"``, version 1): counts, skip
  reasons; the QoI's distribution; the accuracy (share of examples with ``correct``) when the
  QoI has a sign convention (``--foil``); the distribution of the per-example mean token entropy (mean,
  standard deviation, quantiles, a histogram) and of the effective number of paths exp(H);
  per statistic the mean over all tokens; per layer the share of tokens whose top path takes
  each branch (Q/K/V/skip/other) and the same for the top paths of the best tokens; timings
  (mean forward, backward and total per example; examples per worker);
- ``summary.md``: the same as tables;
- ``entropy.png`` (histogram) and ``branches.png`` (per-layer branch shares), when matplotlib is
  installed;
- ``summary.html``: one self-contained page (inline SVG charts and CSS, no scripts, no network).
"""

from __future__ import annotations

import html
import io as _io
import math
import os
from typing import Any, Dict, List, Optional

import numpy as np

from .. import io as files
from ..errors import GraphEngineError
from .run import RECORDS
from .schema import SUMMARY_FORMAT, SUMMARY_VERSION, validate_record
from .store import read_manifest, read_records

__all__ = ["summarize", "aggregate_records", "SummaryError"]

BRANCH_LABELS = ("Q", "K", "V", "skip", "other")


class SummaryError(GraphEngineError):
    """An output directory holds no run or a record that breaks the format."""


def _dist(values: List[float]) -> Optional[Dict[str, Any]]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size == 0:
        return None
    hist, edges = np.histogram(v, bins=min(20, max(1, v.size)))
    return {"n": int(v.size), "mean": float(v.mean()), "sd": float(v.std()), "min": float(v.min()),
            "max": float(v.max()), "quantiles": {str(q): float(np.quantile(v, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
            "histogram": {"counts": hist.tolist(), "edges": edges.tolist()}}


def _shares(per_layer: List[Dict[Any, int]]) -> List[Dict[str, float]]:
    out = []
    for counts in per_layer:
        n = sum(counts.values())
        out.append({b: (counts.get(b, 0) / n if n else 0.0) for b in BRANCH_LABELS} | {"tokens": n})
    return out


def aggregate_records(records: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The summary document of a list of records (see the module docstring).

    >>> r = {"format": "graphengine.dataset.record", "version": 1, "index": 0, "tokens": ["a", "b"],
    ...      "qoi": {"expr": "q", "value": 1.0}, "node": "e", "correct": True, "paths": [],
    ...      "stats": {"entropy": [1.0, 3.0]}, "branches": [["K"], ["skip"]], "timing": {"total": 0.5}}
    >>> doc = aggregate_records([{**r, "id": "x"}, {**r, "id": "y", "correct": False}])
    >>> doc["accuracy"]["accuracy"], doc["entropy"]["mean"], doc["branches"][0]["K"]
    (0.5, 2.0, 0.5)
    """
    done = [r for r in records if "skipped" not in r]
    skipped = [r for r in records if "skipped" in r]
    reasons: Dict[str, int] = {}
    for r in skipped:
        reasons[r["skipped"]] = reasons.get(r["skipped"], 0) + 1
    doc: Dict[str, Any] = {"format": SUMMARY_FORMAT, "version": SUMMARY_VERSION, "records": len(records),
                           "analysed": len(done), "skipped": len(skipped),
                           "skip_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:10])}
    doc["qoi"] = _dist([r["qoi"]["value"] for r in done])
    signed = [r for r in done if r.get("correct") is not None]
    if signed:
        acc = {"n": len(signed), "accuracy": sum(bool(r["correct"]) for r in signed) / len(signed)}
        doc["accuracy"] = acc
    ent = [float(np.mean([x for x in r["stats"]["entropy"] if x is not None])) for r in done
           if r["stats"].get("entropy") and any(x is not None for x in r["stats"]["entropy"])]
    doc["entropy"] = _dist(ent)
    doc["effective_paths"] = _dist([math.exp(h) for h in ent if h < 700])
    doc["token_means"] = {k: _dist([x for r in done for x in r["stats"].get(k, [])]) for k in
                          sorted({k for r in done for k in r["stats"]})}
    L = max((len(b) for r in done for b in (r.get("branches") or [])), default=0)
    counts: List[Dict[Any, int]] = [{} for _ in range(L)]
    for r in done:
        for per_token in r.get("branches") or []:
            for k, b in enumerate(per_token):
                if b is not None:
                    counts[k][b] = counts[k].get(b, 0) + 1
    doc["branches"] = _shares(counts) if L else None
    tops = [p for r in done for p in r.get("paths", [])[:1] if p.get("branches")]
    Lp = max((len(p["branches"]) for p in tops), default=0)
    pcounts: List[Dict[Any, int]] = [{} for _ in range(Lp)]
    for p in tops:
        for k, b in enumerate(p["branches"]):
            label = {"query": "Q", "key": "K", "value": "V", "skip": "skip"}.get(b, "other") if b else None
            if label:
                pcounts[k][label] = pcounts[k].get(label, 0) + 1
    doc["top_path_branches"] = _shares(pcounts) if Lp else None
    t = [r["timing"] for r in done]
    workers: Dict[str, int] = {}
    for x in t:
        workers[x.get("worker", "?")] = workers.get(x.get("worker", "?"), 0) + 1
    means = {}
    for k in ("forward", "backward", "paths", "total"):
        v = [x[k] for x in t if x.get(k) is not None]
        means[k] = float(np.mean(v)) if v else None
    doc["timing"] = means | {"examples_per_worker": workers}
    return doc


# ------------------------------------------------------------------ outputs
def _f(x, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


def to_markdown(doc: Dict[str, Any], manifest: Dict[str, Any]) -> str:
    opts = manifest.get("identity", {})
    lines = [f"# Dataset run: {manifest.get('model', {}).get('path', '?')}", "",
             f"QoI template `{opts.get('qoi')}`, semirings {', '.join(opts.get('semirings') or [])}.", "",
             f"Records: {doc['records']} ({doc['analysed']} analysed, {doc['skipped']} skipped).", ""]
    if doc["skip_reasons"]:
        lines += ["Skip reasons:", ""] + [f"- {k}: {v}" for k, v in doc["skip_reasons"].items()] + [""]
    if doc.get("accuracy"):
        lines += [f"Accuracy (QoI > 0): {100 * doc['accuracy']['accuracy']:.1f}% of {doc['accuracy']['n']}.", ""]
    rows = [("QoI", doc.get("qoi")), ("mean token entropy (nats)", doc.get("entropy")),
            ("effective number of paths exp(H)", doc.get("effective_paths"))]
    rows += [(f"token {k}", v) for k, v in doc["token_means"].items()]
    lines += ["| quantity | n | mean | sd | median | min | max |", "|---|---|---|---|---|---|---|"]
    for name, d in rows:
        if d:
            lines.append(f"| {name} | {d['n']} | {_f(d['mean'])} | {_f(d['sd'])} | {_f(d['quantiles']['0.5'])} | "
                         f"{_f(d['min'])} | {_f(d['max'])} |")
    lines.append("")
    for key, title in (("branches", "Branch of each token's top path, per layer (share of tokens)"),
                       ("top_path_branches", "Branch of the best token's top path, per layer (share of examples)")):
        if doc.get(key):
            lines += [f"{title}:", "", "| layer | tokens | " + " | ".join(BRANCH_LABELS) + " |",
                      "|---|---|" + "---|" * len(BRANCH_LABELS)]
            for k, s in enumerate(doc[key]):
                lines.append(f"| {k} | {s['tokens']} | " + " | ".join(f"{100 * s[b]:.1f}%" for b in BRANCH_LABELS) + " |")
            lines.append("")
    t = doc["timing"]
    lines += [f"Time per example: forward {_f(t['forward'], 3)} s, backward {_f(t['backward'], 3)} s, "
              f"total {_f(t['total'], 3)} s; examples per worker: "
              + ", ".join(f"{k} {v}" for k, v in t["examples_per_worker"].items()), ""]
    return "\n".join(lines)


def _figures(doc: Dict[str, Any]):
    """(entropy figure, branches figure) as matplotlib figures, or Nones without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None, None
    ent = fig_b = None
    if doc.get("entropy"):
        ent, ax = plt.subplots(figsize=(5, 3))
        h = doc["entropy"]["histogram"]
        edges = np.asarray(h["edges"])
        ax.bar(edges[:-1], h["counts"], width=np.diff(edges), align="edge", color="#4c72b0", edgecolor="white")
        ax.set_xlabel("mean token entropy of an example (nats)")
        ax.set_ylabel("examples")
        ent.tight_layout()
    if doc.get("branches"):
        fig_b, ax = plt.subplots(figsize=(5, 3))
        colors = {"Q": "#4c72b0", "K": "#dd8452", "V": "#55a868", "skip": "#8c8c8c", "other": "#c44e52"}
        shares = doc["branches"]
        bottom = np.zeros(len(shares))
        for b in BRANCH_LABELS:
            v = np.array([s[b] for s in shares])
            ax.bar(np.arange(len(shares)), v, bottom=bottom, color=colors[b], label=b)
            bottom += v
        ax.set_xlabel("layer")
        ax.set_ylabel("share of tokens")
        ax.set_xticks(range(len(shares)))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig_b.tight_layout()
    return ent, fig_b


def _svg(fig) -> str:
    buf = _io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.find("<svg"):]


def to_html(doc: Dict[str, Any], manifest: Dict[str, Any], figures) -> str:
    md = to_markdown(doc, manifest)
    body = []
    for block in md.split("\n\n"):
        rows = [r for r in block.splitlines() if r.startswith("|")]
        if rows and len(rows) == len(block.splitlines()):
            cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows if not set(r) <= set("|-")]
            head, *rest = cells
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rest)
                        + "</table>")
        elif block.startswith("# "):
            body.append(f"<h1>{html.escape(block[2:])}</h1>")
        elif block.strip():
            body.append("<p>" + html.escape(block).replace("\n", "<br>") + "</p>")
    for fig in figures:
        if fig is not None:
            body.append(f"<figure>{_svg(fig)}</figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
             "text-align:right}th{background:#f3f3f3}figure{margin:1em 0}svg{max-width:100%;height:auto}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>graphengine dataset summary"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def summarize(outdir: str) -> Dict[str, Any]:
    """Write the summary files of ``outdir`` (see the module docstring); the summary document,
    with ``files`` naming what was written."""
    manifest = read_manifest(outdir)
    if manifest is None:
        raise SummaryError(f"{outdir}: no manifest.json (not the output directory of 'graphengine dataset run')")
    rpath = os.path.join(outdir, RECORDS)
    records, seen = [], set()
    for k, r in enumerate(read_records(rpath), 1):
        problems = validate_record(r)
        if problems:
            raise SummaryError(f"{rpath}: record {k} (id {r.get('id')!r}): {problems[0]}")
        if r["id"] not in seen:
            seen.add(r["id"])
            records.append(r)
    doc = aggregate_records(records)
    doc["manifest"] = {k: manifest.get(k) for k in ("model", "data", "identity", "graphengine_version")}
    names = {"json": "summary.json", "markdown": "summary.md", "html": "summary.html"}
    files.write_json(os.path.join(outdir, names["json"]), doc, allow_nan=False)
    files.write_text(os.path.join(outdir, names["markdown"]), to_markdown(doc, manifest))
    figs = _figures(doc)
    for fig, name in zip(figs, ("entropy.png", "branches.png")):
        if fig is not None:
            buf = _io.BytesIO()
            fig.savefig(buf, format="png", dpi=120)
            files.write_bytes(os.path.join(outdir, name), buf.getvalue())
            names[name.split(".")[0]] = name
    files.write_text(os.path.join(outdir, names["html"]), to_html(doc, manifest, figs))
    for fig in figs:
        if fig is not None:
            import matplotlib.pyplot as plt

            plt.close(fig)
    doc["files"] = names
    return doc
