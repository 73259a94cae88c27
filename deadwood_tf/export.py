"""Export to TFLite, verified by running the file with LiteRT.

Example:

>>> info = export_tflite(stripped, "model.tflite", sample_inputs=x_test[:64])
>>> info["max_abs_diff"], info["bytes"], info["dense_bytes"]
(2.4e-07, 36012, 219288)
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

import numpy as np
import keras
import tensorflow as tf
from absl import logging

from deadwood_tf import prune

QUANTIZE_MODES = (None, "dynamic", "float16")


@contextlib.contextmanager
def _quiet():
    """Silences the converter's stdout summary and its INFO logging."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _convert(model, sparse: bool, quantize) -> bytes:
    # from_keras_model, not from_concrete_functions(..., model): with Keras 3 the
    # latter freezes wrong weights (NaN/inf outputs seen with TF 2.21).
    with _quiet():  # Keras' export prints a summary
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = []
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if quantize is not None:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    converter.optimizations = optimizations
    with _quiet():
        return converter.convert()


def run_tflite(path_or_bytes, x: np.ndarray, num_threads: int | None = None,
               builtin_kernels: bool = False) -> np.ndarray:
    """Runs a single-input, single-output `.tflite` model with LiteRT on a batch `x`.

    `builtin_kernels=True` runs without the default delegate (XNNPack), which
    some files need (e.g. sparse weights with dynamic-range quantization).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"num_threads": num_threads} if num_threads else {}
    if builtin_kernels:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if isinstance(path_or_bytes, (bytes, bytearray)):
        interpreter = Interpreter(model_content=bytes(path_or_bytes), **kwargs)
    else:
        interpreter = Interpreter(model_path=os.fspath(path_or_bytes), **kwargs)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    x = np.asarray(x, dtype=inp["dtype"])
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return np.array(interpreter.get_tensor(out["index"]))


def export_tflite(model, path, sparse: bool = True, quantize=None, sample_inputs=None,
                  num_samples: int = 32, atol: float = 1e-4, seed: int = 0) -> dict:
    """Converts `model` to a `.tflite` file and checks the file against Keras.

    Args:
      model: a plain Keras 3 model, a wrapped model or a `DeadwoodModel` (these
        two are stripped first). One input, one output.
      path: where to write the file. It is written only after the file has
        been verified; an existing file is replaced atomically.
      sparse: store sparse weights compactly (`EXPERIMENTAL_SPARSITY`).
      quantize: None (float32), "dynamic" (int8 weights, float activations)
        or "float16".
      sample_inputs: inputs to verify on; default `num_samples` uniform random
        inputs in [0, 1].
      atol: for float exports, the largest tolerated difference to Keras,
        relative to the largest Keras output magnitude (at least `atol`).

    Returns:
      dict with `path`, `bytes`, `dense_bytes` (the same export without
      sparse storage), `max_abs_diff` and `top1_agreement` (the fraction of
      samples whose arg-max class agrees), `sparse`, `quantize`, and
      `runs_on_default_interpreter`: False when LiteRT's default XNNPack
      delegate refuses the file, which was then verified with the built-in
      kernels (`run_tflite(..., builtin_kernels=True)`).

    Raises:
      ValueError: bad `quantize`, a model with several inputs or outputs, or
        a float export that does not match Keras within `atol` (nothing is
        written then).
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"Invalid value for argument `quantize`: expected one of {QUANTIZE_MODES} "
            f"(full-integer int8 is not supported yet). Received: quantize={quantize!r}"
        )
    model = prune._unwrap_deadwood(model)
    if prune.pruning_wrappers(model):
        model = prune.strip_pruning(model)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            "Invalid value for argument `model`: expected one input and one output. "
            f"Received: {len(model.inputs)} inputs and {len(model.outputs)} outputs"
        )
    if sample_inputs is None:
        rng = np.random.default_rng(seed)
        sample_inputs = rng.uniform(0.0, 1.0, (num_samples, *model.inputs[0].shape[1:]))
    sample_inputs = np.asarray(sample_inputs, dtype="float32")
    expected_shape = tuple(model.inputs[0].shape[1:])
    if sample_inputs.shape[1:] != expected_shape:
        raise ValueError(
            f"Invalid value for argument `sample_inputs`: expected shape (n, *{expected_shape}). "
            f"Received: shape {sample_inputs.shape}"
        )

    content = _convert(model, sparse, quantize)
    dense_bytes = len(content) if not sparse else len(_convert(model, False, quantize))
    reference = np.asarray(model(sample_inputs, training=False))
    try:
        got = run_tflite(content, sample_inputs)
        default_interpreter = True
    except RuntimeError as e:
        if "delegate" not in str(e):
            raise
        # XNNPack refuses some sparse layouts (sparse + quantized weights); the
        # built-in kernels run them. Verify under that setting and say so.
        got = run_tflite(content, sample_inputs, builtin_kernels=True)
        default_interpreter = False
        logging.warning(
            "deadwood_tf: the exported file does not run with LiteRT's default XNNPack "
            "delegate (%s); it was verified with the built-in kernels: create the "
            "interpreter with experimental_op_resolver_type="
            "OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES.", str(e).splitlines()[0])
    max_abs_diff = float(np.max(np.abs(got - reference)))
    agreement = float(np.mean(got.argmax(-1) == reference.argmax(-1)))
    tolerance = atol * max(1.0, float(np.max(np.abs(reference))))
    if quantize is None and not max_abs_diff <= tolerance:
        raise ValueError(
            f"TFLite export does not match the Keras model: max abs difference "
            f"{max_abs_diff:.3g} > {tolerance:.3g}. Nothing was written to {path}."
        )

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
    return {"path": path, "bytes": len(content), "dense_bytes": dense_bytes,
            "max_abs_diff": max_abs_diff, "top1_agreement": agreement,
            "sparse": sparse, "quantize": quantize,
            "runs_on_default_interpreter": default_interpreter}


def tflite_sparsity(path_or_bytes) -> dict:
    """Sparsity read back from a `.tflite` file's sparse-encoded weight tensors.

    Returns `{"tensors": [{"name", "shape", "size", "stored", "zeros",
    "sparsity"}], "size", "zeros", "sparsity"}` over the tensors the file
    stores in a sparse format (dense-stored tensors are not listed).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    source = ({"model_content": bytes(path_or_bytes)}
              if isinstance(path_or_bytes, (bytes, bytearray))
              else {"model_path": os.fspath(path_or_bytes)})
    interpreter = Interpreter(
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, **source)
    interpreter.allocate_tensors()
    rows = []
    for detail in interpreter.get_tensor_details():
        if not detail.get("sparsity_parameters"):
            continue
        values = np.asarray(interpreter.get_tensor(detail["index"]))
        size = int(np.prod(detail["shape"]))
        zeros = size - int(np.count_nonzero(values))
        rows.append({"name": detail["name"], "shape": [int(s) for s in detail["shape"]],
                     "size": size, "stored": int(values.size), "zeros": zeros,
                     "sparsity": zeros / size if size else 0.0})
    size = sum(r["size"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    return {"tensors": rows, "size": size, "zeros": zeros,
            "sparsity": zeros / size if size else 0.0}
