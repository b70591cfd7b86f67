"""The engine's view of the role tokens of agreement sentences: mass shares, entropy,
k-best paths and top paths of the subject, the competitor nouns, the attractors and [MASK].

One backward pass per batch of equal-length sentences (QoI as in
:mod:`graphengine.experiments.sva.analysis`: good minus bad verb logit at [MASK]), scalar
granularity, from the word-embedding lookup, computes for every token (its hidden units pooled;
the WordPieces of one word pooled too):

- ``Z``: the path mass Σ |Π w| of all its paths to the QoI, and ``mass_share``: its fraction of
  the sentence's total;
- ``entropy``: the entropy (nats) of the distribution p ∝ |Π w| over those paths;
- ``m_plus`` / ``m_minus``: the largest and the most negative single path product (``max``);
  signed, unlike the statistics above. (A signed *mass*, ⟨Z⁺, Z⁻⟩ weighted by the embedding
  values, is not reported: at the word-embedding lookup it is gradient·input, which the
  embedding layer norm's scale invariance makes ~0 for every token of model A);
- ``kbest_pos`` / ``kbest_neg`` (``kbest:K``): of the sentence's K most positive and K most
  negative path products (all tokens together), the fraction that start at the token;
- ``shares``: per (layer, branch) the probability that a path from the token goes through the
  query, key, value or skip branch of that layer's attention
  (:func:`graphengine.analysis.shares.branch_features`: the mass-share version of the K/Q/V
  table);
- ``top_branch``: per layer the branch its single heaviest (M⁺) path leaves by
  (:func:`graphengine.analysis.kqv.kqv_credits`).

Roles (:func:`role_words`): ``subject``, the competitor nouns of
:mod:`graphengine.experiments.sva.competitors`, ``attractors`` (all of them pooled), ``mask``
and ``rest`` (every other token, special tokens included, pooled). :func:`summarize` averages the
statistics per role over groups of sentences (e.g. correct vs wrong within one construction);
:func:`share_table` gives the per-layer mass shares beside the top-path shares.

>>> from graphengine.experiments.sva.model_a import tiny_model
>>> from graphengine.experiments.sva.data import SVAItem
>>> words = ("the", "pilot", "near", "the", "guards", "laughs", ".")
>>> it = SVAItem(0, 1, words, 5, "laughs", "laugh", 0, 1, (4,), "pp")
>>> m = tiny_model(seed=0)
>>> row = role_statistics(m, [it], [m.encode(it)], k=4)[0]
>>> sorted(name for name, v in row["roles"].items() if v)     # pp: no noun before the subject
['attractors', 'first_between', 'last_between', 'mask', 'rest', 'subject']
>>> s = row["roles"]["subject"]
>>> round(sum(r["mass_share"] for r in row["roles"].values() if r) - row["roles"]["first_between"]["mass_share"]
...       - row["roles"]["last_between"]["mass_share"], 6)   # subject + attractors + mask + rest
1.0
>>> abs(sum(s["shares"][f"L0.{b}"] for b in ("query", "key", "value", "skip")) - 1.0) < 1e-9
True
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ...analysis.entropy import pooled_entropy
from ...analysis.kqv import COLUMNS, DEFAULT_PATTERNS, find_layer_inputs, kqv_credits
from ...analysis.shares import branch_features, branch_points
from ...engine import backward, batch as batch_qoi, difference, forward
from ...models.bert import word_embedding_lookup
from ...semirings import FeatureExpectation
from .competitors import ROLES as COMPETITORS, competitor_matches, competitor_roles
from .data import SVAItem
from .models import Encoded

__all__ = ["ROLE_NAMES", "STATS", "role_words", "role_statistics", "summarize", "share_table"]

ROLE_NAMES = ("subject",) + COMPETITORS + ("attractors", "mask", "rest")
#: The per-role scalar statistics :func:`summarize` averages.
STATS = ("mass_share", "entropy", "m_plus", "m_minus", "kbest_pos", "kbest_neg")


def role_words(item: SVAItem) -> Dict[str, Optional[List[int]]]:
    """Word indices of each role (None where the sentence has none; ``mask`` and ``rest`` are
    filled in per token by :func:`role_statistics`)."""
    comp = competitor_roles(item)
    out: Dict[str, Optional[List[int]]] = {"subject": None if item.subject is None else [item.subject]}
    out.update({r: None if i is None else [i] for r, i in comp.items()})
    out["attractors"] = list(item.attractors) if item.attractors else None
    return out


def _pool_max(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.max()) if v.size else float("nan")


def role_statistics(model, items: Sequence[SVAItem], encs: Sequence[Encoded], k: int = 10,
                    device: str = "cpu") -> List[Dict[str, Any]]:
    """One row per sentence (all ``encs`` of one batch key): ``id``, ``construction``,
    ``correct``, ``qoi``, ``matches`` (competitor vs subject number) and ``roles``: per role the
    statistics of the module docstring (None where the sentence lacks the role). ``k = 0``
    leaves out the k-best statistics."""
    g, feeds = model.batch_inputs(encs)
    acts = forward(g, feeds)
    logits = g.node("logits")
    qoi = batch_qoi([difference(logits.id, (b, e.mask_pos, e.good), (b, e.mask_pos, e.bad))
                     for b, e in enumerate(encs)])
    emb = word_embedding_lookup(g)
    layers = find_layer_inputs(g)
    feats = FeatureExpectation(branch_features(branch_points(g, {"attention": DEFAULT_PATTERNS})), order=1,
                               name="branch_shares")
    sems: List[Any] = ["max", "entropy", feats] + ([f"kbest:{k}"] if k else [])
    r = backward(g, acts, qoi, semirings=sems, retain=[li.node for li in layers] + [emb.id], prune=True,
                 device=device)
    credits = kqv_credits(r, "max")
    Z, R = (np.asarray(c, np.float64) for c in r.raw(emb.id, "entropy"))
    mx = r.components(emb.id, "max")
    mplus, mminus = np.asarray(mx["max"], np.float64), np.asarray(mx["min"], np.float64)
    fe = r.components(emb.id, feats.name)
    names = list(feats.feature_names)
    if k:
        kb = r.components(emb.id, f"kbest:{k}")
        top = np.stack([kb[f"top{i + 1}"] for i in range(k)], -1)     # [B, T, H, k]
        rest = np.stack([kb[f"rest{i + 1}"] for i in range(k)], -1)
    lg = acts[logits.id]
    rows = []
    for b, (it, e) in enumerate(zip(items, encs)):
        T = len(e.ids)
        q = float(lg[b, e.mask_pos, e.good] - lg[b, e.mask_pos, e.bad])
        if k:  # the sentence's k most positive / most negative path products and where they start
            tv, tt = top[b, :T].reshape(-1), np.repeat(np.arange(T), top.shape[2] * k)
            rv, rt = rest[b, :T].reshape(-1), np.repeat(np.arange(T), rest.shape[2] * k)
            ok_t, ok_r = np.isfinite(tv) & (tv > 0), np.isfinite(rv) & (rv < 0)
            best_pos = tt[ok_t][np.argsort(-tv[ok_t], kind="stable")[:k]]
            best_neg = rt[ok_r][np.argsort(rv[ok_r], kind="stable")[:k]]
        z_total = Z[b, :T].sum()
        words = role_words(it)
        pos: Dict[str, Optional[List[int]]] = {name: None if w is None else e.positions(w) for name, w in words.items()}
        pos["mask"] = [e.mask_pos]
        taken = set().union(*(set(p) for n, p in pos.items() if p and n in ("subject", "attractors", "mask")))
        taken |= set().union(*(set(p) for n, p in pos.items() if p and n in COMPETITORS))
        pos["rest"] = [t for t in range(T) if t not in taken] or None
        roles: Dict[str, Optional[Dict[str, Any]]] = {}
        for name in ROLE_NAMES:
            p = pos.get(name)
            if not p:
                roles[name] = None
                continue
            z = Z[b, p].sum()
            st: Dict[str, Any] = {
                "positions": p, "Z": float(z), "mass_share": float(z / z_total) if z_total > 0 else None,
                "entropy": float(pooled_entropy(Z[b, p], R[b, p])),
                "m_plus": _pool_max(mplus[b, p]), "m_minus": -_pool_max(-mminus[b, p]),
                "shares": {c: (float(fe[f"R:{c}"][b, p].sum() / z) if z > 0 else None) for c in names},
                "top_branch": [[COLUMNS[c] if c >= 0 else None for c in credits.branch[li, b, p]]
                               for li in range(len(layers))]}
            if k:
                st["kbest_pos"] = float(np.isin(best_pos, p).mean()) if best_pos.size else None
                st["kbest_neg"] = float(np.isin(best_neg, p).mean()) if best_neg.size else None
            roles[name] = st
        rows.append({"id": it.row, "construction": it.construction, "n_attractors": it.n_attractors,
                     "correct": bool(q > 0), "qoi": q, "matches": competitor_matches(it), "roles": roles})
    return rows


def _mean(v) -> Optional[float]:
    v = [x for x in v if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def summarize(rows: Sequence[Dict[str, Any]], stats: Sequence[str] = STATS) -> Dict[str, Dict[str, Any]]:
    """Per role: the number of sentences having it and the mean of each statistic over them."""
    out = {}
    for name in ROLE_NAMES:
        have = [r["roles"][name] for r in rows if r["roles"].get(name)]
        if have:
            out[name] = {"n": len(have), **{s: _mean([h.get(s) for h in have]) for s in stats}}
    return out


def share_table(rows: Sequence[Dict[str, Any]], role: str, branches=("query", "key", "value", "skip")
                ) -> List[Dict[str, Any]]:
    """Per layer, for the sentences having ``role``: the mean mass share of each attention
    branch and the fraction of the role's tokens whose top path leaves through it."""
    have = [r["roles"][role] for r in rows if r["roles"].get(role)]
    if not have:
        return []
    L = len(have[0]["top_branch"])
    table = []
    for layer in range(L):
        row: Dict[str, Any] = {"layer": layer, "sentences": len(have)}
        for b in branches:
            row[f"mass {b}"] = _mean([h["shares"].get(f"L{layer}.{b}") for h in have])
        tops = [t for h in have for t in h["top_branch"][layer]]
        for b in branches:
            row[f"top {b}"] = sum(1 for t in tops if t == b) / len(tops) if tops else None
        table.append(row)
    return table
