"""The back-end interface: what a kernel back end provides, family by family.

A back end is a module with the functions below (:mod:`graphengine.kernels.cpu`: Numba
``@njit``; :mod:`graphengine.kernels.cuda`: ``numba.cuda``). The host glue of
:mod:`graphengine.kernels.families` calls them and nothing else, so a back end that implements
:class:`Backend` runs every compiled semiring family. Both back ends compile their scalar steps
from the same functions (:mod:`graphengine.kernels.scalar`).

Conventions shared by every kernel:

- inputs are C-contiguous float64 values (float32 for the linear families when the semiring's
  values are float32: every array of one call has the same value dtype) and int64 positions;
  outputs are preallocated by the caller and filled in place (only ``scale_pair`` returns its
  results);
- a *contraction* takes ``a (Ba, M, N)``, ``w (Bw, N, K)`` and index maps ``ia``, ``iw`` (length
  ``B``): output batch ``b`` contracts ``a[ia[b]]`` with ``w[iw[b]]``, so broadcast batch
  dimensions are never materialized; outputs are ``(B, M, K)``;
- a *dense block* takes the adjoint rows ``(B, n)`` and the block's factors ``d (B, n)``,
  ``u, v (B, n, R)`` (``J = diag(d) + u vᵀ``, :class:`graphengine.ir.jacobian.LowRankBlock`)
  and never builds the ``n × n`` block;
- a *scatter* reduces ``values (J,)`` into ``o (S,)`` by ``index (J,)``; an empty segment gets
  the semiring's 0̄ (and position -1);
- selections keep the lowest position on ties, as ``numpy.argmax`` does in the reference.

The numpy reference is not a back end of this interface: it lives one level up, as the
semirings' own methods (one per semiring, not per kernel), and
:class:`graphengine.kernels.dispatch.DeviceSemiring` falls back to it for whatever a family does
not route to a back end.

>>> from graphengine.kernels import cpu
>>> missing(cpu)
[]
>>> sorted(KERNELS)[:3]
['block_absolute', 'block_entropy', 'block_maxabs']
"""

from __future__ import annotations

import inspect
from typing import List, Protocol, Tuple

import numpy as np


