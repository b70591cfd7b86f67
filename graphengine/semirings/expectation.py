"""The expectation semiring for the entropy of the distribution over paths.

A path of weight p = Π|w| has probability p/Z. An edge lifts to ⟨|w|, −|w| log|w|⟩, path
products are ⟨p, −p log p⟩, and the sum over paths is ⟨Z, R⟩; the entropy is
H = R/Z + log Z in nats. ``0 log 0 = 0`` everywhere, so exact zeros (dead ReLUs, zeroed
embedding rows, masked attention) never produce NaN; where Z = 0 (no path of non-zero weight)
H is reported as 0. NaN is never reported as 0: a NaN ``Z`` or ``R`` gives a NaN entropy
(:func:`graphengine.analysis.entropy.pooled_entropy`, the one formula), and so do an infinite
``Z`` and, in log space, ``log_Z`` = NaN or +inf.

:class:`LogEntropy` keeps ⟨ℓ, h⟩ = ⟨log Z, R/Z⟩ instead, which neither under- nor overflows on
deep graphs: ⟨ℓ₁,h₁⟩⊗⟨ℓ₂,h₂⟩ = ⟨ℓ₁+ℓ₂, h₁+h₂⟩ and ⊕ is log-sum-exp on ℓ with an
exp(ℓᵢ−ℓ)-weighted mean of h.

>>> e = Entropy()
>>> v = e.plus(e.lift(np.array(0.5)), e.lift(np.array(0.5)))[0]   # two paths of weight 1/2
>>> round(float(e.finalize(v)["entropy"]), 12) == round(float(np.log(2)), 12)
True
>>> e.finalize((np.array([np.nan, 0.0]), np.array([np.nan, 0.0])))["entropy"]
array([nan,  0.])
>>> LogEntropy().finalize((np.array([np.nan, -np.inf, np.inf]), np.zeros(3)))["entropy"]
array([nan,  0., nan])
"""

from __future__ import annotations

import numpy as np

from ..analysis.entropy import pooled_entropy
from .families import LinearSemiring, LogLinearSemiring
from .reductions import abs_xlogx_neg, safe_log_abs


class Entropy(LinearSemiring):
    name = "entropy"
    kernel = "entropy"
    components = ("Z", "R")
    zero_elements = (0.0, 0.0)
    one_elements = (1.0, 0.0)
    log_twin = "logentropy"
    is_entropy = True
    value_dtypes = (np.float64, np.float32)

    def lift(self, w):
        return abs_xlogx_neg(w, self.dtype)

    def times(self, a, b):
        return (a[0] * b[0], a[0] * b[1] + a[1] * b[0])

    def matmul(self, a, w):
        return self.matmul_lifted(a, self.lift(w))

    def matmul_lifted(self, a, lifted):
        """:meth:`matmul` with the weights already lifted, ``lifted = (|W|, -|W| log|W|)``: ⊗ is
        bilinear, so ``⊕_n ⟨Z, R⟩_n ⊗ ⟨|w|, h⟩_nk`` is ``⟨Z·|W|, R·|W| + Z·H⟩``, three BLAS
        products (callers that contract with one weight array several times lift it once).

        >>> e = Entropy()
        >>> v, _ = e.matmul_lifted((np.array([[1.0, 2.0]]), np.zeros((1, 2))), e.lift(np.array([[0.5], [-1.0]])))
        >>> [x.tolist() for x in v]
        [[[2.5]], [[0.34657359027997264]]]
        """
        aw, h = lifted
        return (np.matmul(a[0], aw), np.matmul(a[1], aw) + np.matmul(a[0], h)), None

    def finalize(self, v):
        Z, R = v
        with np.errstate(divide="ignore", invalid="ignore"):
            H = np.asarray(pooled_entropy(Z, R, axis=()), np.float64)
        return {"entropy": np.where(np.isinf(Z), np.nan, H), "Z": Z, "R": R}

    def path_magnitude(self, finalized):  # H may legitimately be 0; Z may not
        ok = np.isfinite(finalized["R"]) & np.isfinite(finalized["entropy"])
        return np.where(ok, np.asarray(finalized["Z"], np.float64), np.nan)


class LogEntropy(LogLinearSemiring):
    name = "logentropy"
    kernel = "logentropy"
    components = ("log_Z", "mean_neg_log_p")
    zero_elements = (-np.inf, 0.0)
    one_elements = (0.0, 0.0)
    is_entropy = True

    def lift(self, w):
        lw = safe_log_abs(w)
        return (lw, np.where(np.isfinite(lw), -lw, 0.0))

    def times(self, a, b):
        l = a[0] + b[0]
        return (l, np.where(np.isfinite(l), a[1] + b[1], 0.0))

    def finalize(self, v):
        l, h = v
        none = np.where(np.isnan(h), np.nan, 0.0)  # no path: 0, as Entropy reports Z = 0
        return {"entropy": np.where(l == -np.inf, none, np.where(np.isfinite(l), h + l, np.nan)), "log_Z": l,
                "mean_neg_log_p": h}
