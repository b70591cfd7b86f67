"""Competitor nouns of a grammar sentence and the construction split of agreement accuracy.

A model that agrees with the wrong noun is right whenever that noun happens to have the
subject's number and wrong whenever it does not. Splitting each construction's sentences by
whether a competitor noun's number *matches* the subject's shows it: ~100% on the matching half
and ~0% on the mismatched half means the model follows that noun. The competitors of a sentence
(only nouns before the target verb; the subject excluded), by position:

- ``before_subject``: the noun closest before the subject (``sent_comp``'s matrix subject; none
  in the other constructions);
- ``first_between``: the first noun strictly between subject and verb (``obj_rel``'s
  relative-clause subject, ``subj_rel``'s object, the first PP noun of ``pp``);
- ``last_between``: the noun strictly between subject and verb closest to the verb (the
  "intervening noun" nearest the verb; the same noun as ``first_between`` when there is one).

Nouns and their numbers come from :func:`graphengine.datasets.sva_grammar.noun_number`, so
this needs the grammar's 8-column TSVs (subject position and construction); natural sentences
have no competitor roles.

>>> from graphengine.experiments.sva.data import SVAItem
>>> words = ("the", "men", "say", "that", "the", "pilot", "near", "the", "guard", "laughs", ".")
>>> it = SVAItem(0, 0, words, 9, "laughs", "laugh", 0, 5, (), "sent_comp")
>>> roles = competitor_roles(it)
>>> roles["before_subject"], roles["first_between"], roles["last_between"]
(1, 8, 8)
>>> competitor_matches(it)
{'before_subject': False, 'first_between': True, 'last_between': True}
>>> t = construction_split([it, it], [False, False])
>>> t["sent_comp"]["before_subject"]["mismatch"]
{'n': 2, 'accuracy': 0.0}
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from ...datasets.sva_grammar import noun_number
from .data import SVAItem

__all__ = ["ROLES", "competitor_roles", "competitor_matches", "construction_split", "split_markdown"]

ROLES = ("before_subject", "first_between", "last_between")


def competitor_roles(item: SVAItem) -> Dict[str, Optional[int]]:
    """Word index of each competitor role (None where the sentence has no such noun, or no
    subject position)."""
    none: Dict[str, Optional[int]] = {r: None for r in ROLES}
    s, v = item.subject, item.mask_index
    if s is None:
        return none
    nouns = [i for i, w in enumerate(item.words[:v]) if i != s and noun_number(w) is not None]
    before = [i for i in nouns if i < s]
    between = [i for i in nouns if s < i]
    return {"before_subject": before[-1] if before else None,
            "first_between": between[0] if between else None,
            "last_between": between[-1] if between else None}


def competitor_matches(item: SVAItem) -> Dict[str, Optional[bool]]:
    """Per role, whether the competitor's number equals the subject's (None: no such noun)."""
    if item.subject is None:
        return {r: None for r in ROLES}
    subj = noun_number(item.words[item.subject])
    return {r: None if i is None else noun_number(item.words[i]) == subj for r, i in competitor_roles(item).items()}


def construction_split(items: Sequence[SVAItem], correct: Sequence[bool]) -> Dict[str, Dict[str, Any]]:
    """Per construction (and ``all``) and competitor role: ``n`` and ``accuracy`` on the
    sentences whose competitor matches the subject's number and on those where it does not
    (roles absent from a construction are left out)."""
    if len(items) != len(correct):
        raise ValueError("construction_split: items and correct differ in length")
    cells: Dict[str, Dict[str, Dict[str, List[bool]]]] = {}
    for it, ok in zip(items, correct):
        if it.subject is None:
            continue
        for cons in (it.construction or "?", "all"):
            for role, m in competitor_matches(it).items():
                if m is not None:
                    cells.setdefault(cons, {}).setdefault(role, {"match": [], "mismatch": []})[
                        "match" if m else "mismatch"].append(bool(ok))
    return {c: {r: {k: {"n": len(v), "accuracy": sum(v) / len(v) if v else None} for k, v in halves.items()}
                for r, halves in roles.items()}
            for c, roles in sorted(cells.items(), key=lambda kv: (kv[0] == "all", kv[0]))}


def split_markdown(split: Dict[str, Dict[str, Any]], held_out: Sequence[str] = ()) -> str:
    """The split as one markdown table: a row per construction, per role the accuracy on the
    matching / mismatched half (n in parentheses)."""
    def cell(c):
        return "–" if not c["n"] else f"{100 * c['accuracy']:.1f}% ({c['n']})"
    lines = ["| construction | " + " | ".join(f"{r}: match | {r}: mismatch" for r in ROLES) + " |",
             "|---" * (1 + 2 * len(ROLES)) + "|"]
    for cons, roles in split.items():
        name = cons + (" (held out)" if cons in held_out else "")
        row = []
        for r in ROLES:
            h = roles.get(r)
            row += [cell(h["match"]), cell(h["mismatch"])] if h else ["–", "–"]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)
