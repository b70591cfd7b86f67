"""Data sets by name: ``get_dataset("contains_token_set:5", seed=0)``.

A name is a base name, optionally followed by ``:`` and the value of the task's one structural
parameter (``k`` for the token-set tasks, ``num_classes`` for BinCountOnes). Keyword arguments
override the generator's defaults (``seed``, ``sizes``, ``length``, ``vocab_size`` ...).

>>> d = get_dataset("bin_count_ones:9", sizes=(9, 9, 18))
>>> d.name, d.num_classes, d.sizes
('bin_count_ones:9', 9, (9, 9, 18))
>>> "contains_token_set:35" in SECTION5_TASKS
True
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional, Tuple

from . import tokens
from .base import DatasetError, Splits

__all__ = ["DATASETS", "get_dataset", "SECTION5_TASKS", "dataset_names"]


class DatasetSpec(NamedTuple):
    generator: Callable[..., Splits]
    suffix_param: Optional[str]  # the parameter a ":value" suffix sets
    section: str


DATASETS: Dict[str, DatasetSpec] = {
    "first_token_repeated_once": DatasetSpec(tokens.first_token_repeated_once, None, "§3"),
    "contains_1": DatasetSpec(tokens.contains_1, None, "§5"),
    "first_token_repeated_immediately": DatasetSpec(tokens.first_token_repeated_immediately, None, "§5"),
    "first_token_repeated_last": DatasetSpec(tokens.first_token_repeated_last, None, "§5"),
    "adjacent_duplicate": DatasetSpec(tokens.adjacent_duplicate, None, "§5"),
    "contains_token_set": DatasetSpec(tokens.contains_token_set, "k", "§5"),
    "contains_token_set_ood": DatasetSpec(tokens.contains_token_set_ood, "k", "§5"),
    "bin_count_ones": DatasetSpec(tokens.bin_count_ones, "num_classes", "§5"),
    "ffoom": DatasetSpec(tokens.ffoom, None, "§6"),
}

CONTAINS_TOKEN_SET_K = (1, 5, 10, 15, 20, 25, 30, 35)
BIN_COUNT_ONES_C = (2, 3, 4, 6, 9, 12, 18, 36)

#: The §5 (MDL vs entropy) tasks in the paper's order. ContainsTokenSetOOD needs k >= 2, so
#: its k = 1 variant does not exist.
SECTION5_TASKS: Tuple[str, ...] = (
    "contains_1", "first_token_repeated_immediately", "first_token_repeated_last", "adjacent_duplicate",
    *(f"contains_token_set:{k}" for k in CONTAINS_TOKEN_SET_K),
    *(f"contains_token_set_ood:{k}" for k in CONTAINS_TOKEN_SET_K if k >= 2),
    *(f"bin_count_ones:{c}" for c in BIN_COUNT_ONES_C),
)


def dataset_names() -> Tuple[str, ...]:
    """Base names, with ``:K`` / ``:C`` where the name takes a parameter."""
    return tuple(n + {"k": ":K", "num_classes": ":C"}.get(s.suffix_param, "") for n, s in DATASETS.items())


def get_dataset(name: str, **params) -> Splits:
    """Generate the data set ``name`` (see :data:`DATASETS`); ``params`` go to its generator."""
    if not isinstance(name, str):
        raise DatasetError(f"dataset name must be a string, got {name!r}")
    base, sep, suffix = name.partition(":")
    spec = DATASETS.get(base)
    if spec is None:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(dataset_names())})")
    if sep:
        if spec.suffix_param is None:
            raise DatasetError(f"dataset {base!r} takes no ':' parameter, got {name!r}")
        try:
            value = int(suffix)
        except ValueError:
            raise DatasetError(f"dataset {name!r}: {spec.suffix_param} after ':' must be an integer") from None
        if spec.suffix_param in params and params[spec.suffix_param] != value:
            raise DatasetError(f"dataset {name!r}: {spec.suffix_param}={params[spec.suffix_param]!r} "
                               f"contradicts the name")
        params[spec.suffix_param] = value
    try:
        return spec.generator(**params)
    except TypeError as e:  # an unknown keyword
        raise DatasetError(f"dataset {base!r}: {e}") from None
