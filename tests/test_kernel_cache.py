"""The on-disk kernel cache: its location, its key on the kernels' sources, and `graphengine warmup`."""

import shutil

import pytest
from numba.core import config

from graphengine.cli.main import main
from graphengine.kernels import cache, cpu_select


def test_key_changes_with_any_kernel_source(tmp_path):
    shutil.copytree(cache.PACKAGE, tmp_path / "k", ignore=shutil.ignore_patterns("__pycache__"))
    before = cache.hash_sources(tmp_path / "k")
    assert before == cache.source_key()
    with open(tmp_path / "k" / "scalar.py", "a") as f:  # a helper inlined into cached callers
        f.write("\n# edited\n")
    assert cache.hash_sources(tmp_path / "k") != before


def test_location_respects_numba_cache_dir_else_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "user"))
    assert cache.base_dir() == tmp_path / "user"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.base_dir() == tmp_path / "xdg" / "graphengine" / "numba"


def test_kernels_cache_in_the_keyed_directory_without_touching_numba_config():
    where = cache.cache_dir()
    assert where is not None and where.endswith(cache.source_key())
    assert cpu_select.scatter_select._cache._cache_path.startswith(where)
    before = config.CACHE_DIR

    @cache.njit(cache=True)
    def twice(x):
        return 2 * x
    assert config.CACHE_DIR == before
    assert twice._cache._cache_path.startswith(where)
    assert twice(3) == 6


def test_warmup_command(capsys):
    assert main(["warmup", "--semiring", "real,maxabs"]) == 0
    out = capsys.readouterr().out
    assert "kernel cache:" in out and "maxabs" in out and "warm: 2 semirings" in out
    assert main(["warmup", "--semiring", "real,nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphengine: error: --semiring: unknown semiring 'nope'") and err.count("\n") == 1
