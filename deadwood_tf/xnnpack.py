"""What LiteRT's default XNNPack delegate refuses, and the fixes that make it take a file.

What XNNPack accepts (measured with LiteRT 2.3 and read in its sources):
float32 and float16 sparse weights reach it through `DENSIFY` operators,
which it unpacks once at load time, for any layer. Sparse int8 weights of
CONV_2D / DEPTHWISE_CONV_2D are accepted the same way; a sparse int8
(full-integer or dynamic-range) FULLY_CONNECTED weight makes it refuse the
whole file ("failed to delegate FULLY_CONNECTED"): `densify_for` stores such
weights dense again. Unpacked weights buy bytes, not time; XNNPack computes
with the sparsity itself only in float, for a Fast-Sparse-ConvNets subgraph
(see `models.mobilenet_xnnpack`).

int8: XNNPack creates an int8 convolution or fully-connected operator only if
input scale x filter scale / output scale < 256 in every channel
(`requantization_scales`). A layer whose output is constant on the
calibration data (a dead ReLU; likely once channel pruning leaves a layer
one or a few channels) gets an output scale near 1e-8 from the converter,
and XNNPack refuses it. `widen_dead_ranges` widens such output ranges to 255
steps of the layer's accumulator (exact on the calibration data) before the
file is quantized again; `refuse_what_xnnpack_refuses` names the layer when
that is not enough.
"""

from __future__ import annotations

import re

import numpy as np

from deadwood_tf import litert, tflite_reader

# Operators that sum input x filter products into an int32 accumulator and
# requantize it to their int8 output: (input operand, filter operand).
ACCUMULATING_OPS = {"CONV_2D": (0, 1), "DEPTHWISE_CONV_2D": (0, 1), "FULLY_CONNECTED": (0, 1),
                    "TRANSPOSE_CONV": (2, 1), "CONV_3D": (0, 1)}
# XNNPack creates an int8 convolution or fully-connected operator only if
# input scale x filter scale / output scale < 256 in every channel (XNNPACK's
# convolution-nhwc.c, fully-connected-nc.c); the delegate does not check it
# beforehand, so one such operator fails the whole file ("failed to create
# XNNPACK runtime ... failed to prepare"). LiteRT's built-in kernels run it.
XNNPACK_MAX_REQUANTIZATION = 256.0


def densify_for(content: bytes, refused_ops: set) -> tuple[bytes, list]:
    """The file with the sparse weights of `refused_ops` stored dense again.

    Each such weight reaches its layer through a DENSIFY operator; its dense
    value is read from LiteRT itself (the built-in DENSIFY kernel), stored as
    the constant the layer reads, and the DENSIFY operator dropped.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = tflite_reader.read_model(content)
    graph = model.subgraphs[0]
    targets = []  # (operator, sparse input tensor, dense output tensor)
    for op in graph.operators:
        if tflite_reader.op_name(model, op) != "DENSIFY":
            continue
        consumers = [tflite_reader.op_name(model, o) for o in graph.operators
                     if op.outputs[0] in list(o.inputs)]
        if any(c in refused_ops for c in consumers):
            targets.append((op, op.inputs[0], op.outputs[0]))
    if not targets:
        return content, []
    interpreter = litert.interpreter(content, builtin_kernels=True,
                                     experimental_preserve_all_tensors=True)
    # Any input computes the weights: zeros of each input's shape (open axes 1).
    runner = interpreter.get_signature_runner(litert.SIGNATURE)
    litert.run_signature(interpreter, {
        name: np.zeros([max(int(d), 1) for d in detail["shape_signature"]], detail["dtype"])
        for name, detail in runner.get_input_details().items()})
    names = []
    for op, sparse_t, dense_t in targets:
        value = np.ascontiguousarray(interpreter.get_tensor(dense_t))
        buffer = flatbuffer_utils.BufferT()
        buffer.data = np.frombuffer(value.tobytes(), dtype=np.uint8)
        model.buffers.append(buffer)
        graph.tensors[dense_t].buffer = len(model.buffers) - 1
        model.buffers[graph.tensors[sparse_t].buffer].data = None
        graph.tensors[sparse_t].sparsity = None
        graph.operators.remove(op)
        names.append(graph.tensors[dense_t].name.decode())
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), names


def refused_op_names(error: Exception) -> set:
    """The operators a delegate error says XNNPack refused ("FULLY_CONNECTED", ...)."""
    return set(re.findall(r"failed to delegate (\w+) node", str(error)))


def _scale(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or not len(q.scale):
        return None
    return np.asarray(q.scale, np.float64)


def requantization_scales(content: bytes) -> list:
    """(operator, filter tensor name, largest requantization scale) of each int8
    operator that accumulates input x filter products: input scale x filter
    scale / output scale, the largest over the filter's channels."""
    model = tflite_reader.read_model(content)
    rows = []
    for graph in model.subgraphs:
        for op in graph.operators:
            name = tflite_reader.op_name(model, op)
            if name not in ACCUMULATING_OPS:
                continue
            i, f = ACCUMULATING_OPS[name]
            inp, filt, out = (graph.tensors[t] for t in (op.inputs[i], op.inputs[f], op.outputs[0]))
            scales = [_scale(t) for t in (inp, filt, out)]
            if any(sc is None for sc in scales):
                continue  # a float operator (dynamic-range or float file)
            rows.append((name, filt.name.decode(),
                         float(scales[0][0] * scales[1].max() / scales[2][0])))
    return rows


