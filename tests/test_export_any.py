"""Export of any model: several inputs and outputs, subclassed, token ids,
KerasHub; every output verified, inputs and outputs by name, and the file's
sparsity equal to Keras'."""

import keras
import numpy as np
import pytest

import deadwood_tf as dw
from deadwood_tf import export, litert

L = keras.layers


def _pruned_and_stripped(model, sparsity=0.9):
    pruned = dw.prune_model(model)
    dw.apply_sparsity(pruned, sparsity)
    return dw.strip_pruning(pruned)


def _export_and_check(model, tmp_path, **kwargs):
    """Exports `model`; checks every output by name against Keras, and the sparsity."""
    info = dw.export_tflite(model, tmp_path / "m.tflite", **kwargs)
    read = export.tflite_sparsity(info["path"], model)
    keras_sparsity = dw.sparsity_report(model).sparsity
    assert abs(read["model_sparsity"] - keras_sparsity) <= 0.01, (read, keras_sparsity)
    assert abs(info["model_sparsity"] - keras_sparsity) <= 0.01
    assert info["max_abs_diff"] <= 1e-4
    return info


def test_two_inputs_are_named_and_every_output_is_verified(tmp_path):
    keras.utils.set_random_seed(0)
    left, right = keras.Input((8, 8, 1), name="left"), keras.Input((5,), name="right")
    h = L.Concatenate()([L.GlobalAveragePooling2D()(L.Conv2D(16, 3)(left)), L.Dense(16)(right)])
    model = _pruned_and_stripped(keras.Model([left, right], L.Dense(3, name="logits")(h)))
    info = _export_and_check(model, tmp_path)
    assert info["inputs"] == ["left", "right"] and info["outputs"] == ["logits"]
    rng = np.random.default_rng(1)
    x = {"left": rng.uniform(0, 1, (4, 8, 8, 1)), "right": rng.uniform(0, 1, (4, 5))}
    want = model([x["left"], x["right"]])
    np.testing.assert_allclose(dw.run_tflite(info["path"], x), want, atol=1e-5)
    np.testing.assert_allclose(dw.run_tflite(info["path"], [x["left"], x["right"]]), want,
                               atol=1e-5)
    with pytest.raises(ValueError, match=r"`sample_inputs`: expected a dict with the keys "
                                         r"\['left', 'right'\]"):
        dw.export_tflite(model, tmp_path / "bad.tflite", sample_inputs={"left": x["left"]})
    assert not (tmp_path / "bad.tflite").exists()


