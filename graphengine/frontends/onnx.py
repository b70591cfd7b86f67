"""ONNX import: an ``.onnx`` file → an IR :class:`~graphengine.ir.Graph`.

>>> import os, tempfile
>>> from onnx import TensorProto, helper, save
>>> relu = helper.make_node("Relu", ["x"], ["y"], name="/head/act/Relu")
>>> x, y = (helper.make_tensor_value_info(v, TensorProto.FLOAT, ["batch", 3]) for v in "xy")
>>> path = os.path.join(tempfile.mkdtemp(), "relu.onnx")
>>> save(helper.make_model(helper.make_graph([relu], "g", [x], [y])), path)
>>> g = from_onnx(path, input_shapes={"x": [2, 3]})
>>> [(n.op, n.name, n.scope, n.shape) for n in g]
[('input', 'x', '', (2, 3)), ('relu', 'y', 'head.act', (2, 3))]

What the importer does (and the choices it makes):

- **Loading.** The file is parsed as a protobuf ``ModelProto`` and checked with
  ``onnx.checker``; external-data tensors are read relative to the model's directory (never
  outside it). A file that is not ONNX, a truncated file or a missing external-data file gives
  one :class:`~graphengine.errors.GraphFormatError` line.
- **Inputs** become ``input`` nodes named as in the model. Symbolic dims need concrete sizes
  from ``input_shapes`` (a mapping name → shape); otherwise the error names the input.
  Element types float32/float64/int32/int64/bool are supported.
- **Initializers.** Floating-point initializers with at least one dim become ``parameter``
  nodes named by the initializer (gradients are computed for them); integer/boolean ones and
  0-d float ones become constants (exporters store literal scalars such as ``sqrt(d_head)`` and
  ``finfo.min`` that way). Exporters sometimes store folded copies of weights (the legacy
  torch exporter's ``onnx::MatMul_123`` = ``W.T``; the dynamo exporter's ``val_19``), and
  then the parameter has that name; they may also merge initializers with equal values (the
  all-zero biases of a freshly initialized model) into one shared parameter.
- **Constant folding.** Every node whose inputs are all known constants is evaluated at import
  time with numpy (``Shape``/``Gather``/``Concat``/``Reshape`` chains, masks, position ids).
  ``Shape`` and ``Size`` are always known. Ops with no graphengine counterpart (``Equal``,
  ``Less``, ``Range``, ``Tile``..., see :data:`FOLD_ONLY_OPS`) are accepted only in such constant
  subgraphs. Nodes that do not contribute to a graph output are skipped.
- **Ops.** See :data:`SUPPORTED_OPS`; ``MatMul`` → ``matmul`` (1-D operands are unsqueezed,
  then squeezed back), ``Gemm`` with ``transB=1`` and ``alpha=1`` → ``linear`` (torch's
  ``nn.Linear``), other ``Gemm`` → ``addmm``; ``Gather`` on a 2-D table along axis 0 →
  ``embedding``, with a scalar constant index → ``select``, else ``index_select``;
  ``Softmax``/``LogSoftmax`` follow opset ≥ 13 semantics or, below 13, the coerce-to-2-D
  semantics; ``Slice`` with negative steps → ``index_select``; ``GatherND`` (constant indices,
  ``batch_dims=0``) → ``reshape`` + ``index_select``; ``And``/``Or``/``Xor``/``Not`` on boolean
  masks → ``where``; ``Cast`` → ``cast`` (gradients pass between float types only);
  ``LayerNormalization`` → ``layer_norm`` (computed in the input's dtype; ``stash_type`` is
  ignored, only the first output may be used); the expanded forms (``ReduceMean``/``Pow``/
  ``Sqrt``... or ``Erf``-based GELU) are mapped op by op. Negative ``Gather`` indices are
  resolved at import time when constant; fed indices must be non-negative.
- **Vision ops** (:mod:`graphengine.frontends._onnx_vision`): ``Conv`` (1-, 2-, 3-d, strides,
  asymmetric ``pads``, ``auto_pad``, dilations, groups, bias) → ``windows`` → ``conv``;
  ``MaxPool`` → ``max_pool``; ``AveragePool`` (``count_include_pad`` both ways, ``ceil_mode``)
  → ``windows`` → ``window_mean``; ``GlobalAveragePool`` / ``GlobalMaxPool`` → adaptive windows
  of size 1; ``BatchNormalization`` (inference mode) → ``batch_norm``; ``Flatten`` →
  ``reshape``: the nodes the torch frontend gives for the same layers.
- **Names and scopes.** Each IR node is named by the ONNX value it computes (helper nodes of a
  multi-node lowering get ``<value>/<op>``); graph outputs keep their ONNX names. Scopes: from
  the dynamo exporter's ``pkg.torch.onnx.name_scopes`` metadata (the innermost module path), or
  else from a torch-style node name: ``/encoder/layer.0/attention/self/query/MatMul`` → scope
  ``encoder.layer.0.attention.self.query`` (the last path component, the op, is dropped). A
  parameter whose name is a dotted module path (``encoder.layer.0.attention.self.query.weight``)
  gets that path minus its last component as scope; other parameters get the scope of their
  first consumer.
- ``graph.meta``: ``{"source": "onnx", "opset": ..., "decomposition": ..., "producer": ...,
  "onnx_outputs": {onnx output name: IR node name}}``.
- ``decompose``: ``"fused"`` keeps the fused ops (``softmax``, ``log_softmax``, ``layer_norm``,
  ``gelu``); ``"primitive"`` and ``"paper"`` expand them with
  :func:`graphengine.ir.passes.decompose` (node names of the fused ops are kept).

Unsupported op types are all listed in one :class:`UnsupportedOnnxOpError` line, with the names
of the nodes using them; any other conversion problem names the ONNX node.
"""

