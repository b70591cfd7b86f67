"""Compiled kernels: each Jacobian structure × each semiring family, on the CPU (Numba
``@njit``) and on CUDA (``numba.cuda``), with the same algorithms and tie-breaking as the numpy
reference methods of :mod:`graphengine.semirings`. The engine reaches them through
``on_device``; ``backward(..., device="cpu" | "cuda" | "reference")`` picks the back end.

=====================  ==========================================================================
module                 contents
=====================  ==========================================================================
``dispatch``           ``on_device(semiring, device)``: the semiring with its reductions routed to
                       a back end; ``DEVICES`` = reference, cpu, cuda; ``DeviceError``
``backend``            the back-end interface (``Backend``): the kernels a back end provides, one
                       protocol per semiring family, and their shared conventions
``families``           host glue per semiring family (its ``kernel`` attribute): batching,
                       broadcasting, layouts, fallbacks to the reference
``scalar``             the scalar steps written once (a dense block's entry, the signed pair's ⊗,
                       the k-best list operations...) and compiled for both back ends
``cpu``                the CPU back end; kernels in ``cpu_select`` (max pair, max-abs, max-plus,
                       Boolean), ``cpu_block`` (max pair and max-abs dense blocks, exactly
                       pruned), ``cpu_kbest`` (k-best lists), ``cpu_log`` (log-sum-exp
                       families, entropy / absolute dense blocks)
``cuda``               the CUDA back end (runs in the Numba CUDA simulator too)
``pointers``           compiled index plumbing of the walk (gathers, masking of unreached elements)
``cache``              where the CPU kernels are cached on disk (a user cache directory keyed on
                       the kernels' sources) and the ``njit``/``vectorize`` the kernel modules use
=====================  ==========================================================================

How the structures map onto kernels: a *contraction* is ``matmul`` (argmax-tracking, register
blocked and cache-tiled, parallel over groups of output rows for the selective families; BLAS for the linear ones on the
CPU); a *dense block* is ``matmul_block``, which works from the factored form
(:class:`graphengine.ir.jacobian.LowRankBlock`: softmax, log-softmax, layer norm) without
building the n×n blocks; *diagonal* and *reduction/broadcast* are ``scale`` plus ``sum_last``;
*movement* is ``scatter`` (one pass, or a sorted segment reduction on CUDA), and a bijective
movement (reshape, permute...) only moves arrays.

>>> import numpy as np
>>> from graphengine.semirings import get_semiring
>>> on_device(get_semiring("maxabs"), "cpu").matmul((np.array([[1.0, 2.0]]),), np.array([[3.0], [-1.0]]))
((array([[3.]]),), (array([[0]]),))
"""

from .dispatch import DEVICES, DeviceError, on_device

__all__ = ["DEVICES", "DeviceError", "on_device"]
