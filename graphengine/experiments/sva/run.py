"""Dataset-scale agreement runs: stream sentences, write a row per sentence, resume, aggregate.

:func:`run_sva` reads an agreement TSV (:mod:`graphengine.experiments.sva.data`), analyses every sentence
with :class:`graphengine.experiments.sva.analysis.Analyzer` in batches of equal length, and appends one JSON
line per sentence to ``rows.jsonl`` in the output directory as it goes, through the dataset
runner's store (:mod:`graphengine.runner.store`: each row appended with ``fsync``; the
directory locked, so a second run started on it is refused with one line instead of doubling
the rows). A rerun with the same model, data file and granularity skips the ids already
written (a truncated last line, from an interrupted run, is cut off first) and goes on;
``--limit`` may grow between runs. Sentences a model cannot score (a verb outside model A's vocabulary,
too many tokens) get a row with ``skipped`` and are not retried.

Aggregation (:func:`aggregate`, over the rows of the sentences in the current data/limit):

- accuracy (QoI > 0) overall, by attractor count and by construction (held-out constructions
  of model A marked), beside the majority-class baseline of the same sentences; for the
  grammar's sentences also by construction and competitor noun, split by whether the
  competitor's number matches the subject's (:mod:`graphengine.experiments.sva.competitors`);
- the K/Q/V/skip table (docs/method.md): per token subset (``all`` tokens, ``subject``,
  ``attractors`` before the verb, ``mask``) and layer, the mean credited M⁺ per branch over the
  subset's (sentence, token) pairs, "% keys" = K / (K + Q + V + skip), and the fraction of
  tokens whose top path leaves through keys (``top share``). Subject and attractor subsets need
  role positions: the grammar's TSVs have them; for the natural sentences they are left to the
  grammar data (no subject heuristic is applied);
- the [MASK] top path (scalar granularity): the fraction of sentences whose path stays on the
  skip connection in every layer, and the branch distribution per layer;
- entropy (App. B.2): mean sentence entropy (the mean over a sentence's tokens, [CLS] / [SEP] /
  [MASK] included) overall, by length bin and by attractor count, and Spearman's rho between
  sentence entropy and attractor count within the length bins 10–20, 20–30, 30–40, 40–50 tokens
  (model tokens, special tokens included), both per position (``token``) and pooled by
  vocabulary row as the original did (``row``).

Outputs in the directory: ``rows.jsonl``, ``run.json`` (the settings a rerun must match),
``results.json``, ``table.md`` (with the paper's numbers beside ours) and ``flow.png`` (the
per-layer K/Q/V/skip flow per subset).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from ... import io as files
from ... import progress as prog
from ...errors import GraphEngineError
from ...runner.execute import SerialExecutor, Task, run_tasks
from ...runner.store import RunStore, RunStoreError, read_records
from .analysis import GRANULARITIES, Analyzer
from .data import SVAItem, read_tsv
from ..stats import spearman
from .accuracy import accuracy_table
from .competitors import construction_split, split_markdown
from .models import SVAModelError, load_model

__all__ = ["SVARunError", "run_sva", "sentence_batches", "aggregate", "read_rows", "LENGTH_BINS", "PAPER", "resolve_model",
           "DEFAULT_MODELS"]

LENGTH_BINS = ((10, 20), (20, 30), (30, 40), (40, 50))
BRANCHES = ("query", "key", "value", "skip", "other")
SUBSETS = ("all", "subject", "attractors", "mask")
DEFAULT_MODELS = {"A": os.path.join("results", "sva", "model_a"), "B": os.path.join("results", "sva", "model_b")}
TRAIN_HINT = {"A": "graphengine experiment sva-train-a",
              "B": "graphengine experiment sva-train-b ../shared/data/sva/linzen_agreement.tsv"}

#: The paper's numbers (docs/method.md) for the side-by-side tables.
PAPER = {
    "model": "pretrained 6-layer BERT masked LM (hidden 512, 8 heads), not fine-tuned; 1,000 natural sentences",
    "accuracy": 0.956, "accuracy_by_attractors": {1: 0.958, 2: 0.947, 3: 0.939, 4: 1.0},
    "subject_last_layer": {"key": 0.114, "value": 0.036, "query": 0.0, "skip": 0.0, "keys_share": 0.761},
    "subject_skip_layers_0_4": [0.30, 0.21, 0.21, 0.21, 0.13],
    "attractors_last_layer_keys_share": 0.67,
    "mask": "skip in every layer for essentially every sentence",
    "mean_sentence_entropy": "about 270-277 nats, rising with length",
    "spearman_entropy_attractors_by_length": {"10-20": 0.18, "20-30": 0.13, "30-40": 0.01, "40-50": 0.11},
}


class SVARunError(GraphEngineError):
    """A run cannot start or resume (bad output directory, settings that differ, corrupt rows)."""


# ------------------------------------------------------------------ model and rows files
def resolve_model(spec: str):
    """``A`` / ``B`` (the default directories), a model directory or a ``.ge`` graph file."""
    path = DEFAULT_MODELS.get(spec, spec)
    if spec in DEFAULT_MODELS and not os.path.exists(os.path.join(path, "model.json")):
        raise SVAModelError(f"model {spec} not found at {path}: train it with {TRAIN_HINT[spec]}")
    return load_model(path), path


def read_rows(path: str, repair: bool = False) -> List[Dict[str, Any]]:
    """The rows of a ``rows.jsonl`` (:func:`graphengine.runner.store.read_records`): an
    unparsable *last* line (an interrupted write) is ignored, and cut from the file when
    ``repair``; an unparsable earlier line is an error."""
    try:
        return read_records(path, repair=repair)
    except RunStoreError as e:
        raise SVARunError(str(e)) from None


def _settings(model_path: str, model, data_path: str, granularity: str) -> Dict[str, Any]:
    return {"model": getattr(model, "name", "?"), "model_path": os.path.abspath(model_path),
            "data": os.path.abspath(data_path), "granularity": granularity, "format": 1}


def _check_settings(out: str, settings: Dict[str, Any]) -> None:
    p = os.path.join(out, "run.json")
    if os.path.exists(p):
        try:
            with open(p, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            raise SVARunError(f"{p}: cannot read ({e})") from None
        diff = [k for k in settings if old.get(k) != settings[k]]
        if diff:
            raise SVARunError(f"{out} holds a run with other settings ({', '.join(f'{k}: {old.get(k)!r}' for k in diff)});"
                              f" use another --out")
    else:
        files.write_json(p, settings)  # atomic: a crash never leaves an empty run.json behind


# ------------------------------------------------------------------ the run
def sentence_batches(model, items: Sequence[SVAItem], batch_size: int, window: int = 2048):
    """Batches of one batch key (sentence length), shortest first within windows of ``window``
    sentences in file order, as ``(items, encodings)``; then ``("skipped", rows)`` for the
    sentences the model cannot score."""
    skipped = []
    for s in range(0, len(items), window):
        groups: Dict[Any, list] = defaultdict(list)
        for it in items[s:s + window]:
            try:
                enc = model.encode(it)
                if len(enc.ids) > model.max_length:
                    raise SVAModelError(f"{len(enc.ids)} tokens exceed the model's {model.max_length}")
            except SVAModelError as e:
                skipped.append({"id": it.row, "skipped": str(e), "n_attractors": it.n_attractors,
                                "construction": it.construction})
                continue
            groups[model.batch_key(enc)].append((it, enc))
        for key in sorted(groups):
            g = groups[key]
            for k in range(0, len(g), batch_size):
                part = g[k:k + batch_size]
                yield [p[0] for p in part], [p[1] for p in part]
    yield "skipped", skipped


def run_sva(model: str, data: str, out: Optional[str] = None, limit: Optional[int] = None,
            granularity: str = "scalar", batch_size: int = 8, show_progress: bool = True,
            top_path: bool = True, entropy: bool = True, log=None) -> Dict[str, Any]:
    """Run (or resume) the analysis of ``data`` with ``model`` and aggregate; returns the
    results document (also written to ``results.json``)."""
    if granularity not in GRANULARITIES:
        raise SVARunError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if batch_size < 1:
        raise SVARunError(f"batch size must be >= 1, got {batch_size}")
    m, mpath = resolve_model(model)
    if getattr(m, "batch", None) is not None:
        batch_size = min(batch_size, m.batch)
    ds = read_tsv(data, limit=limit)
    stem = os.path.splitext(os.path.basename(data))[0]
    out = out or os.path.join("results", "sva", f"{m.name}_{stem}_{granularity}")
    settings = _settings(mpath, m, data, granularity)
    analyzer = Analyzer(m, granularity, entropy=entropy, top_path=top_path)
    n_new = 0

    def analyze(model, part):
        return part[1] if part[0] == "skipped" else analyzer.run(*part)

    def count(task, rows):
        nonlocal n_new
        n_new += sum(1 for r in rows if "skipped" not in r)

    t0 = time.perf_counter()
    try:
        # the runner's store: a lock (a second run on this directory is refused), a torn last
        # line cut off, rows appended with fsync, and an id already stored never written again
        with RunStore(out, "rows.jsonl") as store, prog.quiet(not show_progress or prog.is_quiet()):
            rows_path = store.records_path
            _check_settings(out, settings)
            pending = [it for it in ds.items if it.row not in store.done]
            tasks = [Task(str(k), part) for k, part in enumerate(sentence_batches(m, pending, batch_size))]
            with prog.Progress(len(pending), f"sva {m.name} {granularity}", unit="sentences") as bar:
                run_tasks(store, SerialExecutor(model=m), analyze, None, tasks, bar=bar, on_records=count)
    except RunStoreError as e:
        raise SVARunError(str(e)) from None
    seconds = time.perf_counter() - t0
    wanted = {it.row for it in ds.items}
    rows, seen = [], set()
    for r in read_rows(rows_path):  # the first row of an id (files from older versions could repeat one)
        if r["id"] in wanted and r["id"] not in seen:
            seen.add(r["id"])
            rows.append(r)
    doc = aggregate(rows, held_out=(getattr(m, "info", {}) or {}).get("held_out") or [], items=ds.items)
    doc["run"] = {**settings, "out": out, "limit": limit, "sentences_in_file": len(ds), "dropped_same_verb": len(ds.dropped_same_verb),
                  "new_rows_this_run": n_new, "seconds_this_run": seconds,
                  "seconds_per_sentence_this_run": seconds / n_new if n_new else None,
                  "timings_this_run": dict(analyzer.timings), "batch_size": batch_size,
                  "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                              "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}}
    doc["paper"] = PAPER
    doc["note"] = ("The paper's own model (a pretrained 6-layer BERT masked LM) could not be had offline; "
                   f"this run uses {m.name}.")
    files = write_outputs(doc, out)
    doc["files"] = files
    if log:
        log(f"sva: {len(rows)} rows ({n_new} new in {seconds:.1f} s) -> {out}")
    return doc


# ------------------------------------------------------------------ aggregation
def _mean(v) -> Optional[float]:
    v = [a for a in v if a is not None]
    return float(np.mean(v)) if v else None


def _subset_positions(r, subset: str) -> Optional[List[int]]:
    if subset == "all":
        return list(range(r["tokens"]))
    if subset == "mask":
        return [r["mask"]]
    pos = r.get(subset)
    return None if pos is None else list(pos)


def _kqv(rows) -> Dict[str, Any]:
    L = len(rows[0]["kqv_branch"])
    out = {}
    for subset in SUBSETS:
        tot = np.zeros((L, len(BRANCHES)))
        top = np.zeros((L, len(BRANCHES)))
        n = 0
        unreached = np.zeros(L, np.int64)
        have = False
        for r in rows:
            pos = _subset_positions(r, subset)
            if pos is None:
                continue
            have = True
            n += len(pos)
            for layer in range(L):
                br, val = r["kqv_branch"][layer], r["kqv_value"][layer]
                for t in pos:
                    b = br[t]
                    if b < 0 or val[t] is None:
                        unreached[layer] += 1
                        continue
                    tot[layer, b] += val[t]
                    top[layer, b] += 1
        if not have:
            continue
        mean = tot / max(n, 1)
        s = mean.sum(-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(s != 0, mean / np.where(s != 0, s, 1), np.nan)
        out[subset] = {"tokens": n, "mean": mean.tolist(), "share": share.tolist(),
                       "top_share": (top / max(n, 1)).tolist(), "unreached": unreached.tolist()}
    return {"layers": L, "branches": list(BRANCHES), "subsets": out}


def _mask_paths(rows) -> Optional[Dict[str, Any]]:
    paths = [r["top_path"] for r in rows if r.get("top_path") and r["top_path"].get("weight") is not None]
    if not paths:
        return None
    L = len(paths[0]["branches"])
    per_layer = [{b: sum(1 for p in paths if p["branches"][k] == b) / len(paths) for b in BRANCHES}
                 for k in range(L)]
    all_skip = sum(1 for p in paths if all(b == "skip" for b in p["branches"]))
    stays = sum(1 for p in paths if all(pos == p["positions"][0] for pos in p["positions"]))
    return {"sentences": len(paths), "all_skip_fraction": all_skip / len(paths), "per_layer": per_layer,
            "stays_on_mask_fraction": stays / len(paths), "mean_weight": float(np.mean([p["weight"] for p in paths]))}


def _entropy(rows) -> Optional[Dict[str, Any]]:
    rows = [r for r in rows if r.get("entropy_token")]
    if not rows:
        return None
    out = {}
    for kind in ("token", "row"):
        ent = np.array([_mean(r[f"entropy_{kind}"]) for r in rows], np.float64)
        length = np.array([r["tokens"] for r in rows])
        att = np.array([r["n_attractors"] for r in rows])
        bins = {}
        for lo, hi in LENGTH_BINS:
            sel = (length >= lo) & (length < hi)
            sp = spearman(att[sel], ent[sel]) if sel.sum() >= 3 else {"rho": None, "p": None, "n": int(sel.sum())}
            bins[f"{lo}-{hi}"] = {"n": int(sel.sum()), "mean_entropy": float(ent[sel].mean()) if sel.any() else None,
                                  "spearman_attractors": sp.get("rho"), "p": sp.get("p")}
        out[kind] = {"mean_sentence_entropy": float(ent.mean()), "sd": float(ent.std()),
                     "by_attractors": {int(a): float(ent[att == a].mean()) for a in np.unique(att)},
                     "length_bins": bins, "spearman_length": spearman(length, ent).get("rho"),
                     "spearman_attractors_all": spearman(att, ent).get("rho")}
    return out


def aggregate(rows: Iterable[Dict[str, Any]], held_out: Sequence[str] = (),
              items: Optional[Sequence[SVAItem]] = None) -> Dict[str, Any]:
    """Summaries of the per-sentence rows (see the module docstring); with the data file's
    ``items``, also the construction split by competitor noun
    (:func:`graphengine.experiments.sva.competitors.construction_split`)."""
    rows = list(rows)
    scored = [r for r in rows if "skipped" not in r]
    skipped = [r for r in rows if "skipped" in r]
    doc: Dict[str, Any] = {"sentences": len(scored), "skipped": len(skipped),
                           "skip_reasons": sorted({r["skipped"] for r in skipped})[:10]}
    if not scored:
        return doc
    doc["accuracy"] = accuracy_table([r["correct"] for r in scored], [r.get("good_number") for r in scored],
                                     [r["n_attractors"] for r in scored], [r.get("construction") for r in scored],
                                     held_out)
    if items is not None:
        by_id = {it.row: it for it in items}
        pairs = [(by_id[r["id"]], r["correct"]) for r in scored if r["id"] in by_id and by_id[r["id"]].has_roles]
        if pairs:
            doc["construction_split"] = construction_split([p[0] for p in pairs], [p[1] for p in pairs])
    doc["kqv"] = _kqv(scored)
    doc["mask_top_path"] = _mask_paths(scored)
    doc["entropy"] = _entropy(scored)
    secs = [r.get("seconds") for r in scored if r.get("seconds") is not None]
    doc["seconds_per_sentence_mean"] = _mean(secs)
    return doc


# ------------------------------------------------------------------ outputs
def _fmt(x, digits=3):
    from ..common import fmt

    return fmt(x, digits)


def _pct(x):
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}%"


def to_markdown(doc: Dict[str, Any]) -> str:
    """The tables of a results document, ours beside the paper's."""
    from ..common import markdown_table

    lines = [f"# Subject–verb agreement: {doc.get('run', {}).get('model', '?')} "
             f"({doc.get('run', {}).get('granularity', '?')} granularity)", ""]
    if doc.get("note"):
        lines += [doc["note"], ""]
    lines += [f"Sentences analysed: {doc['sentences']} (skipped: {doc['skipped']}).", ""]
    if "accuracy" not in doc:
        return "\n".join(lines)
    acc = doc["accuracy"]
    rows = [["all", acc["n"], _pct(acc["accuracy"]), _pct(acc["majority_baseline"]), _pct(PAPER["accuracy"])]]
    for a, c in acc["by_attractors"].items():
        rows.append([f"{a} attractors", c["n"], _pct(c["accuracy"]), _pct(c["majority_baseline"]),
                     _pct(PAPER["accuracy_by_attractors"].get(int(a)))])
    lines += ["## Accuracy (QoI > 0)", "", markdown_table(["sentences", "n", "ours", "majority baseline", "paper"], rows), ""]
    if acc.get("by_construction"):
        rows = [[c + (" (held out)" if v["held_out"] else ""), v["n"], _pct(v["accuracy"]), _pct(v["majority_baseline"])]
                for c, v in acc["by_construction"].items()]
        lines += ["By construction:", "", markdown_table(["construction", "n", "accuracy", "majority baseline"], rows), ""]
    if doc.get("construction_split"):
        held = [c for c, v in acc.get("by_construction", {}).items() if v["held_out"]]
        lines += ["By construction and competitor noun (docs/sva.md): accuracy where the competitor's number "
                  "matches the subject's / where it does not (sentences):", "",
                  split_markdown(doc["construction_split"], held), ""]
    kqv = doc["kqv"]
    L = kqv["layers"]
    subj = kqv["subsets"].get("subject")
    lines += ["## K/Q/V/skip at each layer's attention input (mean credited M⁺; % keys = K/(K+Q+V+skip))", ""]
    comp = []
    if subj:
        ks = subj["share"][L - 1][1]
        comp.append(["subject, last layer: % keys", _pct(ks), _pct(PAPER["subject_last_layer"]["keys_share"])])
        comp.append(["subject, last layer: K, V, Q, skip",
                     ", ".join(_fmt(subj["mean"][L - 1][BRANCHES.index(b)]) for b in ("key", "value", "query", "skip")),
                     "0.114, 0.036, 0, 0"])
        comp.append(["subject skip share, layers 0..L-2",
                     ", ".join(_fmt(subj["share"][k][3], 2) for k in range(L - 1)),
                     ", ".join(str(v) for v in PAPER["subject_skip_layers_0_4"])])
    att = kqv["subsets"].get("attractors")
    if att:
        comp.append(["preceding attractors, last layer: % keys", _pct(att["share"][L - 1][1]),
                     _pct(PAPER["attractors_last_layer_keys_share"])])
    mk = kqv["subsets"].get("mask")
    if mk:
        comp.append(["[MASK]: top share through skip per layer", ", ".join(_fmt(mk["top_share"][k][3], 2) for k in range(L)),
                     "skip in every layer, ~every sentence"])
    mp = doc.get("mask_top_path")
    if mp:
        comp.append(["[MASK] top path: skip in every layer", _pct(mp["all_skip_fraction"]), "essentially 100%"])
    if not subj:
        comp.append(["subject / attractors", "no role positions in this data (left to the grammar data)", ""])
    lines += ["Paper vs ours:", "", markdown_table(["statistic", "ours", "paper"], comp), ""]
    rows = []
    for s, v in kqv["subsets"].items():
        for k in range(L):
            m = v["mean"][k]
            rows.append([s, k, v["tokens"], *[_fmt(m[BRANCHES.index(b)]) for b in ("query", "key", "value", "skip")],
                         _pct(v["share"][k][1]), _pct(v["top_share"][k][1])])
    lines += ["Per layer:", "", markdown_table(["subset", "layer", "tokens", "query", "key", "value", "skip", "% keys",
                                                "top share keys"], rows), ""]
    ent = doc.get("entropy")
    if ent:
        lines += ["## Entropy vs difficulty (App. B.2)", ""]
        rows = []
        for kind, label in (("token", "per position"), ("row", "pooled by vocabulary row (as the original)")):
            e = ent[kind]
            rows.append([label, _fmt(e["mean_sentence_entropy"], 4), _fmt(e["spearman_length"], 2),
                         *[f"{_fmt(e['length_bins'][f'{lo}-{hi}']['spearman_attractors'], 2)} "
                           f"(n={e['length_bins'][f'{lo}-{hi}']['n']})" for lo, hi in LENGTH_BINS]])
        rows.append(["paper", "≈270–277", "positive", *[str(PAPER["spearman_entropy_attractors_by_length"][f"{lo}-{hi}"])
                                                       for lo, hi in LENGTH_BINS]])
        lines += [markdown_table(["entropy", "mean sentence entropy (nats)", "rho(length)",
                                  *[f"rho(attractors), {lo}-{hi} tokens" for lo, hi in LENGTH_BINS]], rows), ""]
        e = ent["token"]
        lines += ["Mean sentence entropy (per position) by attractors: "
                  + ", ".join(f"{a}: {_fmt(v, 4)}" for a, v in e["by_attractors"].items()), ""]
    run = doc.get("run")
    if run and run.get("seconds_per_sentence_this_run"):
        t = run["timings_this_run"]
        lines += ["## Time", "", f"{run['new_rows_this_run']} sentences in {run['seconds_this_run']:.1f} s "
                  f"({run['seconds_per_sentence_this_run']:.3f} s per sentence; batch {run['batch_size']}; "
                  f"{run['machine']['cpus']} CPUs, load average {', '.join(f'{x:.1f}' for x in run['machine']['load_average'] or [])}): "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()), ""]
    return "\n".join(lines)


