"""The CPU back end: Numba ``@njit`` kernels implementing
:class:`graphengine.kernels.backend.Backend`, the interface that
:mod:`graphengine.kernels.families` calls (the CUDA back end, :mod:`graphengine.kernels.cuda`,
implements the same one). The kernels live in ``cpu_select``, ``cpu_kbest``, ``cpu_log`` and
``cpu_block``; this module adds the thread gate and the numpy/BLAS pieces.

Linear semirings stay on numpy/BLAS on the CPU (``HOST_LINEAR``): the reference methods already
do their contractions as matrix products of transformed weights, so the linear families call
only the dense-block kernels here (``matmul_sum`` and ``scatter_sum`` complete the interface).

>>> import numpy as np
>>> o = np.empty(2); p = np.empty(2, np.int64)
>>> select_last(np.array([[1.0, 3.0, 3.0], [-np.inf, -np.inf, -np.inf]]), 1, o, p)
>>> o.tolist(), p.tolist()
([3.0, -inf], [1, 0])
"""

from __future__ import annotations

import ctypes
import os

import numba
import numpy as np

from . import cpu_block, cpu_kbest, cpu_log, cpu_select
from .cpu_select import group_size, scale_pair_hi, scale_pair_lo, scatter_select

NAME = "cpu"
HOST_LINEAR = True  # real/absolute/count/entropy contractions, sums and scatters use the numpy reference

# Below this many inner iterations a parallel kernel runs on one thread: waking the pool costs
# more than it saves, and on a busy machine every parallel region can wait a scheduler slice.
PARALLEL_MIN_WORK = int(os.environ.get("GRAPHENGINE_PARALLEL_MIN_WORK", 1 << 22))


_pool_started = False


def _numba_threads() -> int:
    """``numba.get_num_threads()``, starting Numba's thread pool on the first call without
    changing the calling thread's OpenMP thread count.

    Numba's OpenMP layer calls ``omp_set_num_threads(NUMBA_NUM_THREADS)`` when its pool starts.
    With torch loaded, both share one OpenMP runtime, so a caller's ``torch.set_num_threads(1)``
    silently became 2 after graphengine's first parallel kernel: a model trained next to an
    analysis then ran two OpenMP threads per process and oversubscribed the cores. The count is
    read before the pool starts and put back after, through ``libgomp.so.1`` (the runtime already
    loaded under that name, else the system's; where there is none, the pool just starts, and a
    runtime under another name is left as Numba sets it)."""
    global _pool_started
    if not _pool_started:
        try:
            gomp = ctypes.CDLL("libgomp.so.1")  # the runtime already loaded, if any (matched by soname)
            before = gomp.omp_get_max_threads()
        except (OSError, AttributeError):
            gomp = None
        threads = numba.get_num_threads()  # starts the pool
        if gomp is not None and gomp.omp_get_max_threads() != before:
            gomp.omp_set_num_threads(before)
        _pool_started = True
        return threads
    return numba.get_num_threads()


def _gated(kernel, work):
    def launch(*args):
        threads = _numba_threads()
        if threads == 1 or work(*args) >= PARALLEL_MIN_WORK:
            return kernel(*args)
        numba.set_num_threads(1)
        try:
            return kernel(*args)
        finally:
            numba.set_num_threads(threads)
    launch.__name__, launch.__doc__, launch.__wrapped__ = kernel.__name__, kernel.__doc__, kernel
    return launch


_matmul_pair = _gated(cpu_select.matmul_pair, lambda a0, a1, w, ia, iw, o0, *r: 2 * o0.size * a0.shape[2])
_matmul_max = _gated(cpu_select.matmul_max, lambda a, w, ia, iw, plus, o, *r: o.size * a.shape[2])
select_last = _gated(cpu_select.select_last, lambda a, *r: a.size)
_block_pair = _gated(cpu_block.block_pair, lambda a0, *r: 2 * a0.size * a0.shape[1])
_block_pair_scan = _gated(cpu_block.block_pair_scan, lambda a0, *r: 2 * a0.size * a0.shape[1])
_block_maxabs = _gated(cpu_block.block_maxabs, lambda a, *r: a.size * a.shape[1])
_block_maxabs_scan = _gated(cpu_block.block_maxabs_scan, lambda a, *r: a.size * a.shape[1])
kbest_rows = _gated(cpu_kbest.kbest_rows, lambda c, q, k, *r: c.size * k)
kbest_matmul = _gated(cpu_kbest.kbest_matmul, lambda c, w, ia, iw, k, s, o, p: o.size * c.shape[2] * k)
kbest_scatter = _gated(cpu_kbest.kbest_scatter, lambda c, order, starts, k, *r: c.size * k)
logsumexp_last = _gated(cpu_log.logsumexp_last, lambda a, o: 8 * a.size)
_matmul_log = _gated(cpu_log.matmul_log, lambda l, h, lw, hw, ia, iw, with_h, ol, oh: 8 * (1 + with_h) * ol.size * l.shape[2])
_block_abs = _gated(cpu_log.block_abs, lambda d, u, v, b0, aj: aj.size * u.shape[2])
_block_entropy_lifted = _gated(cpu_log.block_entropy_lifted, lambda z, r, aj, *x: 3 * aj.size)
block_absolute = _gated(cpu_log.block_absolute, lambda z, *r: z.size * z.shape[1])
scatter_logsumexp = cpu_log.scatter_logsumexp


