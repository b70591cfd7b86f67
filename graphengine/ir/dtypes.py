"""The dtypes the IR knows, by name, and helpers to reason about them."""

import numpy as np

DTYPES = ("float32", "float64", "int32", "int64", "bool")
FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int32", "int64")


def dtype_name(dtype) -> str:
    """Canonical IR name of a numpy dtype (or dtype name); raises ValueError if unsupported.

    >>> dtype_name(np.float32), dtype_name("int64")
    ('float32', 'int64')
    """
    name = np.dtype(dtype).name
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {name!r} (supported: {', '.join(DTYPES)})")
    return name


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    return dtype in INT_DTYPES


def promote(*dtypes: str) -> str:
    """numpy-style type promotion restricted to the IR's dtypes.

    >>> promote("float32", "float64"), promote("int64", "float32")
    ('float64', 'float32')
    """
    if all(d in INT_DTYPES + ("bool",) for d in dtypes):
        return dtype_name(np.result_type(*dtypes))
    floats = [d for d in dtypes if d in FLOAT_DTYPES]
    return "float64" if "float64" in floats else "float32"
