"""The README's "Supported models and ops" list is the one the frontend tables render."""

import os

import pytest

from graphengine.frontends.support import BEGIN, END, readme_section, render_support
from graphengine.ir import op_names

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def test_readme_section_is_current():
    pytest.importorskip("onnx", reason="the README lists the ONNX op types, which need the onnx extra")
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
    for family in ("`bert`", "`distilbert`", "`roberta`", "`gpt2`", "`gpt_neox`", "`llama`", "`vit`", "- CNN: Conv2d",
                   "- Conv1d network"):
        assert family in text


def test_table_lists_the_onnx_vision_ops():
    pytest.importorskip("onnx")
    text = render_support()
    mapped = text.split("ONNX op types the ONNX frontend maps", 1)[1].split("ONNX op types accepted only", 1)[0]
    for op in ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Flatten"):
        assert f"`{op}`" in mapped
