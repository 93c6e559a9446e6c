"""The native engine against onnxruntime: every op on ragged shapes, every real model on a
WIDER frame, re-planning, and bad inputs.

Tolerances: float ops max |native - ort| <= 1e-4 * max(1, max |ort|); int64 outputs exact;
real models max |native - ort| <= 1e-4 * max |ort| per output.
"""

from pathlib import Path

import numpy as np
import pytest

from conftest import FULLRES12, SHARED, need, need_module
from picoface import _core, modelfile
from picoface.backends.ort import fold_weight_dequantize
from picoface.convert import convert_onnx, metadata_for

onnx = pytest.importorskip("onnx", reason="needs the Python package 'onnx' to build test graphs")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ort = pytest.importorskip("onnxruntime", reason="needs the Python package 'onnxruntime' as the reference")

MODELS = SHARED / "models"
F32, I64 = TensorProto.FLOAT, TensorProto.INT64


def to_pface(model) -> bytes:
    """A 1:1 .pface of an ONNX graph that keeps every graph input (the importer keeps only
    the first) and accepts the engine's extensions (fused Conv attributes)."""
    g = model.graph
    tensors, names = [], set()
    for init in g.initializer:
        tensors.append(modelfile.Tensor(init.name, data=numpy_helper.to_array(init)))
        names.add(init.name)
    inputs = []
    for vi in g.input:
        if vi.name in names:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
        tensors.append(modelfile.Tensor(vi.name, dtype=dtype, shape=dims))
        names.add(vi.name)
        inputs.append(vi.name)
    ops = []
    for n in g.node:
        for o in n.output:
            if o and o not in names:
                tensors.append(modelfile.Tensor(o, shape=()))
                names.add(o)
        attrs = {}
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                attrs[a.name] = numpy_helper.to_array(a.t).ravel()[0].item()
                continue
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            attrs[a.name] = v
        ops.append(modelfile.Op(n.op_type, [i if i else None for i in n.input],
                                [o for o in n.output if o], attrs))
    meta = metadata_for("detect", "yunet", None, [1, 3, None, None], Path("test.onnx"), "0" * 64)
    return modelfile.encode(meta, tensors, ops, inputs, [o.name for o in g.output])


