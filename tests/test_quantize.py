"""Native INT8: quantisation arithmetic, calibration, the int8 engine path against an
onnxruntime QDQ model with the same parameters, and bit-exactness across ISAs."""

import json
from pathlib import Path

import numpy as np
import pytest

from picoface import _core, modelfile
from picoface.convert import metadata_for
from picoface.quant_graph import load_graph
from picoface.quant_math import QuantParams, activation_params, dequantize, quantize, weight_scales
from picoface.quantize import quantize_model

from conftest import ISAS, SFACE, SHARED, YUNET_S, need, need_module

H, W = 19, 23  # ragged on purpose: no vector width divides them


def _conv(name, x, y, w, b, act=None, **attrs):
    k = w.shape[2:]
    pads = attrs.pop("pads", [k[0] // 2, k[1] // 2] * 2)
    a = {"kernel_shape": list(k), "pads": pads, "strides": attrs.pop("strides", [1, 1]),
         "group": attrs.pop("group", 1)}
    if act:
        a["activation"] = act
    return [modelfile.Tensor(name + ".w", data=w), modelfile.Tensor(name + ".b", data=b)], \
        modelfile.Op("Conv", [x, name + ".w", name + ".b"], [y], a)


def small_net(seed=0, constant_input=False):
    """A float .pface exercising every int8 Conv path: a 3x3 stride-2 stem (generic), a
    pointwise Conv, a depthwise 3x3 + relu, a 2x2 MaxPool, a grouped 3x3 (generic) and a
    pointwise head with no activation."""
    rng = np.random.default_rng(seed)
    f = lambda *s, scale=0.5: (rng.standard_normal(s) * scale).astype(np.float32)
    layers = [
        ("stem", "x", "a", f(8, 3, 3, 3), f(8), "relu", {"strides": [2, 2]}),
        ("pw", "a", "b", f(13, 8, 1, 1), f(13), None, {}),
        ("dw", "b", "c", f(13, 1, 3, 3), f(13), "relu", {"group": 13}),
        ("gr", "d", "e", f(10, 13, 3, 3, scale=0.2), f(10), "relu", {}),
        ("head", "e", "y", f(6, 10, 1, 1), f(6), None, {}),
    ]
    tensors = [modelfile.Tensor("x", dtype="float32", shape=[1, 3, H, W])]
    ops = []
    for name, x, y, w, b, act, attrs in layers:
        if name == "gr":
            ops.append(modelfile.Op("MaxPool", ["c"], ["d"], {"kernel_shape": [2, 2], "strides": [2, 2]}))
            tensors.append(modelfile.Tensor("d", shape=()))
        if name == "dw":
            w[:] = w * 2  # a wider range than its input's
        t, op = _conv(name, x, y, w, b, act, **attrs)
        tensors += t + [modelfile.Tensor(y, shape=())]
        ops.append(op)
    meta = metadata_for("embed", None, "arcface", [1, 3, H, W], Path("net.onnx"), "0" * 64)
    return modelfile.encode(meta, tensors, ops, ["x"], ["y"])


def calib_inputs(n=4, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.5, 2.0, (1, 3, H, W)).astype(np.float32) for _ in range(n)]


# ---------------------------------------------------------------------------------------
# Arithmetic

def test_quantize_dequantize_round_trip(rng):
    for scale, zp in [(0.02, 0), (0.37, -128), (1e-3, 127), (1.0, -5)]:
        q = np.arange(-128, 128, dtype=np.int8)
        np.testing.assert_array_equal(quantize(dequantize(q, scale, zp), scale, zp), q)
        lo, hi = scale * (-128 - zp), scale * (127 - zp)
        x = rng.uniform(lo, hi, 1000).astype(np.float32)
        err = np.abs(dequantize(quantize(x, scale, zp), scale, zp) - x)
        assert err.max() <= scale / 2 * (1 + 1e-5), (scale, zp, err.max())


def test_rounding_is_half_to_even_and_saturates():
    x = np.float32([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, 200, -128.5, -129, -1e30, 1e30,
                    np.inf, -np.inf])
    np.testing.assert_array_equal(
        quantize(x, 1.0, 0), np.int8([0, 2, 2, 0, -2, -2, 126, 127, 127, -128, -128, -128, 127, 127, -128]))
    # zero points at the extremes shift the saturation point, not the rounding
    np.testing.assert_array_equal(quantize(np.float32([0, 255, 255.5, -1]), 1.0, -128), np.int8([-128, 127, 127, -128]))
    np.testing.assert_array_equal(quantize(np.float32([0, -255, -0.5, 1]), 1.0, 127), np.int8([127, -128, 127, 127]))


def test_engine_quantize_linear_matches_numpy():
    """The engine's QuantizeLinear (vectorised rounding) on ties, saturation and infinities."""
    x = np.float32([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, 200, -300, 1e30, np.inf, -np.inf,
                    0.3, -0.7] * 3)[None]
    for scale, zp in [(1.0, 0), (0.5, -128), (0.1, 127), (3.0, 7)]:
        tensors = [modelfile.Tensor("x", dtype="float32", shape=list(x.shape)),
                   modelfile.Tensor("s", data=np.float32(scale)), modelfile.Tensor("z", data=np.int8(zp)),
                   modelfile.Tensor("q", shape=()), modelfile.Tensor("y", shape=())]
        ops = [modelfile.Op("QuantizeLinear", ["x", "s", "z"], ["q"]),
               modelfile.Op("DequantizeLinear", ["q", "s", "z"], ["y"])]
        meta = metadata_for("embed", None, "arcface", [1, 3, 1, 1], Path("q.onnx"), "0" * 64)
        eng = _core.Engine(modelfile.encode(meta, tensors, ops, ["x"], ["q", "y"]))
        q, y = eng.run([x])
        np.testing.assert_array_equal(q, quantize(x, scale, zp), err_msg=f"scale {scale} zp {zp}")
        np.testing.assert_array_equal(y, dequantize(q, scale, zp))


def test_weight_scales_per_channel():
    w = np.zeros((4, 2, 3, 3), np.float32)
    w[0, 1, 2, 2] = -2.54
    w[1] = 0.127
    w[3, 0, 0, 0] = 1e-6
    s = weight_scales(w)
    np.testing.assert_array_equal(s, np.float32([2.54 / 127, 0.127 / 127, 1.0, 1e-6 / 127]))
    assert s.dtype == np.float32
    np.testing.assert_array_equal(weight_scales(w, per_channel=False), np.float32([2.54 / 127]))
    q = quantize(w, s, 0, axis=0, lo=-127)
    assert q[0, 1, 2, 2] == -127 and q[1].min() == q[1].max() == 127 and not q[2].any()
    assert q[3, 0, 0, 0] == 127


def test_activation_params_edges():
    assert activation_params(0.0, 255.0) == QuantParams(1.0, -128)       # an image: exact
    p = activation_params(-3.0, -1.0)                            # all negative: 0 still exact
    assert p.zero_point == 127 and p.scale == pytest.approx(3.0 / 255)
    assert activation_params(0.0, 0.0) == QuantParams(1.0, -128)         # constant zero: no zero scale
    p = activation_params(-1.0, 1.0)
    assert quantize(np.float32([0.0]), p.scale, p.zero_point)[0] == p.zero_point
    with pytest.raises(ValueError, match="finite"):
        activation_params(0.0, np.inf)


# ---------------------------------------------------------------------------------------
# Calibration and the rewrite

def test_zero_calibration_images_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="at least one calibration image"):
        quantize_model(small_net(), tmp_path)
    with pytest.raises(ValueError, match="at least one calibration image"):
        quantize_model(small_net(), [])
    with pytest.raises(FileNotFoundError):
        quantize_model(small_net(), tmp_path / "absent.npz")


