"""Full-integer export, the default-interpreter guarantee, and what the file stores."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import deadwood_tf as dw
from deadwood_tf import litert, xnnpack


@pytest.fixture(scope="module")
def pruned(teacher):
    wrapped = dw.prune_model(teacher)
    dw.apply_sparsity(wrapped, 0.9)
    return dw.strip_pruning(wrapped)


def _default_interpreter_runs(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=os.fspath(path))
    inp = interpreter.get_input_details()[0]
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], litert.quantize_input(x[:1], inp))
    interpreter.invoke()
    return True


def test_int8_export_runs_by_default_and_reports_accuracy(pruned, digits, tmp_path):
    x_train, _, x, y = digits
    path = tmp_path / "int8.tflite"
    info = dw.export_tflite(pruned, path, quantize="int8", representative_data=x_train[:128],
                            sample_inputs=x[:200], sample_labels=y[:200])
    assert info["runs_on_default_interpreter"] and info["interpreter_setting"] == ""
    assert _default_interpreter_runs(path, x)
    assert info["top1_agreement"] >= 0.95
    assert abs(info["accuracy"] - info["keras_accuracy"]) <= 0.03
    assert info["bytes"] <= info["dense_bytes"]
    assert all(t["dtype"] == "int8" for t in dw.export.tflite_sparsity(path)["tensors"])


def test_default_int8_export_stores_only_refused_fully_connected_weights_dense(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    conv_heavy = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(32, 3, name="c1"),
        keras.layers.Conv2D(64, 3, name="c2"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(16, name="fc")])
    wrapped = dw.prune_model(conv_heavy)
    dw.apply_sparsity(wrapped, 0.9, scope="layer")
    x = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    info = dw.export_tflite(wrapped, tmp_path / "m.tflite", quantize="int8", sample_inputs=x)
    assert info["runs_on_default_interpreter"]
    assert _default_interpreter_runs(tmp_path / "m.tflite", x)
    stored = {t["name"]: t["storage"] for t in dw.export.tflite_sparsity(info["path"])["tensors"]}
    assert len(info["densified_for_xnnpack"]) == 1
    assert [stored[n] for n in info["densified_for_xnnpack"]] == ["dense"]
    assert sorted(stored.values()) == ["dense", "sparse", "sparse"]   # both convolutions sparse
    assert info["bytes"] < 0.6 * info["dense_bytes"]
    builtin = dw.export_tflite(wrapped, tmp_path / "b.tflite", quantize="int8", sample_inputs=x,
                               interpreter="builtin")
    assert all(t["storage"] == "sparse" for t in
               dw.export.tflite_sparsity(builtin["path"])["tensors"])


def test_int8_builtin_keeps_every_weight_sparse_and_says_which_interpreter(
        pruned, digits, tmp_path):
    x_train, _, x, y = digits
    path = tmp_path / "int8_builtin.tflite"
    default = dw.export_tflite(pruned, tmp_path / "d.tflite", quantize="int8",
                               representative_data=x_train[:128], sample_inputs=x[:64])
    info = dw.export_tflite(pruned, path, quantize="int8", interpreter="builtin",
                            representative_data=x_train[:128], sample_inputs=x[:64])
    assert not info["runs_on_default_interpreter"]
    assert "BUILTIN_WITHOUT_DEFAULT_DELEGATES" in info["interpreter_setting"]
    assert info["bytes"] < 0.6 * default["bytes"]
    report = dw.export.tflite_sparsity(path)
    assert report["sparse_size"] > 0.9 * report["size"]
    out = dw.run_tflite(path, x[:64], builtin_kernels=True)
    assert np.mean(out.argmax(1) == y[:64]) > 0.85


def _residual_with_a_dead_branch():
    """A residual block whose branch was cut to 1 channel, dead (a ReLU of a
    negative) on inputs in [0, 1]."""
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    x = inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="stem")(x)
    y = L.Conv2D(1, 3, padding="same", activation="relu", name="c1",
                 bias_initializer=keras.initializers.Constant(-50.0))(x)
    y = L.Conv2D(4, 3, padding="same", name="c2", bias_initializer="random_normal")(y)
    x = L.GlobalAveragePooling2D()(L.ReLU()(L.Add()([x, y])))
    return keras.Model(inp, L.Dense(3, name="logits")(x))


def test_int8_widens_dead_outputs_so_that_xnnpack_takes_the_file(tmp_path):
    model = _residual_with_a_dead_branch()
    x = np.random.default_rng(0).uniform(0, 1, (32, 8, 8, 3)).astype("float32")
    specs = dw.export.signature.input_specs(model)
    with dw.export._serving_saved_model(model, specs) as saved, dw.export.warnings_off():
        plain = dw.export._converter(saved, False, "int8", x).convert()
    assert [r[0] for r in xnnpack.xnnpack_refusals(plain)] == ["CONV_2D"]  # what failed
    info = dw.export_tflite(model, tmp_path / "m.tflite", quantize="int8", sample_inputs=x)
    assert info["runs_on_default_interpreter"] and info["widened_for_xnnpack"] == ["c1"]
    assert _default_interpreter_runs(info["path"], x)
    scales = xnnpack.requantization_scales((tmp_path / "m.tflite").read_bytes())
    assert len(scales) == 4 and max(r[2] for r in scales) <= 1.001
    assert info["top1_agreement"] == 1.0
    assert info["max_abs_diff"] <= 0.02 * np.max(np.abs(model.predict(x, verbose=0)))


def test_int8_export_names_the_layer_xnnpack_would_refuse(tmp_path, monkeypatch):
    model = _residual_with_a_dead_branch()
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 3)).astype("float32")
    monkeypatch.setattr(xnnpack, "widen_dead_ranges", lambda content: (content, []))
    path = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match="layer 'c1' \\(CONV_2D\\).*>= 256.*Nothing was written"):
        dw.export_tflite(model, path, quantize="int8", sample_inputs=x)
    assert not path.exists()
    info = dw.export_tflite(model, path, quantize="int8", sample_inputs=x, interpreter="builtin")
    assert not info["runs_on_default_interpreter"] and info["top1_agreement"] == 1.0


def test_integer_io_scales_float_inputs_with_the_files_quantization(pruned, digits, tmp_path):
    x_train, _, x, y = digits
    path = tmp_path / "io.tflite"
    data = tf.data.Dataset.from_tensor_slices((x_train[:96], np.zeros(96))).batch(32)
    info = dw.export_tflite(pruned, path, quantize="int8", integer_io=True,
                            representative_data=data, sample_inputs=x[:128],
                            sample_labels=y[:128])
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_path=str(path)).get_input_details()[0]
    assert detail["dtype"] == np.int8 and detail["quantization"][0] > 0
    assert info["top1_agreement"] >= 0.95
    out = dw.run_tflite(path, x[:128])
    assert out.dtype == np.float32
    assert np.mean(out.argmax(1) == y[:128]) > 0.85


def test_tflite_sparsity_lists_dense_and_sparse_weight_tensors(pruned, tmp_path):
    dense = dw.export_tflite(pruned, tmp_path / "dense.tflite", sparse=False)
    sparse = dw.export_tflite(pruned, tmp_path / "sparse.tflite")
    expected = dw.sparsity_report(pruned)
    for info, storage in ((dense, {"dense"}), (sparse, {"sparse", "dense"})):
        report = dw.export.tflite_sparsity(info["path"])
        assert len(report["tensors"]) == 4            # 2 convolution + 2 dense kernels
        assert report["size"] == expected.size and report["zeros"] == expected.zeros
        assert {t["storage"] for t in report["tensors"]} <= storage
        assert info["sparsity_in_file"] == pytest.approx(expected.sparsity)
    assert {t["storage"] for t in dw.export.tflite_sparsity(dense["path"])["tensors"]} == {"dense"}
    assert any(t["storage"] == "sparse" for t in dw.export.tflite_sparsity(sparse["path"])["tensors"])


def test_bad_int8_arguments_raise_before_anything_is_written(pruned, digits, tmp_path):
    path = tmp_path / "keep.tflite"
    path.write_bytes(b"old")
    x = digits[2][:16]
    with pytest.raises(ValueError, match="`integer_io`.*quantize='int8'"):
        dw.export_tflite(pruned, path, integer_io=True)
    with pytest.raises(ValueError, match="`interpreter`.*Received: interpreter='gpu'"):
        dw.export_tflite(pruned, path, interpreter="gpu")
    with pytest.raises(ValueError, match="`representative_data`.*shape"):
        dw.export_tflite(pruned, path, quantize="int8", representative_data=np.zeros((4, 3, 3)))
    with pytest.raises(ValueError, match="`representative_data`.*int8"):
        dw.export_tflite(pruned, path, representative_data=x)
    with pytest.raises(ValueError, match="`sample_labels`"):
        dw.export_tflite(pruned, path, sample_inputs=x, sample_labels=np.zeros(3, int))
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]


def test_evaluate_transfers_keras_attacks_to_an_int8_file(pruned, digits, tmp_path):
    from deadwood_tf.cli import evaluate

    x_train, _, x, y = digits
    keras_path = str(tmp_path / "m.keras")
    pruned.save(keras_path)
    path = str(tmp_path / "int8.tflite")
    dw.export_tflite(pruned, path, quantize="int8", integer_io=True,
                     representative_data=x_train[:128])
    attacks = [dw.FGSM(0.1), dw.PGD(0.1, steps=5, step_size=0.03)]
    result = evaluate.evaluate(path, keras_path, x[:128], y[:128], attacks)
    acc = result["accuracy"]
    assert acc["clean"] > 0.85
    transfer = [acc[a.name + "_transfer"] for a in attacks]
    assert len(transfer) == 2 and max(transfer) < acc["clean"]
    assert result["sparsity"] == pytest.approx(dw.sparsity_report(pruned).sparsity)
    json.dumps(result)
