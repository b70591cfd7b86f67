"""Entropy of the path distribution pooled over a set of elements.

The expectation semiring gives, at every element ``i`` of a node, ``Z_i`` (the total weight of
the paths from ``i`` to the QoI) and ``R_i = −Σ p log p`` over those paths (``p`` the path
weights, unnormalised). The paths starting anywhere in a set of elements form one distribution
with normaliser ``ΣZ``, and its entropy is ``H = ΣR / ΣZ + log ΣZ`` (nats) — not the mean of the
per-element entropies. :func:`pooled_entropy` is the one implementation of that formula;
:func:`grouped_entropy` pools by label (e.g. every position holding the same token id) and
:func:`vector_entropy` pools a whole node of a backward result.

Conventions, the same everywhere: a pool with ``ΣZ = 0`` (no path of non-zero weight) has
entropy 0, as the expectation semiring's finalizer reports it; NaN in ``Z`` or ``R`` gives NaN,
never 0.

This module needs nothing but numpy, so any package (a semiring's finalizer included) can use it.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np

__all__ = ["pooled_entropy", "grouped_entropy", "vector_entropy"]

Axis = Optional[Union[int, Tuple[int, ...]]]


def pooled_entropy(Z, R, axis: Axis = None):
    """``ΣR/ΣZ + log ΣZ`` with the sums over ``axis`` (None: every element, a float).

    ``axis=()`` pools nothing: each element's own entropy ``R/Z + log Z``. Where ``ΣZ = 0`` the
    entropy is 0 (an empty distribution); NaN anywhere in a pool gives NaN.

    Two paths of weight 1 (``Z = 1`` and ``R = 0`` each) pool to ``log 2``; one path alone has
    entropy 0:

    >>> import numpy as np
    >>> round(pooled_entropy(np.array([1.0, 1.0]), np.array([0.0, 0.0])), 6)
    0.693147
    >>> pooled_entropy(np.array([[1.0, 0.0], [1.0, 1.0]]), np.zeros((2, 2)), axis=-1).round(6).tolist()
    [0.0, 0.693147]
    >>> pooled_entropy(np.array([0.0, np.nan]), np.zeros(2), axis=()).tolist()
    [0.0, nan]
    """
    z = np.sum(np.asarray(Z, np.float64), axis=axis)
    r = np.sum(np.asarray(R, np.float64), axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(z == 0, np.where(np.isnan(r), np.nan, 0.0), r / z + np.log(z))
    return float(h) if h.ndim == 0 else h


def grouped_entropy(Z, R, groups) -> np.ndarray:
    """Per element, the pooled entropy of all elements sharing its label in ``groups``.

    ``Z``, ``R`` and ``groups`` have one shape (labels are any integers); the result has it too.

    >>> import numpy as np
    >>> grouped_entropy(np.array([1.0, 1.0, 1.0]), np.zeros(3), np.array([7, 7, 8])).round(6).tolist()
    [0.693147, 0.693147, 0.0]
    """
    groups = np.asarray(groups)
    uniq, inv = np.unique(groups.ravel(), return_inverse=True)
    zs = np.bincount(inv, weights=np.asarray(Z, np.float64).ravel(), minlength=len(uniq))
    rs = np.bincount(inv, weights=np.asarray(R, np.float64).ravel(), minlength=len(uniq))
    return pooled_entropy(zs, rs, axis=())[inv].reshape(groups.shape)


def _pooled_log_entropy(log_Z: np.ndarray, mean_neg_log_p: np.ndarray) -> float:
    """The pooled entropy from the log-space twin's components: ``log ΣZ = logsumexp(log Z_i)``
    and ``ΣR/ΣZ = Σ exp(log Z_i − log ΣZ)·(R_i/Z_i)``."""
    l = np.asarray(log_Z, np.float64).reshape(-1)
    h = np.asarray(mean_neg_log_p, np.float64).reshape(-1)
    if np.isnan(l).any() or np.isnan(h).any():
        return float("nan")
    top = float(l.max()) if l.size else -np.inf
    if top == -np.inf:
        return 0.0
    total = top + float(np.log(np.sum(np.exp(l - top))))   # log-sum-exp, shifted by the largest term
    w = np.exp(l - total)
    return float(np.sum(np.where(w > 0, w * h, 0.0))) + total


def vector_entropy(result, node, semiring: str = "entropy") -> float:
    """Entropy (nats) of the distribution over all paths from any element of ``node`` to the
    QoI, each path weighted by its product of ``|local derivative|``.

    ``semiring`` is ``"entropy"`` (:func:`pooled_entropy` of ``Z`` and ``R``) or ``"logentropy"``
    (pools in log space, ``log ΣZ = logsumexp(log Z_i)`` and ``ΣR/ΣZ = Σ exp(log Z_i − log ΣZ)·(R_i/Z_i)``,
    for deep graphs where ``Z`` under- or overflows). Elements with no path contribute nothing;
    if no element has a path of non-zero weight the entropy is 0; NaN gives NaN.

    Two input units, each with two paths of weight 1 to the output (four paths in all):

    >>> import numpy as np
    >>> from graphengine import Graph, backward, forward, weighted
    >>> g = Graph(); x = g.input("x", (1, 2))
    >>> y = g.call("linear", x, g.parameter("W", np.ones((2, 2))), name="y")
    >>> r = backward(g, forward(g, {"x": np.ones((1, 2))}), weighted("y", np.ones((1, 2))),
    ...              semirings=["entropy", "logentropy"])
    >>> r.get("x", "entropy").tolist()     # per unit: log 2
    [[0.6931471805599453, 0.6931471805599453]]
    >>> round(vector_entropy(r, "x"), 12) == round(float(np.log(4)), 12)
    True
    >>> round(vector_entropy(r, "x", "logentropy"), 12) == round(float(np.log(4)), 12)
    True
    """
    comps = result.components(node, semiring)
    if semiring == "entropy" or ("Z" in comps and "R" in comps):
        return pooled_entropy(comps["Z"], comps["R"])
    if "log_Z" in comps and "mean_neg_log_p" in comps:
        return _pooled_log_entropy(comps["log_Z"], comps["mean_neg_log_p"])
    raise ValueError(f"semiring {semiring!r} is not an entropy semiring (use 'entropy' or 'logentropy')")
