"""A subject–verb agreement grammar (Du et al. (2023) §4 on data we can make): English-like sentences
with singular and plural nouns and verbs (one word each), the exact positions of the subject,
the attractors and the target verb, and whole constructions held out for testing.

Every sentence is lower-case words separated by single spaces and ends in ``.``. The *target
verb* is the verb whose number is to be predicted; it agrees with the *subject* (the head noun
of its clause). *Attractors* are the nouns strictly between subject and target verb whose number
differs from the subject's (the definition of Linzen et al. 2016 used by the paper's data).
Every noun is preceded by ``the``, so number is marked only on nouns and verbs.

Constructions (``m`` = nouns between subject and target verb, 0–4; ``PP`` = ``P the N``;
``VP`` = the target verb phrase, see below):

=============  ==========================================================  ==============
name           shape                                                       example
=============  ==========================================================  ==============
simple         the S VP .                                                  the pilot laughs .
pp             the S PP×m VP .  (m ≥ 1)                                    the pilot near the guards laughs .
subj_rel       the S that V(S) the N PP×(m−1) VP .  (m ≥ 1)               the pilot that likes the guards laughs .
obj_rel        the S that the N PP×(m−1) V(N) VP .  (m ≥ 1)               the pilot that the guards like laughs .
sent_comp      the N0 V_say(N0) that the S PP×m VP .                       the men say that the pilot laughs .
coord          the S PP×k V(S) the N PP×j and VP .  (m = k + 1 + j)        the pilot likes the guards and laughs .
=============  ==========================================================  ==============

``V(X)`` is a transitive verb agreeing with X, ``V_say`` a clause-embedding verb. The VP is an
intransitive verb (``laughs``), a copula and an adjective (``is happy``), a transitive verb and
an object (``likes the guard``), or a clause-embedding verb used alone (``thinks``); its first
word is the target verb. In ``sent_comp`` the matrix subject N0 precedes the subject, so it is
not an attractor even when its number differs.

By default ``obj_rel`` and ``sent_comp`` are *held out*: no training or validation sentence has
them, half of the test split does (``meta["held_out"]``). Every word they use occurs in the
other constructions (``that`` as a relative pronoun, clause-embedding verbs as VPs), so a
held-out sentence is new in structure only.

Sampling (one ``numpy.random.default_rng(seed)`` stream, in a fixed order): the number of
attractors is uniform over ``0..max_attractors`` for validation and test, and decays
geometrically for training (``train_attractor_decay``, see :func:`sva_grammar`); the construction uniform among those that can
have that many (``simple`` only 0); ``m`` uniform over ``max(a, 1)..4`` (``sent_comp``:
``a..4``); which of the ``m`` nouns are attractors uniform; every other choice (words, numbers
of nouns that are neither subject nor between) uniform. Validation and test sentences that
occur in the training split are redrawn (up to 50 times; ``info["duplicates_kept"]`` counts
those kept).

``x`` holds word ids (no special tokens; padding 0); ``y`` the subject's number (0 singular, 1
plural); ``meta``: ``length``, ``subject``, ``verb`` (word indices), ``attractors`` ([n, 4],
−1 padded), ``n_attractors``, ``construction`` (index into ``info["constructions"]``),
``held_out`` (bool), ``good`` / ``bad`` (word ids of the agreeing / disagreeing verb form),
``matrix_subject`` (``sent_comp``'s N0, else −1). ``info["vocab"]`` lists the words by id.

>>> d = sva_grammar(seed=0, sizes=(40, 10, 20))
>>> d.sizes, d.info["held_out"]
((40, 10, 20), ['obj_rel', 'sent_comp'])
>>> words = sentence_words(d.train, 0, d.info["vocab"])
>>> words[-1], bool(d.train.meta["verb"][0] < len(words))
('.', True)
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .base import DatasetError, Split, Splits
from .registry import DATASETS, DatasetSpec

__all__ = ["sva_grammar", "CONSTRUCTIONS", "NOUNS", "TRANSITIVE", "INTRANSITIVE", "COPULA", "EMBEDDING",
           "ADJECTIVES", "PREPOSITIONS", "SPECIAL_TOKENS", "VOCAB", "sentence_words", "tsv_rows", "write_tsv",
           "noun_number", "verb_number"]

NOUNS: Tuple[Tuple[str, str], ...] = (
    ("author", "authors"), ("pilot", "pilots"), ("surgeon", "surgeons"), ("farmer", "farmers"),
    ("manager", "managers"), ("customer", "customers"), ("officer", "officers"), ("teacher", "teachers"),
    ("senator", "senators"), ("dancer", "dancers"), ("guard", "guards"), ("painter", "painters"),
    ("student", "students"), ("minister", "ministers"), ("man", "men"), ("woman", "women"),
    ("child", "children"))
INTRANSITIVE = (("laughs", "laugh"), ("smiles", "smile"), ("swims", "swim"), ("sleeps", "sleep"),
                ("waits", "wait"), ("leaves", "leave"), ("runs", "run"))
TRANSITIVE = (("likes", "like"), ("admires", "admire"), ("hates", "hate"), ("loves", "love"),
              ("meets", "meet"), ("sees", "see"), ("helps", "help"), ("thanks", "thank"))
COPULA = (("is", "are"),)
EMBEDDING = (("says", "say"), ("thinks", "think"), ("believes", "believe"), ("hopes", "hope"))
ADJECTIVES = ("happy", "tired", "young", "old", "tall")
PREPOSITIONS = ("near", "behind", "beside", "with", "from")
FUNCTION_WORDS = ("the", "that", "and", ".")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CONSTRUCTIONS = ("simple", "pp", "subj_rel", "obj_rel", "sent_comp", "coord")
DEFAULT_HELD_OUT = ("obj_rel", "sent_comp")
MAX_SPAN = 4  # nouns between subject and target verb, at most


def _vocab() -> Tuple[str, ...]:
    words = list(SPECIAL_TOKENS) + list(FUNCTION_WORDS)
    for pairs in (NOUNS, INTRANSITIVE, TRANSITIVE, COPULA, EMBEDDING):
        for sg, pl in pairs:
            words += [sg, pl]
    words += list(ADJECTIVES) + list(PREPOSITIONS)
    return tuple(words)


#: Every word by id: id 0 is ``[PAD]``, then ``[UNK] [CLS] [SEP] [MASK]``, then the words.
VOCAB: Tuple[str, ...] = _vocab()
_NOUN_NUMBER = {w: k for pair in NOUNS for k, w in enumerate(pair)}
_VERB_PAIRS = {w: (pair, k) for pairs in (INTRANSITIVE, TRANSITIVE, COPULA, EMBEDDING)
               for pair in pairs for k, w in enumerate(pair)}


def noun_number(word: str) -> Optional[int]:
    """0 singular, 1 plural, None if ``word`` is not one of the grammar's nouns.

    >>> noun_number("children"), noun_number("near")
    (1, None)
    """
    return _NOUN_NUMBER.get(word)


def verb_number(word: str) -> Optional[int]:
    """0 singular, 1 plural, None if ``word`` is not one of the grammar's verbs.

    >>> verb_number("are"), verb_number("laughs")
    (1, 0)
    """
    hit = _VERB_PAIRS.get(word)
    return None if hit is None else hit[1]


# ------------------------------------------------------------------ one sentence
class _Builder:
    """Accumulates words and the positions of nouns (with their numbers) of one sentence."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.words, self.nouns = rng, [], []

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def np_(self, number: int) -> int:
        self.words.append("the")
        self.words.append(self.pick(NOUNS)[number])
        self.nouns.append(len(self.words) - 1)
        return len(self.words) - 1

    def pp(self, number: int) -> int:
        self.words.append(self.pick(PREPOSITIONS))
        return self.np_(number)

    def verb(self, pairs, number: int) -> int:
        self.words.append(self.pick(pairs)[number])
        return len(self.words) - 1

    def vp(self, number: int) -> Tuple[int, Tuple[str, str]]:
        """The target VP; returns the verb's index and its (good, bad) forms."""
        kind = int(self.rng.integers(4))
        pairs = (INTRANSITIVE, COPULA, TRANSITIVE, EMBEDDING)[kind]
        pair = self.pick(pairs)
        self.words.append(pair[number])
        v = len(self.words) - 1
        if kind == 1:
            self.words.append(self.pick(ADJECTIVES))
        elif kind == 2:
            self.np_(int(self.rng.integers(2)))
        return v, (pair[number], pair[1 - number])


