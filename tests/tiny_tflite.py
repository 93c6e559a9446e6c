"""A tiny anchor-delta detector ("extd" head: strides 4..128, one anchor per cell, outputs
``scores`` [1, P] and ``boxes`` [1, P, 4]) written twice from the same seeded weights: as a
TFLite flatbuffer (NHWC, dynamic H and W) and as ONNX (NCHW). The TFLite file is built with
the schema classes ai-edge-litert ships (``schema_py_generated``) and ``flatbuffers`` — no
TensorFlow — so the tflite backend can be checked against the native engine at test time.

Per stride s: average-pool s x s -> 1x1 conv to 1 channel -> sigmoid -> flatten (scores);
the same pool -> 1x1 conv to 4 channels -> flatten (box deltas); levels concatenated.
"""

import numpy as np

STRIDES = (4, 8, 16, 32, 64, 128)


def weights(seed: int = 7):
    """Per level: (score weight [1, 3], score bias [1], box weight [4, 3], box bias [4])."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in STRIDES:
        # Input is RGB minus the extd mean: values of tens; scores spread around 0.5.
        out.append((rng.normal(0, 0.03, (1, 3)).astype(np.float32),
                    rng.normal(0.3, 0.5, (1,)).astype(np.float32),
                    rng.normal(0, 0.01, (4, 3)).astype(np.float32),
                    rng.normal(0, 0.2, (4,)).astype(np.float32)))
    return out


def tflite_bytes(seed: int = 7, channels_last: bool = True) -> bytes:
    """The TFLite detector; ``channels_last=False`` declares an NCHW-looking input [1, 3, H, W]
    that is transposed to NHWC inside the graph (as converters keeping PyTorch I/O do)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    ops = s.BuiltinOperator
    codes = [ops.AVERAGE_POOL_2D, ops.CONV_2D, ops.LOGISTIC, ops.RESHAPE, ops.CONCATENATION,
             ops.TRANSPOSE]
    model = s.ModelT()
    model.version = 3
    model.operatorCodes = []
    for c in codes:
        oc = s.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = c, min(c, 127), 1
        model.operatorCodes.append(oc)
    model.buffers = [s.BufferT()]
    sg = s.SubGraphT()
    sg.tensors, sg.operators = [], []

    def tensor(name, shape, dtype=s.TensorType.FLOAT32, data=None, signature=None):
        t = s.TensorT()
        t.name, t.shape, t.type = name, list(shape), dtype
        if signature is not None:
            t.shapeSignature = list(signature)
        t.buffer = 0
        if data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            model.buffers.append(b)
            t.buffer = len(model.buffers) - 1
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def op(code, inputs, outputs, options_type=0, options=None):
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = codes.index(code), inputs, outputs
        if options is not None:
            o.builtinOptionsType, o.builtinOptions = options_type, options
        sg.operators.append(o)

    size = 128
    if channels_last:
        x = tensor("image", (1, size, size, 3), signature=(1, -1, -1, 3))
        sg.inputs = [x]
        nhwc = x
    else:
        x = tensor("image", (1, 3, size, size), signature=(1, 3, -1, -1))
        sg.inputs = [x]
        nhwc = tensor("image_nhwc", (1, size, size, 3), signature=(1, -1, -1, 3))
        perm = tensor("perm", (4,), s.TensorType.INT32, np.array([0, 2, 3, 1], np.int32))
        op(ops.TRANSPOSE, [x, perm], [nhwc])
    flat1 = tensor("shape_scores", (2,), s.TensorType.INT32, np.array([1, -1], np.int32))
    flat4 = tensor("shape_boxes", (3,), s.TensorType.INT32, np.array([1, -1, 4], np.int32))
    scores, boxes = [], []
    for level, (stride, (ws, bs, wb, bb)) in enumerate(zip(STRIDES, weights(seed))):
        n = size // stride
        pool = s.Pool2DOptionsT()
        pool.padding, pool.strideW, pool.strideH = s.Padding.VALID, stride, stride
        pool.filterWidth = pool.filterHeight = stride
        pooled = tensor(f"pool{stride}", (1, n, n, 3), signature=(1, -1, -1, 3))
        op(ops.AVERAGE_POOL_2D, [nhwc], [pooled], s.BuiltinOptions.Pool2DOptions, pool)
        for kind, w, b, ch in (("score", ws, bs, 1), ("box", wb, bb, 4)):
            conv = s.Conv2DOptionsT()
            conv.padding, conv.strideW, conv.strideH = s.Padding.VALID, 1, 1
            conv.dilationWFactor = conv.dilationHFactor = 1
            wt = tensor(f"{kind}_w{stride}", (ch, 1, 1, 3), data=w.reshape(ch, 1, 1, 3))
            bt = tensor(f"{kind}_b{stride}", (ch,), data=b)
            y = tensor(f"{kind}_conv{stride}", (1, n, n, ch), signature=(1, -1, -1, ch))
            op(ops.CONV_2D, [pooled, wt, bt], [y], s.BuiltinOptions.Conv2DOptions, conv)
            if kind == "score":
                p = tensor(f"score_sig{stride}", (1, n, n, 1), signature=(1, -1, -1, 1))
                op(ops.LOGISTIC, [y], [p])
                f = tensor(f"score_flat{stride}", (1, n * n), signature=(1, -1))
                op(ops.RESHAPE, [p, flat1], [f])
                scores.append(f)
            else:
                f = tensor(f"box_flat{stride}", (1, n * n, 4), signature=(1, -1, 4))
                op(ops.RESHAPE, [y, flat4], [f])
                boxes.append(f)
    total = sum((size // st) ** 2 for st in STRIDES)
    outs = []
    for name, parts, shape, sig in (("scores", scores, (1, total), (1, -1)),
                                    ("boxes", boxes, (1, total, 4), (1, -1, 4))):
        cat = s.ConcatenationOptionsT()
        cat.axis = 1
        t = tensor(name, shape, signature=sig)
        op(ops.CONCATENATION, parts, [t], s.BuiltinOptions.ConcatenationOptions, cat)
        outs.append(t)
    sg.outputs = outs
    model.subgraphs = [sg]
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def onnx_bytes(seed: int = 7) -> bytes:
    """The same detector in ONNX (NCHW), for the native engine and onnxruntime."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    scores, boxes = [], []
    inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), "shape_scores"))
    inits.append(numpy_helper.from_array(np.array([1, -1, 4], np.int64), "shape_boxes"))
    for stride, (ws, bs, wb, bb) in zip(STRIDES, weights(seed)):
        nodes.append(helper.make_node("AveragePool", ["image"], [f"pool{stride}"],
                                      kernel_shape=[stride, stride], strides=[stride, stride]))
        for kind, w, b, ch in (("score", ws, bs, 1), ("box", wb, bb, 4)):
            inits.append(numpy_helper.from_array(w.reshape(ch, 3, 1, 1), f"{kind}_w{stride}"))
            inits.append(numpy_helper.from_array(b, f"{kind}_b{stride}"))
            y = f"{kind}_conv{stride}"
            nodes.append(helper.make_node("Conv", [f"pool{stride}", f"{kind}_w{stride}",
                                                   f"{kind}_b{stride}"], [y]))
            if kind == "score":
                nodes.append(helper.make_node("Sigmoid", [y], [f"score_sig{stride}"]))
                y = f"score_sig{stride}"
            nodes.append(helper.make_node("Transpose", [y], [f"{kind}_nhwc{stride}"],
                                          perm=[0, 2, 3, 1]))
            shape = "shape_scores" if kind == "score" else "shape_boxes"
            nodes.append(helper.make_node("Reshape", [f"{kind}_nhwc{stride}", shape],
                                          [f"{kind}_flat{stride}"]))
            (scores if kind == "score" else boxes).append(f"{kind}_flat{stride}")
    nodes.append(helper.make_node("Concat", scores, ["scores"], axis=1))
    nodes.append(helper.make_node("Concat", boxes, ["boxes"], axis=1))
    graph = helper.make_graph(
        nodes, "tiny_extd",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, "p"]),
         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, "p", 4])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()
