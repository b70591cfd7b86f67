"""The dataset command (issue 14): records checked against torch autograd and the path walk,
the versioned record format, resume after kill -9, the output-directory lock and a killed
worker on a real 2-worker Dask LocalCluster, the summary, and one-line errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("tokenizers", reason="the tiny model's tokenizer is a tokenizers WordLevel model")
pytest.importorskip("safetensors", reason="the tiny model is stored as safetensors")

from graphengine.runner.schema import validate_record  # noqa: E402
from graphengine.runner.store import RunLockedError, RunStore, read_records  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "key", "keys", "to", "cabinet", "cabinets", "is", "are",
         "on", "table", "tables", "near", "."]
CONFIG = {"model_type": "bert", "vocab_size": len(WORDS), "hidden_size": 16, "num_hidden_layers": 2,
          "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32, "hidden_act": "gelu",
          "type_vocab_size": 2, "layer_norm_eps": 1e-12}
SENTENCES = [("the keys to the cabinet [MASK] on the table .", "are", "is"),
             ("the key [MASK] on the table .", "is", "are"),
             ("the key to the cabinets [MASK] near the tables .", "is", "are"),
             ("the keys [MASK] near the cabinet .", "are", "is")]


def make_model(d):
    """A random 2-layer BERT with an MLM head, saved as a Hugging Face directory."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    from graphengine.models import BertConfig, random_bert_weights

    os.makedirs(d, exist_ok=True)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.add_special_tokens(WORDS[:5])
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(CONFIG, f)
    w = random_bert_weights(BertConfig.from_hf(CONFIG), 0, head="mlm")
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in w.items()}, os.path.join(d, "model.safetensors"))
    return d


def make_data(path, n):
    with open(path, "w", encoding="utf-8") as f:
        f.write("id\ttext\tgood\tbad\n")
        for i in range(n):
            s, g, b = SENTENCES[i % len(SENTENCES)]
            f.write(f"ex{i}\t{s}\t{g}\t{b}\n")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    return make_model(str(d / "model")), make_data(str(d / "data.tsv"), 10)


def ids_in(path):
    return [r["id"] for r in read_records(path)]


def cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return [sys.executable, "-m", "graphengine", *args], env


