"""Export to TFLite, verified by running the file with LiteRT.

Example:

    info = export_tflite(stripped, "model.tflite", sample_inputs=x_test[:64])
    info["max_abs_diff"], info["bytes"], info["dense_bytes"]
    # (2.4e-07, 36012, 219288)
    info = export_tflite(stripped, "int8.tflite", quantize="int8",
                         representative_data=x_train[:256],
                         sample_inputs=x_test[:256], sample_labels=y_test[:256])
    info["top1_agreement"], info["accuracy"], info["keras_accuracy"]
    # (0.996, 0.973, 0.977)

Any number of inputs and outputs, named in the file's one signature as in
the model (`signature.py`), every output verified:

    info = export_tflite(bert_classifier, "bert.tflite")  # ids within the vocabulary
    info["inputs"], info["outputs"]
    # (['padding_mask', 'segment_ids', 'token_ids'], ['logits'])
    run_tflite("bert.tflite", {"token_ids": ids, "segment_ids": segments,
                               "padding_mask": mask})          # the logits
    export_tflite(subclassed, "cnn.tflite",
                  input_signature=keras.InputSpec((None, 32, 32, 3), name="image"))

What LiteRT's default XNNPack delegate accepts (measured with LiteRT 2.3 and
read in its sources): float32 and float16 sparse weights reach it through
`DENSIFY` operators, which it unpacks once at load time, for any layer. Sparse
int8 weights of CONV_2D / DEPTHWISE_CONV_2D are accepted the same way; a
sparse int8 (full-integer or dynamic-range) FULLY_CONNECTED weight makes it
refuse the whole file ("failed to delegate FULLY_CONNECTED"). Unpacked
weights buy bytes, not time; XNNPack computes with the sparsity itself only in
float, for a Fast-Sparse-ConvNets subgraph (see `models.mobilenet_xnnpack`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from deadwood_tf import compat, prune, signature
from deadwood_tf.litert import interpreter as _interpreter

QUANTIZE_MODES = (None, "dynamic", "float16", "int8")
INTERPRETERS = ("default", "builtin")
BUILTIN_SETTING = ("experimental_op_resolver_type="
                   "OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES")
# Operators whose constant weight is operand 1 (the filter), and the operators
# that turn a stored weight into the one the layer reads.
_WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1,
               "TRANSPOSE_CONV": 1, "CONV_3D": 1, "EMBEDDING_LOOKUP": 1, "GATHER": 0,
               "BATCH_MATMUL": 1, "SLICE": 0, "STRIDED_SLICE": 0}
_UNPACK_OPS = ("DENSIFY", "DEQUANTIZE")
# Operators that sum input x filter products into an int32 accumulator and
# requantize it to their int8 output: (input operand, filter operand).
_ACCUMULATING_OPS = {"CONV_2D": (0, 1), "DEPTHWISE_CONV_2D": (0, 1), "FULLY_CONNECTED": (0, 1),
                     "TRANSPOSE_CONV": (2, 1), "CONV_3D": (0, 1)}
# XNNPack creates an int8 convolution or fully-connected operator only if
# input scale x filter scale / output scale < 256 in every channel (XNNPACK's
# convolution-nhwc.c, fully-connected-nc.c); the delegate does not check it
# beforehand, so one such operator fails the whole file ("failed to create
# XNNPACK runtime ... failed to prepare"). LiteRT's built-in kernels run it.
XNNPACK_MAX_REQUANTIZATION = 256.0
SIGNATURE = "serving_default"  # the one signature an exported file has


@contextlib.contextmanager
def _quiet():
    """Silences the converter's stdout summary and its INFO logging."""
    logger = tf.get_logger()
    level, absl_level = logger.level, logging.get_verbosity()
    logger.setLevel("ERROR")
    logging.set_verbosity(logging.ERROR)  # SavedModel writing logs through absl too
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)
        logging.set_verbosity(absl_level)


