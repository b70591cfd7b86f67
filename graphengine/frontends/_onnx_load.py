"""Reading ONNX files for :mod:`graphengine.frontends.onnx`: parsing, checks, external data,
tensors and attributes as numpy / Python values, and the two kinds of values known at import
time (:class:`Const`, :class:`Param`) the op mappings pass around.

Everything here turns a bad file into one :class:`~graphengine.errors.GraphFormatError` line
naming the file (and the tensor or input concerned). Nothing here executes code from the file:
an ONNX model is a protobuf message, and external data are raw bytes read at stated offsets.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, Optional

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import GraphEngineError, GraphFormatError


class OnnxConversionError(GraphEngineError):
    """An ONNX model is readable but cannot be converted (unsupported op, non-constant shape, ...)."""


class UnsupportedOnnxOpError(OnnxConversionError):
    """The model uses op types the importer has no mapping for (all of them are listed)."""


class Const:
    """A value known at import time that carries no gradient."""

    __slots__ = ("value", "name")

    def __init__(self, value, name: Optional[str] = None):
        self.value = np.asarray(value)
        self.name = name


class Param:
    """A floating-point initializer: known, but differentiated (a ``parameter`` node when used)."""

    __slots__ = ("value", "name")

    def __init__(self, value: np.ndarray, name: str):
        self.value = value
        self.name = name


def shape(v) -> tuple:
    """The shape of a :class:`Const`, :class:`Param` or IR node."""
    return tuple(v.value.shape) if isinstance(v, (Const, Param)) else tuple(v.shape)


# ONNX TensorProto element types the IR can hold (everything else may only appear in folded
# constant subgraphs).
IR_ELEM_TYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.BOOL: "bool",
}


def one_line(text: Any) -> str:
    """Collapse an exception text to one line (protobuf and checker messages span several)."""
    return re.sub(r"\s+", " ", str(text)).strip()


def elem_type_name(elem_type: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type {elem_type}"


def np_dtype(elem_type: int, where: str) -> np.dtype:
    """numpy dtype of an ONNX element type (for ``Cast``); error if numpy has none."""
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        raise OnnxConversionError(f"{where}: unsupported element type {elem_type_name(elem_type)}") from None


def load_model(path: str) -> onnx.ModelProto:
    """Parse ``path`` as an ONNX model without loading external data.

    Errors (one line each): missing file, bytes that are not a protobuf ``ModelProto``,
    a truncated file, a message without graph / IR version / opset, a model the ONNX checker
    rejects.
    """
    if not os.path.exists(path):
        raise GraphFormatError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise GraphFormatError(f"{path}: not a regular file")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise GraphFormatError(f"{path}: empty file, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # google.protobuf.message.DecodeError and friends
        raise GraphFormatError(f"{path}: not an ONNX model or truncated file (protobuf decode failed: "
                               f"{one_line(e) or type(e).__name__})") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.opset_import:
        raise GraphFormatError(f"{path}: not an ONNX model (no IR version, graph or opset import; "
                               "wrong file or truncated)")
    base_dir = os.path.dirname(os.path.abspath(path))
    for tensor in _tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _external_file(tensor, base_dir, path)
    try:  # by path: external data are then checked relative to the model, and > 2 GB models work
        onnx.checker.check_model(path)
    except Exception as e:
        raise GraphFormatError(f"{path}: invalid ONNX model: {one_line(e)}") from None
    return model


def _tensors(model: onnx.ModelProto):
    """Initializers and tensor attributes of the main graph."""
    yield from model.graph.initializer
    for node in model.graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t
            elif a.type == onnx.AttributeProto.TENSORS:
                yield from a.tensors


def default_opset(model: onnx.ModelProto, path: str) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise GraphFormatError(f"{path}: the model imports no version of the default ONNX domain")


def _external_file(tensor: onnx.TensorProto, base_dir: str, path: str) -> str:
    info = {e.key: e.value for e in tensor.external_data}
    loc = info.get("location", "")
    where = f"{path}: tensor '{tensor.name}'"
    if not loc:
        raise GraphFormatError(f"{where} is stored externally but names no location")
    if os.path.isabs(loc) or os.path.normpath(loc).split(os.sep)[0] == os.pardir:
        raise GraphFormatError(f"{where}: external data location '{loc}' must be a path inside the "
                               "model's directory")
    full = os.path.join(base_dir, loc)
    if not os.path.isfile(full):
        raise GraphFormatError(f"{where}: external data file '{loc}' not found (looked in '{base_dir}')")
    try:
        offset = int(info.get("offset", 0) or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        raise GraphFormatError(f"{where}: bad external data offset/length {info}") from None
    size = os.path.getsize(full)
    if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
        raise GraphFormatError(f"{where}: external data file '{loc}' has {size} bytes, too few for "
                               f"offset {offset} length {length} (truncated?)")
    return full


def tensor_to_array(tensor: onnx.TensorProto, base_dir: str, path: str) -> np.ndarray:
    """A TensorProto as a numpy array; external data is read relative to ``base_dir``."""
    if tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.EXTERNAL:
        _external_file(tensor, base_dir, path)
        tensor = onnx.TensorProto.FromString(tensor.SerializeToString())  # keep the model untouched
        try:
            onnx.external_data_helper.load_external_data_for_tensor(tensor, base_dir)
        except Exception as e:
            raise GraphFormatError(f"{path}: tensor '{tensor.name}': cannot read external data: "
                                   f"{one_line(e)}") from None
    try:
        return np.array(numpy_helper.to_array(tensor))
    except Exception as e:
        raise GraphFormatError(f"{path}: tensor '{tensor.name}' "
                               f"({elem_type_name(tensor.data_type)} {list(tensor.dims)}) cannot be "
                               f"decoded: {one_line(e)}") from None


def attributes(node: onnx.NodeProto, base_dir: str, path: str) -> Dict[str, Any]:
    """A node's attributes as Python values: ints, floats, str, lists, numpy arrays (tensors)."""
    out: Dict[str, Any] = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = tensor_to_array(a.t, base_dir, path)
        elif a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            out[a.name] = a  # only control-flow ops have these; they are unsupported
        else:
            value = onnx.helper.get_attribute_value(a)
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            elif isinstance(value, list):
                value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
            out[a.name] = value
    return out


