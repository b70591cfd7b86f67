"""Deterministic fuzzing of the readers: ~500 mutated graph files and ~150 mutated ``--inputs``
files (see tests/fuzz_cases.py) each load or raise the library's error with one short line,
quickly. scripts/fuzz_files.py runs the same generator over >= 10,000 files under a memory cap."""

import os
import time

import pytest

from fuzz_cases import feed_mutants, mutants
from graphengine import io as files
from graphengine.errors import FeedError, GraphEngineError
from graphengine.ir import load

LIMITS = dict(max_json_bytes=1 << 20, max_member_bytes=1 << 20, memory_budget=1 << 22)
BOMB = (1 << 20) + 100


def _check(e: GraphEngineError, path: str):
    msg = str(e)
    assert "\n" not in msg and len(msg) < 1000, msg
    assert path in msg, msg


@pytest.mark.parametrize("seed", [0, 1])
def test_mutated_graph_files_load_or_fail_with_one_line(tmp_path, seed):
    path = str(tmp_path / "m.ge")
    outcomes = {"loaded": 0, "refused": 0}
    kinds = set()
    start = time.monotonic()
    with files.limits(**LIMITS):
        for kind, data in mutants(seed, 250, BOMB):
            kinds.add(kind)
            with open(path, "wb") as f:
                f.write(data)
            try:
                load(path)
                outcomes["loaded"] += 1
            except GraphEngineError as e:
                _check(e, path)
                outcomes["refused"] += 1
    assert time.monotonic() - start < 15
    assert outcomes["refused"] > 150 and outcomes["loaded"] > 5, outcomes  # both paths exercised
    assert len(kinds) >= 15, kinds
    assert os.listdir(tmp_path) == ["m.ge"]


def test_mutated_feed_files_read_or_fail_with_one_line(tmp_path):
    path = str(tmp_path / "f.npz")
    refused = 0
    with files.limits(**LIMITS):
        for kind, data in feed_mutants(0, 150, BOMB):
            with open(path, "wb") as f:
                f.write(data)
            try:
                with files.open_regular(path, path, FeedError) as f:
                    files.read_npz(f, path, FeedError)
            except FeedError as e:
                _check(e, path)
                refused += 1
    assert refused > 100
