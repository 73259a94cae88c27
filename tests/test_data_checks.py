"""Bad data is refused where it enters, with the array, the file, the first
offending example and what was expected named; bad config fields are named."""

import numpy as np
import pytest
import tensorflow as tf

import deadwood_tf as dw
from conftest import small_cnn
from deadwood_tf import checks, config as config_lib, data as data_lib


def _npz(tmp_path, **arrays):
    path = str(tmp_path / "data.npz")
    np.savez(path, **arrays)
    return path


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8), dtype=np.uint8)


def test_a_nan_pixel_in_an_npz_names_the_array_the_file_and_the_example(tmp_path):
    x = _images(50).astype("float32")
    x[17, 3, 4] = np.nan
    path = _npz(tmp_path, x_train=x, y_train=np.arange(50) % 10, x_test=_images(10),
                y_test=np.arange(10))
    with pytest.raises(ValueError, match=r"`x_train` \(file .*data\.npz\): expected finite "
                       r"values\. Received: nan at example 17 \(element \(17, 3, 4\)\)"):
        data_lib.load_dataset("npz", path)


def test_split_arrays_of_different_lengths_name_both_arrays_and_the_file(tmp_path):
    path = _npz(tmp_path, x_train=_images(200), y_train=np.zeros(150, "int64"),
                x_test=_images(10), y_test=np.arange(10))
    with pytest.raises(ValueError, match=r"\(file .*data\.npz\).*`x_train` has 200, `y_train` "
                       "has 150"):
        data_lib.load_dataset("mnist", path)


@pytest.mark.parametrize("labels, message", [
    (np.r_[np.arange(9), -1], r"`y_test` .*expected class labels in >= 0\. Received: -1 at "
     r"example 9"),
    (np.r_[np.arange(9), 2.5], r"`y_test` .*expected integer class labels\. Received: 2\.5 at "
     r"example 9"),
    (np.array(["a"] * 10), r"`y_test` .*expected integer class labels\. Received: dtype <U1"),
])
def test_bad_labels_in_a_file_are_named(tmp_path, labels, message):
    path = _npz(tmp_path, x_train=_images(20), y_train=np.arange(20) % 10, x_test=_images(10),
                y_test=labels)
    with pytest.raises(ValueError, match=message):
        data_lib.load_dataset("npz", path)


def test_the_loader_checks_inputs_against_the_attack_range():
    with pytest.raises(ValueError, match=r"`x_train` \(file scikit-learn's digits\): expected "
                       r"values in \[0, 0\.5\], the input range of the attack PGD"):
        data_lib.load_dataset("digits", value_range=(0.0, 0.5),
                              range_of=checks.attack_range([dw.PGD(0.1, clip_max=0.5)])[1])


def test_float_labels_with_whole_values_and_one_hot_rows_are_accepted():
    checks.check_labels(np.array([0.0, 3.0, 9.0]), num_classes=10)
    checks.check_labels(np.eye(10)[[1, 2]], num_classes=10)
    checks.check_labels(np.array([[1], [2]], "int32"), num_classes=10)


def _deadwood(teacher):
    return dw.DeadwoodModel(dw.prune_model(teacher), teacher,
                            attack=dw.PGD(0.1, steps=2, step_size=0.05))


def test_fit_refuses_unscaled_images_before_training(digits):
    x, y, _, _ = digits
    teacher = small_cnn(name="t")
    model = _deadwood(teacher)
    model.compile("adam")
    before = [w.numpy().copy() for w in model.student.weights]
    with pytest.raises(ValueError, match=r"`x`: expected values in \[0, 1\], the input range of "
                       r"the attack PGD\(eps=0\.1.*Received: 13 at example 0 .*the data spans "
                       r"\[0, 16\]\. Scale the inputs"):
        model.fit(x * 16.0, y, epochs=1, verbose=0)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.student.weights))
    assert int(model.optimizer.iterations.numpy()) == 0