def ort_session(model_or_bytes):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    data = model_or_bytes if isinstance(model_or_bytes, bytes) else model_or_bytes.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def graph(nodes, feeds, consts=None, outputs=("y",), out_types=None, opset=18):
    """An ONNX model: `feeds` name -> array (graph inputs), `consts` name -> array."""
    consts = consts or {}
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in feeds.items()]
    out_types = out_types or [F32] * len(outputs)
    outs = [helper.make_tensor_value_info(o, t, None) for o, t in zip(outputs, out_types)]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    g = helper.make_graph(nodes, "t", ins, outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def compare(ref, got, what):
    assert len(ref) == len(got), what
    for i, (r, o) in enumerate(zip(ref, got)):
        r = np.asarray(r)
        assert o.shape == r.shape, f"{what} output {i}: shape {o.shape} != ort {r.shape}"
        if r.dtype == np.bool_:
            r = r.astype(np.uint8)
        assert o.dtype == r.dtype, f"{what} output {i}: dtype {o.dtype} != ort {r.dtype}"
        if r.dtype.kind in "iu":
            np.testing.assert_array_equal(o, r, err_msg=f"{what} output {i}")
        elif r.size:
            tol = 1e-4 * max(1.0, float(np.abs(r).max()))
            err = float(np.abs(o - r).max())
            idx = np.unravel_index(int(np.abs(o - r).argmax()), r.shape)
            assert err <= tol, f"{what} output {i}: max abs err {err:.3g} > {tol:.3g} at {idx}"


def check(model, feeds, native_model=None):
    """Runs `model` in onnxruntime and (`native_model` or `model`) natively; compares."""
    ref = ort_session(model).run(None, feeds)
    eng = _core.Engine(to_pface(native_model or model))
    got = eng.run(list(feeds.values()))
    compare(ref, got, model.graph.node[-1].op_type)
    return eng


def rnd(*shape, seed=0, lo=-2.0, hi=2.0):
    return np.random.default_rng(seed + sum(shape)).uniform(lo, hi, shape).astype(np.float32)


def single(op, x, consts=None, inputs=None, attrs=None, outputs=("y",), out_types=None, opset=18):
    """One node reading graph input `x` (as "x") and constants (in `inputs` order)."""
    consts = consts or {}
    names = inputs if inputs is not None else ["x"] + list(consts)
    node = helper.make_node(op, names, list(outputs), **(attrs or {}))
    return graph([node], {"x": x}, consts, outputs, out_types, opset)


# --------------------------------------------------------------------------------------
# (a) every op against onnxruntime

CONV_CASES = [
    dict(x=(1, 13, 11, 9), w=(7, 13, 3, 3), bias=True, attrs=dict(pads=[1, 1, 1, 1])),
    dict(x=(2, 5, 12, 10), w=(6, 5, 3, 3), bias=True, attrs=dict(strides=[2, 2], pads=[0, 1, 1, 0])),
    dict(x=(1, 4, 15, 13), w=(3, 4, 3, 3), bias=False, attrs=dict(dilations=[2, 2], pads=[2, 1, 2, 1])),
    dict(x=(1, 12, 9, 11), w=(9, 4, 3, 3), bias=True, attrs=dict(group=3, pads=[1, 1, 1, 1])),
    dict(x=(1, 13, 17, 10), w=(13, 1, 3, 3), bias=True, attrs=dict(group=13, strides=[2, 2], pads=[1, 1, 1, 1])),
    dict(x=(2, 7, 9, 5), w=(7, 1, 5, 5), bias=False, attrs=dict(group=7, pads=[2, 2, 2, 2], dilations=[1, 2])),
    dict(x=(1, 13, 7, 9), w=(17, 13, 1, 1), bias=True, attrs={}),
    dict(x=(1, 8, 7, 9), w=(5, 8, 1, 1), bias=True, attrs=dict(strides=[2, 2])),
    dict(x=(1, 3, 13, 11), w=(8, 3, 3, 3), bias=True, attrs=dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    dict(x=(1, 3, 14, 11), w=(8, 3, 4, 4), bias=True, attrs=dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    dict(x=(1, 3, 13, 11), w=(4, 3, 3, 2), bias=True, attrs=dict(auto_pad="VALID", strides=[1, 2])),
    dict(x=(2, 5, 17), w=(4, 5, 3), bias=True, attrs=dict(pads=[1, 2], strides=[2])),
    # Stems (<= 4 input channels, 3x3, pad 1): the direct conv3x3 kernel, rows wider than its
    # 256-column chunk included.
    dict(x=(2, 1, 9, 20), w=(5, 1, 3, 3), bias=True, attrs=dict(pads=[1, 1, 1, 1])),
    dict(x=(1, 4, 6, 601), w=(17, 4, 3, 3), bias=False, attrs=dict(strides=[2, 2], pads=[1, 1, 1, 1])),
    dict(x=(1, 3, 10, 300), w=(16, 3, 3, 3), bias=True, attrs=dict(pads=[1, 1, 1, 1])),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"x{c['x']}w{c['w']}{c['attrs']}")
def test_conv(case):
    consts = {"w": rnd(*case["w"], seed=1)}
    if case["bias"]:
        consts["b"] = rnd(case["w"][0], seed=2)
    check(single("Conv", rnd(*case["x"]), consts, attrs=case["attrs"]), {"x": rnd(*case["x"])})


FUSED = [
    ("relu", "Relu", {}, {}),
    ("leaky_relu", "LeakyRelu", dict(alpha=0.15), dict(activation_alpha=0.15)),
    ("sigmoid", "Sigmoid", {}, {}),
    ("hard_sigmoid", "HardSigmoid", dict(alpha=0.3, beta=0.4), dict(activation_alpha=0.3, activation_beta=0.4)),
    ("hard_swish", "HardSwish", {}, {}),
    ("tanh", "Tanh", {}, {}),
    ("clip", "Clip", {}, dict(activation_alpha=-0.5, activation_beta=1.5)),
    ("prelu", "PRelu", {}, {}),
]


@pytest.mark.parametrize("act,onnx_op,onnx_attrs,fused_attrs", FUSED, ids=[f[0] for f in FUSED])
@pytest.mark.parametrize("channels,group", [(6, 1), (6, 6), (3, 1)], ids=["dense", "depthwise", "stem"])
def test_conv_fused_activation(act, onnx_op, onnx_attrs, fused_attrs, channels, group):
    x = rnd(1, channels, 9, 11)
    w = rnd(6, channels // group, 3, 3, seed=3)
    b = rnd(6, seed=4)
    slope = rnd(6, 1, 1, seed=5, lo=0.05, hi=0.5)
    attrs = dict(pads=[1, 1, 1, 1], group=group)
    consts = {"w": w, "b": b}
    act_inputs = ["c"]
    if act == "clip":
        consts.update(lo=np.array(-0.5, np.float32), hi=np.array(1.5, np.float32))
        act_inputs += ["lo", "hi"]
    if act == "prelu":
        consts["slope"] = slope
        act_inputs.append("slope")
    ref = graph([helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs),
                 helper.make_node(onnx_op, act_inputs, ["y"], **onnx_attrs)], {"x": x}, consts)
    fused_inputs = ["x", "w", "b"] + (["slope_flat"] if act == "prelu" else [])
    fused = graph([helper.make_node("Conv", fused_inputs, ["y"], activation=act, **attrs, **fused_attrs)],
                  {"x": x}, {"w": w, "b": b, "slope_flat": slope.ravel()})
    check(ref, {"x": x}, native_model=fused)


# The engine runs a pointwise Conv followed by its only reader, a depthwise 3x3 Conv, as one
# step over bands of rows (rows of at least 128 columns). Ragged widths and heights, both
# strides, batches, prelu and missing biases, and an intermediate that another op also reads
# (which must not be fused).
PW_DW = [
    dict(x=(1, 5, 13, 131), mid=7, stride=1, act1=None, act2="relu", bias=(True, True)),
    dict(x=(2, 3, 9, 200), mid=13, stride=2, act1="relu", act2="prelu", bias=(False, True)),
    dict(x=(1, 16, 40, 137), mid=17, stride=2, act1="prelu", act2=None, bias=(True, False)),
    dict(x=(1, 8, 3, 300), mid=9, stride=1, act1="leaky_relu", act2="clip", bias=(True, True)),
    dict(x=(1, 4, 1, 129), mid=5, stride=1, act1=None, act2="relu", bias=(False, False)),
]


@pytest.mark.parametrize("case", PW_DW, ids=lambda c: f"x{c['x']}m{c['mid']}s{c['stride']}")
@pytest.mark.parametrize("shared_mid", [False, True], ids=["fused", "mid-also-read"])
def test_pointwise_depthwise_pair(case, shared_mid):
    n, cin, h, w = case["x"]
    mid = case["mid"]
    x = rnd(*case["x"])
    consts = {"w1": rnd(mid, cin, 1, 1, seed=3), "w2": rnd(mid, 1, 3, 3, seed=4),
              "b1": rnd(mid, seed=5), "b2": rnd(mid, seed=6),
              "s1": rnd(mid, seed=7, lo=0.05, hi=0.5), "s2": rnd(mid, seed=8, lo=0.05, hi=0.5)}

    def conv(inputs, out, act, bias, which, **attrs):
        names = inputs + (["b" + which] if bias else [""])
        extra = {}
        if act == "prelu":
            names.append("s" + which)
        elif act == "leaky_relu":
            extra = dict(activation_alpha=0.2)
        elif act == "clip":
            extra = dict(activation_alpha=-0.5, activation_beta=1.0)
        if act:
            extra["activation"] = act
        return helper.make_node("Conv", names, [out], **attrs, **extra)

    nodes = [conv(["x", "w1"], "m", case["act1"], case["bias"][0], "1"),
             conv(["m", "w2"], "y", case["act2"], case["bias"][1], "2", group=mid, pads=[1, 1, 1, 1],
                  strides=[case["stride"]] * 2)]
    outputs = ("y", "m2") if shared_mid else ("y",)
    if shared_mid:
        nodes.append(helper.make_node("Neg", ["m"], ["m2"]))
    fused = graph(nodes, {"x": x}, consts, outputs)

    # The reference: the same two convolutions and activations as plain ONNX ops.
    def plain(inputs, out, act, bias, which, **attrs):
        names = inputs + (["b" + which] if bias else [])
        if not act:
            return [helper.make_node("Conv", names, [out], **attrs)]
        pre = out + "_pre"
        node = helper.make_node("Conv", names, [pre], **attrs)
        if act == "prelu":
            return [node, helper.make_node("PRelu", [pre, "s" + which + "_3d"], [out])]
        if act == "leaky_relu":
            return [node, helper.make_node("LeakyRelu", [pre], [out], alpha=0.2)]
        if act == "clip":
            return [node, helper.make_node("Clip", [pre, "lo", "hi"], [out])]
        return [node, helper.make_node("Relu", [pre], [out])]

    ref_consts = dict(consts, s1_3d=consts["s1"].reshape(mid, 1, 1), s2_3d=consts["s2"].reshape(mid, 1, 1),
                      lo=np.array(-0.5, np.float32), hi=np.array(1.0, np.float32))
    ref_nodes = (plain(["x", "w1"], "m", case["act1"], case["bias"][0], "1")
                 + plain(["m", "w2"], "y", case["act2"], case["bias"][1], "2", group=mid, pads=[1, 1, 1, 1],
                         strides=[case["stride"]] * 2))
    if shared_mid:
        ref_nodes.append(helper.make_node("Neg", ["m"], ["m2"]))
    ref = graph(ref_nodes, {"x": x}, ref_consts, outputs)
    eng = check(ref, {"x": x}, native_model=fused)
    steps = [op for op, *_ in eng.profile([x])]
    assert steps == ([0, 1, 2] if shared_mid else [1]), f"executed ops {steps}"
    # Worker threads take ranges of output rows, each with its own ring.
    for r, o in zip(eng.run([x]), _core.Engine(to_pface(fused), 3).run([x])):
        np.testing.assert_array_equal(o, r)


@pytest.mark.parametrize("x,w,attrs,bias", [
    ((1, 5, 7, 6), (5, 3, 3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]), True),
    ((2, 4, 5, 7), (4, 2, 4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1], group=2), True),
    ((1, 3, 6, 5), (3, 4, 3, 3), dict(dilations=[2, 1], pads=[0, 1, 2, 0]), False),
    ((1, 3, 6, 5), (3, 2, 3, 3), dict(strides=[2, 2], output_shape=[12, 10]), True),
    ((1, 3, 9), (3, 2, 3), dict(strides=[2], pads=[1, 1]), True),
])
def test_conv_transpose(x, w, attrs, bias):
    consts = {"w": rnd(*w, seed=6)}
    if bias:
        consts["b"] = rnd(w[1] * attrs.get("group", 1), seed=7)
    check(single("ConvTranspose", rnd(*x), consts, attrs=attrs), {"x": rnd(*x)})


UNARY = [
    ("Relu", {}, {}), ("Sigmoid", {}, {}), ("Tanh", {}, {}), ("Exp", {}, {}), ("Erf", {}, {}),
    ("LeakyRelu", dict(alpha=0.07), {}), ("HardSigmoid", dict(alpha=0.25, beta=0.45), {}),
    ("HardSwish", {}, {}), ("Identity", {}, {}), ("Neg", {}, {}), ("Abs", {}, {}),
]


@pytest.mark.parametrize("op,attrs,_", UNARY, ids=[u[0] for u in UNARY])
@pytest.mark.parametrize("shape", [(3, 13, 5), (1, 127)])
def test_unary(op, attrs, _, shape):
    x = rnd(*shape, lo=-6, hi=6)
    check(single(op, x, attrs=attrs), {"x": x})


def test_sqrt():
    x = rnd(2, 13, 7, lo=0.0, hi=9.0)
    check(single("Sqrt", x), {"x": x})


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate):
    x = rnd(2, 13, 9, lo=-5, hi=5)
    check(single("Gelu", x, attrs=dict(approximate=approximate), opset=20), {"x": x})