def _converter(saved_model: str, sparse: bool, quantize, representative=None,
               integer_io=False):
    """The converter of a SavedModel written by `_serving_saved_model`."""
    # Through a SavedModel, as TensorFlow's own `from_keras_model` does for Keras 3,
    # with our signature (named inputs and outputs). Not from_concrete_functions:
    # with Keras 3 it freezes wrong weights (NaN/inf outputs seen with TF 2.21).
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=[SIGNATURE])
    optimizations = []
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if quantize is not None:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: ([r[None]] for r in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if integer_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    converter.optimizations = optimizations
    return converter


def _convert(saved_model: str, model, sparse: bool, quantize, representative=None,
             integer_io=False) -> tuple[bytes, list]:
    """The converted file, and the layers whose int8 output range was widened
    (`_widen_dead_ranges`) because XNNPack would refuse the converter's file."""
    with _quiet(), warnings_off():
        content = _converter(saved_model, sparse, quantize, representative, integer_io).convert()
    if quantize != "int8" or not _xnnpack_refusals(content):
        return content, []
    with _quiet(), warnings_off():
        calibrated = compat.calibrated_tflite(
            _converter(saved_model, False, quantize, representative, integer_io))
        calibrated, widened = _widen_dead_ranges(calibrated)
        if not widened:
            return content, []
        fixed = compat.quantize_calibrated(calibrated, integer_io)
        if sparse:
            fixed = compat.sparsify_tflite(fixed)
    return fixed, sorted({_layer_of(w, model) for w in widened})


@contextlib.contextmanager
def warnings_off():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Statistics for quantized inputs were expected"
        yield


def _quantize_input(x, detail):
    """Float inputs to an integer input tensor, with its scale and zero point."""
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer) or np.issubdtype(np.asarray(x).dtype, np.integer):
        return np.asarray(x, dtype=dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float64) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize_output(y, detail):
    scale, zero_point = detail["quantization"]
    if np.issubdtype(y.dtype, np.integer) and scale:
        return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return y


def _run(interpreter, inputs) -> dict:
    """Runs the file's signature on `inputs` (a dict by input name, a list in
    the signature's order, or one array): `{output name: float array}`."""
    runner = interpreter.get_signature_runner(SIGNATURE) if SIGNATURE in \
        interpreter.get_signature_list() else interpreter.get_signature_runner()
    details = runner.get_input_details()
    names = list(details)
    if isinstance(inputs, dict):
        by_name = inputs
    elif isinstance(inputs, (list, tuple)) and len(names) > 1:
        by_name = dict(zip(names, inputs))
    else:
        by_name = {names[0]: inputs}
    if set(by_name) != set(names):
        raise ValueError(f"Invalid value for argument `x`: expected the file's inputs {names}. "
                         f"Received: {sorted(by_name)}")
    got = runner(**{n: _quantize_input(by_name[n], details[n]) for n in names})
    outputs = runner.get_output_details()
    return {n: _dequantize_output(np.array(got[n]), outputs[n]) for n in sorted(got)}


def run_tflite(path_or_bytes, x, num_threads: int | None = None,
               builtin_kernels: bool = False):
    """Runs a `.tflite` model with LiteRT on a batch `x`.

    `x`: one array for a one-input file; for several inputs, a dict by input
    name (the names `export_tflite` wrote: the model's input names) or a list
    in the file's input order. Returns one float array for a one-output file,
    else `{output name: float array}`.

    Float `x` is quantized with the input tensor's scale and zero point when
    the file takes int8 inputs (`export_tflite(..., integer_io=True)`),
    integer inputs (ids, masks) are passed as they are, and integer outputs
    are dequantized. `builtin_kernels=True` runs without the default delegate
    (XNNPack), which some files need (`export_tflite(...,
    interpreter="builtin")`).
    """
    got = _run(_interpreter(path_or_bytes, num_threads, builtin_kernels), x)
    return next(iter(got.values())) if len(got) == 1 else got


def _read_model(content: bytes):
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(content))


def _op_name(model, op) -> str:
    from ai_edge_litert.tools import flatbuffer_utils

    code = flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
    return flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) if code is None else {
        v: k for k, v in vars(flatbuffer_utils.BuiltinOperator).items() if not k.startswith("_")
    }.get(code, str(code))


