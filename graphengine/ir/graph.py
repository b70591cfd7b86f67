"""The IR: a topologically ordered DAG of :class:`Node` objects plus the arrays of its
parameters and constants.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> g = Graph()
>>> x = g.input("x", (2, 3))
>>> w = g.parameter("w", np.ones((4, 3)), scope="fc")
>>> y = g.call("linear", x, w, scope="fc", name="y")
>>> g.mark_output(y)
>>> y.shape, y.dtype, len(g)
((2, 4), 'float64', 3)
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import GraphValidationError, UnknownOpError, name_some
from .dtypes import dtype_name
from .registry import AttrError, ShapeError, TensorType, get_op

LEAF_OPS = ("input", "parameter", "constant")


@dataclass
class Node:
    """One vertex of the IR (a whole tensor; the engine works on its elements)."""

    id: int
    op: str
    inputs: Tuple[int, ...]
    attrs: Dict[str, Any]
    shape: Tuple[int, ...]
    dtype: str
    name: str
    scope: str = ""

    @property
    def type(self) -> TensorType:
        return TensorType(self.shape, self.dtype)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def where(self) -> str:
        """Human-readable location used in error messages."""
        scope = f" in scope '{self.scope}'" if self.scope else ""
        return f"node {self.id} '{self.name}' (op {self.op}){scope}"

    def to_json(self) -> Dict[str, Any]:
        return {
            "id": self.id, "op": self.op, "inputs": list(self.inputs), "attrs": self.attrs,
            "shape": list(self.shape), "dtype": self.dtype, "name": self.name, "scope": self.scope,
        }


NodeRef = Union[Node, int, str]


class Graph:
    """A DAG whose node list is in topological order (every input precedes its consumer).

    ``arrays`` maps the id of every ``parameter``/``constant`` node to its value; ``outputs``
    lists the ids of the graph's outputs; ``meta`` is a JSON-able dict (e.g. the decomposition
    policy the graph was exported with).
    """

    def __init__(self, meta: Optional[Dict[str, Any]] = None):
        self.nodes: List[Node] = []
        self.arrays: Dict[int, np.ndarray] = {}
        self.outputs: List[int] = []
        self.meta: Dict[str, Any] = dict(meta or {})
        self._by_name: Dict[str, int] = {}
        self._scope_stack: List[str] = []

    # ----------------------------------------------------------------- lookup
    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __getitem__(self, ref: NodeRef) -> Node:
        return self.node(ref)

    def node(self, ref: NodeRef) -> Node:
        """A node by id, name or the node itself; ``KeyError`` with a clear message otherwise."""
        if isinstance(ref, Node):
            return self.nodes[ref.id]
        if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
            if 0 <= ref < len(self.nodes):
                return self.nodes[int(ref)]
            raise KeyError(f"no node with id {ref} (graph has {len(self.nodes)} nodes)")
        if isinstance(ref, str) and ref in self._by_name:
            return self.nodes[self._by_name[ref]]
        raise KeyError(f"no node named {ref!r}")

    def find(self, scope: str = "", op: Optional[str] = None) -> List[Node]:
        """Nodes whose scope equals ``scope`` or lies under it, optionally of one op.

        >>> g = Graph(); a = g.input("a", (1,), scope="enc.layer.0")
        >>> [n.name for n in g.find("enc")]
        ['a']
        """
        return [n for n in self.nodes
                if (not scope or n.scope == scope or n.scope.startswith(scope + "."))
                and (op is None or n.op == op)]

    def consumers(self) -> List[List[Tuple[int, int]]]:
        """For each node id, the list of (consumer id, input slot) pairs."""
        out: List[List[Tuple[int, int]]] = [[] for _ in self.nodes]
        for n in self.nodes:
            for slot, i in enumerate(n.inputs):
                out[i].append((n.id, slot))
        return out

    def scopes(self) -> List[str]:
        """Distinct non-empty scopes in first-appearance order."""
        return list(dict.fromkeys(n.scope for n in self.nodes if n.scope))

    def op_histogram(self) -> Counter:
        return Counter(n.op for n in self.nodes)

    def parameters(self) -> List[Node]:
        return [n for n in self.nodes if n.op == "parameter"]

    def inputs(self) -> List[Node]:
        return [n for n in self.nodes if n.op == "input"]

    # --------------------------------------------------------------- building
    @contextlib.contextmanager
    def scope(self, name: str):
        """Context manager: nodes added inside get ``name`` (joined with dots) as scope."""
        self._scope_stack.append(name)
        try:
            yield
        finally:
            self._scope_stack.pop()

    def _current_scope(self, scope: Optional[str]) -> str:
        parts = [s for s in self._scope_stack if s]
        if scope:
            parts.append(scope)
        return ".".join(parts)

    def add(self, op: str, inputs: Sequence[NodeRef] = (), attrs: Optional[Dict[str, Any]] = None,
            name: Optional[str] = None, scope: Optional[str] = None,
            array: Optional[np.ndarray] = None) -> Node:
        """Append a node, inferring its shape and dtype; raises :class:`GraphValidationError`."""
        ids = tuple(self.node(i).id for i in inputs)
        node_id = len(self.nodes)
        scope_str = self._current_scope(scope)
        if name is None:
            name = f"{op}_{node_id}"
        if name in self._by_name:
            raise GraphValidationError(f"duplicate node name '{name}' (node {node_id}, scope '{scope_str}')")
        if array is not None:
            array = np.asarray(array)
            array = array.astype(dtype_name(array.dtype), copy=False)
        node = Node(node_id, str(op), ids, dict(attrs or {}), (), "float64", str(name), scope_str)
        node.attrs, ttype = _check_node(node, [self.nodes[i].type for i in ids], array)
        node.shape, node.dtype = ttype.shape, ttype.dtype
        self.nodes.append(node)
        self._by_name[name] = node_id
        if array is not None:
            self.arrays[node_id] = array
        return node

    def call(self, op: str, *inputs: NodeRef, name: Optional[str] = None,
             scope: Optional[str] = None, **attrs) -> Node:
        """``g.call("matmul", a, b)``: shorthand for :meth:`add`."""
        return self.add(op, inputs, attrs, name=name, scope=scope)

    def input(self, name: str, shape: Sequence[int], dtype: str = "float64",
              scope: Optional[str] = None) -> Node:
        return self.add("input", (), {"shape": [int(s) for s in shape], "dtype": dtype_name(dtype)},
                        name=name, scope=scope)

    def parameter(self, name: str, array, scope: Optional[str] = None) -> Node:
        return self.add("parameter", (), {}, name=name, scope=scope, array=np.asarray(array))

    def constant(self, array, name: Optional[str] = None, scope: Optional[str] = None) -> Node:
        return self.add("constant", (), {}, name=name, scope=scope, array=np.asarray(array))

    def mark_output(self, *nodes: NodeRef) -> None:
        for n in nodes:
            nid = self.node(n).id
            if nid not in self.outputs:
                self.outputs.append(nid)

    # ---------------------------------------------------------------- editing
    def rename(self, ref: NodeRef, name: str) -> Node:
        """Give a node a new name (renaming it to its own name does nothing); returns the node.

        Node names are the graph's keys for users (feeds, ``--nodes``, QoIs), so a name another
        node holds is refused with :class:`GraphValidationError` rather than made unique: the
        caller decides what a clash means.

        >>> g = Graph(); x = g.input("x", (2,)); y = g.call("exp", x)
        >>> g.rename(y, "y").name, g["y"] is y
        ('y', True)
        >>> g.rename("y", "x")
        Traceback (most recent call last):
        ...
        graphengine.errors.GraphValidationError: cannot rename node 1 'y' (op exp) to 'x': node 0 holds that name
        """
        node = self.node(ref)
        name = str(name)
        holder = self._by_name.get(name)
        if holder is not None and holder != node.id:
            raise GraphValidationError(f"cannot rename {node.where()} to '{name}': node {holder} holds that name")
        del self._by_name[node.name]
        node.name = name
        self._by_name[name] = node.id
        return node

    def truncate(self, length: int) -> None:
        """Remove every node from position ``length`` on, with its stored array and output mark.

        Nodes are in topological order, so none of the nodes kept can consume a removed one:
        what remains is a valid graph, and the ids (and :class:`Node` objects) of the kept nodes
        are unchanged. The removed nodes' names become free again. Frontends use this to undo a
        partially emitted mapping of one source op.

        >>> g = Graph(); x = g.input("x", (2,)); y = g.call("exp", x, name="y"); g.mark_output(y)
        >>> g.truncate(1)
        >>> [n.name for n in g], g.outputs, g.call("tanh", x, name="y").id
        (['x'], [], 1)
        """
        length = int(length)
        if not 0 <= length <= len(self.nodes):
            raise ValueError(f"cannot truncate a graph of {len(self.nodes)} nodes to {length}")
        for node in self.nodes[length:]:
            del self._by_name[node.name]
            self.arrays.pop(node.id, None)
        del self.nodes[length:]
        self.outputs = [o for o in self.outputs if o < length]

    # ------------------------------------------------------------- validation
    def validate(self) -> None:
        """Check the whole graph; raise one :class:`GraphValidationError` for the first problem.

        Checks: ids are positions, names are unique, every input exists and precedes its
        consumer (a reference forward is reported as a cycle when there is one), ops are known,
        attributes are valid, stored shapes/dtypes match inference, leaf arrays are present.
        """
        names = set()
        for pos, node in enumerate(self.nodes):
            if node.id != pos:
                raise GraphValidationError(f"{node.where()}: id {node.id} stored at position {pos}")
            if node.name in names:
                raise GraphValidationError(f"{node.where()}: duplicate node name '{node.name}'")
            names.add(node.name)
            for i in node.inputs:
                if isinstance(i, bool) or not (isinstance(i, (int, np.integer)) and 0 <= i < len(self.nodes)):
                    raise GraphValidationError(f"{node.where()}: dangling input {i!r} (no such node)")
                if i >= node.id:
                    raise GraphValidationError(f"{node.where()}: {self._describe_forward_ref(node, i)}")
        for node in self.nodes:
            attrs, ttype = _check_node(node, [self.nodes[i].type for i in node.inputs],
                                       self.arrays.get(node.id))
            if tuple(ttype.shape) != tuple(node.shape) or ttype.dtype != node.dtype:
                raise GraphValidationError(
                    f"{node.where()}: stored type {list(node.shape)} {node.dtype} but op infers "
                    f"{list(ttype.shape)} {ttype.dtype}")
            node.attrs = attrs  # defaults filled in, as Graph.add stores them
        for o in self.outputs:
            if isinstance(o, bool) or not (isinstance(o, int) and 0 <= o < len(self.nodes)):
                raise GraphValidationError(f"graph output {o!r} names no node")
        stray = sorted(set(self.arrays) - {n.id for n in self.nodes if n.op in ("parameter", "constant")})
        if stray:
            raise GraphValidationError(f"arrays stored for non-leaf or missing node ids {stray[:5]}")

    def _describe_forward_ref(self, node: Node, target: int) -> str:
        cycle = self._cycle_from(node.id)
        if cycle is None:
            return (f"input {target} ('{self.nodes[target].name}') comes after its consumer; "
                    "nodes must be stored in topological order")
        names = [self.nodes[u].name for u in cycle + cycle[:1]]
        if len(names) <= 12:
            return f"cycle: {' -> '.join(names)}"
        return f"cycle of {len(cycle):,} nodes: {name_some(names, first=8, sep=' -> ')}"

    def _cycle_from(self, start: int) -> Optional[List[int]]:
        """A cycle (node ids, input before consumer) reachable from ``start``, or None; an
        iterative depth-first search, linear in the edges (a 200,000-node cycle takes a second)."""
        consumers: Dict[int, List[int]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if isinstance(i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < len(self.nodes):
                    consumers.setdefault(int(i), []).append(n.id)
        parent: Dict[int, int] = {}
        on_path, done = {start}, set()
        stack = [(start, iter(consumers.get(start, ())))]
        while stack:
            u, successors = stack[-1]
            for v in successors:
                if v in on_path:  # back edge u -> v closes the cycle v -> ... -> u -> v
                    cycle = [u]
                    while cycle[-1] != v:
                        cycle.append(parent[cycle[-1]])
                    return cycle[::-1]
                if v not in done:
                    parent[v] = u
                    on_path.add(v)
                    stack.append((v, iter(consumers.get(v, ()))))
                    break
            else:
                stack.pop()
                on_path.discard(u)
                done.add(u)
        return None

    # ------------------------------------------------------------------ views
    def to_networkx(self):
        """A ``networkx.DiGraph`` with an edge input → consumer (attribute ``slot``); nodes carry
        ``op``, ``shape``, ``dtype``, ``name`` and ``scope``.

        >>> g = Graph(); a = g.input("a", (2,)); b = g.call("exp", a)
        >>> sorted(g.to_networkx().edges(data="slot"))
        [(0, 1, 0)]
        """
        import networkx as nx

        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n.id, op=n.op, shape=tuple(n.shape), dtype=n.dtype, name=n.name, scope=n.scope)
        for n in self.nodes:
            for slot, i in enumerate(n.inputs):
                g.add_edge(i, n.id, slot=slot)
        return g

    def summary(self) -> Dict[str, Any]:
        """Counts used by ``graphengine info``."""
        params = self.parameters()
        return {
            "nodes": len(self.nodes),
            "ops": dict(sorted(self.op_histogram().items())),
            "parameters": len(params),
            "parameter_elements": int(sum(n.size for n in params)),
            "inputs": {n.name: {"shape": list(n.shape), "dtype": n.dtype} for n in self.inputs()},
            "outputs": [self.nodes[o].name for o in self.outputs],
            "scopes": self.scopes(),
            "meta": self.meta,
        }

    def _rebuild_index(self) -> None:
        self._by_name = {n.name: n.id for n in self.nodes}


def _check_node(node: Node, input_types: List[TensorType], array: Optional[np.ndarray]):
    """Validate one node against its op; return (normalized attrs, inferred type)."""
    try:
        opdef = get_op(node.op)
    except UnknownOpError:
        raise UnknownOpError(f"{node.where()}: unknown op '{node.op}'") from None
    n = len(input_types)
    if n < opdef.min_inputs or (opdef.max_inputs is not None and n > opdef.max_inputs):
        want = (f"{opdef.min_inputs}" if opdef.max_inputs == opdef.min_inputs
                else f"{opdef.min_inputs}..{opdef.max_inputs if opdef.max_inputs is not None else 'n'}")
        raise GraphValidationError(f"{node.where()}: takes {want} inputs, got {n}")
    try:
        attrs = opdef.check_attrs(node.attrs)
        if node.op in ("parameter", "constant"):
            if array is None:
                raise ShapeError("its array is missing")
            ttype = TensorType(tuple(int(s) for s in array.shape), dtype_name(array.dtype))
        else:
            ttype = opdef.infer(input_types, attrs)
    except (AttrError, ShapeError) as e:
        raise GraphValidationError(f"{node.where()}: {e}") from None
    except ValueError as e:  # unsupported dtype and similar
        raise GraphValidationError(f"{node.where()}: {e}") from None
    return attrs, TensorType(tuple(int(s) for s in ttype.shape), ttype.dtype)
