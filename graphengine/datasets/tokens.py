"""Generators for the paper's synthetic token tasks and for FFOOM (Du et al. (2023) §3, §5, §6).

Every generator is a plain function of keyword arguments, deterministic in ``seed`` (one
``numpy.random.default_rng(seed)`` stream, drawn in a fixed order), and returns a
:class:`~graphengine.datasets.base.Splits`. Token ids are uniform over ``1 .. vocab_size-1``
(id 0 is padding and never drawn), so ``vocab_size=20`` means ids 1–19 as in the paper.

Unless stated otherwise a generator builds one pool of ``sum(sizes)`` examples with an exactly
balanced label distribution (the first ``n // 2`` examples positive for the binary tasks), shuffles
the pool with one permutation and cuts it into consecutive train / val / test parts — what the
authors' code did (a balanced pool, then a random split), so each split is balanced only up to
sampling noise (the paper's FirstTokenRepeatedOnce validation set has 476 positives of 1,000).
Where the paper does not say how the examples of a class are drawn, the construction follows the
authors' generator and is stated in the function's docstring.

>>> d = first_token_repeated_once(seed=0)
>>> d.sizes, d.train.x.shape, d.train.x.dtype.name
((7000, 1000, 2000), (7000, 10), 'int64')
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from .base import DatasetError, Split, Splits, shuffle_and_split, uniform_tokens, uniform_tokens_except

__all__ = ["first_token_repeated_once", "contains_1", "first_token_repeated_immediately",
           "first_token_repeated_last", "adjacent_duplicate", "contains_token_set", "contains_token_set_ood",
           "bin_count_ones", "ffoom", "first_token_roles", "SECTION5_SIZES"]

SECTION5_SIZES = (3600, 360, 360)
_S5 = dict(sizes=SECTION5_SIZES, length=36, vocab_size=60)


# ------------------------------------------------------------------ argument checks
def _int(name: str, value, low: int, high: Optional[int] = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DatasetError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise DatasetError(f"{name} must be {bound}, got {value}")
    return int(value)


def _sizes(sizes) -> Tuple[int, int, int]:
    if not isinstance(sizes, (tuple, list)) or len(sizes) != 3:
        raise DatasetError(f"sizes must be three split sizes (train, val, test), got {sizes!r}")
    return tuple(_int(f"sizes[{i}]", s, 1) for i, s in enumerate(sizes))


def _common(seed, sizes, length, vocab_size, min_length: int = 2):
    return (_int("seed", seed, 0), _sizes(sizes), _int("length", length, min_length), _int("vocab_size", vocab_size, 3))


def _info(section: str, seed: int, sizes, description: str, **params) -> Dict:
    return {"source": f"Du et al. (2023) {section}", "seed": seed, "sizes": list(sizes), "description": description,
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}}


def _binary_pool(rng, n: int, make_pos, make_neg, sizes, name: str, num_classes: int, info: Dict) -> Splits:
    """Positives first (``n // 2``), then negatives; each maker returns ``(x, meta)``."""
    n_pos = n // 2
    xp, mp = make_pos(n_pos)
    xn, mn = make_neg(n - n_pos)
    y = np.concatenate([np.ones(n_pos, np.int64), np.zeros(n - n_pos, np.int64)])
    meta = {k: np.concatenate([mp[k], mn[k]]) for k in mp}
    return Splits(name, num_classes, *shuffle_and_split(rng, np.concatenate([xp, xn]), y, meta, sizes), info=info)


def _reject(rng, n: int, draw, bad) -> np.ndarray:
    """``n`` rows of ``draw(m)`` for which ``bad`` is false, drawn in batches (rejection sampling)."""
    out, have = [], 0
    while have < n:
        cand = draw(max(2 * (n - have), 64))
        keep = cand[~bad(cand)][: n - have]
        out.append(keep)
        have += len(keep)
    return np.concatenate(out)


# ------------------------------------------------------------------ §3 (§5.1 of the paper)
def first_token_repeated_once(seed: int = 0, sizes=(7000, 1000, 2000), length: int = 10,
                              vocab_size: int = 20) -> Splits:
    """FirstTokenRepeatedOnce (Du et al. (2023) §3): label 1 iff the first token occurs again.

    Every example: ``x[0]`` uniform over 1..V-1. Label 1 (half of the pool): ``x[0]`` appears
    exactly once more, at a position uniform over ``1 .. length-1``; every other position is
    uniform over the vocabulary minus ``x[0]``. Label 0: positions ``1 .. length-1`` uniform over
    the vocabulary minus ``x[0]``. ``meta["repeat_position"]`` is the later occurrence (-1 for
    label 0). Defaults: 10,000 points, 7,000 / 1,000 / 2,000, length 10, ids 1–19, seed 0.

    >>> d = first_token_repeated_once(seed=0, sizes=(6, 2, 2))
    >>> x, y, rep = d.train.x, d.train.y, d.train.meta["repeat_position"]
    >>> bool(all((x[i] == x[i, 0]).sum() == 1 + y[i] for i in range(6)))
    True
    >>> bool(all(rep[i] == -1 if y[i] == 0 else x[i, rep[i]] == x[i, 0] for i in range(6)))
    True
    """
    seed, sizes, length, V = _common(seed, sizes, length, vocab_size)
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    first = uniform_tokens(rng, V, n)
    x = np.empty((n, length), np.int64)
    x[:, 0] = first
    x[:, 1:] = uniform_tokens_except(rng, V, first[:, None], (n, length - 1))
    n_pos = n // 2
    rep = np.full(n, -1, np.int64)
    rep[:n_pos] = rng.integers(1, length, n_pos)
    x[np.arange(n_pos), rep[:n_pos]] = first[:n_pos]
    y = (np.arange(n) < n_pos).astype(np.int64)
    info = _info("§3", seed, sizes, "label 1 iff the first token appears exactly once more (at a uniform "
                 "position 1..length-1); all other tokens differ from the first", length=length, vocab_size=V)
    return Splits("first_token_repeated_once", 2, *shuffle_and_split(rng, x, y, {"repeat_position": rep}, sizes),
                  info=info)


def first_token_roles(split: Split) -> Dict[str, np.ndarray]:
    """Boolean masks [n, length] of the token groups of Du et al. (2023) §3 for a FirstTokenRepeatedOnce
    split: ``FirstToken`` (position 0), ``RepeatToken`` (the later occurrence, label-1 examples
    only) and ``OtherToken`` (the rest) — ready for ``kqv_summary(..., subsets=...)``.

    >>> d = first_token_repeated_once(seed=0, sizes=(4, 2, 2))
    >>> roles = first_token_roles(d.train)
    >>> [int(m.sum()) for m in roles.values()] == [4, int(d.train.y.sum()), 4 * 9 - int(d.train.y.sum())]
    True
    """
    if "repeat_position" not in split.meta:
        raise DatasetError("first_token_roles needs a FirstTokenRepeatedOnce split (meta 'repeat_position')")
    n, length = split.x.shape
    pos = np.arange(length)[None, :]
    first = np.broadcast_to(pos == 0, (n, length)).copy()
    rep = split.meta["repeat_position"][:, None]
    repeat = (pos == rep) & (rep > 0)
    return {"FirstToken": first, "RepeatToken": repeat, "OtherToken": ~first & ~repeat}


# ------------------------------------------------------------------ §5 (§5.3 of the paper)
def contains_1(seed: int = 0, sizes=SECTION5_SIZES, length: int = 36, vocab_size: int = 60) -> Splits:
    """Contains1: label 1 iff token 1 occurs.

    Positives: all positions uniform over 1..V-1, then one position (uniform) set to 1 (so
    at least one 1; the authors' generator: a 1 plus ``length-1`` uniform tokens, permuted — the
    same distribution). Negatives: every position uniform over the vocabulary minus 1.

    >>> d = contains_1(seed=0, sizes=(8, 2, 2))
    >>> bool(((d.train.x == 1).any(axis=1) == d.train.y.astype(bool)).all())
    True
    """
    seed, sizes, length, V = _common(seed, sizes, length, vocab_size, 1)
    rng = np.random.default_rng(seed)

    def pos(m):
        x = uniform_tokens(rng, V, (m, length))
        x[np.arange(m), rng.integers(0, length, m)] = 1
        return x, {}

    def neg(m):
        return uniform_tokens_except(rng, V, 1, (m, length)), {}

    info = _info("§5", seed, sizes, "label 1 iff token 1 occurs", length=length, vocab_size=V)
    return _binary_pool(rng, sum(sizes), pos, neg, sizes, "contains_1", 2, info)


def first_token_repeated_immediately(seed: int = 0, sizes=SECTION5_SIZES, length: int = 36,
                                     vocab_size: int = 60) -> Splits:
    """FirstTokenRepeatedImmediately: label 1 iff ``x[1] == x[0]``.

    ``x[0]`` uniform. Positives: ``x[1] = x[0]``, positions 2.. uniform over the vocabulary minus
    ``x[0]``. Negatives: ``x[1]`` uniform over the vocabulary minus ``x[0]``, positions 2..
    uniform over the whole vocabulary. (the paper gives only the rule; the class-conditional
    distributions are the authors' generator's, including its asymmetry: only negatives may
    contain ``x[0]`` again after position 1.)

    >>> d = first_token_repeated_immediately(seed=0, sizes=(8, 2, 2))
    >>> bool(((d.train.x[:, 1] == d.train.x[:, 0]) == d.train.y.astype(bool)).all())
    True
    """
    seed, sizes, length, V = _common(seed, sizes, length, vocab_size)
    rng = np.random.default_rng(seed)

    def pos(m):
        x = np.empty((m, length), np.int64)
        x[:, 0] = x[:, 1] = uniform_tokens(rng, V, m)
        x[:, 2:] = uniform_tokens_except(rng, V, x[:, :1], (m, length - 2))
        return x, {}

    def neg(m):
        x = np.empty((m, length), np.int64)
        x[:, 0] = uniform_tokens(rng, V, m)
        x[:, 1] = uniform_tokens_except(rng, V, x[:, 0], m)
        x[:, 2:] = uniform_tokens(rng, V, (m, length - 2))
        return x, {}

    info = _info("§5", seed, sizes, "label 1 iff x[1] == x[0]", length=length, vocab_size=V)
    return _binary_pool(rng, sum(sizes), pos, neg, sizes, "first_token_repeated_immediately", 2, info)


def first_token_repeated_last(seed: int = 0, sizes=SECTION5_SIZES, length: int = 36, vocab_size: int = 60) -> Splits:
    """FirstTokenRepeatedLast: label 1 iff ``x[-1] == x[0]``.

    ``x[0]`` and positions ``1 .. length-2`` uniform over the whole vocabulary (repeats of
    ``x[0]`` allowed there); positives ``x[-1] = x[0]``, negatives ``x[-1]`` uniform over the
    vocabulary minus ``x[0]`` (the authors' construction).

    >>> d = first_token_repeated_last(seed=0, sizes=(8, 2, 2))
    >>> bool(((d.train.x[:, -1] == d.train.x[:, 0]) == d.train.y.astype(bool)).all())
    True
    """
    seed, sizes, length, V = _common(seed, sizes, length, vocab_size)
    rng = np.random.default_rng(seed)

    def make(m, positive):
        x = uniform_tokens(rng, V, (m, length))
        x[:, -1] = x[:, 0] if positive else uniform_tokens_except(rng, V, x[:, 0], m)
        return x, {}

    info = _info("§5", seed, sizes, "label 1 iff x[-1] == x[0]", length=length, vocab_size=V)
    return _binary_pool(rng, sum(sizes), lambda m: make(m, True), lambda m: make(m, False), sizes,
                        "first_token_repeated_last", 2, info)


def _has_adjacent_duplicate(x: np.ndarray) -> np.ndarray:
    return (x[:, 1:] == x[:, :-1]).any(axis=1)


def adjacent_duplicate(seed: int = 0, sizes=SECTION5_SIZES, length: int = 36, vocab_size: int = 60) -> Splits:
    """AdjacentDuplicate: label 1 iff some ``x[i] == x[i+1]``.

    Positives: all positions uniform, then a position ``i`` uniform over ``0 .. length-2`` and a
    token uniform over the vocabulary, written at ``i`` and ``i+1`` (other duplicates may occur
    by chance). Negatives: uniform sequences drawn by rejection until one has no adjacent
    duplicate (the paper: "negatives by rejection").

    >>> d = adjacent_duplicate(seed=0, sizes=(8, 2, 2))
    >>> x = d.train.x
    >>> bool(((x[:, 1:] == x[:, :-1]).any(axis=1) == d.train.y.astype(bool)).all())
    True
    """
    seed, sizes, length, V = _common(seed, sizes, length, vocab_size)
    rng = np.random.default_rng(seed)

    def pos(m):
        x = uniform_tokens(rng, V, (m, length))
        i = rng.integers(0, length - 1, m)
        tok = uniform_tokens(rng, V, m)
        x[np.arange(m), i] = tok
        x[np.arange(m), i + 1] = tok
        return x, {}

    def neg(m):
        return _reject(rng, m, lambda k: uniform_tokens(rng, V, (k, length)), _has_adjacent_duplicate), {}

    info = _info("§5", seed, sizes, "label 1 iff two adjacent tokens are equal; negatives by rejection",
                 length=length, vocab_size=V)
    return _binary_pool(rng, sum(sizes), pos, neg, sizes, "adjacent_duplicate", 2, info)


def _n_missing(x: np.ndarray, k: int) -> np.ndarray:
    """How many of the tokens ``1..k`` do not occur in each row."""
    present = np.zeros((len(x), k + 1), bool)
    rows = np.repeat(np.arange(len(x)), x.shape[1])
    vals = x.ravel()
    sel = (vals >= 1) & (vals <= k)
    present[rows[sel], vals[sel]] = True
    return (k - present[:, 1:].sum(axis=1)).astype(np.int64)


def _check_k(k, length, V) -> int:
    return _int("k", k, 1, min(length, V - 1))


def contains_token_set(k: int = 5, seed: int = 0, sizes=SECTION5_SIZES, length: int = 36,
                       vocab_size: int = 60) -> Splits:
    """ContainsTokenSet(k): label 1 iff every token ``1..k`` occurs.

    Positives: the ``k`` set tokens plus ``length-k`` tokens uniform over the whole vocabulary,
    in a uniformly random order. Negatives: uniform sequences drawn by rejection until one
    misses at least one set token (the authors' construction). ``meta["n_missing"]`` counts the
    set tokens absent. The paper uses k ∈ {1, 5, 10, ..., 35}.

    >>> d = contains_token_set(3, seed=0, sizes=(8, 2, 2), length=6, vocab_size=8)
    >>> x, y = d.train.x, d.train.y
    >>> bool(all(set(range(1, 4)) <= set(x[i]) for i in range(8) if y[i] == 1))
    True
    """
    seed, sizes, length, V = _common(seed, sizes, length, vocab_size, 1)
    k = _check_k(k, length, V)
    rng = np.random.default_rng(seed)

    def pos(m):
        x = uniform_tokens(rng, V, (m, length))
        x[:, :k] = np.arange(1, k + 1)
        x = rng.permuted(x, axis=1)
        return x, {"n_missing": np.zeros(m, np.int64)}

    def neg(m):
        x = _reject(rng, m, lambda c: uniform_tokens(rng, V, (c, length)), lambda c: _n_missing(c, k) == 0)
        return x, {"n_missing": _n_missing(x, k)}

    info = _info("§5", seed, sizes, f"label 1 iff all of the tokens 1..{k} occur; negatives by rejection",
                 k=k, length=length, vocab_size=V)
    return _binary_pool(rng, sum(sizes), pos, neg, sizes, f"contains_token_set:{k}", 2, info)


def _with_overlap(rng, overlaps: np.ndarray, k: int, length: int, V: int) -> np.ndarray:
    """Rows containing exactly ``overlaps[i]`` of the set tokens ``1..k`` (a uniform choice of
    which), the other positions uniform over the vocabulary minus the set tokens left out."""
    x = np.empty((len(overlaps), length), np.int64)
    for i, m in enumerate(overlaps):
        chosen = rng.choice(np.arange(1, k + 1), size=m, replace=False)
        allowed = np.concatenate([chosen, np.arange(k + 1, V)])
        row = np.concatenate([chosen, rng.choice(allowed, size=length - m)])
        x[i] = rng.permutation(row)
    return x


def _ood_split(rng, n: int, k: int, length: int, V: int, max_overlap: int) -> Split:
    n_pos = n // 2
    allowed = np.arange(0, max_overlap + 1)
    neg_overlaps = rng.permutation(np.resize(allowed, n - n_pos))
    overlaps = np.concatenate([np.full(n_pos, k), neg_overlaps])
    x = _with_overlap(rng, overlaps, k, length, V)
    y = (overlaps == k).astype(np.int64)
    n_missing = (k - overlaps).astype(np.int64)
    order = rng.permutation(n)
    return Split(x[order], y[order], {"n_missing": n_missing[order], "ood": (n_missing[order] == 1)})


def contains_token_set_ood(k: int = 5, seed: int = 0, sizes=SECTION5_SIZES, length: int = 36,
                           vocab_size: int = 60) -> Splits:
    """ContainsTokenSetOOD(k): ContainsTokenSet(k) with an out-of-distribution evaluation.

    Each split is generated on its own and is exactly balanced (positives ``n // 2``).
    Positives contain all of ``1..k``. A negative first gets an overlap size — how many of
    the set tokens it contains — cycling through the allowed sizes (then shuffled, so the sizes
    are balanced up to one example): training negatives contain ``0 .. k-2`` of them (miss ≥ 2),
    validation and test negatives ``0 .. k-1`` (so some miss exactly one: the OOD case). The
    contained set tokens are a uniform choice, and the remaining positions are uniform over the
    vocabulary minus the set tokens left out (the authors' construction). ``meta["n_missing"]``
    and ``meta["ood"]`` (missing exactly one) describe each example. Needs ``k >= 2``.

    >>> d = contains_token_set_ood(3, seed=0, sizes=(12, 12, 12), length=6, vocab_size=8)
    >>> int(d.train.meta["n_missing"][d.train.y == 0].min()), int(d.test.meta["n_missing"][d.test.y == 0].min())
    (2, 1)
    """
    seed, sizes, length, V = _common(seed, sizes, length, vocab_size, 1)
    k = _check_k(k, length, V)
    if k < 2:
        raise DatasetError("contains_token_set_ood needs k >= 2 (training negatives must miss at least two set tokens)")
    rng = np.random.default_rng(seed)
    train = _ood_split(rng, sizes[0], k, length, V, k - 2)
    val = _ood_split(rng, sizes[1], k, length, V, k - 1)
    test = _ood_split(rng, sizes[2], k, length, V, k - 1)
    info = _info("§5", seed, sizes, f"label 1 iff all of the tokens 1..{k} occur; training negatives miss >= 2 "
                 "set tokens, validation/test negatives >= 1 (missing exactly 1 = out of distribution)",
                 k=k, length=length, vocab_size=V)
    return Splits(f"contains_token_set_ood:{k}", 2, train, val, test, info=info)


def bin_count_ones(num_classes: int = 2, seed: int = 0, sizes=SECTION5_SIZES, length: int = 36,
                   vocab_size: int = 60) -> Splits:
    """BinCountOnes(C): the count of token 1 (always ≥ 1) binned into C equal-width classes.

    With width ``w = length / C`` class ``c`` holds counts ``c·w + 1 .. (c+1)·w`` (so the label is
    ``(count - 1) // w``). The pool is exactly balanced: ``sum(sizes) / C`` examples per class
    (it must divide evenly; 4,320 does for every C of the paper). An example of class ``c``
    draws its count uniformly from the class's bin, puts that many 1s and fills the rest
    uniformly from the vocabulary minus 1, in a uniformly random order (the authors'
    construction). ``meta["count_ones"]`` is the count. C must divide ``length``; the paper uses
    C ∈ {2, 3, 4, 6, 9, 12, 18, 36}.

    >>> d = bin_count_ones(4, seed=0, sizes=(8, 4, 4), length=8, vocab_size=5)
    >>> c = (d.train.x == 1).sum(axis=1)
    >>> bool((c == d.train.meta["count_ones"]).all() and ((c - 1) // 2 == d.train.y).all())
    True
    """
    seed, sizes, length, V = _common(seed, sizes, length, vocab_size, 1)
    C = _int("num_classes", num_classes, 1, length)
    if length % C:
        raise DatasetError(f"bin_count_ones: num_classes {C} does not divide length {length}")
    n = sum(sizes)
    if n % C:
        raise DatasetError(f"bin_count_ones: num_classes {C} does not divide the {n} examples (sum of sizes)")
    rng = np.random.default_rng(seed)
    width = length // C
    y = np.repeat(np.arange(C, dtype=np.int64), n // C)
    count = y * width + rng.integers(1, width + 1, n)
    x = uniform_tokens_except(rng, V, 1, (n, length))
    x[np.arange(length)[None, :] < count[:, None]] = 1
    x = rng.permuted(x, axis=1)
    info = _info("§5", seed, sizes, f"label = bin of the count of token 1 (>= 1) among {C} equal-width bins "
                 f"over 1..{length}", num_classes=C, length=length, vocab_size=V)
    return Splits(f"bin_count_ones:{C}", C, *shuffle_and_split(rng, x, y, {"count_ones": count}, sizes), info=info)


# ------------------------------------------------------------------ §6 (appendix B.1)
def ffoom(seed: int = 0, sizes=(14000, 2000, 4000), num_features: int = 4) -> Splits:
    """FFOOM ("four features, only one matters", Du et al. (2023) §6): ``x ~ U[0,1)^4`` (float64),
    ``y = 1[x0 > 0.5]``; 20,000 points split 70/10/20. Labels are not balanced by construction.

    >>> d = ffoom(seed=0, sizes=(10, 5, 5))
    >>> d.train.x.dtype.name, bool(((d.train.x[:, 0] > 0.5) == d.train.y.astype(bool)).all())
    ('float64', True)
    """
    seed, sizes = _int("seed", seed, 0), _sizes(sizes)
    f = _int("num_features", num_features, 1)
    rng = np.random.default_rng(seed)
    x = rng.random((sum(sizes), f))
    y = (x[:, 0] > 0.5).astype(np.int64)
    a, b = sizes[0], sizes[0] + sizes[1]
    parts = [Split(x[s], y[s]) for s in (slice(0, a), slice(a, b), slice(b, None))]
    info = _info("§6", seed, sizes, "x ~ U[0,1)^4, y = 1[x0 > 0.5]", num_features=f)
    return Splits("ffoom", 2, *parts, info=info)