def _densify_for(content: bytes, refused_ops: set) -> tuple[bytes, list]:
    """The file with the sparse weights of `refused_ops` stored dense again.

    Each such weight reaches its layer through a DENSIFY operator; its dense
    value is read from LiteRT itself (the built-in DENSIFY kernel), stored as
    the constant the layer reads, and the DENSIFY operator dropped.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = _read_model(content)
    graph = model.subgraphs[0]
    targets = []  # (operator, sparse input tensor, dense output tensor)
    for op in graph.operators:
        if _op_name(model, op) != "DENSIFY":
            continue
        consumers = [_op_name(model, o) for o in graph.operators if op.outputs[0] in list(o.inputs)]
        if any(c in refused_ops for c in consumers):
            targets.append((op, op.inputs[0], op.outputs[0]))
    if not targets:
        return content, []
    interpreter = _interpreter(content, builtin_kernels=True,
                               experimental_preserve_all_tensors=True)
    # Any input computes the weights: zeros of each input's shape (open axes 1).
    _run(interpreter, {name: np.zeros([max(int(d), 1) for d in detail["shape_signature"]],
                                      detail["dtype"])
                       for name, detail in interpreter.get_signature_runner(
                           SIGNATURE).get_input_details().items()})
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


def _refused_ops(error: Exception) -> set:
    return set(re.findall(r"failed to delegate (\w+) node", str(error)))


def _scale(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or not len(q.scale):
        return None
    return np.asarray(q.scale, np.float64)


def _requantization_scales(content: bytes) -> list:
    """(operator, filter tensor name, largest requantization scale) of each int8
    operator that accumulates input x filter products: input scale x filter
    scale / output scale, the largest over the filter's channels."""
    model = _read_model(content)
    rows = []
    for graph in model.subgraphs:
        for op in graph.operators:
            name = _op_name(model, op)
            if name not in _ACCUMULATING_OPS:
                continue
            i, f = _ACCUMULATING_OPS[name]
            inp, filt, out = (graph.tensors[t] for t in (op.inputs[i], op.inputs[f], op.outputs[0]))
            scales = [_scale(t) for t in (inp, filt, out)]
            if any(sc is None for sc in scales):
                continue  # a float operator (dynamic-range or float file)
            rows.append((name, filt.name.decode(),
                         float(scales[0][0] * scales[1].max() / scales[2][0])))
    return rows


def _xnnpack_refusals(content: bytes) -> list:
    """`_requantization_scales` rows that XNNPack cannot create an operator for."""
    return [r for r in _requantization_scales(content) if r[2] >= XNNPACK_MAX_REQUANTIZATION]


def _calibrated_range(tensor):
    q = tensor.quantization
    if q is None or q.min is None or q.max is None or not len(q.min) or not len(q.max):
        return None
    return min(float(q.min[0]), 0.0), max(float(q.max[0]), 0.0)  # int8 ranges hold 0


def _widen_dead_ranges(calibrated: bytes) -> tuple[bytes, list]:
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

    model = _read_model(calibrated)
    widened = []
    for graph in model.subgraphs:
        for op in graph.operators:
            spec = _ACCUMULATING_OPS.get(_op_name(model, op))
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


def _layer_of(filter_name: str, model) -> str:
    """The layer of `model` whose kernel a converted filter tensor holds
    ("functional_1/c1_1/convolution" -> "c1"; a fused name such as
    "functional_1/c1_1/Relu;functional_1/bn1_1/...;..." too), or the tensor
    name when none matches."""
    found = [(m.start(), layer.name) for layer in model.layers
             if getattr(layer, "kernel", None) is not None
             for m in [re.search(rf"(^|/){re.escape(layer.name)}(_\d+)?/", filter_name)] if m]
    return min(found)[1] if found else filter_name


def _refuse_what_xnnpack_refuses(model, path, *contents):
    """Raises before anything is written if XNNPack cannot create an operator
    of one of `contents` (int8 files), naming the layer."""
    refused = [r for content in contents for r in _xnnpack_refusals(content)]
    if refused:
        op, filter_name, scale = refused[0]
        raise ValueError(
            f"int8 export: layer '{_layer_of(filter_name, model)}' ({op}) needs requantization "
            f"scale {scale:.4g} (input scale x filter scale / output scale), and LiteRT's "
            f"XNNPack delegate refuses scales >= {XNNPACK_MAX_REQUANTIZATION:g}: its output "
            "range on the calibration data (`representative_data`) is far narrower than its "
            "inputs and weights can resolve. interpreter='builtin' runs such a file. "
            f"Nothing was written to {path}.")


