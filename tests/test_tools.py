"""The binaries, end to end, as subprocesses on a tiny config (seconds per phase)."""

import json
import os

import keras
import pytest

from tool_runner import TINY, run_tool


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    proc = run_tool("train.py", *TINY, f"--workdir={workdir}",
                    "--config.prune.target_sparsity=0.8")
    return workdir, proc.stdout


def test_train_runs_every_phase_and_leaves_a_readable_workdir(finished_run):
    workdir, stdout = finished_run
    for phase in ("Teacher: natural training", "Teacher: adversarial training",
                  "Deadwood solve phase", "Fine-tune phase", "Evaluation", "Export", "Report"):
        assert phase in stdout, phase
    for name in ("teacher.keras", "model.keras", "model.tflite", "report.json", "report.md",
                 "history.csv", "checkpoints.jsonl", "multipliers.npz",
                 "sparsity_per_layer.png", "accuracy_per_epoch.png", "multipliers.png",
                 "hardest_examples.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    assert any(f.startswith("events") for _, _, fs in os.walk(os.path.join(workdir, "tensorboard"))
               for f in fs)
    assert not os.path.exists(os.path.join(workdir, "backup"))  # removed once the fit ends

    report = json.load(open(os.path.join(workdir, "report.json")))
    assert report["config"]["prune"]["target_sparsity"] == 0.8  # the override took effect
    assert report["sparsity"]["sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert report["sparsity"]["zeros"] == round(0.8 * report["sparsity"]["size"])
    assert set(report["metrics"]["pruned"]) == {"clean", "fgsm_linf_0.1", "pgd5_linf_0.1"}
    assert 0.5 < report["metrics"]["pruned"]["clean"] <= 1.0
    assert report["export"]["max_abs_diff"] < 1e-4
    assert report["export"]["bytes"] < report["export"]["dense_bytes"]
    assert len(report["history"]) == 3 and "val_pgd_accuracy" in report["history"][0]
    assert report["history"][-1]["sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert {"tensorflow", "keras", "deadwood_tf"} <= set(report["versions"])
    assert {"teacher_s", "deadwood_s", "total_s"} <= set(report["timings"])
    assert len(report["hardest_examples"]) == 16
    # Unstructured: the sparse file is smaller than the dense teacher's, not fewer MACs.
    models = report["before_after"]["models"]
    assert models["student"]["macs"] == models["teacher"]["macs"]
    assert models["student"]["files"]["float32"]["bytes"] == report["export"]["bytes"] < \
        os.path.getsize(os.path.join(workdir, "teacher.tflite"))
    assert "| student (pruned) |" in open(os.path.join(workdir, "report.md")).read()
    # The stripped model needs no custom objects.
    model = keras.models.load_model(os.path.join(workdir, "model.keras"), custom_objects={})
    assert model.output_shape == (None, 10)


def test_rerunning_a_finished_run_skips_the_done_phases(finished_run):
    workdir, _ = finished_run
    before = os.path.getmtime(os.path.join(workdir, "model.keras"))
    stdout = run_tool("train.py", *TINY, f"--workdir={workdir}",
                      "--config.prune.target_sparsity=0.8").stdout
    assert "phase done before" in stdout and "Deadwood solve phase" not in stdout
    assert os.path.getmtime(os.path.join(workdir, "model.keras")) == before


def test_evaluate_and_export_binaries(finished_run, tmp_path):
    workdir, _ = finished_run
    out = run_tool("evaluate.py", f"--model={workdir}/model.keras", "--dataset=digits",
                   "--eps=0.1", "--pgd_steps=5", "--attacks=fgsm,pgd,square,autoattack",
                   "--num_examples=60", "--square_queries=30", "--apgd_steps=5",
                   f"--output_json={tmp_path}/small.json").stdout
    assert "square30_linf_0.1" in out and "autoattack_linf_0.1" in out
    out = run_tool("evaluate.py", f"--model={workdir}/model.keras", "--dataset=digits",
                   "--eps=0.1", "--pgd_steps=5", f"--output_json={tmp_path}/e.json").stdout
    assert "pgd5_linf_0.1" in out and "sparsity" in out
    result = json.load(open(tmp_path / "e.json"))
    assert result["sparsity"] == pytest.approx(0.8, abs=1e-4)
    out = run_tool("evaluate.py", f"--model={workdir}/model.tflite",
                   f"--keras_model={workdir}/model.keras", "--dataset=digits", "--eps=0.1",
                   "--attacks=fgsm", f"--output_json={tmp_path}/t.json").stdout
    tfl = json.load(open(tmp_path / "t.json"))
    assert tfl["accuracy"]["clean"] == pytest.approx(result["accuracy"]["clean"], abs=1e-9)
    assert tfl["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert "fgsm_linf_0.1_transfer" in tfl["accuracy"]

    out = run_tool("export_tflite.py", f"--model={workdir}/model.keras",
                   f"--output={tmp_path}/q.tflite", "--quantize=dynamic", "--dataset=digits").stdout
    info = json.loads(out[out.index("{"):])
    assert info["top1_agreement"] > 0.95 and os.path.exists(tmp_path / "q.tflite")


@pytest.mark.parametrize("args, message", [
    (["--config.prune.target_sparsity=1.5"], "prune.target_sparsity"),
    (["--config.data.name=npz"], "data.path"),
    (["--config.data.name=imagenet"], "data.name"),
    (["--config.attack.name=cw"], "attack.name"),
    (["--config.optimizer=nope"], "optimizer"),
    (["--config.no_such_field=1"], "no_such_field"),
    (["--config.prune.solve_epochs=two"], "solve_epochs"),
    (["--config.prune.scope=layers"], "prune.scope"),
])
def test_bad_config_values_fail_fast_with_the_field_named(args, message, tmp_path):
    proc = run_tool("train.py", *TINY, f"--workdir={tmp_path}/w", *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert not os.path.exists(f"{tmp_path}/w/teacher.keras")  # failed before any training


def test_missing_flags_are_reported(tmp_path):
    proc = run_tool("train.py", "--config=configs/digits_cnn.py", check=False)
    assert proc.returncode != 0 and "workdir" in proc.stderr
    proc = run_tool("evaluate.py", f"--model={tmp_path}/nope.keras", check=False)
    assert proc.returncode != 0 and "no file" in proc.stderr


def test_benchmark_tflite_writes_table_csv_and_plot(tmp_path):
    import csv

    run_tool("benchmarks/experiments/benchmark_tflite.py",
             "--models=small_cnn", "--widths=8", "--sparsities=0,0.9",
             "--dataset=digits", "--data_path=", "--num_train=300", "--num_test=100",
             "--epochs=1", "--invokes=10", "--warmup=2", f"--output_dir={tmp_path}")
    for name in ("results.csv", "results.md", "size_vs_sparsity.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    by = {(float(r["sparsity"]), r["export"]): r for r in rows}
    dense, sparse = by[(0.9, "float")], by[(0.9, "float_sparse")]
    assert int(sparse["bytes"]) < int(dense["bytes"])
    assert int(sparse["limit_bytes"]) <= int(sparse["bytes"])


def test_time_tflite_times_every_file_of_a_folder(finished_run, tmp_path):
    workdir, _ = finished_run
    run_tool("benchmarks/experiments/time_tflite.py",
             f"--dir={workdir}", "--threads=1", "--rounds=2", "--invokes=2",
             f"--out={tmp_path}/latency.json")
    latency = json.load(open(tmp_path / "latency.json"))["latency_us"]
    assert set(latency) == {"1"}
    assert set(latency["1"]) == {"model.tflite", "teacher.tflite"}
    assert all(v > 0 for v in latency["1"].values())