def scale_pair(a0, a1, w):
    """⟨M⁺, M⁻⟩ ⊗ w elementwise with numpy broadcasting."""
    with np.errstate(invalid="ignore"):  # the vectorized select also evaluates 0̄ · 0 (unused)
        return scale_pair_hi(a0, a1, w), scale_pair_lo(a0, a1, w)


def matmul_sum(a, w, ia, iw, o):
    """``o[b] = a[ia[b]] @ w[iw[b]]`` (BLAS)."""
    np.matmul(a[ia], w[iw], out=o)


def matmul_pair(a0, a1, w, ia, iw, o0, o1, p0, p1):
    """Signed max pair contraction (:func:`graphengine.kernels.cpu_select.matmul_pair`)."""
    _matmul_pair(a0, a1, w, ia, iw, o0, o1, p0, p1, group_size(o0.shape[1], numba.get_num_threads()))


def matmul_max(a, w, ia, iw, plus, o, p):
    """Max-abs / max-plus contraction (:func:`graphengine.kernels.cpu_select.matmul_max`)."""
    _matmul_max(a, w, ia, iw, plus, o, p, group_size(o.shape[1], numba.get_num_threads()))


def block_pair(a0, a1, d, u, v, o0, o1, p0, p1):
    """Signed max pair through factored blocks (:func:`graphengine.kernels.cpu_block.block_pair`,
    pruned from ``cpu_block.PRUNE_FROM`` columns; narrower blocks run the plain scan, so they never
    compile the pruned kernel)."""
    if a0.shape[1] >= cpu_block.PRUNE_FROM:
        _block_pair(a0, a1, d, u, v, o0, o1, p0, p1, cpu_block.PRUNE_FROM)
    else:
        _block_pair_scan(a0, a1, d, u, v, o0, o1, p0, p1)


def block_maxabs(a, d, u, v, o, p):
    """Max-abs through factored blocks (:func:`graphengine.kernels.cpu_block.block_maxabs`)."""
    if a.shape[1] >= cpu_block.PRUNE_FROM:
        _block_maxabs(a, d, u, v, o, p, cpu_block.PRUNE_FROM)
    else:
        _block_maxabs_scan(a, d, u, v, o, p)


def matmul_logsumexp(a, lw, ia, iw, o):
    """``o = log Σ_n exp(a + lw)`` per output element."""
    _matmul_log(a, a, lw, lw, ia, iw, False, o, o)


def matmul_logentropy(l, h, lw, hw, ia, iw, ol, oh):
    """``ol = log Σ_n exp(l + lw)``, ``oh = Σ_n exp(l + lw - ol)·(h + hw)`` (0 where ``ol`` is not finite)."""
    _matmul_log(l, h, lw, hw, ia, iw, True, ol, oh)


def scatter_sum(values, index, o):
    """``o[s] = Σ values[index == s]``."""
    o[...] = np.bincount(index, weights=values, minlength=o.shape[0])


BLOCK_CHUNK = 1 << 16  # dense-block entries lifted at a time: |J| and log|J| stay in the L2 cache


def block_entropy(z, r, d, u, v, oz, orr):
    """Entropy through factored blocks: ``oz = z·|J|``, ``orr = r·|J| + z·(-|J| log|J|)``. The
    blocks are lifted a few at a time (``|J|`` compiled, ``log|J|`` by numpy's vectorised log),
    then contracted; each entry's log is taken once."""
    B, n = z.shape
    step = min(B, max(numba.get_num_threads(), BLOCK_CHUNK // max(1, n * n)))
    aj = np.empty((step, n, n), z.dtype)  # float32 values: float32 blocks, and float32 logs
    lg = np.empty((step, n, n), z.dtype)
    for b0 in range(0, B, step):
        cb = min(step, B - b0)
        _block_abs(d, u, v, b0, aj[:cb])
        with np.errstate(divide="ignore"):
            np.log(aj[:cb], out=lg[:cb])
        _block_entropy_lifted(z, r, aj[:cb], lg[:cb], b0, oz, orr)


def block_real(a, d, u, v, o):
    """Real semiring through factored blocks in O(n·R): ``a·J = a∘d + Σ_t (a·u_t) v_t``."""
    au = np.einsum("bn,bnr->br", a, u)
    o[...] = a * d + np.einsum("br,bnr->bn", au, v)


__all__ = ["NAME", "HOST_LINEAR", "matmul_pair", "matmul_max", "select_last", "scatter_select", "block_pair",
           "block_maxabs", "scale_pair", "kbest_rows", "kbest_matmul", "kbest_scatter", "logsumexp_last",
           "matmul_logsumexp", "matmul_logentropy", "scatter_logsumexp", "block_entropy", "block_absolute",
           "matmul_sum", "scatter_sum", "block_real"]
