"""LiteRT without TensorFlow: an interpreter for a `.tflite` file, running it, latency.

Only numpy and `ai_edge_litert` are imported, so that `benchmarks/experiments/time_tflite.py`
can load this file on a machine where only LiteRT is installed. `run_tflite`
runs a file's signature by input and output name; `quantize_input` and
`dequantize_output` convert between float arrays and a file's integer
tensors (`export_tflite(..., integer_io=True)`).

Latency is measured the way a shared machine allows: every file is timed in
turn, round after round (`rounds` rounds of `invokes` single-example invokes
each, after `warmup` untimed invokes, the order reversed every other round),
so that all files see the same load; the median over rounds of the mean
invoke time is reported. Ratios between files measured together are far
steadier than their absolute times.

Example:

    us = time_files(["teacher.tflite", "model.tflite"], threads=(1, 2), rounds=10)
    us["1"]["teacher.tflite"] / us["1"]["model.tflite"]      # speed-up, 1 thread
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np


def interpreter(path_or_bytes, num_threads=None, builtin_kernels=False, **extra):
    """A LiteRT `Interpreter` for a file path or the file's bytes (tensors not allocated).

    `builtin_kernels=True`: LiteRT's built-in kernels only (XNNPack off),
    which some files need (`export_tflite(..., interpreter="builtin")`).
    `extra` goes to `Interpreter` as is.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = dict(extra)
    if num_threads:
        kwargs["num_threads"] = num_threads
    if builtin_kernels:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return Interpreter(model_content=bytes(path_or_bytes), **kwargs)
    return Interpreter(model_path=os.fspath(path_or_bytes), **kwargs)


SIGNATURE = "serving_default"  # the one signature an exported file has


def quantize_input(x, detail):
    """Float inputs `x` to an integer input tensor (`detail`: an entry of the
    interpreter's input details), with its scale and zero point; other inputs
    are cast to the tensor's dtype."""
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer) or np.issubdtype(np.asarray(x).dtype, np.integer):
        return np.asarray(x, dtype=dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float64) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(y, detail):
    """An integer output tensor `y` to floats with its scale and zero point; floats unchanged."""
    scale, zero_point = detail["quantization"]
    if np.issubdtype(y.dtype, np.integer) and scale:
        return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return y


def run_signature(interpreter, inputs) -> dict:
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
    got = runner(**{n: quantize_input(by_name[n], details[n]) for n in names})
    outputs = runner.get_output_details()
    return {n: dequantize_output(np.array(got[n]), outputs[n]) for n in sorted(got)}


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
    got = run_signature(interpreter(path_or_bytes, num_threads, builtin_kernels), x)
    return next(iter(got.values())) if len(got) == 1 else got


def _ready(path, num_threads, builtin_kernels):
    """An interpreter for one example (batch 1) of uniform [0, 1) input, ready to invoke."""
    it = interpreter(path, num_threads, builtin_kernels)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
    it.allocate_tensors()
    x = np.random.default_rng(0).uniform(0, 1, [1, *inp["shape"][1:]]).astype(inp["dtype"])
    it.set_tensor(inp["index"], x)
    return it


def _check_count(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Invalid value for argument `{name}`: expected an int >= {minimum}. "
                         f"Received: {name}={value!r}")


def time_files(paths, threads=(1, 2), rounds: int = 30, invokes: int = 20, warmup: int = 20,
               builtin_kernels: bool = False) -> dict:
    """LiteRT latency of `.tflite` files, measured interleaved (see the module docstring).

    Args:
      paths: the files; their base names must differ (they key the result).
      threads: the `num_threads` settings to measure, each an int >= 1.
      rounds, invokes, warmup: rounds per file, timed invokes per round
        (>= 1 each), untimed invokes per file before the first round (>= 0).
      builtin_kernels: LiteRT's built-in kernels only (XNNPack off). Default:
        the default interpreter (XNNPack on), as a deployed file runs.

    Returns:
      `{str(num_threads): {base name: microseconds per invoke}}`: the median
      over rounds of the round's mean single-example invoke time.

    Raises:
      ValueError: no paths, repeated base names, or a bad count (named).
    """
    paths = [os.fspath(p) for p in paths]
    names = [os.path.basename(p) for p in paths]
    if not paths or len(set(names)) != len(names):
        raise ValueError("Invalid value for argument `paths`: expected one or more .tflite "
                         f"files with distinct base names. Received: paths={paths!r}")
    threads = tuple(threads)
    if not threads:
        raise ValueError("Invalid value for argument `threads`: expected one or more ints >= 1. "
                         "Received: threads=()")
    for t in threads:
        _check_count(t, "threads", 1)
    _check_count(rounds, "rounds", 1)
    _check_count(invokes, "invokes", 1)
    _check_count(warmup, "warmup", 0)
    out = {}
    for t in threads:
        its = {name: _ready(p, t, builtin_kernels) for name, p in zip(names, paths)}
        for it in its.values():
            for _ in range(warmup):
                it.invoke()
        samples = {name: [] for name in its}
        for r in range(rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                it = its[name]
                start = time.perf_counter()
                for _ in range(invokes):
                    it.invoke()
                samples[name].append((time.perf_counter() - start) / invokes * 1e6)
        out[str(t)] = {name: statistics.median(v) for name, v in samples.items()}
    return out
