"""The ONNX importer's passes: each on a tiny hand-built graph, and all of them on every real
model in ../shared, where the optimised graph must compute what the original computes.

The native engine is not needed: ``to_onnx`` writes the optimised graph back as ONNX (fused
Conv activations expanded into Conv + activation again) and onnxruntime runs both models on
the same input. Tolerance on every output: max |optimised - original| <= 1e-4 * max(1,
max |original|); folding a BatchNorm into the weights changes the rounding, not the function.
"""

import numpy as np
import pytest

from conftest import FULLRES12, SHARED, need, need_module

onnx = need_module("onnx")
ort = need_module("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from picoface import importer, modelfile  # noqa: E402
from picoface.convert import encode_imported  # noqa: E402

RTOL = 1e-4
MODELS = SHARED / "models"

# ---------------------------------------------------------------------------------------------
# Optimised graph -> ONNX, and running models in onnxruntime

_EXPAND = {"relu": "Relu", "leaky_relu": "LeakyRelu", "sigmoid": "Sigmoid",
           "hard_sigmoid": "HardSigmoid", "hard_swish": "HardSwish", "tanh": "Tanh",
           "clip": "Clip", "prelu": "PRelu"}


def _activation_node(conv, pre, init):
    """The ONNX node computing a fused Conv's activation on ``pre`` (the Conv without it)."""
    kind = conv.attrs["activation"]
    out = conv.outputs[0]
    alpha, beta = conv.attrs.get("activation_alpha"), conv.attrs.get("activation_beta")
    if kind == "leaky_relu":
        return helper.make_node("LeakyRelu", [pre], [out], alpha=alpha)
    if kind == "hard_sigmoid":
        return helper.make_node("HardSigmoid", [pre], [out], alpha=alpha, beta=beta)
    if kind == "clip":
        lo, hi = f"{out}.clip_min", f"{out}.clip_max"
        init += [numpy_helper.from_array(np.array(alpha, np.float32), lo),
                 numpy_helper.from_array(np.array(beta, np.float32), hi)]
        return helper.make_node("Clip", [pre, lo, hi], [out])
    if kind == "prelu":
        slope = f"{out}.slope"
        init.append(numpy_helper.from_array(
            conv.attrs["_slope"].reshape(-1, 1, 1), slope))
        return helper.make_node("PRelu", [pre, slope], [out])
    return helper.make_node(_EXPAND[kind], [pre], [out])


def to_onnx(graph):
    """An ONNX model computing what the optimised ``graph`` computes: constants as
    initializers, each fused Conv activation as a Conv followed by the activation node."""
    from picoface.importer.graph import Node, node_to_onnx

    init = [numpy_helper.from_array(np.asarray(a), n) for n, a in graph.constants.items()]
    nodes = []
    for node in graph.nodes:
        if node.type == "Conv" and "activation" in node.attrs:
            assert node.attrs["activation"] in _EXPAND, node.attrs
            attrs = {k: v for k, v in node.attrs.items() if not k.startswith("activation")}
            pre = node.outputs[0] + ".pre_activation"
            nodes.append(node_to_onnx(Node("Conv", node.inputs[:3], [pre], attrs, node.name)))
            if node.attrs["activation"] == "prelu":
                assert len(node.inputs) == 4, "prelu needs its slope as the 4th input"
                node = Node(node.type, node.inputs, node.outputs,
                            dict(node.attrs, _slope=graph.constants[node.inputs[3]]))
            nodes.append(_activation_node(node, pre, init))
        else:
            nodes.append(node_to_onnx(node))

    def info(name, with_shape):
        v = graph.values.get(name)
        dtype = helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype if v else "float32"))
        shape = [d if d >= 0 else None for d in v.shape] if with_shape and v and v.shape is not None else None
        return helper.make_tensor_value_info(name, dtype, shape)

    g = helper.make_graph(nodes, "optimised", [info(i, True) for i in graph.inputs],
                          [info(o, False) for o in graph.outputs], init)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", graph.opset)])
    model.ir_version = 9
    return model


