"""The importer's in-memory graph: constants, value shapes and a topologically ordered list
of nodes, with the few queries the passes need. Nodes keep ONNX names, inputs ("" for an
optional input left out) and attributes as plain Python values (numpy arrays for tensor
attributes)."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np


@dataclass
class Node:
    type: str
    inputs: List[str]
    outputs: List[str]
    attrs: Dict[str, object] = field(default_factory=dict)
    name: str = ""


@dataclass
class Value:
    """What is known of an activation: numpy dtype name and shape (-1: dynamic dimension;
    None: rank unknown)."""

    dtype: str = "float32"
    shape: Optional[Tuple[int, ...]] = None


@dataclass
class Graph:
    nodes: List[Node]
    constants: Dict[str, np.ndarray]
    inputs: List[str]
    outputs: List[str]
    values: Dict[str, Value] = field(default_factory=dict)
    opset: int = 18

    def consumers(self) -> Dict[str, List[Node]]:
        """Each value name -> the nodes that read it (once per node)."""
        out: Dict[str, List[Node]] = {}
        for node in self.nodes:
            for name in dict.fromkeys(i for i in node.inputs if i):
                out.setdefault(name, []).append(node)
        return out

    def producers(self) -> Dict[str, Node]:
        return {o: node for node in self.nodes for o in node.outputs if o}

    def sole_consumer(self, name: str, consumers: Dict[str, List[Node]]) -> Optional[Node]:
        """The one node reading ``name`` when nothing else does (no other node, not a graph
        output): only then may its producer absorb that node."""
        readers = consumers.get(name, [])
        if len(readers) != 1 or name in self.outputs:
            return None
        return readers[0]

    def rename_uses(self, old: str, new: str) -> None:
        """Every reader of ``old`` (nodes and graph outputs) reads ``new`` instead."""
        for node in self.nodes:
            node.inputs = [new if i == old else i for i in node.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def op_count(self) -> int:
        return len(self.nodes)

    def op_types(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for node in self.nodes:
            counts[node.type] = counts.get(node.type, 0) + 1
        return counts


def _attribute(a, onnx, numpy_helper):
    t = onnx.AttributeProto
    if a.type == t.FLOAT:
        return float(a.f)
    if a.type == t.INT:
        return int(a.i)
    if a.type == t.STRING:
        return a.s.decode("utf-8", "replace")
    if a.type == t.FLOATS:
        return [float(x) for x in a.floats]
    if a.type == t.INTS:
        return [int(x) for x in a.ints]
    if a.type == t.STRINGS:
        return [s.decode("utf-8", "replace") for s in a.strings]
    if a.type == t.TENSOR:
        return numpy_helper.to_array(a.t)
    raise ValueError(f"attribute {a.name!r} of type {t.AttributeType.Name(a.type)} is not supported "
                     "(subgraphs and sparse tensors have no native equivalent)")


def _constant_node_value(node, onnx, numpy_helper) -> np.ndarray:
    attrs = {a.name: a for a in node.attribute}
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"].t)
    scalar = {"value_float": np.float32, "value_int": np.int64, "value_floats": np.float32,
              "value_ints": np.int64}
    for key, dtype in scalar.items():
        if key in attrs:
            return np.array(onnx.helper.get_attribute_value(attrs[key]), dtype=dtype)
    raise ValueError(f"Constant node {node.name or node.output[0]!r} has no dense value "
                     f"(attributes: {sorted(attrs)})")


def _value(type_proto, onnx) -> Optional[Value]:
    if not type_proto.HasField("tensor_type"):
        return None
    tt = type_proto.tensor_type
    dtype = (np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
             if tt.elem_type else "float32")
    shape = None
    if tt.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                      for d in tt.shape.dim)
    return Value(dtype, shape)


def from_onnx(model) -> Graph:
    """The graph of an ONNX ModelProto: initializers and Constant nodes become constants,
    graph inputs that have an initializer are constants too (old exporters list weights as
    inputs), and value_info (from shape inference) fills in what is known of activations."""
    import onnx
    from onnx import numpy_helper

    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    values: Dict[str, Value] = {}
    for info in list(g.input) + list(g.value_info) + list(g.output):
        v = _value(info.type, onnx)
        if v is not None:
            values[info.name] = v
    nodes: List[Node] = []
    for n in g.node:
        if n.domain not in ("", "ai.onnx"):
            raise ValueError(f"node {n.name or n.output[0]!r} is in custom domain {n.domain!r}, "
                             "which the native engine cannot run")
        if n.op_type == "Constant":
            constants[n.output[0]] = _constant_node_value(n, onnx, numpy_helper)
            continue
        nodes.append(Node(n.op_type, list(n.input), list(n.output),
                          {a.name: _attribute(a, onnx, numpy_helper) for a in n.attribute}, n.name))
    inputs = [i.name for i in g.input if i.name not in constants]
    return Graph(nodes, constants, inputs, [o.name for o in g.output], values, opset)


def node_to_onnx(node: Node):
    """The ONNX NodeProto of ``node`` (tensor attributes back as TensorProto)."""
    import onnx
    from onnx import numpy_helper

    attrs = {}
    for k, v in node.attrs.items():
        if isinstance(v, list) and not v:
            continue  # an empty list has no ONNX type to write; ONNX reads it as the default
        if isinstance(v, np.ndarray):
            v = numpy_helper.from_array(v)
        attrs[k] = v
    return onnx.helper.make_node(node.type, node.inputs, node.outputs, name=node.name, **attrs)