def input_shape(vi: onnx.ValueInfoProto, given: Optional[Any], path: str):
    """Concrete shape and IR dtype of a graph input; symbolic dims come from ``given``."""
    where = f"{path}: graph input '{vi.name}'"
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise OnnxConversionError(f"{where} is not a tensor (sequences, maps and optionals are unsupported)")
    if tt.elem_type not in IR_ELEM_TYPES:
        raise OnnxConversionError(f"{where} has element type {elem_type_name(tt.elem_type)}; supported: "
                                  + ", ".join(sorted(set(IR_ELEM_TYPES.values()))))
    dtype = IR_ELEM_TYPES[tt.elem_type]
    dims = list(tt.shape.dim) if tt.HasField("shape") else None
    if given is not None:
        shape = tuple(int(s) for s in given)
        if any(s < 0 for s in shape):
            raise OnnxConversionError(f"{where}: input_shapes gives a negative size {list(shape)}")
        if dims is not None:
            model_dims = [d.dim_value if d.HasField("dim_value") else None for d in dims]
            if len(model_dims) != len(shape) or any(m is not None and m != s for m, s in zip(model_dims, shape)):
                shown = [m if m is not None else "?" for m in model_dims]
                raise OnnxConversionError(f"{where}: input_shapes gives {list(shape)}, the model declares {shown}")
        return shape, dtype
    if dims is None:
        raise OnnxConversionError(f"{where} has no declared shape; pass input_shapes={{'{vi.name}': [...]}}")
    symbolic = [d.dim_param or "?" for d in dims if not d.HasField("dim_value")]
    if symbolic:
        shown = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
        raise OnnxConversionError(f"{where} has symbolic dims {shown}; pass concrete sizes with "
                                  f"input_shapes={{'{vi.name}': [...]}}")
    return tuple(int(d.dim_value) for d in dims), dtype
