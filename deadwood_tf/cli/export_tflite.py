"""deadwood-export-tflite: a .keras model to a verified, sparse TFLite file.

  deadwood-export-tflite --model=runs/digits/model.keras --output=model.tflite --quantize=dynamic
"""

import json
import os

from absl import app, flags

_MODEL = flags.DEFINE_string("model", None, "A .keras file (plain, wrapped or DeadwoodModel).")
_OUTPUT = flags.DEFINE_string("output", None, "The .tflite file to write.")
_QUANTIZE = flags.DEFINE_enum("quantize", "none", ["none", "dynamic", "float16"],
                              "Post-training quantization.")
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
    sample = None
    if _DATASET.value:
        from deadwood_tf import data

        sample = data.load_dataset(_DATASET.value, _DATA_PATH.value).x_test[:256]
    info = dw.export_tflite(model, _OUTPUT.value, sparse=_SPARSE.value,
                            quantize=None if _QUANTIZE.value == "none" else _QUANTIZE.value,
                            sample_inputs=sample)
    info["sparsity_in_file"] = dw.export.tflite_sparsity(_OUTPUT.value)["sparsity"]
    print(json.dumps(info, indent=2))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
