"""ONNX import (graphengine.frontends.onnx).

Oracles: ``onnx.reference.ReferenceEvaluator`` for forward values (hand-built graphs covering
every mapped op type, and torch-exported MLP / BERT-style / Hugging Face BERT models),
``torch.autograd`` for gradients of torch models exported to ONNX and re-imported, central
finite differences for the ``cast`` op the importer adds to the IR.

Two known gaps of the reference evaluator (onnx 1.23) are worked around: its ``Erf`` (and the
function body of ``Gelu``) round through float32, so exact float64 versions replace them; and it
applies opset-13 ``Softmax`` semantics to every opset, so the opset < 13 test writes the spec's
coerce-to-2-D formula out in numpy instead.
"""

import math
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX importer needs the 'onnx' extra")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator as _ReferenceEvaluator  # noqa: E402
from onnx.reference.op_run import OpRun  # noqa: E402

from graphengine.engine import backward, forward, weighted  # noqa: E402
from graphengine.errors import GraphEngineError, GraphFormatError  # noqa: E402
from graphengine.frontends.onnx import (FOLD_ONLY_OPS, SUPPORTED_OPS, OnnxConversionError,  # noqa: E402
                                     UnsupportedOnnxOpError, from_onnx)
from graphengine.ir import Graph  # noqa: E402

RNG = np.random.default_rng(1234)


def _erf64(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


class Erf(OpRun):
    """onnx's reference Erf rounds through float32 (``otypes="f"``); this one is exact in float64."""

    op_domain = ""

    def _run(self, x):
        return (_erf64(x).astype(x.dtype),)


class Gelu(OpRun):
    """onnx's reference Gelu expands to a function body whose constants are float32."""

    op_domain = ""

    def _run(self, x, approximate="none"):
        approximate = getattr(self, "approximate", approximate)
        if approximate == "tanh":
            y = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        else:
            y = 0.5 * x * (1 + _erf64(x / math.sqrt(2.0)))
        return (y.astype(x.dtype),)


def ReferenceEvaluator(model):
    """The ONNX reference evaluator, with float64-exact Erf and Gelu."""
    return _ReferenceEvaluator(model, new_ops=[Erf, Gelu])


def N(*shape, dtype=np.float64):
    return RNG.normal(size=shape).astype(dtype)


def P(*shape, dtype=np.float64):
    return RNG.uniform(0.5, 2.0, size=shape).astype(dtype)


def I(values):  # noqa: E743
    return np.asarray(values, dtype=np.int64)


def node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, name=f"{op}:{outputs[0]}", **attrs)


def const(name, value):
    return helper.make_node("Constant", [], [name], name=f"const:{name}", value=numpy_helper.from_array(np.asarray(value)))


_ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
         np.dtype(np.int64): TensorProto.INT64, np.dtype(np.int32): TensorProto.INT32,
         np.dtype(np.bool_): TensorProto.BOOL}


def make_model(nodes, feeds, outputs, inits=None, opset=17, dims=None):
    """A model whose graph inputs are ``feeds`` (name -> example array); ``dims`` overrides the
    declared dims of some inputs (e.g. symbolic ones)."""
    dims = dims or {}
    inputs = [helper.make_tensor_value_info(k, _ELEM[v.dtype], dims.get(k, list(v.shape))) for k, v in feeds.items()]
    inits = [numpy_helper.from_array(np.asarray(v), name=k) for k, v in (inits or {}).items()]
    untyped = [helper.make_empty_tensor_value_info(o) for o in outputs]
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, untyped, initializer=inits), opset_imports=opsets)
    try:  # the checker wants typed outputs: take the element types from the reference evaluator
        values = ReferenceEvaluator(model).run(None, {k: np.ones(v.shape, v.dtype) for k, v in feeds.items()})
    except Exception:  # graphs the importer must reject; the types do not matter there
        values = [np.zeros(1)] * len(outputs)
    outs = [helper.make_tensor_value_info(o, _ELEM.get(v.dtype, TensorProto.DOUBLE), list(v.shape))
            for o, v in zip(outputs, values)]
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outs, initializer=inits), opset_imports=opsets)


def save(model, path):
    onnx.save_model(model, str(path))
    return str(path)


def ours(g, feeds):
    acts = forward(g, feeds)
    return {o: acts[g[name].id] for o, name in g.meta["onnx_outputs"].items()}


def assert_matches_reference(model, feeds, path, **kwargs):
    g = from_onnx(save(model, path), **kwargs)
    expected = ReferenceEvaluator(model).run(None, feeds)
    got = ours(g, feeds)
    for out, want in zip([o.name for o in model.graph.output], expected):
        have = got[out]
        assert have.shape == want.shape, out
        assert have.dtype == want.dtype, (out, have.dtype, want.dtype)
        tol = 1e-10 if want.dtype == np.float64 else 1e-5
        np.testing.assert_allclose(have, want, rtol=tol, atol=tol, err_msg=out)
    return g


# ================================================================ hand-built graphs, op by op
class Case:
    def __init__(self, name, nodes, feeds, outputs, inits=None, opset=17, ir=(), absent=()):
        self.name, self.nodes, self.feeds, self.outputs = name, nodes, feeds, outputs
        self.inits, self.opset, self.ir, self.absent = inits, opset, set(ir), set(absent)

    def model(self):
        return make_model(self.nodes, self.feeds, self.outputs, self.inits, self.opset)


