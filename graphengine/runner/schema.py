"""The versioned formats of a dataset run's files (docs/dataset.md describes them in full).

``records.jsonl``: one record per example, ``"format": "graphengine.dataset.record"``,
``"version": 1``. :func:`validate_record` checks one record against the definition and returns
the problems found (an empty list for a valid record).

>>> validate_record({"format": RECORD_FORMAT, "version": 1, "id": "a", "index": 0, "skipped": "too long"})
[]
>>> validate_record({"format": RECORD_FORMAT, "version": 1, "id": "a", "index": 0, "tokens": ["x"],
...                  "qoi": {"expr": "y[0]", "value": 1.0}, "stats": {"entropy": [0.1, 0.2]}, "paths": [],
...                  "timing": {"total": 0.1}, "node": "e"})
['stats.entropy: 2 values for 1 tokens']
"""

from __future__ import annotations

from typing import Any, List

__all__ = ["RECORD_FORMAT", "RECORD_VERSION", "MANIFEST_FORMAT", "MANIFEST_VERSION", "validate_record",
           "SUMMARY_FORMAT", "SUMMARY_VERSION"]

RECORD_FORMAT = "graphengine.dataset.record"
RECORD_VERSION = 1
MANIFEST_FORMAT = "graphengine.dataset.manifest"
MANIFEST_VERSION = 1
SUMMARY_FORMAT = "graphengine.dataset.summary"
SUMMARY_VERSION = 1

_STATS = ("grad_norm", "grad_x_input", "max_plus", "entropy")
_BRANCHES = ("Q", "K", "V", "skip", "other", None)


def _num(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def validate_record(r: Any) -> List[str]:
    """Problems of one record (empty when it follows version 1 of the record format)."""
    if not isinstance(r, dict):
        return ["not a JSON object"]
    bad: List[str] = []
    if r.get("format") != RECORD_FORMAT:
        bad.append(f"format: expected {RECORD_FORMAT!r}")
    if r.get("version") != RECORD_VERSION:
        bad.append(f"version: expected {RECORD_VERSION}")
    if not isinstance(r.get("id"), str) or not r.get("id"):
        bad.append("id: expected a non-empty string")
    if not isinstance(r.get("index"), int) or isinstance(r.get("index"), bool) or r["index"] < 0:
        bad.append("index: expected an integer >= 0")
    if "skipped" in r:
        if not isinstance(r["skipped"], str) or not r["skipped"]:
            bad.append("skipped: expected the reason as a string")
        return bad
    tokens = r.get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        return bad + ["tokens: expected a non-empty list of strings"]
    T = len(tokens)
    q = r.get("qoi")
    if not isinstance(q, dict) or not isinstance(q.get("expr"), str) or not _num(q.get("value")):
        bad.append("qoi: expected {expr: string, value: number or null}")
    if "correct" in r and r["correct"] not in (True, False, None):
        bad.append("correct: expected true, false or null")
    if not isinstance(r.get("node"), str):
        bad.append("node: expected the name of the statistics' node")
    stats = r.get("stats")
    if not isinstance(stats, dict):
        bad.append("stats: expected an object")
    else:
        for k, v in stats.items():
            if k not in _STATS:
                bad.append(f"stats.{k}: unknown statistic (known: {', '.join(_STATS)})")
            elif not isinstance(v, list) or not all(_num(a) for a in v):
                bad.append(f"stats.{k}: expected a list of numbers or nulls")
            elif len(v) != T:
                bad.append(f"stats.{k}: {len(v)} values for {T} tokens")
    paths = r.get("paths")
    if not isinstance(paths, list):
        bad.append("paths: expected a list")
    else:
        for i, p in enumerate(paths):
            if not isinstance(p, dict) or not isinstance(p.get("semiring"), str) or not _num(p.get("weight")) \
                    or not isinstance(p.get("steps"), list) or not isinstance(p.get("token"), int) \
                    or not 0 <= p["token"] < T:
                bad.append(f"paths[{i}]: expected {{semiring, weight, token < {T}, unit, steps, ...}}")
            elif not all(isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("element"), list)
                         for s in p["steps"]):
                bad.append(f"paths[{i}].steps: expected objects with name and element")
    br = r.get("branches")
    if br is not None:
        if not isinstance(br, list) or len(br) != T or not all(isinstance(b, list) and all(x in _BRANCHES for x in b)
                                                              for b in br):
            bad.append(f"branches: expected {T} lists (one per token) of Q/K/V/skip/other/null per layer")
    t = r.get("timing")
    if not isinstance(t, dict) or not _num(t.get("total")) or t.get("total") is None:
        bad.append("timing: expected an object with total seconds")
    return bad
