"""PyTorch frontend: ``torch.export`` → core ATen → an IR :class:`~graphengine.ir.Graph`.

:func:`from_torch` exports a module with ``torch.export.export(model.eval(), args)``, runs
``run_decompositions`` with graphengine's own table (:func:`decomposition_table`: torch's core
ATen table minus the ops kept whole, see :data:`KEEP_WHOLE`), and maps every ATen node to IR
ops. What the graph contains:

- **Inputs**: the model's tensor arguments (``input`` nodes named like the forward's
  parameters, e.g. ``input_ids``, ``x``), with the example inputs' static shapes. The IR has
  static shapes: export once per input shape (``dynamic_shapes`` must be ``None``).
- **Parameters** (``nn.Parameter``) become ``parameter`` nodes, buffers and lifted constants
  become ``constant`` nodes; both are named by their ``state_dict`` key (tied parameters by the
  first key ``model.named_parameters()`` reports, e.g. ``bert.embeddings.word_embeddings.weight``
  for a BERT MLM whose decoder shares it) and scoped by the module owning them.
- **Constant folding**: every node that depends on no input and no parameter (attention
  masks built from ``arange``/``full``/``tril``/comparisons, position ids, sliced buffers...) is
  evaluated with torch at export time and becomes one ``constant`` node, so no IR node other
  than a ``constant`` depends only on constants. ``*_like`` ops (``full_like``, ``zeros_like``...)
  depend only on their argument's shape and are folded too. ``x + 0`` with a folded all-zero
  constant (Hugging Face's additive mask when nothing is masked) is dropped.
- **Scopes**: each node's ``scope`` is the innermost module of its ``nn_module_stack``, its
  fully qualified path exactly as ``model.named_modules()`` spells it, e.g.
  ``bert.encoder.layer.5.attention.self.key`` for a ``BertForMaskedLM`` (nothing stripped;
  ``strip_prefix="bert."`` removes that prefix from scopes and parameter/buffer names when the
  caller asks). ``graph.find("bert.encoder.layer.5.attention.self.key")`` returns the nodes of
  that module. Nodes are named after the FX node they come from (``linear_3``, ``softmax``);
  helper nodes a mapping adds are named ``<fx name>.<k>``; outputs are named after the model's
  output (``logits``, ``last_hidden_state``, ``output`` for a bare tensor, ``output_0``... for
  a tuple).
- **Outputs**: by default ``logits`` when the model returns a Hugging Face ``ModelOutput`` with
  logits, else ``last_hidden_state`` when there is one, else every tensor output;
  ``outputs="pooler_output"`` (or a list) picks others. ``graph.meta["outputs"]`` maps each
  chosen output to its node name.
- ``graph.meta``: ``{"source": "torch", "decomposition": policy, "model": class name,
  "torch_version": ..., "outputs": {...}, "strip_prefix": ..., "promote_float32": ...}``.
- **Dtypes**: every IR node has the dtype torch gives the value (checked node by node at
  export). Casts are ``cast`` nodes (float→float casts pass the gradient unchanged), an op's
  ``dtype=`` argument (``softmax(x, dim, dtype=torch.float32)``, ``sum(..., dtype=...)``) is a
  ``cast`` before it, and a Python scalar takes the dtype of the tensor it meets (``int32 * 2``
  stays int32), so a float64 Llama keeps its float32 softmax and RMSNorm. With
  ``promote_float32=True`` every float32 value is computed in float64 instead (parameters,
  inputs, casts, op dtype arguments and constants folded at export).
- **Integer and boolean values** (position ids computed from ``input_ids``, a padding
  ``attention_mask`` input combined with the causal mask) are ordinary nodes of the
  non-differentiable ops in :mod:`graphengine.ir.ops.logic`; a float value selected by a mask
  computed from activations (``where(h > 0, ...)``) differentiates like torch.
- **Fusion**: RMS normalization spelled in primitives (Llama's ``RMSNorm``) becomes one
  ``rms_norm`` node, GPT-2's spelled-out tanh GELU one ``gelu`` node
  (:func:`graphengine.ir.passes.fuse`), and ``aten.silu`` is kept whole, so under the ``fused`` policy every family has its normalizations as dense blocks and its
  activations as single diagonal nodes.

Unsupported ops raise one :class:`~graphengine.errors.GraphEngineError` listing every
unsupported ATen op with the module path where it occurs.

ATen op → IR op mapping (non-constant operands; anything on constants is folded):

===========================================  ==================================================
ATen                                         IR
===========================================  ==================================================
linear, addmm, mm, bmm, matmul               linear, addmm, mm, bmm, matmul (1-D operands via
                                             unsqueeze/squeeze)
add/sub/mul/div (.Tensor, .Scalar), rsub     add/sub/mul/div (``alpha`` via mul; rsub swaps)
neg exp log tanh sigmoid relu erf sqrt       same names
rsqrt gelu leaky_relu silu
pow.Tensor_Scalar / reciprocal / pow.Scalar  pow(exponent) / pow(-1) / exp(x · log base)
_softmax, softmax.int, _safe_softmax         softmax, after a ``cast`` for a ``dtype`` argument
                                             (``_safe_softmax`` gives 0 on an all −inf
                                             row, the IR softmax NaN: such rows never occur
                                             unless a query attends to nothing)
_log_softmax, log_softmax.int                log_softmax
native_layer_norm (output 0), layer_norm     layer_norm (mean/rstd outputs unsupported)
logsumexp                                    amax, sub, exp, sum, log, add (m + log Σ exp(x − m))
sum, mean, amax, max.dim (values)            sum, mean, amax
view, _unsafe_view, reshape                  reshape (chains collapsed; no-ops dropped)
permute, transpose, t, expand, unsqueeze,    permute, transpose, expand, unsqueeze, squeeze
squeeze                                      (no-ops dropped)
slice, select, cat                           slice, select, cat
split, split_with_sizes, unbind              one slice / select per piece
index.Tensor                                 embedding (2-D table, index on dim 0),
                                             index_select (+ reshape), several adjacent
                                             constant indices merged into one flat index
gather, index_select, embedding              gather, index_select, embedding
where, masked_fill                           where (boolean mask; scalars become constants)
convolution (N-d, stride, padding,           windows → conv (→ add of the bias as [C, 1, …]);
dilation, groups)                            transposed convolutions unsupported
_native_batch_norm_legit_no_training         batch_norm (the model is exported in eval mode)
max_pool{1,2,3}d(_with_indices)              max_pool (the indices output is unsupported)
avg_pool{1,2,3}d, adaptive average pools     windows → window_mean (torch's divisor)
clone, alias, detach, lift_fresh_copy,       identity (``detach`` too: the graph describes
_to_copy                                     the forward computation); ``_to_copy`` to another
                                             dtype: ``cast``
eq ne lt le gt ge (.Scalar, .Tensor),         same names: integer/boolean results, no gradient
bitwise_and/or/xor/not, logical_and/or/
xor/not, cumsum (integer or bool input)
===========================================  ==================================================

Unsupported ops are reported at their module path; an op in the top-level ``forward`` (or a
function it calls, such as transformers' mask builders) is reported as ``<root>`` with the
source line torch recorded.

``linear`` and ``matmul`` are kept whole by the decomposition table (torch would lower them to
``permute``/``addmm``/``view`` and ``expand``/``bmm``): the IR has both ops with exact
contraction Jacobians, and a layer input then has exactly the consumers a reader expects (the
query, key and value projections and the residual add). ``softmax``/``_softmax``,
``log_softmax``, ``layer_norm``/``native_layer_norm``, ``gelu``, ``silu``, ``_safe_softmax`` and
``logsumexp`` are kept too; the ``decompose`` argument then applies a
:mod:`decomposition policy <graphengine.ir.passes.decompose>` to the IR graph.

>>> import torch, numpy as np
>>> from graphengine.engine import forward
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
>>> g = from_torch(net, (torch.randn(5, 3, dtype=torch.float64),))
>>> [(n.op, n.scope) for n in g if n.op not in ("input", "parameter")]
[('linear', '0'), ('tanh', '1'), ('linear', '2')]
>>> x = np.random.default_rng(0).normal(size=(5, 3))
>>> y = forward(g, {"input": x})[g.outputs[0]]
>>> bool(np.allclose(y, net(torch.from_numpy(x)).detach().numpy(), rtol=1e-12))
True
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import operator
import os
import re
import warnings
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch  # noqa: F401  (this module is the torch frontend: importing it without torch fails early)

from ..errors import GraphEngineError
from ..ir import Graph, Node
from ..ir.passes import POLICIES, decompose as decompose_graph, fuse, prune, unique_name
from ._torch_ops import (UNSUPPORTED, Const, SkipDependent, Unsup, Unsupported, contains, converters, dtype_name,
                         import_torch, normalize_args, supported_ops, to_numpy, walk)

__all__ = ["from_torch", "decomposition_table", "KEEP_WHOLE", "supported_ops"]

# ATen ops graphengine keeps undecomposed (names of OpOverloads).
KEEP_WHOLE = (
    "aten._softmax.default", "aten.softmax.int", "aten._safe_softmax.default",
    "aten._log_softmax.default", "aten.log_softmax.int",
    "aten.native_layer_norm.default", "aten.layer_norm.default",
    "aten.gelu.default", "aten.silu.default", "aten.linear.default", "aten.matmul.default", "aten.logsumexp.default",
)

# Ops whose result depends only on an argument's shape and dtype, never its values.
_SHAPE_ONLY = ("aten.full_like.default", "aten.zeros_like.default", "aten.ones_like.default",
               "aten.empty_like.default", "aten.new_zeros.default", "aten.new_ones.default",
               "aten.new_full.default", "aten.new_empty.default")


@contextlib.contextmanager
def quiet():
    """Keep third-party warnings and log records (torch's FutureWarnings, the tracebacks torch
    logs before raising, transformers' notices) off the console while exporting: they concern
    torch's internals; a failure reaches the user as one GraphEngineError line instead."""
    before = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(before)


def decomposition_table() -> Dict[Any, Callable]:
    """``torch.export``'s default (core-ATen) decomposition table minus :data:`KEEP_WHOLE`."""
    import_torch()
    from torch.export import default_decompositions

    table = dict(default_decompositions())
    for op in list(table):
        if str(op) in KEEP_WHOLE:
            del table[op]
    return table


def _module_path(fx_node) -> str:
    stack = fx_node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    if path.startswith("L['self']"):  # strict-mode spelling
        path = path[len("L['self']"):].lstrip(".")
    return path.replace("['", ".").replace("']", "").replace("[", ".").replace("]", "").strip(".")


# ======================================================================== converter
class _Converter:
    def __init__(self, ep, model, strip_prefixes: Sequence[str], promote_float32: bool = False):
        self.ep = ep
        self.g = Graph()
        self.env: Dict[Any, Any] = {}
        self.rename: Dict[int, str] = {}
        self.unsupported: "OrderedDict[Tuple[str, str], int]" = OrderedDict()
        self.taken: set = set()
        self.strip_prefixes = [p for p in strip_prefixes if p]
        # (id of a Const, dtype) -> (node, the Const itself: kept alive so its id is not reused)
        self.const_nodes: Dict[Tuple[int, str], Tuple[Node, "Const"]] = {}
        self.param_nodes: Dict[str, Node] = {}
        self.canonical = self._canonical_names(model)
        self.fx = None
        self.part = 0
        self.scope = ""
        self.out_dtype = None
        self.promote_float32 = promote_float32

    def ir_dtype(self, tdtype) -> Optional[str]:
        """The IR dtype for a torch dtype (float32 → float64 when promoting; ``None``: unsupported)."""
        name = dtype_name(tdtype)
        return "float64" if self.promote_float32 and name == "float32" else name

    # ------------------------------------------------------------------ naming
    def strip(self, s: str) -> str:
        for p in self.strip_prefixes:
            if s == p.rstrip("."):
                s = ""
            elif s.startswith(p):
                s = s[len(p):]
        return s

    def _canonical_names(self, model) -> Dict[int, str]:
        first: Dict[int, str] = {}
        for name, p in model.named_parameters(remove_duplicate=False):
            first.setdefault(id(p), name)
        for name, b in model.named_buffers(remove_duplicate=False):
            first.setdefault(id(b), name)
        return first

    def name(self, base: str) -> str:
        return unique_name(base, self.taken)

    # ------------------------------------------------------------------ emitting
    def emit(self, op: str, *inputs, **attrs) -> Node:
        nodes = [self.node(i) for i in inputs]
        name = self.name(f"{self.fx.name}.{self.part}")
        self.part += 1
        return self.g.add(op, nodes, attrs, name=name, scope=self.scope)

    def node(self, value, dtype: Optional[str] = None) -> Node:
        """The IR node for a value; constants and Python scalars are materialized."""
        if isinstance(value, Node):
            return value
        if isinstance(value, Unsupported):
            raise SkipDependent()
        torch = import_torch()
        dtype = dtype or self.out_dtype
        if isinstance(value, Const):
            arr = to_numpy(value.tensor, dtype)
            if arr.ndim == 0 and arr.dtype.kind == "i" and dtype in ("int32", "int64"):
                arr = arr.astype(dtype)  # a 0-d tensor promotes like a scalar
            key = (id(value), arr.dtype.name)
            if key not in self.const_nodes:
                node = self.g.add("constant", (), {}, name=self.name(value.name), scope=value.scope, array=arr)
                self.const_nodes[key] = (node, value)
            return self.const_nodes[key][0]
        if isinstance(value, torch.Tensor):
            return self.node(Const(value, f"{self.fx.name}.const", self.scope), dtype)
        if isinstance(value, (bool, int, float)):
            if isinstance(value, bool):
                arr = np.array(value)
            elif dtype in ("float32", "float64") or isinstance(value, float):
                arr = np.array(value, dtype=dtype if dtype in ("float32", "float64") else "float64")
            else:  # an integer scalar takes the integer result's dtype (torch: int32 * 2 is int32)
                arr = np.array(value, dtype=dtype if dtype in ("int32", "int64") else "int64")
            return self.g.add("constant", (), {}, name=self.name(f"{self.fx.name}.scalar"), scope=self.scope,
                              array=arr)
        raise Unsup(f"argument of type {type(value).__name__} is not supported")

    # ------------------------------------------------------------------ driver
    def run(self) -> None:
        torch = import_torch()
        from torch.export.graph_signature import InputKind

        specs = {s.arg.name: s for s in self.ep.graph_signature.input_specs if hasattr(s.arg, "name")}
        constants = getattr(self.ep, "constants", {}) or {}
        for fx in self.ep.graph.nodes:
            self.fx, self.scope, self.part = fx, self.strip(_module_path(fx)), 0
            val = fx.meta.get("val")
            self.out_dtype = self.ir_dtype(val.dtype) if isinstance(val, torch.Tensor) else None
            if fx.op == "placeholder":
                self.env[fx] = self._placeholder(fx, specs.get(fx.name), constants, InputKind)
            elif fx.op == "get_attr":
                obj = self.ep.graph_module
                for part in fx.target.split("."):
                    obj = getattr(obj, part)
                self.env[fx] = Const(obj, fx.name, self.scope) if isinstance(obj, torch.Tensor) else obj
            elif fx.op == "call_function":
                self.env[fx] = self._call(fx)
            elif fx.op == "output":
                pass
            else:
                self._unsupported(str(fx.target), f"FX node kind {fx.op}")
                self.env[fx] = UNSUPPORTED

    def _placeholder(self, fx, spec, constants, InputKind):
        torch = import_torch()
        val = fx.meta.get("val")
        if spec is None or spec.kind == InputKind.USER_INPUT:
            if not isinstance(val, torch.Tensor):
                return val  # a specialized Python scalar
            dtype = self.ir_dtype(val.dtype)
            if dtype is None or val.dtype in (torch.int8, torch.int16, torch.uint8):
                raise GraphEngineError(f"input '{fx.name}' has dtype {val.dtype}, which the IR does not support "
                                       "(float32, float64, int32, int64, bool)")
            shape = [int(s) for s in val.shape]
            return self.g.add("input", (), {"shape": shape, "dtype": dtype}, name=self.name(fx.name))
        target = spec.target
        if spec.kind == InputKind.PARAMETER:
            tensor = self.ep.state_dict[target]
            key = self.strip(self.canonical.get(id(tensor), target))
            if key not in self.param_nodes:
                try:
                    arr = to_numpy(tensor, self.ir_dtype(tensor.dtype))
                except Unsup as e:
                    raise GraphEngineError(f"parameter '{key}': {e}") from None
                scope = key.rsplit(".", 1)[0] if "." in key else ""
                self.param_nodes[key] = self.g.add("parameter", (), {}, name=self.name(key), scope=scope, array=arr)
            return self.param_nodes[key]
        if spec.kind in (InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            tensor = self.ep.state_dict[target] if target in self.ep.state_dict else constants[target]
            key = self.strip(self.canonical.get(id(tensor), target))
            scope = key.rsplit(".", 1)[0] if "." in key else ""
            return Const(tensor, key, scope)
        self._unsupported(f"input of kind {spec.kind.name}", "")
        return UNSUPPORTED

    def _where(self) -> str:
        """The module path of the current FX node; at the top level, ``<root>`` and the source
        line torch recorded (``<root> (sdpa_mask, masking_utils.py:378)``)."""
        if self.scope:
            return self.scope
        trace = (self.fx.meta.get("stack_trace") or "") if self.fx is not None else ""
        frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', trace)
        if not frames:
            return "<root>"
        path, line, func = frames[-1]
        return f"<root> ({func}, {os.path.basename(path)}:{line})"

    def _unsupported(self, op: str, why: str = "") -> None:
        where = self._where()
        key = (f"{op} ({why})" if why else op, where)
        self.unsupported[key] = self.unsupported.get(key, 0) + 1

    def _call(self, fx):
        torch = import_torch()
        target = fx.target
        tname = str(target) if isinstance(target, torch._ops.OpOverload) else getattr(target, "__name__", str(target))
        if tname.startswith("aten._assert") or tname.startswith("aten.sym_constrain"):
            return None
        args = walk(fx.args, lambda a: self.env[a] if isinstance(a, torch.fx.Node) else a)
        kwargs = walk(dict(fx.kwargs), lambda a: self.env[a] if isinstance(a, torch.fx.Node) else a)
        if target is operator.getitem:
            return args[0][args[1]] if not isinstance(args[0], Unsupported) else UNSUPPORTED
        if contains((args, kwargs), lambda v: isinstance(v, Unsupported)):
            # downstream of an unsupported op: report it too if it has no mapping of its own
            if tname not in converters() and tname not in _SHAPE_ONLY and not tname.startswith("aten.sym_"):
                self._unsupported(tname)
            return UNSUPPORTED
        dynamic = contains((args, kwargs), lambda v: isinstance(v, Node))
        if tname in _SHAPE_ONLY or tname.startswith("aten.sym_size"):
            args = walk(args, lambda v: self._stand_in(v) if isinstance(v, Node) else v)
            dynamic = False
        if not dynamic:
            return self._fold(target, args, kwargs, fx)
        conv = converters().get(tname)
        if conv is None:
            self._unsupported(tname)
            return UNSUPPORTED
        first = len(self.g.nodes)
        try:
            a = normalize_args(target, args, kwargs) if isinstance(target, torch._ops.OpOverload) else {
                "args": args, "kwargs": kwargs}
            result = conv(self, a)
        except Unsup as e:
            self.g.truncate(first)  # drop a partial mapping (its names stay in self.taken: harmless)
            self.const_nodes = {k: v for k, v in self.const_nodes.items() if v[0].id < first}
            self._unsupported(tname, str(e))
            return UNSUPPORTED
        except SkipDependent:
            return UNSUPPORTED
        self._check(fx, result, first)
        return result

    def _stand_in(self, node: Node):
        torch = import_torch()
        dt = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "int32": torch.int32,
              "bool": torch.bool}[node.dtype]
        return torch.zeros(node.shape, dtype=dt)

    def _fold(self, target, args, kwargs, fx):
        torch = import_torch()
        targs = walk(args, lambda v: v.tensor if isinstance(v, Const) else v)
        tkwargs = walk(kwargs, lambda v: v.tensor if isinstance(v, Const) else v)
        if self.promote_float32:  # folded values are computed in float64 too (e.g. rotary tables)
            def up(v):
                if v is torch.float32:
                    return torch.float64
                return v.double() if isinstance(v, torch.Tensor) and v.dtype == torch.float32 else v
            targs, tkwargs = walk(targs, up), walk(tkwargs, up)
        try:
            with torch.no_grad():
                out = target(*targs, **tkwargs)
        except Exception as e:  # noqa: BLE001 - report, do not crash
            self._unsupported(str(target), f"constant folding failed: {type(e).__name__}")
            return UNSUPPORTED
        return walk(out, lambda t: Const(t, fx.name, self.scope) if isinstance(t, torch.Tensor) else t)

    def _check(self, fx, result, first: int) -> None:
        """Name the mapping's result after the FX node and check it against torch's shape/dtype."""
        torch = import_torch()
        val = fx.meta.get("val")
        pairs = []
        if isinstance(result, Node):
            pairs.append((result, val))
            if result.id >= first and result.id not in self.rename:
                self.rename[result.id] = fx.name
        elif isinstance(result, (list, tuple)) and isinstance(val, (list, tuple)):
            pairs.extend((r, v) for r, v in zip(result, val) if isinstance(r, Node))
        for r, v in pairs:
            if not isinstance(v, torch.Tensor):
                continue
            want = (tuple(int(s) for s in v.shape), self.ir_dtype(v.dtype))
            if (tuple(r.shape), r.dtype) != want:
                raise GraphEngineError(
                    f"internal mapping error for {fx.target} at '{self._where()}': IR gives "
                    f"{list(r.shape)} {r.dtype}, torch {list(want[0])} {want[1]}")


# ======================================================================== outputs
def _output_names(model, args, kwargs) -> List[str]:
    """Names of the model's flattened tensor outputs, in ``torch.export`` order."""
    torch = import_torch()
    from torch.utils._pytree import tree_flatten_with_path

    with torch.no_grad():
        out = model(*args, **kwargs)
    if isinstance(out, torch.Tensor):
        return ["output"]
    if isinstance(out, Mapping):  # dicts and Hugging Face ModelOutput
        return [str(k) for k, v in out.items() if isinstance(v, torch.Tensor)]
    if isinstance(out, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in out):
        return [f"output_{i}" for i in range(len(out))]
    try:
        leaves, _ = tree_flatten_with_path(out)
    except Exception:  # noqa: BLE001 - a pytree without key paths: positions
        return []
    names = []
    tensors = [(path, v) for path, v in leaves if isinstance(v, torch.Tensor)]
    for path, _v in tensors:
        parts = []
        for k in path:
            for attr in ("key", "name", "idx"):
                if hasattr(k, attr):
                    parts.append(str(getattr(k, attr)))
                    break
        if not parts:
            names.append("output")
        elif len(tensors) > 1 and all(p.isdigit() for p in parts) and len(parts) == 1:
            names.append(f"output_{parts[0]}")
        else:
            names.append(".".join(parts))
    return names


def _pick_outputs(names: List[str], outputs) -> List[int]:
    if outputs is None:
        for default in ("logits", "last_hidden_state"):
            if default in names:
                return [names.index(default)]
        return list(range(len(names)))
    wanted = [outputs] if isinstance(outputs, str) else list(outputs)
    missing = [w for w in wanted if w not in names]
    if missing:
        raise GraphEngineError(f"output(s) {', '.join(missing)} not produced by the model "
                               f"(it returns: {', '.join(names) or 'no tensors'})")
    return [names.index(w) for w in wanted]


# ======================================================================== entry point
def from_torch(model, example_inputs, dynamic_shapes=None, decompose: str = "fused", kwargs=None, *,
               outputs: Union[None, str, Sequence[str]] = None, strip_prefix: str = "",
               constant_kwargs: Optional[Mapping[str, Any]] = None, promote_float32: bool = False) -> Graph:
    """Export a ``torch.nn.Module`` to an IR graph (see the module docstring for the mapping).

    ``example_inputs``: a tuple of positional arguments (or one tensor); ``kwargs``: keyword
    arguments (tensors become graph inputs too). ``decompose``: ``"fused"``, ``"primitive"`` or
    ``"paper"`` (:func:`graphengine.ir.passes.decompose`). ``outputs``: output name(s) to keep
    (default: ``logits``, else ``last_hidden_state``, else all). ``strip_prefix``: a prefix such
    as ``"bert."`` removed from scopes and parameter/buffer names. ``constant_kwargs``: keyword
    arguments baked into the graph instead of becoming inputs, e.g. a padding
    ``attention_mask`` (its mask arithmetic is then folded; as an input it would be reported as
    folded); as an input it stays an input and its mask arithmetic (comparisons, ``bitwise_and``)
    becomes non-differentiable integer/boolean nodes, so one graph serves every mask.
    ``promote_float32``: compute every float32 value in float64 (parameters, inputs, and the
    float32 islands of a float64 model such as ``softmax(..., dtype=torch.float32)`` or Llama's
    RMSNorm); by default the IR follows torch's dtype for every op (see "Dtypes" above).

    Raises :class:`GraphEngineError` when export fails, when ops are unsupported (one message
    listing them all with their module paths) or on a bad argument.
    """
    torch = import_torch()
    if decompose not in POLICIES:
        raise GraphEngineError(f"unknown decomposition policy {decompose!r} (choose one of {', '.join(POLICIES)})")
    if dynamic_shapes is not None:
        raise GraphEngineError("dynamic_shapes is not supported: IR graphs have static shapes; "
                               "export once per input shape")
    if not isinstance(model, torch.nn.Module):
        raise GraphEngineError(f"from_torch needs a torch.nn.Module, got {type(model).__name__}")
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    kwargs = dict(kwargs or {})
    model.eval()
    name = type(model).__name__
    prefixes = [strip_prefix]
    if constant_kwargs:
        model = _with_constants(model, dict(constant_kwargs)).eval()
        prefixes.insert(0, "inner.")
    try:
        with torch.enable_grad(), quiet():  # grad mode keeps e.g. nn.TransformerEncoder off its fast path
            ep = torch.export.export(model, args, kwargs=kwargs)
            ep = ep.run_decompositions(decomposition_table())
    except GraphEngineError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises many types; report one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise GraphEngineError(f"torch.export failed for {name}: {type(e).__name__}: {first}") from None

    cv = _Converter(ep, model, prefixes, promote_float32)
    cv.run()
    if cv.unsupported:
        items = [f"{op} at {where}" + (f" (x{n})" if n > 1 else "") for (op, where), n in cv.unsupported.items()]
        raise GraphEngineError(f"{name}: {len(items)} unsupported op(s) for the torch frontend: "
                               + "; ".join(items))

    from torch.export.graph_signature import OutputKind

    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    flat = list(out_node.args[0])
    user = [fx for fx, spec in zip(flat, ep.graph_signature.output_specs) if spec.kind == OutputKind.USER_OUTPUT]
    with quiet():
        names = _output_names(model, args, kwargs)
    if len(names) != len(user):  # non-tensor leaves or an unusual pytree: fall back to positions
        names = ["output"] if len(user) == 1 else [f"output_{i}" for i in range(len(user))]
    chosen = _pick_outputs(names, outputs)
    out_map: Dict[str, int] = {}
    for i in chosen:
        value = cv.env[user[i]] if isinstance(user[i], torch.fx.Node) else user[i]
        if isinstance(value, Const) or not isinstance(value, Node):
            raise GraphEngineError(f"output '{names[i]}' does not depend on any input or parameter "
                                   "(a constant); nothing to differentiate")
        cv.g.mark_output(value)
        if value.op not in ("input", "parameter") and value.id not in out_map.values():
            cv.rename[value.id] = names[i]
        out_map[names[i]] = value.id
    graph = fuse(prune(cv.g, rename=cv.rename))
    new_id = dict(zip(cv.g.outputs, graph.outputs))
    graph.meta = {
        "source": "torch",
        "decomposition": "fused",
        "model": name,
        "torch_version": torch.__version__.split("+")[0],
        "outputs": {k: graph.nodes[new_id[v]].name for k, v in out_map.items()},
        "strip_prefix": strip_prefix,
        "promote_float32": bool(promote_float32),
    }
    graph.validate()
    return decompose_graph(graph, decompose)


def _with_constants(model, constants: Dict[str, Any]):
    """``model`` called with extra keyword arguments held as (non-persistent) buffers."""
    torch = import_torch()

    class WithConstants(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model
            self._plain = {k: v for k, v in constants.items() if not isinstance(v, torch.Tensor)}
            self._tensors = [k for k, v in constants.items() if isinstance(v, torch.Tensor)]
            for i, k in enumerate(self._tensors):
                self.register_buffer(f"constant_{i}", constants[k], persistent=False)

        def forward(self, *args, **kwargs):
            extra = {k: getattr(self, f"constant_{i}") for i, k in enumerate(self._tensors)}
            return self.inner(*args, **kwargs, **self._plain, **extra)

    # torch.export names graph inputs after forward's parameters: show it the inner signature
    try:
        sig = inspect.signature(model.forward)
        params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        params += [p for p in sig.parameters.values() if p.name not in constants]
        WithConstants.forward.__signature__ = sig.replace(parameters=params)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        pass
    return WithConstants()