X = N(2, 3, 4)
CASES = [
    Case("binary", [node("Add", ["x", "w"], ["a"]), node("Sub", ["a", "y"], ["b"]), node("Mul", ["b", "x"], ["c"]),
                    node("Div", ["c", "p"], ["d"])],
         {"x": N(2, 3), "y": N(3)}, ["d"], inits={"w": N(2, 3), "p": P(2, 1)}, ir={"add", "sub", "mul", "div"}),
    Case("unary", [node("Neg", ["x"], ["neg"]), node("Exp", ["x"], ["exp"]), node("Log", ["p"], ["log"]),
                   node("Sqrt", ["p"], ["sqrt"]), node("Tanh", ["x"], ["tanh"]), node("Sigmoid", ["x"], ["sig"]),
                   node("Relu", ["x"], ["relu"]), node("Erf", ["x"], ["erf"]), node("Identity", ["x"], ["id"]),
                   node("Reciprocal", ["p"], ["rec"]), node("LeakyRelu", ["x"], ["leaky"], alpha=0.2)],
         {"x": N(3, 4), "p": P(3, 4)}, ["neg", "exp", "log", "sqrt", "tanh", "sig", "relu", "erf", "id", "rec", "leaky"],
         ir={"neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "erf", "div", "leaky_relu"}),
    Case("pow", [const("two", np.array(2.0)), node("Pow", ["x", "two"], ["sq"]), node("Pow", ["p", "half"], ["root"])],
         {"x": N(2, 3), "p": P(2, 3)}, ["sq", "root"], inits={"half": np.full(3, 0.5)}, ir={"pow"}),
    Case("matmul-ranks", [node("MatMul", ["x", "w"], ["y3"]), node("MatMul", ["v", "w"], ["y1"]),
                          node("MatMul", ["m", "v"], ["y2"]), node("MatMul", ["v", "v"], ["y0"]),
                          node("MatMul", ["a", "b"], ["y4"])],
         {"x": N(2, 3, 4), "v": N(4), "m": N(3, 4), "a": N(2, 1, 3, 4), "b": N(5, 4, 2)},
         ["y3", "y1", "y2", "y0", "y4"], inits={"w": N(4, 4)}, ir={"matmul", "unsqueeze", "squeeze"}),
    Case("gemm-linear", [node("Gemm", ["x", "W", "b"], ["y"], transB=1)], {"x": N(3, 4)}, ["y"],
         inits={"W": N(5, 4), "b": N(5)}, ir={"linear"}, absent={"addmm"}),
    Case("gemm-general", [node("Gemm", ["a", "B", "c"], ["y"], transA=1, alpha=0.5, beta=2.0),
                          node("Gemm", ["x", "W"], ["z"], transB=1, alpha=3.0)],
         {"a": N(4, 3), "x": N(3, 4)}, ["y", "z"], inits={"B": N(4, 5), "c": N(1, 5), "W": N(2, 4)},
         ir={"addmm", "permute", "matmul", "mul"}, absent={"linear"}),
    Case("softmax-13", [node("Softmax", ["x"], ["y"], axis=1), node("LogSoftmax", ["x"], ["z"])], {"x": X}, ["y", "z"],
         opset=13, ir={"softmax", "log_softmax"}, absent={"reshape"}),
    Case("layernorm-17", [node("LayerNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3),
                          node("LayerNormalization", ["x", "s2"], ["z"], axis=-2)],
         {"x": X}, ["y", "z"], inits={"s": N(4), "b": N(4), "s2": N(3, 4)}, ir={"layer_norm"}),
    Case("layernorm-expanded", [node("ReduceMean", ["x"], ["mu"], axes=[-1]), node("Sub", ["x", "mu"], ["d"]),
                                const("two", np.array(2.0)), node("Pow", ["d", "two"], ["d2"]),
                                node("ReduceMean", ["d2"], ["var"], axes=[-1]), const("eps", np.array(1e-5)),
                                node("Add", ["var", "eps"], ["ve"]), node("Sqrt", ["ve"], ["sd"]),
                                node("Div", ["d", "sd"], ["xh"]), node("Mul", ["xh", "s"], ["xs"]),
                                node("Add", ["xs", "b"], ["y"])],
         {"x": X}, ["y"], inits={"s": N(4), "b": N(4)}, opset=13, ir={"mean", "pow", "sqrt"}),
    Case("gelu-20", [node("Gelu", ["x"], ["y"]), node("Gelu", ["x"], ["z"], approximate="tanh")], {"x": X}, ["y", "z"],
         opset=20, ir={"gelu"}),
    Case("gelu-expanded", [const("r2", np.array(np.sqrt(2.0))), node("Div", ["x", "r2"], ["u"]), node("Erf", ["u"], ["e"]),
                           const("one", np.array(1.0)), node("Add", ["e", "one"], ["e1"]), node("Mul", ["x", "e1"], ["m"]),
                           const("half", np.array(0.5)), node("Mul", ["m", "half"], ["y"])], {"x": X}, ["y"], ir={"erf"}),
    Case("gather", [node("Gather", ["table", "ids"], ["emb"]), const("last", I(-1)),
                    node("Gather", ["x", "last"], ["sel"], axis=1), const("i1", I([3, 0, -1])),
                    node("Gather", ["x", "i1"], ["isel"], axis=2), const("i2", I([[0, 2], [1, 1]])),
                    node("Gather", ["x", "i2"], ["nd"], axis=1), node("Gather", ["m", "ids"], ["dyn"], axis=1),
                    node("GatherElements", ["m", "ge"], ["ge_out"], axis=1)],
         {"x": X, "ids": I([[1, 0], [4, 2]]), "m": N(3, 5)}, ["emb", "sel", "isel", "nd", "dyn", "ge_out"],
         inits={"table": N(6, 4), "ge": I([[0, 4], [1, 1], [3, 2]])},
         ir={"embedding", "select", "index_select", "reshape", "gather"}),
    Case("transpose-reshape", [node("Transpose", ["x"], ["t"], perm=[2, 0, 1]), node("Transpose", ["x"], ["r"]),
                               const("s1", I([0, -1])), node("Reshape", ["x", "s1"], ["a"]),
                               const("s2", I([0, 0, 2, 2])), node("Reshape", ["x", "s2"], ["b"]),
                               node("Flatten", ["x"], ["f"], axis=2)],
         {"x": X}, ["t", "r", "a", "b", "f"], ir={"permute", "reshape"}),
    Case("unsqueeze-squeeze-13", [const("ax", I([0, -1])), node("Unsqueeze", ["x", "ax"], ["u"]),
                                  const("one", I([1])), node("Squeeze", ["y", "one"], ["s"]),
                                  node("Squeeze", ["y"], ["sa"])],
         {"x": N(2, 3), "y": N(2, 1, 3, 1)}, ["u", "s", "sa"], opset=13, ir={"unsqueeze", "squeeze"}),
    Case("unsqueeze-squeeze-11", [node("Unsqueeze", ["x"], ["u"], axes=[1, 3]), node("Squeeze", ["y"], ["s"], axes=[-1])],
         {"x": N(2, 3), "y": N(2, 1, 3, 1)}, ["u", "s"], opset=11, ir={"unsqueeze", "squeeze"}),
    Case("slice-13", [const("st", I([1, -1, 0])), const("en", I([3, -(2 ** 62), 100])), const("ax", I([0, 2, 1])),
                      const("sp", I([1, -1, 2])), node("Slice", ["x", "st", "en", "ax", "sp"], ["y"]),
                      const("st2", I([-2])), const("en2", I([2 ** 62])), node("Slice", ["x", "st2", "en2"], ["z"]),
                      const("st3", I([-1])), const("en3", I([-(2 ** 62)])), const("ax3", I([1])), const("sp3", I([-2])),
                      node("Slice", ["x", "st3", "en3", "ax3", "sp3"], ["w"]),
                      const("st4", I([10])), const("en4", I([-(2 ** 62)])), const("ax4", I([0])), const("sp4", I([-1])),
                      node("Slice", ["x", "st4", "en4", "ax4", "sp4"], ["v"])],
         {"x": N(4, 3, 5)}, ["y", "z", "w", "v"], ir={"slice", "index_select"}),
    Case("slice-9", [node("Slice", ["x"], ["y"], starts=[1, 0], ends=[100, -1], axes=[1, 2])], {"x": X}, ["y"],
         opset=9, ir={"slice"}),
    Case("expand-concat-where", [const("sh", I([2, 1, 4])), node("Expand", ["c", "sh"], ["e"]),
                                 node("Concat", ["x", "k", "w"], ["cat"], axis=1),
                                 node("Where", ["mask", "x", "y"], ["wh"])],
         {"c": N(3, 1), "x": N(2, 3), "y": N(3), "mask": np.array([[True, False, True], [False, False, True]])},
         ["e", "cat", "wh"], inits={"k": N(2, 2), "w": N(2, 1)}, ir={"expand", "cat", "where"}),
    Case("cast", [node("Cast", ["x"], ["f32"], to=TensorProto.FLOAT), node("Cast", ["ids"], ["fi"], to=TensorProto.DOUBLE),
                  node("Cast", ["mask"], ["fm"], to=TensorProto.DOUBLE), node("Cast", ["x"], ["same"], to=TensorProto.DOUBLE),
                  node("CastLike", ["ids", "x"], ["cl"])],
         {"x": N(2, 3), "ids": I([[1, 2, 3], [4, 5, 6]]), "mask": np.array([True, False, True])},
         ["f32", "fi", "fm", "same", "cl"], ir={"cast"}),
    Case("logical-on-inputs", [node("And", ["a", "b"], ["and"]), node("Or", ["a", "b"], ["or"]),
                               node("Xor", ["a", "b"], ["xor"]), node("Not", ["a"], ["not"]),
                               node("Cast", ["ids"], ["nz"], to=TensorProto.BOOL), node("And", ["nz", "keep"], ["m"]),
                               const("zero", np.array(0.0)), const("low", np.array(-1e9)),
                               node("Where", ["m", "zero", "low"], ["bias"]), node("Add", ["x", "bias"], ["y"])],
         {"a": np.array([True, True, False, False]), "b": np.array([True, False, True, False]),
          "ids": I([[3, 0, 1, 0], [0, 0, 2, 5]]), "x": N(2, 4)},
         ["and", "or", "xor", "not", "y"], inits={"keep": np.array([True, True, False, True])}, ir={"where", "cast"}),
    Case("gather-nd", [const("i3", I([[[1, 0], [0, 2]], [[1, 1], [1, 2]]])), node("GatherND", ["x", "i3"], ["y"]),
                       const("i1", I([[1], [0], [1]])), node("GatherND", ["x", "i1"], ["z"])],
         {"x": N(2, 3, 4)}, ["y", "z"], ir={"index_select", "reshape"}),
    Case("folded-mask-chain", [node("Shape", ["x"], ["shp"]), const("one", I(1)), node("Gather", ["shp", "one"], ["n"]),
                               const("ax0", I([0])), node("Unsqueeze", ["n", "ax0"], ["n1"]),
                               node("ConstantOfShape", ["n1"], ["zeros"], value=numpy_helper.from_array(np.array([1], np.int64))),
                               node("Range", ["z0", "n", "one"], ["rng"]), node("Equal", ["rng", "zeros"], ["eq"]),
                               node("Not", ["eq"], ["neq"]), node("Where", ["neq", "x", "fill"], ["y"]),
                               node("Shape", ["x"], ["tail"], start=-1), node("Concat", ["tail", "tail"], ["tt"], axis=0),
                               node("Reshape", ["sq", "tt"], ["sq2"]), node("Size", ["x"], ["sz"]),
                               node("Cast", ["sz"], ["szf"], to=TensorProto.DOUBLE), node("Mul", ["sq2", "szf"], ["y2"])],
         {"x": N(2, 3), "sq": N(9)}, ["y", "y2"], inits={"z0": I(0), "fill": np.array(-5.0)}, opset=15,
         ir={"where", "reshape", "mul"}),
    Case("fold-only-ops", [const("fr", np.array([[1.5, -0.5, 2.0, -2.5]])), node("Shape", ["x"], ["s"]), node("Less", ["s", "three"], ["lt"]), node("Greater", ["s", "one"], ["gt"]),
                           node("And", ["lt", "gt"], ["both"]), node("Or", ["lt", "gt"], ["any"]),
                           node("Xor", ["lt", "gt"], ["x1"]), node("LessOrEqual", ["s", "three"], ["le"]),
                           node("GreaterOrEqual", ["s", "three"], ["ge"]), node("Cast", ["both"], ["bf"], to=TensorProto.DOUBLE),
                           node("Max", ["s", "three"], ["mx"]), node("Min", ["s", "three"], ["mn"]),
                           node("Abs", ["negs"], ["ab"]), node("Floor", ["fr"], ["fl"]), node("Ceil", ["fr"], ["ce"]),
                           node("Mod", ["s", "three"], ["md"], fmod=1), node("Tile", ["bf", "two"], ["til"]),
                           node("Mul", ["x", "til"], ["y"]), node("Add", ["y", "fl"], ["y1"]), node("Add", ["y1", "ce"], ["y2"]),
                           node("Cast", ["mx"], ["mxf"], to=TensorProto.DOUBLE), node("Cast", ["mn"], ["mnf"], to=TensorProto.DOUBLE),
                           node("Cast", ["md"], ["mdf"], to=TensorProto.DOUBLE), node("Cast", ["ab"], ["abf"], to=TensorProto.DOUBLE),
                           node("Concat", ["mxf", "mnf", "mdf", "abf"], ["cc"], axis=0), node("ReduceSum", ["cc"], ["ccs"], keepdims=0),
                           node("Add", ["y2", "ccs"], ["y3"]), node("Cast", ["any"], ["anyf"], to=TensorProto.DOUBLE),
                           node("Cast", ["x1"], ["x1f"], to=TensorProto.DOUBLE), node("Cast", ["le"], ["lef"], to=TensorProto.DOUBLE),
                           node("Cast", ["ge"], ["gef"], to=TensorProto.DOUBLE), node("Add", ["anyf", "x1f"], ["o1"]),
                           node("Add", ["lef", "gef"], ["o2"]), node("Add", ["o1", "o2"], ["o3"]),
                           const("s21", I([2, 1])), node("Reshape", ["o3", "s21"], ["o3r"]),
                           node("Mul", ["y3", "o3r"], ["out"])],
         {"x": N(2, 4)}, ["out"], inits={"three": I([3, 3]), "one": I([1, 1]), "two": I([2]), "negs": I([-2, 3])}, opset=13, ir={"mul", "add"}),
    Case("reductions", [node("ReduceMean", ["x"], ["m13"], axes=[0, -1], keepdims=0), const("ax", I([1])),
                        node("ReduceSum", ["x", "ax"], ["s13"]), node("ReduceMax", ["x"], ["mx"], axes=[2]),
                        node("ReduceSum", ["x"], ["all"], keepdims=0)],
         {"x": X}, ["m13", "s13", "mx", "all"], opset=13, ir={"mean", "sum", "amax"}),
    Case("reductions-18", [const("ax", I([-1])), node("ReduceMean", ["x", "ax"], ["m"]),
                           node("ReduceMax", ["x", "ax"], ["mx"], keepdims=0),
                           node("ReduceSum", ["x"], ["noop"], noop_with_empty_axes=1)],
         {"x": X}, ["m", "mx", "noop"], opset=18, ir={"mean", "amax"}),
    Case("dropout-constant", [const("r", np.array(0.5, np.float32)), node("Dropout", ["x", "r"], ["y"]),
                              helper.make_node("Constant", [], ["c"], name="cf", value_floats=[1.0, 2.0]),
                              helper.make_node("Constant", [], ["ci"], name="ci", value_ints=[2]),
                              node("Cast", ["c"], ["cd"], to=TensorProto.DOUBLE), node("Tile", ["cd", "ci"], ["ct"]),
                              node("Add", ["y", "ct"], ["z"])],
         {"x": N(3, 4)}, ["z"], opset=13, ir={"add"}),
    # vision: asymmetric pads, auto_pad, dilations, groups, ceil_mode, count_include_pad both ways
    Case("conv", [node("Conv", ["x", "w", "b"], ["y2"], strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2], group=2),
                  node("Conv", ["v", "k"], ["up"], auto_pad="SAME_UPPER", strides=[2]),
                  node("Conv", ["v", "k"], ["lo"], auto_pad="SAME_LOWER"),
                  node("Conv", ["v", "k"], ["va"], auto_pad="VALID", kernel_shape=[4])],
         {"x": N(2, 4, 7, 8), "v": N(1, 3, 9)}, ["y2", "up", "lo", "va"], inits={"w": N(6, 2, 3, 2), "b": N(6), "k": N(2, 3, 4)},
         ir={"windows", "conv", "add"}),
    Case("pools", [node("MaxPool", ["x"], ["mp"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1),
                   node("MaxPool", ["x"], ["md"], kernel_shape=[2, 2], dilations=[2, 1]),
                   node("AveragePool", ["x"], ["ai"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1],
                        count_include_pad=1),
                   node("AveragePool", ["x"], ["ae"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1]),
                   node("AveragePool", ["x"], ["ac"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 0, 0],
                        ceil_mode=1, count_include_pad=1),
                   node("AveragePool", ["x"], ["as"], kernel_shape=[2, 3], auto_pad="SAME_LOWER"),
                   node("GlobalAveragePool", ["x"], ["ga"]), node("GlobalMaxPool", ["x"], ["gm"])],
         {"x": N(2, 3, 7, 6)}, ["mp", "md", "ai", "ae", "ac", "as", "ga", "gm"], ir={"max_pool", "windows", "window_mean"}),
    Case("pools-19", [node("AveragePool", ["x"], ["ad"], kernel_shape=[2], dilations=[3], pads=[2, 1]),
                      node("MaxPool", ["x"], ["mp"], kernel_shape=[3], strides=[2], ceil_mode=1)],
         {"x": N(2, 2, 8)}, ["ad", "mp"], opset=19, ir={"max_pool", "window_mean"}),
    Case("batchnorm", [node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3),
                       node("BatchNormalization", ["f", "s", "b", "m", "v"], ["z"])],
         {"x": N(2, 3, 5, 4), "f": N(4, 3)}, ["y", "z"], inits={"s": N(3), "b": N(3), "m": N(3), "v": P(3)},
         opset=15, ir={"batch_norm", "reshape"}),
]


def test_every_supported_op_type_has_a_hand_built_case():
    covered = {n.op_type for c in CASES for n in c.nodes}
    assert sorted(set(SUPPORTED_OPS) - covered) == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hand_built_graph_matches_reference_evaluator(case, tmp_path):
    model = case.model()
    feeds = {k: v for k, v in case.feeds.items()}
    g = assert_matches_reference(model, feeds, tmp_path / "m.onnx")
    ops = set(g.op_histogram())
    assert case.ir <= ops, sorted(case.ir - ops)
    assert not (case.absent & ops), sorted(case.absent & ops)
    assert g.meta["source"] == "onnx" and g.meta["opset"] == case.opset and g.meta["decomposition"] == "fused"


def _coerced(fn, x, axis):
    """Opset < 13 Softmax / LogSoftmax from the spec: flatten to [prod(d[:axis]), prod(d[axis:])]."""
    flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
    return fn(flat).reshape(x.shape)


def _softmax_rows(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_softmax_below_opset_13_uses_the_coerced_2d_semantics(tmp_path):
    # onnx's ReferenceEvaluator applies opset-13 semantics to every version, so the oracle here
    # is the spec's formula written out in numpy.
    nodes = [node("Softmax", ["x"], ["y"], axis=1), node("LogSoftmax", ["x"], ["z"]), node("Softmax", ["x"], ["w"], axis=-1),
             node("Softmax", ["x"], ["v"], axis=0)]
    model = make_model(nodes, {"x": X}, ["y", "z", "w", "v"], opset=11)
    g = from_onnx(save(model, tmp_path / "m.onnx"))
    got = ours(g, {"x": X})
    np.testing.assert_allclose(got["y"], _coerced(_softmax_rows, X, 1), rtol=1e-12)
    np.testing.assert_allclose(got["z"], _coerced(lambda f: np.log(_softmax_rows(f)), X, 1), rtol=1e-12)
    np.testing.assert_allclose(got["w"], _coerced(_softmax_rows, X, 2), rtol=1e-12)
    np.testing.assert_allclose(got["v"], _coerced(_softmax_rows, X, 0), rtol=1e-12)
    np.testing.assert_allclose(got["y"].sum(axis=(1, 2)), 1.0, rtol=1e-12)  # one distribution per batch row
    assert not np.allclose(got["y"].sum(axis=1), 1.0)
    assert {"softmax", "log_softmax", "reshape"} <= set(g.op_histogram())


def test_slice_clamps_starts_as_the_spec_says(tmp_path):
    # ONNX clamps a start to [0, dim - 1] for negative steps (the reference evaluator uses Python
    # slicing, which yields an empty result here instead).
    nodes = [const("st", I([-100])), const("en", I([-(2 ** 62)])), const("ax", I([1])), const("sp", I([-1])),
             node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])]
    model = make_model(nodes, {"x": X}, ["y"])
    y = ours(from_onnx(save(model, tmp_path / "m.onnx")), {"x": X})["y"]
    np.testing.assert_array_equal(y, X[:, :1, :])


def test_folded_subgraphs_leave_no_trace_and_parameters_are_kept(tmp_path):
    case = next(c for c in CASES if c.name == "folded-mask-chain")
    g = from_onnx(save(case.model(), tmp_path / "m.onnx"))
    assert set(g.op_histogram()) == {"input", "constant", "where", "reshape", "mul"}
    case = next(c for c in CASES if c.name == "gemm-linear")
    g = from_onnx(save(case.model(), tmp_path / "m.onnx"))
    assert [p.name for p in g.parameters()] == ["W", "b"]
    lin = g.find(op="linear")[0]
    assert [g.nodes[i].name for i in lin.inputs] == ["x", "W", "b"] and lin.name == "y"


def test_pow_with_a_varying_exponent_is_rejected(tmp_path):
    model = make_model([node("Pow", ["x", "e"], ["y"])], {"x": N(3)}, ["y"], inits={"e": np.array([1.0, 2.0, 3.0])})
    with pytest.raises(OnnxConversionError, match=r"Pow:y.*one exponent value"):
        from_onnx(save(model, tmp_path / "m.onnx"))


def test_fold_only_op_on_a_graph_input_names_the_node(tmp_path):
    model = make_model([node("Equal", ["x", "y"], ["e"]), node("Where", ["e", "x", "y"], ["z"])],
                       {"x": N(3), "y": N(3)}, ["z"])
    with pytest.raises(OnnxConversionError, match=r"'Equal:e' \(Equal\).*constant.*'x'") as info:
        from_onnx(save(model, tmp_path / "m.onnx"))
    assert "\n" not in str(info.value)


def test_reshape_with_a_computed_shape_is_rejected(tmp_path):
    model = make_model([node("Reshape", ["x", "s"], ["y"])], {"x": N(2, 3), "s": I([3, 2])}, ["y"])
    with pytest.raises(OnnxConversionError, match=r"'shape' must be computable at import time"):
        from_onnx(save(model, tmp_path / "m.onnx"))


def test_symbolic_dims_need_input_shapes(tmp_path):
    x = N(2, 3)
    model = make_model([node("Relu", ["x"], ["y"])], {"x": x}, ["y"], dims={"x": ["batch", 3]})
    path = save(model, tmp_path / "m.onnx")
    with pytest.raises(OnnxConversionError, match=r"'x' has symbolic dims \['batch', 3\].*input_shapes"):
        from_onnx(path)
    g = from_onnx(path, input_shapes={"x": (2, 3)})
    np.testing.assert_array_equal(ours(g, {"x": x})["y"], np.maximum(x, 0))
    with pytest.raises(OnnxConversionError, match=r"input_shapes gives \[2, 4\], the model declares \['\?', 3\]"):
        from_onnx(path, input_shapes={"x": (2, 4)})
    with pytest.raises(OnnxConversionError, match=r"names no graph input: nope"):
        from_onnx(path, input_shapes={"x": (2, 3), "nope": (1,)})


def test_scopes_from_torch_style_node_names(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "onnx::MatMul_7"], ["h"], name="/encoder/layer.0/attention/self/query/MatMul"),
             helper.make_node("Add", ["h", "encoder.layer.0.attention.self.query.bias"], ["y"],
                              name="/encoder/layer.0/attention/self/query/Add")]
    model = make_model(nodes, {"x": N(2, 3)}, ["y"],
                       inits={"onnx::MatMul_7": N(3, 3), "encoder.layer.0.attention.self.query.bias": N(3)})
    g = from_onnx(save(model, tmp_path / "m.onnx"))
    scope = "encoder.layer.0.attention.self.query"
    assert {n.name for n in g.find(scope)} == {"onnx::MatMul_7", "h", "encoder.layer.0.attention.self.query.bias", "y"}
    assert g["encoder.layer.0.attention.self.query.bias"].op == "parameter"


