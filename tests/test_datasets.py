"""The synthetic data sets (Du et al. (2023) §3, §5, §6): every labelling rule is re-checked on every
generated example by a plain-Python check written here, independently of the generators."""

import json
import os
import shutil

import numpy as np
import pytest

from graphengine.datasets import (DATASETS, SECTION5_TASKS, DatasetError, get_dataset, load_splits, save_splits)
from graphengine.errors import GraphEngineError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ independent label rules
def rule_first_token_repeated_once(row):
    return int(any(t == row[0] for t in row[1:]))


def rule_contains_1(row):
    return int(1 in list(row))


def rule_first_token_repeated_immediately(row):
    return int(row[1] == row[0])


def rule_first_token_repeated_last(row):
    return int(row[-1] == row[0])


def rule_adjacent_duplicate(row):
    return int(any(a == b for a, b in zip(row[:-1], row[1:])))


def rule_contains_token_set(k):
    return lambda row: int(all(t in set(row.tolist()) for t in range(1, k + 1)))


def rule_bin_count_ones(C, length):
    width = length // C

    def rule(row):
        c = list(row).count(1)
        for b in range(C):  # bins 1..w, w+1..2w, ...
            if b * width + 1 <= c <= (b + 1) * width:
                return b
        raise AssertionError(f"count {c} is in no bin")
    return rule


def check_every_example(ds, rule):
    for split_name, sp in ds:
        for i in range(len(sp)):
            assert sp.y[i] == rule(sp.x[i]), (split_name, i, sp.x[i].tolist(), int(sp.y[i]))


def check_tokens(ds, vocab_size, length):
    for _, sp in ds:
        assert sp.x.dtype == np.int64 and sp.y.dtype == np.int64
        assert sp.x.shape == (len(sp), length)
        assert sp.x.min() >= 1 and sp.x.max() <= vocab_size - 1  # never padding


# ------------------------------------------------------------------ §3 FirstTokenRepeatedOnce
@pytest.fixture(scope="module")
def ftro():
    return get_dataset("first_token_repeated_once")


def test_first_token_repeated_once_paper_setup(ftro):
    assert ftro.sizes == (7000, 1000, 2000)
    check_tokens(ftro, 20, 10)
    pooled = ftro.pooled()
    assert np.bincount(pooled.y).tolist() == [5000, 5000]
    for _, sp in ftro:  # not stratified: each split balanced only up to sampling noise
        assert abs(sp.y.mean() - 0.5) < 0.05
    assert set(np.unique(pooled.x[:, 0])) == set(range(1, 20))


def test_first_token_repeated_once_every_example(ftro):
    check_every_example(ftro, rule_first_token_repeated_once)
    for _, sp in ftro:
        for row, label, rep in zip(sp.x, sp.y, sp.meta["repeat_position"]):
            first = row[0]
            occurrences = [i for i, t in enumerate(row) if t == first]
            assert (len(occurrences) == 2) == (label == 1)
            assert len(occurrences) in (1, 2)
            if label == 1:
                assert occurrences[1] == rep and 1 <= rep <= 9
            else:
                assert rep == -1
            others = [t for i, t in enumerate(row) if i not in occurrences]
            assert all(t != first for t in others)


def test_first_token_repeated_once_repeat_positions_cover_1_to_9(ftro):
    rep = ftro.pooled().meta["repeat_position"]
    counts = np.bincount(rep[rep >= 0], minlength=10)
    assert counts[0] == 0 and (counts[1:] > 400).all()  # ~556 each of 5,000


# ------------------------------------------------------------------ §5 tasks
BINARY_RULES = {
    "contains_1": rule_contains_1,
    "first_token_repeated_immediately": rule_first_token_repeated_immediately,
    "first_token_repeated_last": rule_first_token_repeated_last,
    "adjacent_duplicate": rule_adjacent_duplicate,
    **{f"contains_token_set:{k}": rule_contains_token_set(k) for k in (1, 5, 10, 15, 20, 25, 30, 35)},
}


@pytest.mark.parametrize("name", sorted(BINARY_RULES))
def test_section5_binary_task(name):
    ds = get_dataset(name)
    assert ds.sizes == (3600, 360, 360) and ds.num_classes == 2
    check_tokens(ds, 60, 36)
    check_every_example(ds, BINARY_RULES[name])
    assert np.bincount(ds.pooled().y).tolist() == [2160, 2160]  # balanced pool
    for _, sp in ds:
        assert abs(sp.y.mean() - 0.5) < 0.1


def test_contains_token_set_records_missing_count():
    ds = get_dataset("contains_token_set:10")
    for _, sp in ds:
        for row, label, miss in zip(sp.x, sp.y, sp.meta["n_missing"]):
            assert miss == sum(t not in set(row.tolist()) for t in range(1, 11))
            assert (miss == 0) == (label == 1)