def xnnpack_refusals(content: bytes) -> list:
    """`requantization_scales` rows that XNNPack cannot create an operator for."""
    return [r for r in requantization_scales(content) if r[2] >= XNNPACK_MAX_REQUANTIZATION]


def _calibrated_range(tensor):
    q = tensor.quantization
    if q is None or q.min is None or q.max is None or not len(q.min) or not len(q.max):
        return None
    return min(float(q.min[0]), 0.0), max(float(q.max[0]), 0.0)  # int8 ranges hold 0


def widen_dead_ranges(calibrated: bytes) -> tuple[bytes, list]:
    """The calibrated float file with every too narrow output range widened.

    An accumulating operator's int32 sum moves in steps of input scale x filter
    scale (the accumulator's resolution); an int8 output scale finer than that
    step buys no precision. The converter gives a tensor that is constant (a
    dead ReLU, typical of channel-pruned layers left with a channel or few) a
    scale near 1e-8, and XNNPack then refuses the operator (requantization
    scale >= 256). Such a range is widened to 255 accumulator steps: exact on
    the calibration data, and no value the narrow range held is lost. The
    scales are computed as the quantizer does (inputs asymmetric over 255
    steps, filters symmetric per channel over 127; the step of the coarsest
    channel counts), in graph order so that a widened input counts. Returns
    the file and the widened operators' filter tensor names.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = tflite_reader.read_model(calibrated)
    widened = []
    for graph in model.subgraphs:
        for op in graph.operators:
            spec = ACCUMULATING_OPS.get(tflite_reader.op_name(model, op))
            if spec is None:
                continue
            inp, filt, out = (graph.tensors[t] for t in (op.inputs[spec[0]], op.inputs[spec[1]],
                                                         op.outputs[0]))
            data = model.buffers[filt.buffer].data if filt.buffer < len(model.buffers) else None
            in_range, out_range = _calibrated_range(inp), _calibrated_range(out)
            if data is None or in_range is None or out_range is None or \
                    filt.type != flatbuffer_utils.TensorType.FLOAT32:
                continue
            weights = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32)
            step = (in_range[1] - in_range[0]) / 255 * float(np.max(np.abs(weights))) / 127
            low, high = out_range
            if high - low < 255 * step:
                out.quantization.min = np.array([low], np.float32)
                out.quantization.max = np.array([low + 255 * step], np.float32)
                widened.append(filt.name.decode())
    if not widened:
        return calibrated, []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), widened


def layer_of(filter_name: str, model) -> str:
    """The layer of `model` whose kernel a converted filter tensor holds
    ("functional_1/c1_1/convolution" -> "c1"; a fused name such as
    "functional_1/c1_1/Relu;functional_1/bn1_1/...;..." too), or the tensor
    name when none matches."""
    found = [(m.start(), layer.name) for layer in model.layers
             if getattr(layer, "kernel", None) is not None
             for m in [re.search(rf"(^|/){re.escape(layer.name)}(_\d+)?/", filter_name)] if m]
    return min(found)[1] if found else filter_name


def refuse_what_xnnpack_refuses(model, path, *contents):
    """Raises before anything is written if XNNPack cannot create an operator
    of one of `contents` (int8 files), naming the layer."""
    refused = [r for content in contents for r in xnnpack_refusals(content)]
    if refused:
        op, filter_name, scale = refused[0]
        raise ValueError(
            f"int8 export: layer '{layer_of(filter_name, model)}' ({op}) needs requantization "
            f"scale {scale:.4g} (input scale x filter scale / output scale), and LiteRT's "
            f"XNNPack delegate refuses scales >= {XNNPACK_MAX_REQUANTIZATION:g}: its output "
            "range on the calibration data (`representative_data`) is far narrower than its "
            "inputs and weights can resolve. interpreter='builtin' runs such a file. "
            f"Nothing was written to {path}.")