def test_cast_op_gradients_match_finite_differences():
    g = Graph()
    x = g.input("x", (2, 3))
    c = g.call("cast", x, dtype="float64")
    y = g.call("mul", g.call("pow", c, exponent=3.0), c, name="y")
    x32 = g.input("x32", (3,), dtype="float32")
    z = g.call("cast", x32, dtype="float64", name="z")
    ids = g.input("ids", (3,), dtype="int64")
    w = g.call("mul", g.call("cast", ids, dtype="float64"), z, name="w")
    feeds = {"x": N(2, 3), "x32": N(3, dtype=np.float32), "ids": I([1, 2, 3])}
    coef = N(2, 3)
    grad = backward(g, forward(g, feeds), weighted(y, coef), retain=["x"]).grad("x")
    eps = 1e-6
    fd = np.zeros_like(feeds["x"])
    for i in np.ndindex(fd.shape):
        hi, lo = feeds["x"].copy(), feeds["x"].copy()
        hi[i] += eps
        lo[i] -= eps
        fd[i] = (np.sum(coef * hi ** 4) - np.sum(coef * lo ** 4)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)
    r = backward(g, forward(g, feeds), weighted(w, np.ones(3)), retain=["x32"])
    np.testing.assert_array_equal(r.grad("x32"), [1.0, 2.0, 3.0])  # d(ids * cast(x32)) / dx32 = ids
    assert forward(g, feeds)[z.id].dtype == np.float64


