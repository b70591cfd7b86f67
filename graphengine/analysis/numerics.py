"""Numerical health of a backward result: which semirings under- or overflowed.

Products of many local derivatives leave float64 on deep graphs (``0.01**200 == 0.0``). The
log-space semirings (``log``, ``logentropy``, ``maxplus``, ``logcount``) do not; where one of them
says that a path exists, a plain semiring reporting 0, ±inf or NaN has lost the value.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

# Which finite log-space values prove that the true plain value is non-zero (and finite).
# Weight-aware statistics need a path of non-zero weight; structural ones any declared edge.
_WEIGHTED_REFS = ("maxplus", "log", "logentropy")
_STRUCTURAL_REFS = ("logcount", "bool")
TWINS = {
    "absolute": "log",
    "entropy": "logentropy",
    "maxabs": "maxplus",
    "max": "maxplus",
    "real": "log",
    "count": "logcount",
    "bool": "logcount",
}
LOG_SPACE = ("log", "logentropy", "maxplus", "logcount")
TINY = float(np.nextafter(0.0, 1.0))  # smallest positive float64 (subnormal)


def _path_mask(result, node, name: str) -> Optional[np.ndarray]:
    """Where a path exists, from the log-space value ``name`` (or ``bool``), or None."""
    comps = result.components(node, name)
    if name == "bool":
        return np.asarray(comps["reachable"], bool)
    return np.isfinite(next(iter(comps.values()))) if name != "logentropy" else np.isfinite(comps["log_Z"])


def _reference(result, semiring: str):
    have = set(result.semirings)
    prefs: List[str] = []
    if semiring in TWINS:
        prefs.append(TWINS[semiring])
    prefs += list(_WEIGHTED_REFS if semiring not in ("count", "bool") else _STRUCTURAL_REFS + _WEIGHTED_REFS)
    for p in prefs:
        if p in have and p != semiring:
            return p
    return None


def underflow_report(result, node) -> Dict[str, Dict[str, object]]:
    """Per semiring of ``result``: are its finalized values at ``node`` degenerate?

    For a plain semiring, an element is degenerate when its log-space twin (``absolute`` →
    ``log``, ``entropy`` → ``logentropy``, ``max``/``maxabs`` → ``maxplus``, ``count``/``bool``
    → ``logcount``; another log-space semiring of the result if the twin is missing) says a path
    exists there but the plain value is 0 (underflow), ±inf (overflow) or NaN. What is checked
    is the quantity that must be non-zero when a path exists: ``Z`` for ``entropy`` (``H`` may
    legitimately be 0), ``max(|M⁺|, |M⁻|)`` for ``max``. ``real`` can be 0 by cancellation, so a
    zero gradient counts only where even its bound ``Z`` (from ``log``) is below the smallest
    float64; non-finite gradients always count. Log-space semirings are degenerate where they
    hold NaN or +inf.

    Each entry: ``degenerate`` (bool, or None when no reference was computed), ``reference``
    (the semiring used), ``elements`` (degenerate elements), ``of`` (elements with a path), and
    ``underflow`` / ``overflow`` / ``nan`` element counts.

    A 200-layer chain of weight 0.01 (one path, product 1e-400):

    >>> import numpy as np
    >>> from graphengine import Graph, backward, forward, select
    >>> g = Graph(); h = x = g.input("x", (1, 1))
    >>> for k in range(200):
    ...     h = g.call("linear", h, g.parameter(f"W{k}", np.full((1, 1), 0.01)), name=f"h{k}")
    >>> r = backward(g, forward(g, {"x": np.ones((1, 1))}), select("h199", (0, 0)),
    ...              semirings=["absolute", "log", "count", "logcount"])
    >>> rep = underflow_report(r, "x")
    >>> {k: v["degenerate"] for k, v in rep.items()}
    {'absolute': True, 'log': False, 'count': False, 'logcount': False}
    >>> round(float(r.get("x", "log")[0, 0]), 6) == round(200 * float(np.log(0.01)), 6)
    True
    """
    out: Dict[str, Dict[str, object]] = {}
    log_bound = None
    if "log" in result.semirings:
        log_bound = np.asarray(result.get(node, "log"), np.float64)
    for name in result.semirings:
        comps = result.components(node, name)
        ref = _reference(result, name)
        entry: Dict[str, object] = {"reference": ref}
        if name in LOG_SPACE:
            vals = [np.asarray(c, np.float64) for c in comps.values()]
            nan = np.zeros(vals[0].shape, bool)
            over = np.zeros(vals[0].shape, bool)
            for v in vals:
                nan |= np.isnan(v)
                over |= np.isposinf(v)
            bad_under = np.zeros(vals[0].shape, bool)
            has_path = np.isfinite(vals[0])
            entry["reference"] = name
        else:
            if ref is None:
                out[name] = {"degenerate": None, "reference": None, "elements": 0, "of": 0,
                             "underflow": 0, "overflow": 0, "nan": 0}
                continue
            has_path = _path_mask(result, node, ref)
            if name == "max":
                v = np.maximum(np.abs(comps["max"]), np.abs(comps["min"]))
            elif name == "entropy":
                v = np.asarray(comps["Z"], np.float64)
                v = np.where(np.isfinite(comps["R"]) & np.isfinite(comps["entropy"]), v, np.nan)
            else:
                v = np.asarray(next(iter(comps.values())), np.float64)
            nan = np.isnan(v)
            over = np.isinf(v)
            zero = v == 0
            if name == "real":
                unrepresentable = (log_bound < np.log(TINY)) if log_bound is not None else np.zeros(v.shape, bool)
                zero &= unrepresentable
            bad_under = zero & has_path
            nan &= has_path
            over &= has_path
        bad = bad_under | nan | over
        entry.update({
            "degenerate": bool(bad.any()),
            "elements": int(bad.sum()),
            "of": int(np.sum(has_path)),
            "underflow": int(bad_under.sum()),
            "overflow": int(over.sum()),
            "nan": int(nan.sum()),
        })
        out[name] = {"degenerate": entry.pop("degenerate"), **entry}
    return out