def test_one_calibration_image_and_graph_form():
    blob, report = quantize_model(small_net(), calib_inputs(1))
    assert report["int8_convs"] == report["convs"] == 5 and report["calibration_images"] == 1
    s = modelfile.summary(blob)
    assert s["metadata"]["quant.scheme"] == "int8"
    types = [o["type"] for o in s["ops"]]
    assert types.count("QLinearConv") == 5 and "Conv" not in types
    assert types.count("QuantizeLinear") == 1 and types.count("DequantizeLinear") == 1
    pool = s["ops"][types.index("MaxPool")]
    assert s["tensors"][pool["inputs"][0]]["dtype"] == "int8"
    with pytest.raises(ValueError, match="already quantised"):
        quantize_model(blob, calib_inputs(1))


def test_keep_float_first_last():
    _, r = quantize_model(small_net(), calib_inputs(1), keep_float=["first", "last"])
    assert r["int8_convs"] == 3
    with pytest.raises(ValueError, match="keep-float"):
        quantize_model(small_net(), calib_inputs(1), keep_float=["middle"])


def test_nothing_quantisable_is_an_error():
    """Sigmoid Convs have no int8 form: a model with only those is refused rather than
    written as an "int8" file that is float throughout."""
    g = load_graph(small_net())
    for op in g.ops:
        if op.type == "Conv":
            op.attrs["activation"] = "sigmoid"
    with pytest.raises(ValueError, match="no Conv of this model can run in int8.*sigmoid"):
        quantize_model(g.encode(), calib_inputs(1))


def test_constant_activations():
    """All-zero calibration inputs: every range is a point; scales stay usable (no division
    by zero) and the int8 model computes what the float one does on that input."""
    x = np.zeros((1, 3, H, W), np.float32)
    blob, _ = quantize_model(small_net(), [x])
    g = load_graph(blob)
    scales = [float(t.data) for n, t in g.tensors.items() if n.endswith(".q8.scale")]
    assert scales and all(s > 0 and np.isfinite(s) for s in scales)
    ref = _core.Engine(small_net()).run([x])[0]
    got = _core.Engine(blob).run([x])[0]
    assert np.isfinite(got).all()
    y_scale = float(g.tensors["y.q8.scale"].data)
    assert np.abs(got - ref).max() <= 4 * y_scale + 1e-6


def test_npz_calibration_and_cli(tmp_path):
    from picoface.cli import main
    src = modelfile.save(tmp_path / "net.pface", small_net())
    np.savez(tmp_path / "calib.npz", x=np.concatenate(calib_inputs(3)))
    out = tmp_path / "net_int8.pface"
    assert main(["quantize", str(src), "--calib", str(tmp_path / "calib.npz"), "-o", str(out),
                 "--method", "percentile"]) == 0
    assert modelfile.summary(out)["metadata"]["quant.method"] == "percentile"
    assert main(["quantize", str(src), "--calib", str(tmp_path), "-o", str(out)]) == 1  # no images


# ---------------------------------------------------------------------------------------
# The int8 engine path against onnxruntime, and across ISAs