from __future__ import annotations

import ast
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..errors import GraphEngineError
from ..ir import DTYPES, Graph, Node
from ..ir.passes import POLICIES, decompose as decompose_pass, unique_name

try:
    import onnx
except ImportError as _e:  # pragma: no cover - exercised only without the extra
    raise ImportError("graphengine.frontends.onnx needs the 'onnx' package: pip install graphengine[onnx]") from _e

from ._onnx_load import (Const, OnnxConversionError, Param, UnsupportedOnnxOpError, attributes, default_opset,
                         input_shape, load_model, one_line, tensor_to_array)
from ._onnx_ops import FOLD, FOLD_ONLY, LOWER, SUPPORTED

__all__ = ["from_onnx", "SUPPORTED_OPS", "FOLD_ONLY_OPS", "OnnxConversionError", "UnsupportedOnnxOpError",
           "scope_from_node_name"]

SUPPORTED_OPS = tuple(SUPPORTED)
FOLD_ONLY_OPS = tuple(FOLD_ONLY)

_MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.\w+)+$")


def scope_from_node_name(name: str) -> str:
    """Module path of a torch-exported ONNX node name (the last component is the op).

    >>> scope_from_node_name("/encoder/layer.0/attention/self/query/MatMul")
    'encoder.layer.0.attention.self.query'
    >>> scope_from_node_name("/Constant_1"), scope_from_node_name("node_add_3")
    ('', '')
    """
    if not name.startswith("/"):
        return ""
    parts = [p for p in name.strip("/").split("/")[:-1] if p]
    return ".".join(parts)


def _node_scope(node) -> str:
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)  # a list literal; literal_eval runs no code
            except (ValueError, SyntaxError):
                break
            if isinstance(scopes, list) and len(scopes) >= 2 and all(isinstance(s, str) for s in scopes):
                return scopes[-2]
            return ""
    return scope_from_node_name(node.name)