@pytest.mark.parametrize("bounds", [("lo", "hi"), ("lo", ""), ("", "hi"), ()])
def test_clip(bounds):
    x = rnd(2, 13, 9, lo=-3, hi=3)
    consts = {"lo": np.array(-0.7, np.float32), "hi": np.array(1.2, np.float32)}
    used = {k: v for k, v in consts.items() if k in bounds}
    check(single("Clip", x, used, inputs=["x", *bounds]), {"x": x})


@pytest.mark.parametrize("slope_shape", [(13, 1, 1), (1,), (9,)])
def test_prelu(slope_shape):
    x = rnd(2, 13, 5, 9)
    check(single("PRelu", x, {"s": rnd(*slope_shape, seed=8)}), {"x": x})


def test_dropout_is_identity():
    x = rnd(2, 13, 5)
    check(single("Dropout", x, {"r": np.array(0.3, np.float32)}), {"x": x})


@pytest.mark.parametrize("shape", [(2, 13, 5, 7), (3, 7)])
def test_batch_norm(shape):
    c = shape[1]
    consts = {"s": rnd(c, seed=1), "b": rnd(c, seed=2), "m": rnd(c, seed=3),
              "v": rnd(c, seed=4, lo=0.1, hi=2.0)}
    check(single("BatchNormalization", rnd(*shape), consts, attrs=dict(epsilon=1e-3)), {"x": rnd(*shape)})


BROADCAST = [((2, 3, 4, 5), (5,)), ((2, 1, 4, 1), (3, 1, 5)), ((1,), (2, 3, 7)), ((4, 13), (4, 13)),
             ((2, 13, 1, 1), (2, 13, 6, 7)), ((), (3, 5))]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Pow"])
