"""deadwood-evaluate: clean and robust accuracy, and sparsity, of a saved model.

  deadwood-evaluate --model=runs/digits/model.keras --dataset=digits --eps=0.1
  deadwood-evaluate --model=runs/digits/model.tflite --keras_model=runs/digits/model.keras \
      --dataset=digits --eps=0.1      # attacks made on the Keras model, run on the file

A .tflite file of any export mode works, int8 included: float inputs (clean
or adversarial) are quantized with the file's input scale and zero point when
it takes integer inputs, and a file that needs the built-in kernels
(`export_tflite(..., interpreter="builtin")`) is run with them.
"""

import json
import os

import numpy as np
from absl import app, flags

_MODEL = flags.DEFINE_string("model", None, "A .keras or .tflite file.")
_KERAS_MODEL = flags.DEFINE_string(
    "keras_model", "", "For a .tflite --model: the Keras model to craft the attacks on "
    "(transfer attacks). Without it, a .tflite file gets clean accuracy only.")
_DATASET = flags.DEFINE_enum("dataset", "digits", ["digits", "mnist", "fashion_mnist", "cifar10",
                                                   "npz"], "Dataset to evaluate on (test split).")
_DATA_PATH = flags.DEFINE_string("data_path", "", "An .npz in Keras' layout.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 0, "Test examples to use (0: all).")
ATTACK_NAMES = ("fgsm", "pgd", "square", "autoattack")
_ATTACKS = flags.DEFINE_list(
    "attacks", ["fgsm", "pgd"], "Attacks: fgsm, pgd (cleverhans); square, autoattack (ART's "
    "gradient-free Square Attack; APGD-CE + Square; need deadwood_tf[robustness]).")
_SQUARE_QUERIES = flags.DEFINE_integer("square_queries", 1000, "Square Attack query budget.")
_APGD_STEPS = flags.DEFINE_integer("apgd_steps", 50, "APGD-CE steps inside autoattack.")
_EPS = flags.DEFINE_float("eps", 0.2, "Perturbation radius, on the [0, 1] input scale.")
_NORM = flags.DEFINE_enum("norm", "linf", ["linf", "l2"], "Perturbation norm.")
_PGD_STEPS = flags.DEFINE_integer("pgd_steps", 20, "PGD steps.")
_PGD_STEP_SIZE = flags.DEFINE_float("pgd_step_size", 0.0, "PGD step size (0: 2.5 * eps / steps).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the data split and subset.")
_OUTPUT = flags.DEFINE_string("output_json", "", "Also write the results to this JSON file.")
flags.mark_flag_as_required("model")


def _load_keras(path, flag):
    import keras

    import deadwood_tf  # noqa: F401  registers the classes a saved DeadwoodModel needs

    if not os.path.exists(path):
        raise app.UsageError(f"--{flag}: no file at {path!r}")
    model = keras.models.load_model(path)
    return getattr(model, "student", model) if hasattr(model, "teacher") else model


def evaluate(model_path, keras_model_path, x, y, attacks) -> dict:
    from deadwood_tf import attacks as attacks_lib, export, prune

    out = {"model": model_path, "num_examples": int(len(x))}
    if model_path.endswith(".keras"):
        model = _load_keras(model_path, "model")
        out["accuracy"] = attacks_lib.evaluate_robustness(model, x, y, attacks, verbose=1)
        out["sparsity"] = prune.sparsity_report(model).sparsity
        return out
    if not model_path.endswith(".tflite"):
        raise app.UsageError(f"--model: expected a .keras or .tflite file. Received: {model_path!r}")
    if not os.path.exists(model_path):
        raise app.UsageError(f"--model: no file at {model_path!r}")

    def run(inputs):
        try:
            return export.run_tflite(model_path, inputs)
        except RuntimeError:  # e.g. XNNPack refuses sparse int8 FULLY_CONNECTED weights
            return export.run_tflite(model_path, inputs, builtin_kernels=True)

    import tensorflow as tf

    accuracy = {"clean": float(np.mean(run(x).argmax(-1) == y))}
    if keras_model_path:
        source = _load_keras(keras_model_path, "keras_model")
        fn = attacks_lib.logits_fn(source)
        for attack in attacks:
            x_adv = np.concatenate([np.asarray(
                attack(lambda t: fn(t, training=False), tf.constant(x[i:i + 256]),
                       tf.constant(y[i:i + 256]))) for i in range(0, len(x), 256)])
            accuracy[attack.name + "_transfer"] = float(np.mean(run(x_adv).argmax(-1) == y))
    out["accuracy"] = accuracy
    out["sparsity"] = export.tflite_sparsity(model_path)["sparsity"]
    out["sparsity_note"] = "read back from the file's weight tensors"
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from deadwood_tf import attacks as attacks_lib, data

    unknown = [a for a in _ATTACKS.value if a not in ATTACK_NAMES]
    if unknown:
        raise app.UsageError(
            f"--attacks: expected a list of {', '.join(ATTACK_NAMES)}. Received: {unknown}")
    if _EPS.value < 0:
        raise app.UsageError(f"--eps: expected a number >= 0. Received: {_EPS.value}")
    ds = data.load_dataset(_DATASET.value, _DATA_PATH.value, num_test=_NUM_EXAMPLES.value,
                           seed=_SEED.value)
    settings = {"fgsm": {}, "pgd": dict(steps=_PGD_STEPS.value,
                                         step_size=_PGD_STEP_SIZE.value or None),
                "square": dict(max_queries=_SQUARE_QUERIES.value),
                "autoattack": dict(apgd_steps=_APGD_STEPS.value,
                                   square_queries=_SQUARE_QUERIES.value)}
    attacks = [attacks_lib.make_attack(name, _EPS.value, norm=_NORM.value, **settings[name])
               for name in _ATTACKS.value]
    result = evaluate(_MODEL.value, _KERAS_MODEL.value, ds.x_test, ds.y_test, attacks)
    width = max(len(k) for k in result["accuracy"]) + 2
    print(f"\n{'metric':<{width}} value")
    for k, v in result["accuracy"].items():
        print(f"{k:<{width}} {100 * v:6.2f} %")
    print(f"{'sparsity':<{width}} {result['sparsity']:.4f}"
          + (f"  ({result['sparsity_note']})" if "sparsity_note" in result else ""))
    print(f"({result['num_examples']} test examples of {_DATASET.value}, {result['model']})")
    if _OUTPUT.value:
        with open(_OUTPUT.value, "w") as f:
            json.dump(result, f, indent=2)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
