"""The whole path a user takes: train, prune with Deadwood, strip, export."""

import keras
import numpy as np

import deadwood_tf as dw
from conftest import small_cnn, train


def test_deadwood_prunes_to_90_percent_and_keeps_robustness(digits, tmp_path):
    x, y, xt, yt = digits
    keras.utils.set_random_seed(7)
    teacher = train(small_cnn(name="teacher"), x, y, epochs=15)
    pgd_eval = dw.PGD(0.1, steps=20, step_size=0.01)

    # Baseline: the same model cut to 90% by one-shot global magnitude, no fine-tuning.
    magnitude = dw.prune_model(teacher)
    dw.apply_sparsity(magnitude, 0.9)
    baseline = dw.evaluate_robustness(magnitude, xt, yt, [pgd_eval])

    model = dw.DeadwoodModel(dw.prune_model(teacher), teacher,
                             attack=dw.PGD(0.1, steps=5, step_size=0.03))
    model.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=64, verbose=0,
              callbacks=[dw.DeadwoodCallback(0.9, prune_epoch=4)])

    stripped = dw.strip_pruning(model)
    report = dw.sparsity_report(stripped)
    assert report.zeros == round(0.9 * report.size)
    assert len({round(w.sparsity, 3) for w in report.weights}) > 1  # global, not per layer

    path = tmp_path / "model.keras"
    stripped.save(path)
    stripped = keras.models.load_model(path)
    result = dw.evaluate_robustness(stripped, xt, yt, [pgd_eval])
    print("deadwood", result, "magnitude", baseline)
    assert result["clean"] > 0.9
    assert result[pgd_eval.name] > baseline[pgd_eval.name] + 0.05, (result, baseline)

    info = dw.export_tflite(stripped, tmp_path / "model.tflite", sample_inputs=xt[:200])
    assert info["max_abs_diff"] < 1e-4 and info["top1_agreement"] == 1.0
    assert info["bytes"] < info["dense_bytes"] / 3
    tflite_accuracy = np.mean(dw.run_tflite(tmp_path / "model.tflite", xt).argmax(1) == yt)
    assert abs(tflite_accuracy - result["clean"]) < 1e-9