@pytest.mark.parametrize("sa,sb", BROADCAST)
def test_binary_broadcast(op, sa, sb):
    a = rnd(*sa, seed=1, lo=0.5, hi=2.0) if op == "Pow" else rnd(*sa, seed=1)
    b = rnd(*sb, seed=2, lo=0.5, hi=2.0) if op in ("Div", "Pow") else rnd(*sb, seed=2)
    model = graph([helper.make_node(op, ["a", "b"], ["y"])], {"a": a, "b": b})
    check(model, {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_int64(op):
    a = np.random.default_rng(1).integers(-50, 50, (3, 5)).astype(np.int64)
    b = np.random.default_rng(2).integers(1, 9, (5,)).astype(np.int64)
    model = graph([helper.make_node(op, ["a", "b"], ["y"])], {"a": a, "b": b}, out_types=[I64])
    check(model, {"a": a, "b": b})


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    shapes = [[2, 3, 5], [2, 3, 5], [2, 3, 5]]
    for i, s in enumerate(shapes):
        s[axis] += i * 2
    feeds = {f"x{i}": rnd(*s, seed=i) for i, s in enumerate(shapes)}
    check(graph([helper.make_node("Concat", list(feeds), ["y"], axis=axis)], feeds), feeds)


@pytest.mark.parametrize("target", [[0, -1], [3, 0, -1], [-1], [6, 13, 5], [0, 0, 5, 13], [1, -1, 5]])
def test_reshape(target):
    x = rnd(3, 2, 13, 5)
    check(single("Reshape", x, {"s": np.array(target, np.int64)}), {"x": x})


@pytest.mark.parametrize("axis", [0, 1, 2, -1, 4])
def test_flatten(axis):
    x = rnd(2, 3, 5, 7)
    check(single("Flatten", x, attrs=dict(axis=axis)), {"x": x})


@pytest.mark.parametrize("perm", [[0, 2, 3, 1], [3, 1, 0, 2], None, [0, 1, 2, 3]])
def test_transpose(perm):
    x = rnd(2, 3, 5, 7)
    check(single("Transpose", x, attrs=dict(perm=perm) if perm else {}), {"x": x})


@pytest.mark.parametrize("axes", [[1], [0, -1], None])
def test_squeeze(axes):
    x = rnd(1, 1, 7, 1)
    consts = {"a": np.array(axes, np.int64)} if axes else {}
    check(single("Squeeze", x, consts), {"x": x})


@pytest.mark.parametrize("axes", [[0], [1, -1], [0, 3, 5]])
def test_unsqueeze(axes):
    x = rnd(3, 7, 2)
    check(single("Unsqueeze", x, {"a": np.array(axes, np.int64)}), {"x": x})


SLICES = [
    ([1, 0], [3, 100], [1, 2], [1, 2]),
    ([-3], [-1], [2], None),
    ([-1, 10], [-100, 0], [0, 2], [-1, -3]),
    ([0, 2, 1], [2, 5, 13], [0, 1, 2], None),
    ([4], [1], [1], [-2]),
    ([0], [2**63 - 1], [-1], [3]),
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES)
def test_slice(starts, ends, axes, steps):
    x = rnd(3, 6, 13)
    consts = {"s": np.array(starts, np.int64), "e": np.array(ends, np.int64),
              "a": np.array(axes, np.int64)}
    if steps:
        consts["st"] = np.array(steps, np.int64)
    check(single("Slice", x, consts), {"x": x})


@pytest.mark.parametrize("sizes,axis,outs", [([2, 5, 6], 1, 3), (None, 2, 3), (None, 0, 2), ([1, 1], 0, 2)])
def test_split(sizes, axis, outs):
    x = rnd(2, 13, 7)
    names = [f"y{i}" for i in range(outs)]
    if sizes:
        model = single("Split", x, {"s": np.array(sizes, np.int64)}, attrs=dict(axis=axis), outputs=names)
    else:
        model = single("Split", x, attrs=dict(axis=axis, num_outputs=outs), outputs=names)
    check(model, {"x": x})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads,axes", [([0, 1, 2, 1, 0, 3], None), ([2, 3, 1, 2], [1, 2]), ([0, 0, -1, 0, 0, 2], None)])
def test_pad(mode, pads, axes):
    x = rnd(2, 5, 6)
    consts = {"p": np.array(pads, np.int64), "v": np.array(0.75, np.float32)}
    inputs = ["x", "p", "v"]
    if axes:
        consts["a"] = np.array(axes, np.int64)
        inputs.append("a")
    check(single("Pad", x, consts, inputs=inputs, attrs=dict(mode=mode)), {"x": x})


POOLS = [
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 1], pads=[1, 0, 2, 1], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[2, 3], strides=[1, 2], auto_pad="SAME_LOWER"),
]


@pytest.mark.parametrize("attrs", POOLS, ids=str)
def test_max_pool(attrs):
    x = rnd(2, 5, 11, 9)
    check(single("MaxPool", x, attrs=attrs), {"x": x})


def test_max_pool_dilated():
    x = rnd(1, 3, 11, 10)
    check(single("MaxPool", x, attrs=dict(kernel_shape=[3, 3], dilations=[2, 2], pads=[2, 2, 2, 2])), {"x": x})


@pytest.mark.parametrize("attrs", POOLS, ids=str)
@pytest.mark.parametrize("include_pad", [0, 1])
def test_average_pool(attrs, include_pad):
    x = rnd(2, 5, 11, 9)
    check(single("AveragePool", x, attrs=dict(attrs, count_include_pad=include_pad)), {"x": x})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(op):
    x = rnd(2, 13, 7, 9)
    check(single(op, x), {"x": x})