def run_ort(model, feeds):
    opts = ort.SessionOptions()
    # The reference is the graph as written, not onnxruntime's own fusions of it.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    blob = model if isinstance(model, bytes) else model.SerializeToString()
    sess = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def assert_same_function(original: bytes, graph, feeds):
    ref = run_ort(original, feeds)
    got = run_ort(to_onnx(graph), {k: v for k, v in feeds.items() if k in graph.inputs})
    assert list(got) == list(ref), "outputs differ in names or order"
    worst = {}
    for name, r in ref.items():
        assert got[name].shape == r.shape and got[name].dtype == r.dtype, name
        diff = float(np.max(np.abs(got[name].astype(np.float64) - r))) if r.size else 0.0
        limit = RTOL * max(1.0, float(np.max(np.abs(r))) if r.size else 0.0)
        assert diff <= limit, f"output {name!r}: max abs difference {diff:.3g} > {limit:.3g}"
        worst[name] = diff
    return worst


# ---------------------------------------------------------------------------------------------
# Tiny graphs


def _model(nodes, inputs, outputs, inits=(), opset=18):
    g = helper.make_graph(nodes, "unit", inputs, outputs,
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    return m.SerializeToString()


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _conv_model(rng, followers, *, cin=5, cout=13, bias=True, extra_outputs=(), hw=(9, 11),
                extra_inits=()):
    """x (1, cin, H, W) -> Conv 3x3 -> ``followers`` (nodes reading "c")."""
    inits = [("w", rng.normal(size=(cout, cin, 3, 3)).astype(np.float32))]
    if bias:
        inits.append(("b", rng.normal(size=cout).astype(np.float32)))
    conv = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c"], pads=[1, 1, 1, 1])
    outs = [_vi("y", None)] + [_vi(o, None) for o in extra_outputs]
    return _model([conv] + followers, [_vi("x", [1, cin, *hw])], outs, inits + list(extra_inits))


def _feeds(rng, shape=(1, 5, 9, 11)):
    return {"x": rng.normal(size=shape).astype(np.float32) * 2}


def _bn_inits(rng, c, prefix=""):
    return [(prefix + "gamma", rng.uniform(0.5, 2, c).astype(np.float32)),
            (prefix + "beta", rng.normal(size=c).astype(np.float32)),
            (prefix + "mean", rng.normal(size=c).astype(np.float32)),
            (prefix + "var", rng.uniform(0.1, 3, c).astype(np.float32))]


@pytest.mark.parametrize("bias", [True, False])
def test_batchnorm_folds_into_conv(rng, bias):
    bn = helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], epsilon=1e-3)
    src = _conv_model(rng, [bn], bias=bias, extra_inits=_bn_inits(rng, 13))
    graph = importer.import_onnx(src).graph
    assert [n.type for n in graph.nodes] == ["Conv"]
    assert graph.nodes[0].outputs == ["y"] and len(graph.nodes[0].inputs) == 3
    assert set(graph.constants) == set(graph.nodes[0].inputs[1:])  # the BN statistics are gone
    assert_same_function(src, graph, _feeds(rng))


