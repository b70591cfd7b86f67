"""Numerical health of a forward and backward pass: where NaN and inf appeared, and which
semirings under- or overflowed.

Products of many local derivatives leave float64 on deep graphs (``0.01**200 == 0.0``). The
log-space semirings (``log``, ``logentropy``, ``maxplus``, ``logcount``) do not; where one of them
says that a path exists, a plain semiring reporting 0, ±inf or NaN has lost the value
(:func:`underflow_report`). :func:`forward_report` names the nodes whose forward values hold NaN
or ±inf, and the ones where they *appeared* (from finite inputs); :func:`numerics_report`
gathers both with the NaN/inf counts of every semiring's values, for ``graphengine analyze``
(which prints it instead of numpy's warnings).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

TINY = float(np.nextafter(0.0, 1.0))  # smallest positive float64 (subnormal)


def _reference(result, name: str, masks: Dict[str, Optional[np.ndarray]]) -> Optional[str]:
    """The semiring of ``result`` whose values say exactly where a path exists (``masks``: each
    semiring's ``path_mask``, None where it cannot tell), for checking ``name``: its log twin if
    computed, else another exact one. A weighted statistic needs a weighted reference (a path of
    non-zero weight); a structural one (count, bool) prefers a structural reference."""
    def sr(n):
        return result.semiring_result(n).semiring
    exact = [n for n in result.semirings if n != name and masks[n] is not None]
    weighted = [n for n in exact if sr(n).weighted]
    structural = [n for n in exact if not sr(n).weighted]
    prefs = [sr(name).log_twin] + (weighted if sr(name).weighted else structural + weighted)
    return next((p for p in prefs if p in exact), None)


def underflow_report(result, node) -> Dict[str, Dict[str, object]]:
    """Per semiring of ``result``: are its finalized values at ``node`` degenerate?

    For a plain semiring, an element is degenerate when its log-space twin (the semiring's
    ``log_twin``: ``absolute`` → ``log``, ``entropy`` → ``logentropy``, ``max``/``maxabs`` →
    ``maxplus``, ``count``/``bool`` → ``logcount``; another exact semiring of the result if the
    twin is missing) says a path exists there but the plain value is 0 (underflow), ±inf
    (overflow) or NaN. What is checked is the semiring's ``path_magnitude``, the quantity that
    must be non-zero when a path exists: ``Z`` for ``entropy`` (``H`` may legitimately be 0),
    ``max(|M⁺|, |M⁻|)`` for ``max``. A semiring that ``may_cancel`` (``real``) can be 0 by
    cancellation, so a zero gradient counts only where even its bound (its log twin, ``log Z``)
    is below the smallest positive number of its value dtype (float64, or float32 for
    ``real:float32``); non-finite gradients always count. Log-space semirings are
    degenerate where they hold NaN or +inf.

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
    masks = {n: result.semiring_result(n).semiring.path_mask(result.raw(node, n)) for n in result.semirings}
    for name in result.semirings:
        sr = result.semiring_result(name).semiring
        comps = result.components(node, name)
        ref = _reference(result, name, masks)
        entry: Dict[str, object] = {"reference": ref}
        if sr.log_space:
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
            has_path = masks[ref]
            v = sr.path_magnitude(comps)
            nan = np.isnan(v)
            over = np.isinf(v)
            zero = v == 0
            if sr.may_cancel:
                bound = np.asarray(result.get(node, sr.log_twin), np.float64) \
                    if sr.log_twin in result.semirings else None
                tiny = float(np.finfo(sr.dtype).smallest_subnormal)  # TINY, or float32's for real:float32
                zero &= (bound < np.log(tiny)) if bound is not None else np.zeros(v.shape, bool)
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


MAX_LISTED = 20  # nodes listed per category; the rest are counted


def _nonfinite(a) -> Optional[Dict[str, int]]:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        return None
    nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    return {"nan": nan, "inf": inf, "of": int(a.size)} if nan or inf else None


def forward_report(graph, activations) -> Dict[str, object]:
    """Nodes whose forward values hold NaN or ±inf: ``nodes`` (each with ``name``, ``op``,
    ``scope``, ``nan``, ``inf``, ``of`` and ``origin``: True where they appeared: NaN from inputs
    without NaN, or inf from finite inputs; fed inputs and parameters are origins), the first :data:`MAX_LISTED` of them in topological order, origins
    first; ``count`` of all such nodes.

    >>> import numpy as np
    >>> from graphengine import Graph, forward
    >>> g = Graph(); x = g.input("x", (2,)); y = g.call("log", x, name="y"); z = g.call("exp", y, name="z")
    >>> rep = forward_report(g, forward(g, {"x": np.array([-1.0, 0.0])}))
    >>> rep["count"], [(n["name"], n["nan"], n["inf"], n["origin"]) for n in rep["nodes"]]
    (2, [('y', 1, 1, True), ('z', 1, 0, False)])
    >>> rep = forward_report(g, forward(g, {"x": np.array([np.inf, 1.0])}))
    >>> [(n["name"], n["nan"], n["inf"], n["origin"]) for n in rep["nodes"]]
    [('x', 0, 1, True), ('y', 0, 1, False), ('z', 0, 1, False)]
    """
    bad = {}
    for node in graph.nodes:
        if node.id in activations:
            counts = _nonfinite(activations[node.id])
            if counts is not None:
                bad[node.id] = counts
    rows = []
    for nid, counts in bad.items():
        node = graph.nodes[nid]
        feeding = [bad[i] for i in node.inputs if i in bad]
        nan_here = counts["nan"] and not any(f["nan"] for f in feeding)   # NaN appeared here
        inf_here = counts["inf"] and not feeding                          # inf from finite inputs
        rows.append({"name": node.name, "op": node.op, "scope": node.scope, **counts,
                     "origin": bool(nan_here or inf_here)})
    rows.sort(key=lambda r: not r["origin"])  # stable: topological order within each group
    return {"count": len(rows), "nodes": rows[:MAX_LISTED]}


def semiring_report(result, nodes: Sequence) -> Dict[str, List[Dict[str, object]]]:
    """Per semiring of ``result``: the retained ``nodes`` whose values hold NaN or ±inf where a
    path exists (a component at its own 0̄ value, −∞ in a max list, is not counted), with ``nan``/``inf`` counts
    of elements and ``of`` elements with a path."""
    out: Dict[str, List[Dict[str, object]]] = {}
    for name in result.semirings:
        sres = result.semiring_result(name)
        rows = []
        for node in nodes:
            nid = result.graph.node(node).id
            if nid not in sres.values:
                continue
            value = sres.values[nid]
            alive = ~np.asarray(sres.semiring.is_zero(value))
            nan = np.zeros(alive.shape, bool)
            inf = np.zeros(alive.shape, bool)
            for c, zero in zip(value, sres.semiring.zero_elements):
                c = np.asarray(c, np.float64)
                nan |= np.isnan(c)
                inf |= np.isinf(c) & (c != zero)   # a component's own 0̄ (a missing k-best entry) is no overflow
            nan &= alive
            inf &= alive & ~nan
            if nan.any() or inf.any():
                rows.append({"name": result.graph.nodes[nid].name, "nan": int(nan.sum()), "inf": int(inf.sum()),
                             "of": int(alive.sum())})
        if rows:
            out[name] = rows[:MAX_LISTED]
    return out


def numerics_report(result, activations, nodes: Sequence) -> Dict[str, object]:
    """:func:`forward_report`, :func:`semiring_report` of ``nodes``, and the degenerate entries
    of :func:`underflow_report` at each of ``nodes`` (``underflow[semiring]``: a list of
    ``{"name", "elements", "of", "underflow", "overflow", "nan", "reference"}``)."""
    under: Dict[str, List[Dict[str, object]]] = {}
    for node in nodes:
        nid = result.graph.node(node).id
        if not all(nid in result.semiring_result(n).values for n in result.semirings):
            continue
        for name, entry in underflow_report(result, nid).items():
            if entry["degenerate"] and entry["underflow"]:
                under.setdefault(name, []).append({"name": result.graph.nodes[nid].name,
                                                   **{k: entry[k] for k in ("elements", "of", "underflow",
                                                                            "overflow", "nan", "reference")}})
    return {"forward": forward_report(result.graph, activations), "semirings": semiring_report(result, nodes),
            "underflow": under}
