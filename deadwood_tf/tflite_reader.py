"""Reading a `.tflite` file: its operators, and the sparsity of its weight tensors.

`tflite_sparsity` reads the weights a file stores (sparse or dense, float or
quantized) straight from the flatbuffer, with LiteRT's `flatbuffer_utils`;
`read_model` and `op_name` are the flatbuffer access the XNNPack fixes share.
"""

from __future__ import annotations

import os

import numpy as np

from deadwood_tf import prune

# Operators whose constant weight is operand 1 (the filter), and the operators
# that turn a stored weight into the one the layer reads.
WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1,
              "TRANSPOSE_CONV": 1, "CONV_3D": 1, "EMBEDDING_LOOKUP": 1, "GATHER": 0,
              "BATCH_MATMUL": 1, "SLICE": 0, "STRIDED_SLICE": 0}
UNPACK_OPS = ("DENSIFY", "DEQUANTIZE")
_NUMPY_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8,
                "UINT8": np.uint8}


def read_model(content: bytes):
    """The file's flatbuffer as LiteRT's mutable object tree (`ModelT`)."""
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(content))


def op_name(model, op) -> str:
    """The name of operator `op` of `model` (`read_model`): "CONV_2D", "DENSIFY", ..."""
    from ai_edge_litert.tools import flatbuffer_utils

    code = flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
    return flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) if code is None else {
        v: k for k, v in vars(flatbuffer_utils.BuiltinOperator).items() if not k.startswith("_")
    }.get(code, str(code))


def _tensor_row(model, tensor, type_names) -> dict | None:
    """`tflite_sparsity`'s row of one weight tensor, or None when it stores no constant."""
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    dtype = _NUMPY_TYPES.get(type_names.get(tensor.type))
    if buffer is None or buffer.data is None or dtype is None:
        return None
    values = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), dtype=dtype)
    zero = 0
    q = tensor.quantization
    if q is not None and q.zeroPoint is not None and len(q.zeroPoint) and \
            np.issubdtype(dtype, np.integer):
        zero = int(np.asarray(q.zeroPoint).ravel()[0])
    shape = [int(s) for s in tensor.shape]
    size = int(np.prod(shape))
    zeros = size - int(np.count_nonzero(values != zero))
    return {"name": tensor.name.decode(), "shape": shape,
            "dtype": type_names[tensor.type].lower(),
            "storage": "sparse" if tensor.sparsity is not None else "dense",
            "size": size, "stored": int(values.size),
            "bytes": int(values.nbytes), "zeros": zeros,
            "sparsity": zeros / size if size else 0.0, "operators": 1}


def tflite_sparsity(path_or_bytes, model=None) -> dict:
    """Sparsity of a `.tflite` file's weight tensors, read from the file itself.

    Weight tensors are the constant operands that layers read as weights (the
    filter of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, BATCH_MATMUL, the
    table of GATHER / EMBEDDING_LOOKUP, a constant table that SLICE /
    STRIDED_SLICE read, as position embeddings are), followed back through the DENSIFY /
    DEQUANTIZE operators that unpack them; biases are not weights. A
    quantized value counts as zero when it equals its zero point.

    The file stores each distinct constant once, and the converter finds
    identical ones: all-zero kernels of one shape are identical, so they
    become one tensor that several operators read. Measured (TF 2.21,
    keras.applications at 90% global sparsity after a Deadwood fit):
    MobileNetV2 has 53 weight operators but 44 weight tensors, its 13
    all-zero depthwise kernels stored as 4 (one per shape), so the stored
    tensors' own sparsity reads 0.8959 while every non-zero weight (38,717)
    is there; ResNet50V2, EfficientNetB0 and ConvNeXtTiny read 0.85, 0.86
    and 0.85 the same way. Nothing is lost (the outputs match), and
    BatchNorm folding scales kernels and keeps their zeros. So the count
    that matches Keras is the number of non-zero weights: with `model`,
    `model_sparsity` is 1 - (non-zero weights in the file) / (prunable
    weights of `model`, `sparsity_report(model)`), comparable to
    `sparsity_report(model).sparsity`. (A layer shared in Keras is one
    variable and one tensor, counted once on both sides.)

    Returns `{"tensors": [{"name", "shape", "dtype", "storage" ("sparse" or
    "dense"), "size", "stored" (values in the file), "bytes", "zeros",
    "sparsity", "operators" (how many operators read it)}], "size", "zeros",
    "nonzeros", "sparsity", "sparse_size"}`
    where `sparse_size` is the number of weights in sparse-stored tensors;
    with `model` also `model_size` (its prunable weights), `not_stored`
    (those with no tensor of their own in the file: `model_size - size`)
    and `model_sparsity`.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    if isinstance(path_or_bytes, (bytes, bytearray)):
        content = bytes(path_or_bytes)
    else:
        with open(os.fspath(path_or_bytes), "rb") as f:
            content = f.read()
    keras_model, model = model, read_model(content)
    type_names = {v: k for k, v in vars(flatbuffer_utils.TensorType).items()
                  if not k.startswith("_")}
    rows = []
    for graph in model.subgraphs:
        producer = {o: op for op in graph.operators for o in op.outputs}
        seen = {}
        for op in graph.operators:
            operand = WEIGHT_OPS.get(op_name(model, op))
            if operand is None or operand >= len(op.inputs) or op.inputs[operand] < 0:
                continue
            t = op.inputs[operand]
            while t in producer and op_name(model, producer[t]) in UNPACK_OPS:
                t = producer[t].inputs[0]
            if t in seen:
                seen[t]["operators"] += 1
                continue
            row = _tensor_row(model, graph.tensors[t], type_names)
            if row is not None:
                rows.append(row)
                seen[t] = row
    size = sum(r["size"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    out = {"tensors": rows, "size": size, "zeros": zeros, "nonzeros": size - zeros,
           "sparsity": zeros / size if size else 0.0,
           "sparse_size": sum(r["size"] for r in rows if r["storage"] == "sparse")}
    if keras_model is not None:
        model_size = prune.sparsity_report(keras_model).size
        out.update(model_size=model_size, not_stored=max(model_size - size, 0),
                   model_sparsity=1.0 - (size - zeros) / model_size if model_size else 0.0)
    return out
