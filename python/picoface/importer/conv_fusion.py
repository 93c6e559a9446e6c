"""Conv fusions: BatchNormalization folded into the Conv before it, and an activation after a
Conv carried as the Conv's ``activation`` attributes (engine.h), so the engine applies it while
the output is still in registers instead of a second pass over memory."""

from typing import Optional

import numpy as np

from picoface.importer.graph import Graph, Node

_F32_MAX = float(np.finfo(np.float32).max)


def _absorb(graph: Graph, conv: Node, follower: Node) -> None:
    """The Conv takes over the follower's output name; the follower leaves the graph."""
    old = conv.outputs[0]
    conv.outputs = [follower.outputs[0]]
    graph.nodes.remove(follower)
    graph.values.pop(old, None)


def _conv_params(graph: Graph, conv: Node):
    """(weight, bias) of a Conv with constant parameters, else None."""
    w = graph.constants.get(conv.inputs[1]) if len(conv.inputs) > 1 else None
    if w is None or w.dtype != np.float32:
        return None
    b_name = conv.inputs[2] if len(conv.inputs) > 2 else ""
    if b_name and b_name not in graph.constants:
        return None
    b = graph.constants[b_name] if b_name else np.zeros(w.shape[0], np.float32)
    return w, b


def _new_constant(graph: Graph, base: str, arr: np.ndarray) -> str:
    name, k = base, 0
    while name in graph.constants or name in graph.values:
        k += 1
        name = f"{base}_{k}"
    graph.constants[name] = arr
    return name


def fold_batchnorm(graph: Graph) -> None:
    """Conv -> BatchNormalization (inference mode, constant statistics, the Conv output read
    by the BN only) becomes one Conv with scaled weights and a shifted bias."""
    for bn in [n for n in graph.nodes if n.type == "BatchNormalization"]:
        consumers, producers = graph.consumers(), graph.producers()
        conv = producers.get(bn.inputs[0])
        if (conv is None or conv.type != "Conv" or "activation" in conv.attrs
                or graph.sole_consumer(bn.inputs[0], consumers) is not bn
                or len(bn.inputs) < 5 or bn.attrs.get("training_mode", 0)
                or len([o for o in bn.outputs if o]) != 1):
            continue
        params = _conv_params(graph, conv)
        stats = [graph.constants.get(n) for n in bn.inputs[1:5]]
        if params is None or any(s is None or s.size != params[0].shape[0] for s in stats):
            continue
        w, b = params
        gamma, beta, mean, var = (s.astype(np.float64).reshape(-1) for s in stats)
        scale = gamma / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        w_new = (w.astype(np.float64) * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
        b_new = ((b.astype(np.float64) - mean) * scale + beta).astype(np.float32)
        stem = conv.name or conv.outputs[0]
        conv.inputs = [conv.inputs[0], _new_constant(graph, f"{stem}.weight_bn", w_new),
                       _new_constant(graph, f"{stem}.bias_bn", b_new)] + conv.inputs[3:]
        _absorb(graph, conv, bn)


def _activation(graph: Graph, act: Node, weight: np.ndarray) -> Optional[dict]:
    """The Conv attributes (and PRelu slope) equivalent to ``act``, or None when it cannot
    be fused."""
    t, channels = act.type, weight.shape[0]
    if t == "Relu":
        return {"activation": "relu"}
    if t == "LeakyRelu":
        return {"activation": "leaky_relu", "activation_alpha": act.attrs.get("alpha", 0.01)}
    if t == "Sigmoid":
        return {"activation": "sigmoid"}
    if t == "HardSigmoid":
        return {"activation": "hard_sigmoid", "activation_alpha": act.attrs.get("alpha", 0.2),
                "activation_beta": act.attrs.get("beta", 0.5)}
    if t == "HardSwish":
        return {"activation": "hard_swish"}
    if t == "Tanh":
        return {"activation": "tanh"}
    if t == "Clip":
        bounds = []
        for k, default in ((1, -_F32_MAX), (2, _F32_MAX)):
            name = act.inputs[k] if len(act.inputs) > k else ""
            if not name:
                bounds.append(default)
            elif name in graph.constants and graph.constants[name].size == 1:
                bounds.append(float(graph.constants[name].reshape(())))
            else:
                return None
        # Opset < 11 Clip carries the bounds as attributes; the importer upgrades to 18 first.
        return {"activation": "clip", "activation_alpha": bounds[0], "activation_beta": bounds[1]}
    if t == "PRelu":
        slope = graph.constants.get(act.inputs[1])
        if slope is None or slope.dtype != np.float32 or weight.ndim != 4 or slope.ndim > 4:
            return None  # the per-channel reading below assumes a 2-D Conv's NCHW output
        # The slope broadcasts against NCHW right-aligned: per channel only when its shape,
        # padded to rank 4, is (1, C or 1, 1, 1). A (C,) slope would scale along W.
        padded = (1,) * (4 - slope.ndim) + slope.shape
        if padded[0] != 1 or padded[2:] != (1, 1) or padded[1] not in (1, channels):
            return None
        return {"activation": "prelu", "slope": np.broadcast_to(slope.reshape(-1), (channels,)).copy()}
    return None


def fuse_activations(graph: Graph) -> None:
    """Conv -> activation, the Conv output read by the activation only, becomes one Conv."""
    for conv in [n for n in graph.nodes if n.type == "Conv"]:
        if "activation" in conv.attrs or len(conv.inputs) < 2:
            continue
        act = graph.sole_consumer(conv.outputs[0], graph.consumers())
        w = graph.constants.get(conv.inputs[1])
        if act is None or act.inputs[0] != conv.outputs[0] or w is None:
            continue
        attrs = _activation(graph, act, w)
        if attrs is None:
            continue
        slope = attrs.pop("slope", None)
        conv.attrs.update(attrs)
        if slope is not None:
            inputs = conv.inputs + [""] * (3 - len(conv.inputs))
            stem = conv.name or conv.outputs[0]
            conv.inputs = inputs[:3] + [_new_constant(graph, f"{stem}.prelu_slope", slope)]
        _absorb(graph, conv, act)
