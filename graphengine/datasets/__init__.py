"""Synthetic data sets of the paper (Du et al. (2023) §3, §5, §6), generated deterministically.

>>> from graphengine.datasets import get_dataset
>>> d = get_dataset("first_token_repeated_once")
>>> d.sizes, d.train.label_counts(2)[1] + d.val.label_counts(2)[1] + d.test.label_counts(2)[1]
((7000, 1000, 2000), 5000)
"""

from .base import SPLIT_NAMES, DatasetError, Split, Splits
from .io import dataset_card, load_splits, save_splits
from .tokens import first_token_roles
from .registry import DATASETS, SECTION5_TASKS, dataset_names, get_dataset
from . import sva_grammar  # noqa: F401,E402 - registers "sva_grammar"

__all__ = ["Split", "Splits", "DatasetError", "SPLIT_NAMES", "DATASETS", "SECTION5_TASKS", "dataset_names",
           "get_dataset", "save_splits", "load_splits", "dataset_card", "first_token_roles"]
