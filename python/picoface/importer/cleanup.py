"""Graph clean-up: inputs that are not the image, pass-through nodes, repeated constants
and everything no output depends on."""

import hashlib

from picoface.importer.graph import Graph


def sanitise_inputs(graph: Graph) -> None:
    """Drops graph inputs no node reads (SFace lists every weight as an input besides its
    initializer-fed copy), so only real data inputs remain."""
    read = {i for n in graph.nodes for i in n.inputs} | set(graph.outputs)
    graph.inputs = [i for i in graph.inputs if i in read]


def _passthrough(graph, node) -> bool:
    if node.type == "Identity":
        return True
    if node.type != "Dropout":
        return False
    # Dropout is the identity at inference unless training_mode is set; the mask must be unused.
    training = node.inputs[2] if len(node.inputs) > 2 else ""
    if training and (training not in graph.constants or bool(graph.constants[training].any())):
        return False
    mask = node.outputs[1] if len(node.outputs) > 1 else ""
    return not mask or (mask not in graph.outputs and not any(mask in n.inputs for n in graph.nodes))


def remove_passthrough(graph: Graph) -> None:
    """Removes Identity and inference-mode Dropout: their readers read the input directly."""
    for node in [n for n in graph.nodes if _passthrough(graph, n)]:
        src, dst = node.inputs[0], node.outputs[0]
        if dst not in graph.outputs:
            graph.nodes.remove(node)
            graph.rename_uses(dst, src)
            graph.values.pop(dst, None)
            continue
        producer = graph.producers().get(src)
        if producer is None or src in graph.outputs:
            continue  # a graph output that copies an input, a constant or another output stays
        # The output keeps its public name: the producer writes it directly.
        graph.nodes.remove(node)
        producer.outputs = [dst if o == src else o for o in producer.outputs]
        graph.rename_uses(src, dst)
        graph.values.pop(src, None)


def remove_dead(graph: Graph) -> None:
    """Drops nodes no graph output depends on, then the constants, inputs and value records
    nothing left reads."""
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(o in live for o in node.outputs if o):
            kept.append(node)
            live.update(i for i in node.inputs if i)
    graph.nodes = kept[::-1]
    graph.constants = {k: v for k, v in graph.constants.items() if k in live}
    graph.inputs = [i for i in graph.inputs if i in live]
    named = live | set(graph.inputs) | {o for n in graph.nodes for o in n.outputs}
    graph.values = {k: v for k, v in graph.values.items() if k in named}


def merge_duplicate_constants(graph: Graph) -> None:
    """Makes every reader of a constant equal to an earlier one (same dtype, shape and bytes)
    read that one. Networks that reuse a block's weights on several inputs (EXTD runs one
    backbone at every scale) export, and after BatchNorm folding keep, a copy per use; the
    model file then stores each weight once."""
    first = {}
    for name in list(graph.constants):
        value = graph.constants[name]
        key = (value.dtype.str, value.shape, hashlib.sha256(value.tobytes()).digest())
        if key not in first:
            first[key] = name
        elif name not in graph.outputs:
            graph.rename_uses(name, first[key])
            del graph.constants[name]
