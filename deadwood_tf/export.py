"""Export to TFLite, verified by running the file with LiteRT.

`export_tflite` converts a model (pruned models and `DeadwoodModel`s are
stripped first) through a SavedModel with one signature, named as the model's
inputs and outputs (`signature.py`), checks every output of the file against
Keras (`tflite_verify`), makes LiteRT's default XNNPack delegate take it
(`xnnpack`), and only then writes it. `run_tflite` runs a file (`litert`);
`tflite_sparsity` reads its weights (`tflite_reader`).

>>> import os, tempfile, keras, numpy as np
>>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(4)])
>>> path = os.path.join(tempfile.mkdtemp(), "model.tflite")
>>> info = export_tflite(model, path)
>>> info["max_abs_diff"] < 1e-5, info["runs_on_default_interpreter"], len(info["outputs"])
(True, True, 1)
>>> x = np.random.default_rng(0).uniform(0, 1, (3, 16)).astype("float32")
>>> bool(np.allclose(run_tflite(path, x), model(x), atol=1e-5))
True

Quantized files (`quantize="dynamic"`, "float16" or "int8", calibrated on
`representative_data`) report the file's agreement with Keras
(`top1_agreement`) and, given `sample_labels`, both accuracies. Any number of
inputs and outputs work: `run_tflite` takes a dict by input name and returns
`{output name: array}`; a subclassed model needs `input_signature`.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from deadwood_tf import atomic, checks, compat, prune, signature, tflite_verify, xnnpack
from deadwood_tf.litert import SIGNATURE, run_tflite  # noqa: F401 (one of this module's names)
from deadwood_tf.tflite_reader import tflite_sparsity
from deadwood_tf.xnnpack import XNNPACK_MAX_REQUANTIZATION  # noqa: F401 (likewise)

QUANTIZE_MODES = (None, "dynamic", "float16", "int8")
INTERPRETERS = ("default", "builtin")
BUILTIN_SETTING = ("experimental_op_resolver_type="
                   "OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES")


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
    (`xnnpack.widen_dead_ranges`) because XNNPack would refuse the converter's file."""
    with _quiet(), warnings_off():
        content = _converter(saved_model, sparse, quantize, representative, integer_io).convert()
    if quantize != "int8" or not xnnpack.xnnpack_refusals(content):
        return content, []
    with _quiet(), warnings_off():
        calibrated = compat.calibrated_tflite(
            _converter(saved_model, False, quantize, representative, integer_io))
        calibrated, widened = xnnpack.widen_dead_ranges(calibrated)
        if not widened:
            return content, []
        fixed = compat.quantize_calibrated(calibrated, integer_io)
        if sparse:
            fixed = compat.sparsify_tflite(fixed)
    return fixed, sorted({xnnpack.layer_of(w, model) for w in widened})


@contextlib.contextmanager
def warnings_off():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Statistics for quantized inputs were expected"
        yield


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


def _check_options(quantize, interpreter, integer_io) -> None:
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


def _plain_model(model, input_signature, quantize) -> tuple:
    """The model to convert (stripped of masks) and its input specs."""
    model = checks.unwrap_deadwood(model)
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
    return model, specs


def _verification_data(model, specs, sample_inputs, sample_labels, num_samples, seed,
                       input_ranges) -> tuple:
    """`({input name: array}, labels or None)`: what the file is verified on."""
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
    return sample_inputs, sample_labels


def _calibration_data(quantize, specs, sample_inputs, representative_data, num_calibration):
    """The int8 calibration inputs (None for other modes)."""
    if quantize == "int8":
        return _representative_inputs(
            sample_inputs[specs[0].name] if representative_data is None else representative_data,
            specs[0].shape, num_calibration)
    if representative_data is not None:
        raise ValueError(
            "Invalid value for argument `representative_data`: it calibrates quantize='int8' "
            f"only. Received: representative_data with quantize={quantize!r}")
    return None


def _convert_model(model, specs, sparse, quantize, representative, integer_io) -> tuple:
    """`(file, dense file, layers widened for XNNPack)`; the file is the dense one
    unless `sparse`."""
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
    return content, dense_content, widened


def _accuracies(got, reference, sample_labels) -> dict:
    """Top-1 agreement of the file with Keras, and both accuracies (first output)."""
    first = next(iter(reference))
    scores, keras_scores = got[first], reference[first]
    out = {"top1_agreement": float(np.mean(scores.argmax(-1) == keras_scores.argmax(-1))),
           "accuracy": None, "keras_accuracy": None}
    if sample_labels is not None:
        out["accuracy"] = float(np.mean(scores.argmax(-1) == sample_labels))
        out["keras_accuracy"] = float(np.mean(keras_scores.argmax(-1) == sample_labels))
    return out