def test_fit_checks_labels_lengths_and_validation_data(digits):
    x, y, xt, yt = digits
    model = _deadwood(small_cnn(name="t"))
    model.compile("adam")
    with pytest.raises(ValueError, match=r"`y`: expected class labels in \[0, 10\) \(the model "
                       r"has 10 outputs\)\. Received: 10 at example 3"):
        model.fit(x[:8], np.r_[y[:3], 10, y[4:8]], verbose=0)
    with pytest.raises(ValueError, match=r"`x` has 8, `y` has 7"):
        model.fit(x[:8], y[:7], verbose=0)
    bad = xt[:20].copy()
    bad[5, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"`x_val`: expected finite values\. Received: inf at "
                       "example 5"):
        model.fit(x[:8], y[:8], validation_data=(bad, yt[:20]), verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((x[:8], np.array(["a"] * 8))).batch(4)
    with pytest.raises(ValueError, match="labels of dtype string"):
        model.fit(ds, verbose=0)


def test_evaluate_robustness_refuses_inputs_outside_every_attacks_range(digits, teacher):
    _, _, xt, yt = digits
    attacks = [dw.FGSM(0.1), dw.PGD(0.1, steps=2, step_size=0.05, clip_min=-1.0, clip_max=0.5)]
    with pytest.raises(ValueError, match=r"`x`: expected values in \[0, 0\.5\]"):
        dw.evaluate_robustness(teacher, xt, yt, attacks)
    assert dw.evaluate_robustness(teacher, xt * 0.5, yt, attacks)["clean"] >= 0


def test_nested_inputs_check_float_arrays_and_name_the_leaf():
    x = {"image": np.zeros((4, 3), "float32"), "tokens": np.full((4, 5), 700, "int64")}
    checks.check_arrays(x, np.arange(4), value_range=(0.0, 1.0))  # integer ids: not a range
    x["image"][2, 1] = -0.5
    with pytest.raises(ValueError, match=r"`x\['image'\]`: expected values in \[0, 1\]\. "
                       r"Received: -0\.5 at example 2 \(element \(2, 1\)\)"):
        checks.check_arrays(x, np.arange(4), value_range=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"`x\[1\]` has 3"):
        checks.check_arrays([np.zeros((4, 2)), np.zeros((3, 2))], np.arange(4))


def test_config_fields_that_do_not_apply_are_named():
    c = config_lib.default_config()
    assert config_lib.inapplicable_fields(c) == []
    c.data.path = "../shared/data/mnist10k.npz"  # data.name is digits
    c.attack.name = "fgsm"
    c.attack.steps = 10
    c.prune.schedule = "one_shot"
    c.prune.power = 2
    messages = config_lib.inapplicable_fields(c)
    assert len(messages) == 3, messages
    assert messages[0].startswith("`data.path` is ignored: data.name='digits'")
    assert messages[1].startswith("`attack.steps` is ignored: attack.name='fgsm'")
    assert messages[2].startswith("`prune.power` is ignored")
    c = config_lib.default_config()
    c.teacher_path = "t.keras"
    c.teacher.epochs = 3
    assert [m.split(" ")[0] for m in config_lib.inapplicable_fields(c)] == ["`teacher.epochs`"]


def test_the_module_docstring_example_runs():
    import doctest

    result = doctest.testmod(checks)
    assert result.attempted > 0 and result.failed == 0


def test_model_argument_checks_name_the_argument():
    import types

    import keras

    from deadwood_tf import prune

    with pytest.raises(ValueError, match="argument `teacher`: expected a Keras 3 `keras.Model`. "
                                         "Received: teacher of type builtins.object"):
        checks.check_keras_model(object(), "teacher")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert checks.unwrap_deadwood(model) is model
    assert checks.unwrap_deadwood(types.SimpleNamespace(student=model, teacher=model)) is model
    with pytest.raises(ValueError, match="argument `model`"):
        checks.unwrap_deadwood(types.SimpleNamespace(student=None, teacher=model))
    assert prune.check_keras_model is checks.check_keras_model  # the old home still answers
