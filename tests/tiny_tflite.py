"""A tiny anchor-delta detector ("extd" head: strides 4..128, one anchor per cell, outputs
``scores`` [1, P] and ``boxes`` [1, P, 4]) written twice from the same seeded weights: as a
TFLite flatbuffer (NHWC, dynamic H and W) and as ONNX (NCHW). The TFLite file is built with
the schema classes ai-edge-litert ships (``schema_py_generated``) and ``flatbuffers`` — no
TensorFlow — so the tflite backend can be checked against the native engine at test time.

Per stride s: average-pool s x s -> 1x1 conv to 1 channel -> sigmoid -> flatten (scores);
the same pool -> 1x1 conv to 4 channels -> flatten (box deltas); levels concatenated.
A tiny recogniser (fixed 112x112 input) is written the same way.
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


class _Builder:
    """Tensors, buffers and operators of one TFLite subgraph (schema object API)."""

    CODES = ("AVERAGE_POOL_2D", "CONV_2D", "LOGISTIC", "RESHAPE", "CONCATENATION", "TRANSPOSE")

    def __init__(self):
        from ai_edge_litert import schema_py_generated as s

        self.s = s
        self.model = s.ModelT()
        self.model.version = 3
        self.model.operatorCodes = []
        for name in self.CODES:
            code = getattr(s.BuiltinOperator, name)
            oc = s.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            self.model.operatorCodes.append(oc)
        self.model.buffers = [s.BufferT()]
        self.sg = s.SubGraphT()
        self.sg.tensors, self.sg.operators = [], []

    def tensor(self, name, shape, dtype=None, data=None, signature=None):
        s = self.s
        t = s.TensorT()
        t.name, t.shape = name, list(shape)
        t.type = s.TensorType.FLOAT32 if dtype is None else dtype
        if signature is not None:
            t.shapeSignature = list(signature)
        t.buffer = 0
        if data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self.model.buffers.append(b)
            t.buffer = len(self.model.buffers) - 1
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def const_i32(self, name, values):
        return self.tensor(name, (len(values),), self.s.TensorType.INT32,
                           np.array(values, np.int32))

    def op(self, name, inputs, outputs, options_type=0, options=None):
        o = self.s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.CODES.index(name), inputs, outputs
        if options is not None:
            o.builtinOptionsType, o.builtinOptions = options_type, options
        self.sg.operators.append(o)

    def avg_pool(self, x, k, out):
        pool = self.s.Pool2DOptionsT()
        pool.padding, pool.strideW, pool.strideH = self.s.Padding.VALID, k, k
        pool.filterWidth = pool.filterHeight = k
        self.op("AVERAGE_POOL_2D", [x], [out], self.s.BuiltinOptions.Pool2DOptions, pool)

    def conv1x1(self, x, w, b, out, name):
        """``w`` [O, I] float32, ``b`` [O]."""
        conv = self.s.Conv2DOptionsT()
        conv.padding, conv.strideW, conv.strideH = self.s.Padding.VALID, 1, 1
        conv.dilationWFactor = conv.dilationHFactor = 1
        wt = self.tensor(f"{name}_w", (w.shape[0], 1, 1, w.shape[1]),
                         data=w.reshape(w.shape[0], 1, 1, w.shape[1]))
        bt = self.tensor(f"{name}_b", (w.shape[0],), data=b)
        self.op("CONV_2D", [x, wt, bt], [out], self.s.BuiltinOptions.Conv2DOptions, conv)

    def finish(self, inputs, outputs) -> bytes:
        import flatbuffers

        self.sg.inputs, self.sg.outputs = inputs, outputs
        self.model.subgraphs = [self.sg]
        builder = flatbuffers.Builder(4096)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def tflite_bytes(seed: int = 7, channels_last: bool = True) -> bytes:
    """The TFLite detector; ``channels_last=False`` declares an NCHW-looking input [1, 3, H, W]
    that is transposed to NHWC inside the graph (as converters keeping PyTorch I/O do)."""
    g = _Builder()
    size = 128
    if channels_last:
        x = nhwc = g.tensor("image", (1, size, size, 3), signature=(1, -1, -1, 3))
    else:
        x = g.tensor("image", (1, 3, size, size), signature=(1, 3, -1, -1))
        nhwc = g.tensor("image_nhwc", (1, size, size, 3), signature=(1, -1, -1, 3))
        g.op("TRANSPOSE", [x, g.const_i32("perm", [0, 2, 3, 1])], [nhwc])
    flat1 = g.const_i32("shape_scores", [1, -1])
    flat4 = g.const_i32("shape_boxes", [1, -1, 4])
    scores, boxes = [], []
    for stride, (ws, bs, wb, bb) in zip(STRIDES, weights(seed)):
        n = size // stride
        pooled = g.tensor(f"pool{stride}", (1, n, n, 3), signature=(1, -1, -1, 3))
        g.avg_pool(nhwc, stride, pooled)
        y = g.tensor(f"score_conv{stride}", (1, n, n, 1), signature=(1, -1, -1, 1))
        g.conv1x1(pooled, ws, bs, y, f"score{stride}")
        p = g.tensor(f"score_sig{stride}", (1, n, n, 1), signature=(1, -1, -1, 1))
        g.op("LOGISTIC", [y], [p])
        scores.append(g.tensor(f"score_flat{stride}", (1, n * n), signature=(1, -1)))
        g.op("RESHAPE", [p, flat1], [scores[-1]])
        y = g.tensor(f"box_conv{stride}", (1, n, n, 4), signature=(1, -1, -1, 4))
        g.conv1x1(pooled, wb, bb, y, f"box{stride}")
        boxes.append(g.tensor(f"box_flat{stride}", (1, n * n, 4), signature=(1, -1, 4)))
        g.op("RESHAPE", [y, flat4], [boxes[-1]])
    total = sum((size // st) ** 2 for st in STRIDES)
    outs = []
    for name, parts, shape, sig in (("scores", scores, (1, total), (1, -1)),
                                    ("boxes", boxes, (1, total, 4), (1, -1, 4))):
        cat = g.s.ConcatenationOptionsT()
        cat.axis = 1
        outs.append(g.tensor(name, shape, signature=sig))
        g.op("CONCATENATION", parts, [outs[-1]], g.s.BuiltinOptions.ConcatenationOptions, cat)
    return g.finish([x], outs)


# Tiny recogniser: 112x112 crop -> 16x16 average pools (7x7x3) -> 1x1 conv to 8 channels ->
# flattened NHWC (392 values) as the embedding. Fixed input size, like real recognisers.
EMBED_POOL, EMBED_DIM = 16, 8


def embedder_weights(seed: int = 11):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.05, (EMBED_DIM, 3)).astype(np.float32),
            rng.normal(0, 0.1, (EMBED_DIM,)).astype(np.float32))


def embedder_tflite_bytes(seed: int = 11) -> bytes:
    g = _Builder()
    w, b = embedder_weights(seed)
    n = 112 // EMBED_POOL
    x = g.tensor("crop", (1, 112, 112, 3))
    pooled = g.tensor("pool", (1, n, n, 3))
    g.avg_pool(x, EMBED_POOL, pooled)
    y = g.tensor("conv", (1, n, n, EMBED_DIM))
    g.conv1x1(pooled, w, b, y, "embed")
    out = g.tensor("embedding", (1, n * n * EMBED_DIM))
    g.op("RESHAPE", [y, g.const_i32("shape", [1, n * n * EMBED_DIM])], [out])
    return g.finish([x], [out])


def embedder_onnx_bytes(seed: int = 11) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    w, b = embedder_weights(seed)
    nodes = [
        helper.make_node("AveragePool", ["crop"], ["pool"], kernel_shape=[EMBED_POOL] * 2,
                         strides=[EMBED_POOL] * 2),
        helper.make_node("Conv", ["pool", "w", "b"], ["conv"]),
        helper.make_node("Transpose", ["conv"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nhwc", "shape"], ["embedding"]),
    ]
    inits = [numpy_helper.from_array(w.reshape(EMBED_DIM, 3, 1, 1), "w"),
             numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shape")]
    graph = helper.make_graph(
        nodes, "tiny_embed", [helper.make_tensor_value_info("crop", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, "d"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


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
