"""Two-sample tests and rank correlation for the experiments' tables, computed by scipy.stats.

scipy is in the ``experiments`` extra and imported on first use, so importing this module (and
listing the experiments) needs no scipy. Each function returns a plain dict for the results
JSON and answers NaN, rather than raising or warning, where the statistic is undefined (too few
values, zero variance, constant input):

- :func:`welch_t`: Welch's unequal-variance t test (``scipy.stats.ttest_ind(equal_var=False)``).
- :func:`mann_whitney_u`: Mann–Whitney U, two-sided, normal approximation with tie and
  continuity corrections (``scipy.stats.mannwhitneyu(method="asymptotic")``); ``z`` is the
  signed normal deviate behind the p value.
- :func:`spearman`: Spearman's rho with the t-approximation p value (``scipy.stats.spearmanr``).

>>> r = welch_t([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0, 10.0])
>>> round(r["t"], 4), round(r["df"], 3), round(r["p"], 4)
(-2.2514, 5.521, 0.0691)
>>> r = mann_whitney_u([1, 2, 3], [4, 5, 6, 7])
>>> r["U"], round(r["z"], 4), round(r["p"], 4)
(0.0, -1.9445, 0.0518)
>>> spearman([1, 2, 3, 4], [10, 20, 30, 40])["rho"]
1.0
>>> spearman([1, 1, 1], [1, 2, 3])["rho"]
nan
"""

from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np

from .common import ExperimentError

__all__ = ["welch_t", "mann_whitney_u", "spearman"]


def _scipy_stats():
    try:
        import scipy.stats
    except ImportError:
        raise ExperimentError("the experiments' statistics need scipy (pip install -e '.[experiments]')") from None
    return scipy.stats


def welch_t(a: Sequence[float], b: Sequence[float]) -> Dict[str, float]:
    """Welch's t test of mean(a) = mean(b): ``t``, ``df``, two-sided ``p``, the means, the sample
    sizes and the difference ``diff = mean_a - mean_b``. NaN statistics with fewer than two
    values in a sample or when both variances are 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = len(a), len(b)
    out = {"n_a": na, "n_b": nb, "mean_a": float(a.mean()) if na else math.nan,
           "mean_b": float(b.mean()) if nb else math.nan}
    out["diff"] = out["mean_a"] - out["mean_b"]
    if na < 2 or nb < 2 or not a.var(ddof=1) / na + b.var(ddof=1) / nb > 0:
        return {**out, "t": math.nan, "df": math.nan, "p": math.nan}
    r = _scipy_stats().ttest_ind(a, b, equal_var=False)
    return {**out, "t": float(r.statistic), "df": float(r.df), "p": float(r.pvalue)}


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> Dict[str, float]:
    """Mann–Whitney U test (two-sided): ``U`` = the statistic of sample ``a`` (the number of
    pairs with a > b, ties counting 1/2), ``p`` from the normal approximation with tie and
    continuity corrections, ``z`` the normal deviate of that p value, signed as U - n_a n_b / 2.
    NaN ``z`` and ``p`` when a sample is empty or every value is the same."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = len(a), len(b)
    if na == 0 or nb == 0:
        return {"U": math.nan, "z": math.nan, "p": math.nan, "n_a": na, "n_b": nb}
    st = _scipy_stats()
    r = st.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=True)
    u = float(r.statistic)
    if np.unique(np.concatenate([a, b])).size < 2:
        return {"U": u, "z": math.nan, "p": math.nan, "n_a": na, "n_b": nb}
    p = float(r.pvalue)
    z = math.copysign(float(st.norm.isf(p / 2.0)), u - na * nb / 2.0)
    return {"U": u, "z": z, "p": p, "n_a": na, "n_b": nb}


def spearman(x: Sequence[float], y: Sequence[float]) -> Dict[str, float]:
    """Spearman's rho (Pearson correlation of average ranks) and its two-sided p value from
    ``t = rho sqrt((n-2)/(1-rho^2))`` with n-2 degrees of freedom. NaN with fewer than three
    pairs or a constant sample."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = len(x)
    if n < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return {"rho": math.nan, "p": math.nan, "n": n}
    r = _scipy_stats().spearmanr(x, y)
    return {"rho": float(r.statistic), "p": float(r.pvalue), "n": n}