def _check_array(value, name, shape):
    value = np.asarray(value, dtype="float32")
    if value.ndim != len(shape) + 1 or tuple(value.shape[1:]) != shape or not len(value):
        raise ValueError(
            f"Invalid value for argument `{name}`: expected shape (n, *{shape}) with n >= 1. "
            f"Received: shape {value.shape}")
    return value


def _representative_inputs(data, shape, limit: int) -> np.ndarray:
    """Up to `limit` single inputs from an array or a tf.data.Dataset of inputs,
    (inputs, labels, ...) tuples or batches of either."""
    if isinstance(data, tf.data.Dataset):
        rows = []
        for element in data:
            x = element[0] if isinstance(element, (tuple, list)) else element
            x = np.asarray(x, dtype="float32")
            rows.extend(x if x.ndim == len(shape) + 1 else [x])
            if len(rows) >= limit:
                break
        data = np.stack(rows) if rows else np.zeros((0, *shape), "float32")
    return _check_array(data, "representative_data", shape)[:limit]


@contextlib.contextmanager
def _serving_saved_model(model, specs):
    """A temporary SavedModel whose one signature takes the inputs of `specs`
    by name and returns the model's outputs by name (`signature`)."""
    tf_specs = {s.name: tf.TensorSpec((None, *s.shape), s.dtype, name=s.name) for s in specs}

    def serve(inputs):
        return signature.named_output_tensors(
            model, model(signature.as_model_inputs(specs, inputs), training=False))

    with tempfile.TemporaryDirectory() as directory, _quiet(), warnings_off():
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(SIGNATURE, serve, input_signature=[tf_specs])
        archive.write_out(directory, verbose=False)
        yield directory


