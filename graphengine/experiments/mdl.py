"""Prequential (online-code) minimum description length, as the paper computed it (docs/method.md).

The training set is cut into blocks; the first block is sent with a uniform code over the
``num_classes`` labels; every later block is sent with a model trained from scratch on all
earlier blocks. The authors' code (``compute_mdl.py`` of semiring-backprop-exps) reports

    MDL = n₁ · ln C + Σ_{i≥2} (mean cross-entropy of block i under the model trained on blocks < i)

in nats — a sum of per-block *mean* losses, which is why the paper's values are 12–51 nats for
3,600 examples. The textbook online codelength sums the loss over the examples instead:
``n₁ · ln C + Σ_{i≥2} Σ_{x ∈ block i} CE(x)``. :class:`MDLResult` reports both (``mdl`` is the
paper's, ``codelength`` the per-example sum); the experiments plot the paper's.

Block sizes: ``ceil(n · p / 100)`` for the proportions :data:`PAPER_PROPORTIONS` (percent), the
last block shrunk so the sizes sum to n — for n = 3,600 exactly the paper's
``[2, 2, 4, 4, 8, 16, 36, 72, 72, 144, 288, 576, 576, 1800]``. Blocks are filled the authors'
way (:func:`balanced_blocks`): shuffle, interleave the classes round-robin (so early blocks are
balanced), leftovers at the end. After the last block a model is trained on everything and
scored on its own training data (the "data cost"); that model is the one the paper analyses.

>>> block_sizes(3600)
[2, 2, 4, 4, 8, 16, 36, 72, 72, 144, 288, 576, 576, 1800]
>>> r = online_code([2, 2, 4], num_classes=36, next_block_losses=[1.0, 0.5], final_loss=0.25)
>>> round(r.mdl - 2 * math.log(36), 12), round(r.codelength - 2 * math.log(36), 12)
(1.5, 4.0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .common import ExperimentError

__all__ = ["PAPER_PROPORTIONS", "block_sizes", "balanced_blocks", "MDLResult", "online_code", "prequential_mdl"]

#: Block proportions in percent of the training set (compute_mdl.py's ``split_proportions``).
PAPER_PROPORTIONS: Tuple[Fraction, ...] = tuple(Fraction(p) for p in (
    Fraction(1, 18), Fraction(1, 18), Fraction(1, 9), Fraction(1, 9), Fraction(2, 9), Fraction(4, 9),
    1, 2, 2, 4, 8, 16, 16, 50))


def block_sizes(n: int, proportions: Sequence[Fraction] = PAPER_PROPORTIONS) -> List[int]:
    """Block sizes for ``n`` training examples (exact rational arithmetic, then ceil).

    >>> block_sizes(900)
    [1, 1, 1, 1, 2, 4, 9, 18, 18, 36, 72, 144, 144, 449]
    """
    if n < len(proportions):
        raise ExperimentError(f"MDL needs at least {len(proportions)} training examples, got {n}")
    sizes = [math.ceil(Fraction(n) * Fraction(p) / 100) for p in proportions]
    sizes[-1] -= sum(sizes) - n
    if sizes[-1] < 1:
        raise ExperimentError(f"MDL blocks for {n} examples leave an empty last block")
    return sizes


def balanced_blocks(y: np.ndarray, sizes: Sequence[int], rng: np.random.Generator) -> List[np.ndarray]:
    """Index arrays of the blocks: shuffle, interleave the classes present round-robin
    (truncated to the rarest class, as ``zip`` does), append the leftovers (shuffled), cut.

    >>> y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    >>> bl = balanced_blocks(y, [2, 2, 4], np.random.default_rng(0))
    >>> [sorted(y[b].tolist()) for b in bl]
    [[0, 1], [0, 1], [0, 1, 1, 1]]
    """
    y = np.asarray(y)
    if sum(sizes) != len(y):
        raise ExperimentError(f"block sizes sum to {sum(sizes)}, but there are {len(y)} examples")
    order = rng.permutation(len(y))
    classes = np.unique(y)
    per_class = [order[y[order] == c] for c in classes]
    m = min(len(p) for p in per_class)
    inter = np.stack([p[:m] for p in per_class], axis=1).reshape(-1)
    rest = np.setdiff1d(order, inter, assume_unique=True)
    full = np.concatenate([inter, rng.permutation(rest)])
    cuts = np.cumsum(sizes)[:-1]
    return np.split(full, cuts)


@dataclass
class MDLResult:
    """``block_sizes``; ``next_block_losses[i]``: mean CE of block i+1 under the model trained on
    blocks 0..i (nats); ``final_loss``: mean CE of the model trained on everything, on its own
    training data; ``mdl`` (paper), ``codelength`` (per-example sum), ``model_cost`` =
    ``mdl - final_loss`` (the authors' split)."""

    block_sizes: List[int]
    num_classes: int
    next_block_losses: List[float]
    final_loss: Optional[float]
    uniform_cost: float
    mdl: float
    codelength: float
    model_cost: Optional[float]
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def online_code(sizes: Sequence[int], num_classes: int, next_block_losses: Sequence[float],
                final_loss: Optional[float] = None) -> MDLResult:
    """Combine per-block mean losses into the paper's MDL and the per-example codelength."""
    sizes = [int(s) for s in sizes]
    if len(next_block_losses) != len(sizes) - 1:
        raise ExperimentError(f"{len(sizes)} blocks need {len(sizes) - 1} next-block losses, "
                              f"got {len(next_block_losses)}")
    uniform = sizes[0] * math.log(num_classes)
    losses = [float(v) for v in next_block_losses]
    mdl = uniform + sum(losses)
    code = uniform + sum(s * v for s, v in zip(sizes[1:], losses))
    return MDLResult(sizes, int(num_classes), losses, None if final_loss is None else float(final_loss), uniform,
                     mdl, code, None if final_loss is None else mdl - float(final_loss))


FitScore = Callable[[np.ndarray, np.ndarray, int], Tuple[float, Any]]


def prequential_mdl(y: np.ndarray, num_classes: int, fit_and_score: FitScore, rng: np.random.Generator,
                    sizes: Optional[Sequence[int]] = None, progress: Callable = lambda it, **kw: it
                    ) -> Tuple[MDLResult, Any]:
    """Run the online code over the examples ``0..len(y)-1``.

    ``fit_and_score(train_idx, test_idx, block)`` trains a fresh model on ``train_idx`` and
    returns ``(mean cross-entropy on test_idx in nats, model)``; it is called once per block
    (block i trains on blocks 0..i and scores block i+1; the last call trains on everything and
    scores its own training data). Returns the :class:`MDLResult` and the last model.
    """
    y = np.asarray(y)
    sizes = block_sizes(len(y)) if sizes is None else list(sizes)
    blocks = balanced_blocks(y, sizes, rng)
    losses, model, final = [], None, None
    for i in progress(range(len(blocks)), desc="MDL blocks"):
        train_idx = np.concatenate(blocks[: i + 1])
        last = i == len(blocks) - 1
        test_idx = train_idx if last else blocks[i + 1]
        loss, model = fit_and_score(train_idx, test_idx, i)
        if last:
            final = loss
        else:
            losses.append(loss)
    res = online_code(sizes, num_classes, losses, final)
    res.extra["blocks"] = [b.tolist() for b in blocks] if len(y) <= 64 else None
    return res, model
