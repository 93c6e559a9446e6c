"""The float graph of a .pface file as editable lists, and its rewrite to int8.

The rewrite turns chosen Convs into ONNX ``QLinearConv`` ops on int8 tensors in picoface's
scheme (quant_math.py); ``QuantizeLinear`` starts each int8 region, ``MaxPool`` runs on int8
(exact), and ``DequantizeLinear`` feeds every float consumer (Add, Resize, heads, graph
outputs).
"""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from picoface import _core, modelfile
from picoface.quant_math import QuantParams, quantize, weight_scales

KEEP_FLOAT = ("first", "last")

@dataclasses.dataclass
class Graph:
    metadata: Dict[str, object]
    tensors: Dict[str, modelfile.Tensor]
    ops: List[modelfile.Op]
    inputs: List[str]
    outputs: List[str]

    def encode(self, outputs: Optional[Sequence[str]] = None) -> bytes:
        return modelfile.encode(self.metadata, list(self.tensors.values()), self.ops, self.inputs,
                                list(outputs if outputs is not None else self.outputs))


def load_graph(blob: bytes) -> Graph:
    """The graph of .pface bytes as editable lists."""
    s = modelfile.summary(blob)
    consts = _core.model_constants_from_bytes(blob)
    names = [t["name"] for t in s["tensors"]]
    tensors = {}
    for t in s["tensors"]:
        if t["constant"]:
            tensors[t["name"]] = modelfile.Tensor(t["name"], data=consts[t["name"]],
                                                  scales=t.get("scales"), zero_points=t.get("zero_points"),
                                                  axis=t.get("axis", -1))
        else:
            tensors[t["name"]] = modelfile.Tensor(t["name"], dtype=t["dtype"], shape=list(t["shape"]))
    ops = [modelfile.Op(o["type"], [names[i] if i >= 0 else None for i in o["inputs"]],
                        [names[i] for i in o["outputs"]], dict(o["attrs"])) for o in s["ops"]]
    return Graph(dict(s["metadata"]), tensors, ops, [names[i] for i in s["inputs"]],
                 [names[i] for i in s["outputs"]])


# ---------------------------------------------------------------------------------------


_INT8_ACTS = ("none", "relu", "clip")


def _quantizable(graph: Graph, op: modelfile.Op) -> bool:
    if op.type != "Conv" or len(op.inputs) < 2 or op.inputs[1] is None:
        return False
    w = graph.tensors[op.inputs[1]]
    if w.data is None or np.asarray(w.data).ndim != 4 or w.scales is not None:
        return False
    if str(op.attrs.get("activation", "none")) not in _INT8_ACTS:
        return False
    if len(op.inputs) > 3 and any(i is not None for i in op.inputs[3:]):
        return False
    return graph.tensors[op.inputs[0]].data is None


def _downstream_convs(graph: Graph) -> Dict[int, bool]:
    """Per Conv op index: whether another Conv reads anything it computes."""
    producer = {o: i for i, op in enumerate(graph.ops) for o in op.outputs}
    has_conv_after = {i: False for i, op in enumerate(graph.ops)}
    for i, op in enumerate(graph.ops):
        if op.type != "Conv":
            continue
        seen, stack = set(), [t for t in op.inputs if t in producer]
        while stack:
            p = producer[stack.pop()]
            if p in seen:
                continue
            seen.add(p)
            has_conv_after[p] = True
            stack.extend(t for t in graph.ops[p].inputs if t in producer)
    return has_conv_after


def select(graph: Graph, keep_float: Sequence[str]) -> List[int]:
    chosen = [i for i, op in enumerate(graph.ops) if _quantizable(graph, op)]
    if "first" in keep_float:
        chosen = [i for i in chosen if graph.ops[i].inputs[0] not in graph.inputs]
    if "last" in keep_float:
        after = _downstream_convs(graph)
        chosen = [i for i in chosen if after[i]]
    return chosen


