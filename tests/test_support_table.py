"""The README's "Supported models and ops" list is the one the frontend tables render."""

import os

from graphengine.frontends.support import BEGIN, END, readme_section, render_support
from graphengine.ir import op_names

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def test_readme_section_is_current():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert readme_section(text) == render_support(), \
        "README support table is stale: run python -m graphengine.frontends.support README.md"


def test_table_lists_every_op_and_family():
    text = render_support()
    for op in ("rms_norm", "silu", "cumsum", "bitwise_and", "layer_norm", "cast"):
        assert f"| `{op}` |" in text
    assert all(f"`{n}`" in text for n in op_names())
    for family in ("`bert`", "`distilbert`", "`roberta`", "`gpt2`", "`gpt_neox`", "`llama`"):
        assert family in text