RESIZES = [
    ("nearest", "asymmetric", "floor", [1, 1, 2, 2], None),
    ("nearest", "asymmetric", "floor", [1, 1, 3, 3], None),  # whole factors: repeated columns and rows
    ("nearest", "half_pixel", "round_prefer_floor", [1, 1, 2, 1], None),
    ("nearest", "half_pixel", "round_prefer_floor", None, [1, 3, 5, 4]),
    ("nearest", "align_corners", "round_prefer_ceil", None, [1, 3, 13, 17]),
    ("nearest", "asymmetric", "ceil", [1, 1, 1.5, 2.5], None),
    ("nearest", "pytorch_half_pixel", "round_prefer_floor", [1, 1, 0.5, 3], None),
    ("linear", "half_pixel", None, [1, 1, 2, 2], None),
    ("linear", "half_pixel", None, None, [1, 3, 4, 5]),
    ("linear", "align_corners", None, None, [1, 3, 13, 6]),
    ("linear", "asymmetric", None, [1, 1, 1.7, 0.6], None),
    ("linear", "pytorch_half_pixel", None, None, [1, 3, 1, 11]),
    ("linear", "half_pixel_symmetric", None, [1, 1, 2.5, 0.5], None),
]


@pytest.mark.parametrize("mode,coord,nearest,scales,sizes", RESIZES, ids=str)
def test_resize(mode, coord, nearest, scales, sizes):
    x = rnd(1, 3, 7, 9)
    attrs = dict(mode=mode, coordinate_transformation_mode=coord)
    if nearest:
        attrs["nearest_mode"] = nearest
    consts = {"roi": np.zeros(0, np.float32)}
    if scales:
        consts["sc"] = np.array(scales, np.float32)
        inputs = ["x", "", "sc"]
    else:
        consts["sz"] = np.array(sizes, np.int64)
        inputs = ["x", "", "", "sz"]
    check(single("Resize", x, {k: v for k, v in consts.items() if k in inputs}, inputs=inputs, attrs=attrs), {"x": x})


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample(mode):
    x = rnd(1, 3, 5, 6)
    model = single("Upsample", x, {"sc": np.array([1, 1, 2, 3], np.float32)}, attrs=dict(mode=mode), opset=9)
    check(model, {"x": x})


@pytest.mark.parametrize("ta,tb,c_shape,alpha,beta", [
    (0, 0, (7,), 1.0, 1.0), (0, 1, (5, 7), 0.5, 2.0), (1, 0, (5, 1), 1.0, 1.0), (1, 1, None, 1.5, 1.0),
    (0, 1, (), 1.0, 0.3)])
def test_gemm(ta, tb, c_shape, alpha, beta):
    a = rnd(*((13, 5) if ta else (5, 13)))
    b = rnd(*((7, 13) if tb else (13, 7)), seed=1)
    consts = {"b": b}
    if c_shape is not None:
        consts["c"] = rnd(*c_shape, seed=2) if c_shape else np.array(0.5, np.float32)
    attrs = dict(transA=ta, transB=tb, alpha=alpha, beta=beta)
    model = single("Gemm", a, consts, attrs=attrs)
    check(model, {"x": a})


@pytest.mark.parametrize("sa,sb", [((3, 5), (5, 7)), ((2, 3, 5, 4), (4, 6)), ((2, 1, 5, 4), (3, 4, 6)),
                                   ((5,), (5, 7)), ((2, 3, 5), (5,)), ((1, 13), (13, 1))])
