"""Where graphengine's compiled CPU kernels are cached on disk, and the decorators that put them there.

The kernel modules decorate with :func:`njit` and :func:`vectorize` from here instead of
Numba's: with ``cache=True`` they set ``numba.config.CACHE_DIR`` to :func:`cache_dir` only while
the decorator runs (Numba picks a function's cache location at decoration time), so other Numba
code in the process and the process environment are untouched.

:func:`cache_dir` is ``<base>/<key>``:

- ``<base>``: ``$NUMBA_CACHE_DIR`` when the user sets it, else the user cache directory
  (``$XDG_CACHE_HOME/graphengine/numba``, default ``~/.cache/graphengine/numba``), which works
  for a read-only install; when it cannot be created, Numba's own default locations are used.
- ``<key>``: a hash of the source files of this package. Numba checks only a cached kernel's
  own file for changes, not the helpers of :mod:`graphengine.kernels.scalar` inlined into it;
  keying the directory on every kernel source means an edited helper gets a fresh cache
  instead of a stale one.

>>> import os
>>> os.path.basename(cache_dir()) == source_key()
True
>>> len(source_key())
16
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from pathlib import Path
from typing import Optional

import numba
from numba.core import config

PACKAGE = Path(__file__).resolve().parent


def hash_sources(package) -> str:
    """16 hex digits of the SHA-256 of every ``*.py`` file in ``package``, names and bytes."""
    h = hashlib.sha256()
    for path in sorted(Path(package).glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def source_key() -> str:
    """:func:`hash_sources` of the kernels package, computed once per process."""
    return hash_sources(PACKAGE)


def base_dir() -> Path:
    """``$NUMBA_CACHE_DIR`` if set, else the user cache directory for graphengine's kernels."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "graphengine" / "numba"


@functools.lru_cache(maxsize=None)
def cache_dir() -> Optional[str]:
    """The directory graphengine's kernels are cached in, or None when it cannot be created."""
    path = base_dir() / source_key()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(path)


@contextlib.contextmanager
def _caching_here():
    where = cache_dir()
    old = config.CACHE_DIR
    if where is not None:
        config.CACHE_DIR = where
    try:
        yield
    finally:
        config.CACHE_DIR = old


def njit(*args, **kwargs):
    """``numba.njit`` whose ``cache=True`` caches in :func:`cache_dir` (same arguments)."""
    if not kwargs.get("cache"):
        return numba.njit(*args, **kwargs)

    def decorate(fn):
        with _caching_here():
            return numba.njit(*args, **kwargs)(fn)
    return decorate


def vectorize(*args, **kwargs):
    """``numba.vectorize`` whose ``cache=True`` caches in :func:`cache_dir` (same arguments)."""
    def decorate(fn):
        with _caching_here() if kwargs.get("cache") else contextlib.nullcontext():
            return numba.vectorize(*args, **kwargs)(fn)
    return decorate
