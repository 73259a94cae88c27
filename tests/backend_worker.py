"""The mask path on another Keras backend, in a process of its own.

Run by tests/test_backends.py as `KERAS_BACKEND=<name> python backend_worker.py
OUT.json`: the backend is chosen when Keras is first imported, and the pytest
process runs on TensorFlow. Measures, for a small CNN and a small functional
MLP on scikit-learn's digits, what the test then asserts, and writes it to
OUT.json; on JAX, also the JAX cells of two rows of the model coverage table.
"""

import json
import os
import sys
import tempfile

import keras
import numpy as np
from keras import ops
from sklearn.datasets import load_digits

import deadwood_tf as dw
from deadwood_tf import masks, pruning_impl, shrink

SPARSITY, SECOND_CUT, CALLBACK_SPARSITY = 0.8, 0.9, 0.7
# Rows of docs/model_coverage.md whose JAX cell is computed here too (the
# coverage tool computes them in a JAX process of its own).
COVERAGE_MODELS = ("subclassed", "two outputs")


def cnn():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ], name="cnn")


def mlp():
    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    hidden = keras.layers.Dense(32, activation="relu")(flat)
    outputs = keras.layers.Dense(10)(keras.layers.Concatenate()([hidden, flat]))
    return keras.Model(inputs, outputs, name="mlp")


def compiled(model):
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def arrays(model):
    return [(ops.convert_to_numpy(w.value), ops.convert_to_numpy(m.value))
            for w, m in dw.pruned_weights(model)]


def masked_nonzeros(model):
    """Masked entries of the weights themselves (not W * M) that are not zero."""
    return int(sum(np.count_nonzero(w[m == 0]) for w, m in arrays(model)))


def exact_sparsity(model, sparsity):
    size = sum(w.size for w, _ in arrays(model))
    return round(sparsity * size) / size


def measure(build, x, y):
    keras.utils.set_random_seed(0)
    model = build()
    out = {}

    pruned = dw.prune_model(model)
    out["cut"] = dw.apply_sparsity(pruned, SPARSITY)
    out["cut_expected"] = exact_sparsity(pruned, SPARSITY)
    before = arrays(pruned)
    compiled(pruned).fit(x, y, epochs=1, batch_size=64, verbose=0)
    out["masked_nonzeros_after_fit"] = masked_nonzeros(pruned)
    out["kept_changed"] = float(np.mean(np.concatenate([
        (w != b)[m == 1] for (w, m), (b, _) in zip(arrays(pruned), before)])))
    # A second cut after the step was compiled: the next fit must see the new masks.
    out["second_cut"] = dw.apply_sparsity(pruned, SECOND_CUT)
    out["second_cut_expected"] = exact_sparsity(pruned, SECOND_CUT)
    pruned.fit(x, y, epochs=1, batch_size=64, verbose=0)
    out["masked_nonzeros_after_second_fit"] = masked_nonzeros(pruned)

    stripped = dw.strip_pruning(pruned)
    out["stripped_masks"] = sum(masks.mask_of(v) is not None for v in stripped.weights)
    reference = pruned.predict(x, verbose=0)
    out["strip_max_diff"] = float(np.max(np.abs(stripped.predict(x, verbose=0) - reference)))
    path = os.path.join(tempfile.mkdtemp(), "stripped.keras")
    stripped.save(path)
    loaded = keras.models.load_model(path)
    out["loaded_max_diff"] = float(np.max(np.abs(loaded.predict(x, verbose=0) - reference)))
    out["loaded_sparsity"] = dw.sparsity_report(dw.prune_model(loaded, masks_from_zeros=True)).sparsity
    out["pruned_sparsity"] = dw.sparsity_report(pruned).sparsity

    # DeadwoodCallback on a plain pruned model: gradual cuts over two epochs.
    gradual = compiled(dw.prune_model(model))
    history = gradual.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[
        dw.DeadwoodCallback(CALLBACK_SPARSITY, prune_epoch=2, verbose=0)])
    out["callback_sparsity_logs"] = [float(s) for s in history.history["sparsity"]]
    out["callback_expected"] = exact_sparsity(gradual, CALLBACK_SPARSITY)
    out["callback_masked_nonzeros"] = masked_nonzeros(gradual)
    return out


def main(path):
    data = load_digits()
    x = (data.images[:256] / 16.0).astype("float32")[..., None]
    y = data.target[:256].astype("int32")
    result = {"backend": keras.backend.backend(),
              "variable_type": type(cnn().weights[0].value).__module__}
    for build in (cnn, mlp):
        result[build.__name__] = measure(build, x, y)
    # Structured cuts: an N:M pattern, and channel groups removed by shrink_model.
    keras.utils.set_random_seed(0)
    pattern = dw.prune_model(cnn())
    result["two_four"] = dw.apply_sparsity(pattern, 0.5, pattern="2:4")
    groups = [(w * m).reshape(pruning_impl.matrix_view(w.shape)).T for w, m in arrays(pattern)]
    # Groups of 4 consecutive input-axis weights of each output: at most 2 left.
    result["two_four_worst_group"] = max(
        int(np.count_nonzero(g.reshape(g.shape[0], -1, 4), axis=-1).max())
        for g in groups if g.shape[1] % 4 == 0)
    channels = dw.prune_model(cnn())
    result["channel_macs_removed"] = dw.apply_sparsity(channels, 0.5, pattern="channel",
                                                       unit="macs", round_to=1)
    result["shrunk_max_diff"] = float(np.max(np.abs(
        shrink.shrink_model(channels).predict(x, verbose=0) - channels.predict(x, verbose=0))))
    teacher = cnn()
    deadwood = dw.DeadwoodModel(dw.prune_model(teacher), teacher, attack=None)
    deadwood.compile("adam")
    try:
        deadwood.fit(x, y, epochs=1, verbose=0)
        result["deadwood_model_fit"] = "ran"
    except NotImplementedError as e:
        result["deadwood_model_fit"] = str(e)
    if keras.backend.backend() == "jax":
        from deadwood_tf.benchmarks import coverage

        result["coverage_cells"] = {name: coverage.jax_cell(name) for name in COVERAGE_MODELS}
    with open(path, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