class SelectiveKernels(Protocol):
    """Signed max pair, max-abs, max-plus and Boolean (families ``MaxPair``, ``MaxSingle``,
    ``MaxAbs``, ``MaxPlus``, ``Boolean``): argmax-tracking kernels, bit-identical to the
    reference."""

    def matmul_pair(self, a0: np.ndarray, a1: np.ndarray, w: np.ndarray, ia: np.ndarray, iw: np.ndarray,
                    o0: np.ndarray, o1: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> None:
        """Contraction of ⟨M⁺, M⁻⟩ = ``(a0, a1)`` with real weights ``w`` (float64, or a model's
        float32, widened exactly): ``o0``/``p0`` the max and its n, ``o1``/``p1`` the min (a
        negative weight swaps the source component)."""

    def matmul_max(self, a: np.ndarray, w: np.ndarray, ia: np.ndarray, iw: np.ndarray, plus: bool,
                   o: np.ndarray, p: np.ndarray) -> None:
        """``o = max_n a ⊗ w`` and its n, ⊗ = + when ``plus`` (max-plus on ``log|w|``), else ×
        (max-abs on ``|w|``)."""

    def select_last(self, a: np.ndarray, sign: int, o: np.ndarray, p: np.ndarray) -> None:
        """Per row of ``a (R, N)``: the max (``sign`` > 0) or min and its first position."""

    def scatter_select(self, values: np.ndarray, index: np.ndarray, sign: int, zero: float,
                       o: np.ndarray, p: np.ndarray) -> None:
        """Per segment: the max (``sign`` > 0) or min and its first position; ``zero``, -1 when
        empty."""

    def block_pair(self, a0: np.ndarray, a1: np.ndarray, d: np.ndarray, u: np.ndarray, v: np.ndarray,
                   o0: np.ndarray, o1: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> None:
        """``matmul_pair`` of adjoint rows with a factored dense block."""

    def block_maxabs(self, a: np.ndarray, d: np.ndarray, u: np.ndarray, v: np.ndarray,
                     o: np.ndarray, p: np.ndarray) -> None:
        """Max-abs contraction of adjoint rows with ``|J|`` of a factored dense block."""

    def scale_pair(self, a0: np.ndarray, a1: np.ndarray, w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``⟨a0, a1⟩ ⊗ w`` elementwise with numpy broadcasting (0̄ stays 0̄); returns ``(hi, lo)``."""


class KBestKernels(Protocol):
    """k-best lists (family ``KBest``): every operation is one selection of the k largest (and,
    ``signed``, the k smallest of the rest) candidates; outputs have ``k`` or ``2k`` columns."""

    def kbest_rows(self, cand: np.ndarray, pres: np.ndarray, k: int, signed: bool,
                   o: np.ndarray, p: np.ndarray) -> None:
        """Per row of ``cand (R, L)``, among the candidates ``pres`` marks present."""

    def kbest_matmul(self, cand: np.ndarray, w: np.ndarray, ia: np.ndarray, iw: np.ndarray, k: int, signed: bool,
                     o: np.ndarray, p: np.ndarray) -> None:
        """Contraction of ``cand (Ba, M, N, C)`` with ``w (Bw, N, K)``: the candidates of output
        ``(b, m, k)`` are ``cand[.., n, c]·w[n, k]`` at position ``n·C + c``."""

    def kbest_scatter(self, cand: np.ndarray, order: np.ndarray, starts: np.ndarray, k: int, signed: bool,
                      o: np.ndarray, p: np.ndarray) -> None:
        """Segment ``s`` selects among ``cand[j, c]`` for ``j`` in ``order[starts[s]:starts[s + 1]]``,
        at position ``j·C + c``."""


class LogKernels(Protocol):
    """Log-space sums (families ``LogAbsolute``, ``LogCounting``, ``LogEntropy``): two-pass
    log-sum-exp, exact for -inf."""

    def logsumexp_last(self, a: np.ndarray, o: np.ndarray) -> None:
        """``o[r] = log Σ_n exp(a[r, n])``."""

    def matmul_logsumexp(self, a: np.ndarray, lw: np.ndarray, ia: np.ndarray, iw: np.ndarray, o: np.ndarray) -> None:
        """``o = log Σ_n exp(a + lw)`` per output element."""

    def matmul_logentropy(self, l: np.ndarray, h: np.ndarray, lw: np.ndarray, hw: np.ndarray,
                          ia: np.ndarray, iw: np.ndarray, ol: np.ndarray, oh: np.ndarray) -> None:
        """``ol = log Σ exp(l + lw)`` and ``oh = Σ exp(l + lw - ol)·(h + hw)`` (0 where ``ol`` is
        not finite)."""

    def scatter_logsumexp(self, values: np.ndarray, index: np.ndarray, o: np.ndarray, wts: np.ndarray) -> None:
        """Per segment log Σ exp (-inf when empty) and each element's weight
        ``exp(values - o[index])``."""


class LinearKernels(Protocol):
    """Real, absolute, counting, entropy (families ``Real``, ``Absolute``, ``Counting``,
    ``Entropy``). With ``HOST_LINEAR`` the families keep the reference's BLAS products for
    contractions, sums and scatters and call only the dense blocks."""

    def matmul_sum(self, a: np.ndarray, w: np.ndarray, ia: np.ndarray, iw: np.ndarray, o: np.ndarray) -> None:
        """``o[b] = a[ia[b]] @ w[iw[b]]``."""

    def scatter_sum(self, values: np.ndarray, index: np.ndarray, o: np.ndarray) -> None:
        """``o[s] = Σ values[index == s]`` (0 when empty)."""

    def block_real(self, a: np.ndarray, d: np.ndarray, u: np.ndarray, v: np.ndarray, o: np.ndarray) -> None:
        """``o = a·J`` for a factored dense block."""

    def block_absolute(self, z: np.ndarray, d: np.ndarray, u: np.ndarray, v: np.ndarray, oz: np.ndarray) -> None:
        """``oz = z·|J|``."""

    def block_entropy(self, z: np.ndarray, r: np.ndarray, d: np.ndarray, u: np.ndarray, v: np.ndarray,
                      oz: np.ndarray, orr: np.ndarray) -> None:
        """``oz = z·|J|`` and ``orr = r·|J| + z·(-|J| log|J|)``."""


class Backend(SelectiveKernels, KBestKernels, LogKernels, LinearKernels, Protocol):
    """A kernel back end: every family's kernels, its device name, and whether the linear
    families keep their contractions on the host (numpy/BLAS)."""

    NAME: str
    HOST_LINEAR: bool


KERNELS: Tuple[str, ...] = tuple(sorted(
    name for family in (SelectiveKernels, KBestKernels, LogKernels, LinearKernels)
    for name, member in vars(family).items() if inspect.isfunction(member) and not name.startswith("_")))


def _parameters(fn) -> List[str]:
    return list(inspect.signature(fn).parameters)


def missing(backend) -> List[str]:
    """What ``backend`` (a module or object) lacks of :class:`Backend`: absent attributes, and
    kernels whose parameters are not named as in the interface (``"name(params)"``)."""
    out = [name for name in ("NAME", "HOST_LINEAR") if not hasattr(backend, name)]
    for name in KERNELS:
        impl = getattr(backend, name, None)
        if impl is None:
            out.append(name)
            continue
        want = _parameters(getattr(Backend, name))[1:]
        if _parameters(impl) != want:
            out.append(f"{name}({', '.join(want)})")
    return out