def test_batchnorm_stays_without_a_conv_or_with_two_readers(rng):
    inits = _bn_inits(rng, 13)
    bn = helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"])
    relu = helper.make_node("Relu", ["c"], ["z"])
    src = _conv_model(rng, [bn, relu], extra_outputs=["z"], extra_inits=inits)
    graph = importer.import_onnx(src).graph
    assert [n.type for n in graph.nodes] == ["Conv", "BatchNormalization", "Relu"]
    assert "activation" not in graph.nodes[0].attrs
    assert_same_function(src, graph, _feeds(rng))

    alone = _model([helper.make_node("BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["y"])],
                   [_vi("x", [1, 13, 4, 5])], [_vi("y", None)], inits)
    graph = importer.import_onnx(alone).graph
    assert [n.type for n in graph.nodes] == ["BatchNormalization"]
    assert_same_function(alone, graph, _feeds(rng, (1, 13, 4, 5)))


def _scalar(name, v):
    return (name, np.array(v, np.float32))


# test name: (fused activation, the node after the Conv, its constants, expected attributes)
ACTIVATIONS = {
    "relu": ("relu", lambda: helper.make_node("Relu", ["c"], ["y"]), [], {}),
    "leaky_relu": ("leaky_relu", lambda: helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.3), [],
                   {"activation_alpha": 0.3}),
    "leaky_relu_default": ("leaky_relu", lambda: helper.make_node("LeakyRelu", ["c"], ["y"]), [],
                           {"activation_alpha": 0.01}),
    "sigmoid": ("sigmoid", lambda: helper.make_node("Sigmoid", ["c"], ["y"]), [], {}),
    "hard_sigmoid": ("hard_sigmoid", lambda: helper.make_node("HardSigmoid", ["c"], ["y"], alpha=0.3, beta=0.4), [],
                     {"activation_alpha": 0.3, "activation_beta": 0.4}),
    "hard_swish": ("hard_swish", lambda: helper.make_node("HardSwish", ["c"], ["y"]), [], {}),
    "tanh": ("tanh", lambda: helper.make_node("Tanh", ["c"], ["y"]), [], {}),
    "clip": ("clip", lambda: helper.make_node("Clip", ["c", "lo", "hi"], ["y"]),
             [_scalar("lo", -1.5), _scalar("hi", 2.5)], {"activation_alpha": -1.5, "activation_beta": 2.5}),
    "clip_max_only": ("clip", lambda: helper.make_node("Clip", ["c", "", "hi"], ["y"]), [_scalar("hi", 6.0)],
                      {"activation_beta": 6.0}),
    "prelu_per_channel": ("prelu", lambda: helper.make_node("PRelu", ["c", "slope"], ["y"]),
                          [("slope", np.linspace(-0.5, 0.7, 13, dtype=np.float32).reshape(13, 1, 1))], {}),
    "prelu_nchw": ("prelu", lambda: helper.make_node("PRelu", ["c", "slope"], ["y"]),
                   [("slope", np.linspace(0.1, 0.3, 13, dtype=np.float32).reshape(1, 13, 1, 1))], {}),
    "prelu_scalar": ("prelu", lambda: helper.make_node("PRelu", ["c", "slope"], ["y"]),
                     [("slope", np.array([0.25], np.float32))], {}),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_fuses_into_conv(rng, name):
    kind, make, inits, attrs = ACTIVATIONS[name]
    src = _conv_model(rng, [make()], extra_inits=inits)
    graph = importer.import_onnx(src).graph
    assert [n.type for n in graph.nodes] == ["Conv"], name
    conv = graph.nodes[0]
    assert conv.attrs["activation"] == kind and conv.outputs == ["y"]
    for k, v in attrs.items():
        assert conv.attrs[k] == pytest.approx(v)
    if kind == "prelu":
        slope = graph.constants[conv.inputs[3]]
        assert slope.shape == (13,) and slope.dtype == np.float32
    assert_same_function(src, graph, _feeds(rng))


def test_prelu_fuses_into_conv_without_bias(rng):
    _, make, inits, _ = ACTIVATIONS["prelu_per_channel"]
    src = _conv_model(rng, [make()], bias=False, extra_inits=inits)
    graph = importer.import_onnx(src).graph
    (conv,) = graph.nodes
    assert conv.inputs[2] == "" and conv.attrs["activation"] == "prelu"
    assert_same_function(src, graph, _feeds(rng))


def test_prelu_broadcasting_along_width_is_not_per_channel(rng):
    # Slope of shape (C,) broadcasts against NCHW's last axis (W), not against C.
    slope = ("slope", np.linspace(-1, 1, 11, dtype=np.float32))
    src = _conv_model(rng, [helper.make_node("PRelu", ["c", "slope"], ["y"])], cout=11, hw=(7, 11),
                      extra_inits=[slope])
    graph = importer.import_onnx(src).graph
    assert [n.type for n in graph.nodes] == ["Conv", "PRelu"]
    assert_same_function(src, graph, _feeds(rng, (1, 5, 7, 11)))


def test_clip_with_computed_bounds_is_not_fused(rng):
    clip = helper.make_node("Clip", ["c", "lo"], ["y"])
    src = _model([helper.make_node("Conv", ["x", "w"], ["c"]), clip],
                 [_vi("x", [1, 2, 4, 4]), _vi("lo", [])], [_vi("y", None)],
                 [("w", rng.normal(size=(3, 2, 1, 1)).astype(np.float32))])
    graph = importer.import_onnx(src).graph
    assert [n.type for n in graph.nodes] == ["Conv", "Clip"]


def test_no_fusion_when_conv_output_has_two_readers(rng):
    src = _conv_model(rng, [helper.make_node("Relu", ["c"], ["y"]), helper.make_node("Sigmoid", ["c"], ["z"])],
                      extra_outputs=["z"])
    graph = importer.import_onnx(src).graph
    assert [n.type for n in graph.nodes] == ["Conv", "Relu", "Sigmoid"]
    assert "activation" not in graph.nodes[0].attrs
    assert_same_function(src, graph, _feeds(rng))


def test_no_fusion_when_conv_output_is_a_graph_output(rng):
    src = _conv_model(rng, [helper.make_node("Relu", ["c"], ["y"])], extra_outputs=["c"])
    graph = importer.import_onnx(src).graph
    assert [n.type for n in graph.nodes] == ["Conv", "Relu"] and graph.outputs == ["y", "c"]
    assert_same_function(src, graph, _feeds(rng))


def test_batchnorm_then_activation_both_fold(rng):
    bn = helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"])
    src = _conv_model(rng, [bn, helper.make_node("Relu", ["n"], ["y"])], extra_inits=_bn_inits(rng, 13))
    graph = importer.import_onnx(src).graph
    assert [(n.type, n.attrs.get("activation")) for n in graph.nodes] == [("Conv", "relu")]
    assert_same_function(src, graph, _feeds(rng))


def _dequantized_conv(rng, q, scale, zp, **attrs):
    dq = helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], **attrs)
    shape = helper.make_node("Reshape", ["wd", "wshape"], ["w"])
    conv = helper.make_node("Conv", ["x", "w"], ["y"])
    inits = [("wq", q), ("ws", scale), ("wz", zp), ("wshape", np.array([7, 3, 3, 3], np.int64))]
    return _model([dq, shape, conv], [_vi("x", [1, 3, 8, 8])], [_vi("y", None)], inits, opset=21)