def export_tflite(model, path, sparse: bool = True, quantize=None, sample_inputs=None,
                  num_samples: int = 32, atol: float = 1e-4, seed: int = 0,
                  sample_labels=None, representative_data=None,
                  num_calibration: int = 256, integer_io: bool = False,
                  interpreter: str = "default", input_signature=None,
                  input_ranges=None) -> dict:
    """Converts `model` to a `.tflite` file, checks it against Keras, then writes it.

    The file has one signature ("serving_default") whose inputs and outputs are
    named as the model's (`signature.py`); every output is verified. Nothing is
    written unless the file passes; an existing file is replaced atomically.

    Args:
      model: a Keras 3 model (functional, Sequential, subclassed, KerasHub), a
        pruned model or a `DeadwoodModel` (stripped first).
      path: where to write the file.
      sparse: store sparse weights compactly (`EXPERIMENTAL_SPARSITY`).
      quantize: None (float32), "dynamic" (int8 weights), "float16", or "int8"
        (full-integer, calibrated on `representative_data`; one float input).
      sample_inputs: inputs to verify on: an array, a dict by input name or a
        list in input order. Default: `num_samples` inputs of each input's
        dtype and range (`signature.sample_inputs`, with `seed`, `input_ranges`).
      atol: float files: the largest difference to Keras, relative to the
        largest Keras output magnitude (at least `atol`), on every output.
      sample_labels: int labels of `sample_inputs`: both accuracies are reported.
      representative_data: "int8" calibration inputs: an array `(n, *shape)` or
        a `tf.data.Dataset` of inputs, `(inputs, ...)` tuples or batches; the
        first `num_calibration` are used. Default: `sample_inputs`.
      integer_io: "int8" only: int8 input and output tensors (default: float
        ones around the int8 graph; `run_tflite` scales float inputs anyway).
      interpreter: "default": the file must run with XNNPack on (weights it
        refuses are stored dense, see `deadwood_tf.xnnpack`); "builtin": every
        sparse weight stays sparse, run on the built-in kernels (`BUILTIN_SETTING`).
      input_signature: a subclassed model's inputs: a `keras.InputSpec` /
        `tf.TensorSpec` (batch axis first), or a list / dict of them.
      input_ranges: `{input name: (low, high)}` for generated inputs; integer
        inputs that feed no Embedding and are not masks need one.

    Returns:
      dict: `path`, `bytes`, `dense_bytes` (without sparse storage), `inputs`,
      `outputs`, `max_abs_diff`, `outputs_max_abs_diff`, `top1_agreement`,
      `accuracy` and `keras_accuracy` (first output), `sparse`, `quantize`,
      `integer_io`, `interpreter`, `runs_on_default_interpreter`,
      `interpreter_setting` ("" for the default interpreter),
      `densified_for_xnnpack`, `widened_for_xnnpack` (int8 layers whose output
      range was widened, see `deadwood_tf.xnnpack`), `sparsity_in_file` and
      `model_sparsity` (`tflite_sparsity`'s, the latter against the model).

    Raises:
      ValueError: a bad argument (named); "int8" for several or integer inputs;
        a float file off Keras by more than `atol`, or (interpreter="default")
        an int8 file XNNPack would refuse, naming the layer.
    """
    _check_options(quantize, interpreter, integer_io)
    model, specs = _plain_model(model, input_signature, quantize)
    sample_inputs, sample_labels = _verification_data(
        model, specs, sample_inputs, sample_labels, num_samples, seed, input_ranges)
    representative = _calibration_data(quantize, specs, sample_inputs, representative_data,
                                       num_calibration)
    content, dense_content, widened = _convert_model(model, specs, sparse, quantize,
                                                     representative, integer_io)
    if interpreter == "default":
        xnnpack.refuse_what_xnnpack_refuses(model, path, content, dense_content)
    reference = signature.named_outputs(
        model, model(signature.as_model_inputs(specs, sample_inputs), training=False))
    content, got, default_interpreter, densified = tflite_verify.runnable_file(
        content, dense_content, sample_inputs, reference, interpreter, quantize, path)
    diffs = tflite_verify.check_outputs(got, reference, quantize, atol, path)
    return {"path": atomic.write_bytes(os.fspath(path), content), "bytes": len(content),
            "dense_bytes": len(dense_content), "inputs": [s.name for s in specs],
            "outputs": list(reference), "max_abs_diff": max(diffs.values()),
            "outputs_max_abs_diff": diffs, **_accuracies(got, reference, sample_labels),
            "sparse": sparse, "quantize": quantize, "integer_io": integer_io,
            "interpreter": "default" if default_interpreter else "builtin",
            "runs_on_default_interpreter": default_interpreter,
            "interpreter_setting": "" if default_interpreter else BUILTIN_SETTING,
            "densified_for_xnnpack": densified, "widened_for_xnnpack": widened,
            "sparsity_in_file": tflite_sparsity(content)["sparsity"],
            "model_sparsity": tflite_sparsity(content, model)["model_sparsity"]}
