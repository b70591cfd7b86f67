"""Reading agreement sentences: the paper's 5-column TSV (docs/method.md), and the grammar's 8-column one.

Columns (tab-separated, UTF-8, no header)::

    n_attractors  sentence  masked_sentence  good_verb  bad_verb  [subject  attractors  construction]

``masked_sentence`` has the verb replaced by the literal word ``***mask***`` (exactly once); the
sentence must be the masked sentence with ``good_verb`` put back. The three optional columns
are what :func:`graphengine.datasets.sva_grammar.write_tsv` adds: the subject's word index, the
attractors' word indices (comma-separated, ``-`` for none) and the construction's name. Word
indices count the whitespace-separated words of the sentence from 0.

Rows with ``good_verb == bad_verb`` (four in the natural data set, an inflection failure upstream)
are dropped and counted. Anything else malformed raises :class:`SVADataError` with one line naming
the file and line.

The number of the correct verb (:func:`verb_pair_number`) is read off the verb pair: ``is/are``,
``was/were``, ``has/have``, ``does/do``, otherwise the form that is the other plus ``s``/``es``
(or ``-ies`` for ``-y``) is the singular. All 7,485 usable rows of the natural data set are
classified by this rule.

>>> import io, tempfile, os
>>> text = "1\\tthe keys to the cabinet are here .\\tthe keys to the cabinet ***mask*** here .\\tare\\tis\\n"
>>> with tempfile.TemporaryDirectory() as d:
...     p = os.path.join(d, "a.tsv"); _ = open(p, "w").write(text)
...     data = read_tsv(p)
>>> it = data.items[0]
>>> it.mask_index, it.good, it.good_number, it.subject
(5, 'are', 1, None)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ...errors import GraphEngineError

__all__ = ["SVADataError", "SVAItem", "SVAData", "read_tsv", "verb_pair_number", "MASK_WORD"]

MASK_WORD = "***mask***"
_IRREGULAR = {"is": 0, "are": 1, "was": 0, "were": 1, "has": 0, "have": 1, "does": 0, "do": 1}


class SVADataError(GraphEngineError):
    """An agreement data file is missing or malformed."""


def verb_pair_number(good: str, bad: str) -> Optional[int]:
    """0 if ``good`` is the singular of the pair, 1 if plural, None if the rule cannot tell.

    >>> verb_pair_number("includes", "include"), verb_pair_number("carry", "carries"), verb_pair_number("go", "go")
    (0, 1, None)
    """
    if good in _IRREGULAR and bad in _IRREGULAR and _IRREGULAR[good] != _IRREGULAR[bad]:
        return _IRREGULAR[good]

    def singular_of(s: str, p: str) -> bool:
        return s in (p + "s", p + "es") or (s.endswith("ies") and p.endswith("y") and s[:-3] == p[:-1])

    if singular_of(good, bad):
        return 0
    if singular_of(bad, good):
        return 1
    return None


@dataclass(frozen=True)
class SVAItem:
    """One sentence. ``row``: 0-based line number in the file (the item's id); ``words``: the
    sentence's words with the verb; ``mask_index``: the verb's word index; ``good_number``: 0/1
    from :func:`verb_pair_number` (None if undecided); ``subject``, ``attractors``,
    ``construction``: from the optional columns (None when absent)."""

    row: int
    n_attractors: int
    words: Tuple[str, ...]
    mask_index: int
    good: str
    bad: str
    good_number: Optional[int]
    subject: Optional[int] = None
    attractors: Optional[Tuple[int, ...]] = None
    construction: Optional[str] = None

    @property
    def has_roles(self) -> bool:
        return self.subject is not None

    def masked_words(self, mask_token: str = MASK_WORD) -> List[str]:
        w = list(self.words)
        w[self.mask_index] = mask_token
        return w


@dataclass
class SVAData:
    """Items of one file plus what was dropped."""

    path: str
    items: List[SVAItem]
    dropped_same_verb: List[int]  # rows with good == bad
    n_columns: int

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_roles(self) -> bool:
        return self.n_columns == 8


def _int(text: str, what: str, where: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise SVADataError(f"{where}: {what} must be an integer, got {text!r}") from None
    if v < 0:
        raise SVADataError(f"{where}: {what} must be >= 0, got {v}")
    return v


def _parse(cols: List[str], row: int, where: str) -> Optional[SVAItem]:
    n_att = _int(cols[0], "n_attractors (column 1)", where)
    sentence, masked, good, bad = cols[1], cols[2], cols[3], cols[4]
    if not good or not bad or " " in good or " " in bad:
        raise SVADataError(f"{where}: good_verb and bad_verb (columns 4, 5) must be single words, "
                           f"got {good!r} and {bad!r}")
    mwords = masked.split(" ")
    if mwords.count(MASK_WORD) != 1:
        raise SVADataError(f"{where}: the masked sentence (column 3) must contain {MASK_WORD} exactly once, "
                           f"found it {mwords.count(MASK_WORD)} times")
    m = mwords.index(MASK_WORD)
    words = tuple(good if i == m else w for i, w in enumerate(mwords))
    if " ".join(words) != sentence:
        raise SVADataError(f"{where}: the sentence (column 2) is not the masked sentence with the good verb "
                           f"{good!r} put back")
    if good == bad:
        return None
    subject = attractors = construction = None
    if len(cols) == 8:
        subject = _int(cols[5], "subject (column 6)", where)
        attractors = () if cols[6] == "-" else tuple(_int(a, "an attractor index (column 7)", where)
                                                       for a in cols[6].split(","))
        construction = cols[7] or None
        if not subject < m:
            raise SVADataError(f"{where}: subject index {subject} is not before the verb (word {m})")
        bad_att = [a for a in attractors if not subject < a < m]
        if bad_att:
            raise SVADataError(f"{where}: attractor indices {bad_att} are not between the subject ({subject}) "
                               f"and the verb ({m})")
        if len(attractors) != n_att:
            raise SVADataError(f"{where}: {len(attractors)} attractor indices but n_attractors is {n_att}")
    return SVAItem(row, n_att, words, m, good, bad, verb_pair_number(good, bad), subject, attractors, construction)


def read_tsv(path: str, limit: Optional[int] = None) -> SVAData:
    """Read an agreement file (see the module docstring); ``limit`` keeps the first ``limit``
    usable rows."""
    path = os.fspath(path)
    if limit is not None and limit < 1:
        raise SVADataError(f"limit must be >= 1, got {limit}")
    try:
        f = open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise SVADataError(f"{path}: no such file") from None
    except OSError as e:
        raise SVADataError(f"{path}: cannot open ({e.strerror or e})") from None
    items: List[SVAItem] = []
    dropped: List[int] = []
    n_cols = None
    with f:
        try:
            for row, line in enumerate(f):
                where = f"{path}:{row + 1}"
                line = line.rstrip("\r\n")
                if not line.strip():
                    raise SVADataError(f"{where}: empty line")
                cols = line.split("\t")
                if len(cols) not in (5, 8):
                    raise SVADataError(f"{where}: expected 5 tab-separated columns (n_attractors, sentence, "
                                       f"masked_sentence, good_verb, bad_verb) or 8 (plus subject, attractors, "
                                       f"construction), got {len(cols)}")
                if n_cols is None:
                    n_cols = len(cols)
                elif len(cols) != n_cols:
                    raise SVADataError(f"{where}: {len(cols)} columns, but earlier lines have {n_cols}")
                item = _parse(cols, row, where)
                if item is None:
                    dropped.append(row)
                    continue
                items.append(item)
                if limit is not None and len(items) >= limit:
                    break
        except UnicodeDecodeError as e:
            raise SVADataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not items:
        raise SVADataError(f"{path}: no usable rows")
    return SVAData(path, items, dropped, n_cols or 5)