# ================================================================ files: external data, errors
def _mlp_model(dtype=np.float64):
    W1, b1, W2 = N(5, 4, dtype=dtype), N(5, dtype=dtype), N(3, 5, dtype=dtype)
    nodes = [node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1), node("Tanh", ["h"], ["t"]),
             node("Gemm", ["t", "fc2.weight"], ["y"], transB=1)]
    return make_model(nodes, {"x": N(2, 4, dtype=dtype)}, ["y"], inits={"fc1.weight": W1, "fc1.bias": b1, "fc2.weight": W2})


def test_external_data_round_trip_from_another_cwd(tmp_path, monkeypatch):
    model = _mlp_model()
    (tmp_path / "model").mkdir()
    (tmp_path / "elsewhere").mkdir()
    stored = onnx.ModelProto()
    stored.CopyFrom(model)  # saving with external data rewrites the proto in place
    onnx.save_model(stored, str(tmp_path / "model" / "m.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert os.path.getsize(tmp_path / "model" / "weights.bin") > 0
    monkeypatch.chdir(tmp_path / "elsewhere")
    g = from_onnx(os.path.join("..", "model", "m.onnx"))
    feeds = {"x": N(2, 4)}
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    np.testing.assert_allclose(ours(g, feeds)["y"], want, rtol=1e-12)
    np.testing.assert_array_equal(g.arrays[g["fc1.weight"].id], numpy_helper.to_array(model.graph.initializer[0]))

    data = (tmp_path / "model" / "weights.bin").read_bytes()
    (tmp_path / "model" / "weights.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(GraphFormatError, match=r"weights\.bin' has \d+ bytes, too few"):
        from_onnx(os.path.join("..", "model", "m.onnx"))
    os.remove(tmp_path / "model" / "weights.bin")
    with pytest.raises(GraphFormatError, match=r"tensor 'fc1\.weight': external data file 'weights\.bin' not found"):
        from_onnx(os.path.join("..", "model", "m.onnx"))


@pytest.mark.parametrize("content", [b"this is not an ONNX model\n" * 4, bytes(range(256)) * 3,
                                     np.random.default_rng(5).bytes(300), b""],
                         ids=["text", "byte-ramp", "random", "empty"])
def test_non_onnx_bytes_are_rejected(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(GraphFormatError, match=r"bad\.onnx: .*(not an ONNX model|invalid ONNX model)") as info:
        from_onnx(path)
    assert "\n" not in str(info.value)


def test_truncated_and_missing_files_are_rejected(tmp_path):
    data = _mlp_model().SerializeToString()
    for frac in (0.1, 0.3, 0.5, 0.7, 0.9):
        path = tmp_path / f"cut{frac}.onnx"
        path.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(GraphFormatError, match=r"truncated") as info:
            from_onnx(path)
        assert "\n" not in str(info.value)
    with pytest.raises(GraphFormatError, match=r"no such file"):
        from_onnx(tmp_path / "missing.onnx")


def test_unsupported_ops_are_all_listed(tmp_path):
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["c1"], name="conv_a"),
             helper.make_node("ConvTranspose", ["c1", "w"], ["c2"], name="conv_b"),
             helper.make_node("Einsum", ["c2"], ["e"], name="ein", equation="ij->ji"),
             helper.make_node("Relu", ["e"], ["y"], name="ok")]
    model = make_model(nodes, {"x": N(1, 1, 4, 4)}, ["y"], inits={"w": N(1, 1, 1, 1)})
    with pytest.raises(UnsupportedOnnxOpError) as info:
        from_onnx(save(model, tmp_path / "m.onnx"))
    msg = str(info.value)
    assert "ConvTranspose (nodes: conv_a, conv_b)" in msg and "Einsum (nodes: ein)" in msg and "Relu" not in msg
    assert "\n" not in msg and isinstance(info.value, GraphEngineError)


def test_decomposition_policies(tmp_path):
    nodes = [node("LayerNormalization", ["x", "s", "b"], ["ln"]), node("Gelu", ["ln"], ["ge"]),
             node("Softmax", ["ge"], ["y"]), node("Identity", ["y"], ["y_again"])]
    feeds = {"x": N(2, 3, 4)}
    model = make_model(nodes, feeds, ["y", "y_again"], inits={"s": N(4), "b": N(4)}, opset=20)
    path = save(model, tmp_path / "m.onnx")
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    for policy in ("primitive", "paper"):
        g = from_onnx(path, decompose=policy)
        assert g.meta["decomposition"] == policy and g.meta["source"] == "onnx"
        assert not {"softmax", "layer_norm", "gelu"} & set(g.op_histogram())
        got = ours(g, feeds)
        np.testing.assert_allclose(got["y"], want, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(got["y_again"], got["y"])
    assert from_onnx(path).meta["onnx_outputs"] == {"y": "y", "y_again": "y"}
    with pytest.raises(GraphEngineError, match="unknown decomposition policy 'no-such-policy'"):
        from_onnx(path, decompose="no-such-policy")


# ================================================================ models exported from torch

def _torch():
    return pytest.importorskip("torch", reason="torch-exported models need the 'torch' extra")


def _tiny_bert_class(torch):
    nn, F = torch.nn, torch.nn.functional

    class SelfAttention(nn.Module):
        def __init__(self, H, heads):
            super().__init__()
            self.heads = heads
            self.query, self.key, self.value = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H)

        def split(self, x):
            B, T, H = x.shape
            return x.view(B, T, self.heads, H // self.heads).permute(0, 2, 1, 3)

        def forward(self, x, ext):
            q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / (q.shape[-1] ** 0.5) + ext
            ctx = torch.matmul(torch.softmax(scores, -1), v).permute(0, 2, 1, 3).contiguous()
            return ctx.view(ctx.shape[0], ctx.shape[1], -1)

    class Output(nn.Module):
        def __init__(self, i, H):
            super().__init__()
            self.dense, self.LayerNorm = nn.Linear(i, H), nn.LayerNorm(H, eps=1e-12)

        def forward(self, h, x):
            return self.LayerNorm(self.dense(h) + x)

    class Attention(nn.Module):
        def __init__(self, H, heads):
            super().__init__()
            self.self, self.output = SelfAttention(H, heads), Output(H, H)

        def forward(self, x, ext):
            return self.output(self.self(x, ext), x)

    class Intermediate(nn.Module):
        def __init__(self, H, I):
            super().__init__()
            self.dense = nn.Linear(H, I)

        def forward(self, x):
            return F.gelu(self.dense(x))

    class Layer(nn.Module):
        def __init__(self, H, heads, I):
            super().__init__()
            self.attention, self.intermediate, self.output = Attention(H, heads), Intermediate(H, I), Output(I, H)

        def forward(self, x, ext):
            a = self.attention(x, ext)
            return self.output(self.intermediate(a), a)

    class Encoder(nn.Module):
        def __init__(self, L, H, heads, I):
            super().__init__()
            self.layer = nn.ModuleList([Layer(H, heads, I) for _ in range(L)])

        def forward(self, x, ext):
            for layer in self.layer:
                x = layer(x, ext)
            return x

    class Embeddings(nn.Module):
        def __init__(self, V, P, H):
            super().__init__()
            self.word_embeddings, self.position_embeddings = nn.Embedding(V, H), nn.Embedding(P, H)
            self.token_type_embeddings, self.LayerNorm = nn.Embedding(2, H), nn.LayerNorm(H, eps=1e-12)
            self.register_buffer("position_ids", torch.arange(P).expand((1, -1)), persistent=False)

        def forward(self, ids, token_types):
            pos = self.position_ids[:, : ids.shape[1]]
            e = self.word_embeddings(ids) + self.token_type_embeddings(token_types) + self.position_embeddings(pos)
            return self.LayerNorm(e)

    class Pooler(nn.Module):
        def __init__(self, H):
            super().__init__()
            self.dense = nn.Linear(H, H)

        def forward(self, x):
            return torch.tanh(self.dense(x[:, 0]))

    class TinyBert(nn.Module):
        """Hugging Face BERT's module layout and parameter names, in miniature."""

        def __init__(self, V=30, P=16, H=8, heads=2, I=16, L=2):
            super().__init__()
            self.embeddings, self.encoder, self.pooler = Embeddings(V, P, H), Encoder(L, H, heads, I), Pooler(H)

        def forward(self, ids, token_types, mask):
            dt = self.embeddings.word_embeddings.weight.dtype
            ext = (1.0 - mask[:, None, None, :].to(dt)) * torch.finfo(dt).min
            h = self.encoder(self.embeddings(ids, token_types), ext)
            return h, self.pooler(h)

    return TinyBert


BERT_INPUTS = ["input_ids", "token_type_ids", "attention_mask"]


def _bert(torch, dtype):
    torch.manual_seed(0)
    model = _tiny_bert_class(torch)().to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():  # distinct values, so the exporter cannot merge equal initializers
            p.normal_(0.0, 0.4)
    ids = torch.tensor([[2, 7, 11, 29, 5], [3, 3, 0, 17, 1]])
    types = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    return model, (ids, types, mask)


def _export(torch, model, args, path, names, outputs, **kwargs):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), input_names=names, output_names=outputs, **kwargs)
    return str(path)


def _feeds(args, names):
    return {k: a.detach().numpy() for k, a in zip(names, args)}


@pytest.mark.parametrize("dtype_name,opset,folding", [("float32", 17, True), ("float64", 14, False)])
def test_torch_bert_matches_reference_evaluator(tmp_path, dtype_name, opset, folding):
    torch = _torch()
    model, args = _bert(torch, getattr(torch, dtype_name))
    path = _export(torch, model, args, tmp_path / "bert.onnx", BERT_INPUTS, ["hidden", "pooled"],
                   dynamo=False, opset_version=opset, do_constant_folding=folding)
    feeds = _feeds(args, BERT_INPUTS)
    g = assert_matches_reference(onnx.load(path), feeds, tmp_path / "copy.onnx")
    with torch.no_grad():
        hidden, pooled = model(*args)
    tol = 1e-5 if dtype_name == "float32" else 1e-10
    np.testing.assert_allclose(ours(g, feeds)["pooled"], pooled.numpy(), rtol=tol, atol=tol)
    ops = g.op_histogram()
    assert ops["embedding"] == 3 and ops["softmax"] == 2 and ops["cast"] == 1
    assert ops["layer_norm" if opset >= 17 else "sqrt"] == 5
    assert g.find("encoder.layer.1.attention.self.query") and g.find("embeddings.word_embeddings", op="embedding")


def test_torch_bert_gradients_match_autograd(tmp_path):
    torch = _torch()
    model, args = _bert(torch, torch.float64)
    path = _export(torch, model, args, tmp_path / "bert.onnx", BERT_INPUTS, ["hidden", "pooled"],
                   dynamo=False, opset_version=17, do_constant_folding=False)
    g = from_onnx(path)
    feeds = _feeds(args, BERT_INPUTS)
    coef = N(*g["hidden"].shape)
    result = backward(g, forward(g, feeds), weighted("hidden", coef))
    hidden, _ = model(*args)
    (hidden * torch.as_tensor(coef)).sum().backward()
    named = dict(model.named_parameters())
    compared = 0
    for p in g.parameters():
        if p.name in named and named[p.name].grad is not None:
            want = named[p.name].grad.numpy()
            np.testing.assert_allclose(result.grad(p.name), want, rtol=1e-8, atol=1e-10, err_msg=p.name)
            compared += 1
    assert compared == len(named) - 2  # all but the pooler, which 'hidden' does not reach
    assert g["encoder.layer.0.attention.self.query.weight"].scope == "encoder.layer.0.attention.self.query"


def test_torch_mlp_forward_and_gradients(tmp_path):
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(1)
    layers = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 6), nn.Sigmoid(), nn.Linear(6, 3),
                           nn.LogSoftmax(dim=-1))
    for dtype in (torch.float32, torch.float64):
        mlp = layers.to(dtype)
        x = torch.randn(5, 4, dtype=dtype, requires_grad=True)
        path = _export(torch, mlp, (x,), tmp_path / f"mlp{dtype}.onnx", ["x"], ["y"], dynamo=False, opset_version=17)
        g = assert_matches_reference(onnx.load(path), {"x": x.detach().numpy()}, tmp_path / "copy.onnx")
        assert g.op_histogram()["linear"] == 3
    coef = N(5, 3)
    mlp.zero_grad()
    (mlp(x) * torch.as_tensor(coef)).sum().backward()
    result = backward(g, forward(g, {"x": x.detach().numpy()}), weighted("y", coef))
    np.testing.assert_allclose(result.grad("x"), x.grad.numpy(), rtol=1e-8, atol=1e-12)
    for name, p in mlp.named_parameters():
        np.testing.assert_allclose(result.grad(name), p.grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=name)