class _Converter:
    """Walks the ONNX nodes in order, keeping each ONNX value as a Const, Param or IR node."""

    def __init__(self, model, path: str, opset: int):
        self.model, self.path, self.opset = model, path, opset
        self.base_dir = os.path.dirname(os.path.abspath(path))
        self.g = Graph()
        self.values: Dict[str, Any] = {}
        self._leaf_nodes: Dict[int, tuple] = {}  # id(Const/Param) -> (value object, node)
        self._used_names = set()
        # per-node state used by the handlers through the ctx interface
        self.node = None
        self.outputs: List[str] = []
        self._scope = ""
        self._base = ""

    # ------------------------------------------------------------ ctx interface for handlers
    def fail(self, msg: str):
        n = self.node
        raise OnnxConversionError(f"{self.path}: ONNX node '{n.name or '?'}' ({n.op_type}): {msg}")

    def const(self, v, what: str) -> np.ndarray:
        if isinstance(v, (Const, Param)):
            return v.value
        if v is None:
            self.fail(f"input '{what}' is missing")
        self.fail(f"input '{what}' must be computable at import time, but it depends on graph inputs")

    def ir(self, v) -> Node:
        if isinstance(v, Node):
            return v
        key = id(v)
        if key not in self._leaf_nodes:
            if v.value.dtype.name not in DTYPES:
                self.fail(f"constant '{v.name}' has dtype {v.value.dtype}, which the IR cannot hold")
            if isinstance(v, Param):
                scope = v.name.rsplit(".", 1)[0] if _MODULE_PATH.match(v.name) else self._scope
                node = self.g.parameter(self._unique(v.name), v.value, scope=scope)
            else:
                node = self.g.constant(v.value, name=self._unique(v.name or f"{self._base}/const"),
                                       scope=self._scope)
            self._leaf_nodes[key] = (v, node)
        return self._leaf_nodes[key][1]

    def call(self, op: str, *inputs, **attrs) -> Node:
        ins = [self.ir(v) for v in inputs]
        return self.g.add(op, ins, attrs, name=self._unique(f"{self._base}/{op}"), scope=self._scope)

    # ------------------------------------------------------------------------------ driver
    def _unique(self, name: str) -> str:
        return unique_name(name, self._used_names)

    def _rename(self, node: Node, name: str) -> None:
        """Name ``node`` after the ONNX value it computes, unless another node already has that name."""
        if node.name == name or name in self._used_names:
            return
        self._used_names.discard(node.name)
        self._used_names.add(name)
        self.g.rename(node, name)

    def add_inputs(self, input_shapes: Mapping[str, Sequence[int]]) -> None:
        inits = {t.name for t in self.model.graph.initializer}
        graph_inputs = [vi for vi in self.model.graph.input if vi.name not in inits]
        unknown = sorted(set(input_shapes) - {vi.name for vi in graph_inputs})
        if unknown:
            raise OnnxConversionError(f"{self.path}: input_shapes names no graph input: {', '.join(unknown)} "
                                      f"(inputs: {', '.join(vi.name for vi in graph_inputs) or 'none'})")
        for vi in graph_inputs:
            shape, dt = input_shape(vi, input_shapes.get(vi.name), self.path)
            self.values[vi.name] = self.g.input(self._unique(vi.name), shape, dt)

    def add_initializers(self) -> None:
        for t in self.model.graph.initializer:
            arr = tensor_to_array(t, self.base_dir, self.path)
            floating = arr.dtype.kind == "f" and arr.ndim > 0
            self.values[t.name] = Param(arr, t.name) if floating else Const(arr, t.name)
        for t in self.model.graph.sparse_initializer:
            raise OnnxConversionError(f"{self.path}: sparse initializer '{t.values.name}' is unsupported")

    def live_nodes(self) -> list:
        """The nodes some graph output depends on, in file order."""
        producer = {}
        for i, n in enumerate(self.model.graph.node):
            for o in n.output:
                if o:
                    producer[o] = i
        need, stack = set(), [o.name for o in self.model.graph.output]
        while stack:
            i = producer.get(stack.pop())
            if i is not None and i not in need:
                need.add(i)
                stack.extend(v for v in self.model.graph.node[i].input if v)
        return [n for i, n in enumerate(self.model.graph.node) if i in need]

    def check_supported(self, nodes) -> None:
        bad: Dict[str, List[str]] = {}
        for n in nodes:
            key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
            if key not in FOLD and key not in LOWER:
                bad.setdefault(key, []).append(n.name or "?")
        if bad:
            listed = "; ".join(f"{op} (nodes: {', '.join(names)})" for op, names in sorted(bad.items()))
            raise UnsupportedOnnxOpError(f"{self.path}: unsupported ONNX op(s): {listed}")

    def convert_node(self, n) -> None:
        self.node, self.outputs = n, list(n.output)
        self._scope = _node_scope(n)
        self._base = next((o for o in n.output if o), n.name or n.op_type)
        values = []
        for name in n.input:
            if not name:
                values.append(None)
            elif name not in self.values:
                self.fail(f"input '{name}' is not defined before this node (graph not in topological order?)")
            else:
                values.append(self.values[name])
        attrs = attributes(n, self.base_dir, self.path)
        while values and values[-1] is None:
            values.pop()
        start = len(self.g.nodes)
        try:
            if n.op_type in FOLD and all(v is None or isinstance(v, Const) for v in values):
                with np.errstate(all="ignore"):
                    results = [Const(r) for r in FOLD[n.op_type](self, [None if v is None else v.value for v in values], attrs)]
            elif n.op_type in LOWER:
                results = LOWER[n.op_type](self, values, attrs)
            else:
                culprit = next(name for name, v in zip(n.input, values) if v is not None and not isinstance(v, Const))
                self.fail(f"supported only when all inputs are constant (graphengine has no such op), "
                          f"but input '{culprit}' depends on graph inputs or parameters")
        except OnnxConversionError:
            raise
        except GraphEngineError as e:
            self.fail(one_line(e))
        except (ValueError, TypeError, IndexError, KeyError) as e:
            self.fail(f"{type(e).__name__}: {one_line(e)}")
        for name, value in zip(n.output, results):
            if not name:
                continue
            if isinstance(value, Const) and value.name is None:
                value.name = name
            elif isinstance(value, Node) and value.id >= start:
                self._rename(value, name)
            self.values[name] = value

    def add_outputs(self) -> Dict[str, str]:
        mapping, claimed = {}, set()
        self.node = None
        for vi in self.model.graph.output:
            if vi.name not in self.values:
                raise OnnxConversionError(f"{self.path}: graph output '{vi.name}' is not computed by any node")
            v = self.values[vi.name]
            self._scope, self._base = "", vi.name
            node = self.ir(v)
            if node.op not in ("input", "parameter") and node.id not in claimed:
                self._rename(node, vi.name)
                claimed.add(node.id)
            self.g.mark_output(node)
            mapping[vi.name] = node.name
        return mapping


