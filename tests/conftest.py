"""Test configuration: the CUDA simulator must be on before numba.cuda is first imported, and
the suite's small graphs run the CPU kernels (not the reference that small operations use by
default, graphengine.kernels.dispatch.min_work) so that the kernels stay tested;
tests/test_dispatch.py checks the default threshold."""

import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
os.environ.setdefault("GRAPHENGINE_KERNEL_MIN_WORK", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)
