"""Path mass split by sign: ``⟨Z⁺, Z⁻⟩ = ⟨Σ_{paths with Π w > 0} Π w, Σ_{paths with Π w < 0} |Π w|⟩``.

``Z⁺ − Z⁻`` is the gradient and ``Z⁺ + Z⁻`` the absolute mass Z; the split says how much of Z
pushes the QoI up and how much down (the gradient can be small because both are large). An
edge of weight w lifts to ``⟨max(w, 0), max(−w, 0)⟩``; ⊗ keeps the sign rule
``⟨a⁺b⁺ + a⁻b⁻, a⁺b⁻ + a⁻b⁺⟩``; ⊕ adds. A path continues in the other component after a
negative edge (:meth:`SignedMass.next_component`), which is what path sampling restricted to
positive products (:mod:`graphengine.paths.sample`) follows.

>>> import numpy as np
>>> s = SignedMass()
>>> v = s.plus(s.lift(np.array(2.0)), s.times(s.lift(np.array(-3.0)), s.lift(np.array(0.5))))[0]
>>> float(s.finalize(v)["Z+"]), float(s.finalize(v)["Z-"])
(2.0, 1.5)
"""

from __future__ import annotations

import numpy as np

from .families import LinearSemiring


class SignedMass(LinearSemiring):
    name = "signedmass"
    components = ("Z+", "Z-")
    zero_elements = (0.0, 0.0)
    one_elements = (1.0, 0.0)

    def lift(self, w):
        w = np.asarray(w, dtype=self.dtype)
        return (np.maximum(w, 0.0), np.maximum(-w, 0.0))

    def times(self, a, b):
        return (a[0] * b[0] + a[1] * b[1], a[0] * b[1] + a[1] * b[0])

    def matmul(self, a, w):  # four BLAS calls
        p, n = self.lift(w)
        return (np.matmul(a[0], p) + np.matmul(a[1], n), np.matmul(a[0], n) + np.matmul(a[1], p)), None

    def next_component(self, component, w):
        return component if w >= 0 else 1 - component

    def finalize(self, v):
        return {"Z+": v[0], "Z-": v[1]}

    def path_magnitude(self, finalized):
        return np.asarray(finalized["Z+"], np.float64) + np.asarray(finalized["Z-"], np.float64)
