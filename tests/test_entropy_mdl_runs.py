"""§5.3 runs: parallel jobs give the records of one process, reruns resume, the report over
partial results names what is missing and tests the paper's claims with n stated, and the
archive copies real (tiny) run records verbatim and regenerates the marked docs section."""

import json
import os
import shutil
import sys

import pytest

from graphengine.cli import main
from graphengine.experiments import entropy_mdl as em
from graphengine.experiments import entropy_mdl_archive as archive
from graphengine.experiments.entropy_mdl_report import aggregate, claims

REPO = os.path.join(os.path.dirname(__file__), os.pardir)
TINY = dict(tasks=("contains_1", "bin_count_ones:2"), sizes=(24, 12, 12), epochs=1, n_seeds=1, hidden_size=8,
            num_heads=2, num_layers=1, intermediate_size=8)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The tiny study run in this process (workers=1): (out folder, results document)."""
    pytest.importorskip("transformers", reason="BERT training needs the experiments extra (transformers)")
    out = str(tmp_path_factory.mktemp("emdl") / "one")
    return out, em.run(out=out, workers=1, progress=False, **TINY)


def _records(out, drop=("timings_s",)):
    folder = os.path.join(out, "runs")
    return {n: {k: v for k, v in json.load(open(os.path.join(folder, n))).items() if k not in drop}
            for n in sorted(os.listdir(folder))}


def test_two_workers_give_the_records_of_one_and_reruns_resume(one_process, tmp_path):
    pytest.importorskip("distributed", reason="parallel jobs need the dist extra (dask[distributed])")
    out1, doc1 = one_process
    assert doc1["workers"] == 1 and doc1["jobs_run"] == 2 and doc1["coverage"]["complete"]
    out2 = str(tmp_path / "two")
    doc2 = em.run(out=out2, workers=2, progress=False, **TINY)
    assert doc2["workers"] == 2 and doc2["jobs_run"] == 2 and doc2["n_resumed"] == 0
    first = _records(out1)
    assert len(first) == 2 and _records(out2) == first  # exactly: every job trains on one thread, seeded
    for rec in json.load(open(os.path.join(out2, "results.json")))["runs"]:
        assert rec["timings_s"]["job"] > 0 and rec["timings_s"]["entropy"] > 0

    stamps = {n: os.stat(os.path.join(out2, "runs", n)).st_mtime_ns for n in first}
    again = em.run(out=out2, workers=2, progress=False, **TINY)
    assert again["jobs_run"] == 0 and again["n_resumed"] == 2 and again["workers"] == 0
    assert {n: os.stat(os.path.join(out2, "runs", n)).st_mtime_ns for n in first} == stamps

    os.remove(os.path.join(out2, "runs", "contains_1_seed0.json"))  # interrupted after training this model
    resumed = em.run(out=out2, progress=False, **TINY)  # default workers: one pending job, so this process
    assert resumed["jobs_run"] == 1 and resumed["n_resumed"] == 1 and resumed["workers"] == 1
    rec = json.load(open(os.path.join(out2, "runs", "contains_1_seed0.json")))
    assert rec["model_reused"] is True
    assert _records(out2, drop=("timings_s", "model_reused")) == _records(out1, drop=("timings_s", "model_reused"))


def test_aggregate_only_names_missing_and_stale_runs(one_process, tmp_path, monkeypatch):
    out = str(tmp_path / "partial")
    shutil.copytree(os.path.join(one_process[0], "runs"), os.path.join(out, "runs"))
    path = os.path.join(out, "runs", "bin_count_ones_2_seed0.json")
    rec = json.load(open(path))
    json.dump({**rec, "config_hash": "0" * 16}, open(path, "w"))  # a record of other settings
    monkeypatch.setattr(em, "_compute_one", lambda *a, **k: pytest.fail("--aggregate-only trained"))
    kw = {**TINY, "tasks": TINY["tasks"] + ("bin_count_ones:3",), "n_seeds": 2}
    doc = em.run(out=out, aggregate_only=True, progress=False, **kw)
    cov = doc["coverage"]
    assert (cov["expected"], cov["present"], cov["complete"]) == (6, 1, False)
    assert cov["missing"] == [["contains_1", 1], ["bin_count_ones:2", 1], ["bin_count_ones:3", 0],
                              ["bin_count_ones:3", 1]]
    assert cov["stale"] == [["bin_count_ones:2", 0]]
    assert [r["task"] for r in doc["runs"]] == ["contains_1"] and doc["workers"] is None
    c = doc["aggregate"]["claims"]
    assert c[0]["n_tasks"] == 1 and c[0]["verdict"].startswith("undetermined (n = 1 tasks")
    assert c[1]["verdict"].startswith("undetermined (no BinCountOnes")
    assert c[2]["n_runs"] == 1 and c[2]["n_correct"] + c[2]["n_incorrect"] == 12
    table = open(os.path.join(out, "table.md")).read()
    assert "Runs present: 1 of 6" in table and "Missing (4): contains_1 seed 1; bin_count_ones:2 seed 1; " \
        "bin_count_ones:3 seeds 0, 1." in table and "other settings, not used (1" in table


def test_cli_aggregate_only_reports_on_the_full_settings(one_process, tmp_path, capsys):
    out = str(tmp_path / "cli")
    shutil.copytree(os.path.join(one_process[0], "runs"), os.path.join(out, "runs"))
    assert main(["experiment", "entropy-mdl", "--aggregate-only", "--out", out, "--tasks", "contains_1,bin_count_ones:2",
                 "--seeds", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Runs present: 0 of 2" in printed and "Records of other settings, not used (2" in printed
    assert "claim 3: undetermined (n = 0 runs)" in printed
    assert main(["experiment", "entropy-mdl", "--workers", "-1", "--out", out]) == 2
    assert capsys.readouterr().err == "graphengine: error: entropy-mdl: --workers must be >= 0, got -1\n"
    assert main(["experiment", "entropy-mdl", "--aggregate-only", "--retrain", "--out", out]) == 2
    assert capsys.readouterr().err == ("graphengine: error: entropy-mdl: --aggregate-only trains nothing; "
                                       "--retrain contradicts it\n")


def _record(task, seed, mdl, entropy, per_example, correct):
    variant = {"run_entropy": entropy, "per_example": per_example, "run_entropy_per_position": entropy,
               "run_entropy_per_row": entropy}
    return {"task": task, "seed": seed, "mdl": mdl, "codelength": mdl, "val_accuracy_ir": sum(correct) / len(correct),
            "entropy_paper": entropy, "entropy_paper_per_position": entropy, "entropy_scalar": entropy,
            "paper": variant, "scalar": variant, "correct": correct}


def test_claim_verdicts_follow_the_statistics():
    tasks = ["bin_count_ones:2", "bin_count_ones:3", "bin_count_ones:4", "bin_count_ones:6", "bin_count_ones:9"]
    ok = [1] * 8 + [0] * 4
    low = [10.0 + 0.1 * i for i in range(8)] + [5.0, 5.1, 5.2, 5.3]  # incorrect examples clearly lower
    mdl = [12.0, 20.0, 25.0, 31.0, 40.0]
    u_shape = [2300.0, 2200.0, 2100.0, 2150.0, 2350.0]
    runs = [_record(t, 0, m, e, low, ok) for t, m, e in zip(tasks, mdl, u_shape)]
    c = claims(aggregate(runs, tasks))
    assert c[1]["verdict"].startswith("supported: MDL rises with C") and "minimum at C = 4" in c[1]["verdict"]
    assert c[2]["verdict"].startswith("supported at paper granularity") and c[2]["n_incorrect"] == 20
    assert c[0]["n_tasks"] == 5 and c[0]["verdict"].startswith("consistent")  # U-shape: no monotone relation

    rising = [_record(t, 0, m, 2000.0 + m, [*low[8:], *low[:8]], ok) for t, m in zip(tasks, mdl)]
    c = claims(aggregate(rising, tasks))
    assert c[0]["verdict"].startswith("contradicted: a significant increasing monotone relation (rho 1,")
    assert c[1]["verdict"].startswith("not supported") and "not U-shaped at paper granularity" in c[1]["verdict"]
    assert c[2]["verdict"].startswith("contradicted (higher entropy)")


def test_archive_copies_real_runs_verbatim_and_regenerates_the_section(one_process, tmp_path):
    src = str(tmp_path / "out")
    shutil.copytree(os.path.join(one_process[0], "runs"), os.path.join(src, "runs"))
    quick = os.path.join(src, "runs", "contains_1_seed1.json")
    json.dump({**json.load(open(os.path.join(src, "runs", "contains_1_seed0.json"))), "seed": 1}, open(quick, "w"))
    arch = str(tmp_path / "docs" / "results" / "entropy-mdl")
    settings = {**TINY, "n_seeds": 2}
    rep = archive.copy_runs(src, arch, overrides=settings, started="2026-12-01T17:00:00Z", note="Two workers.")
    assert rep["copied"] == ["bin_count_ones_2_seed0.json", "contains_1_seed0.json"]
    assert rep["skipped"] == ["contains_1_seed1.json (other settings)"]
    for name in rep["copied"]:
        assert open(os.path.join(arch, "runs", name), "rb").read() == open(os.path.join(src, "runs", name), "rb").read()
    assert archive.copy_runs(src, arch)["unchanged"] == rep["copied"]
    with pytest.raises(archive.ArchiveError, match="holds runs of settings"):
        archive.copy_runs(src, arch, overrides=TINY)

    doc = str(tmp_path / "docs" / "paper-results.md")
    before, after = "# Results\n\nhand-written text\n\n", "\n\n## Next section\n"
    open(doc, "w").write(f"{before}{archive.BEGIN}\nplaceholder\n{archive.END}{after}")
    section = archive.write_section(doc, arch, plots=False)
    text = open(doc).read()
    assert text == f"{before}{archive.BEGIN}\n{section}{archive.END}{after}"
    assert "`results/entropy-mdl/runs/` (2 of 4)" in section
    assert "Runs present: 2 of 4 (task × seed). Missing (2): contains_1 seed 1; bin_count_ones:2 seed 1." in section
    assert "Wall time so far: " in section and "Two workers." in section
    assert "#### The paper's claims on the runs present" in section and "| contains_1 | 1 |" in section
    results = json.load(open(os.path.join(arch, "results.json")))
    assert results["coverage"]["present"] == 2 and results["aggregate"]["n_runs"] == 2
    assert archive.write_section(doc, arch, plots=False) == section

    open(doc, "w").write("no markers here\n")
    with pytest.raises(archive.ArchiveError, match="needs exactly one"):
        archive.write_section(doc, arch, plots=False)


def test_archive_script_errors_are_one_line(tmp_path, capsys):
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    try:
        from entropy_mdl_archive import main as script
    finally:
        sys.path.pop(0)
    assert script(["--from", str(tmp_path), "--archive", str(tmp_path / "a"), "--doc", str(tmp_path / "d.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("entropy_mdl_archive.py: error: ") and "no runs/ folder" in err and err.count("\n") == 1


def test_the_docs_hold_the_generated_section_of_the_archive():
    text = open(os.path.join(REPO, "docs", "paper-results.md"), encoding="utf-8").read()
    assert text.count(archive.BEGIN) == 1 and text.count(archive.END) == 1
    section = text[text.index(archive.BEGIN):text.index(archive.END)]
    runs = os.path.join(REPO, archive.ARCHIVE, "runs")
    n = len([f for f in os.listdir(runs) if f.endswith(".json")]) if os.path.isdir(runs) else 0
    expected = len(em.DEFAULTS["tasks"]) * em.DEFAULTS["n_seeds"]
    assert f"`results/entropy-mdl/runs/` ({n} of {expected})" in section  # regenerated after the last copy