def test_matmul(sa, sb):
    a, b = rnd(*sa, seed=1), rnd(*sb, seed=2)
    check(graph([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_softmax(axis):
    x = rnd(3, 13, 5, lo=-8, hi=8)
    check(single("Softmax", x, attrs=dict(axis=axis)), {"x": x})


@pytest.mark.parametrize("axis,bias", [(-1, True), (1, True), (2, False)])
def test_layer_norm(axis, bias):
    x = rnd(2, 5, 13)
    shape = x.shape[axis:] if axis >= 0 else x.shape[axis:]
    consts = {"s": rnd(*shape, seed=1)}
    if bias:
        consts["b"] = rnd(*shape, seed=2)
    check(single("LayerNormalization", x, consts, attrs=dict(axis=axis, epsilon=1e-4)), {"x": x})


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceL2", "ReduceSum", "ReduceMax"])
@pytest.mark.parametrize("axes,keep", [([1], 1), ([0, -1], 0), (None, 1), ([2, 1], 0)])
def test_reduce(op, axes, keep):
    x = rnd(3, 13, 5)
    consts = {"a": np.array(axes, np.int64)} if axes else {}
    check(single(op, x, consts, attrs=dict(keepdims=keep)), {"x": x})


@pytest.mark.parametrize("start,end", [(None, None), (1, None), (-2, None), (1, -1)])
def test_shape(start, end):
    x = rnd(2, 3, 5, 7)
    attrs = {k: v for k, v in dict(start=start, end=end).items() if v is not None}
    check(single("Shape", x, attrs=attrs, out_types=[I64]), {"x": x})


@pytest.mark.parametrize("indices,axis", [(np.array([2, 0, -1], np.int64), 1), (np.array(1, np.int64), 0),
                                          (np.array([[0, 4], [3, -2]], np.int64), 2)])
def test_gather(indices, axis):
    x = rnd(3, 4, 5)
    check(single("Gather", x, {"i": indices}, attrs=dict(axis=axis)), {"x": x})


def test_gather_runtime_indices():
    x = rnd(6, 5)
    i = np.array([[5, 0], [2, -1]], np.int64)
    check(graph([helper.make_node("Gather", ["x", "i"], ["y"], axis=0)], {"x": x, "i": i}), {"x": x, "i": i})


@pytest.mark.parametrize("to,out_type", [(I64, I64), (TensorProto.INT32, TensorProto.INT32), (F32, F32),
                                         (TensorProto.UINT8, TensorProto.UINT8)])
def test_cast(to, out_type):
    x = rnd(3, 13, lo=0.0, hi=100.0)
    check(single("Cast", x, attrs=dict(to=to), out_types=[out_type]), {"x": x})


def test_shape_arithmetic_folds_and_constant_of_shape():
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape (the dynamic-detector pattern) and
    # ConstantOfShape, all evaluated when the graph is planned.
    x = rnd(2, 6, 5)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["nu"]),
        helper.make_node("Concat", ["nu", "m1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Cast", ["s"], ["sf"], to=F32),
        helper.make_node("ConstantOfShape", ["s"], ["z"],
                         value=helper.make_tensor("v", F32, [1], [1.5])),
        helper.make_node("Mul", ["x", "z"], ["y"]),
    ]
    consts = {"i0": np.array(0, np.int64), "ax": np.array([0], np.int64), "m1": np.array([-1], np.int64)}
    model = graph(nodes, {"x": x}, consts, outputs=("r", "sf", "y"))
    eng = check(model, {"x": x})
    assert eng.macs == 0


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("kind", ["tensor", "axis"])
def test_dequantize_linear(dtype, kind):
    info = np.iinfo(dtype)
    x = np.random.default_rng(3).integers(info.min, info.max + 1, (4, 13, 3)).astype(dtype)
    if kind == "tensor":
        consts = {"s": np.array(0.05, np.float32), "z": np.array(7, dtype)}
        attrs = {}
    else:
        consts = {"s": rnd(13, lo=0.01, hi=0.1), "z": np.arange(13).astype(dtype)}
        attrs = dict(axis=1)
    check(single("DequantizeLinear", x, consts, attrs=attrs), {"x": x})


def test_dequantize_linear_blocked():
    x = np.random.default_rng(4).integers(-128, 128, (6, 20)).astype(np.int8)
    consts = {"s": rnd(6, 3, lo=0.01, hi=0.1), "z": np.random.default_rng(5).integers(-5, 5, (6, 3)).astype(np.int8)}
    check(single("DequantizeLinear", x, consts, attrs=dict(axis=1, block_size=7), opset=21), {"x": x})


# Equal -> bool (the engine's 0/1 uint8); compare() reads ort's bool as uint8.
@pytest.mark.parametrize("sa,sb", BROADCAST)
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_equal(sa, sb, dtype):
    # Few distinct values so that both outcomes occur.
    a = np.random.default_rng(6).integers(0, 3, sa).astype(dtype)
    b = np.random.default_rng(7).integers(0, 3, sb).astype(dtype)
    model = graph([helper.make_node("Equal", ["a", "b"], ["y"])], {"a": a, "b": b}, out_types=[TensorProto.BOOL])
    ref = ort_session(model).run(None, {"a": a, "b": b})[0]
    assert 0 < ref.sum() < ref.size or ref.size <= 1, "test data must give both outcomes"
    check(model, {"a": a, "b": b})


WHERE = [((2, 3, 4, 5), (2, 3, 4, 5), (2, 3, 4, 5)), ((3, 1, 5), (4, 1), (5,)), ((), (2, 7), (1,)),
         ((13, 1), (1, 127), ()), ((2, 1, 6, 1), (1, 3, 1, 7), (2, 3, 6, 7)), ((4, 13), (), (4, 13))]


@pytest.mark.parametrize("sc,sx,sy", WHERE)
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_where(sc, sx, sy, dtype):
    # The .pface format has no bool: the condition comes from a Cast to bool inside the graph.
    c = np.random.default_rng(8).integers(0, 2, sc).astype(np.uint8)
    div = 1 if dtype == np.int64 else 7  # float values with fraction bits
    x = np.asarray(np.random.default_rng(9).integers(-1000, 1000, sx) / div).astype(dtype)
    y = np.asarray(np.random.default_rng(10).integers(-1000, 1000, sy) / div).astype(dtype)
    nodes = [helper.make_node("Cast", ["c"], ["cb"], to=TensorProto.BOOL),
             helper.make_node("Where", ["cb", "x", "y"], ["out"])]
    feeds = {"c": c, "x": x, "y": y}
    model = graph(nodes, feeds, outputs=("out",), out_types=[helper.np_dtype_to_tensor_dtype(np.dtype(dtype))])
    check(model, feeds)


@pytest.mark.parametrize("sa,sb", [((3, 13), (13,)), ((2, 1, 5), (4, 1))])
def test_equal_into_where(sa, sb):
    a = np.random.default_rng(11).integers(0, 3, sa).astype(np.int64)
    b = np.random.default_rng(12).integers(0, 3, sb).astype(np.int64)
    x = rnd(*sa, seed=3)
    nodes = [helper.make_node("Equal", ["a", "b"], ["m"]),
             helper.make_node("Where", ["m", "x", "z"], ["y"])]
    model = graph(nodes, {"a": a, "b": b, "x": x}, {"z": np.array(-1.0, np.float32)})
    check(model, {"a": a, "b": b, "x": x})


def test_where_rejects_non_bool_condition():
    x = rnd(3, 5)
    model = graph([helper.make_node("Where", ["x", "x", "x"], ["y"])], {"x": x})
    with pytest.raises(Exception, match="condition"):
        _core.Engine(to_pface(model)).run([x])


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, None])
@pytest.mark.parametrize("kind", ["tensor", "axis", "last_axis"])
def test_quantize_linear(dtype, kind):
    x = rnd(4, 13, 6, seed=5, lo=-60.0, hi=60.0)
    if kind == "tensor":
        s, z, attrs = np.array(0.05, np.float32), np.array(7, dtype or np.uint8), {}
    elif kind == "axis":
        s, z, attrs = rnd(13, lo=0.02, hi=0.2), np.arange(-6, 7).astype(dtype or np.uint8), dict(axis=1)
    else:
        s, z, attrs = rnd(6, lo=0.02, hi=0.2), np.arange(6).astype(dtype or np.uint8), dict(axis=-1)
    consts = {"s": s} if dtype is None else {"s": s, "z": z}
    out = helper.np_dtype_to_tensor_dtype(np.dtype(dtype or np.uint8))
    model = single("QuantizeLinear", x, consts, attrs=attrs, out_types=[out])
    ref = ort_session(model).run(None, {"x": x})[0]
    info = np.iinfo(ref.dtype)
    assert (ref == info.min).any() and (ref == info.max).any(), "test data must saturate both ways"
    check(model, {"x": x})


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_quantize_linear_ties_and_saturation(dtype):
    # Exact .5 ties round to even (-2.5 -> -2, 0.5 -> 0, 1.5 -> 2, 2.5 -> 2); scale 0.5 and
    # these x are exact in float32. Far values and infinities saturate at both ends.
    ties = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 126.5, 127.5, -127.5, -128.5], np.float32)
    far = np.array([1e6, -1e6, 300.0, -300.0, np.inf, -np.inf, 0.0, -0.0], np.float32)
    x = np.concatenate([ties * 0.5, far]).reshape(4, 5)
    for zp in (0, 3, -3) if dtype == np.int8 else (0, 3, 128):
        consts = {"s": np.array(0.5, np.float32), "z": np.array(zp, dtype)}
        model = single("QuantizeLinear", x, consts, out_types=[helper.np_dtype_to_tensor_dtype(np.dtype(dtype))])
        check(model, {"x": x})
    expect = np.round(ties)  # numpy rounds half to even too
    got = _core.Engine(to_pface(model)).run([x])[0].ravel()[:ties.size].astype(np.float64) - zp
    info = np.iinfo(dtype)
    np.testing.assert_array_equal(got, np.clip(expect, info.min - zp, info.max - zp))


