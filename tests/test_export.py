import os

import numpy as np
import pytest

import deadwood_tf as dw


@pytest.fixture(scope="module")
def pruned(teacher):
    wrapped = dw.prune_model(teacher)
    dw.apply_sparsity(wrapped, 0.9)
    return wrapped


def test_sparse_float_export_matches_keras_and_is_smaller(pruned, digits, tmp_path):
    x = digits[2][:64]
    path = tmp_path / "m.tflite"
    info = dw.export_tflite(pruned, path, sample_inputs=x)  # wrapped: stripped first
    assert path.exists() and os.path.getsize(path) == info["bytes"]
    assert info["max_abs_diff"] <= 1e-4 and info["top1_agreement"] == 1.0
    assert info["bytes"] < 0.4 * info["dense_bytes"]
    assert info["runs_on_default_interpreter"]
    out = dw.run_tflite(path, x)
    np.testing.assert_allclose(out, dw.strip_pruning(pruned)(x), atol=1e-4)


def test_dense_export_has_the_dense_size(pruned, tmp_path):
    info = dw.export_tflite(dw.strip_pruning(pruned), tmp_path / "d.tflite", sparse=False)
    assert info["bytes"] == info["dense_bytes"]


# Sparse dynamic-range FULLY_CONNECTED weights need the built-in kernels (XNNPack
# refuses them); with interpreter="default" the dense file would be written.
@pytest.mark.parametrize("mode,interpreter", [("dynamic", "builtin"), ("float16", "default")])
def test_quantized_exports_are_verified_by_class_agreement(mode, interpreter, pruned, digits,
                                                           tmp_path):
    x = digits[2][:128]
    info = dw.export_tflite(pruned, tmp_path / f"{mode}.tflite", quantize=mode, sample_inputs=x,
                            interpreter=interpreter)
    assert info["top1_agreement"] >= 0.95
    assert info["bytes"] < info["dense_bytes"]
    out = dw.run_tflite(tmp_path / f"{mode}.tflite", x,
                        builtin_kernels=not info["runs_on_default_interpreter"])
    assert np.mean(out.argmax(1) == digits[3][:128]) > 0.85


def test_bad_arguments_leave_existing_files_untouched(pruned, tmp_path):
    path = tmp_path / "keep.tflite"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="`quantize`.*Received: quantize='int4'"):
        dw.export_tflite(pruned, path, quantize="int4")
    with pytest.raises(ValueError, match="`sample_inputs`"):
        dw.export_tflite(pruned, path, sample_inputs=np.zeros((4, 3, 3, 1)))
    assert path.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [path]


def test_export_refuses_to_write_a_file_that_disagrees_with_keras(pruned, tmp_path, monkeypatch):
    path = tmp_path / "bad.tflite"
    from deadwood_tf import litert

    real = litert.run_signature
    monkeypatch.setattr(litert, "run_signature",
                        lambda *a: {k: v + 1.0 for k, v in real(*a).items()})
    with pytest.raises(ValueError, match="does not match the Keras model"):
        dw.export_tflite(pruned, path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_latency_of_a_tiny_file_is_positive_and_finite(tmp_path):
    import keras
    from deadwood_tf import litert

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    paths = [tmp_path / "a.tflite", tmp_path / "b.tflite"]
    for path in paths:
        dw.export_tflite(model, path, sparse=False)
    us = litert.time_files(paths, threads=(1, 2), rounds=3, invokes=2, warmup=1)
    assert set(us) == {"1", "2"}
    for by_file in us.values():
        assert set(by_file) == {"a.tflite", "b.tflite"}
        assert all(np.isfinite(v) and v > 0 for v in by_file.values())
    with pytest.raises(ValueError, match=r"`rounds`: expected an int >= 1. Received: rounds=0"):
        litert.time_files(paths, rounds=0)
    with pytest.raises(ValueError, match=r"`paths`: .*distinct base names"):
        litert.time_files([paths[0], paths[0]])


def test_export_module_docstring_example_runs():
    import doctest

    from deadwood_tf import export

    result = doctest.testmod(export)
    assert result.attempted > 0 and result.failed == 0


def test_export_keeps_its_names_and_its_helpers_are_public():
    from deadwood_tf import export, litert, tflite_reader, xnnpack

    assert export.run_tflite is litert.run_tflite is dw.run_tflite
    assert export.tflite_sparsity is tflite_reader.tflite_sparsity
    assert export.XNNPACK_MAX_REQUANTIZATION == xnnpack.XNNPACK_MAX_REQUANTIZATION == 256.0
    assert export.SIGNATURE == litert.SIGNATURE == "serving_default"
    detail = {"dtype": np.int8, "quantization": (0.5, -3)}
    q = litert.quantize_input(np.array([0.0, 1.0, 100.0], "float32"), detail)
    np.testing.assert_array_equal(q, [-3, -1, 127])  # scaled, shifted, clipped to int8
    np.testing.assert_allclose(litert.dequantize_output(q, detail), [0.0, 1.0, 65.0])