def _span_numbers(rng, m: int, a: int, subj: int) -> List[int]:
    """Numbers of the ``m`` nouns between subject and verb, ``a`` of them opposite to ``subj``."""
    opposite = set(rng.choice(m, size=a, replace=False).tolist()) if a else set()
    return [1 - subj if i in opposite else subj for i in range(m)]


def _sentence(rng: np.random.Generator, construction: str, a: int) -> Dict:
    b = _Builder(rng)
    subj_num = int(rng.integers(2))
    lo = a if construction == "sent_comp" else max(a, 1)
    m = 0 if construction == "simple" else int(rng.integers(lo, MAX_SPAN + 1))
    span = _span_numbers(rng, m, a, subj_num)
    matrix = -1
    if construction == "simple":
        s = b.np_(subj_num)
    elif construction == "pp":
        s = b.np_(subj_num)
        for n in span:
            b.pp(n)
    elif construction == "subj_rel":
        s = b.np_(subj_num)
        b.words.append("that")
        b.verb(TRANSITIVE, subj_num)
        b.np_(span[0])
        for n in span[1:]:
            b.pp(n)
    elif construction == "obj_rel":
        s = b.np_(subj_num)
        b.words.append("that")
        b.np_(span[0])
        for n in span[1:]:
            b.pp(n)
        b.verb(TRANSITIVE, span[0])
    elif construction == "sent_comp":
        n0 = int(rng.integers(2))
        matrix = b.np_(n0)
        b.verb(EMBEDDING, n0)
        b.words.append("that")
        s = b.np_(subj_num)
        for n in span:
            b.pp(n)
    elif construction == "coord":
        k = int(rng.integers(m))  # PPs on the subject; the object and its PPs take the rest
        s = b.np_(subj_num)
        for n in span[:k]:
            b.pp(n)
        b.verb(TRANSITIVE, subj_num)
        b.np_(span[k])
        for n in span[k + 1:]:
            b.pp(n)
        b.words.append("and")
    else:  # pragma: no cover - guarded by the caller
        raise DatasetError(f"unknown construction {construction!r}")
    v, (good, bad) = b.vp(subj_num)
    b.words.append(".")
    between = [i for i in b.nouns if s < i < v]
    attractors = [i for i in between if noun_number(b.words[i]) != subj_num]
    assert len(between) == m and len(attractors) == a, (construction, b.words)
    return {"words": b.words, "subject": s, "verb": v, "attractors": attractors, "number": subj_num,
            "good": good, "bad": bad, "construction": construction, "matrix_subject": matrix}