def _hf_bert(torch, dtype):
    transformers = pytest.importorskip("transformers", reason="the Hugging Face test needs transformers")
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(config).to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():  # distinct values, so the exporter cannot merge equal initializers
            p.normal_(0.0, 0.4)
    # no id 0: it is the padding_idx, whose embedding row torch never updates (an autograd rule
    # ONNX cannot express)
    ids = torch.tensor([[2, 7, 11, 29, 5], [3, 3, 9, 17, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    types = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])
    return model, (ids, mask, types)


HF_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def test_hugging_face_bert_forward_and_gradients(tmp_path):
    torch = _torch()
    model, args = _hf_bert(torch, torch.float64)
    path = _export(torch, model, args, tmp_path / "hf.onnx", HF_INPUTS, ["logits"], dynamo=False, opset_version=17,
                   do_constant_folding=False)
    feeds = _feeds(args, HF_INPUTS)
    g = assert_matches_reference(onnx.load(path), feeds, tmp_path / "copy.onnx")
    logits = model(input_ids=args[0], attention_mask=args[1], token_type_ids=args[2]).logits
    np.testing.assert_allclose(ours(g, feeds)["logits"], logits.detach().numpy(), rtol=1e-10, atol=1e-10)
    coef = N(*logits.shape)
    (logits * torch.as_tensor(coef)).sum().backward()
    result = backward(g, forward(g, feeds), weighted("logits", coef))
    named = {k: p for k, p in model.named_parameters() if p.grad is not None}
    compared = [p.name for p in g.parameters() if p.name in named]
    assert len(compared) >= len(named) - 1  # the exporter may store the tied decoder weight once
    for name in compared:
        np.testing.assert_allclose(result.grad(name), named[name].grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=name)
    assert g["bert.encoder.layer.1.attention.self.value.weight"].scope == "bert.encoder.layer.1.attention.self.value"


def test_torch_dynamo_export_of_bert(tmp_path):
    torch = _torch()
    pytest.importorskip("onnxscript", reason="torch's dynamo ONNX exporter needs onnxscript")
    model, args = _bert(torch, torch.float32)
    path = _export(torch, model, args, tmp_path / "bert.onnx", BERT_INPUTS, ["hidden", "pooled"], dynamo=True,
                   verbose=False)
    feeds = _feeds(args, BERT_INPUTS)
    g = assert_matches_reference(onnx.load(path), feeds, tmp_path / "copy.onnx")
    assert g.meta["opset"] >= 18
    assert {n.scope for n in g.find(op="softmax")} == {"encoder.layer.0.attention.self", "encoder.layer.1.attention.self"}
    assert g["encoder.layer.1.attention.self.key.bias"].scope == "encoder.layer.1.attention.self.key"
    model, args = _hf_bert(torch, torch.float32)
    path = _export(torch, model, args, tmp_path / "hf.onnx", HF_INPUTS, ["logits"], dynamo=True, verbose=False)
    assert_matches_reference(onnx.load(path), _feeds(args, HF_INPUTS), tmp_path / "copy.onnx")


# ================================================================ vision: a torch CNN through ONNX
def _cnns(torch):
    """A 2-D CNN (grouped, strided and dilated convolutions, batch norm after a ReLU so the
    exporter cannot fold it into the convolution, ceil-mode max pool, average pool without the
    padding, global average pool, Flatten, Linear) and a 1-D one, with trained-looking batch norms."""
    nn = torch.nn
    torch.manual_seed(0)
    cnn2d = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=3), nn.ReLU(), nn.BatchNorm2d(6),
                          nn.Conv2d(6, 4, 3, padding=2, dilation=2, bias=False), nn.ReLU(),
                          nn.MaxPool2d(2, ceil_mode=True), nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    cnn1d = nn.Sequential(nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), nn.ReLU(), nn.BatchNorm1d(6),
                          nn.MaxPool1d(3, stride=2, padding=1), nn.AvgPool1d(2, padding=1), nn.Flatten(), nn.Linear(18, 2))
    with torch.no_grad():
        for bn in (cnn2d[2], cnn1d[2]):
            bn.running_mean.normal_(); bn.running_var.uniform_(0.5, 2.0); bn.weight.normal_(); bn.bias.normal_()
    return {"cnn2d": (cnn2d.eval(), (2, 3, 9, 8)), "cnn1d": (cnn1d.eval(), (2, 4, 17))}