def test_dequantize_per_axis_folds_to_fp32(rng):
    q = rng.integers(-128, 128, (7, 27), dtype=np.int8)
    scale = rng.uniform(0.001, 0.05, 7).astype(np.float32)
    zp = rng.integers(-5, 6, 7).astype(np.int8)
    src = _dequantized_conv(rng, q, scale, zp, axis=0)
    graph = importer.import_onnx(src).graph
    (conv,) = graph.nodes
    assert conv.type == "Conv" and set(graph.constants) == {conv.inputs[1]}
    w = graph.constants[conv.inputs[1]]
    expect = ((q.astype(np.float32) - zp[:, None]) * scale[:, None]).reshape(7, 3, 3, 3)
    assert w.dtype == np.float32 and w.shape == (7, 3, 3, 3)
    np.testing.assert_array_equal(w, expect)
    assert_same_function(src, graph, _feeds(rng, (1, 3, 8, 8)))


def test_dequantize_blocked_folds_to_fp32(rng):
    # OpenCV zoo int8bq: scales per block of 9 along axis 1 (27 = 3 blocks), as in YuNet/SFace.
    q = rng.integers(-128, 128, (7, 27), dtype=np.int8)
    scale = rng.uniform(0.001, 0.05, (7, 3)).astype(np.float32)
    zp = rng.integers(-5, 6, (7, 3)).astype(np.int8)
    src = _dequantized_conv(rng, q, scale, zp, axis=1, block_size=9)
    graph = importer.import_onnx(src).graph
    (conv,) = graph.nodes
    w = graph.constants[conv.inputs[1]]
    expect = ((q.astype(np.float32) - np.repeat(zp, 9, axis=1)) * np.repeat(scale, 9, axis=1))
    np.testing.assert_array_equal(w, expect.reshape(7, 3, 3, 3))
    assert_same_function(src, graph, _feeds(rng, (1, 3, 8, 8)))


def _shape_reshape_model(dims):
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    inits = [("zero", np.array(0, np.int64)), ("zero1", np.array([0], np.int64)),
             ("minus1", np.array([-1], np.int64))]
    return _model(nodes, [_vi("x", dims)], [_vi("y", None)], inits)


