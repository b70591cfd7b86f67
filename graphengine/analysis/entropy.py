"""Entropy of the path distribution pooled over a whole tensor.

The expectation semiring gives, at every element ``i`` of a node, ``Z_i`` (the total weight of
the paths from ``i`` to the QoI) and ``R_i = −Σ p log p`` over those paths. The paths starting
anywhere in the node form one distribution with normaliser ``ΣZ``, and its entropy is
``H = ΣR / ΣZ + log ΣZ`` (nats) — not the mean of the per-element entropies.
"""

from __future__ import annotations

import numpy as np

from ..semirings.reductions import logsumexp_last


def vector_entropy(result, node, semiring: str = "entropy") -> float:
    """Entropy (nats) of the distribution over all paths from any element of ``node`` to the
    QoI, each path weighted by its product of ``|local derivative|``.

    ``semiring`` is ``"entropy"`` (pools ``Z`` and ``R``) or ``"logentropy"`` (pools in log
    space, ``log ΣZ = logsumexp(log Z_i)`` and ``ΣR/ΣZ = Σ exp(log Z_i − log ΣZ)·(R_i/Z_i)``, for
    deep graphs where ``Z`` under- or overflows). Elements with no path contribute nothing;
    if no element has a path of non-zero weight the entropy is 0 (as the finalizer reports it).

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
        Z, R = np.asarray(comps["Z"], np.float64), np.asarray(comps["R"], np.float64)
        z, r = float(Z.sum()), float(R.sum())
        if not z > 0:
            return 0.0
        return r / z + float(np.log(z))
    if "log_Z" in comps and "mean_neg_log_p" in comps:
        l = np.asarray(comps["log_Z"], np.float64).reshape(-1)
        h = np.asarray(comps["mean_neg_log_p"], np.float64).reshape(-1)
        total = float(logsumexp_last(l))
        if not np.isfinite(total):
            return 0.0
        w = np.exp(l - total)
        return float(np.sum(np.where(w > 0, w * h, 0.0))) + total
    raise ValueError(f"semiring {semiring!r} is not an entropy semiring (use 'entropy' or 'logentropy')")