@pytest.mark.parametrize("name", ["cnn2d", "cnn1d"])
def test_torch_cnn_matches_reference_evaluator_and_autograd(tmp_path, name):
    torch = _torch()
    model, shape = _cnns(torch)[name]
    x32 = torch.from_numpy(N(*shape, dtype=np.float32))
    path = _export(torch, model, (x32,), tmp_path / "cnn.onnx", ["image"], ["logits"], dynamo=False, opset_version=17)
    g = assert_matches_reference(onnx.load(path), {"image": x32.numpy()}, tmp_path / "copy.onnx")  # float32: 1e-5
    with torch.no_grad():
        np.testing.assert_allclose(ours(g, {"image": x32.numpy()})["logits"], model(x32).numpy(), rtol=0, atol=1e-5)
    assert {"windows", "conv", "batch_norm", "max_pool", "window_mean", "linear"} <= set(g.op_histogram())

    model = model.double()
    x = x32.double().requires_grad_(True)
    path = _export(torch, model, (x,), tmp_path / "cnn64.onnx", ["image"], ["logits"], dynamo=False, opset_version=17)
    g = from_onnx(path)
    coef = N(*g["logits"].shape)
    result = backward(g, forward(g, {"image": x.detach().numpy()}), weighted("logits", coef))
    (model(x) * torch.as_tensor(coef)).sum().backward()
    np.testing.assert_allclose(result.grad("image"), x.grad.numpy(), rtol=1e-8, atol=1e-12 * np.abs(x.grad.numpy()).max())
    compared = 0
    for pname, p in model.named_parameters():
        if pname in {q.name for q in g.parameters()}:
            np.testing.assert_allclose(result.grad(pname), p.grad.numpy(), rtol=1e-8,
                                       atol=1e-12 * np.abs(p.grad.numpy()).max(), err_msg=pname)
            compared += 1
    assert compared == len(list(model.parameters()))
    assert g["2.weight"].scope == "2" and [n.scope for n in g if n.op == "batch_norm"] == ["2"]