def _draw(rng, constructions: Sequence[str], max_attractors: int, decay: Optional[float] = None) -> Dict:
    if decay is None:
        a = int(rng.integers(max_attractors + 1))
    else:
        p = decay ** np.arange(max_attractors + 1)
        a = int(rng.choice(max_attractors + 1, p=p / p.sum()))
    allowed = [c for c in constructions if (c != "simple" or a == 0)]
    if not allowed:
        allowed = [c for c in constructions]
        a = 0
    return _sentence(rng, allowed[int(rng.integers(len(allowed)))], a)


# ------------------------------------------------------------------ data set
def _check_args(seed, sizes, max_attractors, held_out, held_out_fraction):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"seed must be an integer >= 0, got {seed!r}")
    if not isinstance(sizes, (tuple, list)) or len(sizes) != 3 or any(
            isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise DatasetError(f"sizes must be three positive split sizes (train, val, test), got {sizes!r}")
    if isinstance(max_attractors, bool) or not isinstance(max_attractors, (int, np.integer)) \
            or not 0 <= max_attractors <= MAX_SPAN:
        raise DatasetError(f"max_attractors must be an integer in 0..{MAX_SPAN}, got {max_attractors!r}")
    held = tuple(held_out)
    unknown = [c for c in held if c not in CONSTRUCTIONS]
    if unknown:
        raise DatasetError(f"held_out names unknown construction(s) {unknown} (known: {', '.join(CONSTRUCTIONS)})")
    if set(held) >= set(CONSTRUCTIONS) - {"simple"}:
        raise DatasetError("held_out leaves no construction with attractors for training")
    if not 0.0 <= float(held_out_fraction) <= 1.0:
        raise DatasetError(f"held_out_fraction must be in [0, 1], got {held_out_fraction!r}")
    return int(seed), tuple(int(s) for s in sizes), int(max_attractors), held


def _to_split(sents: List[Dict], held: Sequence[bool], width: int) -> Split:
    ids = {w: i for i, w in enumerate(VOCAB)}
    n = len(sents)
    x = np.zeros((n, width), np.int64)
    att = np.full((n, MAX_SPAN), -1, np.int64)
    for i, s in enumerate(sents):
        x[i, :len(s["words"])] = [ids[w] for w in s["words"]]
        att[i, :len(s["attractors"])] = s["attractors"]
    col = lambda k, dt=np.int64: np.array([s[k] for s in sents], dt)  # noqa: E731
    meta = {"length": np.array([len(s["words"]) for s in sents], np.int64), "subject": col("subject"),
            "verb": col("verb"), "attractors": att,
            "n_attractors": np.array([len(s["attractors"]) for s in sents], np.int64),
            "construction": np.array([CONSTRUCTIONS.index(s["construction"]) for s in sents], np.int64),
            "held_out": np.array(held, bool), "good": np.array([ids[s["good"]] for s in sents], np.int64),
            "bad": np.array([ids[s["bad"]] for s in sents], np.int64), "matrix_subject": col("matrix_subject")}
    return Split(x, col("number"), meta)


def sva_grammar(seed: int = 0, sizes: Sequence[int] = (20000, 2000, 4000), max_attractors: int = 4,
                held_out: Sequence[str] = DEFAULT_HELD_OUT, held_out_fraction: float = 0.5,
                train_attractor_decay: Optional[float] = 0.5) -> Splits:
    """Generate the agreement data set (see the module docstring); deterministic in ``seed``.

    ``train_attractor_decay``: training sentences draw their attractor count with probability
    ∝ ``decay**a`` (0.5: 52% / 26% / 13% / 6% / 3% for 0..4, closer to natural text, where most
    dependencies have no attractor); ``None`` draws it uniformly as for val and test.

    ``held_out``: constructions never in train/val; ``held_out_fraction`` of the test split
    (rounded down) is drawn from them, the rest from the other constructions.
    """
    seed, sizes, max_attractors, held = _check_args(seed, sizes, max_attractors, held_out, held_out_fraction)
    if train_attractor_decay is not None and not 0.0 < float(train_attractor_decay) <= 1.0:
        raise DatasetError(f"train_attractor_decay must be in (0, 1] or None, got {train_attractor_decay!r}")
    rng = np.random.default_rng(seed)
    seen = [c for c in CONSTRUCTIONS if c not in held]
    train = [_draw(rng, seen, max_attractors, train_attractor_decay) for _ in range(sizes[0])]
    train_set = {" ".join(s["words"]) for s in train}
    kept = 0

    def fresh(constructions):
        nonlocal kept
        for _ in range(50):
            s = _draw(rng, constructions, max_attractors)
            if " ".join(s["words"]) not in train_set:
                return s
        kept += 1
        return s

    val = [fresh(seen) for _ in range(sizes[1])]
    n_held = int(sizes[2] * float(held_out_fraction)) if held else 0
    test = [fresh(seen) for _ in range(sizes[2] - n_held)] + [fresh(list(held)) for _ in range(n_held)]
    test_held = [False] * (sizes[2] - n_held) + [True] * n_held
    order = rng.permutation(len(test))
    test, test_held = [test[i] for i in order], [test_held[i] for i in order]
    width = max(len(s["words"]) for s in train + val + test)
    info = {"source": "Du et al. (2023) §4 (grammar standing in for the natural sentences)", "seed": seed,
            "sizes": list(sizes), "max_attractors": max_attractors, "held_out": list(held),
            "held_out_fraction": float(held_out_fraction), "train_attractor_decay": train_attractor_decay,
            "constructions": list(CONSTRUCTIONS),
            "vocab": list(VOCAB), "duplicates_kept": kept,
            "description": "subject-verb agreement grammar: PPs, subject/object relative clauses, sentential "
                           "complements, VP coordination, 0-4 attractors; y = the subject's number"}
    return Splits("sva_grammar", 2, _to_split(train, [False] * len(train), width),
                  _to_split(val, [False] * len(val), width), _to_split(test, test_held, width), info=info)


# ------------------------------------------------------------------ views and TSV
def sentence_words(split: Split, i: int, vocab: Sequence[str] = VOCAB) -> List[str]:
    """The words of example ``i``."""
    n = int(split.meta["length"][i])
    return [vocab[int(t)] for t in split.x[i, :n]]


def tsv_rows(split: Split, vocab: Sequence[str] = VOCAB) -> List[List[str]]:
    """Rows of the grammar's TSV: the five columns of Du et al. (2023) §4 (``n_attractors``, sentence,
    masked sentence with ``***mask***``, good verb, bad verb) then ``subject`` (word index),
    ``attractors`` (comma-separated word indices, ``-`` if none) and ``construction``."""
    rows = []
    for i in range(len(split)):
        words = sentence_words(split, i, vocab)
        v = int(split.meta["verb"][i])
        masked = words[:v] + ["***mask***"] + words[v + 1:]
        att = [int(a) for a in split.meta["attractors"][i] if a >= 0]
        rows.append([str(len(att)), " ".join(words), " ".join(masked), vocab[int(split.meta["good"][i])],
                     vocab[int(split.meta["bad"][i])], str(int(split.meta["subject"][i])),
                     ",".join(map(str, att)) or "-", CONSTRUCTIONS[int(split.meta["construction"][i])]])
    return rows


def write_tsv(split: Split, path: str, vocab: Sequence[str] = VOCAB) -> int:
    """Write :func:`tsv_rows` to ``path`` (UTF-8, no header); returns the number of rows."""
    rows = tsv_rows(split, vocab)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write("\t".join(r) + "\n")
    return len(rows)


DATASETS["sva_grammar"] = DatasetSpec(sva_grammar, None, "§4")
