"""The README's performance table is in the format scripts/bench_table.py renders and parses
(the figures themselves come from a benchmark run and are not checked here)."""

import os
import sys

import pytest

REPO = os.path.join(os.path.dirname(__file__), os.pardir)
sys.path.insert(0, os.path.join(REPO, "scripts"))

from bench_table import BEGIN, END, HEADER, parse_table, readme_section, render_table, replace_section  # noqa: E402


def test_readme_section_parses():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    section = readme_section(text)
    rows = parse_table(section)
    assert rows and all(r["item"].startswith("P") for r in rows)
    assert "Machine:" in section and "threads" in section and "dtypes" in section


def test_render_parse_round_trip_and_replace():
    doc = {"P1": {"P1_embeddings": {"torch_s": 0.04, "graphengine_s": 2.0, "ratio": 50.0}},
           "P4": [{"size": 512, "maxpair_argmax_f64_numba1_gflops": 5.0, "sgemm_gflops": 90.0,
                   "maxpair_fraction_of_sgemm": 5 / 90}],
           "machine": {"platform": "x", "cpu_count": 2}, "threads": {"torch": 1}, "dtypes": {"torch": "float32"}}
    rows = parse_table(render_table(doc))
    assert [r["item"] for r in rows] == ["P1", "P4"]
    assert rows[0]["ratio"] == "50.00×" and rows[1]["ratio"] == "6%"
    text = replace_section(f"a\n{BEGIN}\nold\n{END}\nb\n", render_table(doc))
    assert text.startswith("a\n") and text.endswith(f"{END}\nb\n") and "old" not in text


def test_malformed_table_is_refused():
    with pytest.raises(ValueError, match="header"):
        parse_table("| a | b |\n|---|---|\n")
    bad = "| " + " | ".join(HEADER) + " |\n|---|\n| P1 | x |\n"
    with pytest.raises(ValueError, match="cells"):
        parse_table(bad)


def test_readme_profile_section_names_known_jobs():
    from bench_table import PROFILE_BEGIN, PROFILE_END, PROFILE_JOBS
    from graphengine.io import marked_section
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        section = marked_section(f.read(), PROFILE_BEGIN, PROFILE_END, "README")
    rows = [ln for ln in section.splitlines() if ln.startswith("| P")]
    labels = set(PROFILE_JOBS.values())
    assert rows and all(any(r.startswith(f"| {lab}") for lab in labels) for r in rows)


def test_profile_shares_are_of_the_backward_time():
    from bench_table import render_profile
    job = {"backward_s": 0.5, "pushes_s": 0.4, "structures_s": 0.05, "rest_s": 0.05, "nodes": 3,
           "pushes_by_semiring_s": {"entropy": 0.3, "max": 0.1}, "pushes_by_op_s": {"linear": 0.25, "add": 0.15},
           "structures_by_op_s": {"gelu": 0.05}}
    row = render_profile({"jobs": {"p1": job}}).splitlines()[2]
    assert row == "| P1, w.r.t. the token embeddings | 500.0 ms | entropy 60%, max 20% | linear 50%, add 30% " \
                  "| 10% (gelu 10%) | 10% |"


@pytest.mark.parametrize("args, what", [(["--seq", "0"], "--seq must be between 1 and 1024"),
                                        (["--jobs", "p9"], "unknown job(s) p9")])
def test_profile_script_refuses_bad_arguments_in_one_line(args, what):
    import subprocess
    p = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "profile_jobs.py"), *args],
                       capture_output=True, text=True, timeout=600)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 2 and last.startswith("profile_jobs.py: error: ") and what in last
    assert "Traceback" not in p.stderr
