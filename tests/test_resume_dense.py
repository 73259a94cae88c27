"""A dense teacher's training stopped mid-way resumes at its next epoch."""

import json
import os

import numpy as np

from deadwood_tf.benchmarks import runner

from conftest import tiny_benchmark_config


def test_a_stopped_dense_at_run_resumes_from_its_last_epoch(tmp_path):
    config = tiny_benchmark_config()
    config.dense.epochs = 1
    config.dense.adversarial_epochs = 2
    ds = runner.load_data(config)[0]
    models, times = runner._dense_models(config, ds, 0, str(tmp_path))
    assert "dense_at_resumed_after_epoch" not in times
    (folder,) = [p for p in tmp_path.glob(f"{config.protocol}/dense_seed0_*")]
    state = json.load(open(folder / "dense_at_state" / "state.json"))
    assert state["epoch"] == 2
    # Stopped after the last epoch's state was written but before the model was saved:
    # the rerun restores that state, trains no further epoch, and saves the same model.
    os.remove(folder / "dense_at.keras")
    os.remove(folder / "times.json")
    again, times = runner._dense_models(config, ds, 0, str(tmp_path))
    assert times["dense_at_resumed_after_epoch"] == 2 and times["dense_natural_loaded"]
    for a, b in zip(models["dense_at"].get_weights(), again["dense_at"].get_weights()):
        np.testing.assert_array_equal(a, b)
    # Stopped after its first epoch: one epoch more from the restored state changes it.
    json.dump({**state, "epoch": 1}, open(folder / "dense_at_state" / "state.json", "w"))
    os.remove(folder / "dense_at.keras")
    os.remove(folder / "times.json")
    third, times = runner._dense_models(config, ds, 0, str(tmp_path))
    assert times["dense_at_resumed_after_epoch"] == 1
    assert any(not np.array_equal(a, b) for a, b in
               zip(again["dense_at"].get_weights(), third["dense_at"].get_weights()))