def test_expand():
    x = rnd(3, 1, 5)
    check(single("Expand", x, {"s": np.array([2, 1, 4, 1], np.int64)}), {"x": x})


def test_op_list_is_sorted_and_complete():
    ops = _core.engine_op_types()
    assert ops == sorted(ops)
    for op in ["Conv", "ConvTranspose", "Resize", "DequantizeLinear", "LayerNormalization", "Gemm", "MatMul",
               "Equal", "Where", "QuantizeLinear"]:
        assert op in ops


# --------------------------------------------------------------------------------------
# (b) real models on a WIDER frame

def _ort_reference(path: Path):
    """onnxruntime on the model with its constant DequantizeLinear nodes folded (the int8bq
    files: this onnxruntime rejects their blocked per-tensor ones)."""
    return ort_session(fold_weight_dequantize(onnx.load(str(path))))


REAL = [
    # (path under models/, sizes (w, h), preprocessing, task)
    ("ShiqiYu__libfacedetection.train/onnx/yunet_s_dynamic.onnx", [(320, 256), (640, 480)], "raw"),
    ("ShiqiYu__libfacedetection.train/onnx/yunet_n_dynamic.onnx", [(640, 480)], "raw"),
    ("ShiqiYu__libfacedetection.train/onnx/yunet_s_320_320.onnx", [(320, 320)], "raw"),
    ("opencv_zoo/face_detection_yunet_2023mar_int8bq.onnx", [(640, 640)], "raw"),
    ("hpc203__scrfd-opencv/weights/scrfd_500m_kps.onnx", [(640, 640)], "scrfd"),
    ("hpc203__scrfd-opencv/weights/scrfd_2.5g_kps.onnx", [(640, 640)], "scrfd"),
    ("Linzaer__Ultra-Light-Fast-Generic-Face-Detector-1MB/models/onnx/version-RFB-320.onnx", [(320, 240)], "ultra"),
    ("Linzaer__Ultra-Light-Fast-Generic-Face-Detector-1MB/models/onnx/version-slim-320.onnx", [(320, 240)], "ultra"),
    ("opencv_zoo/face_recognition_sface_2021dec_int8bq.onnx", [(112, 112)], "raw"),
    ("cunjian__pytorch_face_landmark/onnx/pfld.onnx", [(112, 112)], "unit"),
]
PRE = {"raw": lambda x: x, "scrfd": lambda x: (x - 127.5) / 128.0, "ultra": lambda x: (x - 127.0) / 128.0,
       "unit": lambda x: x / 255.0}


def _frame(w, h, pre):
    cv2 = need_module("cv2")
    img = cv2.imread(str(need(FULLRES12 / "images/12_Group_Group_12_Group_Group_12_10.jpg")))
    x = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.ascontiguousarray(PRE[pre](x.transpose(2, 0, 1)[None]))


@pytest.mark.parametrize("path,sizes,pre", REAL, ids=[Path(r[0]).stem for r in REAL])
def test_real_model_matches_onnxruntime(path, sizes, pre):
    path = need(MODELS / path)
    # 1:1 import; the task preset only fills metadata the engine does not read.
    eng = _core.Engine(convert_onnx(path, task="detect", head="yunet"))
    sess = _ort_reference(path)
    for w, h in sizes:
        x = _frame(w, h, pre)
        ref = sess.run(None, {sess.get_inputs()[0].name: x})
        got = eng.run([x])
        assert eng.macs > 0
        for name, r, o in zip(eng.output_names, ref, got):
            assert o.shape == r.shape, (name, o.shape, r.shape)
            err = float(np.abs(o - r).max()) / max(1e-12, float(np.abs(r).max()))
            assert err <= 1e-4, f"{path.name} {w}x{h} output {name}: max relative error {err:.3g}"


@pytest.mark.parametrize("path,sizes,pre", REAL, ids=[Path(r[0]).stem for r in REAL])
def test_real_model_threads_are_bit_exact(path, sizes, pre):
    # Worker threads split work into column blocks, channels or row ranges without changing
    # any element's arithmetic: 2 and 3 threads give exactly the single-thread outputs.
    blob = convert_onnx(need(MODELS / path), task="detect", head="yunet")
    w, h = sizes[-1]
    x = _frame(w, h, pre)
    want = _core.Engine(blob, 1).run([x])
    for threads in (2, 3):
        got = _core.Engine(blob, threads).run([x])
        for r, o in zip(want, got):
            np.testing.assert_array_equal(o, r, err_msg=f"{threads} threads")


