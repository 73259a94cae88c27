"""Verifying a converted `.tflite` file against the Keras model, before it is written.

`runnable_file` runs the file with LiteRT on the sample inputs and, when
XNNPack refuses it or the sparse file computes non-finite values, falls back
to a file that runs (weights densified for XNNPack, or the dense file);
`check_outputs` compares every output with Keras. Each raises a ValueError
saying that nothing was written.
"""

from __future__ import annotations

import numpy as np
from absl import logging

from deadwood_tf import litert, xnnpack


def _finite(outputs) -> bool:
    return all(np.all(np.isfinite(v)) for v in outputs.values())


def run_file(content: bytes, sample_inputs, interpreter: str = "default"):
    """`(outputs, runs on the default interpreter)`, or `(the refusal, None)` when
    XNNPack refuses the file and `interpreter="default"`; with "builtin" a
    refused file is run on the built-in kernels instead (`(outputs, False)`)."""
    try:
        return litert.run_signature(litert.interpreter(content), sample_inputs), True
    except RuntimeError as e:
        # "failed to delegate X node", or "TfLiteXNNPackDelegate failed to prepare"
        if interpreter == "builtin" and "delegate" in str(e).lower():
            return litert.run_signature(litert.interpreter(content, builtin_kernels=True),
                                        sample_inputs), False
        if "delegate" not in str(e):
            raise
        return e, None


def runnable_file(content: bytes, dense_content: bytes, sample_inputs, reference: dict,
                  interpreter: str, quantize, path) -> tuple:
    """The file to write, its outputs on `sample_inputs`, whether it runs on the
    default interpreter, and the weights densified for XNNPack.

    XNNPack refuses some sparse weights (int8 FULLY_CONNECTED): those are
    stored dense and the rest kept sparse, unless the dense file is smaller.
    A sparse file that computes non-finite outputs where Keras (`reference`)
    does not is replaced by the dense one; a dense one that does raises.
    """
    densified = []
    got, default_interpreter = run_file(content, sample_inputs, interpreter)
    if default_interpreter is None:
        fixed, densified = xnnpack.densify_for(content, xnnpack.refused_op_names(got))
        if densified:
            got, default_interpreter = run_file(fixed, sample_inputs, interpreter)
        if default_interpreter is None or len(fixed) >= len(dense_content):
            logging.warning("deadwood_tf: LiteRT's default XNNPack delegate refuses the sparse "
                            "file and storing its refused weights dense does not help; writing "
                            "the dense file (interpreter='builtin' keeps it sparse).")
            content, densified = dense_content, []
            got, default_interpreter = run_file(content, sample_inputs, interpreter)
        else:
            content = fixed
    if content is not dense_content and not _finite(got) and _finite(reference):
        # Seen with TF 2.21: float16 + EXPERIMENTAL_SPARSITY files compute NaN.
        logging.warning("deadwood_tf: the converter's sparse %s file computes non-finite "
                        "outputs; writing the dense one.", quantize or "float32")
        content, densified = dense_content, []
        got, default_interpreter = run_file(content, sample_inputs, interpreter)
    if not _finite(got) and _finite(reference):
        raise ValueError(f"TFLite export computes non-finite outputs where Keras does not. "
                         f"Nothing was written to {path}.")
    return content, got, default_interpreter, densified


def check_outputs(got: dict, reference: dict, quantize, atol: float, path) -> dict:
    """`{output name: max abs difference}` of the file's outputs `got` to Keras'
    `reference`; raises a ValueError when the names differ, or when a float
    file (`quantize=None`) differs by more than `atol` relative to the largest
    Keras output magnitude (at least `atol`)."""
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
    return diffs