def test_shape_arithmetic_folds_for_static_shapes_only(rng):
    static = _shape_reshape_model([2, 3, 4, 5])
    graph = importer.import_onnx(static).graph
    assert [n.type for n in graph.nodes] == ["Reshape"]
    np.testing.assert_array_equal(graph.constants[graph.nodes[0].inputs[1]], [2, -1])
    assert_same_function(static, graph, _feeds(rng, (2, 3, 4, 5)))

    dynamic = _shape_reshape_model(["n", 3, 4, 5])
    graph = importer.import_onnx(dynamic).graph
    assert [n.type for n in graph.nodes] == ["Shape", "Gather", "Unsqueeze", "Concat", "Reshape"]
    assert graph.values["x"].shape == (-1, 3, 4, 5)
    assert_same_function(dynamic, graph, _feeds(rng, (3, 3, 4, 5)))


def test_folding_does_not_materialise_large_tensors(rng):
    # ConstantOfShape/Expand of a small description stay for the engine: the file stays small.
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["z"],
                              value=numpy_helper.from_array(np.array([0.5], np.float32))),
             helper.make_node("Add", ["x", "z"], ["y"])]
    src = _model(nodes, [_vi("x", [1, 64, 64, 64])], [_vi("y", None)],
                 [("shape", np.array([1, 64, 64, 64], np.int64))])
    graph = importer.import_onnx(src).graph
    assert [n.type for n in graph.nodes] == ["ConstantOfShape", "Add"]
    assert_same_function(src, graph, _feeds(rng, (1, 64, 64, 64)))


def test_shapes_are_recorded(rng):
    src = _conv_model(rng, [helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2])])
    graph = importer.import_onnx(src).graph
    assert graph.values["c"].shape == (1, 13, 9, 11) and graph.values["y"].shape == (1, 13, 4, 5)


def test_dead_nodes_and_constants_are_removed(rng):
    nodes = [helper.make_node("Relu", ["x"], ["y"]),
             helper.make_node("Mul", ["x", "unused_k"], ["dead1"]),
             helper.make_node("Sigmoid", ["dead1"], ["dead2"]),
             helper.make_node("Add", ["dead2", "x2"], ["dead3"])]
    src = _model(nodes, [_vi("x", [1, 4]), _vi("x2", [1, 4])], [_vi("y", None)],
                 [("unused_k", np.ones(4, np.float32))])
    imported = importer.import_onnx(src)
    graph = imported.graph
    assert [n.type for n in graph.nodes] == ["Relu"] and graph.constants == {}
    assert graph.inputs == ["x"]
    assert set(graph.values) <= {"x", "y"}
    dead = next(s for s in imported.stats if s.name == "remove dead nodes")
    assert (dead.ops_before, dead.ops_after) == (4, 1)


def test_repeated_weights_are_stored_once(rng):
    # One block applied twice (EXTD's reused backbone): two Conv + BatchNorm pairs with equal
    # weights export as two copies; after BatchNorm folding they are equal again and merge.
    # A constant of the same bytes but another shape or dtype stays separate.
    w = rng.normal(size=(5, 5, 3, 3)).astype(np.float32)
    bn = _bn_inits(rng, 5)
    inits = [("w1", w), ("w2", w.copy()), ("w3", w.reshape(5, 5, 9, 1).copy())]
    inits += bn + [(f"{n}_2", a.copy()) for n, a in bn]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["b1"]),
             helper.make_node("Conv", ["b1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c2", "gamma_2", "beta_2", "mean_2", "var_2"], ["b2"]),
             helper.make_node("Conv", ["b2", "w3"], ["y"], pads=[4, 0, 4, 0])]
    src = _model(nodes, [_vi("x", [1, 5, 9, 11])], [_vi("y", None)], inits)
    imported = importer.import_onnx(src)
    graph = imported.graph
    convs = [n for n in graph.nodes if n.type == "Conv"]
    assert len(convs) == 3
    assert convs[0].inputs[1:] == convs[1].inputs[1:], "the two folded blocks share their weights"
    assert convs[2].inputs[1] not in convs[0].inputs
    assert len(graph.constants) == 3  # folded weight + folded bias + the reshaped copy
    assert_same_function(src, graph, _feeds(rng, (1, 5, 9, 11)))


