"""The float graph of a .pface file as editable lists, and its rewrite to int8.

The rewrite turns chosen Convs (activation none, relu, clip, leaky_relu or prelu) into ONNX
``QLinearConv`` ops and chosen Gemms into com.microsoft ``QGemm`` ops on int8 tensors in
picoface's scheme (quant_math.py); ``QuantizeLinear`` starts each int8 region. A Gemm with
no Conv or Gemm after it (a network's last layer) outputs float32, dequantised from its
exact int32 sums. Between them
the graph stays int8 where the engine has an int8 op: ``MaxPool``, nearest ``Resize``,
``Flatten`` and ``Reshape`` keep their input's parameters (exact), ``Identity`` and a ``Pad``
of nothing pass the tensor on; ``Add`` becomes ``QLinearAdd`` (with a ``Relu`` that is its
only reader as its lower bound), ``Concat`` ``QLinearConcat``
(a copy where the inputs already have the output's parameters), ``AveragePool`` without
padding ``QLinearAveragePool`` and ``GlobalAveragePool`` ``QLinearGlobalAveragePool``, each
with its output's calibrated parameters. Bilinear ``Resize`` and every other op stay float,
fed by ``DequantizeLinear``.
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


def input_quantization(blob: bytes, summary: Optional[dict] = None) -> Optional[QuantParams]:
    """The parameters of the QuantizeLinear that is the first graph input's only reader (the
    start of an int8 model), else None. The native engine then takes that input as int8,
    quantised by the caller with these parameters, and skips the step: preprocessing can
    write int8 directly instead of float32 that the engine would read back."""
    s = summary or modelfile.summary(blob)
    if s["metadata"].get("quant.scheme", "none") == "none" or not s["inputs"]:
        return None
    x = s["inputs"][0]
    readers = [op for op in s["ops"] if x in op["inputs"]]
    if len(readers) != 1 or readers[0]["type"] != "QuantizeLinear" or len(readers[0]["inputs"]) < 3:
        return None
    names = [t["name"] for t in s["tensors"]]
    consts = _core.model_constants_from_bytes(blob)
    scale, zp = (np.asarray(consts[names[i]]) for i in readers[0]["inputs"][1:3])
    if scale.size != 1 or zp.dtype != np.int8:
        return None
    return QuantParams(float(scale.reshape(())), int(zp.reshape(())))


# ---------------------------------------------------------------------------------------


_INT8_ACTS = ("none", "relu", "clip", "leaky_relu", "prelu")


def _const(graph: Graph, name: Optional[str]) -> bool:
    return name is not None and graph.tensors[name].data is not None


def _quantizable(graph: Graph, op: modelfile.Op) -> bool:
    if op.type == "Gemm":
        return (len(op.inputs) >= 2 and _const(graph, op.inputs[1]) and not _const(graph, op.inputs[0])
                and np.asarray(graph.tensors[op.inputs[1]].data).ndim == 2
                and (len(op.inputs) < 3 or op.inputs[2] is None
                     or np.asarray(graph.tensors[op.inputs[2]].data).ndim == 1)
                and int(op.attrs.get("transA", 0)) == 0 and float(op.attrs.get("alpha", 1.0)) == 1.0
                and float(op.attrs.get("beta", 1.0)) == 1.0)
    if op.type != "Conv" or len(op.inputs) < 2 or op.inputs[1] is None:
        return False
    w = graph.tensors[op.inputs[1]]
    if w.data is None or np.asarray(w.data).ndim != 4 or w.scales is not None:
        return False
    act = str(op.attrs.get("activation", "none"))
    if act not in _INT8_ACTS:
        return False
    extra = [i for i in op.inputs[3:] if i is not None]
    if act == "prelu":
        # The slope (input 3) must be a constant: the engine folds it into the requantisation.
        if len(op.inputs) != 4 or not _const(graph, op.inputs[3]):
            return False
    elif extra:
        return False
    return graph.tensors[op.inputs[0]].data is None


_LAYERS = ("Conv", "Gemm")


def _downstream_layers(graph: Graph) -> Dict[int, bool]:
    """Per op index: whether a Conv or Gemm reads anything it computes."""
    producer = {o: i for i, op in enumerate(graph.ops) for o in op.outputs}
    has_layer_after = {i: False for i, op in enumerate(graph.ops)}
    for i, op in enumerate(graph.ops):
        if op.type not in _LAYERS:
            continue
        seen, stack = set(), [t for t in op.inputs if t in producer]
        while stack:
            p = producer[stack.pop()]
            if p in seen:
                continue
            seen.add(p)
            has_layer_after[p] = True
            stack.extend(t for t in graph.ops[p].inputs if t in producer)
    return has_layer_after


def select(graph: Graph, keep_float: Sequence[str]) -> List[int]:
    """Indices of the Convs and Gemms to run in int8; "first" keeps those reading a graph
    input float, "last" those with no Conv or Gemm after them."""
    chosen = [i for i, op in enumerate(graph.ops) if _quantizable(graph, op)]
    if "first" in keep_float:
        chosen = [i for i in chosen if graph.ops[i].inputs[0] not in graph.inputs]
    if "last" in keep_float:
        after = _downstream_layers(graph)
        chosen = [i for i in chosen if after[i]]
    return chosen


# Ops that may run in int8 with parameters of their own output (calibrated).
_REQUANTISING = ("Add", "Concat", "AveragePool", "GlobalAveragePool")


def _relu_after_add(graph: Graph) -> Dict[int, int]:
    """Add op index -> index of the Relu that is its output's only reader (a residual block's
    Relu, which QLinearAdd applies as its lower bound)."""
    readers: Dict[str, List[int]] = {}
    for j, op in enumerate(graph.ops):
        for t in op.inputs:
            if t is not None:
                readers.setdefault(t, []).append(j)
    fused = {}
    for i, op in enumerate(graph.ops):
        r = readers.get(op.outputs[0], []) if op.type == "Add" else []
        if len(r) == 1 and graph.ops[r[0]].type == "Relu" and op.outputs[0] not in graph.outputs:
            fused[i] = r[0]
    return fused


def calibration_tensors(graph: Graph, chosen: Sequence[int]) -> List[str]:
    """The float tensors the rewrite may need ranges of: inputs and outputs of the chosen
    layers, and outputs of the ops that may run in int8 with parameters of their own (and
    Add's inputs, whose shapes the rewrite compares, and the output of a Relu after an Add)."""
    names: List[str] = []
    for i in chosen:
        names += [graph.ops[i].inputs[0], graph.ops[i].outputs[0]]
    for op in graph.ops:
        if op.type in _REQUANTISING:
            names += (op.inputs if op.type == "Add" else []) + [op.outputs[0]]
    names += [graph.ops[j].outputs[0] for j in _relu_after_add(graph).values()]
    return list(dict.fromkeys(n for n in names if graph.tensors[n].data is None))


def rewrite(graph: Graph, chosen: Sequence[int], params: Dict[str, QuantParams],
            per_channel: bool, shapes: Optional[Dict[str, Tuple[int, ...]]] = None) -> Graph:
    """The int8 graph: ``chosen`` layers (from select) quantised with activation ``params``
    (per float tensor name, from calibration_tensors) and the ops between them kept int8
    where the engine allows (module docstring). ``shapes`` (per tensor name, seen in
    calibration) lets ``Add`` run in int8: QLinearAdd takes operands of one shape."""
    tensors = dict(graph.tensors)
    ops: List[modelfile.Op] = []
    int8_of: Dict[str, Tuple[str, QuantParams]] = {}  # float name -> (int8 name, params)
    float_ready = set(graph.inputs) | {n for n, t in tensors.items() if t.data is not None}
    chosen = set(chosen)
    shapes = shapes or {}
    layer_after = _downstream_layers(graph)
    relu_after = _relu_after_add(graph)
    fused_relus = set()  # Relus applied by the QLinearAdd before them

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

    def emit(op_type: str, inputs: List[Optional[str]], y: str, p: QuantParams, attrs: dict):
        yq = int8_tensor(y + ".q8", y)
        ops.append(modelfile.Op(op_type, inputs, [yq], attrs))
        int8_of[y] = (yq, p)

    def int8_args(name: str) -> List[str]:
        """x, x_scale, x_zero_point of an int8 tensor."""
        qname, p = int8_of[name]
        return [qname, *qp_consts(qname, p)]

    def layer_input(x: str) -> Tuple[str, QuantParams]:
        # A tensor already int8 (from MaxPool, Add, ...) keeps the parameters it has.
        px = int8_of[x][1] if x in int8_of else params[x]
        return need_int8(x, px), px

    def int32_bias(b_name: Optional[str], px: QuantParams, sw: np.ndarray, base: str) -> List[str]:
        if b_name is None:
            return []
        b = np.asarray(tensors[b_name].data, np.float64)
        bs = np.float64(np.float32(px.scale)) * sw.astype(np.float64)
        bq = np.clip(np.rint(b / bs), -(2 ** 29), 2 ** 29 - 1).astype(np.int32)
        return [const(base + ".bias", bq)]

    def weights(w: np.ndarray, base: str) -> Tuple[List[str], np.ndarray]:
        """w, w_scale, w_zero_point of float weights [M, ...] (symmetric per row or tensor)."""
        sw = weight_scales(w, per_channel)
        wq = quantize(w, sw if per_channel else sw[0], 0, axis=0 if per_channel else None, lo=-127)
        return [const(base + ".w", wq), const(base + ".w_scale", sw),
                const(base + ".w_zero_point", np.zeros(sw.shape, np.int8))], sw

    for i, op in enumerate(graph.ops):
        if i in fused_relus:
            continue
        y = op.outputs[0] if op.outputs else None
        ins = [t for t in op.inputs if t is not None and tensors[t].data is None]
        all_int8 = bool(ins) and all(t in int8_of for t in ins)
        if i in chosen and op.type == "Conv":
            xq, px = layer_input(op.inputs[0])
            base = y + ".qconv"
            w_args, sw = weights(np.asarray(tensors[op.inputs[1]].data, np.float32), base)
            py = params[y]
            b = int32_bias(op.inputs[2] if len(op.inputs) > 2 else None, px, sw, base)
            inputs = [xq, *qp_consts(xq, px), *w_args, *qp_consts(y + ".q8", py)] + (b or [None])
            if op.attrs.get("activation") == "prelu":
                inputs.append(op.inputs[3])
            elif not b:
                inputs.pop()
            emit("QLinearConv", inputs, y, py, dict(op.attrs))
            continue
        if i in chosen and op.type == "Gemm":
            xq, px = layer_input(op.inputs[0])
            base = y + ".qgemm"
            w = np.asarray(tensors[op.inputs[1]].data, np.float32)
            if int(op.attrs.get("transB", 0)) == 0:
                w = np.ascontiguousarray(w.T)  # QGemm takes B as [M, K]
            w_args, sw = weights(w, base)
            b = int32_bias(op.inputs[2] if len(op.inputs) > 2 else None, px, sw, base)
            inputs = [xq, *qp_consts(xq, px), *w_args, (b or [None])[0]]
            attrs = {"transA": 0, "transB": 1, "alpha": 1.0}
            if layer_after[i]:
                emit("QGemm", inputs + list(qp_consts(y + ".q8", params[y])), y, params[y], attrs)
            else:
                # A last layer (embedding, coordinates) dequantises its exact sums: float out.
                ops.append(modelfile.Op("QGemm", inputs, [y], attrs))
                float_ready.add(y)
            continue
        if (op.type in ("Identity", "Dropout") or (op.type == "Pad" and len(op.inputs) > 1 and _const(graph, op.inputs[1])
                                                    and not np.asarray(tensors[op.inputs[1]].data).any())) \
                and op.inputs[0] in int8_of and len(op.outputs) == 1:
            # Changes nothing (a Pad of zero pixels, as PFLD's before its pools): y is x.
            int8_of[y] = int8_of[op.inputs[0]]
            continue
        if op.type in ("MaxPool", "Flatten", "Reshape", "Resize") and op.inputs[0] in int8_of and (
                op.type != "Resize" or str(op.attrs.get("mode", "nearest")) == "nearest"):
            # Exact on int8: the output keeps the input's parameters.
            for t in op.inputs[1:]:
                need_float(t)
            emit(op.type, [int8_of[op.inputs[0]][0]] + list(op.inputs[1:]), y, int8_of[op.inputs[0]][1],
                 dict(op.attrs))
            continue
        if all_int8 and y in params:
            if (op.type == "Add" and len(ins) == 2 and shapes.get(ins[0]) is not None
                    and shapes.get(ins[0]) == shapes.get(ins[1])):
                attrs = {}
                if i in relu_after and graph.ops[relu_after[i]].outputs[0] in params:
                    # The Relu's output is this op's: its parameters, zero point as lower bound.
                    fused_relus.add(relu_after[i])
                    y, attrs = graph.ops[relu_after[i]].outputs[0], {"activation": "relu"}
                emit("QLinearAdd", int8_args(ins[0]) + int8_args(ins[1]) + list(qp_consts(y + ".q8", params[y])),
                     y, params[y], attrs)
                continue
            if op.type == "Concat" and len(ins) == len(op.inputs):
                ps = {int8_of[t][1] for t in ins}
                # Inputs sharing parameters are concatenated as they are (a copy).
                py = ps.pop() if len(ps) == 1 else params[y]
                args = [a for t in ins for a in int8_args(t)]
                emit("QLinearConcat", list(qp_consts(y + ".q8", py)) + args, y, py, {"axis": op.attrs["axis"]})
                continue
            pool_ok = (not any(int(v) for v in op.attrs.get("pads", []))
                       and str(op.attrs.get("auto_pad", "NOTSET")) in ("NOTSET", "VALID")
                       and "dilations" not in op.attrs)
            if op.type == "AveragePool" and pool_ok:
                attrs = {k: op.attrs[k] for k in ("kernel_shape", "strides", "ceil_mode") if k in op.attrs}
                emit("QLinearAveragePool", int8_args(ins[0]) + list(qp_consts(y + ".q8", params[y])), y, params[y],
                     attrs)
                continue
            if op.type == "GlobalAveragePool":
                emit("QLinearGlobalAveragePool", int8_args(ins[0]) + list(qp_consts(y + ".q8", params[y])), y,
                     params[y], {})
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
