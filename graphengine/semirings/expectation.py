"""The expectation semiring for the entropy of the distribution over paths.

A path of weight p = Π|w| has probability p/Z. An edge lifts to ⟨|w|, −|w| log|w|⟩, path
products are ⟨p, −p log p⟩, and the sum over paths is ⟨Z, R⟩; the entropy is
H = R/Z + log Z in nats. ``0 log 0 = 0`` everywhere, so exact zeros (dead ReLUs, zeroed
embedding rows, masked attention) never produce NaN; where Z = 0 (no path of non-zero weight)
H is reported as 0.

:class:`LogEntropy` keeps ⟨ℓ, h⟩ = ⟨log Z, R/Z⟩ instead, which neither under- nor overflows on
deep graphs: ⟨ℓ₁,h₁⟩⊗⟨ℓ₂,h₂⟩ = ⟨ℓ₁+ℓ₂, h₁+h₂⟩ and ⊕ is log-sum-exp on ℓ with an
exp(ℓᵢ−ℓ)-weighted mean of h.

>>> e = Entropy()
>>> v = e.plus(e.lift(np.array(0.5)), e.lift(np.array(0.5)))[0]   # two paths of weight 1/2
>>> round(float(e.finalize(v)["entropy"]), 12) == round(float(np.log(2)), 12)
True
"""

from __future__ import annotations

import numpy as np

from ._numpy import batched_pairs, logsumexp_last, safe_log_abs, segment_logsumexp, xlogx_neg
from .base import Semiring


class Entropy(Semiring):
    name = "entropy"
    kernel = "entropy"
    components = ("Z", "R")
    zero_elements = (0.0, 0.0)
    one_elements = (1.0, 0.0)

    def lift(self, w):
        aw = np.abs(np.asarray(w, dtype=self.dtype))
        return (aw, xlogx_neg(aw))

    def times(self, a, b):
        return (a[0] * b[0], a[0] * b[1] + a[1] * b[0])

    def scale(self, a, w):
        aw = np.abs(np.asarray(w, dtype=self.dtype))
        return (a[0] * aw, a[0] * xlogx_neg(aw) + a[1] * aw)

    def plus(self, a, b):
        return (a[0] + b[0], a[1] + b[1]), None

    def sum_last(self, a):
        return (a[0].sum(axis=-1), a[1].sum(axis=-1)), None

    def matmul(self, a, w):
        aw = np.abs(np.asarray(w, dtype=self.dtype))
        return (np.matmul(a[0], aw), np.matmul(a[1], aw) + np.matmul(a[0], xlogx_neg(aw))), None

    def scatter(self, a, index, size):
        return tuple(np.bincount(index, weights=c, minlength=size).astype(self.dtype, copy=False) for c in a), None

    def finalize(self, v):
        Z, R = v
        with np.errstate(divide="ignore", invalid="ignore"):
            H = np.where(Z > 0, R / np.where(Z > 0, Z, 1.0) + np.log(np.where(Z > 0, Z, 1.0)), 0.0)
        return {"entropy": H, "Z": Z, "R": R}


class LogEntropy(Semiring):
    name = "logentropy"
    kernel = "logentropy"
    components = ("log_Z", "mean_neg_log_p")
    zero_elements = (-np.inf, 0.0)
    one_elements = (0.0, 0.0)

    def lift(self, w):
        lw = safe_log_abs(w)
        return (lw, np.where(np.isfinite(lw), -lw, 0.0))

    def times(self, a, b):
        l = a[0] + b[0]
        return (l, np.where(np.isfinite(l), a[1] + b[1], 0.0))

    def scale(self, a, w):
        return self.times(a, self.lift(w))

    def plus(self, a, b):
        l = np.logaddexp(a[0], b[0])
        fin = np.isfinite(l)
        safe = np.where(fin, l, 0.0)
        h = np.exp(a[0] - safe) * a[1] + np.exp(b[0] - safe) * b[1]
        return (l, np.where(fin, h, 0.0)), None

    def _pool_last(self, l, h):
        out = logsumexp_last(l)
        fin = np.isfinite(out)
        safe = np.where(fin, out, 0.0)
        wts = np.exp(l - safe[..., None])
        return (out, np.where(fin, np.sum(wts * h, axis=-1), 0.0))

    def sum_last(self, a):
        return self._pool_last(a[0], a[1]), None

    def matmul(self, a, w):
        lw, hw = self.lift(w)
        batch, l, lw_b, M, N, K, step = batched_pairs(a[0], lw)
        h = np.broadcast_to(a[1], l.shape)
        hw_b = np.broadcast_to(hw, lw_b.shape)
        out_l = np.empty(batch + (M, K))
        out_h = np.empty(batch + (M, K))
        for m0 in range(0, M, step):
            tl = l[..., m0:m0 + step, :, None] + lw_b[..., None, :, :]
            th = h[..., m0:m0 + step, :, None] + hw_b[..., None, :, :]
            ol, oh = self._pool_last(np.moveaxis(tl, -2, -1), np.moveaxis(th, -2, -1))
            out_l[..., m0:m0 + step, :], out_h[..., m0:m0 + step, :] = ol, oh
        return (out_l, out_h), None

    def scatter(self, a, index, size):
        out, wts = segment_logsumexp(a[0], index, size)
        h = np.bincount(index, weights=wts * a[1], minlength=size)
        return (out, np.where(np.isfinite(out), h, 0.0)), None

    def finalize(self, v):
        l, h = v
        return {"entropy": np.where(np.isfinite(l), h + l, 0.0), "log_Z": l, "mean_neg_log_p": h}