def rewrite(graph: Graph, chosen: Sequence[int], params: Dict[str, QuantParams],
             per_channel: bool) -> Graph:
    tensors = dict(graph.tensors)
    ops: List[modelfile.Op] = []
    int8_of: Dict[str, Tuple[str, QuantParams]] = {}  # float name -> (int8 name, params)
    float_ready = set(graph.inputs) | {n for n, t in tensors.items() if t.data is not None}
    chosen = set(chosen)

    def const(name, value):
        if name not in tensors:
            tensors[name] = modelfile.Tensor(name, data=value)
        return name

    def qp_consts(base: str, p: QuantParams):
        return (const(base + ".scale", np.array(p.scale, np.float32)),
                const(base + ".zero_point", np.array(p.zero_point, np.int8)))

    def int8_tensor(name: str, like: str):
        tensors[name] = modelfile.Tensor(name, dtype="int8", shape=list(tensors[like].shape))
        return name

    def need_float(name: Optional[str]):
        if name is None or name in float_ready:
            return
        qname, p = int8_of[name]
        s, z = qp_consts(qname, p)
        ops.append(modelfile.Op("DequantizeLinear", [qname, s, z], [name], {}))
        float_ready.add(name)

    def need_int8(name: str, p: QuantParams) -> str:
        if name in int8_of:
            return int8_of[name][0]
        need_float(name)
        qname = int8_tensor(name + ".q8", name)
        s, z = qp_consts(qname, p)
        ops.append(modelfile.Op("QuantizeLinear", [name, s, z], [qname], {}))
        int8_of[name] = (qname, p)
        return qname

    for i, op in enumerate(graph.ops):
        if i in chosen:
            x, w_name, y = op.inputs[0], op.inputs[1], op.outputs[0]
            b_name = op.inputs[2] if len(op.inputs) > 2 else None
            # A tensor already int8 (from MaxPool) keeps the parameters it has.
            px = int8_of[x][1] if x in int8_of else params[x]
            xq = need_int8(x, px)
            w = np.asarray(tensors[w_name].data, np.float32)
            sw = weight_scales(w, per_channel)
            wq = quantize(w, sw if per_channel else sw[0], 0, axis=0 if per_channel else None, lo=-127)
            base = y + ".qconv"
            sx, zx = qp_consts(xq, px)
            py = params[y]
            yq = int8_tensor(y + ".q8", y)
            sy, zy = qp_consts(yq, py)
            inputs = [xq, sx, zx, const(base + ".w", wq), const(base + ".w_scale", sw),
                      const(base + ".w_zero_point", np.zeros(sw.shape, np.int8)), sy, zy]
            if b_name is not None:
                b = np.asarray(tensors[b_name].data, np.float64)
                bs = np.float64(np.float32(px.scale)) * sw.astype(np.float64)
                bq = np.clip(np.rint(b / bs), -(2 ** 29), 2 ** 29 - 1).astype(np.int32)
                inputs.append(const(base + ".bias", bq))
            attrs = {k: v for k, v in op.attrs.items()}
            ops.append(modelfile.Op("QLinearConv", inputs, [yq], attrs))
            int8_of[y] = (yq, py)
            continue
        if op.type == "MaxPool" and op.inputs[0] in int8_of and op.inputs[0] not in float_ready:
            qname, p = int8_of[op.inputs[0]]
            yq = int8_tensor(op.outputs[0] + ".q8", op.outputs[0])
            ops.append(modelfile.Op("MaxPool", [qname], [yq], dict(op.attrs)))
            int8_of[op.outputs[0]] = (yq, p)
            continue
        for t in op.inputs:
            need_float(t)
        ops.append(op)
        float_ready.update(op.outputs)
    for t in graph.outputs:
        need_float(t)
    # Drop tensors nothing references any more (float weights of quantised Convs, float
    # activations that only exist in int8 now).
    used = set(graph.inputs) | set(graph.outputs)
    for op in ops:
        used.update(t for t in op.inputs if t)
        used.update(op.outputs)
    tensors = {n: t for n, t in tensors.items() if n in used}
    return Graph(dict(graph.metadata), tensors, ops, list(graph.inputs), list(graph.outputs))
