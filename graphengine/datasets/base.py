"""Containers for generated data sets and the sampling helpers the generators share.

A data set is a :class:`Splits`: three :class:`Split` objects (train / val / test), each with
inputs ``x`` (int64 token ids ``[n, length]``, or float64 features for FFOOM), labels ``y``
(int64 ``[n]``) and per-example metadata arrays in ``meta`` (e.g. ``repeat_position``).

>>> import numpy as np
>>> s = Split(np.zeros((2, 3), np.int64), np.array([0, 1]), {"n_missing": np.array([1, 0])})
>>> len(s), s.label_counts(2)
(2, [1, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple

import numpy as np

from ..errors import GraphEngineError

__all__ = ["DatasetError", "Split", "Splits", "SPLIT_NAMES"]

SPLIT_NAMES = ("train", "val", "test")


class DatasetError(GraphEngineError):
    """A data set name, parameter or file is wrong."""


@dataclass(frozen=True)
class Split:
    """One split: inputs ``x``, labels ``y`` and per-example ``meta`` arrays (all length n)."""

    x: np.ndarray
    y: np.ndarray
    meta: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.y)
        if self.x.shape[0] != n or any(v.shape[0] != n for v in self.meta.values()):
            raise DatasetError(f"split arrays disagree in length: x {self.x.shape[0]}, y {n}, "
                               + ", ".join(f"{k} {v.shape[0]}" for k, v in self.meta.items()))

    def __len__(self) -> int:
        return len(self.y)

    def label_counts(self, num_classes: int) -> List[int]:
        return np.bincount(self.y, minlength=num_classes).tolist()

    def subset(self, index) -> "Split":
        """The examples at ``index`` (a slice, an index array or a boolean mask)."""
        return Split(self.x[index], self.y[index], {k: v[index] for k, v in self.meta.items()})


@dataclass(frozen=True)
class Splits:
    """A generated data set: ``train`` / ``val`` / ``test`` plus what made it.

    ``name`` is the registry name (``"contains_token_set:5"``), ``info`` a JSON-able dict with
    the generator parameters (``seed``, ``sizes``, ``length``, ``vocab_size`` ...), the
    section of the paper (Du et al., ACL 2023; docs/method.md) and a description of the construction.
    """

    name: str
    num_classes: int
    train: Split
    val: Split
    test: Split
    info: Dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Tuple[str, Split]]:
        return iter(zip(SPLIT_NAMES, (self.train, self.val, self.test)))

    @property
    def sizes(self) -> Tuple[int, int, int]:
        return (len(self.train), len(self.val), len(self.test))

    def pooled(self) -> Split:
        """All three splits concatenated (train, val, test order)."""
        parts = [self.train, self.val, self.test]
        keys = self.train.meta.keys()
        return Split(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                     {k: np.concatenate([p.meta[k] for p in parts]) for k in keys})


# ------------------------------------------------------------------ sampling helpers
def uniform_tokens(rng: np.random.Generator, vocab_size: int, size) -> np.ndarray:
    """Token ids uniform over ``1 .. vocab_size-1`` (0 is padding)."""
    return rng.integers(1, vocab_size, size=size, dtype=np.int64)


def uniform_tokens_except(rng: np.random.Generator, vocab_size: int, excluded: np.ndarray, size) -> np.ndarray:
    """Token ids uniform over ``1 .. vocab_size-1`` minus ``excluded`` (broadcast against
    ``size``, one excluded id per example): draw from a range one shorter and skip the id."""
    r = rng.integers(1, vocab_size - 1, size=size, dtype=np.int64)
    return r + (r >= excluded)


def shuffle_and_split(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, meta: Dict[str, np.ndarray],
                      sizes: Sequence[int]) -> Tuple[Split, Split, Split]:
    """Shuffle a pool with one permutation, then cut it into consecutive train/val/test parts."""
    order = rng.permutation(len(y))
    pool = Split(x[order], y[order], {k: v[order] for k, v in meta.items()})
    a, b = sizes[0], sizes[0] + sizes[1]
    return pool.subset(slice(0, a)), pool.subset(slice(a, b)), pool.subset(slice(b, None))