def test_vision_op_gradients_match_finite_differences(tmp_path):
    """Conv with asymmetric pads and groups → BatchNormalization → MaxPool (ceil mode) and
    AveragePool (padding counted) → GlobalAveragePool, in float64: the IR's real-semiring
    backward against central differences of the IR's forward."""
    nodes = [node("Conv", ["x", "w", "b"], ["c"], strides=[1, 2], pads=[1, 0, 0, 1], group=2),
             node("BatchNormalization", ["c", "s", "t", "m", "v"], ["n"]),
             node("MaxPool", ["n"], ["p"], kernel_shape=[2, 2], ceil_mode=1, strides=[2, 1]),
             node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], pads=[1, 1, 0, 0], count_include_pad=1),
             node("GlobalAveragePool", ["a"], ["y"])]
    feeds = {"x": N(1, 2, 5, 6)}
    model = make_model(nodes, feeds, ["y"], inits={"w": N(4, 1, 2, 2), "b": N(4), "s": N(4), "t": N(4), "m": N(4),
                                                   "v": P(4)})
    g = assert_matches_reference(model, feeds, tmp_path / "v.onnx")
    coef = N(*g["y"].shape)
    grad = backward(g, forward(g, feeds), weighted("y", coef)).grad("x")

    def qoi(x):
        return float(np.sum(coef * ours(g, {"x": x})["y"]))
    eps, fd = 1e-6, np.zeros_like(feeds["x"])
    for i in np.ndindex(fd.shape):
        hi, lo = feeds["x"].copy(), feeds["x"].copy()
        hi[i] += eps
        lo[i] -= eps
        fd[i] = (qoi(hi) - qoi(lo)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())
    assert np.count_nonzero(grad) > grad.size // 2


@pytest.mark.parametrize("nodes,match", [
    ([node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2])], r"'MaxPool:y' \(MaxPool\): the Indices output"),
    ([node("BatchNormalization", ["x", "s", "s", "s", "s"], ["y"], training_mode=1)],
     r"'BatchNormalization:y' \(BatchNormalization\): training_mode=1 is unsupported"),
    ([node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], auto_pad="SAME_UPPER", ceil_mode=1)],
     r"'AveragePool:y' \(AveragePool\): ceil_mode=1 with auto_pad=SAME_UPPER is unsupported"),
    ([node("Conv", ["x", "w"], ["y"], pads=[1, 1])], r"'Conv:y' \(Conv\): pads \[1, 1\] must have 4 entries"),
])
def test_unsupported_vision_attributes_name_the_op_and_node(tmp_path, nodes, match):
    model = make_model(nodes, {"x": N(1, 2, 4, 4)}, [nodes[0].output[0]], inits={"s": P(2), "w": N(2, 2, 2, 2)},
                       opset=15)
    with pytest.raises(OnnxConversionError, match=match) as info:
        from_onnx(save(model, tmp_path / "m.onnx"))
    assert "\n" not in str(info.value)