def _qdq_reference(blob, shape=(1, 3, H, W)):
    """An ONNX model computing the int8 graph of ``blob`` the QDQ way: every QLinearConv
    becomes DequantizeLinear -> float Conv (weights and int32 bias dequantised per channel)
    -> activation -> QuantizeLinear, with the same parameters; MaxPool runs on the
    dequantised int8 values. The other int8 ops become DequantizeLinear -> their float op ->
    QuantizeLinear (QLinearAdd: Add, QLinearConcat: Concat, QLinearAveragePool /
    QLinearGlobalAveragePool: the pools, QGemm: Gemm on dequantised weights and bias); ops
    that only move int8 values (Resize, Flatten, Reshape) run on int8. Outputs every int8
    tensor (as int8) and the graph output."""
    need_module("onnx")
    from onnx import TensorProto, helper, numpy_helper
    g = load_graph(blob)
    nodes, inits, int8_outs = [], [], []
    arr = lambda n: np.asarray(g.tensors[n].data)

    def init(name, value):
        if not any(t.name == name for t in inits):
            inits.append(numpy_helper.from_array(np.asarray(value), name))

    def dq(i, x, xs, xz):
        for n in (xs, xz):
            init(n, arr(n))
        nodes.append(helper.make_node("DequantizeLinear", [x, xs, xz], [f"{x}.f{i}"]))
        return f"{x}.f{i}"

    def q_out(i, yf, op):
        ys, yz = op.inputs[-2:] if op.type != "QLinearConcat" else op.inputs[:2]
        for n in (ys, yz):
            init(n, arr(n))
        nodes.append(helper.make_node("QuantizeLinear", [yf, ys, yz], [op.outputs[0]]))
        int8_outs.append(op.outputs[0])

    for i, op in enumerate(g.ops):
        if op.type == "QLinearConv":
            x, xs, xz, w, ws, wz, ys, yz = op.inputs[:8]
            b = op.inputs[8] if len(op.inputs) > 8 else None
            for n in (xs, xz, w, ws, wz, ys, yz):
                if not any(t.name == n for t in inits):
                    init(n, arr(n))
            nodes.append(helper.make_node("DequantizeLinear", [x, xs, xz], [f"xf{i}"]))
            nodes.append(helper.make_node("DequantizeLinear", [w, ws, wz], [f"wf{i}"], axis=0))
            conv_in = [f"xf{i}", f"wf{i}"]
            if b is not None:
                init(b, arr(b))
                init(f"bs{i}", (np.float32(arr(xs)) * arr(ws)).astype(np.float32))
                nodes.append(helper.make_node("DequantizeLinear", [b, f"bs{i}"], [f"bf{i}"], axis=0))
                conv_in.append(f"bf{i}")
            attrs = {k: v for k, v in op.attrs.items() if k in ("kernel_shape", "pads", "strides", "group")}
            act = op.attrs.get("activation", "none")
            nodes.append(helper.make_node("Conv", conv_in, [f"cf{i}" if act != "none" else f"yf{i}"], **attrs))
            if act == "relu":
                nodes.append(helper.make_node("Relu", [f"cf{i}"], [f"yf{i}"]))
            elif act == "leaky_relu":
                nodes.append(helper.make_node("LeakyRelu", [f"cf{i}"], [f"yf{i}"], alpha=op.attrs["activation_alpha"]))
            elif act == "prelu":
                init(f"slope{i}", arr(op.inputs[9]).reshape(-1, 1, 1))
                nodes.append(helper.make_node("PRelu", [f"cf{i}", f"slope{i}"], [f"yf{i}"]))
            nodes.append(helper.make_node("QuantizeLinear", [f"yf{i}", ys, yz], [op.outputs[0]]))
            int8_outs.append(op.outputs[0])
        elif op.type == "QLinearAdd":
            a, b = dq(i, *op.inputs[0:3]), dq(i, *op.inputs[3:6])
            relu = op.attrs.get("activation") == "relu"
            nodes.append(helper.make_node("Add", [a, b], [f"sf{i}" if relu else f"yf{i}"]))
            if relu:
                nodes.append(helper.make_node("Relu", [f"sf{i}"], [f"yf{i}"]))
            q_out(i, f"yf{i}", op)
        elif op.type == "QLinearConcat":
            xs = [dq(i, *op.inputs[j:j + 3]) for j in range(2, len(op.inputs), 3)]
            nodes.append(helper.make_node("Concat", xs, [f"yf{i}"], axis=op.attrs["axis"]))
            q_out(i, f"yf{i}", op)
        elif op.type in ("QLinearAveragePool", "QLinearGlobalAveragePool"):
            nodes.append(helper.make_node(op.type[len("QLinear"):], [dq(i, *op.inputs[:3])], [f"yf{i}"], **op.attrs))
            q_out(i, f"yf{i}", op)
        elif op.type == "QGemm":
            a, a_s, a_z, w, ws, wz, b = op.inputs[:7]
            for n in (w, ws, wz):
                init(n, arr(n))
            nodes.append(helper.make_node("DequantizeLinear", [w, ws, wz], [f"wf{i}"], axis=0))
            gemm_in = [dq(i, a, a_s, a_z), f"wf{i}"]
            if b is not None:
                init(b, arr(b))
                init(f"bs{i}", (np.float32(arr(a_s)) * arr(ws)).astype(np.float32))
                nodes.append(helper.make_node("DequantizeLinear", [b, f"bs{i}"], [f"bf{i}"], axis=0))
                gemm_in.append(f"bf{i}")
            if len(op.inputs) > 7:
                nodes.append(helper.make_node("Gemm", gemm_in, [f"yf{i}"], transB=1))
                q_out(i, f"yf{i}", op)
            else:  # float output
                nodes.append(helper.make_node("Gemm", gemm_in, op.outputs, transB=1))
        elif op.type in ("MaxPool", "Resize", "Flatten", "Reshape") and g.tensors[op.inputs[0]].dtype == "int8":
            for n in op.inputs[1:]:
                if n:
                    init(n, arr(n))
            nodes.append(helper.make_node(op.type, [n or "" for n in op.inputs], op.outputs, **op.attrs))
        else:
            for n in op.inputs:
                if n in g.tensors and g.tensors[n].data is not None and not any(t.name == n for t in inits):
                    init(n, arr(n))
            nodes.append(helper.make_node(op.type, op.inputs, op.outputs, **op.attrs))
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))]
    outs = [helper.make_tensor_value_info(n, TensorProto.INT8, None) for n in int8_outs]
    outs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in g.outputs]
    model = helper.make_model(helper.make_graph(nodes, "qdq", ins, outs, inits),
                              opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    return model, int8_outs


def _native_with_int8_outputs(blob, names):
    g = load_graph(blob)
    return _core.Engine(g.encode(list(names) + list(g.outputs)))


def test_int8_convs_match_onnxruntime_qdq_within_one_lsb():
    """Each QLinearConv, fed the same int8 input, agrees with onnxruntime's float Conv between
    DequantizeLinear and QuantizeLinear (same scales and zero points) within 1 LSB; the rule
    (float32 requantisation of the exact int32 sum, round half to even) is documented in
    kernels.h."""
    ort = need_module("onnxruntime")
    blob, _ = quantize_model(small_net(), calib_inputs(4))
    model, int8_names = _qdq_reference(blob)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # float Conv, no QLinearConv fusion
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    native = _native_with_int8_outputs(blob, int8_names)
    g = load_graph(blob)
    convs = [op for op in g.ops if op.type == "QLinearConv"]
    for seed in range(3):
        x = calib_inputs(1, seed=10 + seed)[0] * 1.2  # a little beyond the calibrated range: saturation
        got = dict(zip(native.output_names, native.run([x])))
        ref = dict(zip([o.name for o in model.graph.output], sess.run(None, {"x": x})))
        # Per layer: the reference conv on the native int8 input, so errors do not compound.
        for op in convs:
            feeds = {op.inputs[0]: got[op.inputs[0]]} if op.inputs[0] in got else {"x": x}
            single = _single_layer_reference(model, op, feeds)
            diff = np.abs(got[op.outputs[0]].astype(int) - single.astype(int))
            assert diff.max() <= 1, f"{op.outputs[0]}: {diff.max()} LSB at {np.unravel_index(diff.argmax(), diff.shape)}"
            # The reference sums dequantised products in float32 (not an exact int32 sum), so
            # values within its rounding error of a .5 boundary may round the other way.
            assert (diff == 0).mean() > 0.98, f"{op.outputs[0]}: only {(diff == 0).mean():.3f} exact"
        # End to end the float output stays within a few output LSBs.
        ys = float(np.asarray(g.tensors[convs[-1].inputs[6]].data))
        assert np.abs(got["y"] - ref["y"]).max() <= 3 * ys + 1e-6


def _single_layer_reference(model, op, feeds, float_out=False):
    """onnxruntime on the part of ``model`` computing ``op``'s int8 (or ``float_out``) output
    from its int8 inputs (or from the float graph input for the first layer)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper
    out = op.outputs[0]
    # Walk back from `out` to the fed tensors.
    producers = {o: n for n in model.graph.node for o in n.output}
    keep, stack = [], [out]
    while stack:
        t = stack.pop()
        if t in feeds or t not in producers:
            continue
        n = producers[t]
        if n not in keep:
            keep.append(n)
            stack.extend(n.input)
    order = [n for n in model.graph.node if n in keep]
    elem = lambda v: TensorProto.INT8 if v.dtype == np.int8 else TensorProto.FLOAT
    g = helper.make_graph(order, "one", [helper.make_tensor_value_info(n, elem(v), v.shape) for n, v in feeds.items()],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT if float_out else TensorProto.INT8, None)],
                          list(model.graph.initializer))
    m = helper.make_model(g, opset_imports=model.opset_import, ir_version=model.ir_version)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def test_int8_path_bit_exact_on_every_isa():
    blob, _ = quantize_model(small_net(seed=3), calib_inputs(2))
    g = load_graph(blob)
    names = [op.outputs[0] for op in g.ops if op.type in ("QLinearConv", "MaxPool")]
    x = calib_inputs(1, seed=7)[0]
    before = _core.get_isa()
    results = {}
    try:
        for isa in ISAS:
            _core.set_isa(isa)
            eng = _native_with_int8_outputs(blob, names)
            results[isa] = dict(zip(eng.output_names, eng.run([x])))
    finally:
        _core.set_isa(before)
    ref = results["scalar"]
    for isa, out in results.items():
        for n in names + ["y"]:
            np.testing.assert_array_equal(out[n], ref[n], err_msg=f"{n} on {isa} vs scalar")


def mixed_net(seed=0):
    """A float .pface whose every op has an int8 form: a PReLU stem (per-channel slopes, one
    negative, one above 1), a LeakyReLU pointwise Conv, a residual Add + Relu, MaxPool,
    nearest Resize, a Concat of inputs sharing parameters (a copy) and one of inputs that do
    not (requantised), a relu Conv, AveragePool 3x3 / 2 with ceil_mode (partial last windows
    on a 10x12 map), GlobalAveragePool, Flatten and two Gemms (the last one's output float)."""
    rng = np.random.default_rng(seed)
    f = lambda *s, scale=0.5: (rng.standard_normal(s) * scale).astype(np.float32)
    slope = np.linspace(-0.5, 1.5, 8).astype(np.float32)
    tensors = [modelfile.Tensor("x", dtype="float32", shape=[1, 3, H, W]),
               modelfile.Tensor("slope", data=slope), modelfile.Tensor("up", data=np.float32([1, 1, 2, 2])),
               modelfile.Tensor("fc.w", data=f(8, 10)), modelfile.Tensor("fc.b", data=f(8)),
               modelfile.Tensor("fc2.w", data=f(8, 6)), modelfile.Tensor("fc2.b", data=f(6))]
    ops = []
    for name, x, y, w, b, act, attrs in [
            ("stem", "x", "a", f(8, 3, 3, 3), f(8), "prelu", {"strides": [2, 2]}),
            ("pw", "a", "b", f(8, 8, 1, 1), f(8), "leaky_relu", {}),
            ("c3", "cat2", "e", f(10, 24, 3, 3, scale=0.2), f(10), "relu", {})]:
        t, op = _conv(name, x, y, w, b, act, **attrs)
        if act == "prelu":
            op.inputs.append("slope")
        if act == "leaky_relu":
            op.attrs["activation_alpha"] = 0.1
        tensors += t
        if name == "c3":
            ops += [modelfile.Op("Add", ["a", "b"], ["s"]),
                    modelfile.Op("Relu", ["s"], ["c"]),
                    modelfile.Op("MaxPool", ["c"], ["p"], {"kernel_shape": [2, 2], "strides": [2, 2]}),
                    modelfile.Op("Resize", ["p", None, "up"], ["d"], {"mode": "nearest"}),
                    modelfile.Op("Concat", ["c", "d"], ["cat1"], {"axis": 1}),
                    modelfile.Op("Concat", ["cat1", "b"], ["cat2"], {"axis": 1})]
        ops.append(op)
    ops += [modelfile.Op("AveragePool", ["e"], ["e2"], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
            modelfile.Op("GlobalAveragePool", ["e2"], ["g"]),
            modelfile.Op("Flatten", ["g"], ["fl"], {"axis": 1}),
            modelfile.Op("Gemm", ["fl", "fc.w", "fc.b"], ["h"], {"transB": 1}),
            modelfile.Op("Gemm", ["h", "fc2.w", "fc2.b"], ["y"], {})]  # B as [K, M]
    tensors += [modelfile.Tensor(n, shape=()) for n in ("a", "b", "s", "c", "p", "d", "cat1", "cat2", "e", "e2", "g",
                                                       "fl", "h", "y")]
    meta = metadata_for("embed", None, "arcface", [1, 3, H, W], Path("net.onnx"), "0" * 64)
    return modelfile.encode(meta, tensors, ops, ["x"], ["y"])


def test_int8_ops_between_convs_match_onnxruntime_and_every_isa():
    """With PReLU / LeakyReLU in the requantisation, QLinearAdd, int8 MaxPool / Resize /
    Flatten, QLinearConcat, the int8 pools and QGemm the whole mixed_net runs in int8 (one
    QuantizeLinear in, the last QGemm's float out). Each int8 op, fed the native int8 inputs,
    agrees with onnxruntime's float op between DequantizeLinear and QuantizeLinear within 1
    LSB (data movement exactly; the float-output QGemm to float rounding), and every ISA
    computes the same integers."""
    ort = need_module("onnxruntime")
    calib = calib_inputs(4)
    blob, _ = quantize_model(mixed_net(), calib)
    g = load_graph(blob)
    types = [op.type for op in g.ops]
    assert sorted(types) == sorted(["QuantizeLinear", "QLinearConv", "QLinearConv", "QLinearAdd", "MaxPool",
                                    "Resize", "QLinearConcat", "QLinearConcat", "QLinearConv",
                                    "QLinearAveragePool", "QLinearGlobalAveragePool", "Flatten", "QGemm",
                                    "QGemm"]), types
    assert next(op for op in g.ops if op.type == "QLinearAdd").attrs == {"activation": "relu"}
    scale = lambda n: float(np.asarray(g.tensors[n].data))
    copy, requant = [op for op in g.ops if op.type == "QLinearConcat"]
    assert all(scale(copy.inputs[0]) == scale(t) for t in copy.inputs[3::3])
    assert any(scale(requant.inputs[0]) != scale(t) for t in requant.inputs[3::3])
    int8_ops = [op for op in g.ops if g.tensors[op.outputs[0]].dtype == "int8" and op.type != "QuantizeLinear"]
    names = [op.outputs[0] for op in int8_ops]
    model, _ = _qdq_reference(blob)
    x = calib_inputs(1, seed=11)[0] * 1.2  # a little beyond the calibrated range: saturation
    got = dict(zip(*(lambda e: (e.output_names, e.run([x])))(_native_with_int8_outputs(blob, names))))
    q_in = next(op for op in g.ops if op.type == "QuantizeLinear").outputs[0]
    got[q_in] = _native_with_int8_outputs(blob, [q_in]).run([x])[0]
    for op in int8_ops:
        feeds = {t: got[t] for t in op.inputs if t in got}
        assert feeds, op
        single = _single_layer_reference(model, op, feeds)
        diff = np.abs(got[op.outputs[0]].astype(int) - single.astype(int))
        exact = op.type in ("MaxPool", "Resize", "Flatten")
        assert diff.max() <= (0 if exact else 1), f"{op.type} {op.outputs[0]}: {diff.max()} LSB"
    last = g.ops[-1]
    assert last.type == "QGemm" and last.outputs == ["y"]
    single = _single_layer_reference(model, last, {last.inputs[0]: got[last.inputs[0]]}, float_out=True)
    np.testing.assert_allclose(got["y"], single, rtol=1e-5, atol=1e-5 * np.abs(single).max())
    before = _core.get_isa()
    try:
        for isa in ISAS:
            _core.set_isa(isa)
            for threads in (1, 3):
                eng = _core.Engine(g.encode(names + list(g.outputs)), threads)
                for name, value in zip(eng.output_names, eng.run([x])):
                    np.testing.assert_array_equal(value, got[name], err_msg=f"{name} on {isa} vs {before}, {threads} threads")
    finally:
        _core.set_isa(before)
    # End to end, inside the calibrated range, the float output follows the float model
    # within a few output steps.
    x = calib_inputs(1, seed=12)[0]
    ref = _core.Engine(mixed_net()).run([x])[0]
    err = np.abs(_core.Engine(blob).run([x])[0] - ref).max()
    assert err <= 0.03 * np.abs(ref).max(), (err, np.abs(ref).max())


def test_int8_model_takes_its_input_quantised():
    """An int8 model whose input goes to one QuantizeLinear takes that input already
    quantised (int8, that op's parameters) with the same outputs as from float; the engine
    re-plans when the input dtype changes, and refuses int8 where the input is read as float."""
    from picoface.quant_graph import input_quantization
    blob, _ = quantize_model(small_net(), calib_inputs(2))
    q = input_quantization(blob)
    g = load_graph(blob)
    first = next(op for op in g.ops if op.type == "QuantizeLinear")
    assert first.inputs[0] == "x" and q == QuantParams(float(g.tensors[first.inputs[1]].data),
                                                       int(g.tensors[first.inputs[2]].data))
    x = calib_inputs(1, seed=5)[0]
    xq = quantize(x, q.scale, q.zero_point)
    eng = _core.Engine(blob)
    want = eng.run([x])[0]
    np.testing.assert_array_equal(eng.run([xq])[0], want)
    np.testing.assert_array_equal(eng.run([x])[0], want)
    kept, _ = quantize_model(small_net(), calib_inputs(2), keep_float=["first"])
    assert input_quantization(kept) is None and input_quantization(small_net()) is None
    for model in (kept, small_net()):
        with pytest.raises(ValueError, match="input 'x': expected float32, got int8"):
            _core.Engine(model).run([xq])


def _qlinear_add_net(b_shape, attrs):
    tensors = [modelfile.Tensor("a", dtype="int8", shape=[1, 2, 3, 4]), modelfile.Tensor("b", dtype="int8", shape=b_shape),
               modelfile.Tensor("s", data=np.float32(0.1)), modelfile.Tensor("z", data=np.int8(3)),
               modelfile.Tensor("sy", data=np.float32(0.25)), modelfile.Tensor("y", shape=())]
    ops = [modelfile.Op("QLinearAdd", ["a", "s", "z", "b", "s", "z", "sy", "z"], ["y"], attrs)]
    meta = metadata_for("embed", None, "arcface", [1, 3, 4, 4], Path("q.onnx"), "0" * 64)
    return modelfile.encode(meta, tensors, ops, ["a", "b"], ["y"])


def test_qlinear_add_rule_and_errors():
    """QLinearAdd: (a - z) * 0.4 + (b - z) * 0.4 + z, half to even, saturated; fused relu
    clamps at the zero point; operands of different shapes and other activations are
    refused with the reason."""
    a = np.arange(-128, 127, 11, dtype=np.int8)[:24].reshape(1, 2, 3, 4)
    b = a[..., ::-1].copy()
    want = np.clip(np.rint((a.astype(np.float32) - 3) * np.float32(0.4) + (b.astype(np.float32) - 3) * np.float32(0.4))
                   + 3, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(_core.Engine(_qlinear_add_net([1, 2, 3, 4], {})).run([a, b])[0], want)
    relu = _core.Engine(_qlinear_add_net([1, 2, 3, 4], {"activation": "relu"})).run([a, b])[0]
    np.testing.assert_array_equal(relu, np.maximum(want, 3))
    with pytest.raises(RuntimeError, match="QLinearAdd: broadcasting"):
        _core.Engine(_qlinear_add_net([1, 2, 1, 4], {})).run([a, b[:, :, :1]])
    with pytest.raises(RuntimeError, match="fused activation 'sigmoid'"):
        _core.Engine(_qlinear_add_net([1, 2, 3, 4], {"activation": "sigmoid"}))


# The engine runs a pointwise QLinearConv followed by its only reader, a depthwise 3x3 one, as
# one step over bands of rows when rows have at least 128 columns: the same integers as the
# two ops apart, on every ISA and with several worker threads.
PW_DW_INT8 = [((1, 5, 13, 131), 7, 1), ((2, 3, 9, 200), 13, 2), ((1, 16, 40, 137), 17, 2),
              ((1, 8, 3, 300), 9, 1), ((1, 4, 1, 129), 5, 1)]


def pw_dw_net(shape, mid, stride, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s, scale=0.5: (rng.standard_normal(s) * scale).astype(np.float32)
    cin = shape[1]
    tensors = [modelfile.Tensor("x", dtype="float32", shape=list(shape))]
    ops = []
    for name, x, y, w, b, act, attrs in [
            ("pw", "x", "m", f(mid, cin, 1, 1), f(mid), None, {}),
            ("dw", "m", "c", f(mid, 1, 3, 3), f(mid), "relu", {"group": mid, "strides": [stride] * 2}),
            ("head", "c", "y", f(6, mid, 1, 1), f(6), None, {})]:
        t, op = _conv(name, x, y, w, b, act, **attrs)
        tensors += t + [modelfile.Tensor(y, shape=())]
        ops.append(op)
    meta = metadata_for("embed", None, "arcface", list(shape), Path("net.onnx"), "0" * 64)
    return modelfile.encode(meta, tensors, ops, ["x"], ["y"])


@pytest.mark.parametrize("shape,mid,stride", PW_DW_INT8, ids=lambda v: str(v))
def test_int8_pointwise_depthwise_fused(shape, mid, stride):
    rng = np.random.default_rng(4)
    calib = [rng.uniform(-1.5, 2.0, shape).astype(np.float32) for _ in range(2)]
    blob, _ = quantize_model(pw_dw_net(shape, mid, stride), calib)
    g = load_graph(blob)
    mid_q, dw_q = [op.outputs[0] for op in g.ops if op.type == "QLinearConv"][:2]
    x = rng.uniform(-1.8, 2.4, shape).astype(np.float32)  # a little beyond the calibrated range
    fused = _core.Engine(g.encode([dw_q] + list(g.outputs)), 1)
    steps = [op for op, *_ in fused.profile([x])]
    assert len(steps) == len(g.ops) - 1, f"executed ops {steps} of {len(g.ops)}: the pair was not fused"
    apart = _native_with_int8_outputs(blob, [mid_q, dw_q])  # the intermediate is read: not fused
    assert len(apart.profile([x])) == len(g.ops)
    want = dict(zip(apart.output_names, apart.run([x])))
    before = _core.get_isa()
    try:
        for isa in ISAS:
            _core.set_isa(isa)
            for threads in (1, 3):
                eng = _core.Engine(g.encode([dw_q] + list(g.outputs)), threads)
                for name, got in zip(eng.output_names, eng.run([x])):
                    np.testing.assert_array_equal(got, want[name], err_msg=f"{name} fused on {isa}, {threads} threads")
    finally:
        _core.set_isa(before)
    # The pair against onnxruntime's QDQ Convs on the same int8 input: within 1 LSB.
    need_module("onnxruntime")
    model, _ = _qdq_reference(blob, shape)
    dw = next(op for op in g.ops if op.outputs[0] == dw_q)
    single = _single_layer_reference(model, dw, {mid_q: want[mid_q]})
    diff = np.abs(want[dw_q].astype(int) - single.astype(int))
    assert diff.max() <= 1, f"{diff.max()} LSB at {np.unravel_index(diff.argmax(), diff.shape)}"


# ---------------------------------------------------------------------------------------
# A real detector

def test_yunet_int8_detections_follow_fp32(tmp_path, wider_image):
    need_module("onnx")
    calib = need(SHARED / "data/wider/test183/images")
    from picoface import FaceDetector
    from picoface.convert import convert_onnx
    fp32 = convert_onnx(need(YUNET_S), task="detect", head="yunet")
    images = sorted(calib.glob("*.jpg"))[:4]
    assert images
    blob, report = quantize_model(fp32, calib, limit=4, calib_size=(320, 320))
    assert report["int8_convs"] == report["convs"]
    a = FaceDetector(fp32, input_size=(640, 480))(wider_image)
    b = FaceDetector(blob, input_size=(640, 480))(wider_image)
    assert len(a) > 10 and abs(len(a) - len(b)) <= max(2, len(a) // 10)
    from conftest import box_iou
    matched = sum(box_iou(box, b.boxes).max() >= 0.7 for box in a.boxes)
    assert matched >= 0.9 * len(a)


def test_sface_runs_int8_and_keeps_its_embeddings():
    """SFace (PReLU Convs, a Gemm) quantises whole: 27 QLinearConvs with PReLU in the
    requantisation and a float-output QGemm; on held-out CelebA photos its embeddings stay
    within cosine 0.97 of fp32 (0.987 the lowest measured on 20)."""
    from picoface.convert import convert_onnx
    from picoface.quantize import _input_fn
    images = sorted(need(SHARED / "data/celeba/images").glob("*.jpg"))
    fp32 = convert_onnx(need(SFACE), task="embed", preset="sface")
    cv2 = need_module("cv2")
    blob, report = quantize_model(fp32, [cv2.imread(str(p)) for p in images[:4]])
    g = load_graph(blob)
    convs = [op for op in g.ops if op.type == "QLinearConv"]
    assert report["int8_convs"] == len(convs) == 27 and all(op.attrs["activation"] == "prelu" for op in convs)
    assert [op.type for op in g.ops].count("QGemm") == 1 and "Conv" not in [op.type for op in g.ops]
    prepare = _input_fn(fp32, g.metadata, None)
    a, b = _core.Engine(fp32), _core.Engine(blob)
    for p in images[-4:]:
        x = prepare(cv2.imread(str(p)))
        u, v = a.run([x])[0].ravel(), b.run([x])[0].ravel()
        assert u @ v / np.linalg.norm(u) / np.linalg.norm(v) > 0.97, p.name


# ---------------------------------------------------------------------------------------
# Range methods

def _gaussian_with_outliers(rng, n=200_000, outliers=20, at=40.0):
    x = rng.standard_normal(n).astype(np.float32)
    x[rng.choice(n, outliers, replace=False)] = at
    return x


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_clipping_methods_drop_rare_outliers(rng, method):
    """A unit Gaussian with 0.01 % of its values at 40: minmax stretches the range to 40 (a
    step of 0.3, coarser than most values' spread); percentile and entropy clip to a few
    sigma, and their quantisation error on the Gaussian bulk is several times smaller."""
    from picoface.quant_calibrate import Ranges
    x = _gaussian_with_outliers(rng)
    got = {}
    for m in ("minmax", method):
        r = Ranges(m, percentile=99.9)
        for part in np.array_split(x, 4):  # four "images"
            r.add("t", part)
        got[m] = r.range("t")
    assert got["minmax"] == (pytest.approx(float(x.min())), 40.0)
    lo, hi = got[method]
    assert 2.5 < hi < 8.0 and -8.0 < lo < -2.5, (method, lo, hi)
    bulk = x[np.abs(x) < 4]
    err = {}
    for m, (a, b) in got.items():
        p = activation_params(a, b)
        err[m] = np.abs(dequantize(quantize(bulk, p.scale, p.zero_point), p.scale, p.zero_point) - bulk).mean()
    assert err[method] < err["minmax"] / 3, err


def test_entropy_keeps_a_clean_range(rng):
    """Without outliers there is little to gain by clipping: the entropy range of a uniform
    distribution stays close to the whole of it, and a one-signed (post-ReLU) tensor keeps 0."""
    from picoface.quant_calibrate import Ranges
    r = Ranges("entropy")
    r.add("u", rng.uniform(-1, 3, 100_000))
    r.add("relu", np.maximum(rng.standard_normal(100_000), 0))
    lo, hi = r.range("u")
    assert lo == pytest.approx(-1, abs=0.02) and hi > 2.9
    lo, hi = r.range("relu")
    assert lo == 0.0 and 2.5 < hi < 4.7


def test_entropy_histogram_grows_exactly():
    """The |x| histogram doubles its range when a later image goes beyond it; no count is lost
    and each value lands in the bin it would have had with the final range from the start."""
    from picoface.quant_calibrate import HISTOGRAM_BINS, _Histogram
    h = _Histogram()
    a, b = np.float32([0.1, 0.5, 1.0]), np.float32([3.7, 0.2])
    h.add(a)
    h.add(b)
    assert h.counts.sum() == 5 and h.top > 3.7
    want = np.bincount(np.minimum((np.concatenate([a, b]) * (HISTOGRAM_BINS / h.top)).astype(int),
                                  HISTOGRAM_BINS - 1), minlength=HISTOGRAM_BINS)
    np.testing.assert_array_equal(h.counts, want)


def test_entropy_threshold_dense_and_sparse():
    """A dense bulk with one far outlier bin is clipped just past the bulk; values in no more
    bins than there are levels (a few distinct values) keep their whole range."""
    from picoface.quant_calibrate import entropy_threshold
    counts = np.zeros(2048)
    counts[:300] = np.linspace(1000, 10, 300)
    counts[2047] = 1
    assert 300 <= entropy_threshold(counts, 128) < 400
    sparse = np.zeros(2048)
    sparse[::20] = 100  # 103 distinct values up to the top bin
    assert entropy_threshold(sparse, 128) == 2048
    assert entropy_threshold(np.zeros(2048), 128) == 2048


def test_entropy_method_quantises_a_model():
    blob, report = quantize_model(small_net(), calib_inputs(2), method="entropy")
    assert report["method"] == "entropy" and modelfile.summary(blob)["metadata"]["quant.method"] == "entropy"
    x = calib_inputs(1, seed=9)[0]
    ref, got = _core.Engine(small_net()).run([x])[0], _core.Engine(blob).run([x])[0]
    assert np.isfinite(got).all() and np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.95


# ---------------------------------------------------------------------------------------
# Sensitivity, --keep-float auto, --budget

def outlier_net():
    """small_net whose pointwise Conv ("b") is badly quantisable on its own: every output
    channel has a weight of 300 on an input channel the stem's ReLU always zeroes. The float
    model does not notice; in int8 each channel's scale is set by that weight and its real
    weights (|w| < 2) round to 0."""
    g = load_graph(small_net())

    def edit(name, index, value):
        a = np.array(g.tensors[name].data, np.float32)
        a[index] = value
        g.tensors[name] = modelfile.Tensor(name, data=a)

    edit("stem.w", 0, 0.0)
    edit("stem.b", 0, -100.0)
    edit("pw.w", (slice(None), 0, 0, 0), 300.0)
    return g.encode()


def test_sensitivity_ranks_the_bad_layer_first():
    _, r = quantize_model(outlier_net(), calib_inputs(3), sensitivity=True)
    ranking = r["sensitivity"]
    assert [s["name"] for s in ranking][0] == "b" and len(ranking) == 5
    assert ranking[0]["op"] == "1x1 s1 g1 8->13" and ranking[0]["worst_output"] == "y"
    assert ranking[0]["sqnr_db"] < 10 < 30 < ranking[1]["sqnr_db"], ranking
    assert [s["sqnr_db"] for s in ranking] == sorted(s["sqnr_db"] for s in ranking)
    _, r = quantize_model(small_net(), calib_inputs(3), sensitivity=True, keep_float=["last"])
    assert "y" not in [s["name"] for s in r["sensitivity"]]


def test_keep_float_auto_keeps_the_bad_layer_float():
    _, r = quantize_model(outlier_net(), calib_inputs(3), keep_float=["auto"], budget={"sqnr": 25})
    assert r["kept_float"] == ["b"] and r["int8_convs"] == 4
    assert r["budget"]["sqnr"]["ok"] and r["budget"]["sqnr"]["value"] > 25
    # A floor no int8 model reaches.
    with pytest.raises(ValueError, match="fails even with only the least sensitive Conv"):
        quantize_model(outlier_net(), calib_inputs(3), keep_float=["auto"], budget={"sqnr": 150})
    with pytest.raises(ValueError, match="expected a budget"):
        quantize_model(outlier_net(), calib_inputs(3), keep_float=["auto"])


def test_keep_float_by_name():
    blob, r = quantize_model(outlier_net(), calib_inputs(2), keep_float=["b", "first"],
                             report_accuracy=True)
    assert r["kept_float"] == ["a", "b"] and r["int8_convs"] == 3
    acc = r["accuracy"]
    assert acc["kept_float"] == ["a", "b"] and acc["float_convs"] == 2 and acc["int8_convs"] == 3
    assert acc["calibration"]["sqnr_db_min"] > 25 and acc["calibration"]["cosine"] > 0.99
    with pytest.raises(ValueError, match="Conv names"):
        quantize_model(outlier_net(), calib_inputs(1), keep_float=["nonesuch"])


def test_budget_parsing_and_applicability():
    from picoface.quant_report import Evaluator, parse_budget
    assert parse_budget(["sqnr=30", "COSINE=1e-3"]) == {"sqnr": 30.0, "cosine": 1e-3}
    for bad, msg in [("sqnr", "METRIC=NUMBER"), ("sqnr=x", "METRIC=NUMBER"), ("psnr=3", "metric from"),
                     ("sqnr=nan", "METRIC=NUMBER")]:
        with pytest.raises(ValueError, match=msg):
            parse_budget([bad])
    with pytest.raises(ValueError, match="twice"):
        parse_budget(["sqnr=1", "sqnr=2"])
    x = calib_inputs(1)
    with pytest.raises(ValueError, match="applies to detect models"):
        Evaluator(small_net(), x, metrics=["ap_hard"])
    with pytest.raises(ValueError, match="needs evaluation data"):
        Evaluator(small_net(), x, metrics=["accuracy"])
    with pytest.raises(ValueError, match="applies to landmarks"):
        Evaluator(small_net(), x, metrics=["nme"])


def test_sqnr_edges():
    from picoface.quant_report import SQNR_CAP_DB, sqnr_db
    assert sqnr_db(1.0, 0.0) == SQNR_CAP_DB and sqnr_db(0.0, 1.0) == -SQNR_CAP_DB
    assert sqnr_db(100.0, 1.0) == pytest.approx(20.0)


def test_cli_sensitivity_budget_exit_code(tmp_path, capsys):
    from picoface.cli import main
    src = modelfile.save(tmp_path / "net.pface", outlier_net())
    np.savez(tmp_path / "calib.npz", x=np.concatenate(calib_inputs(3)))
    out = tmp_path / "net_int8.pface"
    args = ["quantize", str(src), "--calib", str(tmp_path / "calib.npz"), "-o", str(out)]
    assert main(args + ["--sensitivity", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["sensitivity"][0]["name"] == "b" and rep["accuracy"]["calibration"]["images"] == 3
    assert main(args + ["--budget", "sqnr=25"]) == 3
    captured = capsys.readouterr()
    assert "sqnr" in captured.err and "25" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "of 5 Convs in int8" in captured.out and "lowest output SQNR" in captured.out
    assert main(args + ["--keep-float", "auto", "--budget", "sqnr=25", "--budget", "cosine=0.01"]) == 0
    assert "float: b" in capsys.readouterr().out
    assert main(args + ["--budget", "ap_hard=0.5"]) == 1  # a detector metric on a recogniser


# ---------------------------------------------------------------------------------------
# ONNX QDQ output

def test_onnx_qdq_yunet(tmp_path, wider_image, capsys):
    """YuNet-s through onnxruntime's quantize_static on the native path's calibration inputs:
    a QDQ model with per-channel int8 weights and uint8 activations that runs in
    onnxruntime and finds the faces the fp32 model finds. onnxruntime's entropy calibrator
    prints progress; --json output stays JSON."""
    need_module("onnxruntime")
    need_module("onnx")
    import onnx
    from picoface import FaceDetector
    from picoface.cli import main
    calib = need(SHARED / "data/wider/test183/images")
    out = tmp_path / "yunet_qdq.onnx"
    assert main(["quantize", str(need(YUNET_S)), "--task", "detect", "--head", "yunet", "--calib",
                 str(calib), "--limit", "4", "--calib-size", "320x320", "--measure-limit", "2",
                 "--method", "entropy", "-o", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["activations"] == "uint8" and rep["check"]["images"] == 2
    assert rep["check"]["cosine"] > 0.99 and rep["check"]["sqnr_db_min"] > 12, rep["check"]
    m = onnx.load(str(out))
    types = [n.op_type for n in m.graph.node]
    assert types.count("QuantizeLinear") > 20 and "Conv" in types
    inits = {i.name: i for i in m.graph.initializer}
    zps = [inits[n.input[2]] for n in m.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(z.data_type == onnx.TensorProto.UINT8 for z in zps)
    per_channel = [n for n in m.graph.node if n.op_type == "DequantizeLinear"
                   and n.input[0] in inits and inits[n.input[1]].dims]
    assert len(per_channel) >= 50  # YuNet-s's 53 Conv weights
    a = FaceDetector(str(YUNET_S), head="yunet", input_size=(640, 480))(wider_image)
    b = FaceDetector(str(out), head="yunet", input_size=(640, 480))(wider_image)
    from conftest import box_iou
    assert len(a) > 10 and abs(len(a) - len(b)) <= max(2, len(a) // 10)
    assert sum(box_iou(box, b.boxes).max() >= 0.7 for box in a.boxes) >= 0.9 * len(a)


def test_onnx_qdq_needs_an_onnx_model(tmp_path):
    from picoface.quant_onnx import quantize_onnx
    src = modelfile.save(tmp_path / "net.pface", small_net())
    with pytest.raises(ValueError, match="expected an ONNX model for ONNX QDQ output.*keeps no ONNX graph"):
        quantize_onnx(src, calib_inputs(1), tmp_path / "out.onnx")
    from picoface.cli import main
    assert main(["quantize", str(src), "--calib", str(tmp_path), "-o", str(tmp_path / "o.onnx")]) == 1
    assert main(["quantize", str(src), "--calib", str(tmp_path), "--format", "onnx", "--budget", "sqnr=3",
                 "-o", str(tmp_path / "o.bin")]) == 1


def tiny_embedder(size=32, seed=5):
    """A float recogniser of random weights: 3 x size x size -> a 16-d embedding."""
    rng = np.random.default_rng(seed)
    f = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)
    tensors = [modelfile.Tensor("x", dtype="float32", shape=[1, 3, size, size])]
    ops = []
    for name, x, y, w, b, act, attrs in [
            ("s1", "x", "a", f(8, 3, 3, 3), f(8), "relu", {"strides": [2, 2]}),
            ("s2", "a", "c", f(8, 8, 3, 3), f(8), "relu", {"strides": [2, 2]}),
            ("fc", "c", "y", f(16, 8, size // 4, size // 4), f(16), None, {"pads": [0, 0, 0, 0]})]:
        t, op = _conv(name, x, y, w, b, act, **attrs)
        tensors += t + [modelfile.Tensor(y, shape=())]
        ops.append(op)
    meta = metadata_for("embed", None, "arcface", [1, 3, size, size], Path("emb.onnx"), "0" * 64)
    return modelfile.encode(meta, tensors, ops, ["x"], ["y"])


def test_recogniser_budget_on_pairs(tmp_path):
    """accuracy / tar_at_far_1e-3 on a balanced subset of CelebA pairs (detect with the
    shipped detector, align, embed): the float side is measured once, the int8 side per
    model, and the report carries both and their difference."""
    need_module("cv2")  # reads the photos
    pairs = need(SHARED / "data/celeba/pairs.tsv")
    calib = sorted(need(SHARED / "data/celeba/images").glob("*.jpg"))[:3]
    from picoface.imageio import read_bgr
    blob, r = quantize_model(tiny_embedder(), [read_bgr(p) for p in calib], eval_data=pairs,
                             eval_limit=40, budget={"accuracy": 100.0, "tar_at_far_1e-3": 100.0},
                             report_accuracy=True)
    ev = r["accuracy"]["eval"]
    assert set(ev["fp32"]) == {"accuracy", "tar_at_far_1e-3"} and ev["limit"] == 40
    for k in ev["fp32"]:
        assert 0 <= ev["fp32"][k] <= 100 and ev["delta"][k] == pytest.approx(ev["int8"][k] - ev["fp32"][k])
        assert r["budget"][k]["ok"] and r["budget"][k]["value"] == pytest.approx(-ev["delta"][k], abs=1e-5)
    assert r["accuracy"]["calibration"]["cosine"] > 0.99
    from picoface.quant_report import _pair_subset
    from picoface.eval_verify import read_pairs
    sub = _pair_subset(read_pairs(pairs), 40)
    assert len(sub) == 40 and sum(p.same for p in sub) == 20 and len({p.fold for p in sub}) == 10


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_constant_conv_output(method):
    """A Conv with zero weights outputs its bias whatever the input: a constant, non-zero
    activation, and everything after it is the same for every input. Every method gives it
    a usable range (covering 0 and the constant), and nothing is NaN. The int8 bias of an
    all-zero weight channel (weight scale 1) has the input's step, so the constant is
    within half of that plus half an output step."""
    g = load_graph(small_net())
    g.tensors["pw.w"] = modelfile.Tensor("pw.w", data=np.zeros_like(np.asarray(g.tensors["pw.w"].data)))
    g.tensors["pw.b"] = modelfile.Tensor("pw.b", data=np.full(13, 0.75, np.float32))
    blob, _ = quantize_model(g.encode(), calib_inputs(2), method=method)
    q = load_graph(blob)
    s = float(q.tensors["b.q8.scale"].data)
    assert np.isfinite(s) and 0 < s <= 0.75 / 100, s
    x = calib_inputs(1, seed=5)[0]
    got = _core.Engine(q.encode(["b.q8", "y"])).run([x])
    b = dequantize(got[0], s, int(q.tensors["b.q8.zero_point"].data))
    x_scale = float(q.tensors["a.q8.scale"].data)
    assert np.ptp(b) == 0 and abs(b.flat[0] - 0.75) <= x_scale / 2 + s / 2 + 1e-7, (b.flat[0], x_scale, s)
    ref = _core.Engine(g.encode()).run([x])[0]
    assert np.isfinite(got[1]).all()
    if method != "entropy":  # which clips the output's 150 distinct values, as designed
        assert np.abs(got[1] - ref).max() < 0.05 * np.abs(ref).max()


def test_detector_report_on_val416():
    """The shipped detector's report on a few WIDER-val416 images: AP of both models, and an
    AP budget checked against the difference."""
    need_module("cv2")  # reads the images
    val = need(SHARED / "data/wider/val416")
    calib = need(SHARED / "data/wider/test183/images")
    from picoface import weights
    _, r = quantize_model(weights.DEFAULT_DETECTOR, calib, limit=4, eval_data=val,
                          eval_limit=12, budget={"ap_hard": 5.0}, report_accuracy=True, report_limit=2)
    ev = r["accuracy"]["eval"]
    assert set(ev["fp32"]) == {"ap_easy", "ap_medium", "ap_hard"} and ev["fp32"]["ap_easy"] > 20
    assert all(abs(d) < 5.0 for d in ev["delta"].values()), ev
    assert r["budget"]["ap_hard"]["value"] == pytest.approx(-ev["delta"]["ap_hard"], abs=1e-5)
    assert set(r["accuracy"]["calibration"]["sqnr_db"]) == set(load_graph(
        weights.path(weights.DEFAULT_DETECTOR).read_bytes()).outputs)


def test_accuracy_report_function_matches_the_cli_report(tmp_path):
    from picoface.quant_report import accuracy_report, accuracy_table
    blob, r = quantize_model(outlier_net(), calib_inputs(3), keep_float=["b"], report_accuracy=True)
    rep = accuracy_report(outlier_net(), blob, calib_inputs(3))
    assert rep == r["accuracy"]
    text = accuracy_table(rep)
    assert "4 of 5 Convs int8, float: b" in text and f"{rep['calibration']['sqnr_db_min']:.1f} dB" in text


def test_recogniser_calibrates_on_aligned_faces():
    """A photo goes through the shipped detector and alignment; an image of the input size
    is taken as an aligned crop."""
    need_module("cv2")  # reads the photos
    from picoface.embedder import FaceEmbedder
    from picoface.imageio import read_bgr
    from picoface.quantize import calibration_inputs
    from picoface.recognize import Recognizer
    from picoface import FaceDetector
    photo = read_bgr(sorted(need(SHARED / "data/celeba/images").glob("*.jpg"))[0])
    crop = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    net = tiny_embedder()
    got = calibration_inputs(net, [photo, crop])
    emb = FaceEmbedder(net)
    want = Recognizer(FaceDetector(), emb).face_crop(photo)
    box = _core.letterbox(32, 32, 32, 32, "none")
    for x, c in zip(got, [want, crop]):
        ref = _core.preprocess(c, box, "bgr", "rgb", [127.5] * 3, [127.5] * 3, "nchw", "float32", 1.0, 0,
                               "bilinear", [0.0, 0.0, 0.0])[None]
        np.testing.assert_array_equal(x, ref)


def test_onnx_qdq_sface_int8bq(tmp_path):
    """OpenCV zoo's SFace keeps block-quantised weights behind DequantizeLinear, which
    onnxruntime rejects: they are folded to float before quantize_static."""
    need_module("onnxruntime")
    need_module("onnx")
    need_module("cv2")  # calibrates on photos
    from conftest import SFACE
    from picoface.quant_onnx import quantize_onnx
    rep = quantize_onnx(need(SFACE), need(SHARED / "data/celeba/images"), tmp_path / "sface_qdq.onnx",
                        task="embed", preset="sface", limit=4, check_limit=4)
    assert rep["check"]["cosine"] > 0.97, rep["check"]