# ------------------------------------------------------------------ records against oracles
def test_records_match_torch_autograd_and_their_paths(tiny, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors.numpy import load_file

    from graphengine.runner.run import run_dataset

    model, data = tiny
    res = run_dataset(model, data, str(tmp_path / "out"), target="good", foil="bad", workers=0, quiet=True,
                      semirings=["real", "max", "entropy"])
    assert res["new_records"] == 10
    recs = read_records(res["records_path"])
    assert [validate_record(r) for r in recs] == [[]] * 10
    cfg = transformers.BertConfig.from_dict(CONFIG, attn_implementation="eager")
    tm = transformers.BertForMaskedLM(cfg).double().eval()
    state = {k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in load_file(f"{model}/model.safetensors").items()}
    tm.load_state_dict({("bert." + k if not k.startswith("cls.") else k): v for k, v in state.items()}, strict=False)
    tm.cls.predictions.decoder.weight = tm.bert.embeddings.word_embeddings.weight
    for r in recs[:4]:
        ids = torch.tensor([[WORDS.index(t) for t in r["tokens"]]])
        m = r["tokens"].index("[MASK]")
        good, bad = WORDS.index(SENTENCES[r["index"] % 4][1]), WORDS.index(SENTENCES[r["index"] % 4][2])
        store = {}
        h = tm.bert.embeddings.word_embeddings.register_forward_hook(lambda mod, i, o: store.setdefault("e", o))
        store.clear()
        logits = tm(input_ids=ids).logits
        h.remove()
        e = store["e"]
        e.retain_grad()
        q = logits[0, m, good] - logits[0, m, bad]
        q.backward()
        q = q.detach()
        g = e.grad[0].numpy()
        scale = np.abs(g).max()
        assert r["qoi"]["value"] == pytest.approx(float(q), rel=1e-6, abs=1e-9)
        assert r["correct"] == (float(q) > 0)
        np.testing.assert_allclose(r["stats"]["grad_norm"], np.linalg.norm(g, axis=-1), rtol=1e-5, atol=1e-7 * scale)
        gx = (g * e.detach()[0].numpy()).sum(-1)
        np.testing.assert_allclose(r["stats"]["grad_x_input"], gx, rtol=1e-5,
                                   atol=1e-7 * np.abs(gx).max())
        # the top path: its product of local derivatives is its weight, and that is the best M+
        p = r["paths"][0]
        prod = np.prod([s["local_derivative"] for s in p["steps"] if s["local_derivative"] is not None])
        end = p["steps"][-1]["element"]
        assert p["steps"][-1]["name"] == "logits" and end[:2] == [0, m] and end[2] in (good, bad)
        seed = 1.0 if end[2] == good else -1.0             # the QoI's coefficient of the element it ends at
        assert p["weight"] == pytest.approx(seed * prod, rel=1e-9)
        assert p["weight"] == pytest.approx(max(r["stats"]["max_plus"]), rel=1e-6)
        assert p["token"] == int(np.argmax(r["stats"]["max_plus"]))
        assert len(r["branches"]) == len(r["tokens"]) and all(len(b) == 2 for b in r["branches"])
        assert all(h > 0 for h in r["stats"]["entropy"])


def test_schema_validation_names_the_broken_field(tiny, tmp_path):
    from graphengine.runner.run import run_dataset

    model, data = tiny
    res = run_dataset(model, data, str(tmp_path / "o"), qoi="logits[0,{mask},{tok:good}]", workers=0, quiet=True,
                      semirings=["max"], limit=2)
    r = read_records(res["records_path"])[0]
    assert validate_record(r) == [] and "correct" not in r and set(r["stats"]) == {"max_plus"}
    assert validate_record({**r, "version": 2}) == ["version: expected 1"]
    assert validate_record({**r, "stats": {"max_plus": [1.0]}}) == [f"stats.max_plus: 1 values for {len(r['tokens'])} tokens"]
    assert validate_record({**r, "id": 3}) == ["id: expected a non-empty string"]
    assert validate_record({**r, "paths": [{**r["paths"][0], "token": 99}]})[0].startswith("paths[0]")
    assert validate_record({k: v for k, v in r.items() if k != "timing"}) == ["timing: expected an object with total seconds"]


# ------------------------------------------------------------------ store
def test_store_lock_refuses_a_second_holder_and_resume_cuts_a_torn_line(tmp_path):
    d = str(tmp_path / "s")
    with RunStore(d) as st:
        st.append({"id": "a"})
        with pytest.raises(RunLockedError, match=f"in use by another run \\(pid {os.getpid()}\\)") as e:
            RunStore(d).open()
        assert "\n" not in str(e.value)
    with open(os.path.join(d, "records.jsonl"), "a") as f:
        f.write('{"id": "b", "x"')                       # a write cut short by kill -9
    with RunStore(d) as st:
        assert st.done == {"a"}
        assert st.append({"id": "b"}) and not st.append({"id": "a"})
    assert ids_in(os.path.join(d, "records.jsonl")) == ["a", "b"]


# ------------------------------------------------------------------ Dask: kill -9, lock, worker fault
def _wait_for(pred, timeout, proc=None):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        if proc is not None and proc.poll() is not None:
            return pred()
        time.sleep(0.05)
    return False


def test_kill9_mid_run_then_resume_every_example_once_and_a_concurrent_run_is_refused(tiny, tmp_path):
    pytest.importorskip("distributed")
    model, _ = tiny
    n = 40
    data = make_data(str(tmp_path / "d.tsv"), n)
    out = str(tmp_path / "out")
    rec = os.path.join(out, "records.jsonl")
    argv, env = cli("dataset", "run", model, "--data", data, "--target", "good", "--foil", "bad", "--workers", "2",
                    "--quiet", "-o", out)
    a = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert _wait_for(lambda: os.path.exists(rec) and len(ids_in(rec)) >= 2, 120, a), a.communicate()[1]
        assert a.poll() is None, "the run finished before it could be killed"
        os.kill(a.pid, signal.SIGKILL)                  # mid-run: records are arriving from the workers
        a.wait(timeout=30)
    finally:
        try:
            os.killpg(a.pid, signal.SIGKILL)           # orphaned workers of the killed run
        except ProcessLookupError:
            pass
    before = ids_in(rec)
    assert 2 <= len(before) < n and len(set(before)) == len(before)
    # resume; while it holds the directory a second run is refused with one line
    c = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: len(ids_in(rec)) > len(before), 120, c)
    b = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    c_out, c_err = c.communicate(timeout=300)
    assert c.returncode == 0, c_err
    assert b.returncode == 2 and b.stdout == "", b.stderr
    assert b.stderr == f"graphengine: error: {out} is in use by another run (pid {c.pid}); wait for it to finish or " \
                       f"choose another output directory\n"
    after = ids_in(rec)
    assert sorted(after) == sorted(f"ex{i}" for i in range(n))     # every example exactly once
    assert after[:len(before)] == before
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert [r["status"] for r in manifest["runs"]] == ["running", "complete"]   # the killed run never finished
    assert manifest["runs"][1]["new_records"] == n - len(before) and manifest["records"] == n