def from_onnx(path, decompose: str = "fused", input_shapes: Optional[Mapping[str, Sequence[int]]] = None) -> Graph:
    """Import the ONNX model at ``path`` as an IR graph (see the module docstring for the rules).

    ``input_shapes`` maps graph-input names to concrete shapes (needed for symbolic dims);
    ``decompose`` names the op-granularity policy (``"fused"`` keeps the exporter's fused ops).
    Raises one-line :class:`~graphengine.errors.GraphEngineError` subclasses on bad input.
    """
    path = os.fspath(path)
    if decompose not in POLICIES:
        raise GraphEngineError(f"unknown decomposition policy {decompose!r} (choose one of {', '.join(POLICIES)})")
    if input_shapes is not None and not isinstance(input_shapes, Mapping):
        raise GraphEngineError(f"input_shapes must map input names to shapes, got {type(input_shapes).__name__}")
    model = load_model(path)
    opset = default_opset(model, path)
    conv = _Converter(model, path, opset)
    conv.add_inputs(dict(input_shapes or {}))
    conv.add_initializers()
    nodes = conv.live_nodes()
    conv.check_supported(nodes)
    for n in nodes:
        conv.convert_node(n)
    outputs = conv.add_outputs()
    g = conv.g
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p)
    g.meta.update({"source": "onnx", "opset": opset, "decomposition": "fused", "producer": producer,
                   "onnx_outputs": outputs})
    g.validate()
    return decompose_pass(g, decompose)