def test_two_outputs_are_named_and_each_checked(tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    inp = keras.Input((16,))
    h = L.Dense(32, activation="relu")(inp)
    model = _pruned_and_stripped(keras.Model(inp, [L.Dense(4, name="logits")(h),
                                                    L.Dense(2, name="aux")(h)]))
    info = _export_and_check(model, tmp_path)
    assert info["inputs"] == ["input"] and sorted(info["outputs"]) == ["aux", "logits"]
    x = np.random.default_rng(1).uniform(0, 1, (4, 16)).astype("float32")
    got = dw.run_tflite(info["path"], x)
    for name, want in zip(["logits", "aux"], model(x)):
        np.testing.assert_allclose(got[name], want, atol=1e-5)
    # A difference in the second output alone is caught, naming it.
    real = litert.run_signature
    monkeypatch.setattr(litert, "run_signature", lambda *a: {k: v + (k == "aux") for k, v in
                                                             real(*a).items()})
    with pytest.raises(ValueError, match="output 'aux' max abs difference"):
        dw.export_tflite(model, tmp_path / "bad.tflite")
    assert not (tmp_path / "bad.tflite").exists()


@keras.saving.register_keras_serializable(package="deadwood_tf_test")
class TinyCNN(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(8, 3, activation="relu")
        self.pool = L.GlobalAveragePooling2D()
        self.head = L.Dense(3)

    def call(self, x):
        return self.head(self.pool(self.conv(x)))


def test_subclassed_model_exports_with_an_input_signature(tmp_path):
    keras.utils.set_random_seed(0)
    never_called = TinyCNN()
    with pytest.raises(ValueError, match="`input_signature`: .*never built or called"):
        dw.export_tflite(never_called, tmp_path / "m.tflite")
    model = TinyCNN()
    model(np.zeros((1, 12, 12, 3), "float32"))
    model = _pruned_and_stripped(model)
    spec = keras.InputSpec(shape=(None, 12, 12, 3), dtype="float32", name="image")
    info = _export_and_check(model, tmp_path, input_signature=spec)
    assert info["inputs"] == ["image"] and info["outputs"] == ["output_0"]
    # Without a signature: the shapes it was built with.
    assert dw.export_tflite(model, tmp_path / "b.tflite")["inputs"] == ["input"]


def _token_model(vocabulary=50, length=6):
    keras.utils.set_random_seed(0)
    ids = keras.Input((length,), dtype="int32", name="token_ids")
    h = L.Embedding(vocabulary, 16)(ids)
    h = L.LayerNormalization()(h + L.MultiHeadAttention(2, 8)(h, h))
    return keras.Model(ids, L.Dense(3, name="logits")(L.GlobalAveragePooling1D()(h)))


def test_token_ids_are_generated_within_the_vocabulary_and_keep_their_dtype(tmp_path):
    model = _pruned_and_stripped(_token_model())
    info = _export_and_check(model, tmp_path)  # generated ids: in [0, 50)
    assert info["inputs"] == ["token_ids"]
    ids = np.random.default_rng(1).integers(0, 50, (5, 6))  # int64: cast, not to float
    np.testing.assert_allclose(dw.run_tflite(info["path"], ids.astype("int32")), model(ids),
                               atol=1e-5)
    _export_and_check(model, tmp_path, sample_inputs=ids)
    with pytest.raises(ValueError, match="input 'token_ids' takes int32 values"):
        dw.export_tflite(model, tmp_path / "bad.tflite", sample_inputs=ids.astype("float32"))
    with pytest.raises(ValueError, match="`quantize`: 'int8' .* one float input.*'dynamic'"):
        dw.export_tflite(model, tmp_path / "bad.tflite", quantize="int8")
    info = dw.export_tflite(model, tmp_path / "d.tflite", quantize="dynamic",
                            interpreter="builtin")
    assert info["top1_agreement"] >= 0.9


def test_ids_find_their_embedding_in_sequential_and_nested_models():
    keras.utils.set_random_seed(0)
    seq = keras.Sequential([keras.Input((6,), dtype="int32"), L.Embedding(7, 4),
                            L.GlobalAveragePooling1D(), L.Dense(2)])
    ids = keras.Input((6,), dtype="int32", name="ids")
    outer = keras.Model(ids, L.Dense(3)(seq(ids)))
    for model, name in ((outer, "ids"), (seq, "input")):
        specs = export.signature.input_specs(model)
        assert [(s.name, s.shape, s.dtype) for s in specs] == [(name, (6,), "int32")]
        x = export.signature.sample_inputs(model, specs, 200)[name]
        assert x.dtype == np.int32 and x.min() == 0 and x.max() == 6


def test_integer_inputs_that_feed_no_embedding_need_a_range(tmp_path):
    keras.utils.set_random_seed(0)
    counts = keras.Input((4,), dtype="int32", name="counts")
    model = keras.Model(counts, L.Dense(2)(keras.ops.cast(counts, "float32")))
    with pytest.raises(ValueError, match=r"`input_ranges`: input 'counts' .*feed no Embedding"):
        dw.export_tflite(model, tmp_path / "m.tflite")
    info = dw.export_tflite(model, tmp_path / "m.tflite", input_ranges={"counts": (0, 1000)})
    assert info["max_abs_diff"] <= 1e-4 * 1000


def test_identical_all_zero_kernels_stored_once_still_count(tmp_path):
    """Two all-zero depthwise kernels of one shape: the converter stores one
    tensor read by both operators; the sparsity against the model still
    matches Keras, while the stored tensors alone read lower."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 4))
    x = L.Conv2D(8, 1)(inp)
    a = L.DepthwiseConv2D(3, padding="same", name="dw_a")(x)
    b = L.DepthwiseConv2D(3, padding="same", name="dw_b")(L.ReLU()(x))
    model = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(L.Concatenate()([x, a, b]))))
    for name in ("dw_a", "dw_b"):
        kernel = model.get_layer(name).kernel
        kernel.assign(np.zeros(kernel.shape))
    info = _export_and_check(model, tmp_path)
    read = export.tflite_sparsity(info["path"], model)
    report = dw.sparsity_report(model)
    assert read["model_size"] == report.size and read["nonzeros"] == report.size - report.zeros
    assert read["not_stored"] == 72  # one 3x3x8 kernel: its twin is the same tensor
    assert [t["operators"] for t in read["tensors"] if t["shape"] == [1, 3, 3, 8]] == [2]
    assert read["sparsity"] < report.sparsity - 0.1
    assert read["model_sparsity"] == pytest.approx(report.sparsity)


def test_kerashub_bert_classifier_exports_verified(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=60, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=8)
    classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=3,
                                                     preprocessor=None)
    model = _pruned_and_stripped(classifier)
    info = _export_and_check(model, tmp_path)
    assert info["inputs"] == ["padding_mask", "segment_ids", "token_ids"]
    x = export.signature.sample_inputs(model, export.signature.input_specs(model), 4, seed=3)
    assert x["token_ids"].max() < 60 and x["segment_ids"].max() < 2
    assert set(np.unique(x["padding_mask"])) <= {0, 1} and (x["padding_mask"][:, 0] == 1).all()
    np.testing.assert_allclose(dw.run_tflite(info["path"], x), model(x), atol=1e-4)