@pytest.mark.parametrize("k", [2, 5, 35])
def test_contains_token_set_ood(k):
    ds = get_dataset(f"contains_token_set_ood:{k}")
    assert ds.sizes == (3600, 360, 360)
    check_tokens(ds, 60, 36)
    check_every_example(ds, rule_contains_token_set(k))
    for split_name, sp in ds:
        assert np.bincount(sp.y).tolist() == [len(sp) // 2] * 2  # each split balanced exactly
        missing = np.array([sum(t not in set(row.tolist()) for t in range(1, k + 1)) for row in sp.x])
        np.testing.assert_array_equal(missing, sp.meta["n_missing"])
        np.testing.assert_array_equal(sp.meta["ood"], missing == 1)
        neg = missing[sp.y == 0]
        if split_name == "train":
            assert neg.min() >= 2  # in distribution only
        else:
            assert neg.min() == 1 and (neg == 1).sum() > 0  # the OOD negatives miss exactly one
            # negatives' overlap sizes 0..k-1 are balanced up to one example
            counts = np.bincount(k - neg, minlength=k)
            assert counts.max() - counts.min() <= 1
    train_neg = ds.train.meta["n_missing"][ds.train.y == 0]
    counts = np.bincount(k - train_neg, minlength=k - 1)
    assert len(counts) == k - 1 and counts.max() - counts.min() <= 1


def test_contains_token_set_ood_needs_two_set_tokens():
    with pytest.raises(DatasetError, match="k >= 2"):
        get_dataset("contains_token_set_ood:1")


@pytest.mark.parametrize("C", [2, 3, 4, 6, 9, 12, 18, 36])
def test_bin_count_ones(C):
    ds = get_dataset(f"bin_count_ones:{C}")
    assert ds.num_classes == C and ds.sizes == (3600, 360, 360)
    check_tokens(ds, 60, 36)
    check_every_example(ds, rule_bin_count_ones(C, 36))
    pooled = ds.pooled()
    assert np.bincount(pooled.y, minlength=C).tolist() == [4320 // C] * C  # exactly balanced pool
    np.testing.assert_array_equal(pooled.meta["count_ones"], (pooled.x == 1).sum(axis=1))
    assert pooled.meta["count_ones"].min() >= 1 and pooled.meta["count_ones"].max() <= 36
    for b in range(C):  # every count of each bin occurs
        w = 36 // C
        got = set(pooled.meta["count_ones"][pooled.y == b].tolist())
        assert got == set(range(b * w + 1, (b + 1) * w + 1))


def test_bin_count_ones_bins_by_hand():
    ds = get_dataset("bin_count_ones:4", sizes=(400, 40, 40), length=12, vocab_size=7)
    # width 3: counts 1-3 -> 0, 4-6 -> 1, 7-9 -> 2, 10-12 -> 3
    table = {1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: 1, 7: 2, 8: 2, 9: 2, 10: 3, 11: 3, 12: 3}
    p = ds.pooled()
    for row, label in zip(p.x, p.y):
        assert table[list(row).count(1)] == label


def test_ffoom():
    ds = get_dataset("ffoom")
    assert ds.sizes == (14000, 2000, 4000)
    for _, sp in ds:
        assert sp.x.dtype == np.float64 and sp.x.shape == (len(sp), 4)
        assert sp.x.min() >= 0.0 and sp.x.max() < 1.0
        for row, label in zip(sp.x, sp.y):
            assert label == (1 if row[0] > 0.5 else 0)
        assert abs(sp.y.mean() - 0.5) < 0.05
    # features independent and uniform: means near 0.5
    assert np.allclose(ds.pooled().x.mean(axis=0), 0.5, atol=0.01)


# ------------------------------------------------------------------ determinism, registry
ALL_NAMES = ["first_token_repeated_once", "ffoom", *SECTION5_TASKS]


@pytest.mark.parametrize("name", ["first_token_repeated_once", "ffoom", "contains_1", "adjacent_duplicate",
                                  "contains_token_set:5", "contains_token_set_ood:5", "bin_count_ones:9",
                                  "first_token_repeated_immediately", "first_token_repeated_last"])
def test_deterministic_by_seed(name):
    small = dict(sizes=(45, 9, 9))
    a, b, c = get_dataset(name, seed=3, **small), get_dataset(name, seed=3, **small), get_dataset(name, seed=4, **small)
    for (_, sa), (_, sb), (_, sc) in zip(a, b, c):
        np.testing.assert_array_equal(sa.x, sb.x)
        np.testing.assert_array_equal(sa.y, sb.y)
        for k in sa.meta:
            np.testing.assert_array_equal(sa.meta[k], sb.meta[k])
        assert not np.array_equal(sa.x, sc.x)


def test_section5_task_list_is_complete():
    assert len(SECTION5_TASKS) == 4 + 8 + 7 + 8
    for name in SECTION5_TASKS:
        assert name.partition(":")[0] in DATASETS


@pytest.mark.parametrize("name, params, msg", [
    ("nope", {}, "unknown dataset 'nope'"),
    ("contains_1:3", {}, "takes no ':' parameter"),
    ("contains_token_set:x", {}, "must be an integer"),
    ("contains_token_set:5", {"k": 6}, "contradicts the name"),
    ("contains_token_set:40", {}, "k must be in 1..36"),
    ("bin_count_ones:5", {}, "does not divide length 36"),
    ("bin_count_ones:9", {"sizes": (10, 1, 1)}, "does not divide the 12 examples"),
    ("contains_1", {"sizes": (10, 0, 1)}, "sizes\\[1\\] must be >= 1"),
    ("contains_1", {"sizes": (10, 1)}, "three split sizes"),
    ("contains_1", {"seed": -1}, "seed must be >= 0"),
    ("contains_1", {"seed": 1.5}, "seed must be an integer"),
    ("contains_1", {"colour": 1}, "unexpected keyword"),
])
def test_bad_arguments_give_one_line_errors(name, params, msg):
    with pytest.raises(GraphEngineError, match=msg) as e:
        get_dataset(name, **params)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ saving and the shipped files
def test_save_and_load_round_trip(tmp_path):
    ds = get_dataset("contains_token_set_ood:3", sizes=(20, 10, 10), length=8, vocab_size=9)
    card = save_splits(ds, tmp_path / "d")
    assert json.loads((tmp_path / "d" / "card.json").read_text()) == card
    back = load_splits(tmp_path / "d")
    assert back.name == ds.name and back.num_classes == 2 and back.info == ds.info
    for (_, a), (_, b) in zip(ds, back):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
        assert set(a.meta) == set(b.meta)
        for k in a.meta:
            np.testing.assert_array_equal(a.meta[k], b.meta[k])
    # the card's generator call regenerates the same data
    assert card["generator"].startswith("graphengine.datasets.get_dataset('contains_token_set_ood:3'")


def test_load_rejects_tampered_and_malformed_files(tmp_path):
    d = tmp_path / "d"
    save_splits(get_dataset("contains_1", sizes=(10, 4, 4), length=5), d)
    z = dict(np.load(d / "val.npz", allow_pickle=False))
    z["y"] = 1 - z["y"]
    np.savez_compressed(d / "val.npz", **z)
    with pytest.raises(DatasetError, match="val.npz: checksum differs"):
        load_splits(d)
    (d / "val.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="val.npz: not a readable .npz"):
        load_splits(d)
    (d / "card.json").write_text("{")
    with pytest.raises(DatasetError, match="card.json: not valid JSON"):
        load_splits(d)
    with pytest.raises(DatasetError, match="missing data set card"):
        load_splits(tmp_path / "nothing")


def test_load_never_unpickles(tmp_path):
    d = tmp_path / "d"
    save_splits(get_dataset("contains_1", sizes=(10, 4, 4), length=5), d)
    z = dict(np.load(d / "train.npz", allow_pickle=False))
    z["meta.evil"] = np.array([{"a": 1}] * 10, dtype=object)
    np.savez(d / "train.npz", **z)
    with pytest.raises(DatasetError, match="train.npz: not a readable .npz"):
        load_splits(d)


@pytest.mark.parametrize("directory", ["first_token_repeated_once", "bin_count_ones_9"])
def test_shipped_artefacts_match_the_generator(directory, tmp_path):
    path = os.path.join(REPO, "datasets", directory)
    shipped = load_splits(path)  # checks sizes, labels and checksums against the card
    card = json.loads(open(os.path.join(path, "card.json")).read())
    regenerated = get_dataset(card["name"], **{k: v for k, v in card["info"].items()
                                               if k not in ("source", "description", "sizes")},
                              sizes=tuple(card["info"]["sizes"]))
    for (_, a), (_, b) in zip(shipped, regenerated):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    total = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    assert total < 300_000
    shutil.copytree(path, tmp_path / "copy")
    assert load_splits(tmp_path / "copy").sizes == shipped.sizes


def test_dataset_card_readme_lists_the_shipped_data():
    text = open(os.path.join(REPO, "datasets", "README.md")).read()
    for needle in ("first_token_repeated_once", "bin_count_ones_9", "seed", "docs/method.md",
                   "semiring-backprop-exps", "Licence"):
        assert needle in text


def test_first_token_roles(ftro):
    from graphengine.datasets import first_token_roles

    roles = first_token_roles(ftro.val)
    first, repeat, other = roles["FirstToken"], roles["RepeatToken"], roles["OtherToken"]
    assert first.shape == (1000, 10)
    assert (first.astype(int) + repeat + other == 1).all()  # a partition of the positions
    for i, row in enumerate(ftro.val.x):
        assert first[i].tolist() == [True] + [False] * 9
        later = [j for j in range(1, 10) if row[j] == row[0]]
        assert np.flatnonzero(repeat[i]).tolist() == later
    assert int(repeat.sum()) == int(ftro.val.y.sum())
    with pytest.raises(DatasetError, match="repeat_position"):
        first_token_roles(get_dataset("contains_1", sizes=(4, 2, 2)).train)
