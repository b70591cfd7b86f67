"""The docstring examples of every graphengine module run and give what they show."""

import doctest
import importlib
import pkgutil

import pytest

import graphengine

OPTIONAL = ("torch", "onnx", "transformers", "tokenizers", "safetensors", "numba.cuda", "dask", "matplotlib")

MODULES = sorted(m.name for m in pkgutil.walk_packages(graphengine.__path__, "graphengine."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as e:  # a frontend whose optional extra is not installed
        if any(dep in str(e) for dep in OPTIONAL):
            pytest.skip(f"{name} needs an optional extra: {e}")
        raise
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
