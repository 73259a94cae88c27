"""deadwood-export-tflite: a .keras model to a verified, sparse TFLite file.

  deadwood-export-tflite --model=runs/digits/model.keras --output=model.tflite --quantize=dynamic
  deadwood-export-tflite --model=runs/digits/model.keras --output=int8.tflite --quantize=int8 \
      --dataset=digits      # calibrated on training inputs, verified on labelled test data
"""

import json
import os

from absl import app, flags

_MODEL = flags.DEFINE_string("model", None, "A .keras file (plain, pruned or DeadwoodModel).")
_OUTPUT = flags.DEFINE_string("output", None, "The .tflite file to write.")
_QUANTIZE = flags.DEFINE_enum("quantize", "none", ["none", "dynamic", "float16", "int8"],
                              "Post-training quantization (int8: full-integer, calibrated on "
                              "--dataset's training inputs, else on the verification inputs).")
_INTEGER_IO = flags.DEFINE_bool("integer_io", False, "int8 only: int8 input and output tensors.")
_INTERPRETER = flags.DEFINE_enum(
    "interpreter", "default", ["default", "builtin"],
    "default: the file runs on a default LiteRT interpreter (XNNPack); builtin: keep every "
    "weight sparse, the file then needs the built-in kernels.")
_SPARSE = flags.DEFINE_bool("sparse", True, "Store sparse weights compactly.")
_DATASET = flags.DEFINE_string(
    "dataset", "", "Verify on this dataset's test inputs (digits, mnist, ...); default: "
    "random inputs in [0, 1].")
_DATA_PATH = flags.DEFINE_string("data_path", "", "An .npz in Keras' layout for --dataset.")
flags.mark_flags_as_required(["model", "output"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import keras

    import deadwood_tf as dw

    if not _MODEL.value.endswith(".keras") or not os.path.exists(_MODEL.value):
        raise app.UsageError(f"--model: expected an existing .keras file. Received: {_MODEL.value!r}")
    model = keras.models.load_model(_MODEL.value)
    quantize = None if _QUANTIZE.value == "none" else _QUANTIZE.value
    sample = labels = representative = None
    if _DATASET.value:
        from deadwood_tf import data

        ds = data.load_dataset(_DATASET.value, _DATA_PATH.value)
        sample, labels = ds.x_test[:256], ds.y_test[:256]
        representative = ds.x_train[:256] if quantize == "int8" else None
    try:
        info = dw.export_tflite(model, _OUTPUT.value, sparse=_SPARSE.value, quantize=quantize,
                                sample_inputs=sample, sample_labels=labels,
                                representative_data=representative,
                                integer_io=_INTEGER_IO.value, interpreter=_INTERPRETER.value)
    except ValueError as e:
        raise app.UsageError(str(e))
    info["tensors"] = [{k: t[k] for k in ("name", "storage", "dtype", "size", "sparsity")}
                       for t in dw.export.tflite_sparsity(_OUTPUT.value)["tensors"]]
    print(json.dumps(info, indent=2))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
