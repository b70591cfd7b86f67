"""Semiring laws, checked with hypothesis for every registered semiring.

Elements are built from lifts of real numbers (and 0̄, 1̄, and ⊕-combinations of lifts, so that
e.g. entropy elements are not all of the lifted form). For the exact semirings (max-type,
Boolean, counting) the reals are dyadic (k/8), so float products are exact and laws are checked
with ``==``; the others use a relative tolerance.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from graphengine.semirings import SEMIRINGS, get_semiring

EXACT = {"max", "maxabs", "bool", "count"}  # maxplus adds logs: ⊗ rounds
IDEMPOTENT = {"max", "maxabs", "maxplus", "bool"}

dyadic = st.integers(-24, 24).map(lambda k: k / 8.0)
real = st.one_of(st.floats(-4, 4, allow_nan=False, allow_infinity=False).filter(lambda v: abs(v) > 1e-100), st.just(0.0))


def element(name):
    s = get_semiring(name)
    base = dyadic if name in EXACT else real
    lifted = base.map(lambda x: s.lift(np.array([x])))
    combined = st.tuples(base, base).map(lambda ab: s.plus(s.lift(np.array([ab[0]])), s.lift(np.array([ab[1]])))[0])
    return st.one_of(lifted, combined, st.just(s.zeros((1,))), st.just(s.ones((1,))))


def same(name, a, b):
    for x, y in zip(a, b):
        if name in EXACT:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


def triple(name):
    return st.tuples(element(name), element(name), element(name))


@pytest.mark.parametrize("name", sorted(SEMIRINGS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_laws(name, data):
    s = get_semiring(name)
    a, b, c = data.draw(triple(name))
    plus = lambda x, y: s.plus(x, y)[0]
    times = s.times
    zero, one = s.zeros((1,)), s.ones((1,))
    same(name, plus(plus(a, b), c), plus(a, plus(b, c)))                 # ⊕ associative
    same(name, plus(a, b), plus(b, a))                                    # ⊕ commutative
    same(name, times(times(a, b), c), times(a, times(b, c)))              # ⊗ associative
    same(name, times(a, b), times(b, a))                                  # ⊗ commutative
    same(name, times(a, plus(b, c)), plus(times(a, b), times(a, c)))      # left distributive
    same(name, times(plus(a, b), c), plus(times(a, c), times(b, c)))      # right distributive
    same(name, plus(a, zero), a)                                          # 0̄ is the ⊕ identity
    same(name, times(a, one), a)                                          # 1̄ is the ⊗ identity
    same(name, times(a, zero), zero)                                      # 0̄ annihilates
    same(name, times(zero, a), zero)
    if name in IDEMPOTENT:
        same(name, plus(a, a), a)


@pytest.mark.parametrize("name", sorted(SEMIRINGS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_lift_is_multiplicative(name, data):
    s = get_semiring(name)
    x, y = data.draw(st.tuples(dyadic, dyadic) if name in EXACT else st.tuples(real, real))
    same(name, s.lift(np.array([x * y])), s.times(s.lift(np.array([x])), s.lift(np.array([y]))))
    same(name, s.scale(s.lift(np.array([x])), np.array([y])), s.lift(np.array([x * y])))


@pytest.mark.parametrize("name", sorted(SEMIRINGS))
def test_vectorized_reductions_equal_folds(name):
    """sum_last, matmul and scatter equal explicit ⊕-folds; selective positions name a winner."""
    s = get_semiring(name)
    rng = np.random.default_rng(7)
    gen = (lambda *sh: rng.integers(-16, 17, size=sh) / 8.0) if name in EXACT else (lambda *sh: rng.normal(size=sh))
    a = s.plus(s.lift(gen(3, 4)), s.lift(gen(3, 4)))[0]
    a = s.where(rng.random((3, 4)) < 0.2, s.zeros((3, 4)), a)       # some 0̄ (no path) entries
    w = gen(4, 5)
    w[0, 0] = 0.0                                                    # an exact zero weight
    pick = lambda v, i: tuple(c[i] for c in v)

    value, pos = s.matmul(a, w)
    for m in range(3):
        for k in range(5):
            acc = s.zeros(())
            for n in range(4):
                acc = s.plus(acc, s.times(pick(a, (m, n)), s.lift(np.array(w[n, k]))))[0]
            same(name, pick(value, (m, k)), acc)
            if pos is not None:
                for comp, p in enumerate(pos):
                    n = p[m, k]
                    cand = s.times(pick(a, (m, n)), s.lift(np.array(w[n, k])))
                    if not np.all(acc[comp] == s.zero_elements[comp]):
                        assert cand[comp] == acc[comp]

    value, pos = s.sum_last(a)
    for m in range(3):
        acc = s.zeros(())
        for n in range(4):
            acc = s.plus(acc, pick(a, (m, n)))[0]
        same(name, pick(value, m), acc)

    flat = tuple(c.reshape(-1) for c in a)
    index = rng.integers(0, 5, size=flat[0].size)
    value, pos = s.scatter(flat, index, 6)
    for seg in range(6):
        acc = s.zeros(())
        for j in np.nonzero(index == seg)[0]:
            acc = s.plus(acc, pick(flat, j))[0]
        same(name, pick(value, seg), acc)
        if pos is not None:
            for comp, p in enumerate(pos):
                if p[seg] >= 0:
                    assert flat[comp][p[seg]] == acc[comp]
                else:
                    assert acc[comp] == s.zero_elements[comp]