def test_identity_and_dropout_are_removed(rng):
    nodes = [helper.make_node("Identity", ["x"], ["a"]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Dropout", ["b", "ratio"], ["c"]),
             helper.make_node("Sigmoid", ["c"], ["d"]),
             helper.make_node("Identity", ["d"], ["y"])]  # a graph output keeps its name
    src = _model(nodes, [_vi("x", [2, 3])], [_vi("y", None)], [("ratio", np.array(0.5, np.float32))])
    graph = importer.import_onnx(src).graph
    assert [(n.type, n.inputs, n.outputs) for n in graph.nodes] == [
        ("Relu", ["x"], ["b"]), ("Sigmoid", ["b"], ["y"])]
    assert_same_function(src, graph, _feeds(rng, (2, 3)))


def test_dropout_stays_when_its_mask_is_read_or_it_trains(rng):
    masked = _model([helper.make_node("Dropout", ["x"], ["y", "mask"])], [_vi("x", [2, 3])],
                    [_vi("y", None), _vi("mask", None, TensorProto.BOOL)])
    assert [n.type for n in importer.import_onnx(masked).graph.nodes] == ["Dropout"]
    training = _model([helper.make_node("Dropout", ["x", "", "train"], ["y"])], [_vi("x", [2, 3])],
                      [_vi("y", None)], [("train", np.array(True))])
    assert [n.type for n in importer.import_onnx(training).graph.nodes] == ["Dropout"]


def test_identity_of_an_input_as_output_stays(rng):
    src = _model([helper.make_node("Identity", ["x"], ["y"])], [_vi("x", [2, 3])], [_vi("y", None)])
    graph = importer.import_onnx(src).graph
    assert [n.type for n in graph.nodes] == ["Identity"]


def test_inputs_nothing_reads_are_dropped(rng):
    # SFace lists its weights as graph inputs besides the ones the graph really uses.
    src = _model([helper.make_node("Relu", ["x"], ["y"])],
                 [_vi("x", [1, 3, 4, 4]), _vi("conv_1_weight", [8, 3, 3, 3])], [_vi("y", None)])
    graph = importer.import_onnx(src).graph
    assert graph.inputs == ["x"]


def test_unsupported_ops_are_listed(rng):
    nodes = [helper.make_node("Sin", ["x"], ["a"]), helper.make_node("Floor", ["a"], ["b"]),
             helper.make_node("Sin", ["b"], ["y"])]
    src = _model(nodes, [_vi("x", [1, 3, 32, 32])], [_vi("y", None)])
    imported = importer.import_onnx(src)
    assert importer.unsupported_ops(imported.graph) == ["Floor", "Sin"]
    with pytest.raises(ValueError, match=r"does not support these ops: Floor, Sin \(the onnxruntime"):
        encode_imported(imported, task="detect", head="yunet")


def test_ops_outside_the_engine_set_are_fine_when_they_fold(rng):
    # Range is not an engine op, but on constants it is evaluated at import.
    nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["r"]),
             helper.make_node("Add", ["x", "r"], ["y"])]
    inits = [("start", np.array(0, np.float32)), ("limit", np.array(32, np.float32)),
             ("delta", np.array(1, np.float32))]
    src = _model(nodes, [_vi("x", [1, 3, 32, 32])], [_vi("y", None)], inits)
    imported = importer.import_onnx(src)
    assert [n.type for n in imported.graph.nodes] == ["Add"]
    s = modelfile.summary(encode_imported(imported, task="detect", head="yunet"))
    assert [o["type"] for o in s["ops"]] == ["Add"]