def flow_figure(doc: Dict[str, Any], path: str) -> Optional[str]:
    """Per-layer stacked bars of each branch's share of the mean credited M⁺, one panel per subset."""
    from ..common import pyplot, save_figure

    plt = pyplot()
    kqv = doc.get("kqv")
    if plt is None or not kqv:
        return None
    subsets = list(kqv["subsets"])
    fig, axes = plt.subplots(1, len(subsets), figsize=(3.2 * len(subsets), 3.0), sharey=True, squeeze=False)
    colors = {"query": "#4c72b0", "key": "#dd8452", "value": "#55a868", "skip": "#8c8c8c", "other": "#c44e52"}
    L = kqv["layers"]
    for ax, s in zip(axes[0], subsets):
        share = np.nan_to_num(np.array(kqv["subsets"][s]["share"]))
        bottom = np.zeros(L)
        for b in BRANCHES[:4]:
            v = share[:, BRANCHES.index(b)]
            ax.bar(np.arange(L), v, bottom=bottom, color=colors[b], label=b)
            bottom += v
        ax.set_title(f"{s} ({kqv['subsets'][s]['tokens']} tokens)", fontsize=9)
        ax.set_xlabel("layer")
        ax.set_xticks(range(L))
    axes[0][0].set_ylabel("share of mean credited M⁺")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    run = doc.get("run", {})
    fig.suptitle(f"top-path flow at each layer's attention input: {run.get('model', '')}, {run.get('granularity', '')}",
                 fontsize=10, y=1.04)
    return save_figure(fig, path)


def write_outputs(doc: Dict[str, Any], out: str) -> Dict[str, Optional[str]]:
    from ..common import write_json, write_text

    files = {"rows": "rows.jsonl", "results": "results.json", "table": "table.md"}
    write_json(os.path.join(out, "results.json"), doc)
    write_text(os.path.join(out, "table.md"), to_markdown(doc) + "\n")
    fig = flow_figure(doc, os.path.join(out, "flow.png"))
    files["figure"] = "flow.png" if fig else None
    return files
