"""Agreement accuracy tables: overall, by attractor count and by construction, each cell with its
count and majority-class baseline. The one table behind model A's and model B's training
reports and the ``sva`` results.

A sentence is correct when the model prefers the agreeing verb form. The majority baseline of a
cell is the accuracy of always answering the cell's more frequent verb number (``None`` when no
sentence of the cell has a known number; a 5-column TSV row whose verb pair is not a singular /
plural pair has none). With held-out constructions the table adds ``in_distribution`` and
``held_out`` cells.

>>> t = accuracy_table([True, False, True, True], good_number=[1, 1, 0, None], n_attractors=[0, 1, 1, 1],
...                    construction=["pp", "pp", "obj_rel", "obj_rel"], held_out=["obj_rel"])
>>> t["accuracy"], round(t["majority_baseline"], 3), t["by_attractors"][1]["n"]
(0.75, 0.667, 3)
>>> t["by_construction"]["obj_rel"]["held_out"], t["held_out"]["accuracy"], t["in_distribution"]["n"]
(True, 1.0, 2)
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

__all__ = ["accuracy_table"]


def accuracy_table(correct: Sequence[bool], good_number: Sequence[Optional[int]], n_attractors: Sequence[int],
                   construction: Optional[Sequence[Optional[str]]] = None,
                   held_out: Sequence[str] = ()) -> Dict[str, Any]:
    """The table for sentences with per-sentence ``correct``, ``good_number`` (0 singular, 1
    plural, None unknown), ``n_attractors`` and, optionally, ``construction`` names (None
    where unknown); ``held_out`` names the constructions never seen in training."""
    correct = np.asarray(correct, bool)
    number = np.array([np.nan if g is None else float(g) for g in good_number], np.float64)
    att = np.asarray(n_attractors, np.int64)
    cons = np.array([c or "" for c in construction] if construction is not None else [""] * len(correct), object)
    if not len(correct) == len(number) == len(att) == len(cons):
        raise ValueError("accuracy_table: the per-sentence sequences differ in length")

    def cell(sel: np.ndarray) -> Dict[str, Any]:
        if not sel.any():
            return {"n": 0, "accuracy": None, "majority_baseline": None}
        known = number[sel][~np.isnan(number[sel])]
        p = float(known.mean()) if known.size else None
        return {"n": int(sel.sum()), "accuracy": float(correct[sel].mean()),
                "majority_baseline": None if p is None else max(p, 1.0 - p)}

    out = cell(np.ones(len(correct), bool))
    out["by_attractors"] = {int(a): cell(att == a) for a in np.unique(att)}
    names = sorted({c for c in cons if c})
    out["by_construction"] = {c: {**cell(cons == c), "held_out": c in held_out} for c in names}
    if names and held_out:
        held = np.isin(cons, list(held_out))
        out["in_distribution"] = cell(~held)
        out["held_out"] = cell(held)
    return out