def export_tflite(model, path, sparse: bool = True, quantize=None, sample_inputs=None,
                  num_samples: int = 32, atol: float = 1e-4, seed: int = 0,
                  sample_labels=None, representative_data=None,
                  num_calibration: int = 256, integer_io: bool = False,
                  interpreter: str = "default", input_signature=None,
                  input_ranges=None) -> dict:
    """Converts `model` to a `.tflite` file and checks the file against Keras.

    The file has one signature ("serving_default") whose inputs are named as
    the model's inputs (`signature.input_specs`: the `keras.Input` names, the
    keys of a dict of inputs as KerasHub models take) and whose outputs are
    named as its outputs (the output layers' names, or a dict's keys).
    `run_tflite` and LiteRT's `get_signature_runner()` take and return them by
    name. Every output is verified against Keras.

    Args:
      model: a plain Keras 3 model, a pruned model or a `DeadwoodModel` (these
        two are stripped first): functional with any number of inputs and
        outputs, Sequential, subclassed (see `input_signature`), KerasHub.
      path: where to write the file. It is written only after the file has
        been verified; an existing file is replaced atomically.
      sparse: store sparse weights compactly (`EXPERIMENTAL_SPARSITY`).
      quantize: None (float32), "dynamic" (int8 weights, float activations),
        "float16", or "int8" (full-integer: int8 weights and activations,
        calibrated on `representative_data`). "int8" takes models with one
        float input only (see Raises); "dynamic" and "float16" take any.
      sample_inputs: inputs to verify on: one array (one input), a dict by
        input name, or a list in input order; each keeps its integer or float
        kind (ids stay ids) and is cast to the input's dtype. Default:
        `num_samples` generated inputs of each input's dtype and range
        (`signature.sample_inputs`: floats uniform in [0, 1); token ids in
        [0, input_dim) of the Embedding the input feeds; inputs named
        `...mask` as 0/1 padding masks; open axes of length 8).
      atol: for float exports, the largest tolerated difference to Keras,
        relative to the largest Keras output magnitude (at least `atol`),
        for every output.
      sample_labels: optional int labels of `sample_inputs`: the accuracy of
        the file and of the Keras model on them (first output) are reported.
      representative_data: for "int8", the calibration inputs: an array
        `(n, *input_shape)` or a `tf.data.Dataset` of inputs, `(inputs, ...)`
        tuples, or batches of them; the first `num_calibration` are used.
        Default: `sample_inputs` (then the verification data is not held out).
      integer_io: "int8" only: the file takes and returns int8 tensors (for
        integer-only accelerators). Default False: float input and output
        around an int8 graph (one QUANTIZE and one DEQUANTIZE operator), so
        the file is a drop-in for the float one. `run_tflite` scales float
        inputs with the file's input quantization either way.
      interpreter: "default": the file must run on a default LiteRT
        interpreter (XNNPack on). When XNNPack refuses a sparse weight (int8 /
        dynamic-range FULLY_CONNECTED), that weight is stored dense and every
        other stays sparse; if that cannot help, the dense file is written.
        "builtin": every sparse weight stays sparse; the file is verified, and
        must be run, with the built-in kernels
        (`Interpreter(..., experimental_op_resolver_type=
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)`).
      input_signature: the inputs of a model without symbolic inputs
        (subclassed): a `keras.InputSpec` / `tf.TensorSpec` (batch axis
        first), or a list / dict of them in the structure its `call` takes.
        Default: the shapes the model was built or first called with.
      input_ranges: `{input name: (low, high)}` for generated inputs: floats
        uniform in [low, high), integers in [low, high). Needed for integer
        inputs that feed no Embedding layer and are not masks.

    Returns:
      dict with `path`, `bytes`, `dense_bytes` (the same export without
      sparse storage), `inputs` and `outputs` (the signature's names),
      `max_abs_diff` (the largest over outputs), `outputs_max_abs_diff`
      ({output: difference}), `top1_agreement` (the fraction of samples whose
      arg-max class agrees, first output), `accuracy` and `keras_accuracy`
      (None without `sample_labels`), `sparse`, `quantize`, `integer_io`,
      `interpreter`, `runs_on_default_interpreter`, `interpreter_setting`
      (what an interpreter needs to run the file; "" for the default one),
      `densified_for_xnnpack` (weights stored dense so that XNNPack takes the
      file), `widened_for_xnnpack` (int8: the layers whose output range was
      widened so that XNNPack takes the file, see below), `sparsity_in_file`
      (`tflite_sparsity(file)["sparsity"]`: zeros among the weights the file
      stores) and `sparsity` (`tflite_sparsity(file, model)["sparsity"]`:
      against the model's prunable weights, comparable to
      `sparsity_report(model).sparsity`).

    int8 and XNNPack: a layer whose output is constant on the calibration data
    (a dead ReLU; likely once channel pruning leaves a layer one or a few
    channels) gets an output scale near 1e-8 from the converter, and XNNPack
    refuses any convolution or dense layer whose input scale x filter scale /
    output scale reaches 256. Such output ranges are then widened to 255 steps
    of the layer's accumulator (exact on the calibration data; logged and
    listed in `widened_for_xnnpack`) and the file quantized again.

    Raises:
      ValueError: bad `quantize`, `interpreter`, `integer_io`, `sample_inputs`,
        `sample_labels`, `representative_data`, `input_signature` or
        `input_ranges`; quantize="int8" for a model with several inputs or an
        integer input (token ids, masks: full-integer calibration takes one
        float input; quantize="dynamic" quantizes the weights of any model);
        a float export that does not match Keras within `atol` on some
        output, or (interpreter="default") an int8 file that XNNPack would
        still refuse, naming the layer (nothing is written then).
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"Invalid value for argument `quantize`: expected one of {QUANTIZE_MODES}. "
            f"Received: quantize={quantize!r}"
        )
    if interpreter not in INTERPRETERS:
        raise ValueError(
            f"Invalid value for argument `interpreter`: expected one of {INTERPRETERS}. "
            f"Received: interpreter={interpreter!r}")
    if integer_io not in (False, True) or (integer_io and quantize != "int8"):
        raise ValueError(
            "Invalid value for argument `integer_io`: expected False, or True with "
            f"quantize='int8'. Received: integer_io={integer_io!r} with quantize={quantize!r}")
    model = prune._unwrap_deadwood(model)
    if prune.pruned_weights(model):
        model = prune.strip_pruning(model)
    specs = signature.input_specs(model, input_signature)
    if quantize == "int8" and (len(specs) != 1 or not np.issubdtype(np.dtype(specs[0].dtype),
                                                                     np.floating)):
        raise ValueError(
            "Invalid value for argument `quantize`: 'int8' (full-integer) takes models with "
            "one float input, calibrated on it; integer inputs (token ids, masks) and several "
            "inputs are not supported. quantize='dynamic' (int8 weights, float activations) "
            f"takes any model. Received: quantize='int8' for inputs "
            f"{[(s.name, s.dtype) for s in specs]}")
    if sample_inputs is None:
        sample_inputs = signature.sample_inputs(model, specs, num_samples, seed, input_ranges)
    sample_inputs = signature.check_inputs(specs, sample_inputs)
    num = len(next(iter(sample_inputs.values())))
    if sample_labels is not None:
        sample_labels = np.asarray(sample_labels)
        if sample_labels.shape != (num,) or not np.issubdtype(sample_labels.dtype, np.integer):
            raise ValueError(
                "Invalid value for argument `sample_labels`: expected int class labels of "
                f"shape ({num},), one per sample input. Received: "
                f"{sample_labels.dtype} array of shape {sample_labels.shape}")
    representative = None
    if quantize == "int8":
        representative = _representative_inputs(
            sample_inputs[specs[0].name] if representative_data is None else representative_data,
            specs[0].shape, num_calibration)
    elif representative_data is not None:
        raise ValueError(
            "Invalid value for argument `representative_data`: it calibrates quantize='int8' "
            f"only. Received: representative_data with quantize={quantize!r}")

    with _serving_saved_model(model, specs) as saved:
        dense_content, widened = _convert(saved, model, False, quantize, representative,
                                          integer_io)
        if widened:
            logging.warning(
                "deadwood_tf: int8 export: the outputs of %s are (nearly) constant on the "
                "calibration data, and so finely scaled that XNNPack refuses the file; their "
                "int8 ranges were widened to the resolution of their accumulators (exact on "
                "that data).", ", ".join(widened))
        content = _convert(saved, model, True, quantize, representative, integer_io)[0] \
            if sparse else dense_content
    if interpreter == "default":
        _refuse_what_xnnpack_refuses(model, path, content, dense_content)
    reference = signature.named_outputs(
        model, model(signature.as_model_inputs(specs, sample_inputs), training=False))

    def run(candidate):
        """(outputs, runs on the default interpreter), or (the refusal, None)."""
        try:
            return _run(_interpreter(candidate), sample_inputs), True
        except RuntimeError as e:
            # "failed to delegate X node", or "TfLiteXNNPackDelegate failed to prepare"
            if interpreter == "builtin" and "delegate" in str(e).lower():
                return _run(_interpreter(candidate, builtin_kernels=True), sample_inputs), False
            if "delegate" not in str(e):
                raise
            return e, None

    def finite(outputs):
        return all(np.all(np.isfinite(v)) for v in outputs.values())

    densified = []
    got, default_interpreter = run(content)
    if default_interpreter is None:
        # XNNPack refuses some sparse weights (int8 FULLY_CONNECTED): store
        # those dense and keep the rest sparse, unless the dense file is smaller.
        fixed, densified = _densify_for(content, _refused_ops(got))
        if densified:
            got, default_interpreter = run(fixed)
        if default_interpreter is None or len(fixed) >= len(dense_content):
            logging.warning("deadwood_tf: LiteRT's default XNNPack delegate refuses the sparse "
                            "file and storing its refused weights dense does not help; writing "
                            "the dense file (interpreter='builtin' keeps it sparse).")
            content, densified = dense_content, []
            got, default_interpreter = run(content)
        else:
            content = fixed
    if content is not dense_content and not finite(got) and finite(reference):
        # Seen with TF 2.21: float16 + EXPERIMENTAL_SPARSITY files compute NaN.
        logging.warning("deadwood_tf: the converter's sparse %s file computes non-finite "
                        "outputs; writing the dense one.", quantize or "float32")
        content, densified = dense_content, []
        got, default_interpreter = run(content)
    if not finite(got) and finite(reference):
        raise ValueError(f"TFLite export computes non-finite outputs where Keras does not. "
                         f"Nothing was written to {path}.")
    if sorted(got) != sorted(reference):
        raise ValueError(f"TFLite export: the file's outputs {sorted(got)} are not the model's "
                         f"{sorted(reference)}. Nothing was written to {path}.")
    diffs = {n: float(np.max(np.abs(got[n] - reference[n]))) for n in reference}
    for name, diff in diffs.items():
        tolerance = atol * max(1.0, float(np.max(np.abs(reference[name]))))
        if quantize is None and not diff <= tolerance:
            raise ValueError(
                f"TFLite export does not match the Keras model: output '{name}' max abs "
                f"difference {diff:.3g} > {tolerance:.3g}. Nothing was written to {path}.")
    first = next(iter(reference))
    scores, keras_scores = got[first], reference[first]
    agreement = float(np.mean(scores.argmax(-1) == keras_scores.argmax(-1)))

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tflite.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    accuracy = keras_accuracy = None
    if sample_labels is not None:
        accuracy = float(np.mean(scores.argmax(-1) == sample_labels))
        keras_accuracy = float(np.mean(keras_scores.argmax(-1) == sample_labels))
    return {"path": path, "bytes": len(content), "dense_bytes": len(dense_content),
            "inputs": [s.name for s in specs], "outputs": list(reference),
            "max_abs_diff": max(diffs.values()), "outputs_max_abs_diff": diffs,
            "top1_agreement": agreement,
            "accuracy": accuracy, "keras_accuracy": keras_accuracy,
            "sparse": sparse, "quantize": quantize, "integer_io": integer_io,
            "interpreter": "default" if default_interpreter else "builtin",
            "runs_on_default_interpreter": default_interpreter,
            "interpreter_setting": "" if default_interpreter else BUILTIN_SETTING,
            "densified_for_xnnpack": densified, "widened_for_xnnpack": widened,
            "sparsity_in_file": tflite_sparsity(content)["sparsity"],
            "model_sparsity": tflite_sparsity(content, model)["model_sparsity"]}


_NUMPY_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8,
                "UINT8": np.uint8}


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

    content = (bytes(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray))
               else open(os.fspath(path_or_bytes), "rb").read())
    keras_model, model = model, _read_model(content)
    type_names = {v: k for k, v in vars(flatbuffer_utils.TensorType).items()
                  if not k.startswith("_")}
    rows = []
    for graph in model.subgraphs:
        producer = {o: op for op in graph.operators for o in op.outputs}
        seen = {}
        for op in graph.operators:
            operand = _WEIGHT_OPS.get(_op_name(model, op))
            if operand is None or operand >= len(op.inputs) or op.inputs[operand] < 0:
                continue
            t = op.inputs[operand]
            while t in producer and _op_name(model, producer[t]) in _UNPACK_OPS:
                t = producer[t].inputs[0]
            tensor = graph.tensors[t]
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            dtype = _NUMPY_TYPES.get(type_names.get(tensor.type))
            if t in seen:
                seen[t]["operators"] += 1
                continue
            if buffer is None or buffer.data is None or dtype is None:
                continue
            values = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), dtype=dtype)
            zero = 0
            q = tensor.quantization
            if q is not None and q.zeroPoint is not None and len(q.zeroPoint) and \
                    np.issubdtype(dtype, np.integer):
                zero = int(np.asarray(q.zeroPoint).ravel()[0])
            shape = [int(s) for s in tensor.shape]
            size = int(np.prod(shape))
            zeros = size - int(np.count_nonzero(values != zero))
            rows.append({"name": tensor.name.decode(), "shape": shape,
                         "dtype": type_names[tensor.type].lower(),
                         "storage": "sparse" if tensor.sparsity is not None else "dense",
                         "size": size, "stored": int(values.size),
                         "bytes": int(values.nbytes), "zeros": zeros,
                         "sparsity": zeros / size if size else 0.0, "operators": 1})
            seen[t] = rows[-1]
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