def test_threads_ragged_ops():
    # Every Conv path with shapes that do not split evenly over 3 workers.
    for case in CONV_CASES + [dict(x=(1, 5, 13, 131), w=(7, 5, 1, 1), bias=True, attrs={})]:
        consts = {"w": rnd(*case["w"], seed=1)}
        if case["bias"]:
            consts["b"] = rnd(case["w"][0], seed=2)
        blob = to_pface(single("Conv", rnd(*case["x"]), consts, attrs=case["attrs"]))
        x = rnd(*case["x"])
        (want,) = _core.Engine(blob, 1).run([x])
        (got,) = _core.Engine(blob, 3).run([x])
        np.testing.assert_array_equal(got, want, err_msg=str(case))


def test_threads_out_of_range():
    blob = to_pface(single("Relu", rnd(2, 3)))
    for bad in (0, -1, 257):
        with pytest.raises(ValueError, match="threads"):
            _core.Engine(blob, bad)


# --------------------------------------------------------------------------------------
# (c) re-planning

def test_replan_synthetic():
    # Dynamic H, W: conv + shape-driven reshape; one engine at three sizes equals fresh ones.
    w = rnd(4, 3, 3, 3, seed=9)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Shape", ["c"], ["s"]),
             helper.make_node("Slice", ["s", "z", "two"], ["nc"]),
             helper.make_node("Concat", ["nc", "m1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["c", "shape"], ["y"])]
    consts = {"w": w, "z": np.array([0], np.int64), "two": np.array([2], np.int64), "m1": np.array([-1], np.int64)}
    ins = [helper.make_tensor_value_info("x", F32, [1, 3, "h", "w"])]
    g = helper.make_graph(nodes, "t", ins, [helper.make_tensor_value_info("y", F32, None)],
                          [numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    blob = to_pface(model)
    eng = _core.Engine(blob)
    sess = ort_session(model)
    for h, wd in [(9, 13), (20, 7), (9, 13)]:
        x = rnd(1, 3, h, wd, seed=h)
        (got,) = eng.run([x])
        (fresh,) = _core.Engine(blob).run([x])
        np.testing.assert_array_equal(got, fresh)
        compare(sess.run(None, {"x": x}), [got], f"replan {h}x{wd}")
        assert eng.macs == 4 * 27 * ((h + 1) // 2) * ((wd + 1) // 2)


def test_replan_yunet():
    path = need(MODELS / "ShiqiYu__libfacedetection.train/onnx/yunet_s_dynamic.onnx")
    blob = convert_onnx(path, task="detect", head="yunet")
    eng = _core.Engine(blob)
    macs = []
    for w, h in [(320, 256), (640, 480), (320, 256)]:
        x = _frame(w, h, "raw")
        got = eng.run([x])
        fresh = _core.Engine(blob).run([x])
        for a, b in zip(got, fresh):
            np.testing.assert_array_equal(a, b)
        macs.append(eng.macs)
    assert macs[0] == macs[2] < macs[1]


# --------------------------------------------------------------------------------------
# (d) bad inputs and unsupported ops

@pytest.fixture(scope="module")
def small_engine():
    x = rnd(1, 3, 8, 8)
    ins = [helper.make_tensor_value_info("x", F32, [1, 3, "h", "w"])]
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "t", ins,
                          [helper.make_tensor_value_info("y", F32, None)],
                          [numpy_helper.from_array(rnd(2, 3, 3, 3), "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    eng = _core.Engine(to_pface(model))
    eng.run([x])
    return eng


@pytest.mark.parametrize("bad,match", [
    (np.zeros((3, 8, 8), np.float32), "shape"),
    (np.zeros((1, 4, 8, 8), np.float32), "shape"),
    (np.zeros((1, 3, 8, 8), np.float64), "float32"),
    (np.zeros((1, 3, 8, 8), np.int64), "float32"),
    (np.zeros((1, 3, 0, 8), np.float32), "dimension"),
    ([[1.0]], "numpy"),
])
def test_bad_input_raises_value_error(small_engine, bad, match):
    with pytest.raises(ValueError, match=match):
        small_engine.run([bad])
    # The engine stays usable after a rejected input.
    (y,) = small_engine.run([rnd(1, 3, 8, 8)])
    assert y.shape == (1, 2, 8, 8)


def test_wrong_input_count(small_engine):
    with pytest.raises(ValueError, match="input"):
        small_engine.run([])
    with pytest.raises(ValueError, match="input"):
        small_engine.run([rnd(1, 3, 8, 8), rnd(1, 3, 8, 8)])


def test_non_contiguous_input_is_accepted(small_engine):
    x = rnd(1, 3, 8, 16)[..., ::2]
    (a,) = small_engine.run([x])
    (b,) = small_engine.run([np.ascontiguousarray(x)])
    np.testing.assert_array_equal(a, b)


def test_yunet_size_not_multiple_of_stride_raises():
    path = need(MODELS / "ShiqiYu__libfacedetection.train/onnx/yunet_s_dynamic.onnx")
    eng = _core.Engine(convert_onnx(path, task="detect", head="yunet"))
    with pytest.raises(ValueError, match="broadcast"):
        eng.run([np.zeros((1, 3, 240, 320), np.float32)])


def test_unsupported_ops_listed():
    x = rnd(2, 3)
    nodes = [helper.make_node("Celu", ["x"], ["a"]), helper.make_node("Selu", ["a"], ["b"]),
             helper.make_node("Celu", ["b"], ["y"])]
    blob = to_pface(graph(nodes, {"x": x}))
    with pytest.raises(RuntimeError, match="Celu, Selu"):
        _core.Engine(blob)


def test_unsupported_attribute_raises_runtime_error():
    x = rnd(1, 3, 4, 4)
    blob = to_pface(single("Resize", x, {"sc": np.array([1, 1, 2, 2], np.float32)}, inputs=["x", "", "sc"],
                           attrs=dict(mode="cubic")))
    with pytest.raises(RuntimeError, match="cubic"):
        _core.Engine(blob)


def test_engine_properties(small_engine):
    assert small_engine.input_names == ["x"]
    assert small_engine.output_names == ["y"]
    assert small_engine.macs == 2 * 27 * 64