def test_cli_convert_reports_op_counts_per_pass(tmp_path):
    import json
    import subprocess
    import sys
    path = need(MODELS / "opencv_zoo/face_recognition_sface_2021dec_int8bq.onnx")
    r = subprocess.run([sys.executable, "-m", "picoface", "convert", str(path), "--task", "embed",
                        "--preset", "sface", "-o", str(tmp_path / "s.pface"), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    passes = {p["name"]: (p["ops_before"], p["ops_after"]) for p in out["passes"]}
    assert passes["fold constants"][1] < passes["fold constants"][0]
    assert out["passes"][0]["ops_before"] == 145 and out["ops"] == out["passes"][-1]["ops_after"] == 33


def test_old_opset_is_upgraded_to_18(rng):
    # Opset 9 Softmax flattens to 2-D from its axis; opset 18 does not. The upgrade keeps the
    # function and leaves one meaning per op name.
    src = _model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [_vi("x", [2, 3, 4])],
                 [_vi("y", None)], opset=9)
    graph = importer.import_onnx(src).graph
    assert graph.opset == 18
    assert_same_function(src, graph, _feeds(rng, (2, 3, 4)))


# ---------------------------------------------------------------------------------------------
# Real models


def _image(index, width, height):
    cv2 = need_module("cv2")
    paths = sorted(need(FULLRES12 / "images").glob("*.jpg"))
    img = cv2.imread(str(paths[index % len(paths)]))
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


# path, (batch, height, width) fed, pixel normalisation (mean, std), metadata for the file or None
REAL_MODELS = {
    "yunet_s_dynamic": ("ShiqiYu__libfacedetection.train/onnx/yunet_s_dynamic.onnx", (1, 256, 320),
                        (0, 1), dict(task="detect", head="yunet")),
    "yunet_s_320": ("ShiqiYu__libfacedetection.train/onnx/yunet_s_320_320.onnx", None, (0, 1),
                    dict(task="detect", head="yunet")),
    "yunet_s_640": ("ShiqiYu__libfacedetection.train/onnx/yunet_s_640_640.onnx", None, (0, 1),
                    dict(task="detect", head="yunet")),
    "yunet_n_dynamic": ("ShiqiYu__libfacedetection.train/onnx/yunet_n_dynamic.onnx", (1, 256, 320),
                        (0, 1), dict(task="detect", head="yunet")),
    "yunet_n_320": ("ShiqiYu__libfacedetection.train/onnx/yunet_n_320_320.onnx", None, (0, 1),
                    dict(task="detect", head="yunet")),
    "yunet_n_640": ("ShiqiYu__libfacedetection.train/onnx/yunet_n_640_640.onnx", None, (0, 1),
                    dict(task="detect", head="yunet")),
    "yunet_2023mar_int8bq": ("opencv_zoo/face_detection_yunet_2023mar_int8bq.onnx", None, (0, 1),
                             dict(task="detect", head="yunet")),
    "sface_int8bq": ("opencv_zoo/face_recognition_sface_2021dec_int8bq.onnx", None, (0, 1),
                     dict(task="embed", preset="sface")),
    "scrfd_500m_kps": ("hpc203__scrfd-opencv/weights/scrfd_500m_kps.onnx", None, (127.5, 128),
                       dict(task="detect", head="scrfd")),
    "scrfd_2.5g_kps": ("hpc203__scrfd-opencv/weights/scrfd_2.5g_kps.onnx", None, (127.5, 128),
                       dict(task="detect", head="scrfd")),
    "ultraface_rfb_320": ("Linzaer__Ultra-Light-Fast-Generic-Face-Detector-1MB/models/onnx/version-RFB-320.onnx",
                          None, (127, 128), dict(task="detect", head="ultraface")),
    "ultraface_slim_320": ("Linzaer__Ultra-Light-Fast-Generic-Face-Detector-1MB/models/onnx/version-slim-320.onnx",
                           None, (127, 128), dict(task="detect", head="ultraface")),
    "pfld": ("cunjian__pytorch_face_landmark/onnx/pfld.onnx", (2, 112, 112), (0, 255),
             dict(task="landmarks", preset="pfld")),
}


def _real_feeds(original: bytes, size, norm, first_frame):
    """The image input (WIDER frames from ``first_frame`` on, resized) and zeros for inputs
    the graph never reads."""
    model = onnx.load_from_string(original)
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    batch, height, width = size if size is not None else (dims[0], dims[2], dims[3])
    imgs = [_image(first_frame + k, width, height) for k in range(batch)]
    x = (np.stack(imgs).transpose(0, 3, 1, 2).astype(np.float32) - norm[0]) / norm[1]
    feeds = {inputs[0].name: np.ascontiguousarray(x)}
    for extra in inputs[1:]:
        shape = [d.dim_value for d in extra.type.tensor_type.shape.dim]
        feeds[extra.name] = np.zeros(shape, helper.tensor_dtype_to_np_dtype(extra.type.tensor_type.elem_type))
    return feeds


def _dequantize_in_numpy(original: bytes) -> bytes:
    """The model with every DequantizeLinear of initializers replaced by its value, computed
    here by numpy independently of the importer. onnxruntime 1.32 cannot run YuNet 2023mar as
    published: it reads a bias's single block (64 values, block_size 64, one scale) as
    per-tensor quantisation and then rejects block_size."""
    model = onnx.load_from_string(original)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear":
            kept.append(node)
            continue
        q, scale, zp = (inits[i] for i in node.input)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axis, block = attrs.get("axis", 1) % q.ndim, attrs.get("block_size", 0)
        if block:
            scale, zp = (np.repeat(a, block, axis=axis).take(range(q.shape[axis]), axis=axis)
                         for a in (scale, zp))
        elif scale.ndim == 1 and scale.size > 1:
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        value = (q.astype(np.float32) - zp.astype(np.float32)) * scale
        model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model.SerializeToString()


def _no_missed_optimisation(graph):
    """Nothing left that a pass should have taken."""
    consumers = graph.consumers()
    for node in graph.nodes:
        inputs = [i for i in node.inputs if i]
        if node.type == "Shape":
            shape = graph.values[inputs[0]].shape
            assert shape is None or min(shape) < 0, f"Shape of static {shape} not folded"
        else:
            assert not all(i in graph.constants for i in inputs), f"{node.type} {node.name} not folded"
        assert node.type not in ("Identity", "Dropout", "DequantizeLinear"), node.type
        if node.type == "Conv" and "activation" not in node.attrs:
            reader = graph.sole_consumer(node.outputs[0], consumers)
            assert reader is None or reader.type not in (
                "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish",
                "Tanh"), f"{node.name} -> {reader.type} not fused"


# ONNX nodes in the file -> ops after the passes: a regression gate on the passes' reach.
OP_COUNTS = {"yunet_s_dynamic": (154, 139), "yunet_s_320": (106, 91), "yunet_s_640": (106, 91),
             "yunet_n_dynamic": (163, 145), "yunet_n_320": (115, 97), "yunet_n_640": (115, 97),
             "yunet_2023mar_int8bq": (214, 91), "sface_int8bq": (145, 33),
             "scrfd_500m_kps": (191, 87), "scrfd_2.5g_kps": (202, 117),
             "ultraface_rfb_320": (242, 94), "ultraface_slim_320": (217, 81), "pfld": (149, 74)}


@pytest.mark.parametrize("key", sorted(REAL_MODELS))
def test_real_model_optimised_computes_the_same(key):
    rel, size, norm, meta = REAL_MODELS[key]
    path = need(MODELS / rel)
    original = path.read_bytes()
    imported = importer.import_onnx(path)
    graph = imported.graph
    assert importer.unsupported_ops(graph) == [] and len(graph.inputs) == 1
    assert (imported.stats[0].ops_before, graph.op_count()) == OP_COUNTS[key]
    _no_missed_optimisation(graph)
    reference = _dequantize_in_numpy(original) if key == "yunet_2023mar_int8bq" else original
    for first_frame in (0, 5):
        assert_same_function(reference, graph, _real_feeds(original, size, norm, first_frame))
    if meta is not None:  # the C++ loader accepts the optimised graph
        s = modelfile.summary(encode_imported(imported, source=path.name, **meta))
        assert [o["type"] for o in s["ops"]] == [n.type for n in graph.nodes]


def test_int8bq_models_are_dequantized_at_import():
    for rel in ("opencv_zoo/face_detection_yunet_2023mar_int8bq.onnx",
                "opencv_zoo/face_recognition_sface_2021dec_int8bq.onnx"):
        graph = importer.import_onnx(need(MODELS / rel)).graph
        assert "DequantizeLinear" not in graph.op_types()
        for node in graph.nodes:
            if node.type in ("Conv", "Gemm"):
                assert graph.constants[node.inputs[1]].dtype == np.float32
        assert all(a.dtype != np.int8 for a in graph.constants.values())


def test_sface_keeps_only_its_image_input_and_fuses_every_prelu():
    graph = importer.import_onnx(need(MODELS / "opencv_zoo/face_recognition_sface_2021dec_int8bq.onnx")).graph
    assert graph.inputs == ["data"] and graph.values["data"].shape == (1, 3, 112, 112)
    convs = [n for n in graph.nodes if n.type == "Conv"]
    assert len(convs) == 27 and all(n.attrs.get("activation") == "prelu" for n in convs)