def test_a_worker_killed_mid_run_loses_nothing(tiny, tmp_path):
    pytest.importorskip("distributed")
    psutil = pytest.importorskip("psutil")
    from graphengine.runner.run import run_dataset

    model, _ = tiny
    data = make_data(str(tmp_path / "d.tsv"), 16)
    killed = []
    seen = []
    after = []

    def kill_one_worker(task, records):
        seen.append(task.key)
        if killed:
            after.extend(r["timing"]["worker"].rsplit(":", 1)[1] for r in records if "timing" in r)
        if len(seen) == 3 and not killed:
            workers = [p for p in psutil.Process().children(recursive=True)
                       if "spawn_main" in " ".join(p.cmdline())]
            assert len(workers) == 2
            workers[0].send_signal(signal.SIGKILL)
            killed.append(str(workers[0].pid))

    res = run_dataset(model, data, str(tmp_path / "out"), target="good", foil="bad", workers=2, quiet=True,
                      on_records=kill_one_worker)
    assert killed and len(seen) == 16
    ids = ids_in(res["records_path"])
    assert sorted(ids) == sorted(f"ex{i}" for i in range(16)) and res["new_records"] == 16
    # the 13 examples after the kill were all computed, none by the dead worker (a record can
    # still arrive from it if it finished just before the signal: at most the first one)
    assert len(after) == 13 and killed[0] not in after[1:]


# ------------------------------------------------------------------ summary and the command line
def test_summarize_and_command_line(tiny, tmp_path, capsys):
    from graphengine.cli import main

    model, data = tiny
    out = str(tmp_path / "out")
    assert main(["dataset", "run", model, "--data", data, "--target", "good", "--foil", "bad", "--workers", "0",
                 "--quiet", "--limit", "6", "-o", out]) == 0
    assert "6 of 6 examples done (6 new" in capsys.readouterr().out
    assert main(["dataset", "summarize", out]) == 0
    s = json.load(open(os.path.join(out, "summary.json")))
    recs = read_records(os.path.join(out, "records.jsonl"))
    assert s["format"] == "graphengine.dataset.summary" and s["version"] == 1 and s["records"] == 6
    assert s["accuracy"]["accuracy"] == pytest.approx(np.mean([r["correct"] for r in recs]))
    per_example = [np.mean(r["stats"]["entropy"]) for r in recs]
    assert s["entropy"]["mean"] == pytest.approx(np.mean(per_example))
    layer0 = [t[0] for r in recs for t in r["branches"]]
    assert s["branches"][0]["V"] == pytest.approx(layer0.count("V") / len(layer0))
    page = open(os.path.join(out, "summary.html"), encoding="utf-8").read()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2
    assert not re.findall(r'(?:src|href)\s*=\s*"(?!#)', page) and "<script" not in page and "<link" not in page
    assert "Accuracy (QoI &gt; 0)" in page
    # a rerun with other options is refused with one line; so are bad arguments
    capsys.readouterr()
    assert main(["dataset", "run", model, "--data", data, "--target", "good", "--workers", "0", "-o", out]) == 2
    assert capsys.readouterr().err.startswith("loading the model")     # stage notices without --quiet
    assert main(["dataset", "run", model, "--data", data, "--target", "good", "--workers", "0", "-o", out,
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a run with other settings (foil: 'bad' (now None)" in err
    for argv, msg in ((["--foil", "bad", "--qoi", "logits[0,0,0]"], "--foil needs --target"),
                      (["--qoi", "x[0]", "--data", str(tmp_path / "nope.tsv")], "nope.tsv: no such file"),
                      (["--qoi", "x[0]", "--semiring", "bogus"], "--semiring")):
        full = ["dataset", "run", model, "--data", data, "-o", str(tmp_path / "o2"), "--workers", "0", "--quiet", *argv]
        assert main(full) == 2
        err = capsys.readouterr().err
        assert err.startswith("graphengine: error:") and msg in err and err.count("\n") == 1
    assert main(["dataset", "summarize", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
